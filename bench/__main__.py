"""Run the benchmarks: ``python -m bench [--quick] [NAME ...]``.

Each NAME is a benchmark module without its ``bench_`` prefix (``engine``); none
means all of them. Prints one table and writes every figure, with the machine and
library versions, to ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
from pathlib import Path
from typing import Any

import sqlcipher3
from rich.console import Console
from rich.table import Table

import bench
import mangostore
from bench.harness import Config, Measurement, timer_overhead_ns

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def available() -> list[str]:
    """Return the names of the benchmark modules, without the ``bench_`` prefix."""
    return sorted(
        info.name.removeprefix("bench_")
        for info in pkgutil.iter_modules(bench.__path__)
        if info.name.startswith("bench_")
    )


def run_module(name: str, config: Config) -> list[Measurement]:
    """Import ``bench.bench_<name>`` and run it with ``config``."""
    module = importlib.import_module(f"bench.bench_{name.removeprefix('bench_')}")
    results: list[Measurement] = module.run(config)
    return results


def machine() -> dict[str, Any]:
    """Describe where the figures were measured: CPUs, Python, SQLite and SQLCipher."""
    conn = sqlcipher3.connect(":memory:")
    try:
        conn.execute("PRAGMA key = \"x'" + "00" * 32 + "'\"")
        cipher = conn.execute("PRAGMA cipher_version").fetchone()[0]
        provider = conn.execute("PRAGMA cipher_provider").fetchone()
        provider_version = conn.execute("PRAGMA cipher_provider_version").fetchone()
        sqlite = conn.execute("SELECT sqlite_version()").fetchone()[0]
    finally:
        conn.close()
    return {
        "nproc": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "mangostore": mangostore.__version__,
        "sqlite_version": sqlite,
        "cipher_version": cipher,
        "cipher_provider": " ".join(
            str(part[0]) for part in (provider, provider_version) if part is not None
        ),
        "timer_overhead_ns": timer_overhead_ns(),
    }


def table(results: list[Measurement], title: str) -> Table:
    """Lay the results out as one rich table, grouped as measured."""
    grid = Table(title=title)
    grid.add_column("group")
    grid.add_column("benchmark")
    with_max = any(m.max_us is not None for m in results)
    headings = ("median µs", "p95 µs", "min µs", *(("max µs",) if with_max else ()), "calls")
    for heading in headings:
        grid.add_column(heading, justify="right")
    grid.add_column("ratio", justify="right")
    grid.add_column("baseline")
    previous = None
    for m in results:
        ratio = "baseline" if m.baseline is None else f"{m.ratio:.2f}x"
        grid.add_row(
            m.group if m.group != previous else "",
            m.name,
            f"{m.median_us:,.1f}",
            f"{m.p95_us:,.1f}",
            f"{m.min_us:,.1f}",
            *((f"{m.max_us:,.1f}" if m.max_us is not None else "",) if with_max else ()),
            str(m.calls),
            ratio,
            m.baseline or "",
            end_section=False,
        )
        previous = m.group
    return grid


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the chosen benchmarks, print and save the results."""
    names = available()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(names)}")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    mode.add_argument(
        "--smoke", action="store_true", help="a few calls only, to check that everything runs"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    args = parser.parse_args(argv)
    chosen = [n.removeprefix("bench_") for n in args.names] or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; choose from {', '.join(names)}")
    label = "smoke" if args.smoke else "quick" if args.quick else "full"
    config = {"smoke": Config.smoke, "quick": Config.quick, "full": Config}[label]()

    console = Console()
    if not console.is_terminal:  # a log or a pipe: do not wrap the table at 80 columns
        console = Console(width=150)
    load_before = os.getloadavg()[0]  # other work on the machine skews every figure
    started = time.perf_counter()
    results: list[Measurement] = []
    for name in chosen:
        with console.status(f"running bench_{name} ({label})"):
            results += run_module(name, config)
    elapsed = time.perf_counter() - started
    console.print(table(results, f"mangostore benchmarks ({label}, {elapsed:.0f} s)"))

    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": label,
        "config": dataclasses.asdict(config),
        "machine": machine(),
        "elapsed_s": round(elapsed, 1),
        "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
        "results": [dataclasses.asdict(m) for m in results],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
