"""One put: chunks sealed and written first, then the file recorded in one transaction.

The chunks are written (each atomically, then their folders flushed) before the
transaction that names them commits, so a committed file never names a chunk that
is not on disk. A put killed before its commit leaves chunk files no row names,
which the next sweep removes; nothing of the file is visible meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.engine.store import Store
from mangostore.errors import (
    FileStoreError,
    JSONValueError,
    NotFoundError,
    QuotaExceededError,
    ValidationError,
)
from mangostore.filestore.chunkcrypt import ChunkContext, seal_chunk
from mangostore.filestore.chunking import iter_chunks
from mangostore.filestore.chunkstore import ChunkStore, ChunkWriter
from mangostore.filestore.lanes import Lane
from mangostore.filestore.model import FileRecord
from mangostore.filestore.stream import Part
from mangostore.ids import new_id
from mangostore.progress import Progress

__all__ = [
    "FILE_COLUMNS",
    "Put",
    "Source",
    "metadata_text",
    "open_source",
    "over_quota",
    "quota_state",
    "record_of",
]

#: What a put stores from: bytes, a path to a file, or a binary stream read to its end.
Source = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO
FILE_COLUMNS: Final = (
    "id, user_id, name, media_type, size, digest, metadata, chunk_count, created_at"
)
#: Bytes between two progress reports of a put.
_REPORT_BYTES: Final = 8 * 1024 * 1024
#: Chunks cut ahead of the one whose name is awaited: they keep the hashing and naming
#: lanes busy meanwhile (and are held in memory).
_AHEAD: Final = 2
#: Lanes sealing and writing chunks side by side.
_SEALERS: Final = 2


def _name(
    namer: hmac.HMAC, chunk: memoryview, state_of: Callable[[str], str | None]
) -> tuple[str, bool]:
    """A chunk's name (the owner's keyed hash of its bytes) and whether the owner
    stores it live already (in the naming lane, off the thread that reads the source)."""
    mac = namer.copy()
    mac.update(chunk)
    name = mac.hexdigest()
    return name, state_of(name) == "live"


@dataclass
class Put:
    """The state of one put while its chunks are written.

    Attributes:
        owner: the file's owner.
        key_id, key: the owner's data key the chunks are sealed under.
        vault_id: bound into every chunk.
        limit, used: the owner's quota (``None``: none) and usage when the put began.
        size_hint: the source's size when known.
        written: chunks this put wrote: name -> (plaintext size, stored size).
    """

    owner: str
    key_id: uuid.UUID
    key: bytes
    vault_id: str
    limit: int | None
    used: int
    size_hint: int | None
    parts: list[Part] = field(default_factory=list)
    written: dict[str, tuple[int, int]] = field(default_factory=dict)
    size: int = 0
    digest: str = ""

    def write_chunks(
        self,
        chunks: ChunkStore,
        stream: BinaryIO,
        state_of: Callable[[str], str | None],
        progress: Progress | None,
    ) -> None:
        """Chunk ``stream``; seal and write each chunk the owner has no live copy of.

        ``state_of`` returns a stored chunk's state (``None``: not stored).

        Raises:
            QuotaExceededError: the stream went past the owner's quota.
        """
        namer = chunks.namer(self.owner)
        writer = chunks.writer()
        try:
            self._write(namer, writer, stream, state_of, progress)
        except BaseException:
            with contextlib.suppress(Exception):
                writer.close(flush=False)
            raise
        writer.close(flush=True)

    def _write(
        self,
        namer: hmac.HMAC,
        writer: ChunkWriter,
        stream: BinaryIO,
        state_of: Callable[[str], str | None],
        progress: Progress | None,
    ) -> None:
        digest = hashlib.sha256()
        hashing = Lane("mangostore-digest", depth=_AHEAD + 1)
        naming = Lane("mangostore-name", depth=_AHEAD + 1)
        # Two sealing lanes: zstd on a compressible chunk is the slowest step of all.
        sealing = [Lane(f"mangostore-seal{n}", depth=2) for n in range(_SEALERS)]
        try:
            self._chunk(namer, writer, stream, state_of, progress, digest, hashing, naming, sealing)
            hashing.drain()
            for lane in sealing:
                lane.drain()
        finally:
            hashing.close()
            naming.close()
            for lane in sealing:
                lane.close()
        self.digest = digest.hexdigest()
        if progress is not None:
            progress(self.size, self.size, "storing")

    def _chunk(
        self,
        namer: hmac.HMAC,
        writer: ChunkWriter,
        stream: BinaryIO,
        state_of: Callable[[str], str | None],
        progress: Progress | None,
        digest: Any,
        hashing: Lane,
        naming: Lane,
        sealing: list[Lane],
    ) -> None:
        """Read and cut the chunks here; hash, name, seal and write them in the lanes.

        Naming is a keyed SHA-256 of every byte, as costly as the file's own hash, so
        it runs in a lane of its own, with the look-up of the name among the owner's
        chunks; a chunk's name is awaited (a few chunks later) only to decide whether
        it must be sealed, which one of the sealing lanes then does.
        """
        seen: set[str] = set()
        named: deque[tuple[int, memoryview, Future[tuple[str, bool]]]] = deque()
        reported = 0
        if progress is not None:
            progress(0, self.size_hint, "storing")
        for chunk in iter_chunks(stream, self.size_hint):
            hashing.submit(digest.update, chunk)
            named.append((self.size, chunk, naming.submit(_name, namer, chunk, state_of)))
            self.size += len(chunk)
            if self.limit is not None and self.used + self.size > self.limit:
                raise over_quota(self.owner, self.limit, self.used, self.size)
            while len(named) > _AHEAD:
                self._place(writer, seen, sealing, *named.popleft())
            if progress is not None and self.size - reported >= _REPORT_BYTES:
                progress(self.size, self.size_hint, "storing")
                reported = self.size
        while named:
            self._place(writer, seen, sealing, *named.popleft())

    def _place(
        self,
        writer: ChunkWriter,
        seen: set[str],
        sealing: list[Lane],
        start: int,
        chunk: memoryview,
        named: Future[tuple[str, bool]],
    ) -> None:
        """Add a named chunk to the file; have it sealed unless the owner stores it."""
        name, live = named.result()
        self.parts.append(Part(start, len(chunk), name))
        if name not in seen:
            seen.add(name)
            if not live:
                lane = sealing[len(self.parts) % len(sealing)]
                lane.submit(self._seal, writer, name, chunk)

    def _seal(self, writer: ChunkWriter, name: str, chunk: memoryview) -> None:
        """Seal and write one chunk (in the sealing lane)."""
        context = ChunkContext(self.vault_id, self.owner, name)
        blob = seal_chunk(self.key, self.key_id, chunk, context)
        writer.write(self.owner, name, blob)
        self.written[name] = (len(chunk), len(blob))

    def record(
        self, store: Store, name: str | None, media_type: str, meta_text: str | None
    ) -> FileRecord:
        """Record the file and its new chunks in one transaction, the quota checked in it.

        Raises:
            QuotaExceededError: another put took the owner past their quota meanwhile.
            FileStoreError: the owner's chunks were deleted meanwhile (with the owner).
        """
        file_id = new_id()
        now = store.clock.now_ms()
        with store.transaction() as conn, driver_errors("recording a stored file"):
            limit, used = quota_state(conn, self.owner)
            if limit is not None and used + self.size > limit:
                raise over_quota(self.owner, limit, used, self.size)
            for chunk in dict.fromkeys(p.chunk for p in self.parts):
                self._keep_chunk(conn, chunk, now)
            # The chunk list travels in the row (a synced file arrives whole); the
            # schema's trigger derives file_parts from it.
            parts = json.dumps([[p.start, p.size, p.chunk] for p in self.parts])
            conn.execute(
                f"INSERT INTO files ({FILE_COLUMNS}, parts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    file_id,
                    self.owner,
                    name,
                    media_type,
                    self.size,
                    self.digest,
                    meta_text,
                    len(self.parts),
                    now,
                    parts,
                ),
            )
        metadata = None if meta_text is None else json.loads(meta_text)
        return FileRecord(
            file_id,
            self.owner,
            name,
            media_type,
            self.size,
            self.digest,
            metadata,
            len(self.parts),
            now,
        )

    def _keep_chunk(self, conn: Connection, chunk: str, now: int) -> None:
        """Make the chunk's row live, inserting it for a chunk this put wrote."""
        row = conn.execute("SELECT state FROM file_chunks WHERE name = ?", (chunk,)).fetchone()
        if chunk in self.written:
            plain, stored = self.written[chunk]
            if row is None:
                conn.execute(
                    "INSERT INTO file_chunks (name, user_id, size, stored_size, state, "
                    "created_at) VALUES (?, ?, ?, ?, 'live', ?)",
                    (chunk, self.owner, plain, stored, now),
                )
            else:  # another put stored it meanwhile, or it was dead: this copy is on disk
                conn.execute(
                    "UPDATE file_chunks SET state = 'live', stored_size = ? WHERE name = ?",
                    (stored, chunk),
                )
        elif row is None:
            # A reused chunk cannot be swept while this put holds the folder's lock;
            # only the owner's deletion (a cascade) takes its row away.
            raise FileStoreError(
                f"the chunks of user {self.owner!r} were removed while their file was being "
                "stored (the user was deleted?); put the file again"
            )
        elif row[0] != "live":
            conn.execute("UPDATE file_chunks SET state = 'live' WHERE name = ?", (chunk,))


