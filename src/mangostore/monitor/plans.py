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
from mangostore.sql import quote_identifier

_USES_INDEX = re.compile(r"\bUSING (?:COVERING )?INDEX (\S+)")
_TABLE_SCAN = re.compile(r"^\s*SCAN (\S+)\s*$")
_AUTOMATIC = re.compile(
    r"^\s*SEARCH (\S+) USING AUTOMATIC (?:PARTIAL )?(?:COVERING )?INDEX \(([^)]*)\)"
)
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
class IndexUsage:
    """Indexes and scans, from the plans of the statements seen.

    Attributes:
        indexes: every index of the database.
        unused: names of indexes no statement seen used (constraint indexes included).
        scans: statements that scan a table without an index.
        statistics: whether ``sqlite_stat1`` (``ANALYZE``'s statistics) exists and
            holds rows.
        statements_planned: statement shapes whose plan was read.
    """

    indexes: list[IndexInfo]
    unused: list[str]
    scans: list[TableScan]
    statistics: bool
    statements_planned: int


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


def _schema(conn: Any) -> tuple[dict[int, str], dict[str, list[str]]]:
    """Return root page -> table name, and table -> column names (by column index)."""
    rows = execute_unmonitored(
        conn,
        "SELECT name, rootpage FROM sqlite_schema WHERE type = 'table' AND rootpage > 0",
    ).fetchall()
    roots = {int(root): str(name) for name, root in rows}
    columns: dict[str, list[str]] = {}
    for name in roots.values():
        info = execute_unmonitored(
            conn, "SELECT name FROM pragma_table_xinfo(?) ORDER BY cid", (name,)
        )
        columns[name] = [str(r[0]) for r in info.fetchall()]
    return roots, columns


def _indexes(conn: Any) -> list[tuple[str, str, list[str], bool, str, bool]]:
    tables = execute_unmonitored(
        conn,
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND rootpage > 0 "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    ).fetchall()
    out = []
    for (table,) in tables:
        listing = execute_unmonitored(
            conn, 'SELECT name, "unique", origin, partial FROM pragma_index_list(?)', (table,)
        ).fetchall()
        for name, unique, origin, partial in listing:
            cols = execute_unmonitored(
                conn, "SELECT name FROM pragma_index_info(?) ORDER BY seqno", (name,)
            ).fetchall()
            out.append(
                (
                    str(name),
                    str(table),
                    [str(c[0]) for c in cols],
                    bool(unique),
                    str(origin),
                    bool(partial),
                )
            )
    out.sort(key=lambda i: (i[1], i[0]))
    return out


def _has_statistics(conn: Any) -> bool:
    exists = execute_unmonitored(
        conn, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'sqlite_stat1'"
    ).fetchone()
    if exists is None:
        return False
    return execute_unmonitored(conn, "SELECT 1 FROM sqlite_stat1 LIMIT 1").fetchone() is not None


def foreign_key_columns(conn: Any, table: str) -> set[str]:
    """Return the columns of ``table`` that refer to another table."""
    rows = execute_unmonitored(
        conn, 'SELECT "from" FROM pragma_foreign_key_list(?)', (table,)
    ).fetchall()
    return {str(r[0]) for r in rows}
