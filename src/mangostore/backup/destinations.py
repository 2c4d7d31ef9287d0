"""Where backups are kept: a folder, ``file://`` or ``s3://`` URLs, through fsspec.

:class:`Destination` is the small interface the backup service uses;
:class:`FsspecDestination` implements it for any fsspec file system (a local folder,
``file://``, ``s3://`` through s3fs, which the ``s3`` extra installs) and
:class:`MemoryDestination` keeps objects in a dict (a test double, and a check that the
service needs nothing else).

Writes are atomic. A folder gets a temporary name in the same directory and is moved
into place once complete; S3 shows an object only when its upload completes (a
multipart upload that fails is aborted). A backup is listed only once its manifest is
written, and the manifest is written last, so an interrupted backup never looks
complete: its objects are orphans that ``prune`` removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from mangostore.errors import BackupCorruptError, BackupDestinationError

__all__ = ["Destination", "FsspecDestination", "MemoryDestination", "open_destination"]


@runtime_checkable
class Destination(Protocol):
    """What the backup service needs of a place to keep objects.

    Names are relative paths with ``/`` (``manifests/<id>.json``).
    """

    url: str

    def writing(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """A file to write ``name`` into; it appears, whole, when the block ends without
        an exception, and not at all otherwise."""
        ...

    def reading(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """A file to read ``name`` from.

        Raises:
            BackupCorruptError: there is no such object.
        """
        ...

    def names(self, prefix: str) -> list[str]:
        """Every object name under ``prefix`` (a folder such as ``manifests/``)."""
        ...

    def stamps(self, prefix: str) -> dict[str, str]:
        """Every object name under ``prefix``, each with a stamp that changes whenever
        the object is written again (an ETag, or inode, size and time); ``""`` where
        the file system gives none. Lets a reader keep what it parsed before."""
        ...

    def delete(self, name: str) -> None:
        """Remove ``name``; a missing object is not an error."""
        ...


def put_bytes(destination: Destination, name: str, data: bytes) -> None:
    """Write a small object at once."""
    with destination.writing(name) as out:
        out.write(data)


def get_bytes(destination: Destination, name: str) -> bytes:
    """Read a small object at once."""
    with destination.reading(name) as src:
        return src.read()


class FsspecDestination:
    """A destination on any fsspec file system.

    Args:
        url: a folder path, ``file://...`` or ``s3://bucket/prefix``.
        storage_options: passed to fsspec (for S3: ``endpoint_url``, ``key``,
            ``secret``, ``client_kwargs``...; by default s3fs reads the usual
            ``AWS_*`` environment variables).

    Raises:
        BackupDestinationError: the URL's file system is not installed (``s3://``
            needs ``pip install 'mangostore[s3]'``) or cannot be reached.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        import fsspec  # type: ignore[import-untyped]

        self.url = url
        try:
            fs, root = fsspec.core.url_to_fs(url, **storage_options)
        except ImportError as exc:
            raise BackupDestinationError(
                f"cannot use {url}: its file system is not installed "
                "(for s3:// run: pip install 'mangostore[s3]')"
            ) from exc
        except (OSError, ValueError) as exc:
            raise BackupDestinationError(f"cannot use {url}: {exc}") from exc
        self._fs = fs
        self._root = str(root).rstrip("/")
        self._local = "file" in _protocols(fs)
        if self._local:
            with _fs_errors(url):
                os.makedirs(self._root, exist_ok=True)

    def __repr__(self) -> str:
        return f"<FsspecDestination {self.url!r}>"

    def _path(self, name: str) -> str:
        if name.startswith("/") or ".." in name.split("/"):
            raise BackupDestinationError(f"{name!r} is not an object name inside the destination")
        return f"{self._root}/{name}"

    @contextlib.contextmanager
    def writing(self, name: str) -> Iterator[IO[bytes]]:
        """See :meth:`Destination.writing`."""
        path = self._path(name)
        if self._local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            temp = f"{path}.tmp-{secrets.token_hex(6)}"
            try:
                with _fs_errors(self.url), open(temp, "wb") as out:
                    yield out
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
            return
        with _fs_errors(self.url):
            handle = self._fs.open(path, "wb")
        try:
            yield handle
        except BaseException:
            # Abort the upload: a half-written object must never appear.
            discard = getattr(handle, "discard", None)
            if discard is not None:
                with contextlib.suppress(Exception):
                    discard()
            # Marked closed, so that no later close() (from the garbage collector)
            # uploads what was buffered as if it were complete.
            handle.closed = True
            raise
        with _fs_errors(self.url):
            handle.close()

    @contextlib.contextmanager
    def reading(self, name: str) -> Iterator[IO[bytes]]:
        """See :meth:`Destination.reading`."""
        path = self._path(name)
        try:
            handle = self._fs.open(path, "rb")
        except FileNotFoundError as exc:
            raise BackupCorruptError(
                f"backup object {name} is missing from {self.url}; this backup cannot be "
                "restored: restore an earlier one, or make a new one",
                name,
            ) from exc
        except OSError as exc:
            raise BackupDestinationError(f"cannot read {name} from {self.url}: {exc}") from exc
        with handle:
            yield handle

    def names(self, prefix: str) -> list[str]:
        """See :meth:`Destination.names`."""
        return sorted(self.stamps(prefix))

    def stamps(self, prefix: str) -> dict[str, str]:
        """See :meth:`Destination.stamps`."""
        base = self._path(prefix.rstrip("/"))
        with _fs_errors(self.url):
            self._fs.invalidate_cache()
            try:
                found = self._fs.find(base, detail=True)
            except FileNotFoundError:
                return {}
        root = self._root + "/"
        out = {}
        for full, info in found.items():
            text = str(full)
            rel = text[len(root) :] if text.startswith(root) else text
            if ".tmp-" not in rel:
                out[rel] = _stamp(info)
        return out

    def delete(self, name: str) -> None:
        """See :meth:`Destination.delete`."""
        path = self._path(name)
        try:
            self._fs.rm(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise BackupDestinationError(f"cannot delete {name} from {self.url}: {exc}") from exc


def _stamp(info: dict[str, Any]) -> str:
    # Object stores give an ETag (a digest of the content); a local file is replaced by
    # a rename, so its inode changes with every write, and so does its time.
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return str(etag)
    parts = [info.get(k) for k in ("ino", "size", "mtime")]
    return ":".join(map(str, parts)) if all(p is not None for p in parts) else ""


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


@contextlib.contextmanager
def _fs_errors(url: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise BackupDestinationError(f"cannot write to {url}: {exc}") from exc


class MemoryDestination:
    """Objects in a dict: a destination for tests and for trying things out."""

    def __init__(self) -> None:
        self.url = "memory://"
        #: The objects by name (tests change them to play an attacker).
        self.objects: dict[str, bytes] = {}

    @contextlib.contextmanager
    def writing(self, name: str) -> Iterator[IO[bytes]]:
        """See :meth:`Destination.writing`."""
        buffer = io.BytesIO()
        yield buffer
        self.objects[name] = buffer.getvalue()

    @contextlib.contextmanager
    def reading(self, name: str) -> Iterator[IO[bytes]]:
        """See :meth:`Destination.reading`."""
        if name not in self.objects:
            raise BackupCorruptError(f"backup object {name} is missing", name)
        yield io.BytesIO(self.objects[name])

    def names(self, prefix: str) -> list[str]:
        """See :meth:`Destination.names`."""
        return sorted(n for n in self.objects if n.startswith(prefix))

    def stamps(self, prefix: str) -> dict[str, str]:
        """See :meth:`Destination.stamps` (a digest of each object)."""
        return {
            n: hashlib.sha256(data).hexdigest()
            for n, data in self.objects.items()
            if n.startswith(prefix)
        }

    def delete(self, name: str) -> None:
        """See :meth:`Destination.delete`."""
        self.objects.pop(name, None)


def open_destination(target: str | os.PathLike[str] | Destination, **options: Any) -> Destination:
    """The destination ``target`` names: a folder path, a ``file://`` or ``s3://`` URL,
    or a :class:`Destination` already made (returned as it is).

    Raises:
        BackupDestinationError: the URL cannot be used.
    """
    if isinstance(target, Destination):
        return target
    text = os.fspath(target)
    if not text:
        raise BackupDestinationError("name a backup destination: a folder, file:// or s3:// URL")
    if "://" not in text:
        text = os.path.abspath(text)
    return FsspecDestination(text, **options)
