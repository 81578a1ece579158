"""Opening a case store and bringing its schema up to date."""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Column, Connection, CursorResult, Engine, Result, Table, create_engine, event, insert, inspect, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import WorkspaceError
from core.store.schema import AnnotationVersion, Base, Job, Patient, Report, Review, SchemaVersion, Slide, SlideQuality, User, checked_attributes


def _create_v1(engine: Engine) -> None:
    """A new store gets every table of the current schema at once; later migrations then find nothing to do."""
    Base.metadata.create_all(engine)


def _add_column_if_missing(conn: Connection, column: Column[Any]) -> None:
    """``ALTER TABLE t ADD COLUMN c TYPE`` (nullable, no default): the one form SQLite and PostgreSQL both accept."""
    table = column.table.name
    if column.name in {c["name"] for c in inspect(conn).get_columns(table)}:
        return
    quote = conn.dialect.identifier_preparer.quote
    conn.execute(text(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column.name)} {column.type.compile(conn.dialect)}"))


def _renumber_duplicate_review_versions(conn: Connection) -> None:
    """Before the unique index: a (patient, modality) whose rows share a version is renumbered 1..n in save order."""
    t = Review.__table__
    rows = conn.execute(select(t.c.id, t.c.patient_id, t.c.modality, t.c.version)
                        .order_by(t.c.patient_id, t.c.modality, t.c.version, t.c.id)).all()
    groups: dict[tuple[str, str], list] = {}
    for row in rows:
        groups.setdefault((row.patient_id, row.modality), []).append(row)
    for group in groups.values():
        if len({r.version for r in group}) < len(group):
            for n, r in enumerate(group, 1):
                conn.execute(update(t).where(t.c.id == r.id).values(version=n))


def _add_days_and_review_version_index(engine: Engine) -> None:
    """v2: ``day`` on slides and reports (link a visit to the slide and report nearest it); unique review versions."""
    with engine.begin() as conn:
        _add_column_if_missing(conn, Slide.__table__.c.day)
        _add_column_if_missing(conn, Report.__table__.c.day)
        index = next(i for i in Review.__table__.indexes if i.name == "uq_reviews_patient_modality_version")
        if index.name not in {i["name"] for i in inspect(conn).get_indexes(Review.__tablename__)}:
            _renumber_duplicate_review_versions(conn)
            index.create(conn, checkfirst=True)


def _add_session_versions(engine: Engine) -> None:
    """v5: a session version per account; existing accounts get a fresh one (their old sessions end)."""
    with engine.begin() as conn:
        _add_column_if_missing(conn, User.__table__.c.session_version)
        t = User.__table__
        for (user_id,) in conn.execute(select(t.c.id).where(t.c.session_version.is_(None))).all():
            conn.execute(update(t).where(t.c.id == user_id).values(session_version=secrets.token_hex(16)))


def _add_review_regions(engine: Engine) -> None:
    """v7: a verdict may name the slide regions it refers to."""
    with engine.begin() as conn:
        _add_column_if_missing(conn, Review.__table__.c.regions)


# The patient columns of schemas v1 to v7, carried into ``patients.attributes`` under the same names by v8.
LEGACY_PATIENT_COLUMNS = ("age", "sex", "onset_type")


def _patient_columns_to_attributes(engine: Engine) -> None:
    """v8: patients' ``age``, ``sex`` and ``onset_type`` columns become entries of one JSON ``attributes`` column
    (name -> value; unknown values are left out), and the columns are dropped."""
    with engine.begin() as conn:
        _add_column_if_missing(conn, Patient.__table__.c.attributes)
        present = {c["name"] for c in inspect(conn).get_columns(Patient.__tablename__)}
        legacy = [name for name in LEGACY_PATIENT_COLUMNS if name in present]
        quote = conn.dialect.identifier_preparer.quote
        t = Patient.__table__
        columns = ", ".join(quote(c) for c in ["id", *legacy])
        for row in conn.execute(text(f"SELECT {columns} FROM patients WHERE attributes IS NULL")).all():
            values = row._mapping
            attributes = checked_attributes({name: values[name] for name in legacy if values[name] is not None})
            conn.execute(update(t).where(t.c.id == values["id"]).values(attributes=attributes))
        for name in legacy:
            conn.execute(text(f"ALTER TABLE patients DROP COLUMN {quote(name)}"))


def _create_table(model: type[Base]) -> Callable[[Engine], None]:
    """A migration that adds one new table (left alone when it exists)."""
    def create(engine: Engine) -> None:
        model.__table__.create(engine, checkfirst=True)
    return create


