"""The background schedule: backups while a database is open, catching up after sleep.

Every ``check_every_s`` the thread asks :meth:`BackupSchedule.tick` whether a backup
is due, by comparing the database clock with the newest backup in the destination
(not with a timer): a full backup when the newest full one is older than
``full_every_s``, otherwise an incremental when the newest backup is older than
``incremental_every_s``, or, with ``after_writes_s`` set, when the database changed
since the newest backup and that backup is ``after_writes_s`` old (the change log
says whether it changed). A machine that slept through several periods makes one
backup when it wakes, not one per period missed. After each backup it prunes
(retention) and rewrites the key blocks of erased users. Failures are logged and
retried at the next check.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Literal

from mangostore.backup.catalog import Catalog
from mangostore.backup.manifest import Manifest
from mangostore.backup.policy import BackupPolicy
from mangostore.errors import MangoError

__all__ = ["BackupSchedule", "due_kind"]

logger = logging.getLogger("mangostore.backup")


def due_kind(
    catalog: Catalog,
    now_ms: int,
    policy: BackupPolicy,
    changed: Callable[[], bool] | None = None,
) -> Literal["full", "auto"] | None:
    """Which backup is due at ``now_ms``: ``"full"``, ``"auto"`` (incremental when
    possible) or ``None``. ``changed()`` tells whether the database changed since its
    own newest backup (asked only with ``policy.after_writes_s`` set)."""
    fulls = [m for m in catalog.backups if m.kind == "full"]
    if not fulls or now_ms - fulls[-1].created_at >= policy.full_every_s * 1000:
        return "full"
    latest = catalog.latest()
    assert latest is not None
    age_ms = now_ms - latest.created_at
    if age_ms >= policy.incremental_every_s * 1000:
        return "auto"
    if (
        policy.after_writes_s is not None
        and changed is not None
        and age_ms >= policy.after_writes_s * 1000
        and changed()
    ):
        return "auto"
    return None


class BackupSchedule:
    """Runs ``tick`` in a daemon thread every ``check_every_s`` until stopped.

    Args:
        tick: makes the backup that is due, if any, and returns it.
        check_every_s: how often to look.
        alive: returns false once the database is closed (the thread then ends).
    """

    def __init__(
        self,
        tick: Callable[[], Manifest | None],
        *,
        check_every_s: float,
        alive: Callable[[], bool],
    ) -> None:
        self._tick = tick
        self._every = check_every_s
        self._alive = alive
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Backups made, and checks that failed (for status and tests).
        self.made = 0
        self.failures = 0

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (it checks at once)."""
        self._thread = threading.Thread(target=self._loop, name="mangostore-backup", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end and wait for it (a backup in progress finishes first)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set() and self._alive():
            try:
                if self._tick() is not None:
                    self.made += 1
            except MangoError as exc:
                self.failures += 1
                logger.warning("scheduled backup failed, retrying at the next check: %s", exc)
            if self._stop.wait(self._every):
                return
