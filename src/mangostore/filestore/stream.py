"""A stored file as a readable, seekable binary stream that decrypts as it goes.

Only the chunk under the read position and the next one are held in memory (each at
most :data:`~mangostore.filestore.chunking.MAX_CHUNK` bytes), whatever the file's
size. A seek moves to any byte: the stream finds the chunk holding it from the chunk
offsets and opens that chunk when it is read. Every chunk is authenticated before any
of its bytes is returned. A stream read from the start to the end also checks the
file's SHA-256 before it returns the last chunk's bytes, so a file whose chunks were
all genuine but reordered or dropped is refused too.

Reading in order keeps two threads busy beside the caller: one reads and decrypts the
next chunk while the caller uses the current one (an error there is raised only when
the caller reaches that chunk), the other hashes the chunks already opened. After a
seek the chunk under the new position is opened in the caller's thread, and read-ahead
starts again once the caller reads on into the chunk after it.
"""

from __future__ import annotations

import bisect
import hashlib
import io
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from mangostore.errors import ValidationError
from mangostore.filestore.chunkcrypt import tampered
from mangostore.filestore.lanes import Lane

__all__ = ["FileStream", "Part"]

#: Chunks read and decrypted ahead of the reader, each in a thread of its own (the
#: decryption releases the interpreter, so they overlap on several cores).
_READ_AHEAD = 2


@dataclass(frozen=True, slots=True)
class Part:
    """One chunk of a file: where it starts in the file, its length and its name."""

    start: int
    size: int
    chunk: str


