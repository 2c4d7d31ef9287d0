"""A relay kept in a folder, for devices that share one: :class:`FolderRelay`.

Several processes, and through a shared folder or a USB stick several machines, push
to and pull from one folder at once; no server runs. The folder holds only what a
:class:`~mangostore.sync.batches.Batch` is (header fields and sealed body), never a
key. Layout (cursors have 12 digits, shards 9: 1,000 files a folder, well under
what a FAT directory holds)::

    DIR/
      mangostore-relay                                the marker: format, how names are given
      <vault id>/
        batches/<shard>/<cursor>.batch                the batch at each cursor, from 1
        pushed/<device id>/<shard>/<number>.cursor    the cursor a (device, number) got first
        blobs/, blob-owners/                          stored files' chunks (folder_blobs)

Every file is written whole to a temporary file (``.tmp-...``) in ``batches/`` or
``pushed/<device id>/`` (the same file system), flushed to disk, then named by a hard
link, which fails when the name is taken: two processes never get one cursor, and
nobody reads half a file. Where the file system has no hard links (FAT and exFAT, as
on most USB sticks) the name is given by a rename under the folder's lock file; the
marker records which, so every machine does the same. A cursor is taken only once
the one before it exists: cursors have no gaps, and a reader stops at the first free
one.

A push first looks for the cursor its (device, number) got before and returns it:
a push repeated after a lost answer is not stored again. Two pushes of one
(device, number) racing each other may both be stored; both return the first one's
cursor, and a device applies a batch twice without effect.

Temporary files left by a crash are ignored, and removed by a later push once older
than ``temp_max_age_s``. Any other damage (a truncated or changed file, a missing
cursor, a format from a newer mangostore) raises
:class:`~mangostore.errors.SyncTransportError` naming the file: no batch is skipped.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

from mangostore.errors import SyncTransportError
from mangostore.sync.batches import MAX_BODY_BYTES, Batch
from mangostore.sync.folder_blobs import FolderBlobs
from mangostore.sync.transport import Pulled, SyncTransport

__all__ = ["FORMAT", "FolderRelay"]

#: The first line of every file the relay writes, before the kind of file.
FORMAT = "mangostore-folder-relay/1"
_FORMAT_PREFIX = b"mangostore-folder-relay/"
MARKER_NAME = "mangostore-relay"
SHARD_FILES = 1000
_TEMP_PREFIX = ".tmp-"
_LOCK_NAME = ".lock"
_BATCH_NAME = re.compile(r"\d{12}\.batch")
_SHARD_NAME = re.compile(r"\d{9}")
#: Vault and device ids name folders: lower case only, since FAT, NTFS and APFS do
#: not tell case apart, and no dots, so no id is ``..`` or hidden.
_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,127}")
#: The largest batch file read: a body the device would refuse, plus the header.
_MAX_FILE_BYTES = MAX_BODY_BYTES + 64 * 1024
#: How often a writer looks again at a lock file held by someone else.
_LOCK_POLL_S = 0.005
#: errno values of a link(2) the file system does not do (FAT, exFAT, some shares).
_NO_LINKS = frozenset(
    {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}
)
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
#: errno values of fsync(2) on a folder a file system does not flush (some shares).
_NO_DIR_SYNC = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF})

Publish = Literal["link", "lock"]


class FolderRelay(FolderBlobs):
    """A :class:`~mangostore.sync.transport.SyncTransport` kept in the folder ``path``.

    Safe for several threads, processes and machines at once. Nothing is read or
    written until the first push or pull (or :meth:`check`).

    Args:
        path: the relay folder: a local one, a shared folder, or one on a USB stick.
        create: make the folder at first use when it is missing (its parent must
            exist). Left false, a missing folder is an error: a share that is not
            mounted must not look like an empty relay.
        lock_wait_s: how long a writer waits for a lock file (folders without hard
            links only) before giving up.
        lock_stale_s: a lock file unchanged this long, while waited for, was left by
            a process that died holding it, and is removed. Locks are held for
            milliseconds.
        temp_max_age_s: temporary files older than this were left by a crash, and
            are removed by the next push; younger ones may be a push in progress.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        lock_wait_s: float = 30.0,
        lock_stale_s: float = 10.0,
        temp_max_age_s: float = 900.0,
    ) -> None:
        self._root = Path(path)
        self._create = create
        self._lock_wait_s = lock_wait_s
        self._lock_stale_s = lock_stale_s
        self._temp_max_age_s = temp_max_age_s
        self._publish_by: Publish | None = None
        self._swept_root = False
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"<mangostore FolderRelay {str(self._root)!r}>"

    @property
    def path(self) -> Path:
        """The relay folder."""
        return self._root

    # -- the transport -----------------------------------------------------------------------

    def push(self, batch: Batch) -> int:
        """Store ``batch`` under the next cursor of its vault; return the cursor.

        A (vault, device, number) pushed before is not stored again: its first
        cursor is returned.

        Raises:
            SyncTransportError: the folder is missing, not writable or full, a file
                in it is damaged, or the batch's ids cannot name a folder.
        """
        _check_id(batch.vault_id, "vault")
        _check_id(batch.device_id, "device")
        if batch.number < 1:
            raise SyncTransportError(f"batch {batch.number} cannot be stored: numbers start at 1")
        with self._os_errors("pushing a batch"):
            publish = self._ready(writing=True)
            assert publish is not None  # writing makes the marker
            vault = self._root / batch.vault_id
            index = _index_path(vault, batch.device_id, batch.number)
            first = self._read_index(index, batch)
            if first is not None:
                return first
            cursor = self._publish_batch(vault, batch, publish)
            return self._record(index, batch, cursor, publish)

    def pull(self, vault_id: str, after: int, limit: int) -> list[Pulled]:
        """Return up to ``limit`` batches of ``vault_id`` after cursor ``after``, in order.

        Raises:
            SyncTransportError: the folder is missing or unreadable, or a batch file
                is damaged or missing.
        """
        _check_id(vault_id, "vault")
        start = max(after, 0) + 1
        out: list[Pulled] = []
        with self._os_errors("pulling batches"):
            self._ready(writing=False)
            vault = self._root / vault_id
            cursor = start
            while cursor < start + max(limit, 0):
                path = _batch_path(vault, cursor)
                data = _read(path)
                if data is None:
                    # Free, or a file gone missing: only the second has cursors above.
                    if _highest(vault) < cursor:
                        break
                    data = _read(path)  # taken between the two looks
                    if data is None:
                        raise SyncTransportError(
                            f"the relay file {path} is missing, though later batches of "
                            f"vault {vault_id} are there: no device can pull past cursor "
                            f"{cursor}. Put the file back from a copy of the relay folder "
                            "(a backup, or the same folder on another machine)"
                        )
                out.append(Pulled(cursor, _decode_batch(data, path, vault_id, cursor)))
                cursor += 1
        return out

    # -- more than the transport -----------------------------------------------------------

    def check(self) -> None:
        """Make sure the folder can be used now: it is there (made, with ``create``),
        writable, and a relay of a format this mangostore knows.

        Raises:
            SyncTransportError: it is not, and the message says what to do.
        """
        with self._os_errors("preparing the relay folder"):
            self._ready(writing=True)

    def highest_cursor(self, vault_id: str) -> int:
        """The last cursor ``vault_id`` has in the folder (0: none yet).

        Raises:
            SyncTransportError: the folder is missing or unreadable.
        """
        _check_id(vault_id, "vault")
        with self._os_errors("reading the relay folder"):
            self._ready(writing=False)
            return _highest(self._root / vault_id)

    # -- the folder and its marker -----------------------------------------------------------

    def _ready(self, *, writing: bool) -> Publish | None:
        """Check the folder and read its marker (made first when ``writing``); return
        how names are given in it (``None``: no marker, nothing was pushed yet)."""
        with self._mutex:
            root = self._root
            if not root.is_dir():
                if root.exists():
                    raise SyncTransportError(
                        f"the relay folder {root} is a file, not a folder: choose a folder"
                    )
                if not self._create:
                    raise SyncTransportError(
                        f"the relay folder {root} does not exist: mount the shared folder or "
                        "USB stick that holds it, or create the folder to start a new relay"
                    )
                try:
                    root.mkdir()
                except FileExistsError:
                    pass
                except FileNotFoundError:
                    raise SyncTransportError(
                        f"the relay folder {root} cannot be made: {root.parent} does not "
                        "exist (is the shared folder or USB stick mounted?)"
                    ) from None
            if self._publish_by is None:
                data = _read(root / MARKER_NAME)
                if data is None:
                    if not writing:
                        return None
                    data = self._make_marker()
                publish = _parse(data, root / MARKER_NAME, "marker").get("publish")
                if publish not in ("link", "lock"):
                    raise _damaged(root / MARKER_NAME, "it does not say how names are given")
                self._publish_by = publish
            if writing and not self._swept_root:
                self._sweep(root)
                self._swept_root = True
            return self._publish_by

    def _make_marker(self) -> bytes:
        """Write the marker, saying whether this file system makes hard links."""
        root = self._root
        probe = _write_temp(root, b"")
        try:
            try:
                os.link(probe, root / f"{probe.name}-link")
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                publish: Publish = "lock"
            else:
                publish = "link"
        finally:
            self._sweep(root, everything_of=probe.name)
        marker = root / MARKER_NAME
        self._place(_file("marker", {"publish": publish}), root, marker, publish)
        # Another process may have made it first: its word counts.
        return _read(marker) or b""

    # -- writing -----------------------------------------------------------------------------

    def _publish_batch(self, vault: Path, batch: Batch, publish: Publish) -> int:
        """Give ``batch`` the next free cursor of ``vault``; return it."""
        folder = vault / "batches"
        folder.mkdir(parents=True, exist_ok=True)
        self._sweep(folder)
        tmp = _write_temp(folder, _encode_batch(batch))
        try:
            cursor = _highest(vault) + 1
            while True:
                target = _batch_path(vault, cursor)
                target.parent.mkdir(exist_ok=True)
                if self._give_name(tmp, target, publish):
                    return cursor
                cursor += 1  # another process took it
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _record(self, index: Path, batch: Batch, cursor: int, publish: Publish) -> int:
        """Record that ``batch``'s (device, number) is at ``cursor``, unless a racing
        push of the same recorded another first; return the cursor recorded."""
        data = _file("cursor", {**_identity(batch), "cursor": cursor})
        index.parent.mkdir(parents=True, exist_ok=True)
        self._sweep(index.parent.parent)
        if self._place(data, index.parent.parent, index, publish):
            return cursor
        first = self._read_index(index, batch)
        if first is None:
            raise _damaged(index, "it vanished while it was read")
        return first

    def _place(self, data: bytes, temp_folder: Path, target: Path, publish: Publish) -> bool:
        """Write ``data`` as ``target`` unless it exists; return whether it was written."""
        tmp = _write_temp(temp_folder, data)
        try:
            return self._give_name(tmp, target, publish)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _give_name(self, tmp: Path, target: Path, publish: Publish) -> bool:
        """Name the complete file ``tmp`` as ``target``, only if ``target`` is free."""
        if publish == "link":
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                raise SyncTransportError(
                    f"the relay folder {self._root} gives names by hard links, which this "
                    f"machine cannot make there ({exc.strerror}): sync through it from machines "
                    "that can, or start a new relay folder from this one (it uses a lock file)"
                ) from exc
        else:
            with self._locked(target.parent):
                if os.path.lexists(target):
                    return False
                os.replace(tmp, target)
        _sync_folder(target.parent)
        return True

    @contextlib.contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        """Hold the lock file of ``folder`` (for file systems without hard links)."""
        lock = folder / _LOCK_NAME
        token = secrets.token_hex(16).encode()
        deadline = time.monotonic() + self._lock_wait_s
        seen: tuple[bytes | None, float] | None = None
        while True:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                holder = _read(lock)
                now = time.monotonic()
                if seen is None or seen[0] != holder:
                    seen = (holder, now)
                elif now - seen[1] >= self._lock_stale_s:
                    # Unchanged while we waited, longer than any push holds it: its
                    # process died. Judged by our own clock, not the file's time.
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(lock)
                    seen = None
                    continue
                if now >= deadline:
                    raise SyncTransportError(
                        f"the relay folder {folder} stayed locked by {lock} for "
                        f"{self._lock_wait_s:g} s: if no mangostore is syncing through "
                        "it, delete the lock file"
                    ) from None
                time.sleep(_LOCK_POLL_S)
                continue
            try:
                os.write(fd, token)
            finally:
                os.close(fd)
            break
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)

    def _sweep(self, folder: Path, *, everything_of: str | None = None) -> None:
        """Remove the temporary files a crash left in ``folder`` (old enough not to be
        a push in progress); with ``everything_of``, the ones named from it too."""
        limit = time.time() - self._temp_max_age_s
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            if not entry.name.startswith(_TEMP_PREFIX):
                continue
            with contextlib.suppress(OSError):
                mine = everything_of is not None and entry.name.startswith(everything_of)
                if mine or entry.stat(follow_symlinks=False).st_mtime < limit:
                    os.unlink(entry.path)

    # -- reading -----------------------------------------------------------------------------

    def _read_index(self, index: Path, batch: Batch) -> int | None:
        """The cursor recorded for ``batch``'s (device, number); ``None`` if none is."""
        data = _read(index)
        if data is None:
            return None
        doc = _parse(data, index, "cursor")
        cursor = doc.get("cursor")
        if any(doc.get(k) != v for k, v in _identity(batch).items()) or not _is_int(cursor, 1):
            raise _damaged(index, "it names another batch, or no cursor")
        return cursor

    # -- errors ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _os_errors(self, doing: str) -> Iterator[None]:
        """Turn the operating system's errors into :class:`SyncTransportError`."""
        root = self._root
        try:
            yield
        except OSError as exc:
            why = f"{exc.strerror or exc} ({exc.filename or root})"
            if exc.errno in _NO_SPACE:
                todo = "the disk holding it is full: free some space there"
            elif isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
                todo = "make it writable (a read-only share, or a write-protected USB stick?)"
            else:
                todo = "check it is still reachable (an unplugged stick, a disconnected share?)"
            raise SyncTransportError(
                f"{doing} failed: {why}; relay folder {root}: {todo}, and sync again"
            ) from exc


