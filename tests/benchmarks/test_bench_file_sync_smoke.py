"""The file sync benchmark still runs, through the in-process relay and a server
process. No time or ratio is asserted."""

from __future__ import annotations

import pytest
from bench import bench_file_sync
from bench.harness import Config


@pytest.mark.parametrize("relay", ["memory", "server"])
def test_the_file_sync_benchmark_runs(relay: str) -> None:
    results = bench_file_sync.run(Config.smoke(), 0.25, 1, relay)
    assert [m.name for m in results] == [
        "read on A (chunks on disk)",
        "a.files.send_chunks()",
        "first read on B (fetches)",
        "second read on B",
    ]
    assert {m.baseline for m in results[1:]} == {results[0].name}
    assert all(m.median_us > 0 and m.calls == 1 for m in results)