# Ordered migrations: version -> function. A new schema change appends an entry using SQLAlchemy
# constructs, or DDL that SQLite and PostgreSQL both accept; each must find its change already made
# (a new store's v1 creates the current schema) and leave it alone.
# v3: user accounts; v4: jobs (long work and its progress, seen by the app, the workers and the Jobs page);
# v5: a session version per account (sign-out, password and role changes end the account's sessions);
# v6: reviewers' regions on slides, every version kept; v7: the regions a verdict refers to;
# v8: free-form patient attributes instead of disease columns; v9: slides' quality control summaries.
MIGRATIONS: dict[int, Callable[[Engine], None]] = {1: _create_v1, 2: _add_days_and_review_version_index, 3: _create_table(User),
                                                   4: _create_table(Job), 5: _add_session_versions, 6: _create_table(AnnotationVersion),
                                                   7: _add_review_regions, 8: _patient_columns_to_attributes, 9: _create_table(SlideQuality)}
SCHEMA_VERSION = max(MIGRATIONS)


def _json_default(value: Any) -> Any:
    """What orjson leaves to the caller and ``json.dumps`` accepted: subclasses of float and int (numpy scalars)."""
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_text(value: Any) -> str:
    """JSON columns are written with orjson: regions are thousands of coordinate lists, which ``json.dumps`` encodes
    several times slower. Keys that are not strings are written as strings, as ``json.dumps`` does."""
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()


def insert_many(connection: Connection, table: Table, constants: Mapping[str, Any], columns: Sequence[str],
                rows: Iterable[Sequence[Any]]) -> None:
    """Rows into ``table`` as one executemany on the driver's cursor: ``constants`` are the same in every row,
    ``rows`` give the values of ``columns`` in that order. The statement is compiled once and each value goes through
    its column type's bind processor (JSON written by ``json_text``, dates as the dialect stores them), as SQLAlchemy
    would. Leaving out its per-row parameter bookkeeping took about a third off storing 10,000 regions and their audit
    rows. Columns with a Python-side default must be given (in ``constants`` or ``columns``): no default is applied."""
    dialect = connection.dialect

    def processor(name: str) -> Callable[[Any], Any] | None:
        return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)

    rows = list(rows)
    if not rows:
        return
    fixed = {name: (p(value) if (p := processor(name)) else value) for name, value in constants.items()}
    # Column by column, so that the per-value work runs in map and zip rather than in a Python loop per row.
    values: dict[str, Iterable[Any]] = {}
    for name, column in zip(columns, zip(*rows, strict=True), strict=True):
        p = processor(name)
        values[name] = list(map(p, column)) if p else column
    compiled = insert(table).compile(dialect=dialect, column_keys=[*constants, *columns])
    names = list(compiled.positiontup or []) if compiled.positional else [*constants, *columns]
    if missing := [n for n in names if n not in fixed and n not in values]:
        raise ValueError(f"insert_many into {table.name}: no value for {', '.join(missing)} (a column default is not applied here)")
    ordered = zip(*(repeat(fixed[n]) if n in fixed else values[n] for n in names), strict=False)  # ``repeat`` is endless
    params = list(ordered) if compiled.positional else [dict(zip(names, row, strict=True)) for row in ordered]
    connection.exec_driver_sql(compiled.string, params)


SQLITE_BUSY_TIMEOUT_S = 10.0  # bounded wait for a write lock held by another process (a writer, a backup)


class CaseStore:
    """A case database: an engine, a session factory and its schema version."""

    def __init__(self, url: str, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
        url = postgresql_driver_url(url)
        self.url = url
        self.busy_timeout_s = busy_timeout_s
        try:
            self.engine = create_engine(url, pool_pre_ping=True, json_serializer=json_text, json_deserializer=orjson.loads)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise WorkspaceError(f"cannot use database URL {url!r}: {exc}") from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", lambda conn, record: _sqlite_pragmas(conn, record, self.busy_timeout_s))
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


def rows_matched(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE run through a session matched. The session hands back a ``CursorResult`` for them,
    though its signature promises only a ``Result``."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"expected the result of an UPDATE or DELETE, got {type(result).__name__}")
    return result.rowcount


def postgresql_driver_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` URLs use psycopg 3 (the driver requirements.txt installs), not psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def decode_stored_text(raw: bytes) -> str:
    """Text columns holding bytes that are not UTF-8 are decoded with U+FFFD replacements instead of failing."""
    return raw.decode("utf-8", errors="replace")


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
    dbapi_conn.text_factory = decode_stored_text
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")  # another writer: wait up to this long, then fail
    cur.close()


def create_owner_only_sqlite_file(url: str) -> None:
    """A new SQLite database file is created readable by its owner only (SQLite gives its -wal and -shm files the
    same mode); an existing file is left as it is."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix + ":memory:":
        return
    path = Path(url[len(prefix):].split("?", 1)[0])
    if path.parent.is_dir() and not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def open_store(url: str, migrate: bool = True, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> CaseStore:
    """``busy_timeout_s``: on SQLite, how long a write waits for another process's write transaction to end before it
    fails (the caller then reports that nothing was saved)."""
    create_owner_only_sqlite_file(url)
    store = CaseStore(url, busy_timeout_s)
    if migrate:
        store.migrate()
    return store
