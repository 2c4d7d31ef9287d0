"""Snapshots: a database's logical content, for comparing two states.

``snapshot(db)`` reads every real table (not the full-text and vector indexes, which
are derived from them) into ``{table: [row, ...]}``, rows as ``{column: value}`` in a
fixed order. Tables with a repository are read through it, so encrypted columns
appear as their plaintext (an envelope's random nonce would make two equal databases
differ); the others as stored. Columns that differ by nature (times, ids) are left
out with ``ignore=``. Two snapshots compare with ``==``; :meth:`Snapshot.diff` says
what differs, one line per row.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from mangostore import Database
from mangostore.privacy.common import select_dicts
from mangostore.privacy.ownership import read_schema
from mangostore.repos.base import Repository
from mangostore.sql import quote_identifier

__all__ = ["BOOKKEEPING_TABLES", "Snapshot", "snapshot"]

#: Left out by default: when migrations ran, and the row-count statistics SQLite keeps.
BOOKKEEPING_TABLES: Final = frozenset({"schema_migrations", "sqlite_stat1", "sqlite_stat4"})


def _plain(value: Any) -> Any:
    """A JSON-ready form of a stored value (``bytes`` as ``{"base64": ...}``)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _row_key(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=repr)


@dataclass(frozen=True)
class Snapshot:
    """The rows of each table, JSON-ready, each table's rows in a fixed order."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def rows(self, table: str) -> list[dict[str, Any]]:
        """The rows of ``table`` (empty when it was not read)."""
        return self.tables.get(table, [])

    def to_json(self) -> str:
        """The snapshot as indented JSON text, keys sorted (stable for files and diffs)."""
        return json.dumps(self.tables, indent=2, sort_keys=True, default=repr)

    def diff(self, other: Snapshot) -> list[str]:
        """What ``other`` has that this snapshot lacks (``+``) and the reverse (``-``),
        one line per row, tables in name order; empty when they are equal."""
        lines: list[str] = []
        for table in sorted(set(self.tables) | set(other.tables)):
            mine = {_row_key(r) for r in self.rows(table)}
            theirs = {_row_key(r) for r in other.rows(table)}
            lines += [f"- {table}: {row}" for row in sorted(mine - theirs)]
            lines += [f"+ {table}: {row}" for row in sorted(theirs - mine)]
        return lines


def _ignored(table: str, column: str, ignore: Collection[str]) -> bool:
    return column in ignore or f"{table}.{column}" in ignore


def snapshot(
    db: Database,
    *,
    tables: Iterable[str] | None = None,
    ignore: Collection[str] = (),
    exclude: Collection[str] = BOOKKEEPING_TABLES,
) -> Snapshot:
    """Read the logical content of ``db``.

    Args:
        db: the database.
        tables: only these tables (default: every real table but ``exclude``).
        ignore: columns to leave out, as ``column`` (in every table) or
            ``table.column``; for instance ``{"id", "created_at", "updated_at"}``.
        exclude: tables left out when ``tables`` is not given.

    Returns:
        The snapshot.

    Raises:
        KeyError: ``tables`` names a table that does not exist.
    """
    with db.store.snapshot() as conn:
        schema = read_schema(conn)
    chosen = sorted(tables) if tables is not None else sorted(set(schema.tables) - set(exclude))
    found: dict[str, list[dict[str, Any]]] = {}
    for table in chosen:
        info = schema.tables[table]
        repo = getattr(db, table, None)
        if isinstance(repo, Repository):
            rows = [record.to_dict() for record in repo.list(use_cache=False)]
        else:
            with db.store.snapshot() as conn:
                rows = select_dicts(
                    conn,
                    f"SELECT {', '.join(quote_identifier(c) for c in info.columns)} "
                    f"FROM {quote_identifier(table)}",
                    (),
                )
        kept = [
            {k: _plain(v) for k, v in row.items() if not _ignored(table, k, ignore)} for row in rows
        ]
        found[table] = sorted(kept, key=_row_key)
    return Snapshot(found)
