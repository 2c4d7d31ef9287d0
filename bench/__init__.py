"""mangostore benchmarks: each ``bench_<name>`` module times the library against the raw engine.

Run them with ``python -m bench`` (see ``bench/__main__.py`` and docs/performance.md).
A benchmark module exposes ``run(config: bench.harness.Config) -> list[Measurement]``.
"""
