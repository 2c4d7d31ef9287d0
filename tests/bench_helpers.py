"""Shared by the benchmark smoke tests: each module runs once per test session."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import bench.__main__ as runner
from bench import harness
from bench.harness import Measurement


@functools.cache
def smoke_results(name: str) -> tuple[Measurement, ...]:
    """Run benchmark module ``name`` at smoke scale (once) and return its measurements."""
    return tuple(runner.run_module(name, harness.Config.smoke()))


def assert_well_formed(results: Sequence[Measurement]) -> None:
    """Every figure was measured, and every baseline it names is in its own group."""
    names = {(m.group, m.name) for m in results}
    for m in results:
        assert m.median_us > 0, m
        assert m.calls > 0, m
        if m.baseline is not None:
            assert (m.group, m.baseline) in names, m
