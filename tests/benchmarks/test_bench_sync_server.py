"""The sync server benchmark still runs, at tiny sizes, against real ``serve-sync``
processes on loopback. No time or ratio is asserted.

The PostgreSQL parts read ``MANGOSTORE_TEST_PG_DSN`` and skip when it is unset.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import bench.__main__ as runner
import pytest
from bench import bench_sync_server
from bench.harness import Config
from tests.bench_helpers import assert_well_formed


def _pg_dsn() -> str:
    dsn = os.environ.get(bench_sync_server.PG_DSN_ENV, "")
    if not dsn:
        pytest.skip(
            f"PostgreSQL benchmarks need {bench_sync_server.PG_DSN_ENV} (for example "
            "postgresql://postgres@127.0.0.1:5432/test); it is unset"
        )
    return dsn


def test_sync_server_benchmark_runs_without_postgresql(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "sync_server" in runner.available()
    monkeypatch.delenv(bench_sync_server.PG_DSN_ENV, raising=False)
    results = runner.run_module("sync_server", Config.smoke())
    assert_well_formed(results)
    assert "PostgreSQL left out" in capsys.readouterr().out
    two = [m for m in results if m.group == "sync server, 50 commands, two devices"]
    assert [m.name for m in two] == [
        f"{part}, {via}"
        for part in ("a.sync.sync() (push)", "b.sync.sync() (pull and apply)", "both, end to end")
        for via in ("MemoryRelay", "serve-sync")
    ]
    # Each figure over the server is divided by the same calls through the memory relay.
    for base, server in zip(two[::2], two[1::2], strict=True):
        assert base.baseline is None
        assert server.baseline == base.name
    ingest = [m for m in results if m.group.startswith("sync server ingest, 8 devices")]
    assert [m.name for m in ingest] == [
        "SQLite store, 1 process: time per batch",
        "SQLite store, 1 process: push latency",
    ]
    assert ingest[1].calls > 1  # one sample per push
    join = [m for m in results if m.group.startswith("sync server join, 100 rows")]
    assert [m.name for m in join] == [
        "join + pull, replaying the whole history",
        "join + pull, from a snapshot plus the tail",
    ]
    assert join[1].baseline == join[0].name


def test_ingest_on_postgresql_is_measured_against_sqlite(tmp_path: Path) -> None:
    dsn = _pg_dsn()
    plan = dataclasses.replace(bench_sync_server.Plan.from_config(Config.smoke()), pg_dsn=dsn)
    results = bench_sync_server.bench_ingest(plan, tmp_path / "ingest")
    assert_well_formed(results)
    names = [m.name for m in results]
    for store in ("SQLite store, 1 process", "PostgreSQL store, 1 process"):
        assert f"{store}: time per batch" in names
    assert "PostgreSQL store, 2 processes: push latency" in names
    for m in results:
        if m.name.startswith("PostgreSQL"):
            assert m.baseline == "SQLite store, 1 process: " + m.name.split(": ")[1], m


def test_the_postgresql_schema_is_dropped_afterwards() -> None:
    import psycopg

    dsn = _pg_dsn()
    sql = "SELECT count(*) FROM pg_namespace WHERE nspname = %s"
    with bench_sync_server.pg_store(dsn) as url:
        options = unquote(parse_qs(urlsplit(url).query)["options"][0])
        schema = options.removeprefix("-csearch_path=")
        assert schema.startswith("bench_relay_")
        with psycopg.connect(dsn) as conn:
            assert conn.execute(sql, (schema,)).fetchone() == (1,)
    with psycopg.connect(dsn) as conn:
        assert conn.execute(sql, (schema,)).fetchone() == (0,)


def test_ingest_pushes_full_batches(tmp_path: Path) -> None:
    # A hundred states a batch, as a device sends them: not the one-state remainder.
    assert len(bench_sync_server.template_states(tmp_path / "template.db")) == 100
