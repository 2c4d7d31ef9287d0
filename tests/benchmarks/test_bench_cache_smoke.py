"""The cache benchmarks still run, a few calls each. No time or ratio is asserted."""

from __future__ import annotations

import bench.__main__ as runner
from tests.bench_helpers import assert_well_formed, smoke_results


def test_cache_benchmarks_run_against_their_baselines() -> None:
    assert "cache" in runner.available()
    results = smoke_results("cache")
    assert {m.group for m in results} == {"cache read", "cache write"}
    assert_well_formed(results)
    read = {m.name: m for m in results if m.group == "cache read"}
    # A hit is compared with both an uncached db.query and bare sqlcipher3.
    assert read["db.query, cache hit"].baseline == "db.query, monitored, use_cache=False"
    assert read["db.query, cache hit (again)"].baseline == "sqlcipher3 SELECT"
    assert read["db.query, monitored, use_cache=False"].baseline == (
        "db.query, no monitor, no cache"
    )