# -- files ---------------------------------------------------------------------------------


def _shard(n: int) -> str:
    return f"{(n - 1) // SHARD_FILES:09d}"


def _batch_path(vault: Path, cursor: int) -> Path:
    return vault / "batches" / _shard(cursor) / f"{cursor:012d}.batch"


def _index_path(vault: Path, device_id: str, number: int) -> Path:
    return vault / "pushed" / device_id / _shard(number) / f"{number:012d}.cursor"


def _highest(vault: Path) -> int:
    """The last cursor taken in ``vault`` (0: none); other files are ignored."""
    folder = vault / "batches"
    try:
        shards = sorted(e.name for e in os.scandir(folder) if _SHARD_NAME.fullmatch(e.name))
    except FileNotFoundError:
        return 0
    for shard in reversed(shards):
        try:
            names = [n for n in os.listdir(folder / shard) if _BATCH_NAME.fullmatch(n)]
        except (FileNotFoundError, NotADirectoryError):
            continue
        if names:
            return int(max(names)[:12])
    return 0


def _read(path: Path) -> bytes | None:
    """The content of ``path``; ``None`` when there is no such file."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > _MAX_FILE_BYTES:
                raise _damaged(path, f"it holds {size} bytes, more than any batch")
            return handle.read()
    except FileNotFoundError:
        return None


def _write_temp(folder: Path, data: bytes) -> Path:
    """Write ``data`` to a new temporary file in ``folder``, flushed to disk."""
    tmp = folder / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _sync_folder(folder: Path) -> None:
    """Flush ``folder``, so a name just given survives a crash (where it can be)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_DIR_SYNC:
            raise
    finally:
        os.close(fd)


