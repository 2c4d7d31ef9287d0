"""Statement statistics per shape, and the slow query log.

Recording a statement costs a dictionary lookup, a lock and a few additions: it
happens on every statement, so nothing else is done then. Percentiles are taken,
when a report asks, from the last :data:`RING_SIZE` durations of each shape.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from mangostore.clock import Clock, SystemClock
from mangostore.monitor.normalize import normalize, parameter_skeleton

#: Durations kept per shape for the percentiles (a power of two).
RING_SIZE: Final = 1024
_RING_MASK: Final = RING_SIZE - 1
#: Distinct shapes kept; statements of further shapes are counted under OTHER_SHAPE.
MAX_SHAPES: Final = 2_000
#: The shape that collects statements once MAX_SHAPES is reached.
OTHER_SHAPE: Final = "(other statements)"
#: SQL texts whose shape is remembered; the memo is emptied when it grows past this.
_MAX_TEXTS: Final = 20_000
#: Slow queries kept for the report (the log has them all).
SLOW_LOG_SIZE: Final = 100

#: Where slow statements are logged, at WARNING. Like every mangostore logger it prints
#: nothing until the application configures logging (the package's logger has only a
#: NullHandler): a terminal UI's screen is never written over.
log = logging.getLogger("mangostore.slow_queries")


class ShapeStats:
    """The counters of one statement shape. Updated under the monitor's lock."""

    __slots__ = ("count", "errors", "max_ns", "n", "ring", "rows", "shape", "sql", "total_ns")

    def __init__(self, shape: str, sql: str) -> None:
        self.shape = shape
        #: The first SQL text seen with this shape, kept in memory only to plan it.
        self.sql = sql
        self.count = 0
        self.errors = 0
        self.total_ns = 0
        self.max_ns = 0
        self.rows = 0
        self.ring = [0] * RING_SIZE
        self.n = 0


@dataclass(frozen=True, slots=True)
class StatementStats:
    """What the monitor knows about one statement shape.

    Attributes:
        shape: the statement with its literals replaced by ``?``.
        count: runs that completed.
        errors: runs that raised.
        total_ms, mean_ms, max_ms: time from ``execute`` until the rows were read.
        p50_ms, p95_ms: over the last 1,024 runs.
        rows: rows returned, over all runs.
        plan: ``EXPLAIN QUERY PLAN`` lines (empty when not planned).
    """

    shape: str
    count: int
    errors: int
    total_ms: float
    mean_ms: float
    p50_ms: float
    p95_ms: float
    max_ms: float
    rows: int
    plan: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SlowQuery:
    """One run that took at least the slow query threshold.

    Attributes:
        shape: the statement's shape (never its parameters or literals).
        duration_ms: how long it took.
        rows: rows it returned.
        at_ms: when it finished (epoch ms, from the database's clock).
        plan: its ``EXPLAIN QUERY PLAN`` lines.
    """

    shape: str
    duration_ms: float
    rows: int
    at_ms: int
    plan: list[str]


