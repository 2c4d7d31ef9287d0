"""Building SQL text: identifier quoting (the one place names enter SQL), parameter
marks for lists of values, and statements that write many rows at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

#: Most rows one multi-row statement writes.
MAX_ROWS = 256
#: Most parameters one statement binds: SQLite's smallest default limit, so that any
#: build of SQLite accepts the statement.
MAX_PARAMETERS = 999


def quote_identifier(name: str) -> str:
    """Quote a table or column name for SQL.

    Names reaching this function already come from an allow-list built from the
    schema; quoting them as well means a name can never be read as SQL.
    """
    return '"' + name.replace('"', '""') + '"'


def quote_text(value: str) -> str:
    """Quote ``value`` as an SQL string literal, for statement text that cannot take a
    parameter (a trigger's body, a dump). Values bound at run time are parameters."""
    return "'" + value.replace("'", "''") + "'"


#: Most values bound in one ``IN (...)`` list: well under SQLite's variable limit.
IN_LIST_SIZE = 500


def placeholders(count: int) -> str:
    """Return ``count`` parameter marks, ``?, ?, ?``, for an ``IN`` list or ``VALUES``."""
    return ", ".join("?" * count)


def batches(items: Sequence[T], size: int = IN_LIST_SIZE) -> Iterator[Sequence[T]]:
    """Yield ``items`` in slices of at most ``size``: one ``IN`` list each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def statement_sizes(rows: int, columns: int) -> Iterator[int]:
    """Yield how many rows each statement writes, in order, to write ``rows`` rows of
    ``columns`` values: the largest allowed power of two while it fits, then the powers
    of two of what is left (so that a few statement texts serve every batch and stay
    prepared in the driver's cache)."""
    largest = 1
    while largest * 2 <= MAX_ROWS and largest * 2 * max(columns, 1) <= MAX_PARAMETERS:
        largest *= 2
    size = largest
    while rows:
        while size > rows:
            size //= 2
        yield size
        rows -= size


def repeated_rows(row: str, rows: int) -> str:
    """Return ``row`` (a parenthesised ``VALUES`` row such as ``(?, ?, 0)``) ``rows``
    times, comma-separated (callers cache the statements they build with it)."""
    return ", ".join([row] * rows)


class Executes(Protocol):
    """A connection that runs one statement with its parameters."""

    def execute(self, sql: str, parameters: Sequence[Any], /) -> Any: ...


def execute_rows(
    conn: Executes,
    sql_of: Callable[[int], str],
    rows: Sequence[Sequence[Any]],
    check: Callable[[int, Any], None] | None = None,
) -> None:
    """Run ``sql_of(n)`` (a statement naming ``n`` rows of values) over ``rows``, in
    order, with as few statements as :func:`statement_sizes` allows; ``check(n,
    cursor)`` after each statement, when given (to compare its row count).

    One statement of many rows costs SQLite about half of what ``executemany`` of the
    same rows costs, because it is stepped once; and where the statement fires
    triggers, each execution opens a statement savepoint, at which a full-text table
    flushes its pending terms to disk.
    """
    if not rows:
        return
    width = len(rows[0])
    done = 0
    for size in statement_sizes(len(rows), width):
        params = [value for values in rows[done : done + size] for value in values]
        cursor = conn.execute(sql_of(size), params)
        if check is not None:
            check(size, cursor)
        done += size
