"""Cheap detection of commits to the database, by this process or any other.

The permission cache must never answer from data that a commit has since changed, yet
its hits must cost a few microseconds, less than any SQL statement (even ``PRAGMA
data_version`` begins a read transaction). A :class:`CommitWatch` answers one
question, "may anything have been committed since I last asked?", without SQL:

- a file database in WAL mode: :class:`WalIndexWatch` compares the WAL-index header
  at the start of the ``-shm`` file (https://sqlite.org/walformat.html, "The WAL-Index
  Header"). SQLite rewrites that header in every commit, by any connection of any
  process, before the commit is visible to readers; uncommitted writes leave it alone.
- an in-memory database: only its own single connection can write, so
  :class:`ConnectionChangesWatch` compares that connection's ``total_changes``.
- anything else: :class:`AlwaysChanged`, which makes every check consult the database.

A "yes" is only a hint (a checkpoint that restarts the WAL also rewrites the header):
the caller then reads its generation counter to learn whether what it caches changed.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Callable
from typing import Protocol, runtime_checkable

#: Bytes of the first copy of the WAL-index header, rewritten by every commit.
WAL_INDEX_HEADER_BYTES = 48


@runtime_checkable
class CommitWatch(Protocol):
    """Tells whether a commit may have happened since the previous call."""

    def changed(self) -> bool:
        """Return ``True`` if something may have been committed since the last call.

        The first call returns ``True``.
        """
        ...

    def close(self) -> None:
        """Release what the watch holds; later calls to :meth:`changed` return ``True``."""
        ...


class AlwaysChanged:
    """The fallback: every call reports a possible change."""

    def changed(self) -> bool:
        """Return ``True``."""
        return True

    def close(self) -> None:
        """Nothing to release."""


class ConnectionChangesWatch:
    """Watches one connection's ``total_changes`` (rows it changed, committed or not).

    Correct only when that connection is the only one that can write, as for an
    in-memory database. Rolled-back changes count too, which only costs a re-check.
    """

    def __init__(self, total_changes: Callable[[], int]) -> None:
        self._total_changes = total_changes
        self._seen: int | None = None

    def changed(self) -> bool:
        """Return whether the connection changed rows since the last call."""
        try:
            now = self._total_changes()
        except Exception:  # the connection is closed: let the caller find out
            return True
        if now == self._seen:
            return False
        self._seen = now
        return True

    def close(self) -> None:
        """Forget the last count."""
        self._seen = None


class WalIndexHeader:
    """A read-only mapping of the WAL-index header at the start of a ``-shm`` file.

    SQLite never truncates the file while a connection (here: the database's own
    writer) has it open, which is what makes reading the mapping safe; the owner calls
    :meth:`close` before that connection closes.

    Raises:
        OSError: the file cannot be opened or mapped, or holds no header yet.
    """

    def __init__(self, shm_path: str) -> None:
        fd = os.open(shm_path, os.O_RDONLY)
        try:
            if os.fstat(fd).st_size < WAL_INDEX_HEADER_BYTES:
                raise OSError(f"{shm_path} holds no WAL-index header")
            self._map: mmap.mmap | None = mmap.mmap(
                fd, WAL_INDEX_HEADER_BYTES, access=mmap.ACCESS_READ
            )
        finally:
            os.close(fd)

    def read(self) -> bytes | None:
        """Return the header's bytes now, or ``None`` once closed."""
        mapped = self._map
        if mapped is None:
            return None
        try:
            return mapped[:WAL_INDEX_HEADER_BYTES]
        except ValueError:  # closed by another thread meanwhile
            return None

    def close(self) -> None:
        """Unmap the file."""
        mapped, self._map = self._map, None
        if mapped is not None:
            with contextlib.suppress(BufferError, ValueError):
                mapped.close()


class WalIndexWatch:
    """Watches the WAL-index header in the ``-shm`` file of a WAL-mode database.

    The owner calls :meth:`close` before the writer connection closes, or stops
    calling :meth:`changed` once the database is closed (see :class:`WalIndexHeader`).
    """

    def __init__(self, shm_path: str) -> None:
        self._header = WalIndexHeader(shm_path)
        self._seen: bytes | None = None

    def changed(self) -> bool:
        """Return whether the header differs from the previous call's (a torn read does too)."""
        header = self._header.read()
        if header is None:
            return True
        if header == self._seen:
            return False
        self._seen = header
        return True

    def close(self) -> None:
        """Unmap the file."""
        self._header.close()


def watch_for(path: str, total_changes: Callable[[], int] | None) -> CommitWatch:
    """Return the best watch for the database at ``path``.

    Args:
        path: the database file, or ``":memory:"``.
        total_changes: returns the writer connection's ``total_changes``; used for an
            in-memory database.
    """
    if path == ":memory:":
        return ConnectionChangesWatch(total_changes) if total_changes else AlwaysChanged()
    try:
        return WalIndexWatch(path + "-shm")
    except (OSError, ValueError):
        # No -shm file (not WAL mode, or an exclusive-locking connection keeps the
        # index in heap memory) or a platform that cannot map it.
        return AlwaysChanged()
