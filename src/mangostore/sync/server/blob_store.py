"""The relay store's blobs: stored files' sealed chunks, kept by keyed name.

A device sends the chunks of its files before the rows that name them (see
:mod:`mangostore.filestore.remote`); other devices fetch them when they open a file.
The server keeps each chunk once per vault, with the keyed tag of its owner so that
an erasure can drop all of one owner's chunks; it can read none of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["SqlBase", "SqlBlobs"]


class SqlBase:
    """What every SQL store method stands on: a transaction per call, given by each
    engine's store, and statements written with ``?`` placeholders."""

    #: The driver's placeholder for ``?``.
    placeholder = "?"
    #: What makes a SELECT lock the rows it reads until the transaction ends (SQLite's
    #: write transaction already holds the whole file).
    lock_rows = ""

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Any]:
        """A connection inside one transaction, committed when the block ends
        (``write=False``: one that only reads)."""
        raise NotImplementedError  # each engine's store gives its own
        yield

    def close(self) -> None:
        """Release connections."""

    def _run(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        if self.placeholder != "?":
            sql = sql.replace("?", self.placeholder)
        return conn.execute(sql, tuple(params))


class SqlBlobs(SqlBase):
    """The blob methods of :class:`~mangostore.sync.server.sql_store.SqlRelayStore`
    (kept apart so each module stays one subject)."""

    def missing_blobs(self, vault_id: str, names: Sequence[str]) -> list[str]:
        """Those of ``names`` the vault does not hold."""
        if not names:
            return []
        marks = ", ".join("?" for _ in names)
        with self.transaction(write=False) as conn:
            held = {
                str(row[0])
                for row in self._run(
                    conn,
                    f"SELECT name FROM relay_blobs WHERE vault_id = ? AND name IN ({marks})",
                    (vault_id, *names),
                ).fetchall()
            }
        return [name for name in names if name not in held]

    def put_blob(self, vault_id: str, name: str, owner_tag: str, body: bytes, now_ms: int) -> None:
        """Keep a sealed chunk; one already held stays as it is."""
        with self.transaction() as conn:
            self._run(
                conn,
                "INSERT INTO relay_blobs (vault_id, name, owner_tag, size, created_at, body) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (vault_id, name) DO NOTHING",
                (vault_id, name, owner_tag, len(body), now_ms, body),
            )

    def blob(self, vault_id: str, name: str) -> bytes | None:
        """A sealed chunk's bytes, or ``None``."""
        with self.transaction(write=False) as conn:
            row = self._run(
                conn,
                "SELECT body FROM relay_blobs WHERE vault_id = ? AND name = ?",
                (vault_id, name),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def forget_blobs(self, vault_id: str, owner_tag: str) -> int:
        """Drop every chunk of ``owner_tag``; return how many went."""
        with self.transaction() as conn:
            gone = self._run(
                conn,
                "DELETE FROM relay_blobs WHERE vault_id = ? AND owner_tag = ? RETURNING name",
                (vault_id, owner_tag),
            ).fetchall()
        return len(gone)
