"""``mangostore stats``: the performance report of a database, as tables, JSON or metrics."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mangostore.cli.common import (
    console,
    existing_database,
    human_bytes,
    is_internal_table,
    key_file_option,
    open_existing,
    plain_option,
)
from mangostore.cli.output import emit_json, iso_time, json_option
from mangostore.monitor import PerformanceReport

#: Statement shapes shown in the table (the JSON and the metrics have them all).
TOP_STATEMENTS = 15


@click.command()
@existing_database
@json_option
@click.option(
    "--prometheus",
    is_flag=True,
    help="Print the report as metrics in the Prometheus text format.",
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="List every table and index one by one, mangostore's internal ones too.",
)
@plain_option
@key_file_option
def stats(
    path: Path,
    as_json: bool,
    prometheus: bool,
    show_all: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Show the performance report of the database at PATH.

    Disk usage and indexes per table (every table and index with --all), free pages
    and WAL, table scans with the index that would avoid them, cache counters and
    recommendations. Statement statistics are those of this command's own run; an
    application gets its own from db.performance_report(). Nothing is changed or
    migrated.
    """
    if as_json and prometheus:
        raise click.UsageError("choose one of --json and --prometheus")
    with open_existing(path, plain=plain, key_file=key_file) as db:
        report = db.performance_report()
    if as_json:
        emit_json(report_as_json(report))
    elif prometheus:
        click.echo(prometheus_text(report), nl=False)
    else:
        render_report(console(), report, show_all=show_all)


def report_as_json(report: PerformanceReport) -> dict[str, Any]:
    """The report as ``stats --json`` prints it: times as ISO 8601 (UTC)."""
    data = report.to_dict()
    data["timestamp"] = iso_time(report.timestamp)
    for slow in data["query_performance"].get("slow_queries", []):
        slow["at"] = iso_time(slow.pop("at_ms"))
    return data


# -- tables --------------------------------------------------------------------------------


def render_report(out: Console, report: PerformanceReport, *, show_all: bool = False) -> None:
    """Print the report as rich tables.

    Disk usage and indexes are summed per table of the application, with
    mangostore's internal tables on one line, unless ``show_all``.
    """
    disk = report.disk_usage
    overview = Table(box=box.SIMPLE, show_header=False, title="mangostore stats")
    overview.add_column(style="bold")
    overview.add_column()
    limit = f"{disk.limit_ratio:.1%} of {human_bytes(disk.max_database_bytes)}"
    query = report.query_performance
    rows = [
        ("File size", f"{human_bytes(disk.file_bytes)} ({limit})"),
        ("WAL size", human_bytes(disk.wal_bytes)),
        ("Pages", f"{disk.page_count:,} of {disk.page_size:,} bytes"),
        ("Free pages", f"{disk.freelist_count:,} ({disk.freelist_ratio:.1%})"),
        ("Sizes from", "dbstat" if disk.method == "dbstat" else "estimate (no dbstat)"),
        ("Planner statistics", "present" if report.index_usage.statistics else "missing"),
        ("Statements timed", f"{query.total_queries:,} ({query.total_time_ms:,.1f} ms)"),
        (f"Slow (>= {query.slow_query_ms} ms)", f"{query.slow_runs:,}"),
    ]
    for label, value in rows:
        overview.add_row(label, Text(value))
    out.print(overview)

    if show_all:
        _all_objects(out, report)
        _all_indexes(out, report)
    else:
        _usage_by_table(out, report)

    if report.index_usage.scans:
        scans = Table(box=box.SIMPLE, title="Table scans")
        scans.add_column("Table")
        scans.add_column("Statement")
        scans.add_column("Runs", justify="right")
        scans.add_column("Suggested index")
        for scan in report.index_usage.scans:
            scans.add_row(
                Text(scan.table),
                Text(scan.shape),
                f"{scan.executions:,}",
                Text(scan.suggested_index or ""),
            )
        out.print(scans)

    statements = Table(box=box.SIMPLE, title="Statements (most total time first)")
    statements.add_column("Statement")
    for heading in ("Runs", "Mean ms", "p50 ms", "p95 ms", "Max ms", "Rows"):
        statements.add_column(heading, justify="right")
    for shape in query.statements[:TOP_STATEMENTS]:
        statements.add_row(
            Text(shape.shape),
            f"{shape.count:,}",
            f"{shape.mean_ms:.3f}",
            f"{shape.p50_ms:.3f}",
            f"{shape.p95_ms:.3f}",
            f"{shape.max_ms:.3f}",
            f"{shape.rows:,}",
        )
    out.print(statements)

    caches = Table(box=box.SIMPLE, title="Caches")
    caches.add_column("Tier")
    for heading in ("Hits", "Misses", "Hit rate", "Evictions", "Entries", "Size"):
        caches.add_column(heading, justify="right")
    for tier in report.cache_performance.tiers:
        rate = "" if tier.hit_rate is None else f"{tier.hit_rate:.0%}"
        caches.add_row(
            tier.tier if tier.available else f"{tier.tier} (off)",
            f"{tier.hits:,}",
            f"{tier.misses:,}",
            rate,
            f"{tier.evictions:,}",
            f"{tier.entries:,}",
            f"{human_bytes(tier.bytes)} of {human_bytes(tier.max_bytes)}",
        )
    out.print(caches)

    advice = Table(box=box.SIMPLE, title="Recommendations")
    advice.add_column("Severity")
    advice.add_column("Recommendation")
    advice.add_column("Action")
    for advised in report.recommendations:
        advice.add_row(advised.severity, Text(advised.message), Text(advised.action or ""))
    if not report.recommendations:
        advice.add_row("", "none: nothing measured calls for a change", "")
    out.print(advice)


