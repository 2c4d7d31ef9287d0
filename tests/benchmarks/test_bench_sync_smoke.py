"""The sync benchmarks and the bookkeeping measurement still run. No time or ratio is asserted."""

from __future__ import annotations

from pathlib import Path

import bench.__main__ as runner
from bench import bench_sync
from tests.bench_helpers import assert_well_formed, smoke_results


def test_sync_benchmarks_run_against_their_baselines() -> None:
    assert "sync" in runner.available()
    results = smoke_results("sync")
    assert_well_formed(results)
    groups = {m.group for m in results}
    capture = {g for g in groups if g.startswith("sync capture: ")}
    assert len(capture) == 5
    # Every write with capture is measured next to the same write without it.
    for m in results:
        if m.group in capture and m.name.endswith(", sync enabled"):
            assert m.baseline == m.name.replace(", sync enabled", ", no sync"), m
    for kind in ("commands", "projects"):
        rows = [m for m in results if m.group == f"sync apply, 50 {kind}, new devices"]
        assert [m.name for m in rows] == [
            "sqlcipher3 executemany of the same rows",
            "a.sync.push()",
            "b.sync.pull()",
            "push + pull",
        ]
        assert {m.baseline for m in rows[1:]} == {rows[0].name}
        fastest = [
            m for m in results if m.group == f"sync apply, 50 {kind}, against multi-row INSERTs"
        ]
        assert [(m.name, m.baseline) for m in fastest] == [
            ("sqlcipher3 multi-row INSERTs of the same rows", None),
            ("b.sync.pull()", "sqlcipher3 multi-row INSERTs of the same rows"),
        ]
    larger = [m for m in results if m.group == "sync apply, 50 commands, device holding 500"]
    assert [m.baseline for m in larger] == [None, "b.sync.pull(), new device"]
    floor = [m for m in results if m.group.endswith("raw engine, database holding 500")]
    assert [m.baseline for m in floor] == [None, "sqlcipher3 multi-row INSERTs, holding 500"]


def test_the_bookkeeping_measurement_runs(tmp_path: Path) -> None:
    report = bench_sync.measure_metadata(100, tmp_path)
    assert report.rows == 100
    assert set(report.sizes) == set(bench_sync.STEPS)
    inserted, updated, pushed = (report.sizes[step] for step in bench_sync.STEPS)
    assert inserted["sync_rows"] > 0
    # Changing three columns of every row gives each row three cells; pushing empties
    # the index of pending changes.
    assert updated["sync_cells"] > inserted["sync_cells"]
    assert pushed["idx_sync_rows_pending"] < updated["idx_sync_rows_pending"]
    assert report.per_row("after updates") > report.per_row("after inserts")
