"""What ``db.status()`` and ``mangostore status`` show: :class:`Status`, read in one
read transaction so the row counts agree with each other. Never a key."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mangostore.engine.connection import driver_errors, is_driver_error
from mangostore.engine.pool import PoolStats
from mangostore.engine.pragmas import Connection
from mangostore.engine.store import MEMORY
from mangostore.schema import introspect
from mangostore.sql import quote_identifier

if TYPE_CHECKING:
    from mangostore.engine.store import Store

__all__ = ["Status", "TableInfo", "count_rows", "read_status", "table_names"]


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A table and how many rows it holds (-1 when SQLite cannot count them, e.g. a
    virtual table whose module is not loaded)."""

    name: str
    rows: int


@dataclass(frozen=True, slots=True)
class Status:
    """What ``mangostore status`` shows: never a key."""

    path: str
    schema_version: int
    latest_version: int
    file_bytes: int
    wal_bytes: int
    page_encryption: bool
    field_encryption: bool
    keyring: dict[str, Any] | None
    tables: list[TableInfo]
    pool: PoolStats | None
    #: What ``PRAGMA quick_check`` found (empty: nothing); ``None`` when not checked.
    problems: list[str] | None = None


def read_status(
    store: Store,
    *,
    schema_version: int,
    latest_version: int,
    page_encryption: bool,
    problems: list[str] | None,
) -> Status:
    """Read the status of the database ``store`` serves."""
    with store.snapshot() as conn:
        tables = [TableInfo(name, count_rows(conn, name)) for name in table_names(conn)]
    file_bytes = wal_bytes = 0
    if store.path != MEMORY:
        file_bytes = file_size(store.path)
        wal_bytes = file_size(store.path + "-wal")
    keyring = store.keyring
    return Status(
        path=store.path,
        schema_version=schema_version,
        latest_version=latest_version,
        file_bytes=file_bytes,
        wal_bytes=wal_bytes,
        page_encryption=page_encryption,
        field_encryption=keyring is not None,
        keyring=keyring.describe() if keyring is not None else None,
        tables=tables,
        pool=store.pool_stats(),
        problems=problems,
    )


def table_names(conn: Connection) -> list[str]:
    """Real and virtual tables of the main schema, without SQLite's and FTS shadow tables."""
    with driver_errors("listing tables"):
        found = introspect.table_list(conn)
    return [t.name for t in found if t.kind in ("table", "virtual") and not t.internal]


def count_rows(conn: Connection, table: str) -> int:
    """Count a table's rows; -1 when SQLite cannot (a virtual table's module is missing)."""
    try:
        return int(conn.execute(f"SELECT count(*) FROM {quote_identifier(table)}").fetchone()[0])
    except Exception as exc:
        if is_driver_error(exc):
            return -1
        raise


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0