def _all_objects(out: Console, report: PerformanceReport) -> None:
    # Names are never cut: they take the width they need, and the table an index
    # belongs to is said in the index table below rather than in a column here.
    objects = Table(box=box.SIMPLE, title="Disk usage", pad_edge=False)
    objects.add_column("Name", no_wrap=True)
    objects.add_column("Kind", no_wrap=True)
    # Pages are left to --json: the size says the same, and names need the width.
    for heading in ("Size", "Rows"):
        objects.add_column(heading, justify="right", no_wrap=True)
    for item in report.disk_usage.objects:
        objects.add_row(
            Text(item.name),
            item.kind,
            human_bytes(item.bytes),
            f"{item.rows:,}" if item.rows >= 0 else "",
        )
    out.print(objects)


def _all_indexes(out: Console, report: PerformanceReport) -> None:
    indexes = Table(box=box.SIMPLE, title="Indexes, by table", pad_edge=False)
    indexes.add_column("Index", no_wrap=True)
    indexes.add_column("Columns", overflow="fold")
    indexes.add_column("Uses", justify="right", no_wrap=True)
    table = None
    for index in sorted(report.index_usage.indexes, key=lambda i: (i.table, i.name)):
        if index.table != table:
            table = index.table
            indexes.add_row(Text(f"{table}:", style="bold"), "", "")
        indexes.add_row(
            Text("  " + index.name),
            Text(", ".join(index.columns)),
            f"{index.uses:,}" if index.uses else "unused",
        )
    out.print(indexes)


@dataclass(slots=True)
class _TableUsage:
    """Sizes and indexes summed for one table (or for every internal table)."""

    tables: int = 0
    rows: int = 0
    bytes: int = 0
    index_bytes: int = 0
    indexes: int = 0
    used: int = 0


def _usage_by_table(out: Console, report: PerformanceReport) -> None:
    by_table: dict[str, _TableUsage] = {}
    internal = _TableUsage()
    for item in report.disk_usage.objects:
        usage = (
            internal
            if is_internal_table(item.table)
            else by_table.setdefault(item.table, _TableUsage())
        )
        if item.kind == "table":
            usage.tables += 1
            usage.bytes += item.bytes
            usage.rows += max(item.rows, 0)
        else:
            usage.index_bytes += item.bytes
    for index in report.index_usage.indexes:
        usage = (
            internal
            if is_internal_table(index.table)
            else by_table.setdefault(index.table, _TableUsage())
        )
        usage.indexes += 1
        usage.used += 1 if index.uses else 0
    table = Table(
        box=box.SIMPLE,
        title="Tables and their indexes",
        caption="internal: mangostore's own bookkeeping, search and key tables; --all lists "
        "every table and index",
    )
    table.add_column("Table", no_wrap=True)
    for heading in ("Rows", "Size", "Indexes", "Index size", "Used"):
        table.add_column(heading, justify="right", no_wrap=True)
    ordered = sorted(by_table.items(), key=lambda kv: (-(kv[1].bytes + kv[1].index_bytes), kv[0]))
    for name, usage in ordered:
        table.add_row(Text(name), *_usage_cells(usage))
    if internal.tables:
        table.add_row(
            Text(f"internal ({internal.tables} tables)", style="dim"),
            *_usage_cells(internal),
            style="dim",
        )
    out.print(table)


def _usage_cells(usage: _TableUsage) -> list[str]:
    return [
        f"{usage.rows:,}",
        human_bytes(usage.bytes),
        f"{usage.indexes:,}",
        human_bytes(usage.index_bytes),
        f"{usage.used:,}",
    ]


# -- Prometheus ----------------------------------------------------------------------------


class ReportCollector(Collector):
    """Turns one report into Prometheus metric families."""

    def __init__(self, report: PerformanceReport) -> None:
        self._report = report

    def collect(self) -> Iterable[Metric]:
        """Yield the metric families of the report."""
        yield from _statement_metrics(self._report)
        yield from _cache_metrics(self._report)
        yield from _disk_metrics(self._report)
        yield from _index_metrics(self._report)
        advice = GaugeMetricFamily(
            "mangostore_recommendations", "Recommendations by kind", labels=["kind"]
        )
        counts: dict[str, int] = {}
        for item in self._report.recommendations:
            counts[item.kind] = counts.get(item.kind, 0) + 1
        for kind, count in sorted(counts.items()):
            advice.add_metric([kind], count)
        yield advice


