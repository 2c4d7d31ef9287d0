"""Index usage, from the plans of the statements the monitor has seen.

For every statement shape, SQLite is asked two things, both without running it:

- ``EXPLAIN QUERY PLAN``: which indexes it uses (``USING [COVERING] INDEX name``),
  which tables it scans whole (``SCAN t`` without an index) and where SQLite would
  build a temporary index (``AUTOMATIC ... INDEX (col=?)``);
- ``EXPLAIN`` (the bytecode): which columns a scan filters on. A table scan is a
  loop (``Rewind`` ... ``Next``) over a cursor opened on the table's root page; the
  comparisons in it (``Eq``, ``Ne``, ``Lt``, ``Le``, ``Gt``, ``Ge``, ``IsNull``,
  ``NotNull``) whose operand was loaded by ``Column`` from that cursor name the
  table's columns the statement filters by. Equality columns, then one range
  column, make the suggested index. This reads SQLite's own compilation, so
  aliases, views and joins are resolved by SQLite, not guessed from the text.

A statement that finds its rows through an index and then sorts them all
(``SEARCH t USING INDEX idx (a=?)`` followed by ``USE TEMP B-TREE FOR ORDER BY``)
reads and sorts every row matching ``a`` even when it wants only the first few: an
index on the equality columns followed by the ORDER BY columns hands them over in
order, and SQLite stops at the LIMIT. The ORDER BY columns come from the bytecode too:
the key of the record inserted into the sorter (``SorterInsert``, or ``IdxInsert``
into the ephemeral table a LIMIT keeps) is made of ``Column`` loads of the table.

Indexes that no seen statement used are listed; the report recommends dropping one
only when the evidence is there (see :mod:`mangostore.monitor.report`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from mangostore.monitor.connection import execute_unmonitored
from mangostore.monitor.normalize import parameter_skeleton
from mangostore.monitor.stats import explain_plan
from mangostore.schema.introspect import columns as table_columns
from mangostore.schema.introspect import foreign_keys, has_table, schema_objects
from mangostore.schema.introspect import indexes as table_indexes
from mangostore.sql import quote_identifier

_USES_INDEX = re.compile(r"\bUSING (?:COVERING )?INDEX (\S+)")
_TABLE_SCAN = re.compile(r"^\s*SCAN (\S+)\s*$")
_AUTOMATIC = re.compile(
    r"^\s*SEARCH (\S+) USING AUTOMATIC (?:PARTIAL )?(?:COVERING )?INDEX \(([^)]*)\)"
)
_SEARCH_INDEX = re.compile(r"^\s*SEARCH (\S+) USING (?:COVERING )?INDEX (\S+) \(([^)]*)\)")
_EQUALITY = re.compile(r"(\w+)=\?")
#: The plan line of a sort for the ORDER BY (in whole, or after the index's order).
_ORDER_SORT = re.compile(r"^\s*USE TEMP B-TREE FOR (?:RIGHT PART OF |LAST TERM OF )?ORDER BY")
#: Plan lines of work the ORDER BY analysis does not follow (nested or combined selects,
#: and sorts for grouping), where the sorter holding the ORDER BY is not certain.
_NOT_FOLLOWED = re.compile(
    r"CO-ROUTINE|MATERIALIZE|SUBQUERY|COMPOUND|TEMP B-TREE FOR (?:GROUP|DISTINCT)"
)
_KEY_INFO = re.compile(r"^k\((\d+)((?:,[^,)]*)*)\)$")
_EQUALITY_OPS: Final = frozenset({"Eq", "Ne", "IsNull", "NotNull"})
_RANGE_OPS: Final = frozenset({"Lt", "Le", "Gt", "Ge"})
#: Opcodes that overwrite register P2 (so it no longer holds a column).
_WRITES_P2: Final = frozenset(
    {"Integer", "Int64", "Real", "String8", "String", "Null", "Blob", "Variable", "Copy", "SCopy"}
)
#: Opcodes that overwrite register P3.
_WRITES_P3: Final = frozenset({"Function", "PureFunc", "Concat", "Add", "Subtract", "Multiply"})


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """One index and how the statements seen used it.

    Attributes:
        name, table: the index and its table.
        columns: its columns, in order.
        unique: whether it enforces uniqueness.
        origin: ``"c"`` made by CREATE INDEX, ``"u"`` by a UNIQUE constraint,
            ``"pk"`` by a PRIMARY KEY.
        partial: whether it has a WHERE clause.
        uses: runs of statements whose plan uses it.
        statements: distinct statement shapes whose plan uses it.
    """

    name: str
    table: str
    columns: list[str]
    unique: bool
    origin: str
    partial: bool
    uses: int
    statements: int


@dataclass(frozen=True, slots=True)
class TableScan:
    """A statement that reads a table whole, without an index.

    Attributes:
        table: the table scanned.
        shape: the statement's shape.
        executions: how often it ran.
        mean_ms: its mean time.
        plan: its ``EXPLAIN QUERY PLAN`` lines.
        equality_columns, range_columns: the columns the scan filters by.
        suggested_index: a ``CREATE INDEX`` statement, when it filters by a column.
        automatic: SQLite builds a temporary index for it on every run.
    """

    table: str
    shape: str
    executions: int
    mean_ms: float
    plan: list[str]
    equality_columns: list[str] = field(default_factory=list)
    range_columns: list[str] = field(default_factory=list)
    suggested_index: str | None = None
    automatic: bool = False


@dataclass(frozen=True, slots=True)
class SortedSearch:
    """A statement that finds its rows through an index, then sorts all of them.

    Attributes:
        table: the table searched.
        shape: the statement's shape.
        executions: how often it ran.
        mean_ms: its mean time.
        plan: its ``EXPLAIN QUERY PLAN`` lines.
        index: the index it searches.
        equality_columns: the columns the search fixes (``a=?``).
        order_columns: the ORDER BY columns, ``-`` before a descending one.
        suggested_index: a ``CREATE INDEX`` on the equality columns, then the ORDER BY
            columns.
    """

    table: str
    shape: str
    executions: int
    mean_ms: float
    plan: list[str]
    index: str
    equality_columns: list[str]
    order_columns: list[str]
    suggested_index: str


@dataclass(frozen=True, slots=True)
class IndexUsage:
    """Indexes and scans, from the plans of the statements seen.

    Attributes:
        indexes: every index of the database.
        unused: names of indexes no statement seen used (constraint indexes included).
        scans: statements that scan a table without an index.
        statistics: whether ``sqlite_stat1`` (``ANALYZE``'s statistics) exists and
            holds rows.
        statements_planned: statement shapes whose plan was read.
        sorts: statements that search an index, then sort every row found for their
            ORDER BY, with the index that would return the rows in order.
    """

    indexes: list[IndexInfo]
    unused: list[str]
    scans: list[TableScan]
    statistics: bool
    statements_planned: int
    sorts: list[SortedSearch] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Shape:
    shape: str
    sql: str
    count: int
    mean_ms: float


def analyze(
    conn: Any, shapes: Iterable[tuple[str, str, int, float]]
) -> tuple[dict[str, list[str]], IndexUsage]:
    """Plan each ``(shape, sql, count, mean_ms)`` on ``conn``.

    Returns the plan lines per shape and the index usage.
    """
    roots, columns = _schema(conn)
    indexes = _indexes(conn)
    uses: dict[str, int] = {}
    shape_uses: dict[str, int] = {}
    plans: dict[str, list[str]] = {}
    scans: list[TableScan] = []
    sorts: list[SortedSearch] = []
    planned = 0
    for item in (_Shape(*s) for s in shapes):
        plan = explain_plan(conn, item.sql)
        plans[item.shape] = plan
        if not plan:
            continue
        planned += 1
        used = {m.group(1) for line in plan for m in _USES_INDEX.finditer(line)}
        for name in used:
            uses[name] = uses.get(name, 0) + item.count
            shape_uses[name] = shape_uses.get(name, 0) + 1
        scans += _scans(conn, item, plan, roots, columns)
        sorted_search = _sorted_search(conn, item, plan, roots, columns, indexes)
        if sorted_search is not None:
            sorts.append(sorted_search)
    infos = [
        IndexInfo(
            name=name,
            table=table,
            columns=cols,
            unique=unique,
            origin=origin,
            partial=partial,
            uses=uses.get(name, 0),
            statements=shape_uses.get(name, 0),
        )
        for name, table, cols, unique, origin, partial in indexes
    ]
    usage = IndexUsage(
        indexes=infos,
        unused=[i.name for i in infos if i.uses == 0],
        scans=sorted(scans, key=lambda s: s.executions * s.mean_ms, reverse=True),
        statistics=_has_statistics(conn),
        statements_planned=planned,
        sorts=sorted(sorts, key=lambda s: s.executions * s.mean_ms, reverse=True),
    )
    return plans, usage


def _scans(
    conn: Any,
    item: _Shape,
    plan: list[str],
    roots: dict[int, str],
    columns: dict[str, list[str]],
) -> list[TableScan]:
    named_scans = [m.group(1) for line in plan if (m := _TABLE_SCAN.match(line))]
    automatic = [(m.group(1), m.group(2)) for line in plan if (m := _AUTOMATIC.match(line))]
    if not named_scans and not automatic:
        return []
    filters = _scan_filters(conn, item.sql, roots, columns)
    out: list[TableScan] = []
    for table, (equal, ranged) in filters.items():
        out.append(
            TableScan(
                table=table,
                shape=item.shape,
                executions=item.count,
                mean_ms=item.mean_ms,
                plan=plan,
                equality_columns=equal,
                range_columns=ranged,
                suggested_index=suggest_index(table, equal, ranged),
            )
        )
    scanned = set(filters)
    for alias in named_scans:
        if alias in columns and alias not in scanned:
            out.append(TableScan(alias, item.shape, item.count, item.mean_ms, plan))
            scanned.add(alias)
    for alias, constraint in automatic:
        table = alias if alias in columns else (next(iter(filters)) if len(filters) == 1 else alias)
        cols = [c.split("=")[0].strip() for c in constraint.split(" AND ") if "=" in c]
        if table in scanned:
            out = [s for s in out if s.table != table]
        out.append(
            TableScan(
                table=table,
                shape=item.shape,
                executions=item.count,
                mean_ms=item.mean_ms,
                plan=plan,
                equality_columns=cols,
                suggested_index=suggest_index(table, cols, []) if table in columns else None,
                automatic=True,
            )
        )
    return out


def _scan_filters(
    conn: Any, sql: str, roots: dict[int, str], columns: dict[str, list[str]]
) -> dict[str, tuple[list[str], list[str]]]:
    """Return, per table the bytecode loops over whole, its equality and range columns."""
    params = parameter_skeleton(sql)
    if params is None:
        return {}
    try:
        program = execute_unmonitored(conn, "EXPLAIN " + sql, params).fetchall()
    except Exception:
        return {}
    cursors: dict[int, str] = {}
    scanned: list[int] = []
    loaded: dict[int, tuple[int, int]] = {}
    found: dict[int, tuple[list[str], list[str]]] = {}
    for row in program:
        op, p1, p2, p3 = str(row[1]), row[2], row[3], row[4]
        if op in ("OpenRead", "OpenWrite") and p2 in roots:
            cursors[p1] = roots[p2]
        elif op in ("Rewind", "Last") and p1 in cursors and p1 not in scanned:
            scanned.append(p1)
        elif op == "Column":
            loaded[p3] = (p1, p2)
        elif op in _WRITES_P2:
            loaded.pop(p2, None)
        elif op in _WRITES_P3:
            loaded.pop(p3, None)
        elif op in _EQUALITY_OPS or op in _RANGE_OPS:
            for reg, other in (
                ((p1, p3), (p3, p1)) if op not in ("IsNull", "NotNull") else ((p1, -1),)
            ):
                source = loaded.get(reg)
                if source is None or source[0] not in scanned:
                    continue
                other_source = loaded.get(other)
                if other_source is not None and other_source[0] == source[0]:
                    continue  # two columns of the same row: no index helps
                table = cursors[source[0]]
                names = columns.get(table, [])
                if source[1] >= len(names):
                    continue
                name = names[source[1]]
                equal, ranged = found.setdefault(source[0], ([], []))
                target = equal if op in _EQUALITY_OPS else ranged
                if name not in target:
                    target.append(name)
    out: dict[str, tuple[list[str], list[str]]] = {}
    for cursor in scanned:
        equal, ranged = found.get(cursor, ([], []))
        table = cursors[cursor]
        if table in out:
            continue
        out[table] = (equal, [c for c in ranged if c not in equal])
    return out


def suggest_index(table: str, equality: list[str], ranged: list[str]) -> str | None:
    """Return a ``CREATE INDEX`` for the columns a scan filters by, or ``None``.

    Equality columns come first, then the first range column: an index can serve
    equalities on its leading columns and one range after them.
    """
    cols = list(equality) + [c for c in ranged[:1] if c not in equality]
    if not cols:
        return None
    name = "idx_" + "_".join(re.sub(r"\W+", "_", part) for part in (table, *cols))
    return (
        f"CREATE INDEX {quote_identifier(name)} ON {quote_identifier(table)}"
        f"({', '.join(quote_identifier(c) for c in cols)})"
    )


def _sorted_search(
    conn: Any,
    item: _Shape,
    plan: list[str],
    roots: dict[int, str],
    columns: dict[str, list[str]],
    indexes: list[tuple[str, str, list[str], bool, str, bool]],
) -> SortedSearch | None:
    """Return the statement as a :class:`SortedSearch` when its plan searches an index
    on equality columns and then sorts for the ORDER BY; ``None`` otherwise (or when
    which sort serves the ORDER BY, or which table it orders, is not certain)."""
    if not any(_ORDER_SORT.match(line) for line in plan):
        return None
    if any(_NOT_FOLLOWED.search(line) for line in plan):
        return None
    searches = [m.groups() for line in plan if (m := _SEARCH_INDEX.match(line))]
    keys = _order_keys(conn, item.sql, roots, columns)
    if keys is None:
        return None
    table, order = keys
    found = [s for s in searches if s[0] == table] or (searches if len(searches) == 1 else [])
    if not found:
        return None
    _, index, constraint = found[0]
    equality = [c for c in dict.fromkeys(_EQUALITY.findall(constraint)) if c in columns[table]]
    known = {name: (cols, unique) for name, _t, cols, unique, _o, _p in indexes}
    cols, unique = known.get(index, ([], False))
    if not equality or (unique and set(cols) <= set(equality)):
        return None  # one row per search: nothing to sort
    wanted = equality + [c for c, _ in order if c not in equality]
    for name, on, cols, _unique, _origin, partial in indexes:
        if on == table and not partial and cols[: len(wanted)] == wanted and name != index:
            return None  # the index exists; statistics or the plan chose another
    return SortedSearch(
        table=table,
        shape=item.shape,
        executions=item.count,
        mean_ms=item.mean_ms,
        plan=plan,
        index=index,
        equality_columns=equality,
        order_columns=[("-" if descending else "") + c for c, descending in order],
        suggested_index=suggest_sort_index(table, equality, order),
    )


def _order_keys(
    conn: Any, sql: str, roots: dict[int, str], columns: dict[str, list[str]]
) -> tuple[str, list[tuple[str, bool]]] | None:
    """Return the table and the ``(column, descending)`` keys of the one sort whose
    key is made of that table's columns; ``None`` when there is not exactly one."""
    params = parameter_skeleton(sql)
    if params is None:
        return None
    try:
        program = execute_unmonitored(conn, "EXPLAIN " + sql, params).fetchall()
    except Exception:
        return None
    cursors: dict[int, str] = {}
    sorters: dict[int, list[bool]] = {}
    loaded: dict[int, tuple[int, int]] = {}
    records: dict[int, tuple[int, int]] = {}
    found: set[tuple[str, tuple[tuple[str, bool], ...]]] = set()
    for row in program:
        op, p1, p2, p3, p4 = str(row[1]), row[2], row[3], row[4], row[5]
        if op in ("OpenRead", "OpenWrite") and p2 in roots:
            cursors[p1] = roots[p2]
        elif op in ("SorterOpen", "OpenEphemeral") and (info := _KEY_INFO.match(str(p4))):
            fields = info.group(2).split(",")[1:]
            sorters[p1] = [f.startswith("-") for f in fields[: int(info.group(1))]]
        elif op == "Column":
            loaded[p3] = (p1, p2)
        elif op in ("Copy", "SCopy"):
            source = loaded.get(p1)
            if source is None:
                loaded.pop(p2, None)
            else:
                loaded[p2] = source
        elif op == "MakeRecord":
            records[p3] = (p1, p2)
            loaded.pop(p3, None)
        elif op in ("SorterInsert", "IdxInsert") and p1 in sorters and p2 in records:
            key = _sort_key(sorters[p1], records[p2], loaded, cursors, columns)
            if key is not None:
                found.add(key)
        elif op in _WRITES_P2:
            loaded.pop(p2, None)
        elif op in _WRITES_P3:
            loaded.pop(p3, None)
    if len(found) != 1:
        return None
    table, order = found.pop()
    return table, list(order)


def _sort_key(
    descending: list[bool],
    record: tuple[int, int],
    loaded: dict[int, tuple[int, int]],
    cursors: dict[int, str],
    columns: dict[str, list[str]],
) -> tuple[str, tuple[tuple[str, bool], ...]] | None:
    """The table and columns a sorter's key registers were loaded from, if one table's."""
    start, _count = record
    tables: set[str] = set()
    key: list[tuple[str, bool]] = []
    for offset, desc in enumerate(descending):
        source = loaded.get(start + offset)
        if source is None or source[0] not in cursors:
            return None
        table = cursors[source[0]]
        names = columns.get(table, [])
        if source[1] >= len(names):
            return None
        tables.add(table)
        key.append((names[source[1]], desc))
    if len(tables) != 1 or not key:
        return None
    return tables.pop(), tuple(key)


def suggest_sort_index(table: str, equality: list[str], order: list[tuple[str, bool]]) -> str:
    """Return a ``CREATE INDEX`` on the equality columns, then the ORDER BY columns.

    SQLite reads an index backwards as readily as forwards, so directions are written
    only where they differ from the first ORDER BY column's.
    """
    first = order[0][1] if order else False
    parts = [(c, False) for c in equality] + [
        (c, desc != first) for c, desc in order if c not in equality
    ]
    name = "idx_" + "_".join(re.sub(r"\W+", "_", part) for part in (table, *(c for c, _ in parts)))
    listed = ", ".join(quote_identifier(c) + (" DESC" if flip else "") for c, flip in parts)
    return f"CREATE INDEX {quote_identifier(name)} ON {quote_identifier(table)}({listed})"


def _schema(conn: Any) -> tuple[dict[int, str], dict[str, list[str]]]:
    """Return root page -> table name, and table -> column names (by column index)."""
    roots = {o.root_page: o.name for o in schema_objects(conn, "table") if o.root_page > 0}
    columns = {
        name: [c.name for c in table_columns(conn, name, hidden=True)] for name in roots.values()
    }
    return roots, columns


def _indexes(conn: Any) -> list[tuple[str, str, list[str], bool, str, bool]]:
    out = []
    for table in schema_objects(conn, "table"):
        if table.root_page <= 0 or table.internal:
            continue
        for index in table_indexes(conn, table.name):
            # An expression column has no name; "None" keeps it from matching a column.
            columns = [str(c) for c in index.columns]
            out.append(
                (index.name, index.table, columns, index.unique, index.origin, index.partial)
            )
    out.sort(key=lambda i: (i[1], i[0]))
    return out


def _has_statistics(conn: Any) -> bool:
    if not has_table(conn, "sqlite_stat1"):
        return False
    return execute_unmonitored(conn, "SELECT 1 FROM sqlite_stat1 LIMIT 1").fetchone() is not None


def foreign_key_columns(conn: Any, table: str) -> set[str]:
    """Return the columns of ``table`` that refer to another table."""
    return {key.column for key in foreign_keys(conn, table)}
