"""Encrypted streams: records, then zstd, then AES-256-GCM in chunks, cut into objects.

A backup's bulk data is one *stream* of records (:func:`frame`). The writer compresses
it with zstd as it arrives, cuts the compressed bytes into chunks of
:data:`CHUNK_BYTES`, seals each chunk with AES-256-GCM and appends it to the current
*part* object; a part is closed (and committed atomically by the destination) once it
holds ``part_bytes``. Compression comes before encryption because ciphertext does not
compress.

Each sealed chunk is ``length (4 bytes, big-endian) | nonce (12) | ciphertext | tag (16)``.
Its associated data binds the backup id, the stream's name, the chunk's index in the
whole stream (8 bytes) and a last-chunk flag, so a chunk moved to another place,
another stream or another backup fails authentication, and a stream cut after any
chunk but the last is reported as truncated rather than read as complete.

Memory: the writer holds at most two chunks and zstd's window (with worker threads,
also their job buffers, a few MiB each); the reader holds one chunk, zstd's window and
one record. Plaintext never reaches a file.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Final

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mangostore.backup.destinations import Destination
from mangostore.errors import BackupCorruptError

__all__ = [
    "CHUNK_BYTES",
    "ObjectInfo",
    "StreamReader",
    "StreamWriter",
    "frame",
    "open_sealed",
    "read_records",
    "seal_one",
]

#: Compressed bytes per sealed chunk.
CHUNK_BYTES: Final = 1 << 20
_NONCE: Final = 12
_TAG: Final = 16
_LEN = struct.Struct(">I")
_INDEX = struct.Struct(">Q")
_RECORD = struct.Struct(">cI")
_AAD_PREFIX: Final = b"mangostore-backup/1/"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object of a backup as its manifest lists it."""

    name: str
    role: str
    sha256: str
    size: int


def frame(kind: bytes, payload: bytes) -> bytes:
    """One record of a stream: a kind byte, the payload's length, the payload."""
    return _RECORD.pack(kind, len(payload)) + payload


def _aad(backup_id: str, stream: str, index: int, last: bool) -> bytes:
    return (
        _AAD_PREFIX
        + backup_id.encode()
        + b"/"
        + stream.encode()
        + b"/"
        + _INDEX.pack(index)
        + (b"\x01" if last else b"\x00")
    )


def seal_one(key: bytes, backup_id: str, stream: str, plaintext: bytes) -> bytes:
    """Seal a small object in one message (the key block): ``nonce | ciphertext | tag``."""
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(backup_id, stream, 0, True))


def open_sealed(key: bytes, backup_id: str, stream: str, blob: bytes, name: str) -> bytes:
    """Open what :func:`seal_one` made.

    Raises:
        BackupCorruptError: the blob was changed, or belongs to another backup or vault.
    """
    try:
        return AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], _aad(backup_id, stream, 0, True))
    except (InvalidTag, ValueError) as exc:
        raise BackupCorruptError(
            f"backup object {name} fails authentication: it was changed, or belongs to "
            "another backup or vault",
            name,
        ) from exc


class StreamWriter:
    """Compresses, seals and stores one stream of a backup as part objects.

    Args:
        destination: where the parts go.
        backup_id: the backup the stream belongs to.
        stream: its name within the backup (``data``, ``index``).
        key: the backup's data key (32 bytes).
        part_bytes: close a part once it holds this many bytes.
        level: the zstd level.
        threads: zstd worker threads (0: compress in the calling thread). With
            workers, compression runs beside the caller, which goes on reading rows;
            the output is a standard zstd frame either way.
        on_bytes: told the stored size of each chunk written (progress).
        role: the parts' role in the manifest (default: the stream's name).
    """

    def __init__(
        self,
        destination: Destination,
        backup_id: str,
        stream: str,
        key: bytes,
        *,
        part_bytes: int,
        level: int = 3,
        threads: int = 0,
        on_bytes: Callable[[int], None] | None = None,
        role: str | None = None,
    ) -> None:
        self._dest = destination
        self._id = backup_id
        self._stream = stream
        self._role = role or stream
        self._aead = AESGCM(key)
        self._part_bytes = max(part_bytes, CHUNK_BYTES)
        self._compressor = zstandard.ZstdCompressor(level=level, threads=threads).compressobj()
        self._pending = bytearray()
        self._index = 0
        self._part: _Part | None = None
        self._on_bytes = on_bytes
        #: The parts committed so far, in order.
        self.objects: list[ObjectInfo] = []
        #: Bytes written into the stream before compression.
        self.plain_bytes = 0

    def write(self, data: bytes) -> None:
        """Add ``data`` to the stream."""
        self.plain_bytes += len(data)
        self._pending += self._compressor.compress(data)
        while len(self._pending) > CHUNK_BYTES:
            self._seal(bytes(self._pending[:CHUNK_BYTES]), last=False)
            del self._pending[:CHUNK_BYTES]

    def close(self) -> list[ObjectInfo]:
        """Seal the last chunk, commit the last part, and return every part."""
        self._pending += self._compressor.flush()
        while len(self._pending) > CHUNK_BYTES:
            self._seal(bytes(self._pending[:CHUNK_BYTES]), last=False)
            del self._pending[:CHUNK_BYTES]
        self._seal(bytes(self._pending), last=True)
        self._pending.clear()
        self._finish_part()
        return self.objects

    def abort(self) -> None:
        """Drop the part being written (the parts already committed stay; the caller
        deletes them)."""
        if self._part is not None:
            self._part.abort()
            self._part = None

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        nonce = secrets.token_bytes(_NONCE)
        sealed = nonce + self._aead.encrypt(
            nonce, chunk, _aad(self._id, self._stream, self._index, last)
        )
        self._index += 1
        if self._part is None:
            name = f"objects/{self._id}/{self._stream}.{len(self.objects):05d}"
            self._part = _Part(name, self._dest)
        self._part.write(_LEN.pack(len(sealed)) + sealed)
        if self._on_bytes is not None:
            self._on_bytes(len(sealed) + _LEN.size)
        if self._part.size >= self._part_bytes:
            self._finish_part()

    def _finish_part(self) -> None:
        if self._part is not None:
            self.objects.append(self._part.commit(self._role))
            self._part = None


