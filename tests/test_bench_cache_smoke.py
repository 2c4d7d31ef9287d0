"""The cache benchmarks still run, a few calls each. No time or ratio is asserted."""

from __future__ import annotations

import bench.__main__ as runner
from bench import harness


def test_cache_benchmarks_run_against_their_baselines() -> None:
    assert "cache" in runner.available()
    results = runner.run_module("cache", harness.Config.smoke())
    assert {m.group for m in results} == {"cache read", "cache write"}
    names = {(m.group, m.name) for m in results}
    for m in results:
        assert m.median_us > 0, m
        assert m.calls > 0, m
        if m.baseline is not None:
            assert (m.group, m.baseline) in names, m
    read = {m.name: m for m in results if m.group == "cache read"}
    # A hit is compared with both an uncached db.query and bare sqlcipher3.
    assert read["db.query, cache hit"].baseline == "db.query, monitored, use_cache=False"
    assert read["db.query, cache hit (again)"].baseline == "sqlcipher3 SELECT"
    assert read["db.query, monitored, use_cache=False"].baseline == (
        "db.query, no monitor, no cache"
    )
