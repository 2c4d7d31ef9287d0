"""Progress reports from long operations: one callback shape for every one of them.

Imports, embedding, key rotation, retention and exports take an optional
``progress=`` callable (a :class:`Progress`) and call it as work gets done::

    def show(done: int, total: int | None, stage: str) -> None:
        print(f"{stage}: {done}/{total or '?'}")

    db.kg.embed_pending(user_id, progress=show)

The contract, the same for every operation:

- ``stage`` names what is being done (``"embedding"``, ``"re-encrypting"``, ...); an
  operation may go through several stages, each documented with the operation.
- ``done`` counts from 0 at the start of each stage and never goes down within it;
  ``total`` is how many there are in the stage, or ``None`` while that is not known.
  A total can grow during the stage (texts queued meanwhile), never below ``done``.
- The first call of the first stage comes before the operation changes anything, and
  the last call of every stage has ``done == total``.
- Calls come a batch at a time (hundreds of rows), never one a row, so reporting
  costs nothing measurable; with ``progress=None`` (the default) nothing is called.
- A callback that raises stops the operation, and the exception propagates: what
  runs in one transaction (an import) is rolled back whole; what commits batch by
  batch (embedding, rotation, retention) keeps the batches already committed and
  carries on where it stopped when run again; an export removes the files it wrote.

The library itself draws nothing: the ``mangostore`` command line turns these calls
into progress bars on a terminal, and an application can do the same with its own UI.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Progress", "Reporter"]


class Progress(Protocol):
    """The callback long operations report to: ``(done, total, stage) -> None``.

    Any function taking three positional arguments fits. See the module docs for when
    it is called and what a raised exception does.
    """

    def __call__(self, done: int, total: int | None, stage: str, /) -> None:
        """Record ``done`` of ``total`` units of ``stage`` (``total`` ``None``: not known yet)."""
        ...


class Reporter:
    """Feeds one operation's counts to an optional :class:`Progress`, a batch at a time.

    Operations count every unit with :meth:`advance`; the callback hears of it only
    when ``every`` units have gone by since the last report, and never twice with the
    same numbers. With no callback every method returns at once.

    Args:
        progress: the caller's callback, or ``None``.
        every: report after this many units (at least 1).
    """

    __slots__ = ("_done", "_every", "_last", "_progress", "_stage", "_total")

    def __init__(self, progress: Progress | None, *, every: int = 1) -> None:
        self._progress = progress
        self._every = max(1, every)
        self._stage = ""
        self._done = 0
        self._total: int | None = None
        self._last: tuple[str, int, int | None] | None = None

    @property
    def wanted(self) -> bool:
        """Whether anyone listens: work done only to report (a count) can be skipped if not."""
        return self._progress is not None

    @property
    def done(self) -> int:
        """Units done in the current stage."""
        return self._done

    def begin(self, stage: str, total: int | None = None) -> None:
        """Start ``stage`` at 0 of ``total`` units (``None``: not known yet) and report it."""
        self._stage, self._done, self._total = stage, 0, total
        self._send()

    def advance(self, count: int = 1, *, total: int | None = None) -> None:
        """Count ``count`` more units done; ``total`` replaces the stage's total when given.

        Reports when ``every`` units have passed since the last report, or when the
        total becomes known or changes.
        """
        self._done += count
        if self._progress is None:
            return
        changed = total is not None and total != self._total
        if total is not None:
            self._total = total
        if self._total is not None and self._done > self._total:
            self._total = self._done
        last = self._last[1] if self._last is not None else 0
        if changed or self._done - last >= self._every:
            self._send()

    def end(self, done: int | None = None) -> None:
        """Report the stage finished, at ``done`` units when given: ``done == total``."""
        if done is not None:
            self._done = done
        if self._progress is None:
            return
        self._total = self._done
        self._send()

    def _send(self) -> None:
        if self._progress is None:
            return
        now = (self._stage, self._done, self._total)
        if now != self._last:
            self._last = now
            self._progress(self._done, self._total, self._stage)
