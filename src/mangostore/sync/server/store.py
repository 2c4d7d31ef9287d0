"""What the sync server keeps, and the interface its two stores implement.

The server stores, per vault: the vault's public signing key, the escrow copy of
its wrapped master key (optional), the devices that have proved membership, random
challenges and token hashes, the sealed batches in the order they arrived (each with
its device, batch number, schema version and size), sealed snapshots, and the sealed
chunks of stored files (by keyed name, with their owner's keyed tag). Nothing
in it can be decrypted without the vault's master key.

Two implementations: :class:`~mangostore.sync.server.sqlite_store.SqliteRelayStore`
(the default, one file) and :class:`~mangostore.sync.server.pg_store.PostgresRelayStore`
(several server processes on one PostgreSQL). Both pass one contract test suite.

Compaction: a batch is dropped once every device of the vault (but removed ones)
has pulled past it *and* the latest complete snapshot covers it, so a device that
joins later finds the snapshot plus every batch after it. The record of a dropped
batch's (device, number) stays for :data:`PUSH_MEMORY_MS`, so a push repeated after
a lost answer is still recognised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "PUSH_MEMORY_MS",
    "DeviceInfo",
    "RelayStore",
    "SnapshotInfo",
    "StoreStats",
    "StoredBatch",
    "Vault",
]

#: How long a compacted batch's (device, number) is remembered: a repeated push
#: older than this is stored again (and applied again without effect).
PUSH_MEMORY_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Vault:
    """A vault as the server knows it."""

    vault_id: str
    public_key: bytes
    created_at: int
    #: The highest cursor given so far.
    last_cursor: int
    #: Batches at or below this cursor were compacted away.
    floor: int


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """A batch as the server stores and serves it."""

    cursor: int
    device_id: str
    number: int
    schema_version: int
    body: bytes


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device of a vault: when it was first and last seen, how far it pulled."""

    device_id: str
    first_seen: int
    last_seen: int
    #: The cursor it last asked to pull after (it had applied everything up to it).
    cursor: int
    removed_at: int | None


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A complete snapshot: the state of the vault as one device had it at ``cursor``."""

    snapshot_id: str
    device_id: str
    cursor: int
    schema_version: int
    parts: int
    size: int
    created_at: int


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Totals for the metrics endpoint."""

    vaults: int
    devices: int
    batches: int
    batch_bytes: int
    snapshot_bytes: int
    blob_bytes: int


@runtime_checkable
class RelayStore(Protocol):
    """The sync server's storage. Every method is one transaction; implementations are
    safe to call from many threads, and from several processes sharing one store."""

    def close(self) -> None:
        """Release connections."""
        ...

    # -- vaults, devices, credentials --------------------------------------------------

    def vault(self, vault_id: str) -> Vault | None:
        """The vault, or ``None`` if no device attached it."""
        ...

    def create_vault(self, vault_id: str, public_key: bytes, now_ms: int) -> Vault:
        """Attach a vault with its public key; an existing vault is returned unchanged."""
        ...

    def put_escrow(self, vault_id: str, escrow: bytes) -> None:
        """Keep the escrow copy of the vault's wrapped master key (replacing any)."""
        ...

    def escrow(self, vault_id: str) -> bytes | None:
        """The escrow copy, or ``None``."""
        ...

    def add_challenge(self, challenge: bytes, vault_id: str, device_id: str, expires: int) -> None:
        """Remember a challenge issued to (vault, device) until ``expires``."""
        ...

    def take_challenge(self, challenge: bytes, vault_id: str, device_id: str, now_ms: int) -> bool:
        """Consume a challenge: true once, if it was issued to (vault, device) and has
        not expired; every later call is false."""
        ...

    def admit_device(self, vault_id: str, device_id: str, now_ms: int) -> bool:
        """Record that the device proved membership; false if it was removed."""
        ...

    def add_token(self, token_hash: bytes, vault_id: str, device_id: str, expires: int) -> None:
        """Remember a bearer token (by its hash) until ``expires``."""
        ...

    def token_owner(self, token_hash: bytes, now_ms: int) -> tuple[str, str] | None:
        """(vault, device) of a valid token: unexpired, of a device not removed."""
        ...

    def devices(self, vault_id: str) -> list[DeviceInfo]:
        """The vault's devices, removed ones included, first seen first."""
        ...

    def remove_device(self, vault_id: str, device_id: str, now_ms: int) -> bool:
        """Remove a device: its tokens stop working at once and it cannot prove
        membership again. False if the vault has no such device."""
        ...

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
        """Store a batch; return its cursor. A (device, number) stored before returns
        the first cursor and stores nothing. Cursors of a vault are 1, 2, 3... with
        no gap and no repeat, whatever the number of server processes."""
        ...

    def pull(self, vault_id: str, after: int, limit: int) -> list[StoredBatch]:
        """Up to ``limit`` batches with cursors above ``after``, in order."""
        ...

    def note_cursor(self, vault_id: str, device_id: str, cursor: int, now_ms: int) -> None:
        """Record that the device has applied everything up to ``cursor``."""
        ...

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
        """Store one part of a snapshot, in order. When its last part completes it,
        the vault keeps the complete snapshot with the highest cursor (the one completed
        last among equals); return the completed one if it is the one kept."""
        ...

    def latest_snapshot(self, vault_id: str) -> SnapshotInfo | None:
        """The vault's latest complete snapshot."""
        ...

    def snapshot_part(self, vault_id: str, snapshot_id: str, part: int) -> bytes | None:
        """One part of a complete snapshot."""
        ...

    def compact(self, vault_id: str, now_ms: int) -> int:
        """Drop the batches no device needs any more (see the module docstring);
        return how many were dropped."""
        ...

    def sweep(self, now_ms: int) -> int:
        """Drop expired challenges and tokens, and unfinished snapshot uploads older
        than a day; return how many rows went."""
        ...

    def missing_blobs(self, vault_id: str, names: Sequence[str]) -> list[str]:
        """Those of ``names`` (stored files' chunk names) the vault does not hold."""
        ...

    def put_blob(self, vault_id: str, name: str, owner_tag: str, body: bytes, now_ms: int) -> None:
        """Keep a sealed chunk; one already held stays as it is."""
        ...

    def blob(self, vault_id: str, name: str) -> bytes | None:
        """A sealed chunk's bytes, or ``None``."""
        ...

    def forget_blobs(self, vault_id: str, owner_tag: str) -> int:
        """Drop every chunk of one owner (an erased user's); return how many went."""
        ...

    def stats(self) -> StoreStats:
        """Totals for metrics."""
        ...
