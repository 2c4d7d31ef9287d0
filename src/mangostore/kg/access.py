"""Batched access counting: reads of entities are buffered and written in one transaction.

Counting every read with its own ``UPDATE`` would turn each search into a string of
writes, each waiting for the writer lock and committing. :class:`AccessCounter` keeps
the counts in memory and writes them all in one transaction when
``flush_every`` distinct entities are pending, when the oldest pending read is
``flush_after_ms`` old (checked at the next read), on :meth:`flush`, and on close.
Counts still buffered when a process dies are lost; they are statistics, not data.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mangostore.kg.ports import SqlDatabase

__all__ = ["AccessCounter"]

_FLUSH_SQL = (
    "UPDATE kg_entities SET access_count = coalesce(access_count, 0) + ?, "
    "last_accessed = max(coalesce(last_accessed, 0), ?) WHERE id = ?"
)


class AccessCounter:
    """Buffers ``access_count`` / ``last_accessed`` increments of ``kg_entities`` rows."""

    def __init__(
        self, db: SqlDatabase, *, flush_every: int = 256, flush_after_ms: int = 5_000
    ) -> None:
        self._db = db
        self.flush_every = flush_every
        self.flush_after_ms = flush_after_ms
        self._lock = threading.Lock()
        self._pending: dict[str, list[int]] = {}  # entity id -> [count, last read ms]
        self._oldest: int | None = None

    @property
    def pending(self) -> int:
        """How many distinct entities have reads not yet written."""
        with self._lock:
            return len(self._pending)

    def record(self, entity_ids: Iterable[str]) -> None:
        """Count one read of each entity; write the buffer if a threshold is reached."""
        now = self._db.clock.now_ms()
        with self._lock:
            for entity_id in entity_ids:
                entry = self._pending.get(entity_id)
                if entry is None:
                    self._pending[entity_id] = [1, now]
                else:
                    entry[0] += 1
                    entry[1] = max(entry[1], now)
            if self._oldest is None and self._pending:
                self._oldest = now
            due = len(self._pending) >= self.flush_every or (
                self._oldest is not None and now - self._oldest >= self.flush_after_ms
            )
        if due:
            self.flush()

    def flush(self) -> int:
        """Write every buffered count in one transaction; return how many rows were updated.

        Entities deleted since they were read are skipped. On failure the counts are
        put back, to be tried at the next flush.
        """
        with self._lock:
            batch, self._pending, self._oldest = self._pending, {}, None
        if not batch:
            return 0
        rows = [(count, last, entity_id) for entity_id, (count, last) in batch.items()]
        try:
            with self._db.store.transaction() as conn:
                conn.executemany(_FLUSH_SQL, rows)
        except BaseException:
            with self._lock:
                for entity_id, (count, last) in batch.items():
                    entry = self._pending.setdefault(entity_id, [0, last])
                    entry[0] += count
                    entry[1] = max(entry[1], last)
                if self._oldest is None:
                    self._oldest = min(last for _, last in batch.values())
            raise
        return len(rows)
