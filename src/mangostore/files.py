"""Writing files that hold secrets or personal data."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mangostore.errors import DatabaseError, DiskFullError, MangoError

__all__ = ["fsync_directory", "fsync_file", "os_errors", "private_file", "write_private"]

#: errno values that mean "no room left": a full disk, or a full quota.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextlib.contextmanager
def os_errors(
    doing: str, path: str | os.PathLike[str], other: type[MangoError] = DatabaseError
) -> Iterator[None]:
    """Turn the operating system's errors in the block into mangostore errors.

    A full disk or quota becomes :class:`DiskFullError`; a directory where a file was
    expected, or any other failure, becomes ``other``. The message names ``doing``
    and ``path`` and says what to do; the ``OSError`` is kept as the cause.
    ``FileNotFoundError`` passes through: what a missing file means is the caller's
    to say.
    """
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise DiskFullError(
                f"{doing} failed: the disk holding {path} is full (or the quota is used up); "
                "free some space and try again"
            ) from exc
        if isinstance(exc, IsADirectoryError):
            raise other(f"{doing} failed: {path} is a directory; move it out of the way") from exc
        raise other(
            f"{doing} failed: {exc.strerror or exc} ({path}); check the file's permissions "
            "and the disk"
        ) from exc


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` as a file only its owner can read (mode 0600).

    The data goes to a temporary file in the same directory, is flushed to disk,
    then renamed over ``path``: a crash or a full disk leaves the previous file
    whole, never a truncated one.

    Raises:
        DiskFullError: no room on the disk (the previous file is left as it was).
        DatabaseError: any other failure of the file system.
    """
    with private_file(path) as out:
        out.write(data)


@contextlib.contextmanager
def private_file(
    path: str | os.PathLike[str],
    *,
    doing: str = "writing a file",
    other: type[MangoError] = DatabaseError,
) -> Iterator[BinaryIO]:
    """Write ``path`` atomically as a file only its owner can read (mode 0600).

    The block writes to a temporary file in the same directory; when it ends, the file
    is flushed to disk and renamed over ``path``. An error in the block (or a crash)
    leaves the previous file whole and no temporary file behind. Failures of the file
    system become errors as :func:`os_errors` makes them, naming ``doing``.
    """
    target = Path(path)
    directory = target.parent
    with os_errors(doing, target, other):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o600)
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        fsync_directory(directory)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file written by someone else (SQLite's backup API) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Flush ``directory`` itself, so a file just renamed into it survives a crash."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
