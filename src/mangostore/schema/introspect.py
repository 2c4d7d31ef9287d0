"""Reading the live schema: tables, columns, indexes, foreign keys, virtual tables.

The one module that asks SQLite about the schema (``sqlite_schema`` and the
``pragma_table_list``, ``table_info``, ``table_xinfo``, ``index_list``, ``index_info``
and ``foreign_key_list`` table-valued functions); every other module calls the small
functions here, so a fix to how the schema is read is made once
(``tests/test_structure.py`` keeps it so).

- Names are bound as ``?`` parameters of the table-valued functions, never put into
  SQL text; SQL that callers build from the names returned here quotes them with
  :func:`mangostore.sql.quote_identifier`.
- Statements run through the driver's own ``execute``: reading the schema is the
  library's bookkeeping, not the application's statements, so the monitor neither
  times them nor shows them to the writer's change tracking (they change nothing).
- Errors are the driver's own. Each caller wraps them with
  :func:`mangostore.engine.connection.driver_errors`, naming what it was doing; the
  check made when a file is opened needs the driver's error itself, to tell a wrong
  key from a damaged file.
- Only the ``main`` schema is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

import sqlcipher3

from mangostore.engine.pragmas import Connection
from mangostore.sql import placeholders, quote_identifier

__all__ = [
    "SCHEMA_TABLE",
    "SCHEMA_TABLE_NAMES",
    "Column",
    "ForeignKey",
    "Index",
    "SchemaObject",
    "TableEntry",
    "columns",
    "count_objects",
    "foreign_keys",
    "has_table",
    "indexes",
    "is_internal",
    "schema_objects",
    "table_list",
    "unique_expression_tables",
]

#: The table SQLite keeps the schema in (one b-tree, rooted at page 1).
SCHEMA_TABLE: Final = "sqlite_schema"
#: The names a statement reads or writes the schema table under (the authorizer
#: reports the older ``sqlite_master`` names).
SCHEMA_TABLE_NAMES: Final = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master"})

# The driver's own execute, past InstrumentedConnection.execute (see the docstring).
_execute = sqlcipher3.Connection.execute
# The module of CREATE VIRTUAL TABLE ... USING module(...), and an FTS content= option.
_MODULE: Final = re.compile(r"\bUSING\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)
_CONTENT: Final = re.compile(r"\bcontent\s*=\s*['\"]?([^'\",)\s]*)", re.IGNORECASE)


def is_internal(name: str) -> bool:
    """Tell whether ``name`` is one of SQLite's own (``sqlite_sequence``, ``sqlite_stat1``,
    ``sqlite_autoindex_...``): SQLite reserves the prefix in any letter case."""
    return name[:7].lower() == "sqlite_"


@dataclass(frozen=True, slots=True)
class SchemaObject:
    """One row of ``sqlite_schema``.

    Attributes:
        kind: ``"table"`` (virtual tables included), ``"index"``, ``"view"`` or
            ``"trigger"``.
        name: the object's name.
        table: the table it belongs to (its own name for a table).
        root_page: the first page of its b-tree; 0 for views, triggers and virtual
            tables, which have none.
        sql: the statement that made it; empty for an index SQLite made for a
            UNIQUE or PRIMARY KEY constraint.
    """

    kind: str
    name: str
    table: str
    root_page: int
    sql: str

    @property
    def internal(self) -> bool:
        """Whether SQLite made and keeps it (see :func:`is_internal`)."""
        return is_internal(self.name)

    @property
    def virtual(self) -> bool:
        """Whether it is a virtual table (full-text index, vector index...)."""
        return self.kind == "table" and self.sql.upper().startswith("CREATE VIRTUAL TABLE")

    @property
    def module(self) -> str | None:
        """The module of a virtual table, in lower case (``"fts5"``); ``None`` otherwise."""
        if not self.virtual:
            return None
        found = _MODULE.search(self.sql)
        return found.group(1).lower() if found is not None else None

    @property
    def content_table(self) -> str | None:
        """The table an external-content full-text index reads (``content=``), if any."""
        if not self.virtual:
            return None
        found = _CONTENT.search(self.sql)
        return found.group(1) if found is not None and found.group(1) else None


def schema_objects(
    conn: Connection, *kinds: str, order: Literal["name", "creation"] = "name"
) -> list[SchemaObject]:
    """Return the objects of the main schema.

    Args:
        kinds: only objects of these kinds (``"table"``, ``"index"``, ``"view"``,
            ``"trigger"``); every kind when none is given.
        order: by ``"name"``, or in the order they were made (``"creation"``), in
            which each can be made again: a table before its indexes and triggers.
    """
    sql = "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_schema"
    if kinds:
        sql += f" WHERE type IN ({placeholders(len(kinds))})"
    sql += " ORDER BY rowid" if order == "creation" else " ORDER BY name"
    rows = _execute(conn, sql, kinds).fetchall()
    return [
        SchemaObject(str(kind), str(name), str(table), int(root or 0), str(text or ""))
        for kind, name, table, root, text in rows
    ]


def count_objects(conn: Connection) -> int:
    """Return how many objects the schema holds.

    Counting reads the schema's b-tree from page 1 on, which is where a wrong key, a
    file that is not a database or one cut short shows first: opening uses it as
    its probe.
    """
    return int(_execute(conn, "SELECT count(*) FROM sqlite_schema").fetchone()[0])


def has_table(conn: Connection, name: str) -> bool:
    """Tell whether the main schema has a table called exactly ``name``."""
    row = _execute(
        conn, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


@dataclass(frozen=True, slots=True)
class TableEntry:
    """A table or view as ``pragma_table_list`` describes it.

    Attributes:
        name: its name.
        kind: ``"table"``, ``"view"``, ``"virtual"`` or ``"shadow"`` (a table that
            holds a virtual table's data, such as ``kg_entities_fts_data``).
        without_rowid: declared ``WITHOUT ROWID``: its primary key identifies a row.
        strict: declared ``STRICT``.
    """

    name: str
    kind: str
    without_rowid: bool
    strict: bool

    @property
    def internal(self) -> bool:
        """Whether SQLite made and keeps it (see :func:`is_internal`)."""
        return is_internal(self.name)


def table_list(conn: Connection) -> list[TableEntry]:
    """Return the tables and views of the main schema, SQLite's own included, in name order."""
    rows = _execute(
        conn,
        "SELECT name, type, wr, strict FROM pragma_table_list WHERE schema = 'main' ORDER BY name",
    ).fetchall()
    return [
        TableEntry(str(name), str(kind), bool(wr), bool(strict)) for name, kind, wr, strict in rows
    ]


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a table or view.

    Attributes:
        name: its name.
        declared_type: the type it was declared with (empty when none).
        not_null: declared NOT NULL.
        primary_key: its place in the primary key, from 1; 0 when not part of it.
        hidden: 0 for an ordinary column; 1 for a hidden column of a virtual table,
            2 and 3 for a generated column (virtual, stored). Only
            ``columns(..., hidden=True)`` returns the non-zero ones.
        default: the text of its ``DEFAULT`` expression as declared (``"'active'"``,
            ``"0"``, ``"CURRENT_TIMESTAMP"``); ``None`` when it has none.
    """

    name: str
    declared_type: str
    not_null: bool
    primary_key: int
    hidden: int = 0
    default: str | None = None


def columns(conn: Connection, table: str, *, hidden: bool = False) -> list[Column]:
    """Return the columns of ``table`` in their order (empty when there is no such table).

    Args:
        hidden: include hidden and generated columns (``table_xinfo``): their
            positions are then those the bytecode's ``Column`` opcode counts.
    """
    if hidden:
        rows = _execute(
            conn,
            'SELECT name, type, "notnull", pk, hidden, dflt_value FROM pragma_table_xinfo(?) '
            "ORDER BY cid",
            (table,),
        ).fetchall()
    else:
        rows = _execute(
            conn,
            'SELECT name, type, "notnull", pk, 0, dflt_value FROM pragma_table_info(?) '
            "ORDER BY cid",
            (table,),
        ).fetchall()
    return [
        Column(
            str(name),
            str(kind or ""),
            bool(notnull),
            int(pk),
            int(flag),
            None if default is None else str(default),
        )
        for name, kind, notnull, pk, flag, default in rows
    ]


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """``table.column`` refers to ``parent.target``.

    A key over several columns is one :class:`ForeignKey` per column pair.

    Attributes:
        target: the parent's column; ``None`` when the ``REFERENCES`` clause names
            none, which means the parent's primary key.
    """

    table: str
    column: str
    parent: str
    target: str | None
    #: SQLite's number of the key (``PRAGMA foreign_key_check`` names keys by it).
    id: int = 0


def foreign_keys(conn: Connection, table: str) -> list[ForeignKey]:
    """Return the foreign keys of ``table``, in SQLite's order."""
    rows = _execute(
        conn, 'SELECT "from", "table", "to", id FROM pragma_foreign_key_list(?)', (table,)
    ).fetchall()
    return [
        ForeignKey(
            table, str(column), str(parent), None if target is None else str(target), int(key)
        )
        for column, parent, target, key in rows
    ]


@dataclass(frozen=True, slots=True)
class Index:
    """An index of a table.

    Attributes:
        unique: whether it enforces uniqueness.
        origin: ``"c"`` made by CREATE INDEX, ``"u"`` by a UNIQUE constraint,
            ``"pk"`` by a PRIMARY KEY.
        partial: whether it has a WHERE clause.
        columns: its key columns in order; ``None`` for an expression.
        collations: the collating sequence of each key column, in the same order.
    """

    name: str
    table: str
    unique: bool
    origin: str
    partial: bool
    columns: tuple[str | None, ...]
    collations: tuple[str, ...]


def indexes(conn: Connection, table: str) -> list[Index]:
    """Return the indexes of ``table``, in SQLite's order."""
    listing = _execute(
        conn, 'SELECT name, "unique", origin, partial FROM pragma_index_list(?)', (table,)
    ).fetchall()
    found = []
    for name, unique, origin, partial in listing:
        keys = _execute(
            conn,
            "SELECT name, coll FROM pragma_index_xinfo(?) WHERE key ORDER BY seqno",
            (name,),
        ).fetchall()
        found.append(
            Index(
                str(name),
                table,
                bool(unique),
                str(origin),
                bool(partial),
                tuple(None if c is None else str(c) for c, _ in keys),
                tuple(str(coll) for _, coll in keys),
            )
        )
    return found


def unique_expression_tables(conn: Connection) -> frozenset[str]:
    """Return the tables of the main schema with a unique index on an expression (one
    query for the whole schema, where :func:`indexes` asks table by table)."""
    rows = _execute(
        conn,
        "SELECT DISTINCT m.name FROM sqlite_schema AS m, pragma_index_list(m.name) AS il, "
        "pragma_index_info(il.name) AS ii "
        "WHERE m.type = 'table' AND il.\"unique\" AND ii.cid = -2",
    ).fetchall()
    return frozenset(str(row[0]) for row in rows)


def drop_triggers(conn: Connection, prefixes: str | tuple[str, ...]) -> list[str]:
    """Drop every trigger whose name begins with one of ``prefixes`` (run-time
    triggers a module makes for itself); return their names, sorted."""
    names = sorted(o.name for o in schema_objects(conn, "trigger") if o.name.startswith(prefixes))
    for name in names:
        conn.execute(f"DROP TRIGGER {quote_identifier(name)}")
    return names
