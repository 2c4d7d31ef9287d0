"""The repository benchmarks still run, a few calls each. No time or ratio is asserted."""

from __future__ import annotations

import bench.__main__ as runner
from bench import harness

GROUPS = {"repo get", "repo find_by_user", "repo create", "repo create_many", "repo decrypt"}


def test_repository_benchmarks_run_against_their_baselines() -> None:
    assert "repos" in runner.available()
    results = runner.run_module("repos", harness.Config.smoke())
    assert {m.group for m in results} == GROUPS
    names = {(m.group, m.name) for m in results}
    for m in results:
        assert m.median_us > 0, m
        assert m.calls > 0, m
        if m.baseline is not None:
            assert (m.group, m.baseline) in names, m
    # Every repository figure is compared with bare sqlcipher3 in its own group.
    for group in GROUPS:
        rows = [m for m in results if m.group == group]
        assert any(m.baseline is None and m.name.startswith("sqlcipher3") for m in rows), group
        assert any(m.baseline is not None and m.name.startswith("db.") for m in rows), group
