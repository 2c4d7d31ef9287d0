"""The key-rotation benchmark still runs, a few users only. No time is asserted."""

from __future__ import annotations

import bench.__main__ as runner
from tests.bench_helpers import assert_well_formed, smoke_results


def test_rotation_benchmark_runs_against_the_raw_engine() -> None:
    assert "rotation" in runner.available()
    results = smoke_results("rotation")
    groups = {m.group for m in results}
    assert "writer during rotation" in groups
    assert sum(g.startswith("key rotation, ") for g in groups) == 2
    assert_well_formed(results)
    for m in results:
        assert m.max_us is not None, m
        assert m.max_us >= m.median_us, m
        if m.group.startswith("key rotation") and m.baseline is not None:
            assert m.name == "rotate_field_keys"
