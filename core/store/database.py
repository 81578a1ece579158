"""Opening a case store and bringing its schema up to date."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event, inspect, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import WorkspaceError
from core.store.schema import Base, SchemaVersion


def _create_v1(engine: Engine) -> None:
    Base.metadata.create_all(engine)


# Ordered migrations: version -> function. A new schema change appends an entry
# using SQLAlchemy DDL constructs (never dialect-specific SQL).
MIGRATIONS: dict[int, Callable[[Engine], None]] = {1: _create_v1}
SCHEMA_VERSION = max(MIGRATIONS)


class CaseStore:
    """A case database: an engine, a session factory and its schema version."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise WorkspaceError(f"cannot use database URL {url!r}: {exc}") from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def schema_version(self) -> int:
        if not inspect(self.engine).has_table(SchemaVersion.__tablename__):
            return 0
        with self.session() as s:
            return max(s.scalars(select(SchemaVersion.version)).all(), default=0)

    def migrate(self) -> int:
        """Apply pending migrations; return the resulting version."""
        try:
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise WorkspaceError(
                    f"the case store is at schema version {current}, newer than this program's "
                    f"{SCHEMA_VERSION}; upgrade the dashboard"
                )
            for version in sorted(v for v in MIGRATIONS if v > current):
                MIGRATIONS[version](self.engine)
                with self.session() as s:
                    s.add(SchemaVersion(version=version))
        except SQLAlchemyError as exc:
            raise WorkspaceError(f"cannot open the case store at {self.url}: {exc.__class__.__name__}: {exc}") from exc
        return SCHEMA_VERSION

    def dispose(self) -> None:
        self.engine.dispose()


def decode_stored_text(raw: bytes) -> str:
    """Text columns holding bytes that are not UTF-8 are decoded with U+FFFD replacements instead of failing."""
    return raw.decode("utf-8", errors="replace")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    dbapi_conn.text_factory = decode_stored_text
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")  # another writer: wait, do not fail at once
    cur.close()


def open_store(url: str, migrate: bool = True) -> CaseStore:
    store = CaseStore(url)
    if migrate:
        store.migrate()
    return store
