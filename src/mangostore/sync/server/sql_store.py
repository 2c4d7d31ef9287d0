"""The relay store's logic in SQL both SQLite and PostgreSQL run: one implementation
of :class:`~mangostore.sync.server.store.RelayStore`, given a connection per
transaction by :mod:`~mangostore.sync.server.sqlite_store` or
:mod:`~mangostore.sync.server.pg_store`.

Statements are written with ``?`` placeholders (PostgreSQL's driver gets ``%s``) and
use only what both engines have: ``ON CONFLICT``, ``RETURNING``, ``coalesce``.
Cursors come from ``vaults.last_cursor``, incremented in the pushing transaction: the
row lock it takes (PostgreSQL) or the write lock (SQLite) orders the pushes of a vault,
and a rolled-back push gives its number back, so cursors have no gap and no repeat.
"""

from __future__ import annotations

from typing import Any

from mangostore.errors import ValidationError
from mangostore.sync.server.blob_store import SqlBlobs
from mangostore.sync.server.store import (
    PUSH_MEMORY_MS,
    DeviceInfo,
    SnapshotInfo,
    StoredBatch,
    StoreStats,
    Vault,
)

__all__ = ["SCHEMA", "SqlRelayStore", "ddl"]

#: Unfinished snapshot uploads older than this are dropped by :meth:`SqlRelayStore.sweep`.
_UNFINISHED_MS = 24 * 3600 * 1000

#: The store's tables; ``{blob}`` and ``{int}`` are filled per engine.
SCHEMA = """
CREATE TABLE IF NOT EXISTS relay_vaults (
    vault_id TEXT PRIMARY KEY,
    public_key {blob} NOT NULL,
    created_at {int} NOT NULL,
    last_cursor {int} NOT NULL DEFAULT 0,
    floor {int} NOT NULL DEFAULT 0,
    escrow {blob}
);
CREATE TABLE IF NOT EXISTS relay_devices (
    vault_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    first_seen {int} NOT NULL,
    last_seen {int} NOT NULL,
    cursor {int} NOT NULL DEFAULT 0,
    removed_at {int},
    PRIMARY KEY (vault_id, device_id)
);
CREATE TABLE IF NOT EXISTS relay_challenges (
    challenge {blob} PRIMARY KEY,
    vault_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    expires {int} NOT NULL
);
CREATE TABLE IF NOT EXISTS relay_tokens (
    token_hash {blob} PRIMARY KEY,
    vault_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    expires {int} NOT NULL
);
CREATE INDEX IF NOT EXISTS relay_tokens_device ON relay_tokens (vault_id, device_id);
CREATE TABLE IF NOT EXISTS relay_batches (
    vault_id TEXT NOT NULL,
    cursor {int} NOT NULL,
    device_id TEXT NOT NULL,
    number {int} NOT NULL,
    schema_version {int} NOT NULL,
    size {int} NOT NULL,
    received_at {int} NOT NULL,
    body {blob},
    PRIMARY KEY (vault_id, cursor)
);
CREATE UNIQUE INDEX IF NOT EXISTS relay_batches_push
    ON relay_batches (vault_id, device_id, number);
CREATE TABLE IF NOT EXISTS relay_snapshots (
    vault_id TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    cursor {int} NOT NULL,
    schema_version {int} NOT NULL,
    parts {int} NOT NULL DEFAULT 0,
    size {int} NOT NULL DEFAULT 0,
    created_at {int} NOT NULL,
    complete {int} NOT NULL DEFAULT 0,
    PRIMARY KEY (vault_id, snapshot_id)
);
CREATE TABLE IF NOT EXISTS relay_blobs (
    vault_id TEXT NOT NULL,
    name TEXT NOT NULL,
    owner_tag TEXT NOT NULL,
    size {int} NOT NULL,
    created_at {int} NOT NULL,
    body {blob} NOT NULL,
    PRIMARY KEY (vault_id, name)
);
CREATE INDEX IF NOT EXISTS relay_blobs_owner ON relay_blobs (vault_id, owner_tag);
CREATE TABLE IF NOT EXISTS relay_snapshot_parts (
    vault_id TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    part {int} NOT NULL,
    body {blob} NOT NULL,
    PRIMARY KEY (vault_id, snapshot_id, part)
);
"""


