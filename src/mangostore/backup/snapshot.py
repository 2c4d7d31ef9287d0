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

Tables keyed by rowid are compared in *blocks* of ``2**BLOCK_SHIFT`` consecutive rowids
(format version 2): the rows are read in rowid order, grouped by block as they arrive,
and each block's keyed digest (of its literals joined by ``,``) is what incremental
backups compare; a changed block is sent again whole. Python then hashes one value per
block rather than one per row. Tables ``WITHOUT ROWID`` are compared row by row, keyed
by their primary key.

Virtual tables are not read row by row: their data lives in their shadow tables, which
are copied like any other table, so full-text indexes come back exactly as they were.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import operator
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from mangostore.engine.pragmas import Connection
from mangostore.schema import derived, introspect
from mangostore.sql import quote_identifier

__all__ = [
    "BLOCK_SHIFT",
    "LOCAL_TABLES",
    "LOG_TRIGGER_PREFIX",
    "RECORD_BYTES",
    "Block",
    "Key",
    "SchemaItem",
    "SchemaPlan",
    "TablePlan",
    "block_rows",
    "is_utf8",
    "read_groups",
    "read_literals",
    "read_plan",
    "scan_blocks",
    "scan_rows",
]

Key = int | str
#: Rows fetched from SQLite at a time.
FETCH_ROWS: Final = 1000
#: A rows record is sent once it holds this many bytes of literals (a group of rows
#: read at once aims at it too).
RECORD_BYTES: Final = 256 * 1024
#: Blocks handed to the caller at a time.
FETCH_BLOCKS: Final = 256
#: A block holds the rows whose rowid is the same once shifted right by this (16 rowids).
#: Smaller blocks send fewer unchanged rows again when changes are scattered; larger
#: ones cost a little less to digest. The index records it per table.
BLOCK_SHIFT: Final = 4
_FIRST = operator.itemgetter(0)
_SECOND = operator.itemgetter(1)
#: SQLite's own tables that are copied (the others are rebuilt, or not needed).
_COPIED_INTERNAL: Final = frozenset({"sqlite_sequence"})
#: Tables whose rows are this copy's own bookkeeping (the change log of
#: :mod:`mangostore.backup.changelog`): a backup keeps their schema, not their rows, so a
#: restored database starts a log of its own.
LOCAL_TABLES: Final = frozenset(
    {"backup_log", "backup_log_counts", "backup_log_probe", "backup_log_state"}
)
#: The names of the change log's triggers begin so; a backup does not keep them.
LOG_TRIGGER_PREFIX: Final = "backup_log_"


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
            table's shadow table, ``sqlite_sequence``): emptied first. SQLite writes
            these itself, so no trigger sees their writes: incremental backups compare
            them with the parent's index, and the change log covers every other table.
    """

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    made_by_sqlite: bool

    @property
    def by_rowid(self) -> bool:
        """Whether rows are keyed by rowid."""
        return self.key == ("rowid",)

    @property
    def logged(self) -> bool:
        """Whether the change log records this table's writes (every table SQLite does
        not write itself)."""
        return not self.made_by_sqlite

    def key_sql(self, prefix: str = "", shift: int = BLOCK_SHIFT) -> str:
        """The expression of a row's key as incremental backups name it: its block
        (``rowid >> shift``), or its primary key's literals joined by ``,`` (columns
        read from ``prefix``, such as ``NEW.`` in a trigger)."""
        if self.by_rowid:
            return f"{prefix}rowid >> {int(shift)}"
        return " || ',' || ".join(f"quote({prefix}{quote_identifier(c)})" for c in self.key)

    def keyed_sql(self, keys: Sequence[Key], *, utf8: bool) -> str:
        """The statement that reads the literal rows with these primary keys (a table
        ``WITHOUT ROWID``; keys as :meth:`key_sql` renders them).

        The keys are SQLite's own ``quote()`` output, read from the change log, and go
        into the statement as the literals they are, in a row-value ``IN`` that the
        primary key's index serves (a comparison with :meth:`key_sql` would scan).
        """
        return (
            f"SELECT {self.literal_sql(utf8=utf8)} FROM {quote_identifier(self.name)} "
            f"WHERE {self._keys_match(keys)}"
        )

    def _keys_match(self, keys: Sequence[Key]) -> str:
        cols = ", ".join(quote_identifier(c) for c in self.key)
        listed = ",".join(f"({k})" for k in keys)
        return f"({cols}) IN (VALUES {listed})"

    def _column_sql(self) -> list[str]:
        return ["rowid" if c == "rowid" else quote_identifier(c) for c in self.columns]

    def literal_sql(self, *, utf8: bool) -> str:
        """The expression that renders one row as ``(v1,v2,..)``, as bytes when ``utf8``
        (the text's own encoding, so no decoding and encoding again in Python)."""
        values = " || ',' || ".join(f"quote({c})" for c in self._column_sql())
        text = f"'(' || {values} || ')'"
        return f"CAST({text} AS BLOB)" if utf8 else text

    def select_sql(self, *, utf8: bool) -> str:
        """The statement that reads ``(key, literal row)`` for every row of a table
        without a rowid (one with a rowid is read in blocks: :meth:`block_sql`)."""
        return (
            f"SELECT {self.key_sql()}, {self.literal_sql(utf8=utf8)} "
            f"FROM {quote_identifier(self.name)}"
        )

    def block_sql(self, shift: int, *, utf8: bool) -> str:
        """The statement that reads ``(block, literal row)`` for every row of a rowid
        table, in rowid order (the table's own order: SQLite sorts nothing)."""
        return (
            f"SELECT rowid >> {int(shift)}, {self.literal_sql(utf8=utf8)} "
            f"FROM {quote_identifier(self.name)} ORDER BY rowid"
        )

    def group_sql(self, *, utf8: bool) -> str:
        """The statement that reads, for a rowid table, up to ``?`` rows after rowid ``?``
        (in rowid order) as one value: their literals joined by ``,``, then the last
        rowid and the number of rows."""
        inner = (
            f"SELECT rowid AS r, {self.literal_sql(utf8=False)} AS l "
            f"FROM {quote_identifier(self.name)} WHERE rowid > ? ORDER BY rowid LIMIT ?"
        )
        joined = "CAST(group_concat(l, ',') AS BLOB)" if utf8 else "group_concat(l, ',')"
        return f"SELECT {joined}, max(r), count(*) FROM ({inner})"

    def range_sql(self, *, utf8: bool) -> str:
        """The statement that reads the literal rows whose rowid is between ``?`` and ``?``."""
        return (
            f"SELECT {self.literal_sql(utf8=utf8)} FROM {quote_identifier(self.name)} "
            "WHERE rowid BETWEEN ? AND ? ORDER BY rowid"
        )

    def erase_sql(self) -> str:
        """A DELETE of the rows whose rowid is between ``?`` and ``?`` (a block or more)."""
        return f"DELETE FROM {quote_identifier(self.name)} WHERE rowid BETWEEN ? AND ?"

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
        return f"DELETE FROM {table} WHERE {self._keys_match(keys)}"


@dataclass(frozen=True)
class SchemaPlan:
    """The schema of a snapshot and how its tables are copied."""

    items: tuple[SchemaItem, ...]
    tables: tuple[TablePlan, ...]
    user_version: int
    application_id: int
    #: Full-text indexes built again at restore instead of copied (their index shadow
    #: tables are not in ``tables``), each with the statements that build it
    #: (:mod:`mangostore.schema.derived`).
    rebuilt: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @functools.cached_property
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
        doc: dict[str, Any] = {
            "items": [asdict(i) for i in self.items],
            "tables": [asdict(t) for t in self.tables],
            "user_version": self.user_version,
            "application_id": self.application_id,
        }
        if self.rebuilt:  # absent from older plans, whose digest must not change
            doc["rebuilt"] = [[name, list(sql)] for name, sql in self.rebuilt]
        return doc

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
            tuple((str(name), tuple(map(str, sql))) for name, sql in doc.get("rebuilt", ())),
        )