# -- the file format -------------------------------------------------------------------------


def _file(kind: str, header: dict[str, Any]) -> bytes:
    """A relay file's start: the format line with the kind of file, then a JSON line."""
    return f"{FORMAT} {kind}\n{json.dumps(header)}\n".encode()


def _identity(batch: Batch) -> dict[str, Any]:
    return {"vault": batch.vault_id, "device": batch.device_id, "number": batch.number}


def _encode_batch(batch: Batch) -> bytes:
    """A batch file: the format line, a JSON line of header fields, then the body."""
    header = {
        **_identity(batch),
        "schema_version": batch.schema_version,
        "body_bytes": len(batch.body),
        "sha256": _digest(batch),
    }
    return _file("batch", header) + batch.body


def _decode_batch(data: bytes, path: Path, vault_id: str, cursor: int) -> Batch:
    """Read a batch file back, refusing any damage."""
    doc = _parse(data, path, "batch", cursor)
    parts = data.split(b"\n", 2)
    if not (
        all(isinstance(doc.get(k), str) for k in ("vault", "device", "sha256"))
        and all(_is_int(doc.get(k), 0) for k in ("number", "schema_version", "body_bytes"))
    ):
        raise _damaged(path, "its header lacks a field", cursor)
    body = parts[2] if len(parts) == 3 else b""
    if len(body) != doc["body_bytes"]:
        raise _damaged(path, f"it holds {len(body)} of its {doc['body_bytes']} body bytes", cursor)
    batch = Batch(doc["vault"], doc["device"], doc["number"], doc["schema_version"], body)
    if doc["sha256"] != _digest(batch):
        raise _damaged(path, "its checksum does not match: it was changed", cursor)
    if batch.vault_id != vault_id:
        raise _damaged(path, f"it belongs to vault {batch.vault_id}, not {vault_id}", cursor)
    return batch


