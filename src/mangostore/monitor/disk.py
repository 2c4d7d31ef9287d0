"""Disk usage of a database: per table and index, free pages, WAL.

SQLite's ``dbstat`` virtual table gives the exact pages of every table and index,
but only in builds with ``SQLITE_ENABLE_DBSTAT_VTAB``; the SQLCipher bundled with
``sqlcipher3`` 0.6 is not one (nor does it have ``sqlite_dbpage``). Without it the
figures are estimates (``method = "estimate"``): for each table, its row count
(from ``sqlite_stat1`` when ``ANALYZE`` has run, else ``count(*)``) times the mean
stored size of a row in a sample of up to 1,000 rows (every column's length as a
blob, plus SQLite's per-row and per-column overhead); for each index, the same
with only its columns and the row id. The estimates are then scaled so that they
add up to the pages actually in use (``page_count - freelist_count``), so the
total is exact and the split between objects approximate.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from mangostore.monitor.connection import execute_unmonitored
from mangostore.schema import introspect
from mangostore.sql import quote_identifier

_SAMPLE_ROWS: Final = 1_000
#: Bytes SQLite spends per row besides the values (cell pointer, sizes, row id).
_ROW_OVERHEAD: Final = 12
#: Bytes per index entry besides the indexed values (cell pointer, sizes, row id).
_INDEX_ENTRY_OVERHEAD: Final = 14


@dataclass(frozen=True, slots=True)
class ObjectUsage:
    """The space of one table or index.

    Attributes:
        name: the table or index.
        kind: ``"table"`` or ``"index"``.
        table: the table (itself, for a table).
        bytes: bytes of its pages.
        pages: its pages.
        rows: rows of a table (-1 for an index, or when not counted).
    """

    name: str
    kind: Literal["table", "index"]
    table: str
    bytes: int
    pages: int
    rows: int = -1


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """Where a database's bytes are.

    Attributes:
        file_bytes, wal_bytes: sizes of the database file and its WAL.
        page_size, page_count, freelist_count: from SQLite.
        freelist_ratio: free pages per page of the file.
        method: ``"dbstat"`` (exact) or ``"estimate"`` (see the module docstring).
        objects: every table and index, largest first.
        max_database_bytes: the configured limit (``Settings.max_database_bytes``).
        limit_ratio: (file + WAL) per limit.
    """

    file_bytes: int
    wal_bytes: int
    page_size: int
    page_count: int
    freelist_count: int
    freelist_ratio: float
    method: Literal["dbstat", "estimate"]
    max_database_bytes: int
    limit_ratio: float
    objects: list[ObjectUsage] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """File plus WAL."""
        return self.file_bytes + self.wal_bytes


def disk_usage(conn: Any, path: str, max_database_bytes: int) -> DiskUsage:
    """Measure the database behind ``conn`` (stored at ``path``)."""
    page_size = _pragma(conn, "page_size")
    page_count = _pragma(conn, "page_count")
    freelist = _pragma(conn, "freelist_count")
    file_bytes = wal_bytes = 0
    if path != ":memory:":
        file_bytes = _size(path)
        wal_bytes = _size(path + "-wal")
    else:
        file_bytes = page_size * page_count
    objects = _from_dbstat(conn)
    method: Literal["dbstat", "estimate"] = "dbstat"
    if objects is None:
        method = "estimate"
        objects = _estimate(conn, page_size, page_count - freelist)
    objects.sort(key=lambda o: o.bytes, reverse=True)
    total = file_bytes + wal_bytes
    return DiskUsage(
        file_bytes=file_bytes,
        wal_bytes=wal_bytes,
        page_size=page_size,
        page_count=page_count,
        freelist_count=freelist,
        freelist_ratio=freelist / page_count if page_count else 0.0,
        method=method,
        max_database_bytes=max_database_bytes,
        limit_ratio=total / max_database_bytes if max_database_bytes else 0.0,
        objects=objects,
    )


def _pragma(conn: Any, name: str) -> int:
    return int(execute_unmonitored(conn, f"PRAGMA {name}").fetchone()[0])


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def has_dbstat(conn: Any) -> bool:
    """Tell whether this SQLite build has the ``dbstat`` virtual table."""
    try:
        execute_unmonitored(conn, "SELECT 1 FROM dbstat LIMIT 0").fetchall()
    except Exception:
        return False
    return True


def _from_dbstat(conn: Any) -> list[ObjectUsage] | None:
    if not has_dbstat(conn):
        return None
    kinds = {
        found.name: (found.kind, found.table)
        for found in introspect.schema_objects(conn)
        if found.root_page > 0
    }
    kinds.setdefault(introspect.SCHEMA_TABLE, ("table", introspect.SCHEMA_TABLE))
    out = []
    rows = execute_unmonitored(
        conn, "SELECT name, count(*), sum(pgsize) FROM dbstat GROUP BY name"
    ).fetchall()
    for name, pages, size in rows:
        kind, table = kinds.get(str(name), ("table", str(name)))
        out.append(
            ObjectUsage(
                name=str(name),
                kind="index" if kind == "index" else "table",
                table=table,
                bytes=int(size or 0),
                pages=int(pages),
            )
        )
    return out


def _estimate(conn: Any, page_size: int, used_pages: int) -> list[ObjectUsage]:
    counts = _stat1_counts(conn)
    tables = [t.name for t in introspect.schema_objects(conn, "table") if t.root_page > 0]
    raw: list[tuple[str, Literal["table", "index"], str, float, int]] = []
    for table in tables:
        columns = [c.name for c in introspect.columns(conn, table)]
        if not columns:
            continue
        rows = counts.get(table)
        if rows is None:
            rows = int(
                execute_unmonitored(
                    conn, f"SELECT count(*) FROM {quote_identifier(table)}"
                ).fetchone()[0]
            )
        widths = _mean_widths(conn, table, columns)
        raw.append(
            (
                table,
                "table",
                table,
                rows * (sum(widths.values()) + len(columns) + _ROW_OVERHEAD),
                rows,
            )
        )
        for index, index_columns in _table_indexes(conn, table):
            width = sum(widths.get(c, 8.0) for c in index_columns)
            raw.append(
                (
                    index,
                    "index",
                    table,
                    rows * (width + len(index_columns) + _INDEX_ENTRY_OVERHEAD),
                    -1,
                )
            )
    # Every b-tree has at least its root page; the rest is shared out by estimated size.
    spare = max(0, used_pages - len(raw) - 1) * page_size  # one page for the schema table
    total = sum(r[3] for r in raw) or 1.0
    out = []
    for name, kind, table, estimate, rows in raw:
        size = page_size + int(spare * estimate / total)
        out.append(ObjectUsage(name, kind, table, size, max(1, round(size / page_size)), rows))
    return out


def _mean_widths(conn: Any, table: str, columns: list[str]) -> dict[str, float]:
    """Return each column's mean stored length over a sample of rows."""
    parts = ", ".join(
        f"avg(coalesce(length(CAST({quote_identifier(c)} AS BLOB)), 0))" for c in columns
    )
    sql = f"SELECT {parts} FROM (SELECT * FROM {quote_identifier(table)} LIMIT {_SAMPLE_ROWS})"
    try:
        row = execute_unmonitored(conn, sql).fetchone()
    except Exception:  # e.g. a column type SQLite cannot read here
        return dict.fromkeys(columns, 8.0)
    return {c: float(v or 0.0) for c, v in zip(columns, row, strict=True)}


def _table_indexes(conn: Any, table: str) -> list[tuple[str, list[str]]]:
    """Each index of ``table`` with its named columns (an expression has no width to
    look up)."""
    return [
        (index.name, [c for c in index.columns if c is not None])
        for index in introspect.indexes(conn, table)
    ]


def _stat1_counts(conn: Any) -> dict[str, int]:
    """Row counts recorded by ``ANALYZE``: the first number of each stat row is the
    rows of its table (or of its index, fewer for a partial one), so the largest is kept."""
    counts: dict[str, int] = {}
    with contextlib.suppress(Exception):
        for table, stat in execute_unmonitored(
            conn, "SELECT tbl, stat FROM sqlite_stat1"
        ).fetchall():
            with contextlib.suppress(ValueError, IndexError):
                rows = int(str(stat).split()[0])
                counts[str(table)] = max(rows, counts.get(str(table), 0))
    return counts