def _statement_metrics(report: PerformanceReport) -> Iterator[Metric]:
    runs = CounterMetricFamily(
        "mangostore_statement_runs", "Statement runs timed, by shape", labels=["shape"]
    )
    errors = CounterMetricFamily(
        "mangostore_statement_errors", "Statement runs that raised, by shape", labels=["shape"]
    )
    seconds = CounterMetricFamily(
        "mangostore_statement_seconds", "Time spent in statements, by shape", labels=["shape"]
    )
    rows = CounterMetricFamily(
        "mangostore_statement_rows", "Rows returned by statements, by shape", labels=["shape"]
    )
    latency = GaugeMetricFamily(
        "mangostore_statement_latency_seconds",
        "Statement time quantiles (p50, p95 of recent runs; max of all), by shape",
        labels=["shape", "quantile"],
    )
    for item in report.query_performance.statements:
        runs.add_metric([item.shape], item.count)
        errors.add_metric([item.shape], item.errors)
        seconds.add_metric([item.shape], item.total_ms / 1000)
        rows.add_metric([item.shape], item.rows)
        for quantile, value in (("0.5", item.p50_ms), ("0.95", item.p95_ms), ("1", item.max_ms)):
            latency.add_metric([item.shape, quantile], value / 1000)
    slow = CounterMetricFamily("mangostore_slow_statement_runs", "Runs at or above the threshold")
    slow.add_metric([], report.query_performance.slow_runs)
    yield from (runs, errors, seconds, rows, latency, slow)


def _cache_metrics(report: PerformanceReport) -> Iterator[Metric]:
    families: dict[str, Any] = {
        "hits": CounterMetricFamily("mangostore_cache_hits", "Cache hits", labels=["tier"]),
        "misses": CounterMetricFamily("mangostore_cache_misses", "Cache misses", labels=["tier"]),
        "evictions": CounterMetricFamily(
            "mangostore_cache_evictions", "Entries evicted by the size bound", labels=["tier"]
        ),
        "expirations": CounterMetricFamily(
            "mangostore_cache_expirations", "Entries past their TTL", labels=["tier"]
        ),
        "invalidations": CounterMetricFamily(
            "mangostore_cache_invalidations", "Entries invalidated", labels=["tier"]
        ),
        "entries": GaugeMetricFamily("mangostore_cache_entries", "Entries held", labels=["tier"]),
        "bytes": GaugeMetricFamily("mangostore_cache_bytes", "Bytes held", labels=["tier"]),
        "max_bytes": GaugeMetricFamily("mangostore_cache_max_bytes", "Size bound", labels=["tier"]),
    }
    for tier in report.cache_performance.tiers:
        for name, family in families.items():
            family.add_metric([tier.tier], getattr(tier, name))
    yield from families.values()


def _disk_metrics(report: PerformanceReport) -> Iterator[Metric]:
    disk = report.disk_usage
    for name, help_text, value in (
        ("mangostore_database_bytes", "Size of the database file", disk.file_bytes),
        ("mangostore_wal_bytes", "Size of the write-ahead log", disk.wal_bytes),
        ("mangostore_page_count", "Pages in the database", disk.page_count),
        ("mangostore_freelist_pages", "Free pages in the database", disk.freelist_count),
        ("mangostore_freelist_ratio", "Free pages per page", disk.freelist_ratio),
        ("mangostore_database_limit_bytes", "Configured size limit", disk.max_database_bytes),
    ):
        gauge = GaugeMetricFamily(name, help_text)
        gauge.add_metric([], value)
        yield gauge
    objects = GaugeMetricFamily(
        "mangostore_object_bytes",
        f"Bytes of each table and index ({disk.method})",
        labels=["name", "kind", "table"],
    )
    for item in disk.objects:
        objects.add_metric([item.name, item.kind, item.table], item.bytes)
    yield objects


def _index_metrics(report: PerformanceReport) -> Iterator[Metric]:
    uses = CounterMetricFamily(
        "mangostore_index_uses",
        "Statement runs whose plan uses the index",
        labels=["index", "table"],
    )
    for index in report.index_usage.indexes:
        uses.add_metric([index.name, index.table], index.uses)
    scans = CounterMetricFamily(
        "mangostore_table_scan_runs",
        "Runs of statements that scan the table without an index",
        labels=["table", "shape"],
    )
    for scan in report.index_usage.scans:
        scans.add_metric([scan.table, scan.shape], scan.executions)
    yield from (uses, scans)


def prometheus_text(report: PerformanceReport) -> str:
    """Return the report in the Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector(report))
    return generate_latest(registry).decode("utf-8")