def quota_state(conn: Connection, user_id: str) -> tuple[int | None, int]:
    """``(quota, bytes used)`` of ``user_id`` (quota ``None``: none)."""
    with driver_errors("reading a file quota"):
        row = conn.execute(
            "SELECT (SELECT max_bytes FROM file_quotas WHERE user_id = ?), "
            "(SELECT COALESCE(SUM(size), 0) FROM files WHERE user_id = ?)",
            (user_id, user_id),
        ).fetchone()
    return (None if row[0] is None else int(row[0])), int(row[1])


def over_quota(user_id: str, limit: int, used: int, adding: int) -> QuotaExceededError:
    """The error of a put that would take ``user_id`` past their quota."""
    return QuotaExceededError(
        f"storing {adding} more bytes for user {user_id!r} would go past their quota of "
        f"{limit} bytes ({used} used); delete some of their files or raise the quota with "
        "db.files.set_quota",
        limit=limit,
        used=used,
    )


def metadata_text(metadata: dict[str, Any] | None) -> str | None:
    """The metadata as JSON text.

    Raises:
        JSONValueError: not a JSON object.
    """
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise JSONValueError("metadata must be a JSON object (a dict)", field="metadata")
    try:
        return json.dumps(metadata, ensure_ascii=False, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise JSONValueError(
            f"metadata is not JSON-serialisable: {exc}", field="metadata"
        ) from None


def open_source(
    source: Source,
) -> tuple[contextlib.AbstractContextManager[BinaryIO], int | None, str | None]:
    """The source as a stream to read, its size when known, and its default name.

    Raises:
        NotFoundError: a path that names no file.
        FileStoreError: a path that cannot be read.
        ValidationError: anything else.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return contextlib.nullcontext(io.BytesIO(data)), len(data), None
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise NotFoundError(f"no file at {path}") from None
        except OSError as exc:
            raise FileStoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return handle, os.fstat(handle.fileno()).st_size, path.name
    if hasattr(source, "read"):
        return contextlib.nullcontext(source), None, None
    raise ValidationError("source must be bytes, a path or a binary stream", field="source")


def record_of(row: Sequence[Any]) -> FileRecord:
    """A :class:`FileRecord` from a row of :data:`FILE_COLUMNS`."""
    meta = row[6]
    return FileRecord(
        id=str(row[0]),
        user_id=str(row[1]),
        name=row[2],
        media_type=str(row[3]),
        size=int(row[4]),
        digest=str(row[5]),
        metadata=None if meta is None else json.loads(meta),
        chunk_count=int(row[7]),
        created_at=int(row[8]),
    )