def read_plan(conn: Connection) -> SchemaPlan:
    """Read the schema of the database ``conn`` is in a read transaction on."""
    listed = introspect.table_list(conn)
    shadow = {entry.name for entry in listed if entry.kind == "shadow"}
    rebuilt, skipped = _rebuilt_indexes(conn, shadow)
    tables: list[TablePlan] = []
    for entry in listed:
        if entry.kind not in ("table", "shadow") or entry.name in skipped:
            continue
        if entry.internal and entry.name not in _COPIED_INTERNAL:
            continue
        if entry.name in LOCAL_TABLES:
            continue
        cols = introspect.columns(conn, entry.name)
        names = tuple(c.name for c in cols)
        if entry.without_rowid:
            pk = tuple(c.name for c in sorted(cols, key=lambda c: c.primary_key) if c.primary_key)
            tables.append(TablePlan(entry.name, names, pk, entry.kind == "shadow"))
            continue
        pk_cols = [c for c in cols if c.primary_key]
        aliased = (
            len(pk_cols) == 1
            and pk_cols[0].declared_type.upper() == "INTEGER"
            and not _has_pk_index(conn, entry.name)
        )
        columns = names if aliased else ("rowid", *names)
        made = entry.kind == "shadow" or entry.internal
        tables.append(TablePlan(entry.name, columns, ("rowid",), made))
    items = [
        SchemaItem(o.kind, o.name, o.table, o.sql)
        for o in introspect.schema_objects(conn, order="creation")
        if o.sql
        and o.name not in shadow
        and not introspect.is_internal(o.name)
        and not (o.kind == "trigger" and o.name.startswith(LOG_TRIGGER_PREFIX))
    ]
    user_version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    application_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    return SchemaPlan(tuple(items), tuple(tables), user_version, application_id, rebuilt)