def ddl(blob: str, integer: str) -> list[str]:
    """The schema's statements for an engine's names of a byte string and a 64-bit int."""
    text = SCHEMA.format(blob=blob, int=integer)
    return [s.strip() for s in text.split(";") if s.strip()]


class SqlRelayStore(SqlBlobs):
    """A :class:`~mangostore.sync.server.store.RelayStore` over a DB-API connection.

    Subclasses give :meth:`transaction` (a connection in a write transaction, committed
    on success) and :meth:`close` (see :class:`~mangostore.sync.server.blob_store.SqlBase`).
    """

    # -- vaults, devices, credentials --------------------------------------------------

    def vault(self, vault_id: str) -> Vault | None:
        """The vault, or ``None`` if no device attached it."""
        with self.transaction(write=False) as conn:
            return self._vault(conn, vault_id)

    def _vault(self, conn: Any, vault_id: str, *, lock: bool = False) -> Vault | None:
        row = self._run(
            conn,
            "SELECT vault_id, public_key, created_at, last_cursor, floor FROM relay_vaults "
            "WHERE vault_id = ?" + (self.lock_rows if lock else ""),
            (vault_id,),
        ).fetchone()
        if row is None:
            return None
        return Vault(str(row[0]), bytes(row[1]), int(row[2]), int(row[3]), int(row[4]))

    def create_vault(self, vault_id: str, public_key: bytes, now_ms: int) -> Vault:
        """Attach a vault with its public key; an existing vault is returned unchanged."""
        with self.transaction() as conn:
            self._run(
                conn,
                "INSERT INTO relay_vaults (vault_id, public_key, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (vault_id) DO NOTHING",
                (vault_id, public_key, now_ms),
            )
            vault = self._vault(conn, vault_id)
        assert vault is not None
        return vault

    def put_escrow(self, vault_id: str, escrow: bytes) -> None:
        """Keep the escrow copy of the vault's wrapped master key (replacing any)."""
        with self.transaction() as conn:
            self._run(
                conn, "UPDATE relay_vaults SET escrow = ? WHERE vault_id = ?", (escrow, vault_id)
            )

    def escrow(self, vault_id: str) -> bytes | None:
        """The escrow copy, or ``None``."""
        with self.transaction(write=False) as conn:
            row = self._run(
                conn, "SELECT escrow FROM relay_vaults WHERE vault_id = ?", (vault_id,)
            ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def add_challenge(self, challenge: bytes, vault_id: str, device_id: str, expires: int) -> None:
        """Remember a challenge issued to (vault, device) until ``expires``."""
        with self.transaction() as conn:
            self._run(
                conn,
                "INSERT INTO relay_challenges (challenge, vault_id, device_id, expires) "
                "VALUES (?, ?, ?, ?)",
                (challenge, vault_id, device_id, expires),
            )

    def take_challenge(self, challenge: bytes, vault_id: str, device_id: str, now_ms: int) -> bool:
        """Consume a challenge: true once, if it was issued to (vault, device) and has
        not expired; every later call is false."""
        with self.transaction() as conn:
            row = self._run(
                conn,
                "DELETE FROM relay_challenges WHERE challenge = ? "
                "RETURNING vault_id, device_id, expires",
                (challenge,),
            ).fetchone()
        return (
            row is not None and row[0] == vault_id and row[1] == device_id and int(row[2]) > now_ms
        )

    def admit_device(self, vault_id: str, device_id: str, now_ms: int) -> bool:
        """Record that the device proved membership; false if it was removed."""
        with self.transaction() as conn:
            row = self._run(
                conn,
                "INSERT INTO relay_devices (vault_id, device_id, first_seen, last_seen) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (vault_id, device_id) DO UPDATE SET "
                "last_seen = excluded.last_seen RETURNING removed_at",
                (vault_id, device_id, now_ms, now_ms),
            ).fetchone()
        return row[0] is None

    def add_token(self, token_hash: bytes, vault_id: str, device_id: str, expires: int) -> None:
        """Remember a bearer token (by its hash) until ``expires``."""
        with self.transaction() as conn:
            self._run(
                conn,
                "INSERT INTO relay_tokens (token_hash, vault_id, device_id, expires) "
                "VALUES (?, ?, ?, ?)",
                (token_hash, vault_id, device_id, expires),
            )

    def token_owner(self, token_hash: bytes, now_ms: int) -> tuple[str, str] | None:
        """(vault, device) of a valid token: unexpired, of a device not removed."""
        with self.transaction(write=False) as conn:
            row = self._run(
                conn,
                "SELECT t.vault_id, t.device_id FROM relay_tokens AS t JOIN relay_devices AS d "
                "ON d.vault_id = t.vault_id AND d.device_id = t.device_id "
                "WHERE t.token_hash = ? AND t.expires > ? AND d.removed_at IS NULL",
                (token_hash, now_ms),
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def devices(self, vault_id: str) -> list[DeviceInfo]:
        """The vault's devices, removed ones included, first seen first."""
        with self.transaction(write=False) as conn:
            rows = self._run(
                conn,
                "SELECT device_id, first_seen, last_seen, cursor, removed_at FROM relay_devices "
                "WHERE vault_id = ? ORDER BY first_seen, device_id",
                (vault_id,),
            ).fetchall()
        return [
            DeviceInfo(str(d), int(f), int(s), int(c), None if r is None else int(r))
            for d, f, s, c, r in rows
        ]

    def remove_device(self, vault_id: str, device_id: str, now_ms: int) -> bool:
        """Remove a device: its tokens stop working at once and it cannot prove
        membership again. False if the vault has no such device."""
        with self.transaction() as conn:
            found = self._run(
                conn,
                "UPDATE relay_devices SET removed_at = coalesce(removed_at, ?) "
                "WHERE vault_id = ? AND device_id = ? RETURNING device_id",
                (now_ms, vault_id, device_id),
            ).fetchone()
            self._run(
                conn,
                "DELETE FROM relay_tokens WHERE vault_id = ? AND device_id = ?",
                (vault_id, device_id),
            )
        return found is not None

    # -- batches ------------------------------------------------------------------------

    def push(
        self,
        vault_id: str,
        device_id: str,
        number: int,
        schema_version: int,
        body: bytes,
        now_ms: int,
    ) -> int:
        """Store a batch; return its cursor (the first one's for a repeated push)."""
        seen = (
            "SELECT cursor FROM relay_batches WHERE vault_id = ? AND device_id = ? AND number = ?"
        )
        key = (vault_id, device_id, number)
        try:
            return self._push(seen, key, schema_version, body, now_ms)
        except _Repeat as repeat:  # the vault's cursor went back with the rollback
            return repeat.cursor

    def _push(
        self, seen: str, key: tuple[str, str, int], schema_version: int, body: bytes, now_ms: int
    ) -> int:
        vault_id, device_id, number = key
        with self.transaction() as conn:
            row = self._run(conn, seen, key).fetchone()
            if row is not None:
                return int(row[0])
            taken = self._run(
                conn,
                "UPDATE relay_vaults SET last_cursor = last_cursor + 1 WHERE vault_id = ? "
                "RETURNING last_cursor",
                (vault_id,),
            ).fetchone()
            if taken is None:
                raise ValidationError(f"vault {vault_id} is not attached to this server")
            # Looked up again under the vault's lock: a concurrent push of the same
            # (device, number) that got there first has committed by now.
            row = self._run(conn, seen, key).fetchone()
            if row is not None:
                raise _Repeat(int(row[0]))
            cursor = int(taken[0])
            self._run(
                conn,
                "INSERT INTO relay_batches (vault_id, cursor, device_id, number, schema_version, "
                "size, received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (vault_id, cursor, device_id, number, schema_version, len(body), now_ms, body),
            )
            return cursor

    def pull(self, vault_id: str, after: int, limit: int) -> list[StoredBatch]:
        """Up to ``limit`` batches with cursors above ``after``, in order."""
        with self.transaction(write=False) as conn:
            rows = self._run(
                conn,
                "SELECT cursor, device_id, number, schema_version, body FROM relay_batches "
                "WHERE vault_id = ? AND cursor > ? AND body IS NOT NULL ORDER BY cursor LIMIT ?",
                (vault_id, after, limit),
            ).fetchall()
        return [StoredBatch(int(c), str(d), int(n), int(v), bytes(b)) for c, d, n, v, b in rows]

    def note_cursor(self, vault_id: str, device_id: str, cursor: int, now_ms: int) -> None:
        """Record that the device has applied everything up to ``cursor``."""
        with self.transaction() as conn:
            self._run(
                conn,
                "UPDATE relay_devices SET cursor = CASE WHEN cursor > ? THEN cursor ELSE ? END, "
                "last_seen = ? WHERE vault_id = ? AND device_id = ?",
                (cursor, cursor, now_ms, vault_id, device_id),
            )

    # -- snapshots and compaction -------------------------------------------------------

    def put_snapshot_part(
        self,
        vault_id: str,
        snapshot_id: str,
        device_id: str,
        cursor: int,
        schema_version: int,
        part: int,
        last: bool,
        body: bytes,
        now_ms: int,
    ) -> SnapshotInfo | None:
        """Store one part of a snapshot. When its last part completes it, the vault
        keeps the complete snapshot with the highest cursor (the one completed last
        among equals) and drops the others; return the completed one if it is kept.

        Raises:
            ValidationError: a part out of order, a snapshot of another device or
                already complete, or a cursor the vault has not reached.
        """
        with self.transaction() as conn:
            # The vault's row lock orders two uploads of one part (a retry through
            # another server process): the second finds the first's and is refused.
            vault = self._vault(conn, vault_id, lock=True)
            if vault is None or cursor > vault.last_cursor or cursor < 0:
                raise ValidationError(
                    f"snapshot cursor {cursor} is beyond the vault's last batch; pull first"
                )
            row = self._run(
                conn,
                "SELECT device_id, cursor, parts, complete FROM relay_snapshots "
                "WHERE vault_id = ? AND snapshot_id = ?",
                (vault_id, snapshot_id),
            ).fetchone()
            if row is None and part == 0:
                self._run(
                    conn,
                    "INSERT INTO relay_snapshots (vault_id, snapshot_id, device_id, cursor, "
                    "schema_version, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (vault_id, snapshot_id, device_id, cursor, schema_version, now_ms),
                )
            elif row is None or row[0] != device_id or int(row[1]) != cursor or row[3]:
                raise ValidationError(
                    f"snapshot {snapshot_id} is not an unfinished upload of this device "
                    "at this cursor; start a new one from part 0"
                )
            elif int(row[2]) != part:
                raise ValidationError(
                    f"snapshot part {part} arrived out of order: part {int(row[2])} is next"
                )
            self._run(
                conn,
                "INSERT INTO relay_snapshot_parts (vault_id, snapshot_id, part, body) "
                "VALUES (?, ?, ?, ?)",
                (vault_id, snapshot_id, part, body),
            )
            # A completed snapshot is dated by its completion, which orders equals.
            self._run(
                conn,
                "UPDATE relay_snapshots SET parts = parts + 1, size = size + ?, complete = ?, "
                "created_at = CASE WHEN ? = 1 THEN ? ELSE created_at END "
                "WHERE vault_id = ? AND snapshot_id = ?",
                (len(body), int(last), int(last), now_ms, vault_id, snapshot_id),
            )
            if not last:
                return None
            latest = self._latest(conn, vault_id)
            assert latest is not None
            for (old,) in self._run(
                conn,
                "SELECT snapshot_id FROM relay_snapshots WHERE vault_id = ? AND complete = 1 "
                "AND snapshot_id <> ?",
                (vault_id, latest.snapshot_id),
            ).fetchall():
                self._drop_snapshot(conn, vault_id, str(old))
            return latest if latest.snapshot_id == snapshot_id else None

    def _drop_snapshot(self, conn: Any, vault_id: str, snapshot_id: str) -> None:
        for table in ("relay_snapshot_parts", "relay_snapshots"):
            self._run(
                conn,
                f"DELETE FROM {table} WHERE vault_id = ? AND snapshot_id = ?",
                (vault_id, snapshot_id),
            )

    def latest_snapshot(self, vault_id: str) -> SnapshotInfo | None:
        """The vault's latest complete snapshot."""
        with self.transaction(write=False) as conn:
            return self._latest(conn, vault_id)

    def _latest(self, conn: Any, vault_id: str) -> SnapshotInfo | None:
        row = self._run(
            conn,
            "SELECT snapshot_id, device_id, cursor, schema_version, parts, size, created_at "
            "FROM relay_snapshots WHERE vault_id = ? AND complete = 1 "
            "ORDER BY cursor DESC, created_at DESC LIMIT 1",
            (vault_id,),
        ).fetchone()
        if row is None:
            return None
        return SnapshotInfo(str(row[0]), str(row[1]), *(int(v) for v in row[2:]))

    def snapshot_part(self, vault_id: str, snapshot_id: str, part: int) -> bytes | None:
        """One part of a complete snapshot."""
        with self.transaction(write=False) as conn:
            row = self._run(
                conn,
                "SELECT p.body FROM relay_snapshot_parts AS p JOIN relay_snapshots AS s "
                "ON s.vault_id = p.vault_id AND s.snapshot_id = p.snapshot_id "
                "WHERE p.vault_id = ? AND p.snapshot_id = ? AND p.part = ? AND s.complete = 1",
                (vault_id, snapshot_id, part),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def compact(self, vault_id: str, now_ms: int) -> int:
        """Drop the batches no device needs any more; return how many were dropped."""
        with self.transaction() as conn:
            latest = self._latest(conn, vault_id)
            if latest is None:
                return 0
            row = self._run(
                conn,
                "SELECT min(cursor) FROM relay_devices WHERE vault_id = ? AND removed_at IS NULL",
                (vault_id,),
            ).fetchone()
            floor = min(latest.cursor, int(row[0]) if row[0] is not None else 0)
            if floor <= 0:
                return 0
            dropped = self._run(
                conn,
                "UPDATE relay_batches SET body = NULL WHERE vault_id = ? AND cursor <= ? "
                "AND body IS NOT NULL RETURNING cursor",
                (vault_id, floor),
            ).fetchall()
            self._run(
                conn,
                "DELETE FROM relay_batches WHERE vault_id = ? AND cursor <= ? AND received_at < ?",
                (vault_id, floor, now_ms - PUSH_MEMORY_MS),
            )
            self._run(
                conn,
                "UPDATE relay_vaults SET floor = ? WHERE vault_id = ? AND floor < ?",
                (floor, vault_id, floor),
            )
        return len(dropped)

    def sweep(self, now_ms: int) -> int:
        """Drop expired challenges and tokens, and unfinished snapshot uploads older
        than a day; return how many rows went."""
        gone = 0
        with self.transaction() as conn:
            for table in ("relay_challenges", "relay_tokens"):
                gone += len(
                    self._run(
                        conn, f"DELETE FROM {table} WHERE expires <= ? RETURNING expires", (now_ms,)
                    ).fetchall()
                )
            stale = self._run(
                conn,
                "SELECT vault_id, snapshot_id FROM relay_snapshots "
                "WHERE complete = 0 AND created_at < ?",
                (now_ms - _UNFINISHED_MS,),
            ).fetchall()
            for vault_id, snapshot_id in stale:
                self._drop_snapshot(conn, str(vault_id), str(snapshot_id))
        return gone + len(stale)

    def stats(self) -> StoreStats:
        """Totals for metrics."""
        with self.transaction(write=False) as conn:
            row = self._run(
                conn,
                "SELECT (SELECT count(*) FROM relay_vaults), "
                "(SELECT count(*) FROM relay_devices WHERE removed_at IS NULL), "
                "(SELECT count(*) FROM relay_batches WHERE body IS NOT NULL), "
                "(SELECT coalesce(sum(size), 0) FROM relay_batches WHERE body IS NOT NULL), "
                "(SELECT coalesce(sum(size), 0) FROM relay_snapshots), "
                "(SELECT coalesce(sum(size), 0) FROM relay_blobs)",
            ).fetchone()
        return StoreStats(*(int(v) for v in row))


class _Repeat(Exception):
    """A push found its (device, number) stored while waiting for the vault's lock."""

    def __init__(self, cursor: int) -> None:
        super().__init__(cursor)
        self.cursor = cursor
