"""The access-check and session benchmarks still run, a few calls each. No time is asserted."""

from __future__ import annotations

import bench.__main__ as runner
from tests.bench_helpers import assert_well_formed, smoke_results

GROUPS = {"access check", "session validate"}


def test_security_benchmarks_run_against_a_bare_select() -> None:
    assert "security" in runner.available()
    results = smoke_results("security")
    assert {m.group for m in results} == GROUPS
    names = {(m.group, m.name) for m in results}
    assert ("access check", "db.access.check, cached") in names
    assert ("access check", "db.access.check, uncached") in names
    assert ("session validate", "db.sessions.validate") in names
    assert_well_formed(results)
    for m in results:
        if m.baseline is None:
            assert m.name.startswith("sqlcipher3 indexed SELECT"), m
        else:
            assert m.name.startswith("db."), m
