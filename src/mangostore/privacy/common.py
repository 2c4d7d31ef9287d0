"""What retention, export and erasure share: rows read as dicts, and the refusal to run
inside a caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import DatabaseError

if TYPE_CHECKING:
    from mangostore.privacy.ports import StoredDatabase

__all__ = ["refuse_inside_transaction", "select_dicts"]


def select_dicts(conn: Connection, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    """Run a query on ``conn`` and return its rows as ``{column: value}`` dicts."""
    with driver_errors("reading rows"):
        cursor = conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, tuple(row), strict=True)) for row in cursor.fetchall()]


def refuse_inside_transaction(db: StoredDatabase, what: str) -> None:
    """Refuse to start ``what`` inside the calling thread's transaction.

    Raises:
        DatabaseError: the calling thread is inside ``db.transaction()``: the effects of
            ``what`` outside the database (the keyring, archive files, the WAL) could
            not be rolled back with it.
    """
    if db.store.in_transaction():
        raise DatabaseError(
            f"{what} cannot run inside a transaction (its effects on the keyring, "
            "archive files and the WAL cannot be rolled back): call it outside "
            "db.transaction()"
        )
