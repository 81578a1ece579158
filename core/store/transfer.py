"""Copying a case store into an empty one: a laptop's SQLite workspace moving to the lab's PostgreSQL server."""

from __future__ import annotations

from sqlalchemy import DateTime, Integer, func, select, text

from core.errors import WorkspaceError
from core.store.database import open_store
from core.store.schema import Base, SchemaVersion, as_utc


def copy_store(source_url: str, target_url: str, batch: int = 5000) -> dict[str, int]:
    """Copy every row of the store at ``source_url`` into the empty store at ``target_url`` (created and migrated
    first), in one transaction; returns the rows copied per table. Times without a zone (SQLite) are taken as UTC."""
    source, target = open_store(source_url), open_store(target_url)
    tables = [t for t in Base.metadata.sorted_tables if t.name != SchemaVersion.__tablename__]
    try:
        counts = {}
        with target.engine.begin() as dst, source.engine.connect() as src:
            for table in tables:
                if dst.execute(select(func.count()).select_from(table)).scalar():
                    raise WorkspaceError(f"the target case store already has rows in {table.name}; copy into an empty database")
            for table in tables:
                zoned = [c.name for c in table.columns if isinstance(c.type, DateTime) and c.type.timezone]
                rows = [dict(r._mapping) for r in src.execute(select(table))]
                for row in rows:
                    for name in zoned:
                        if row[name] is not None:
                            row[name] = as_utc(row[name])
                for start in range(0, len(rows), batch):
                    dst.execute(table.insert(), rows[start : start + batch])
                counts[table.name] = len(rows)
            if dst.dialect.name == "postgresql":  # explicit ids were inserted: move each id sequence past them
                for table in tables:
                    for column in table.primary_key.columns:
                        if isinstance(column.type, Integer) and column.autoincrement in (True, "auto"):
                            dst.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                                             f"COALESCE(MAX({column.name}), 1), MAX({column.name}) IS NOT NULL) FROM {table.name}"))
        return counts
    finally:
        source.dispose()
        target.dispose()
