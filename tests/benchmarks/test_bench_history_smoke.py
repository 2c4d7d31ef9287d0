"""The history benchmarks still run, on two small histories. No time or ratio is asserted."""

from __future__ import annotations

import bench.__main__ as runner
from bench import bench_history
from bench.harness import Config
from tests.bench_helpers import assert_well_formed, smoke_results


def test_every_query_is_timed_at_each_size_against_the_smallest() -> None:
    assert "history" in runner.available()
    results = smoke_results("history")
    assert_well_formed(results)
    groups = {m.group for m in results}
    for name, _number, _query in bench_history.QUERIES:
        assert f"history: {name}" in groups
        rows = [m for m in results if m.group == f"history: {name}"]
        assert [m.name for m in rows] == ["50 rows", "500 rows"]
        assert rows[1].baseline == "50 rows"
    writes = [m for m in results if m.group.startswith("history: command_history executemany")]
    assert [m.baseline is None for m in writes] == [True, False]


def test_a_full_run_reaches_a_hundred_times_the_smallest_history() -> None:
    assert bench_history.sizes(Config()) == [10_000, 100_000, 1_000_000]
    assert bench_history.sizes(Config.quick()) == [10_000, 100_000]
    assert bench_history.sizes(Config.smoke()) == [50, 500]
