"""The copy of the database made before a migration changes it.

A copy is ``<database>.pre-vOLD-to-vNEW-<UTC time>.bak``, made with SQLite's backup
API (consistent, under the same page key, so it opens with the same keyring). It is
written whole or not at all: SQLite writes it under a temporary name
(``....bak.partial``, with its own rollback journal beside it), and only a finished
copy is renamed into place. A copy cut short by a crash or a full disk is never at a
``.bak`` name; the next migration removes such leftovers. After each new copy, only
the newest :attr:`~mangostore.Settings.migration_copies_kept` are kept.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from mangostore.engine.connection import connect, driver_errors
from mangostore.engine.writer import Writer
from mangostore.files import fsync_directory, fsync_file

__all__ = ["backup_copy", "migration_copies", "pre_migration_hook", "remove_partial_copies"]

#: How a finished copy's name ends, and the temporary name it is written under.
SUFFIX: Final = ".bak"
PARTIAL: Final = ".bak.partial"
#: The files SQLite may leave beside a copy cut short (its rollback journal).
_JOURNAL: Final = "-journal"


def migration_copies(path: str | os.PathLike[str]) -> list[Path]:
    """Return the finished pre-migration copies of the database at ``path``, oldest first."""
    database = Path(path)
    found = [p for p in database.parent.glob(f"{database.name}.pre-v*{SUFFIX}") if p.is_file()]
    # A copy is renamed into place when finished: its modification time orders it.
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def remove_partial_copies(path: str | os.PathLike[str]) -> list[Path]:
    """Delete copies of the database at ``path`` that were cut short; return them.

    Only the process migrating (holding the write lock) writes a copy, so any partial
    one found by another migration is a leftover.
    """
    database = Path(path)
    removed = []
    for pattern in (
        f"{database.name}.pre-v*{PARTIAL}",
        f"{database.name}.pre-v*{PARTIAL}{_JOURNAL}",
    ):
        for leftover in database.parent.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
                removed.append(leftover)
    return removed


def backup_copy(writer: Writer, dest: str, page_key: bytes | None) -> None:
    """Copy the database, consistently, to ``dest`` with the SQLite backup API.

    The copy is encrypted with the same page key, so it opens with the same keyring,
    and readable by its owner only from the start. It is written to ``dest +
    '.partial'`` and renamed to ``dest`` once complete and on disk. The writer lock is
    held, but no transaction: the backup API cannot copy from a connection in a
    write transaction.

    Raises:
        DatabaseError: the copy failed (the partial file is removed).
        DatabaseLockedError: the write lock was not obtained within the busy timeout.
    """
    partial = dest + ".partial"
    _create_private_file(partial)
    try:
        target = connect(partial, page_key, [])
        try:
            with writer.idle_connection() as conn, driver_errors(f"copying the database to {dest}"):
                conn.backup(target)
        finally:
            target.close()
        fsync_file(partial)
        os.replace(partial, dest)
    except BaseException:
        for leftover in (partial, partial + _JOURNAL):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        raise
    fsync_directory(os.path.dirname(os.path.abspath(dest)))


def pre_migration_hook(
    writer: Writer, path: str, page_key: bytes | None, keep: int
) -> Callable[[int, int], None]:
    """Return the hook that copies the database before a migration changes it.

    ``keep`` is how many copies to keep (the newest); 0 keeps every one.
    """

    def before(current: int, target: int) -> None:
        remove_partial_copies(path)
        if not current:  # a brand-new database has nothing worth copying
            return
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        backup_copy(
            writer, _unused_path(f"{path}.pre-v{current}-to-v{target}-{stamp}{SUFFIX}"), page_key
        )
        if keep:
            for old in migration_copies(path)[:-keep]:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()

    return before


def _create_private_file(path: str) -> None:
    """Make ``path`` an empty file of mode 0600, replacing a leftover of that name."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _unused_path(base: str) -> str:
    """Return ``base``, or ``base`` with a counter before ``.bak`` if it is taken."""
    candidate, counter = base, 1
    while os.path.exists(candidate) or os.path.exists(candidate + ".partial"):
        counter += 1
        candidate = base.removesuffix(SUFFIX) + f"-{counter}{SUFFIX}"
    return candidate
