"""Aggregation of repeated audit events, so that noise cannot flood the audit log.

A denied permission check, an unknown session token or a replayed one can be
produced in a loop by a buggy or hostile caller. The first event of a kind is
written at once; repeats of the same kind within ``interval_ms`` are counted, and the
count is carried by the next event of that kind that is written (``suppressed`` in
its ``event_data``). Nothing is lost but the individual timestamps of the repeats.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable


class EventThrottle:
    """Decides which of a stream of same-kind events to write.

    Thread-safe. Keeps at most ``max_keys`` kinds; when full, it forgets them all,
    which can only make it write more, never less.
    """

    def __init__(self, interval_ms: int, *, max_keys: int = 10_000) -> None:
        self.interval_ms = interval_ms
        self._max_keys = max_keys
        self._lock = threading.Lock()
        # key -> (time of the last written event, repeats not written since)
        self._seen: dict[Hashable, tuple[int, int]] = {}

    def admit(self, key: Hashable, now_ms: int) -> int | None:
        """Return how many repeats were held back if this event should be written, else ``None``.

        An event is written when its kind was not written within ``interval_ms`` before
        ``now_ms``, or when the clock went backwards past the last written one.
        """
        with self._lock:
            last = self._seen.get(key)
            if last is not None:
                written_at, held = last
                if written_at <= now_ms < written_at + self.interval_ms:
                    self._seen[key] = (written_at, held + 1)
                    return None
            if last is None and len(self._seen) >= self._max_keys:
                self._seen.clear()
            self._seen[key] = (now_ms, 0)
            return 0 if last is None else last[1]

    def clear(self) -> None:
        """Forget every kind (held-back counts are dropped)."""
        with self._lock:
            self._seen.clear()