def _digest(batch: Batch) -> str:
    return hashlib.sha256(batch.header() + b"\n" + batch.body).hexdigest()


def _parse(data: bytes, path: Path, kind: str, cursor: int | None = None) -> dict[str, Any]:
    """The JSON line after a ``kind`` file's format line; refuses other files."""
    parts = data.split(b"\n", 2)
    if parts[0] != f"{FORMAT} {kind}".encode():
        if parts[0].startswith(_FORMAT_PREFIX) and not parts[0].startswith(FORMAT.encode()):
            raise SyncTransportError(
                f"the relay file {path} was written by a newer mangostore "
                f"({parts[0][:40].decode('ascii', 'replace')}): upgrade mangostore here"
            )
        raise _damaged(path, f"it is not a relay {kind} file", cursor)
    try:
        doc = json.loads(parts[1]) if len(parts) > 1 else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise _damaged(path, "its header is not readable (truncated?)", cursor)
    return doc


def _damaged(path: Path, why: str, cursor: int | None = None) -> SyncTransportError:
    stuck = f"no device can pull past cursor {cursor}. " if cursor is not None else ""
    return SyncTransportError(
        f"the relay file {path} is damaged ({why}): {stuck}Put it back from a copy of "
        "the relay folder (a backup, or the same folder on another machine)"
    )


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise SyncTransportError(
            f"a folder relay cannot store a batch with {what} id {value!r}: ids there are "
            "lower-case letters, digits, '-' and '_' (as mangostore makes them)"
        )


def _is_int(value: Any, low: int) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


if TYPE_CHECKING:
    # mypy checks here that the folder relay conforms to the transport interface.
    def _conforms(relay: FolderRelay) -> SyncTransport:
        return relay
