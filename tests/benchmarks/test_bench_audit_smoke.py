"""The audit benchmarks and the size measurement still run. No time or ratio is asserted."""

from __future__ import annotations

from pathlib import Path

import bench.__main__ as runner
from bench import bench_audit
from tests.bench_helpers import assert_well_formed, smoke_results


def test_audit_benchmarks_run_against_their_baselines() -> None:
    assert "audit" in runner.available()
    results = smoke_results("audit")
    assert {m.group for m in results} == {"audit append", "audit verify"}
    assert_well_formed(results)
    appends = [m for m in results if m.name.startswith("db.audit.append")]
    assert {m.baseline for m in appends} >= {
        "sqlcipher3 indexed SELECT by id",
        "sqlcipher3 indexed INSERT, own transaction",
    }


def test_the_size_measurement_runs(tmp_path: Path) -> None:
    report = bench_audit.measure_size(200, tmp_path)
    assert report.events == 200
    assert report.bytes_total > 0
    assert report.thirty_days_bytes == report.bytes_per_event * 2_000 * 30


def test_realistic_events_are_valid_appends() -> None:
    events = bench_audit.realistic_events(300)
    assert len({e["event_type"] for e in events}) == 5
    assert all(e["severity"] in ("info", "warning") for e in events)