def _rebuilt_indexes(
    conn: Connection, shadow: set[str]
) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], set[str]]:
    """The full-text indexes a restore builds again, with their statements, and the
    shadow tables a backup therefore leaves out."""
    rebuilt = []
    skipped: set[str] = set()
    for obj in introspect.schema_objects(conn, order="creation"):
        if obj.kind != "table" or not obj.sql or not derived.is_fts5(obj.sql):
            continue
        statements = derived.rebuild_statements(obj.name, f"{obj.name}_content" in shadow)
        if not statements:
            continue
        rebuilt.append((obj.name, statements))
        skipped.update(
            name
            for name in (f"{obj.name}_{suffix}" for suffix in derived.REBUILT_SHADOWS)
            if name in shadow
        )
    return tuple(rebuilt), skipped


def _has_pk_index(conn: Connection, table: str) -> bool:
    """Whether SQLite made an index for the primary key of ``table``: then an INTEGER
    primary key is an ordinary column, not the rowid (``INTEGER PRIMARY KEY DESC``)."""
    return any(index.origin == "pk" for index in introspect.indexes(conn, table))


def is_utf8(conn: Connection) -> bool:
    """Whether the database's text is UTF-8 (then literals are read as bytes)."""
    return str(conn.execute("PRAGMA encoding").fetchone()[0]).upper() == "UTF-8"


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def read_groups(
    conn: Connection, table: TablePlan, *, utf8: bool, target_bytes: int = RECORD_BYTES
) -> Iterator[tuple[bytes, int]]:
    """Every row of a rowid ``table``, as groups of literals joined by ``,`` (each with
    its number of rows), in rowid order.

    SQLite renders and joins a group's rows, so Python makes one object a group instead
    of one a row: a full backup's reading is mostly this per-row work. A group holds at
    most :data:`FETCH_ROWS` rows (the most any read holds at once), fewer when rows are
    large, aiming at ``target_bytes``.
    """
    sql = table.group_sql(utf8=utf8)
    after: float = float("-inf")  # below every rowid
    size = FETCH_ROWS
    while True:
        joined, last, count = conn.execute(sql, (after, size)).fetchone()
        if not count:
            return
        data = joined if utf8 else _as_bytes(joined)
        yield data, count
        after = last
        size = max(1, min(FETCH_ROWS, target_bytes * count // max(len(data), 1)))


def scan_rows(
    conn: Connection, table: TablePlan, *, utf8: bool
) -> Iterator[list[tuple[Key, bytes]]]:
    """Every row of ``table`` as ``(key, literal)``, a batch at a time."""
    cursor = conn.execute(table.select_sql(utf8=utf8))
    cursor.row_factory = None  # plain tuples: the rows are only unpacked
    while True:
        batch = cursor.fetchmany(FETCH_ROWS)
        if not batch:
            return
        yield batch if utf8 else [(key, _as_bytes(text)) for key, text in batch]


@dataclass(slots=True)
class Block:
    """The rows of one block of a rowid table.

    Attributes:
        number: the block (``rowid >> shift``).
        rows: how many rows it holds.
        parts: the rows' literals, in rowid order; ``b",".join(parts)`` is the
            block's text, which its digest covers.
    """

    number: int
    rows: int
    parts: list[bytes]


def scan_blocks(
    conn: Connection, table: TablePlan, *, shift: int = BLOCK_SHIFT, utf8: bool
) -> Iterator[list[Block]]:
    """Every block of the rowid table ``table``, in rowid order, a batch at a time."""
    cursor = conn.execute(table.block_sql(shift, utf8=utf8))
    cursor.row_factory = None
    # The rows are regrouped by block in C (chain, groupby, itemgetter): Python runs
    # once a block, not once a row.
    rows = itertools.chain.from_iterable(iter(functools.partial(cursor.fetchmany, FETCH_ROWS), []))
    out: list[Block] = []
    for number, group in itertools.groupby(rows, key=_FIRST):
        parts = list(map(_SECOND, group))
        if not utf8:
            parts = [_as_bytes(p) for p in parts]
        out.append(Block(number, len(parts), parts))
        if len(out) >= FETCH_BLOCKS:
            yield out
            out = []
    if out:
        yield out


def read_literals(
    conn: Connection, sql: str, params: Sequence[object] = (), *, utf8: bool
) -> Iterator[list[bytes]]:
    """The literal rows a statement of one column reads (such as :meth:`TablePlan.range_sql`),
    a batch at a time."""
    cursor = conn.execute(sql, params)
    cursor.row_factory = None
    while batch := cursor.fetchmany(FETCH_ROWS):
        yield list(map(_FIRST, batch)) if utf8 else [_as_bytes(row[0]) for row in batch]


def block_rows(
    conn: Connection, table: TablePlan, number: int, *, shift: int = BLOCK_SHIFT, utf8: bool
) -> Block:
    """Block ``number`` of ``table``, read on its own (by rowid range)."""
    low = number << shift
    sql = table.range_sql(utf8=utf8)
    parts = list(
        itertools.chain.from_iterable(
            read_literals(conn, sql, (low, low + (1 << shift) - 1), utf8=utf8)
        )
    )
    return Block(number, len(parts), parts)
