"""The notification benchmark still runs, a few sends per case. No time or ratio is asserted."""

from __future__ import annotations

import bench.__main__ as runner
from bench import harness


def test_notification_benchmark_runs_against_its_baselines() -> None:
    assert "notify" in runner.available()
    config = harness.Config(rounds=1, scale=0.0005, warmup=1, rows=10)
    results = runner.run_module("notify", config)
    names = {(m.group, m.name) for m in results}
    assert ("notify", "db.notify.send, encrypted") in names
    assert ("notify, unencrypted", "db.notify.send, unencrypted") in names
    for m in results:
        assert m.median_us > 0, m
        assert m.calls == 5, m
        if m.baseline is not None:
            assert (m.group, m.baseline) in names, m
    bases = {m.name for m in results if m.baseline is None}
    assert bases == {"sqlcipher3 INSERT, encrypted", "sqlite INSERT, plain"}
