"""The benchmarks still run: each module, a few calls each. No time or ratio is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import bench.__main__ as runner
import pytest
from bench import harness
from tests.bench_helpers import assert_well_formed, smoke_results


@pytest.mark.parametrize("name", runner.available())
def test_benchmark_module_produces_results(name: str) -> None:
    results = smoke_results(name)
    assert results
    assert_well_formed(results)


def test_engine_benchmarks_are_found() -> None:
    assert "engine" in runner.available()


def test_command_line_writes_the_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    assert runner.main(["--smoke", "--output", str(out), "engine"]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["mode"] == "smoke"
    assert report["machine"]["cipher_version"]
    assert report["results"]
    assert all(m["median_us"] > 0 for m in report["results"])
    assert "lookup" in capsys.readouterr().out


def test_command_line_refuses_an_unknown_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        runner.main(["--smoke", "no-such-benchmark"])
    assert "no benchmark named no-such-benchmark" in capsys.readouterr().err


def test_a_baseline_is_its_own_unit_and_must_come_first() -> None:
    suite = harness.Suite("noop", harness.Config.smoke())
    suite.add("base", lambda: None, number=10)
    with pytest.raises(KeyError, match="must be added first"):
        suite.add("other", lambda: None, number=10, baseline="missing")
    with pytest.raises(ValueError, match="already exists"):
        suite.add("base", lambda: None, number=10)
    suite.add("other", lambda: None, number=10, baseline="base")
    base, other = suite.run()
    assert (base.baseline, base.ratio) == (None, 1.0)
    assert other.baseline == "base"
    assert base.calls == other.calls == 2  # one call per round at the smoke scale
