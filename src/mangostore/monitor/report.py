"""``db.performance_report()``: the design's PerformanceReport, from measurements.

Every recommendation comes from a figure in the same report (a scan in a plan, a
counter, a page count) and names it, so it can be checked:

- ``add_index``: a statement scans a table whole while filtering it by columns (or
  SQLite builds an automatic index for it on every run); or a slow statement searches
  an index on its equality columns and then sorts every row found in a temporary
  B-tree for its ORDER BY (``SEARCH t USING INDEX idx (a=?)`` then ``USE TEMP B-TREE
  FOR ORDER BY``), which an index on those columns followed by the ORDER BY columns
  avoids; the ``CREATE INDEX`` is given;
- ``drop_unused_index``: an index that none of the statements seen used, on a table
  they did read, after at least :data:`MIN_RUNS_FOR_UNUSED` statement runs; indexes
  that enforce a constraint or serve a foreign key are never suggested;
- ``cache_hit_rate``: a cache tier answered fewer lookups than
  ``Settings.cache_hit_rate_target`` after at least :data:`MIN_LOOKUPS` lookups;
- ``vacuum``: free pages are more than ``Settings.vacuum_freelist_ratio`` of the file
  (and at least :data:`MIN_FREE_PAGES` pages);
- ``analyze``: ``sqlite_stat1`` is missing or empty while a table holds at least
  :data:`MIN_ROWS_FOR_ANALYZE` rows (the planner then guesses);
- ``size_limit``: the file and its WAL reach 80% of ``Settings.max_database_bytes``.

Each kind is one rule, a function of the :class:`Evidence`; :data:`RULES` lists
those the report runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from mangostore.cache.memory import TierStats
from mangostore.monitor.connection import execute_unmonitored
from mangostore.monitor.disk import DiskUsage, disk_usage
from mangostore.monitor.normalize import first_word
from mangostore.monitor.plans import IndexUsage, analyze, foreign_key_columns
from mangostore.monitor.stats import SlowQuery, StatementStats

if TYPE_CHECKING:
    from mangostore.clock import Clock
    from mangostore.engine.pool import PoolStats
    from mangostore.engine.pragmas import Connection
    from mangostore.monitor.instruments import Instruments
    from mangostore.settings import Settings

MIN_RUNS_FOR_UNUSED: Final = 100
MIN_LOOKUPS: Final = 100
MIN_FREE_PAGES: Final = 16
MIN_ROWS_FOR_ANALYZE: Final = 100
SIZE_WARNING_RATIO: Final = 0.8


class MeasuredStore(Protocol):
    """What the report uses of ``db.store`` (:class:`mangostore.engine.store.Store`)."""

    @property
    def instruments(self) -> Instruments:
        """The caches and the statement monitor."""
        ...

    def in_transaction(self) -> bool:
        """Whether the calling thread is inside a write transaction."""
        ...

    def reading(self) -> AbstractContextManager[Connection]:
        """A connection to read on (the transaction's own, inside one)."""
        ...

    def idle_connection(self) -> AbstractContextManager[Connection]:
        """The writer, with no transaction open."""
        ...

    def pool_stats(self) -> PoolStats | None:
        """The reader pool's counts; ``None`` when there is no pool (in memory)."""
        ...


class Measured(Protocol):
    """What the report measures: :class:`mangostore.Database` conforms.

    A protocol rather than the class: the database module imports this one (for
    ``performance_report``), and importing it back would close a cycle.
    """

    @property
    def store(self) -> MeasuredStore:
        """The connections and instruments."""
        ...

    @property
    def settings(self) -> Settings:
        """The thresholds the recommendations compare with."""
        ...

    @property
    def path(self) -> str:
        """The database file (``":memory:"`` in memory)."""
        ...

    @property
    def clock(self) -> Clock:
        """The time source of the report's timestamp."""
        ...


@dataclass(frozen=True, slots=True)
class QueryPerformance:
    """Statement statistics.

    Attributes:
        total_queries: statement runs timed.
        total_time_ms: their total time.
        average_query_ms: mean time per run.
        slow_query_ms: the slow query threshold.
        slow_runs: runs at or above it.
        performance_score: the share of runs below the threshold, 0 to 100.
        statements: per shape, most total time first, with plans.
        slow_queries: the most recent slow runs with their plans.
    """

    total_queries: int
    total_time_ms: float
    average_query_ms: float
    slow_query_ms: int
    slow_runs: int
    performance_score: float
    statements: list[StatementStats] = field(default_factory=list)
    slow_queries: list[SlowQuery] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TierPerformance:
    """One cache tier's counters (see :class:`mangostore.cache.TierStats`)."""

    tier: str
    available: bool
    hits: int
    misses: int
    hit_rate: float | None
    evictions: int
    expirations: int
    invalidations: int
    bypassed: int
    entries: int
    bytes: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class CachePerformance:
    """The cache tiers, and the hit rate over all of them (``None`` before any lookup)."""

    tiers: list[TierPerformance]
    hit_rate: float | None


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One thing to do, with the measurement behind it.

    Attributes:
        kind: ``add_index``, ``drop_unused_index``, ``cache_hit_rate``, ``vacuum``,
            ``analyze`` or ``size_limit``.
        severity: ``info``, ``warning`` or ``critical``.
        message: what was measured and what to do.
        action: the SQL (or setting) that does it, when there is one.
        subject: the table, index or tier concerned.
    """

    kind: str
    severity: Literal["info", "warning", "critical"]
    message: str
    action: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class PerformanceReport:
    """The design's PerformanceReport: timestamp, query and cache performance, disk and
    index usage, recommendations."""

    timestamp: int
    query_performance: QueryPerformance
    cache_performance: CachePerformance
    disk_usage: DiskUsage
    index_usage: IndexUsage
    recommendations: list[Recommendation]

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-compatible data."""
        data = dataclasses.asdict(self)
        data["disk_usage"]["total_bytes"] = self.disk_usage.total_bytes
        return data

    def to_json(self, *, indent: int | None = 2) -> str:
        """Return the report as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)


def build_report(db: Measured) -> PerformanceReport:
    """Measure ``db`` and return its report (see the module docstring)."""
    instruments = db.store.instruments
    settings = db.settings
    monitor = instruments.monitor
    statements = monitor.statements() if monitor is not None else []
    samples = monitor.sample_sql() if monitor is not None else {}
    with _read_snapshot(db) as conn:
        plans, usage = analyze(
            conn,
            [
                (s.shape, samples[s.shape], s.count, s.mean_ms)
                for s in statements
                if s.shape in samples
            ],
        )
        disk = disk_usage(conn, db.path, settings.max_database_bytes)
        fk_columns = {i.table: foreign_key_columns(conn, i.table) for i in usage.indexes}
    statements = [dataclasses.replace(s, plan=plans.get(s.shape, [])) for s in statements]
    slow = monitor.slow_queries() if monitor is not None else []
    slow = [q if q.plan else dataclasses.replace(q, plan=plans.get(q.shape, [])) for q in slow]
    runs = sum(s.count for s in statements)
    total_ms = sum(s.total_ms for s in statements)
    slow_runs = monitor.slow_runs() if monitor is not None else 0
    query = QueryPerformance(
        total_queries=runs,
        total_time_ms=total_ms,
        average_query_ms=total_ms / runs if runs else 0.0,
        slow_query_ms=settings.slow_query_ms,
        slow_runs=slow_runs,
        performance_score=round(100.0 * (1 - slow_runs / runs), 1) if runs else 100.0,
        statements=statements,
        slow_queries=slow,
    )
    cache = _cache_performance(instruments.cache.stats())
    evidence = Evidence(
        settings=settings,
        query=query,
        cache=cache,
        disk=disk,
        usage=usage,
        fk_columns=fk_columns,
        table_rows={o.table: o.rows for o in disk.objects if o.kind == "table"},
    )
    recommendations = [r for rule in RULES for r in rule(evidence)]
    return PerformanceReport(
        timestamp=db.clock.now_ms(),
        query_performance=query,
        cache_performance=cache,
        disk_usage=disk,
        index_usage=usage,
        recommendations=recommendations,
    )


@contextlib.contextmanager
def _read_snapshot(db: Measured) -> Iterator[Any]:
    """Lend a connection inside one read transaction, run outside the statistics."""
    store = db.store
    if store.in_transaction():
        with store.reading() as conn:  # the writer, inside the caller's transaction
            yield conn
        return
    # An in-memory database (no reader pool) has only its writer: borrowed idle, it
    # runs no statement (no BEGIN IMMEDIATE, COMMIT) that the report would then count.
    lend = store.idle_connection if store.pool_stats() is None else store.reading
    with lend() as conn:
        execute_unmonitored(conn, "BEGIN")
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                execute_unmonitored(conn, "ROLLBACK")


def _cache_performance(stats: dict[str, TierStats]) -> CachePerformance:
    tiers = [
        TierPerformance(
            tier=s.tier,
            available=s.available,
            hits=s.hits,
            misses=s.misses,
            hit_rate=s.hit_rate,
            evictions=s.evictions,
            expirations=s.expirations,
            invalidations=s.invalidations,
            bypassed=s.bypassed,
            entries=s.entries,
            bytes=s.bytes,
            max_bytes=s.max_bytes,
        )
        for s in stats.values()
    ]
    hits = sum(t.hits for t in tiers)
    lookups = hits + sum(t.misses for t in tiers)
    return CachePerformance(tiers=tiers, hit_rate=hits / lookups if lookups else None)


@dataclass(frozen=True, slots=True)
class Evidence:
    """The measurements every recommendation rule reads.

    Attributes:
        settings: the thresholds (``slow_query_ms``, ``cache_hit_rate_target``, ...).
        query: the statement statistics, with plans.
        cache: the cache tiers' counters.
        disk: pages, objects and the size limit.
        usage: the indexes, their uses, and the table scans seen.
        fk_columns: per table of an index, the columns its foreign keys use.
        table_rows: rows per table (-1 when they could not be counted).
    """

    settings: Settings
    query: QueryPerformance
    cache: CachePerformance
    disk: DiskUsage
    usage: IndexUsage
    fk_columns: dict[str, set[str]]
    table_rows: dict[str, int]


#: A recommendation rule: the recommendations of one kind the evidence calls for.
Rule = Callable[[Evidence], list[Recommendation]]


def add_index_rule(e: Evidence) -> list[Recommendation]:
    """``add_index`` for each scan (or automatic index) of a table filtered by columns."""
    out = []
    for scan in e.usage.scans:
        if scan.suggested_index is None:
            continue
        rows = e.table_rows.get(scan.table, -1)
        big = rows >= 1_000 or scan.mean_ms >= e.settings.slow_query_ms
        how = "builds a temporary index on" if scan.automatic else "scans"
        out.append(
            Recommendation(
                kind="add_index",
                severity="warning" if big else "info",
                message=(
                    f"{scan.shape!r} {how} {scan.table} ({_rows_text(rows)}) "
                    f"on each of its {scan.executions} runs (mean {scan.mean_ms:.2f} ms), "
                    f"filtering by {', '.join(scan.equality_columns + scan.range_columns)}; "
                    "an index on those columns lets SQLite search instead"
                ),
                action=scan.suggested_index,
                subject=scan.table,
            )
        )
    return out


def sort_index_rule(e: Evidence) -> list[Recommendation]:
    """``add_index`` for each slow statement that sorts every row its index search found.

    A statement counts as slow when one of its runs reached ``Settings.slow_query_ms``
    (it is in the slow query log) or its mean did. One recommendation per index.
    """
    slow = {q.shape for q in e.query.slow_queries}
    out: list[Recommendation] = []
    advised: set[str] = set()
    for sort in e.usage.sorts:
        if sort.shape not in slow and sort.mean_ms < e.settings.slow_query_ms:
            continue
        if sort.suggested_index in advised:
            continue
        advised.add(sort.suggested_index)
        rows = e.table_rows.get(sort.table, -1)
        equal = ", ".join(f"{c}=?" for c in sort.equality_columns)
        order = ", ".join(
            c.lstrip("-") + (" DESC" if c.startswith("-") else "") for c in sort.order_columns
        )
        out.append(
            Recommendation(
                kind="add_index",
                severity="warning",
                message=(
                    f"{sort.shape!r} finds its rows of {sort.table} ({_rows_text(rows)}) "
                    f"through {sort.index} ({equal}), then sorts every one of them in a "
                    f"temporary B-tree for ORDER BY {order}, on each of its "
                    f"{sort.executions} runs (mean {sort.mean_ms:.2f} ms); an index on the "
                    "equality columns followed by the ORDER BY columns returns the rows "
                    "already in order, so SQLite reads only as many as it returns"
                ),
                action=sort.suggested_index,
                subject=sort.table,
            )
        )
    return out


def drop_unused_index_rule(e: Evidence) -> list[Recommendation]:
    """``drop_unused_index`` for each index no statement seen used, on a table they read."""
    query, usage = e.query, e.usage
    if query.total_queries < MIN_RUNS_FOR_UNUSED:
        return []  # too few runs to call an index unused
    read_tables = _tables_in_plans(query.statements)
    out = []
    for index in usage.indexes:
        if index.uses or index.unique or index.origin != "c" or index.table not in read_tables:
            continue
        if index.columns and index.columns[0] in e.fk_columns.get(index.table, set()):
            continue  # it serves the foreign key's checks and cascades
        size = next((o.bytes for o in e.disk.objects if o.name == index.name), 0)
        out.append(
            Recommendation(
                kind="drop_unused_index",
                severity="info",
                message=(
                    f"index {index.name} on {index.table}({', '.join(index.columns)}) was "
                    f"used by none of the {usage.statements_planned} statements seen "
                    f"({query.total_queries} runs) although they read {index.table}; if "
                    f"that workload is typical, dropping it frees about {size:,} bytes "
                    f"and makes writes to {index.table} cheaper"
                ),
                action=f'DROP INDEX "{index.name}"',
                subject=index.name,
            )
        )
    return out


def cache_hit_rate_rule(e: Evidence) -> list[Recommendation]:
    """``cache_hit_rate`` for each tier under its target after enough lookups, with the cause."""
    target = e.settings.cache_hit_rate_target
    out = []
    for tier in e.cache.tiers:
        lookups = tier.hits + tier.misses
        if tier.hit_rate is None or lookups < MIN_LOOKUPS or tier.hit_rate >= target:
            continue
        if tier.evictions:
            cause = (
                f"{tier.evictions} entries were evicted to stay under {tier.max_bytes:,} bytes: "
                f"raise Settings.cache_{tier.tier}_max_bytes"
            )
        elif tier.invalidations >= tier.hits:
            cause = (
                f"{tier.invalidations} entries were invalidated by writes to what they read: "
                "reads of often-written tables gain little from the cache"
            )
        else:
            cause = "most lookups were for keys not seen before: cache what is read again"
        out.append(
            Recommendation(
                kind="cache_hit_rate",
                severity="warning",
                message=(
                    f"the {tier.tier} cache answered {tier.hit_rate:.0%} of {lookups} lookups "
                    f"(target {target:.0%}); {cause}"
                ),
                action=f"Settings.cache_{tier.tier}_max_bytes" if tier.evictions else None,
                subject=tier.tier,
            )
        )
    return out


def vacuum_rule(e: Evidence) -> list[Recommendation]:
    """``vacuum`` when free pages pass ``Settings.vacuum_freelist_ratio`` of the file."""
    disk = e.disk
    if (
        disk.freelist_ratio > e.settings.vacuum_freelist_ratio
        and disk.freelist_count >= MIN_FREE_PAGES
    ):
        return [
            Recommendation(
                kind="vacuum",
                severity="info",
                message=(
                    f"{disk.freelist_count:,} of {disk.page_count:,} pages "
                    f"({disk.freelist_ratio:.0%}) are free; VACUUM returns "
                    f"{disk.freelist_count * disk.page_size:,} bytes to the file system "
                    "(it rewrites the file and needs the write lock for that long)"
                ),
                action="VACUUM",
            )
        ]
    return []


def analyze_rule(e: Evidence) -> list[Recommendation]:
    """``analyze`` when the planner has no statistics although a table has many rows."""
    largest = max(e.table_rows.values(), default=0)
    if not e.usage.statistics and largest >= MIN_ROWS_FOR_ANALYZE:
        return [
            Recommendation(
                kind="analyze",
                severity="info",
                message=(
                    f"there are no planner statistics (sqlite_stat1) although a table holds "
                    f"{largest:,} rows; ANALYZE (or PRAGMA optimize) lets SQLite choose "
                    "between indexes from the data instead of guessing"
                ),
                action="PRAGMA optimize",
            )
        ]
    return []


def size_limit_rule(e: Evidence) -> list[Recommendation]:
    """``size_limit`` when the file and its WAL near ``Settings.max_database_bytes``."""
    disk = e.disk
    if disk.max_database_bytes and disk.limit_ratio >= SIZE_WARNING_RATIO:
        return [
            Recommendation(
                kind="size_limit",
                severity="critical" if disk.limit_ratio >= 1 else "warning",
                message=(
                    f"the database takes {disk.total_bytes:,} bytes, {disk.limit_ratio:.0%} of "
                    f"the {disk.max_database_bytes:,}-byte limit (Settings.max_database_bytes): "
                    "archive or delete old data, then VACUUM"
                ),
                action="VACUUM",
            )
        ]
    return []


#: The rules the report runs, in the order their recommendations are listed.
RULES: Final[tuple[Rule, ...]] = (
    add_index_rule,
    sort_index_rule,
    drop_unused_index_rule,
    cache_hit_rate_rule,
    vacuum_rule,
    analyze_rule,
    size_limit_rule,
)


def _rows_text(rows: int) -> str:
    return f"{rows:,} rows" if rows >= 0 else "rows unknown"


def _tables_in_plans(statements: list[StatementStats]) -> set[str]:
    """Tables the reads seen search or scan (aliases are not tables).

    Only reads count: the plan of a write also shows the foreign-key checks it makes
    on other tables, which says nothing about how those tables are queried.
    """
    found: set[str] = set()
    for statement in statements:
        if first_word(statement.shape) not in ("SELECT", "WITH", "VALUES"):
            continue
        for line in statement.plan:
            words = line.split()
            if len(words) >= 2 and words[0] in ("SCAN", "SEARCH"):
                found.add(words[1])
    return found
