"""Performance assertions: how long a query takes, and whether it uses an index.

:func:`assert_query_time` runs a query (or any callable) ``iterations`` times and
fails when the chosen statistic (the mean by default, as the design measures it; the
median is steadier on a shared machine) exceeds ``max_ms``; the message gives min,
median, p95, max and mean and the query plan. :func:`assert_uses_index` fails when
SQLite would read a table whole.
Both read the plan with ``EXPLAIN QUERY PLAN`` and the query's own parameters.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from mangostore import Database
from mangostore.monitor.stats import nearest_rank, plan_lines

__all__ = ["QueryTiming", "assert_query_time", "assert_uses_index", "measure", "query_plan"]

Statistic = Literal["mean", "min", "median", "p95", "max"]
_STATISTICS: Final = ("mean", "min", "median", "p95", "max")


@dataclass(frozen=True, slots=True)
class QueryTiming:
    """Wall-clock times of repeated runs, in milliseconds."""

    iterations: int
    min_ms: float
    median_ms: float
    p95_ms: float
    max_ms: float
    mean_ms: float

    def value(self, statistic: Statistic) -> float:
        """Return the statistic named ``mean``, ``min``, ``median``, ``p95`` or ``max``."""
        return float(getattr(self, f"{statistic}_ms"))

    def summary(self) -> str:
        """One line: ``min 0.100 ms, median ..., p95 ..., max ..., mean ... (100 runs)``."""
        return (
            f"min {self.min_ms:.3f} ms, median {self.median_ms:.3f} ms, "
            f"p95 {self.p95_ms:.3f} ms, max {self.max_ms:.3f} ms, "
            f"mean {self.mean_ms:.3f} ms ({self.iterations} runs)"
        )


def query_plan(db: Database, sql: str, params: Sequence[Any] = ()) -> list[str]:
    """Return the ``EXPLAIN QUERY PLAN`` lines of ``sql`` with ``params``, indented by depth."""
    return plan_lines(db.query("EXPLAIN QUERY PLAN " + sql, list(params), use_cache=False))


def _runner(
    sql_or_callable: str | Callable[[], object], db: Database | None, params: Sequence[Any]
) -> Callable[[], object]:
    if callable(sql_or_callable):
        return sql_or_callable
    if db is None:
        raise TypeError("timing SQL needs the database: pass db=")
    sql, values = sql_or_callable, list(params)
    # The cache would time a dictionary look-up, not the query.
    return lambda: db.query(sql, values, use_cache=False)


def measure(
    sql_or_callable: str | Callable[[], object],
    iterations: int = 100,
    *,
    db: Database | None = None,
    params: Sequence[Any] = (),
    warmup: int = 1,
) -> QueryTiming:
    """Run ``sql_or_callable`` ``warmup`` times untimed, then ``iterations`` times timed.

    Args:
        sql_or_callable: SQL run with ``db.query`` (cache bypassed), or a callable.
        iterations: timed runs (at least 1).
        db: the database, needed for SQL.
        params: the SQL's parameters.
        warmup: untimed runs first (statement cache, page cache).

    Raises:
        ValueError: ``iterations`` is below 1.
        TypeError: SQL without ``db``.
    """
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    run = _runner(sql_or_callable, db, params)
    for _ in range(warmup):
        run()
    times: list[float] = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        run()
        times.append((time.perf_counter_ns() - start) / 1e6)
    times.sort()
    return QueryTiming(
        iterations=iterations,
        min_ms=times[0],
        median_ms=statistics.median(times),
        p95_ms=nearest_rank(times, 0.95),
        max_ms=times[-1],
        mean_ms=statistics.fmean(times),
    )


def assert_query_time(
    sql_or_callable: str | Callable[[], object],
    max_ms: float,
    iterations: int = 100,
    *,
    db: Database | None = None,
    params: Sequence[Any] = (),
    statistic: Statistic = "mean",
) -> QueryTiming:
    """Fail when ``sql_or_callable`` takes longer than ``max_ms`` (by ``statistic``).

    Args:
        sql_or_callable: SQL (run with ``db.query``, cache bypassed) or a callable.
        max_ms: the most the statistic may be, in milliseconds.
        iterations: timed runs.
        db: the database, needed for SQL.
        params: the SQL's parameters.
        statistic: ``mean`` (the default, as the design measures), ``median``
            (steadier on a busy machine), ``p95``, ``min`` or ``max``.

    Returns:
        The timing, for a test that wants to report it.

    Raises:
        AssertionError: too slow; the message has min, median, p95, max, mean and, for
            SQL, the query plan.
        ValueError: an unknown statistic or ``iterations`` below 1.
    """
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(_STATISTICS)}")
    timing = measure(sql_or_callable, iterations, db=db, params=params)
    took = timing.value(statistic)
    if took <= max_ms:
        return timing
    lines = [
        f"query too slow: {statistic} {took:.3f} ms > {max_ms:g} ms allowed",
        f"  {timing.summary()}",
    ]
    if isinstance(sql_or_callable, str):
        assert db is not None
        lines.append(f"  sql: {' '.join(sql_or_callable.split())}")
        lines.append("  plan:")
        lines += [f"    {line}" for line in query_plan(db, sql_or_callable, params)]
    else:
        name = getattr(sql_or_callable, "__qualname__", repr(sql_or_callable))
        lines.append(f"  callable: {name}")
    raise AssertionError("\n".join(lines))


def _full_scans(plan: list[str]) -> list[str]:
    """Plan lines that read a table whole (``SCAN t`` without an index)."""
    return [
        line.strip()
        for line in plan
        if line.strip().startswith("SCAN ")
        and "USING" not in line
        and "CONSTANT ROW" not in line
        and "VIRTUAL TABLE" not in line
    ]


def assert_uses_index(
    db: Database, sql: str, params: Sequence[Any] = (), *, index: str | None = None
) -> list[str]:
    """Fail when SQLite would read a table of ``sql`` whole, or not use ``index``.

    Args:
        db: the database.
        sql: the query.
        params: its parameters (the plan can depend on them).
        index: an index the plan must name, when given.

    Returns:
        The plan's lines.

    Raises:
        AssertionError: a full table scan, or ``index`` not used; the message shows
            the plan.
    """
    plan = query_plan(db, sql, params)
    scans = _full_scans(plan)
    problems = [f"reads the whole table: {line}" for line in scans]
    if index is not None and not any(f"INDEX {index} " in f"{line} " for line in plan):
        problems.append(f"does not use the index {index}")
    if problems:
        shown = "\n".join(f"    {line}" for line in plan)
        raise AssertionError(
            "query does not use an index as expected: "
            + "; ".join(problems)
            + f"\n  sql: {' '.join(sql.split())}\n  plan:\n{shown}"
        )
    return plan
