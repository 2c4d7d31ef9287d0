"""The repository benchmarks still run, a few calls each. No time or ratio is asserted."""

from __future__ import annotations

import bench.__main__ as runner
from tests.bench_helpers import assert_well_formed, smoke_results

GROUPS = {"repo get", "repo find_by_user", "repo create", "repo create_many", "repo decrypt"}


def test_repository_benchmarks_run_against_their_baselines() -> None:
    assert "repos" in runner.available()
    results = smoke_results("repos")
    assert {m.group for m in results} == GROUPS
    assert_well_formed(results)
    # Every repository figure is compared with bare sqlcipher3 in its own group.
    for group in GROUPS:
        rows = [m for m in results if m.group == group]
        assert any(m.baseline is None and m.name.startswith("sqlcipher3") for m in rows), group
        assert any(m.baseline is not None and m.name.startswith("db.") for m in rows), group
