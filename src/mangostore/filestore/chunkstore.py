"""The chunk folder beside the database: ``<db>.files/``.

Layout::

    <db>.files/
      lock                 the put/sweep lock (an flock, see below)
      tmp/                 chunks being written (a crash leaves them here)
      v1/<owner>/<name>    one sealed chunk (see :mod:`.chunkcrypt`)

``<owner>`` is a keyed hash of the owner's user id and ``<name>`` the keyed hash of
the owner and the plaintext chunk (HMAC-SHA256 under the vault's ``files`` sub-key):
neither says anything about a user or the content to someone without the key, and
equal chunks of one owner have one name, so they are stored once.

A chunk is written to ``tmp/``, flushed, renamed into place and its folder flushed
before the commit that names it, so a chunk file is either whole or absent. The
flushes of one put's chunks run in a few threads while the next chunks are sealed:
one ``fsync`` a chunk, one a folder, overlapped with the work of the put. An owner's
chunks share one folder (about a thousand files a gigabyte; directories of that
size are indexed by every current file system). The folder is never SQLite's: nothing here
touches the database's own files.

**The lock.** A put holds a shared ``flock`` on ``lock`` from its first chunk to its
commit; removing chunk files that no row names (left by a put that was killed, or
by a deletion) needs the exclusive lock, so it happens only while no put runs, in
this process or another. A put that reuses a stored chunk therefore never sees it
removed before its commit, and a sweep never removes the chunk of a put in flight.
The kernel drops the lock of a killed process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import os
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Final

from mangostore.errors import FileStoreError
from mangostore.files import fsync_directory, os_errors

__all__ = ["ChunkStore", "ChunkWriter", "chunk_folder"]

_LAYOUT: Final = "v1"
_NAME_LABEL: Final = b"mangostore/files/name/v1"
_OWNER_LABEL: Final = b"mangostore/files/owner/v1"
#: Chunk files flushed at once by one put (each holds one open descriptor meanwhile).
_IN_FLIGHT: Final = 8


def chunk_folder(database_path: str) -> Path:
    """Where the chunks of the database at ``database_path`` live."""
    return Path(database_path + ".files")


class ChunkStore:
    """Sealed chunks on disk, named by keyed hashes.

    Args:
        root: the folder (``<db>.files``); made on first write.
        name_key: the vault's ``files`` sub-key, keying chunk and owner names.
    """

    def __init__(self, root: Path, name_key: bytes) -> None:
        self.root = root
        self._name_key = name_key
        self._tags: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<ChunkStore {str(self.root)!r}>"

    # -- names ----------------------------------------------------------------------------

    def owner_tag(self, owner: str) -> str:
        """The folder name of ``owner``'s chunks."""
        tag = self._tags.get(owner)
        if tag is None:
            mac = hmac.new(self._name_key, _OWNER_LABEL + owner.encode("utf-8"), hashlib.sha256)
            tag = self._tags[owner] = mac.hexdigest()[:32]
        return tag

    def namer(self, owner: str) -> hmac.HMAC:
        """An HMAC primed with ``owner``: ``.copy()``, feed a chunk, ``.hexdigest()``."""
        raw = owner.encode("utf-8")
        return hmac.new(
            self._name_key, _NAME_LABEL + len(raw).to_bytes(4, "big") + raw, hashlib.sha256
        )

    def path(self, owner: str, name: str) -> Path:
        """Where chunk ``name`` of ``owner`` lives."""
        return self.root / _LAYOUT / self.owner_tag(owner) / name

    # -- writing --------------------------------------------------------------------------

    def _ensure(self) -> None:
        with os_errors("making the chunk folder", self.root, FileStoreError):
            (self.root / "tmp").mkdir(mode=0o700, parents=True, exist_ok=True)
            (self.root / _LAYOUT).mkdir(mode=0o700, exist_ok=True)

    def writer(self) -> ChunkWriter:
        """A writer for one put's chunks (close it before the commit)."""
        self._ensure()
        return ChunkWriter(self)

    def write_all(self, chunks: Iterable[tuple[str, str, bytes]]) -> int:
        """Write sealed chunks ``(owner, name, sealed bytes)``, each atomically, all
        flushed before this returns; return how many. The caller holds :meth:`putting`
        until the rows naming them commit.

        Raises:
            DiskFullError, FileStoreError: the folder cannot be written (an error the
                iterable raises goes through, after the chunks written so far settle).
        """
        count = 0
        writer = self.writer()
        try:
            for owner, name, blob in chunks:
                writer.write(owner, name, blob)
                count += 1
        except BaseException:
            with contextlib.suppress(Exception):
                writer.close(flush=False)
            raise
        writer.close(flush=True)
        return count

    # -- reading and removing -------------------------------------------------------------

    def read(self, owner: str, name: str) -> bytes | None:
        """The sealed chunk's bytes, or ``None`` when the file is missing."""
        target = self.path(owner, name)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FileStoreError(
                f"reading a file chunk failed: {exc.strerror or exc} ({target}); check the "
                "folder's permissions and the disk"
            ) from exc

    def remove(self, owner: str, name: str) -> bool:
        """Remove a chunk file; ``False`` if it was not there. Caller holds the sweep lock."""
        try:
            self.path(owner, name).unlink()
        except FileNotFoundError:
            return False
        return True

    def remove_owner(self, owner: str) -> int:
        """Remove every chunk of ``owner`` (after an erasure); return how many went."""
        folder = self.root / _LAYOUT / self.owner_tag(owner)
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def all_files(self) -> Iterator[tuple[str, str, Path]]:
        """Every chunk file on disk as ``(owner tag, name, path)``."""
        base = self.root / _LAYOUT
        if not base.is_dir():
            return
        for path in base.glob("*/*"):
            if path.is_file():
                yield path.parent.name, path.name, path

    def temp_files(self) -> list[Path]:
        """Chunks left half-written in ``tmp/`` by a put that was killed."""
        folder = self.root / "tmp"
        return [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []

    # -- the put/sweep lock ---------------------------------------------------------------

    @contextlib.contextmanager
    def putting(self) -> Iterator[None]:
        """Hold the shared lock for the length of a put (waits for a running sweep)."""
        self._ensure()
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    @contextlib.contextmanager
    def sweeping(self) -> Iterator[bool]:
        """Try the exclusive lock without waiting; yields whether it is held.

        Held, no put runs anywhere until the block ends: chunk files that no row names
        can be removed.
        """
        if not self.root.is_dir():
            yield True
            return
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                yield False
                return
            yield True
        finally:
            os.close(fd)


class ChunkWriter:
    """Writes one put's chunks: each file's bytes at once, then its ``fsync`` and
    rename into place in a small thread pool, overlapped with the put's work.
    :meth:`write` may be called from several threads at once.

    :meth:`close` waits for every chunk and flushes the folders they were renamed
    into; only then may the put commit. Made by :meth:`ChunkStore.writer`.
    """

    def __init__(self, store: ChunkStore) -> None:
        self._store = store
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mangostore-chunks")
        self._pending: deque[Future[None]] = deque()
        self._folders: set[Path] = set()
        # A put seals and writes in more than one thread: this guards the two above.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ChunkWriter {len(self._pending)} chunks in flight>"

    def write(self, owner: str, name: str, blob: bytes | bytearray) -> None:
        """Write a sealed chunk to ``tmp/``; its flush and rename follow in the pool.

        Raises:
            DiskFullError: no room left.
            FileStoreError: any other failure of the file system (of this chunk or
                of one written before it).
        """
        target = self._store.path(owner, name)
        with os_errors("writing a file chunk", target, FileStoreError):
            with self._lock:
                if target.parent not in self._folders:
                    if not target.parent.is_dir():
                        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                        self._folders.add(target.parent.parent)
                    self._folders.add(target.parent)
            fd, tmp = tempfile.mkstemp(prefix=name[:16] + "-", dir=self._store.root / "tmp")
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view) :]
            except BaseException:
                os.close(fd)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        with self._lock:
            self._pending.append(self._pool.submit(_settle, fd, tmp, target))
            waiting = [self._pending.popleft() for _ in range(len(self._pending) - _IN_FLIGHT)]
        for future in waiting:
            self._wait(future, target)

    def close(self, *, flush: bool) -> None:
        """Wait for every chunk; with ``flush``, flush their folders (before a commit).

        Raises:
            DiskFullError, FileStoreError: a chunk could not be written (the first
                error, after every chunk has settled).
        """
        error: BaseException | None = None
        while self._pending:
            try:
                self._wait(self._pending.popleft(), self._store.root)
            except BaseException as exc:  # keep waiting: no thread may outlive the put
                error = error or exc
        self._pool.shutdown(wait=True)
        if error is not None:
            raise error
        if flush:
            for folder in sorted(self._folders, key=lambda p: len(p.parts), reverse=True):
                with os_errors("flushing the chunk folder", folder, FileStoreError):
                    fsync_directory(folder)

    @staticmethod
    def _wait(future: Future[None], where: Path) -> None:
        with os_errors("writing a file chunk", where, FileStoreError):
            future.result()


def _settle(fd: int, tmp: str, target: Path) -> None:
    """Flush a chunk's temporary file and rename it into place (in a pool thread)."""
    try:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