class Monitor:
    """Times statements per shape and keeps the slow ones with their plans.

    Args:
        slow_query_ms: a run at least this long is logged (to the
            ``mangostore.slow_queries`` logger, at WARNING) with its plan.
        clock: where the slow log's timestamps come from.
    """

    def __init__(self, *, slow_query_ms: int, clock: Clock | None = None) -> None:
        self.slow_query_ms = slow_query_ms
        self._slow_ns = slow_query_ms * 1_000_000
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._by_text: dict[str, ShapeStats] = {}
        self._by_shape: dict[str, ShapeStats] = {}
        self._slow: deque[SlowQuery] = deque(maxlen=SLOW_LOG_SIZE)
        self._slow_runs = 0

    # -- recording (every statement) -----------------------------------------------------

    def record(self, sql: str, elapsed_ns: int, rows: int, conn: Any) -> None:
        """Count one completed run of ``sql``; log it when slow.

        ``conn`` is the connection it ran on, used to plan a slow statement (``None``
        when that connection may be in another thread's hands by now).
        """
        stats = self._by_text.get(sql)
        if stats is None:
            stats = self._stats_for(sql)
        with self._lock:
            stats.count += 1
            stats.total_ns += elapsed_ns
            stats.rows += rows
            if elapsed_ns > stats.max_ns:
                stats.max_ns = elapsed_ns
            stats.ring[stats.n & _RING_MASK] = elapsed_ns
            stats.n += 1
        if elapsed_ns >= self._slow_ns:
            self._log_slow(stats, sql, elapsed_ns, rows, conn)

    def record_error(self, sql: str, elapsed_ns: int) -> None:
        """Count one run of ``sql`` that raised (its time is not counted)."""
        stats = self._by_text.get(sql)
        if stats is None:
            stats = self._stats_for(sql)
        with self._lock:
            stats.errors += 1

    def _stats_for(self, sql: str) -> ShapeStats:
        shape = normalize(sql)
        with self._lock:
            stats = self._by_shape.get(shape)
            if stats is None:
                if len(self._by_shape) >= MAX_SHAPES:
                    shape = OTHER_SHAPE
                    stats = self._by_shape.get(shape)
                if stats is None:
                    stats = self._by_shape[shape] = ShapeStats(shape, sql)
            if len(self._by_text) >= _MAX_TEXTS:
                self._by_text.clear()
            self._by_text[sql] = stats
        return stats

    def _log_slow(self, stats: ShapeStats, sql: str, elapsed_ns: int, rows: int, conn: Any) -> None:
        plan = explain_plan(conn, sql) if conn is not None else []
        entry = SlowQuery(
            shape=stats.shape,
            duration_ms=elapsed_ns / 1e6,
            rows=rows,
            at_ms=self._clock.now_ms(),
            plan=plan,
        )
        with self._lock:
            self._slow.append(entry)
            self._slow_runs += 1
        log.warning(
            "slow query (%.1f ms, %d rows, threshold %d ms): %s | plan: %s",
            entry.duration_ms,
            rows,
            self.slow_query_ms,
            stats.shape,
            "; ".join(plan) or "(none)",
        )

    # -- reading (reports) ---------------------------------------------------------------

    def statements(self) -> list[StatementStats]:
        """Return the statistics of every shape seen, most total time first (no plans)."""
        with self._lock:
            snapshot = [
                (
                    s.shape,
                    s.count,
                    s.errors,
                    s.total_ns,
                    s.max_ns,
                    s.rows,
                    s.ring[: min(s.n, RING_SIZE)],
                )
                for s in self._by_shape.values()
            ]
        out = []
        for shape, count, errors, total, maximum, rows, ring in snapshot:
            ordered = sorted(ring)
            out.append(
                StatementStats(
                    shape=shape,
                    count=count,
                    errors=errors,
                    total_ms=total / 1e6,
                    mean_ms=total / count / 1e6 if count else 0.0,
                    p50_ms=nearest_rank(ordered, 0.50) / 1e6,
                    p95_ms=nearest_rank(ordered, 0.95) / 1e6,
                    max_ms=maximum / 1e6,
                    rows=rows,
                )
            )
        out.sort(key=lambda s: s.total_ms, reverse=True)
        return out

    def sample_sql(self) -> dict[str, str]:
        """Return one SQL text per shape (kept in memory only), to plan the shapes."""
        with self._lock:
            return {s.shape: s.sql for s in self._by_shape.values() if s.shape != OTHER_SHAPE}

    def slow_queries(self) -> list[SlowQuery]:
        """Return the most recent slow runs, oldest first."""
        with self._lock:
            return list(self._slow)

    def slow_runs(self) -> int:
        """Return how many runs reached the slow query threshold."""
        with self._lock:
            return self._slow_runs

    def reset(self) -> None:
        """Forget every statistic and the slow log."""
        with self._lock:
            self._by_text.clear()
            self._by_shape.clear()
            self._slow.clear()
            self._slow_runs = 0


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """Return the ``q`` quantile of sorted samples by nearest rank (0 when empty)."""
    if not ordered:
        return 0.0
    return float(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))])


def explain_plan(conn: Any, sql: str) -> list[str]:
    """Return ``sql``'s ``EXPLAIN QUERY PLAN`` lines, indented by depth, run with NULL
    parameters; empty when SQLite cannot plan it (or it has no plan, like a PRAGMA)."""
    from mangostore.monitor.connection import execute_unmonitored

    params = parameter_skeleton(sql)
    if params is None:
        return []
    try:
        rows = execute_unmonitored(conn, "EXPLAIN QUERY PLAN " + sql, params).fetchall()
    except Exception:
        return []
    return plan_lines(rows)


def plan_lines(rows: Iterable[Sequence[Any]]) -> list[str]:
    """The ``detail`` of each ``EXPLAIN QUERY PLAN`` row, indented by its depth."""
    depth: dict[int, int] = {}
    lines = []
    for row in rows:
        node, parent, detail = int(row[0]), int(row[1]), str(row[3])
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines
