"""How batches travel: the transport interface, and an in-process relay.

A transport is two calls: push a batch, and pull the batches after a cursor. The
relay (the sync server, or :class:`MemoryRelay` in one process) gives each batch of a
vault a sequence number in the order it arrived and keeps the first copy of a
(device, number) pair, so a push retried after a lost answer is not stored twice.
It never needs a key: it stores the sealed bodies as they came.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mangostore.sync.batches import Batch

__all__ = ["MemoryRelay", "Pulled", "SyncTransport"]


@dataclass(frozen=True, slots=True)
class Pulled:
    """A batch as pulled: its place in the vault's sequence, and the batch."""

    cursor: int
    batch: Batch


@runtime_checkable
class SyncTransport(Protocol):
    """What the sync engine needs of the way to the relay."""

    def push(self, batch: Batch) -> int:
        """Store ``batch``; return its cursor (the first one's, for a repeated push).

        Raises:
            SyncTransportError: the relay could not be reached or refused the batch.
        """
        ...

    def pull(self, vault_id: str, after: int, limit: int) -> list[Pulled]:
        """Return up to ``limit`` batches of ``vault_id`` after ``after``, in order.

        Raises:
            SyncTransportError: the relay could not be reached.
        """
        ...


class MemoryRelay:
    """A relay in memory, shared by the devices of one process (tests, ``make demo``).

    It stores exactly what a server would: headers and sealed bodies, and stored
    files' sealed chunks.
    """

    def __init__(self) -> None:
        self._batches: dict[str, list[Batch]] = {}
        self._seen: dict[tuple[str, str, int], int] = {}
        self._blobs: dict[str, dict[str, tuple[str, bytes]]] = {}
        self._lock = threading.Lock()

    def push(self, batch: Batch) -> int:
        """Store ``batch``; a (device, number) pushed before returns its first cursor."""
        with self._lock:
            ident = (batch.vault_id, batch.device_id, batch.number)
            if ident in self._seen:
                return self._seen[ident]
            stored = self._batches.setdefault(batch.vault_id, [])
            stored.append(batch)
            self._seen[ident] = len(stored)
            return len(stored)

    def pull(self, vault_id: str, after: int, limit: int) -> list[Pulled]:
        """Return up to ``limit`` batches after cursor ``after``."""
        with self._lock:
            stored = self._batches.get(vault_id, [])
            return [
                Pulled(i + 1, stored[i])
                for i in range(max(after, 0), min(len(stored), after + limit))
            ]

    # -- blobs: stored files' sealed chunks (mangostore.filestore.remote.BlobRelay) --

    def missing_blobs(self, vault_id: str, names: Sequence[str]) -> list[str]:
        """Those of ``names`` not held for ``vault_id``."""
        with self._lock:
            held = self._blobs.get(vault_id, {})
            return [name for name in names if name not in held]

    def put_blob(self, vault_id: str, name: str, owner_tag: str, data: bytes) -> None:
        """Keep chunk ``name`` (a chunk already held stays as it is)."""
        with self._lock:
            self._blobs.setdefault(vault_id, {}).setdefault(name, (owner_tag, bytes(data)))

    def get_blob(self, vault_id: str, name: str) -> bytes | None:
        """Chunk ``name``'s bytes, or ``None``."""
        with self._lock:
            held = self._blobs.get(vault_id, {}).get(name)
            return None if held is None else held[1]

    def forget_blobs(self, vault_id: str, owner_tag: str) -> int:
        """Drop every chunk of ``owner_tag``; return how many went."""
        with self._lock:
            held = self._blobs.get(vault_id, {})
            gone = [name for name, (tag, _) in held.items() if tag == owner_tag]
            for name in gone:
                del held[name]
            return len(gone)

    def stored_bytes(self) -> bytes:
        """Everything the relay holds, concatenated (for checks that it holds no plaintext)."""
        with self._lock:
            return b"".join(
                b.header() + b.body for batches in self._batches.values() for b in batches
            ) + b"".join(data for held in self._blobs.values() for _, data in held.values())
