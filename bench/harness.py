"""A small timing harness: per-call samples in rounds, with ratios to a same-run baseline.

Hand-written rather than pytest-benchmark: every figure here is only meaningful next to
the raw engine measured in the same process on the same files, and pytest-benchmark
does not put a named in-run baseline and the ratio to it in one table.

>>> suite = Suite("demo", Config(rounds=2, scale=0.01))
>>> suite.add("noop", lambda: None, number=100)
>>> suite.add("noop again", lambda: None, number=100, baseline="noop")
>>> [(m.name, m.baseline, m.calls) for m in suite.run()]
[('noop', None, 2), ('noop again', 'noop', 2)]
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlcipher3

from mangostore.engine.pragmas import apply_key, writer_setup


@dataclass(frozen=True, slots=True)
class Config:
    """How hard to measure: benchmarks ask for counts, the config scales them.

    Attributes:
        rounds: timed rounds per case (garbage is collected between rounds).
        scale: multiplies the calls per round a benchmark asks for (at least 1 call).
        warmup: untimed rounds before the timed ones (caches, pool, page cache).
        rows: rows seeded into the benchmark databases.
    """

    rounds: int = 15
    scale: float = 1.0
    warmup: int = 1
    rows: int = 10_000

    @classmethod
    def quick(cls) -> Config:
        """A short run for a first look: fewer rounds and calls, same data size."""
        return cls(rounds=4, scale=0.2)

    @classmethod
    def smoke(cls) -> Config:
        """A few calls only: proves the benchmarks still run; the figures mean nothing."""
        return cls(rounds=2, scale=0.001, warmup=1, rows=50)

    def calls(self, number: int) -> int:
        """Return how many calls per round a request for ``number`` becomes."""
        return max(1, round(number * self.scale))

    def total_calls(self, number: int) -> int:
        """Return every call (warm-up included) one case of ``number`` makes."""
        return self.calls(number) * (self.warmup + self.rounds)


@dataclass(frozen=True, slots=True)
class Measurement:
    """One benchmark's figures, in microseconds per call."""

    group: str
    name: str
    median_us: float
    p95_us: float
    min_us: float
    calls: int
    baseline: str | None = None
    ratio: float = 1.0  # median / baseline median; 1.0 for a baseline itself
    max_us: float | None = None  # the slowest call, where a benchmark reports it


@dataclass(frozen=True, slots=True)
class _Case:
    name: str
    fn: Callable[[], object]
    calls: int
    baseline: str | None


@dataclass
class Suite:
    """One benchmark group: cases are added, then timed together, round by round.

    Rounds are interleaved (a round of every case, then the next round), so a change
    in background load while the suite runs falls on each case alike instead of on
    whichever happened to run then; this keeps the ratios honest on a busy machine.
    """

    group: str
    config: Config
    _cases: list[_Case] = field(default_factory=list)

    def add(
        self, name: str, fn: Callable[[], object], *, number: int, baseline: str | None = None
    ) -> None:
        """Add a case: ``fn`` is called ``number`` times per round (at scale 1).

        Args:
            name: the row's name; unique within the suite.
            fn: the work to time, called with no arguments.
            number: calls per round at scale 1 (scaled by :attr:`Config.scale`).
            baseline: the name of a case added earlier to divide by; ``None`` makes
                this case a baseline (ratio 1.0).

        Raises:
            KeyError: ``baseline`` was not added earlier.
            ValueError: ``name`` is already taken.
        """
        names = {case.name for case in self._cases}
        if name in names:
            raise ValueError(f"{self.group}: a case named {name!r} already exists")
        if baseline is not None and baseline not in names:
            raise KeyError(f"{self.group}: baseline {baseline!r} must be added first")
        self._cases.append(_Case(name, fn, self.config.calls(number), baseline))

    def run(self) -> list[Measurement]:
        """Warm every case up, time them in interleaved rounds, and return the figures."""
        for case in self._cases:
            for _ in range(self.config.warmup * case.calls):
                case.fn()
        samples: dict[str, list[int]] = {case.name: [] for case in self._cases}
        clock = time.perf_counter_ns
        was_enabled = gc.isenabled()
        try:
            for _ in range(self.config.rounds):
                for case in self._cases:
                    gc.collect()
                    # A collection inside a timed call would be charged to whichever
                    # call triggered it; the gaps between rounds collect instead.
                    gc.disable()
                    timed, fn = samples[case.name], case.fn
                    for _ in range(case.calls):
                        start = clock()
                        fn()
                        timed.append(clock() - start)
                    gc.enable()
        finally:
            (gc.enable if was_enabled else gc.disable)()
        medians = {name: statistics.median(ns) / 1000 for name, ns in samples.items()}
        return [
            Measurement(
                group=self.group,
                name=case.name,
                median_us=medians[case.name],
                p95_us=_percentile(samples[case.name], 0.95) / 1000,
                min_us=min(samples[case.name]) / 1000,
                calls=len(samples[case.name]),
                baseline=case.baseline,
                ratio=medians[case.name] / medians[case.baseline] if case.baseline else 1.0,
            )
            for case in self._cases
        ]


def _percentile(samples: list[int], q: float) -> float:
    """Return the ``q`` quantile by nearest rank (no interpolation past the data)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def timer_overhead_ns(calls: int = 10_000) -> float:
    """Return the median cost of timing an empty call: the floor under every sample."""
    clock = time.perf_counter_ns
    costs = []
    for _ in range(calls):
        start = clock()
        costs.append(clock() - start)
    return float(statistics.median(costs))


def raw_connection(
    path: Path,
    page_key: bytes | None,
    *,
    writer: bool = False,
    page_cache: bool = True,
    cached_statements: int = 128,
) -> Any:
    """Open the baseline: a bare sqlcipher3 connection, keyed as mangostore keys its own.

    ``writer`` applies the setup steps of mangostore's writer connection (WAL, foreign
    keys, ``synchronous = NORMAL``, secure delete, ...), so a ratio shows the library's
    own overhead, not a difference in fsyncs. ``page_cache=False`` sets ``cache_size =
    0``: nearly every page a lookup touches is then read (and decrypted) again.
    ``cached_statements``: the driver's statement cache (0 for one long read, as a
    backup's snapshot connection keeps none).
    """
    conn = sqlcipher3.connect(str(path), isolation_level=None, cached_statements=cached_statements)
    if page_key is not None:
        apply_key(conn, page_key)
    if not page_cache:
        conn.execute("PRAGMA cache_size = 0")
    if writer:
        for step in writer_setup(busy_timeout_ms=5_000):
            step(conn)
    return conn


def measure_seconds(
    group: str, name: str, seconds: list[float], baseline: Measurement | None = None
) -> Measurement:
    """A :class:`Measurement` of whole runs timed in seconds (one sample per run)."""
    ordered = sorted(seconds)
    median = statistics.median(ordered) * 1e6
    return Measurement(
        group=group,
        name=name,
        median_us=median,
        p95_us=ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))] * 1e6,
        min_us=ordered[0] * 1e6,
        calls=len(ordered),
        baseline=baseline.name if baseline else None,
        ratio=median / baseline.median_us if baseline else 1.0,
        max_us=ordered[-1] * 1e6,
    )


def print_seconds(produce: Callable[[], list[Measurement]]) -> None:
    """Run ``produce`` and print its whole-run figures in seconds, each with its ratio,
    between the machine's load averages (other work on a shared machine skews them)."""
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for m in produce():
        ratio = f"  x{m.ratio:.2f} of {m.baseline}" if m.baseline else ""
        print(f"{m.name}: {m.median_us / 1e6:.3f} s (median of {m.calls}){ratio}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
