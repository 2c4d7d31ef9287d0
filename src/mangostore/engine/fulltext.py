"""How a connection sees the full-text (FTS5) indexes, and how to check them truthfully.

``kg_search_index``, ``kg_trigram_index`` and ``ai_memory_fts`` are FTS5 tables. Each
connection keeps its own copy of an FTS5 table's *structure record* (which segments make
up the index) in memory. Opening a cursor on the table (any query of it) or beginning a
write compares ``PRAGMA data_version`` with the version the copy was read at and rereads
it when another connection has committed since. ``PRAGMA integrity_check`` (and
``quick_check``) does neither: it calls the module's ``xIntegrity`` method directly, which
checks the index as the cached structure describes it against a checksum of the rows it
reads afresh. On a connection that read an index before another connection wrote it, the
two disagree and the check reports ``fts5: checksum mismatch for table ...`` although
the index is sound; any query of the table on that connection, or a new connection,
makes the report ``ok`` again. Seen with SQLite 3.53.4 (SQLCipher 4.19.0), in WAL and
rollback-journal mode alike.

mangostore meets it as soon as an integrity check runs on a pooled reader: a search or a
check caches the structure on a reader, the writer then adds a row, and the next check
lent that reader reports a mismatch. The writer is no safer when another process
writes. :func:`refresh_fulltext` opens a cursor on each FTS5 table (a one-row lookup by
rowid), which is what makes FTS5 reread a stale structure: whatever runs a check calls it
first, on the connection that checks (:func:`runs_integrity_check` tells a statement that
checks). A real fault, an index and its rows that disagree in the file, is still
reported (``malformed inverted index for FTS5 table main.<name>``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mangostore.schema.introspect import schema_objects
from mangostore.sql import quote_identifier

if TYPE_CHECKING:
    from mangostore.engine.pragmas import Connection

__all__ = ["fulltext_tables", "refresh_fulltext", "runs_integrity_check"]

# Both pragmas and their table-valued forms (pragma_integrity_check) call xIntegrity.
_INTEGRITY_CHECK = re.compile(r"(?:integrity|quick)_check", re.IGNORECASE)


def fulltext_tables(conn: Connection) -> list[str]:
    """Return the names of the FTS5 tables of the main schema, in name order."""
    # fts5 but not fts5vocab: a vocabulary table has no index of its own to refresh.
    return [table.name for table in schema_objects(conn, "table") if table.module == "fts5"]


def refresh_fulltext(conn: Connection) -> None:
    """Make ``conn`` reread the structure of every FTS5 index another connection changed.

    Cheap: one lookup by rowid per table, and a structure is only reread when
    ``PRAGMA data_version`` says another connection committed since it was read. Call
    it on the connection that will run ``PRAGMA integrity_check`` or ``quick_check``,
    just before (see the module docstring for why).
    """
    for name in fulltext_tables(conn):
        # Not LIMIT 0: SQLite then never opens the cursor, and the cursor is the point.
        conn.execute(f"SELECT rowid FROM {quote_identifier(name)} WHERE rowid = 0").fetchall()


def runs_integrity_check(sql: str) -> bool:
    """Tell whether ``sql`` may run an integrity check (so wants :func:`refresh_fulltext`).

    Errs towards yes: a false positive costs one lookup per FTS5 table.
    """
    return _INTEGRITY_CHECK.search(sql) is not None
