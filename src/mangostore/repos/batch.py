"""``create_many``'s rows: checked column by column, inserted many to a statement.

One INSERT naming many rows (``VALUES (...), (...), ...``) costs SQLite about half of
what ``executemany`` of the same rows costs, because the statement is stepped once.
Rows that name the same columns are cut into statements by
:func:`mangostore.sql.statement_sizes`: the same few statement texts then serve every
batch, and stay prepared in the driver's cache.

Checking each value of each row with :meth:`ColumnSpec.check` costs more than SQLite
takes to store it. :func:`plain_rows` checks a run of rows naming the same plain
columns (text, integers, numbers) a column at a time instead, with the checks made of
the interpreter's own loops (``set(map(type, ...))``, ``min``, ``all(map(...))``). It
accepts exactly the values :meth:`ColumnSpec.check` accepts unchanged, and declines
the run otherwise (anything else, or a value that is wrong): the caller then checks
the rows one by one, which names the failing row and field.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

from mangostore.engine.connection import is_driver_error
from mangostore.engine.pragmas import Connection
from mangostore.repos.spec import INT64_MAX, INT64_MIN, ColumnSpec, TableSpec, encodable
from mangostore.repos.stored import check_count
from mangostore.sql import execute_rows, quote_identifier, repeated_rows

__all__ = [
    "StatementRefused",
    "insert_rows",
    "insert_sql",
    "plain_rows",
]


@functools.lru_cache(maxsize=512)
def insert_sql(quoted_table: str, columns: tuple[str, ...], rows: int) -> str:
    """Return ``INSERT INTO table (columns) VALUES (?, ...), ...`` for ``rows`` rows.

    ``quoted_table`` is already quoted; ``columns`` come from the table's allow-list
    and are quoted here.
    """
    marks = "(" + ", ".join("?" * len(columns)) + ")"
    names = ", ".join(map(quote_identifier, columns))
    return f"INSERT INTO {quoted_table} ({names}) VALUES " + repeated_rows(marks, rows)


class StatementRefused(Exception):
    """SQLite refused a multi-row INSERT (the driver's error is the ``__cause__``): the
    caller rolls the batch back and tries the rows one by one, to name the failing one."""


def insert_rows(
    conn: Connection,
    table: str,
    quoted_table: str,
    columns: tuple[str, ...],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Insert ``rows`` (each the bound values of ``columns``, in that order) with
    multi-row statements.

    Raises:
        StatementRefused: SQLite refused a statement (a constraint, a full disk...).
        DatabaseError: a statement stored another number of rows than it named.
    """
    try:
        execute_rows(
            conn,
            functools.partial(insert_sql, quoted_table, columns),
            rows,
            lambda size, cursor: check_count(table, cursor.rowcount, size),
        )
    except Exception as exc:
        if is_driver_error(exc):
            raise StatementRefused from exc
        raise


_NONE = type(None)
_TEXT = frozenset({str})
_INTEGERS = frozenset({int})
_NUMBERS = frozenset({int, float})


def plain_rows(
    spec: TableSpec, columns: tuple[str, ...], items: Sequence[Mapping[str, Any]]
) -> list[tuple[Any, ...]] | None:
    """Check a run of items that all name exactly ``columns``, column by column.

    Returns:
        Each item's values in ``columns`` order, as :meth:`ColumnSpec.check` would
        bind them (unchanged); ``None`` when a column is not a plain text, integer or
        number column of the table, or a value is not one :meth:`ColumnSpec.check`
        accepts as it is.
    """
    specs = [spec.columns.get(name) for name in columns]
    if any(column is None or column.kind not in ("text", "int", "float") for column in specs):
        return None
    pick = operator.itemgetter(*columns)
    rows = [pick(item) for item in items]
    if len(columns) == 1:
        rows = [(value,) for value in rows]
    try:
        if all(map(_accepts, specs, zip(*rows, strict=True))):  # type: ignore[arg-type]
            return rows
    except (TypeError, ValueError, OverflowError):
        pass  # unhashable, unorderable or huge values: the full checks say what is wrong
    return None


def _accepts(column: ColumnSpec, values: Sequence[Any]) -> bool:
    """Tell whether :meth:`ColumnSpec.check` accepts every one of ``values`` unchanged."""
    types = set(map(type, values))
    present: Sequence[Any] = values
    if _NONE in types:
        if not column.nullable:
            return False
        types.discard(_NONE)
        present = [value for value in values if value is not None]
    if not present:
        return True
    if column.kind == "text":
        if not types <= _TEXT:
            return False
        if column.choices is not None:
            return set(present) <= set(column.choices)
        return all(map(str.isascii, present)) or all(map(encodable, present))
    if column.kind == "int":
        return types <= _INTEGERS and min(present) >= INT64_MIN and max(present) <= INT64_MAX
    return types <= _NUMBERS and all(map(math.isfinite, present))
