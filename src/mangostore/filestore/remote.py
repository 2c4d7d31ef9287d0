"""Stored files across a vault's devices: chunks sent to the relay, fetched from it.

A file's row (with its chunk list) syncs like any other row; its chunks travel
separately, sealed as they are on disk, through the relay's blob store (the sync
server's blob endpoints, a relay folder's ``blobs/``, or the in-process relay):

* **Sending.** Before a device pushes its changes it sends every chunk of its files
  the relay does not hold yet (:func:`send_chunks`): it asks which of its unsent
  chunks are missing there, uploads those, and marks them ``remote``. A file's row
  therefore reaches other devices after its chunks, save for a put that commits while
  the chunks are being sent; its chunks go with the next round.
* **Fetching.** A device opening a file whose chunk is not in its folder fetches it
  from the relay (:func:`fetch_chunk`), authenticates it under the owner's data key
  before returning a byte, and keeps it. A chunk lost from the folder is fetched
  back the same way when the relay holds it.
* **Erasure.** Erasing a user records their keyed folder name; the next round asks
  the relay to drop every chunk of that owner. The relay never learns more than
  which chunks share an owner: names are keyed hashes and the bytes are sealed.

Chunks of deleted files stay on the relay (another device may be storing the same
chunk at that moment, and the relay cannot tell); they are dropped with their owner.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from mangostore.engine.connection import driver_errors
from mangostore.engine.store import Store
from mangostore.errors import FileUnavailableError, SyncTransportError
from mangostore.filestore.chunkcrypt import tampered
from mangostore.filestore.chunkstore import ChunkStore
from mangostore.filestore.stream import Part
from mangostore.progress import Progress

__all__ = [
    "BlobRelay",
    "SendReport",
    "fetch_chunk",
    "fetch_missing",
    "forget_owner_later",
    "send_chunks",
]

#: Chunk names asked about at once (a request's worth).
_ASK: Final = 256


@runtime_checkable
class BlobRelay(Protocol):
    """What the file store needs of a relay that carries chunks (sealed, by name)."""

    def missing_blobs(self, vault_id: str, names: Sequence[str]) -> list[str]:
        """Those of ``names`` the relay does not hold for ``vault_id``.

        Raises:
            SyncTransportError: the relay could not be reached.
        """
        ...

    def put_blob(self, vault_id: str, name: str, owner_tag: str, data: bytes) -> None:
        """Keep ``data`` as chunk ``name`` of the owner with folder name ``owner_tag``
        (a chunk already held is kept as it is).

        Raises:
            SyncTransportError: the relay could not be reached or refused it.
        """
        ...

    def get_blob(self, vault_id: str, name: str) -> bytes | None:
        """Chunk ``name``'s sealed bytes, or ``None`` when the relay does not hold it.

        Raises:
            SyncTransportError: the relay could not be reached.
        """
        ...

    def forget_blobs(self, vault_id: str, owner_tag: str) -> int:
        """Drop every chunk of the owner ``owner_tag``; return how many went.

        Raises:
            SyncTransportError: the relay could not be reached.
        """
        ...


@dataclass(frozen=True, slots=True)
class SendReport:
    """What one round of sending chunks did.

    Attributes:
        sent: chunks uploaded.
        bytes_sent: their sealed bytes.
        already_there: unsent chunks the relay already held (sent by another device).
        unreadable: unsent chunks whose file is missing here (``db.files.check()``
            lists the files they damage); they stay unsent.
        owners_forgotten: erased owners whose chunks the relay dropped.
    """

    sent: int = 0
    bytes_sent: int = 0
    already_there: int = 0
    unreadable: int = 0
    owners_forgotten: int = 0


def send_chunks(
    store: Store,
    chunk_store: Callable[[], ChunkStore],
    relay: BlobRelay,
    vault_id: str,
    progress: Progress | None = None,
) -> SendReport:
    """Upload the chunks of this device's files the relay does not hold yet, then ask
    it to drop the chunks of erased owners. ``chunk_store`` gives the chunk folder
    (called only when there is something to send).

    Raises:
        SyncTransportError: the relay could not be reached (what was sent stays sent).
    """
    with store.reading() as conn, driver_errors("listing unsent file chunks"):
        unsent = [
            (str(name), str(owner), int(size))
            for name, owner, size in conn.execute(
                "SELECT c.name, c.user_id, c.stored_size FROM file_chunks c "
                "WHERE c.remote = 0 AND c.state = 'live' "
                "AND EXISTS (SELECT 1 FROM file_parts p WHERE p.chunk = c.name) ORDER BY c.name"
            )
        ]
        forget = [str(row[0]) for row in conn.execute("SELECT owner_tag FROM file_relay_forget")]
    if not unsent and not forget:
        return SendReport()
    chunks = chunk_store()
    total = sum(size for _, _, size in unsent)
    sent = sent_bytes = already = unreadable = looked_at = 0
    if progress is not None and unsent:
        progress(0, total, "sending files")
    for start in range(0, len(unsent), _ASK):
        group = unsent[start : start + _ASK]
        missing = set(relay.missing_blobs(vault_id, [name for name, _, _ in group]))
        done: list[str] = []
        for name, owner, size in group:
            looked_at += size
            if name in missing:
                data = chunks.read(owner, name)
                if data is None:
                    unreadable += 1
                    continue
                relay.put_blob(vault_id, name, chunks.owner_tag(owner), data)
                sent += 1
                sent_bytes += len(data)
            else:
                already += 1
            done.append(name)
            if progress is not None:  # counts what the relay had too: the bar ends full
                progress(looked_at, total, "sending files")
        _mark_remote(store, done)
    for tag in forget:
        relay.forget_blobs(vault_id, tag)
        with store.transaction() as conn, driver_errors("recording a forgotten owner"):
            conn.execute("DELETE FROM file_relay_forget WHERE owner_tag = ?", (tag,))
    return SendReport(sent, sent_bytes, already, unreadable, len(forget))


def _mark_remote(store: Store, names: list[str]) -> None:
    if not names:
        return
    with store.transaction() as conn, driver_errors("marking sent file chunks"):
        conn.execute(
            "UPDATE file_chunks SET remote = 1 WHERE name IN (SELECT value FROM json_each(?))",
            (json.dumps(names),),
        )


def fetch_chunk(
    store: Store,
    chunks: ChunkStore,
    relay: BlobRelay | None,
    vault_id: str,
    owner: str,
    part: Part,
    unseal: Callable[[Part, bytes], bytes],
) -> bytes:
    """The plaintext of ``part``, whose chunk is not in this device's folder: fetched
    from the relay, authenticated by ``unseal`` and kept in the folder.

    Raises:
        TamperedDataError: the relay's copy does not authenticate, or the chunk is
            known here (it was in this folder) and the relay cannot give it back.
        FileUnavailableError: the chunk was never on this device and cannot be
            fetched now (no relay carrying files, the relay does not hold it yet, or
            cannot be reached).
    """
    why = "no relay that carries files is connected (db.sync.connect)"
    if relay is not None:
        try:
            data = relay.get_blob(vault_id, part.chunk)
        except SyncTransportError as exc:
            raise FileUnavailableError(
                f"a chunk of this file is not on this device and the relay could not be "
                f"reached ({exc}); try again later"
            ) from exc
        if data is not None:
            plain = unseal(part, data)  # nothing unauthenticated is kept or returned
            _keep(store, chunks, owner, part, data)
            return plain
        why = "the relay does not hold it yet (the device that stored it has not synced)"
    with store.reading() as conn, driver_errors("reading file chunks"):
        known = conn.execute("SELECT 1 FROM file_chunks WHERE name = ?", (part.chunk,)).fetchone()
    if known is not None:
        raise tampered("a missing chunk")
    raise FileUnavailableError(
        f"a chunk of this file is not on this device and {why}; sync and try again"
    )


def fetch_missing(
    store: Store,
    loader_of: Callable[[str], Callable[[Part], bytes]],
    progress: Progress | None = None,
) -> int:
    """Fetch every chunk that files use and this device does not hold, each through
    the loader of a file using it (``loader_of(file_id)``); return how many."""
    with store.reading() as conn, driver_errors("listing chunks to fetch"):
        wanted = conn.execute(
            "SELECT p.chunk, min(p.size), min(p.file_id) FROM file_parts p "
            "WHERE NOT EXISTS (SELECT 1 FROM file_chunks c WHERE c.name = p.chunk) "
            "GROUP BY p.chunk ORDER BY min(p.file_id)"
        ).fetchall()
    loaders: dict[str, Callable[[Part], bytes]] = {}
    for done, (chunk, size, file_id) in enumerate(wanted, start=1):
        load = loaders.get(file_id)
        if load is None:
            load = loaders[file_id] = loader_of(str(file_id))
        load(Part(0, int(size), str(chunk)))
        if progress is not None:
            progress(done, len(wanted), "fetching files")
    return len(wanted)


def _keep(store: Store, chunks: ChunkStore, owner: str, part: Part, data: bytes) -> None:
    """Write a fetched chunk into the folder and record it, under the put lock (so no
    sweep removes the file between its write and its row's commit)."""
    with chunks.putting():
        chunks.write_all([(owner, part.chunk, data)])
        with store.transaction() as conn, driver_errors("recording a fetched file chunk"):
            conn.execute(
                "INSERT INTO file_chunks (name, user_id, size, stored_size, state, created_at, "
                "remote) VALUES (?, ?, ?, ?, 'live', ?, 1) ON CONFLICT (name) DO UPDATE SET "
                "state = 'live', remote = 1, stored_size = excluded.stored_size",
                (part.chunk, owner, part.size, len(data), store.clock.now_ms()),
            )


def forget_owner_later(store: Store, owner_tag: str) -> None:
    """Record that the relay must drop the chunks of ``owner_tag`` (an erased user's);
    the next sync round asks it to."""
    with store.transaction() as conn, driver_errors("recording an erased owner's chunks"):
        conn.execute(
            "INSERT INTO file_relay_forget (owner_tag, created_at) VALUES (?, ?) "
            "ON CONFLICT (owner_tag) DO NOTHING",
            (owner_tag, store.clock.now_ms()),
        )
