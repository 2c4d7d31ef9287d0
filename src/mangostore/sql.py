"""Building SQL text: identifier quoting (the one place names enter SQL) and parameter
marks for lists of values."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def quote_identifier(name: str) -> str:
    """Quote a table or column name for SQL.

    Names reaching this function already come from an allow-list built from the
    schema; quoting them as well means a name can never be read as SQL.
    """
    return '"' + name.replace('"', '""') + '"'


#: Most values bound in one ``IN (...)`` list: well under SQLite's variable limit.
IN_LIST_SIZE = 500


def placeholders(count: int) -> str:
    """Return ``count`` parameter marks, ``?, ?, ?``, for an ``IN`` list or ``VALUES``."""
    return ", ".join("?" * count)


def batches(items: Sequence[T], size: int = IN_LIST_SIZE) -> Iterator[Sequence[T]]:
    """Yield ``items`` in slices of at most ``size``: one ``IN`` list each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
