"""Full-text indexes that can be built again from the rows they index.

An FTS5 table keeps its index in shadow tables (``<name>_data``, ``<name>_idx``,
``<name>_docsize``) that SQLite writes itself. They hold nothing the indexed rows do not,
often more bytes than those rows, and no trigger sees their writes. Whoever copies a
database row by row (backups) can leave them out and build the index again where the
rows arrive:

- a table that stores its own text (a ``<name>_content`` shadow table) is built again
  by FTS5's own ``'rebuild'`` command;
- a contentless table (``content=''``) keeps no text: it is filled again by the
  statement in :data:`FILLS`, which must index each row exactly as the schema's
  triggers do (``tests/schema/test_derived.py`` compares the two). A contentless table
  with no entry here is not rebuilt: it is copied like any table.

``<name>_config`` (the table's settings, such as ``secure-delete``) is always copied.
"""

from __future__ import annotations

import re
from typing import Final

from mangostore.sql import quote_identifier

__all__ = ["FILLS", "REBUILT_SHADOWS", "is_fts5", "rebuild_statements"]

#: How each contentless full-text index of the schema is filled from its source rows
#: (the statement its migration runs, as its triggers index a row).
FILLS: Final[dict[str, str]] = {
    "command_history_fts": (
        "INSERT INTO command_history_fts (rowid, command) "
        "SELECT s.seq, c.command || char(1, 1) FROM command_history AS c "
        "JOIN command_history_search_rows AS s ON s.command_id = c.id"
    ),
}

#: The shadow tables an index built again replaces.
REBUILT_SHADOWS: Final = ("data", "idx", "docsize")

_FTS5 = re.compile(r"^\s*CREATE\s+VIRTUAL\s+TABLE\s+.*?\s+USING\s+fts5\s*\(", re.I | re.S)


def is_fts5(sql: str) -> bool:
    """Whether ``sql`` (a ``CREATE VIRTUAL TABLE`` statement) makes an FTS5 table (not
    an ``fts5vocab`` view of one)."""
    return _FTS5.match(sql) is not None


def rebuild_statements(name: str, stores_text: bool) -> tuple[str, ...]:
    """The statements that build FTS5 table ``name``'s index again from its rows, in a
    database where every other table holds its rows; ``()`` when it cannot be (a
    contentless table :data:`FILLS` does not know).

    ``stores_text``: the table has a ``<name>_content`` shadow table.
    """
    table = quote_identifier(name)
    if stores_text:
        return (f"INSERT INTO {table} ({table}) VALUES ('rebuild')",)
    fill = FILLS.get(name)
    if fill is None:
        return ()
    return (f"INSERT INTO {table} ({table}) VALUES ('delete-all')", fill)
