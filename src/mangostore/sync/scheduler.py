"""The background thread that syncs: on start, on an interval, soon after local writes,
with exponential backoff and jitter when the relay fails."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from mangostore.errors import MangoError

__all__ = ["RETRIES", "SyncScheduler"]

logger = logging.getLogger("mangostore.sync")

#: Attempts after a failure before waiting for the next round (the seed's 3 retries).
RETRIES = 3
_BACKOFF_BASE_S = 1.0
_POLL_S = 0.5


class SyncScheduler:
    """Runs ``run`` in a daemon thread: at once, then every ``interval_s``, and
    ``after_write_s`` after ``changed()`` moves (a commit by any process) while
    ``pending()`` says there is something to send. After a round failed every retry,
    writes wait for the next interval, so a relay that is down is not hammered."""

    def __init__(
        self,
        run: Callable[[], Any],
        *,
        changed: Callable[[], int | None],
        pending: Callable[[], bool],
        interval_s: float,
        after_write_s: float,
    ) -> None:
        if interval_s <= 0 or after_write_s < 0:
            from mangostore.errors import ValidationError

            raise ValidationError("interval_s must be positive and after_write_s not negative")
        self._run = run
        self._changed = changed
        self._pending = pending
        self._interval_s = interval_s
        self._after_write_s = after_write_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Rounds run, and rounds that failed after every retry (for status and tests).
        self.rounds = 0
        self.failures = 0

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._loop, name="mangostore-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end and wait for it (a sync in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        due = 0.0  # run at once
        waited = 0.0
        failed = False
        seen = self._changed()
        while not self._stop.is_set():
            if waited >= due:
                # Read before the round: a write that lands while it runs must still
                # be noticed. The round's own commits move the count too, but leave
                # nothing pending, so they call for no other round.
                seen = self._changed()
                failed = not self._round()
                due, waited = self._interval_s, 0.0
            if self._stop.wait(_POLL_S):
                return
            waited += _POLL_S
            now = self._changed()
            if now != seen:
                seen = now
                if not failed and self._pending():
                    due = min(due, waited + self._after_write_s)

    def _round(self) -> bool:
        """One sync, retried with exponential backoff and jitter; whether it succeeded."""
        self.rounds += 1
        for attempt in range(RETRIES + 1):
            try:
                self._run()
                return True
            except MangoError as exc:
                logger.warning("sync failed (attempt %d of %d): %s", attempt + 1, RETRIES + 1, exc)
                if attempt == RETRIES:
                    self.failures += 1
                    return False
                # Jitter, so devices that failed together do not retry together; not a secret.
                delay = _BACKOFF_BASE_S * (2**attempt) * (0.5 + random.random())  # noqa: S311
                if self._stop.wait(delay):
                    return False
        return False