class FileStream(io.RawIOBase):
    """A read-only binary stream over a stored file (use it as a context manager).

    Args:
        size: the file's length in bytes.
        digest: the file's SHA-256 (hex), checked at the end of a sequential read.
        parts: the file's chunks in order.
        load: opens a chunk and returns its plaintext (raises on tampering).
        check_digest: whether a sequential read checks ``digest`` (every chunk is
            authenticated either way).
    """

    def __init__(
        self,
        size: int,
        digest: str,
        parts: Sequence[Part],
        load: Callable[[Part], bytes],
        *,
        check_digest: bool = True,
    ) -> None:
        super().__init__()
        self._size = size
        self._digest = digest
        self._parts = list(parts)
        self._starts = [p.start for p in self._parts]
        self._load = load
        self._pos = 0
        self._index = -1
        self._data = b""
        # The file's hash over the chunks loaded in order from the start, while they are.
        self._hasher = hashlib.sha256()
        self._hashing = check_digest
        self._hashed = 0
        self._lane: Lane | None = None
        # The next chunk, read and decrypted ahead while the caller reads this one.
        self._reader: ThreadPoolExecutor | None = None
        self._ahead: deque[tuple[int, Future[bytes]]] = deque()
        if not self._parts and size == 0 and hashlib.sha256().hexdigest() != digest:
            raise tampered("the record")

    def __repr__(self) -> str:
        return f"<FileStream {self._size} bytes at {self._pos}{' closed' if self.closed else ''}>"

    @property
    def size(self) -> int:
        """The file's length in bytes."""
        return self._size

    def readable(self) -> bool:
        """Always ``True``."""
        return True

    def seekable(self) -> bool:
        """Always ``True``: any byte can be reached."""
        return True

    def tell(self) -> int:
        """The read position."""
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the read position (as :meth:`io.IOBase.seek`); return the new one.

        Raises:
            ValidationError: the position would be negative, or ``whence`` is unknown.
        """
        self._checkClosed()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self._size + offset
        else:
            raise ValidationError(f"whence must be 0, 1 or 2, not {whence!r}", field="whence")
        if target < 0:
            raise ValidationError("cannot seek before the start of a file", field="offset")
        self._pos = target
        return target

    def read(self, size: int | None = -1) -> bytes:
        """Read ``size`` bytes (all that is left when negative or ``None``); fewer only
        at the end of the file."""
        self._checkClosed()
        left = max(self._size - self._pos, 0)
        want = left if size is None or size < 0 else min(size, left)
        first = self._piece(want)
        if len(first) == want:  # within one chunk: one copy
            return bytes(first)
        # Each piece keeps its chunk alive until the one copy that joins them.
        pieces = [first]
        got = len(first)
        while got < want:
            pieces.append(self._piece(want - got))
            got += len(pieces[-1])
        return b"".join(pieces)

    def readall(self) -> bytes:
        """Read everything left."""
        return self.read()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer`` from the read position; return how many bytes (fewer only at
        the end of the file)."""
        self._checkClosed()
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            piece = self._piece(len(view) - done)
            view[done : done + len(piece)] = piece
            done += len(piece)
        return done

    def read_chunked(self) -> bytes:
        """The rest of the current chunk from the read position (empty at the end).

        Faster than :meth:`read` for copying a whole file: a chunk read from its start
        is returned as it was decrypted, without a copy.
        """
        self._checkClosed()
        piece = self._piece(self._size)
        if len(piece) == len(self._data):
            return self._data  # the whole chunk: bytes, so nobody can change it
        return bytes(piece)

    def _piece(self, limit: int) -> memoryview:
        """Up to ``limit`` bytes from the read position, all from one chunk; advances."""
        if self._pos >= self._size:
            return memoryview(b"")
        index = bisect.bisect_right(self._starts, self._pos) - 1
        if index != self._index:
            self._open(index)
        part = self._parts[index]
        inner = self._pos - part.start
        count = min(limit, part.size - inner)
        self._pos += count
        return memoryview(self._data)[inner : inner + count]

    def _open(self, index: int) -> None:
        part = self._parts[index]
        # Drop the previous chunk first: memory holds the current and the next chunk.
        in_order = index == self._index + 1 or self._pos == part.start
        self._data = b""
        self._index = -1
        data = self._loaded(index)
        if len(data) != part.size:
            raise tampered()
        if in_order and index + 1 < len(self._parts):
            if self._reader is None:
                # Not a lane: an error loading a chunk belongs to the caller who reaches
                # that chunk, never to whoever submits the next one.
                self._reader = ThreadPoolExecutor(_READ_AHEAD, thread_name_prefix="mangostore-read")
            following = self._ahead[-1][0] + 1 if self._ahead else index + 1
            for nxt in range(following, min(index + 1 + _READ_AHEAD, len(self._parts))):
                self._ahead.append((nxt, self._reader.submit(self._load, self._parts[nxt])))
        if self._hashing:
            if part.start == self._hashed:
                # Hashed in a thread of its own while the reader uses the chunk; the
                # last chunk waits for the whole file's hash before any of it is used.
                if self._lane is None:
                    self._lane = Lane("mangostore-verify", depth=2)
                self._lane.submit(self._hasher.update, data)
                self._hashed += part.size
                if self._hashed == self._size:
                    self._stop_hashing()
                    if self._hasher.hexdigest() != self._digest:
                        raise tampered("the chunk list")
            elif part.start > self._hashed:
                self._stop_hashing()  # skipped ahead: no whole-file check on this pass
        self._data = data
        self._index = index

    def _loaded(self, index: int) -> bytes:
        """Chunk ``index``'s plaintext: read ahead already, or loaded now."""
        if self._ahead and self._ahead[0][0] == index:
            return self._ahead.popleft()[1].result()  # raises what loading it raised
        while self._ahead:  # a seek went elsewhere: not needed (if not started)
            self._ahead.popleft()[1].cancel()
        return self._load(self._parts[index])

    def _stop_hashing(self) -> None:
        self._hashing = False
        if self._lane is not None:
            try:
                self._lane.drain()
            finally:
                self._lane.close()
                self._lane = None

    def close(self) -> None:
        """Close the stream and drop the chunks held in memory."""
        self._data = b""
        self._ahead.clear()
        if self._reader is not None:
            self._reader.shutdown(wait=True, cancel_futures=True)
            self._reader = None
        if self._lane is not None:
            self._lane.close()
            self._lane = None
        super().close()
