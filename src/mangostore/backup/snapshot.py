"""A consistent logical snapshot of a database: its schema and every row, read in one
read transaction.

The snapshot is read on a pooled reader connection inside one read transaction
(:meth:`mangostore.engine.store.Store.snapshot`). In WAL mode a reader never blocks
the writer, and the writer never changes what an open read transaction sees: writers
go on committing while a backup runs, and the backup holds the database exactly as it
was when the transaction began. Nothing opens the database file behind SQLite's back.

Rows are rendered by SQLite itself as SQL literals (``quote()``: integers, reals with
every digit, text and blobs exactly), one text per row, so a restore runs
``INSERT ... VALUES`` with them and gets back the same values and types. Each row also
has a key (its rowid, or its primary key for a ``WITHOUT ROWID`` table) and a keyed
digest, which incremental backups compare with the previous backup's.

Virtual tables are not read row by row: their data lives in their shadow tables, which
are copied like any other table, so full-text indexes come back exactly as they were.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Final

from mangostore.engine.pragmas import Connection
from mangostore.schema import introspect
from mangostore.sql import quote_identifier

__all__ = ["Key", "SchemaItem", "SchemaPlan", "TablePlan", "read_plan", "scan_rows"]

Key = int | str
#: Rows fetched from SQLite at a time.
FETCH_ROWS: Final = 1000
#: SQLite's own tables that are copied (the others are rebuilt, or not needed).
_COPIED_INTERNAL: Final = frozenset({"sqlite_sequence"})


@dataclass(frozen=True, slots=True)
class SchemaItem:
    """One entry of ``sqlite_schema`` with SQL (tables, indexes, views, triggers)."""

    type: str
    name: str
    table: str
    sql: str

    @property
    def virtual(self) -> bool:
        """Whether it creates a virtual table."""
        return self.type == "table" and self.sql.lstrip()[:20].upper().startswith("CREATE VIRTUAL")


@dataclass(frozen=True, slots=True)
class TablePlan:
    """How one table's rows are read and written back.

    Attributes:
        name: the table.
        columns: the columns an INSERT names (``rowid`` first when the table has a
            rowid but no column that aliases it, so rowids survive).
        key: ``("rowid",)``, or the primary key of a ``WITHOUT ROWID`` table.
        made_by_sqlite: a table that exists before its rows are restored (a virtual
            table's shadow table, ``sqlite_sequence``): emptied first.
    """

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    made_by_sqlite: bool

    @property
    def by_rowid(self) -> bool:
        """Whether rows are keyed by rowid."""
        return self.key == ("rowid",)

    def select_sql(self) -> str:
        """The statement that reads ``(key, literal row)`` for every row."""
        if self.by_rowid:
            key = "rowid"
        else:
            key = " || ',' || ".join(f"quote({quote_identifier(c)})" for c in self.key)
        values = " || ',' || ".join(
            "quote(rowid)" if c == "rowid" else f"quote({quote_identifier(c)})"
            for c in self.columns
        )
        return f"SELECT {key}, '(' || {values} || ')' FROM {quote_identifier(self.name)}"

    def insert_sql(self, values: str) -> str:
        """An INSERT of the literal rows ``values`` (``(..),(..)``)."""
        cols = ", ".join("rowid" if c == "rowid" else quote_identifier(c) for c in self.columns)
        return f"INSERT INTO {quote_identifier(self.name)} ({cols}) VALUES {values}"

    def delete_sql_all(self) -> str:
        """A DELETE of every row (for a table SQLite filled when it was made)."""
        return f"DELETE FROM {quote_identifier(self.name)}"

    def delete_sql(self, keys: list[Key]) -> str:
        """A DELETE of the rows with these keys."""
        table = quote_identifier(self.name)
        if self.by_rowid:
            return f"DELETE FROM {table} WHERE rowid IN ({','.join(str(int(k)) for k in keys)})"
        cols = ", ".join(quote_identifier(c) for c in self.key)
        listed = ",".join(f"({k})" for k in keys)
        return f"DELETE FROM {table} WHERE ({cols}) IN (VALUES {listed})"


@dataclass(frozen=True)
class SchemaPlan:
    """The schema of a snapshot and how its tables are copied."""

    items: tuple[SchemaItem, ...]
    tables: tuple[TablePlan, ...]
    user_version: int
    application_id: int

    @property
    def digest(self) -> str:
        """SHA-256 of the schema: two snapshots with the same digest have the same tables."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    def table(self, name: str) -> TablePlan:
        """The plan of table ``name``.

        Raises:
            KeyError: the snapshot has no such table.
        """
        for plan in self.tables:
            if plan.name == name:
                return plan
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "items": [asdict(i) for i in self.items],
            "tables": [asdict(t) for t in self.tables],
            "user_version": self.user_version,
            "application_id": self.application_id,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SchemaPlan:
        """The inverse of :meth:`to_json`.

        Raises:
            KeyError, TypeError: ``doc`` is not a plan.
        """
        return cls(
            tuple(SchemaItem(**i) for i in doc["items"]),
            tuple(
                TablePlan(t["name"], tuple(t["columns"]), tuple(t["key"]), t["made_by_sqlite"])
                for t in doc["tables"]
            ),
            int(doc["user_version"]),
            int(doc["application_id"]),
        )


def read_plan(conn: Connection) -> SchemaPlan:
    """Read the schema of the database ``conn`` is in a read transaction on."""
    shadow = set()
    tables: list[TablePlan] = []
    for entry in introspect.table_list(conn):
        if entry.kind == "shadow":
            shadow.add(entry.name)
        if entry.kind not in ("table", "shadow"):
            continue
        if entry.internal and entry.name not in _COPIED_INTERNAL:
            continue
        cols = introspect.columns(conn, entry.name)
        names = tuple(c.name for c in cols)
        if entry.without_rowid:
            pk = tuple(c.name for c in sorted(cols, key=lambda c: c.primary_key) if c.primary_key)
            tables.append(TablePlan(entry.name, names, pk, entry.kind == "shadow"))
            continue
        pk_cols = [c for c in cols if c.primary_key]
        aliased = len(pk_cols) == 1 and pk_cols[0].declared_type.upper() == "INTEGER"
        columns = names if aliased else ("rowid", *names)
        made = entry.kind == "shadow" or entry.internal
        tables.append(TablePlan(entry.name, columns, ("rowid",), made))
    items = [
        SchemaItem(o.kind, o.name, o.table, o.sql)
        for o in introspect.schema_objects(conn, order="creation")
        if o.sql and o.name not in shadow and not introspect.is_internal(o.name)
    ]
    user_version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    application_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    return SchemaPlan(tuple(items), tuple(tables), user_version, application_id)


def scan_rows(conn: Connection, table: TablePlan) -> Iterator[list[tuple[Key, str]]]:
    """Every row of ``table`` as ``(key, literal)``, a batch at a time."""
    cursor = conn.execute(table.select_sql())
    while True:
        batch = cursor.fetchmany(FETCH_ROWS)
        if not batch:
            return
        yield [(row[0], row[1]) for row in batch]