class _Part:
    """One part object being written, hashed as it goes."""

    def __init__(self, name: str, destination: Destination) -> None:
        self.name = name
        self.size = 0
        self._hash = hashlib.sha256()
        self._cm = destination.writing(name)
        self._file: IO[bytes] = self._cm.__enter__()

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def commit(self, role: str) -> ObjectInfo:
        self._cm.__exit__(None, None, None)
        return ObjectInfo(self.name, role, self._hash.hexdigest(), self.size)

    def abort(self) -> None:
        err = RuntimeError("aborted")
        self._cm.__exit__(RuntimeError, err, None)


class _ChunkSource(io.RawIOBase):
    """The decrypted chunks of a stream as one file-like, for zstd's stream reader."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._buffer = nxt
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


class StreamReader:
    """Reads back one stream: checks each part's SHA-256 and each chunk's tag, index and
    last-chunk flag, and yields the decompressed bytes.

    Errors name the first bad object. Chunks are decrypted as they are read, so a
    caller applying the stream must be ready to discard what it did when an error
    comes (restore writes into a new file it deletes).
    """

    def __init__(
        self,
        destination: Destination,
        backup_id: str,
        stream: str,
        key: bytes,
        objects: list[ObjectInfo],
        *,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self._dest = destination
        self._id = backup_id
        self._stream = stream
        self._aead = AESGCM(key)
        self._objects = objects
        self._on_bytes = on_bytes

    def chunks(self) -> Iterator[bytes]:
        """The decrypted (still compressed) chunks, in order."""
        index = 0
        ended = False
        for obj in self._objects:
            if ended:
                raise _corrupt(obj.name, "follows the stream's last chunk")
            digest = hashlib.sha256()
            with self._dest.reading(obj.name) as src:
                while True:
                    head = src.read(_LEN.size)
                    if not head:
                        break
                    if len(head) < _LEN.size:
                        raise _corrupt(obj.name, "is truncated")
                    (length,) = _LEN.unpack(head)
                    if length > CHUNK_BYTES + _NONCE + _TAG + 64:
                        raise _corrupt(obj.name, "holds a chunk of an impossible size")
                    sealed = src.read(length)
                    if len(sealed) < length:
                        raise _corrupt(obj.name, "is truncated")
                    digest.update(head)
                    digest.update(sealed)
                    if ended:
                        raise _corrupt(obj.name, "has data after the stream's last chunk")
                    plain, ended = self._open(sealed, index, obj.name)
                    index += 1
                    if self._on_bytes is not None:
                        self._on_bytes(length + _LEN.size)
                    yield plain
            if digest.hexdigest() != obj.sha256:
                raise _corrupt(obj.name, "does not match the SHA-256 in the manifest")
        if not ended:
            last = self._objects[-1].name if self._objects else f"{self._id}/{self._stream}"
            raise _corrupt(last, "ends before the stream's last chunk (truncated)")

    def _open(self, sealed: bytes, index: int, name: str) -> tuple[bytes, bool]:
        nonce, body = sealed[:_NONCE], sealed[_NONCE:]
        for last in (False, True):
            try:
                aad = _aad(self._id, self._stream, index, last)
                return self._aead.decrypt(nonce, body, aad), last
            except InvalidTag:
                continue
        raise _corrupt(
            name,
            f"fails authentication at chunk {index}: it was changed, reordered, or comes "
            "from another backup or vault",
        )

    def read(self) -> IO[bytes]:
        """The decompressed stream as a file-like (read it to the end)."""
        raw = io.BufferedReader(_ChunkSource(self.chunks()), buffer_size=CHUNK_BYTES)
        reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return reader


def read_records(source: IO[bytes], name: str) -> Iterator[tuple[bytes, bytes]]:
    """The records of a decompressed stream, as ``(kind, payload)``.

    Raises:
        BackupCorruptError: the stream ends inside a record.
    """
    while True:
        try:
            head = _read_exact(source, _RECORD.size)
        except zstandard.ZstdError as exc:
            raise _corrupt(name, "cannot be decompressed") from exc
        if not head:
            return
        if len(head) < _RECORD.size:
            raise _corrupt(name, "ends inside a record")
        kind, length = _RECORD.unpack(head)
        try:
            payload = _read_exact(source, length)
        except zstandard.ZstdError as exc:
            raise _corrupt(name, "cannot be decompressed") from exc
        if len(payload) < length:
            raise _corrupt(name, "ends inside a record")
        yield kind, payload


def _read_exact(source: IO[bytes], size: int) -> bytes:
    parts: list[bytes] = []
    left = size
    while left:
        got = source.read(left)
        if not got:
            break
        parts.append(got)
        left -= len(got)
    return b"".join(parts)


def _corrupt(name: str, what: str) -> BackupCorruptError:
    return BackupCorruptError(
        f"backup object {name} {what}; this backup cannot be restored (nothing was "
        "changed): restore an earlier backup, or make a new one",
        name,
    )
