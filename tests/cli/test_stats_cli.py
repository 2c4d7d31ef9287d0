"""``mangostore stats``: rich tables, JSON and the Prometheus text format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.cli import cli, common


def run(args: list[str], *, passphrase: str | None = PASSPHRASE) -> Result:
    # Wide enough that rich does not fold index names across lines.
    env = {common.PASSPHRASE_ENV: passphrase, "COLUMNS": "250"}
    return CliRunner().invoke(cli, args, env=env)


@pytest.fixture
def vault(db_path: Path) -> Path:
    """An encrypted database with some rows and an extra index."""
    with mangostore.create(
        db_path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)
    ).db as db:
        uid = db.users.create(username="ann", email="ann@example.com").id
        db.command_history.create_many(
            {"user_id": uid, "command": f"ls {n}", "timestamp": n} for n in range(200)
        )
    return db_path


def test_stats_prints_tables(vault: Path) -> None:
    result = run(["stats", str(vault)])
    assert result.exit_code == 0, result.output
    for title in ("mangostore stats", "Tables and their indexes", "Caches", "Recommendations"):
        assert title in result.stdout
    assert "command_history" in result.stdout
    assert "PRAGMA optimize" in result.stdout  # 200 rows and no statistics


def test_stats_all_lists_every_table_and_index(vault: Path) -> None:
    result = run(["stats", "--all", str(vault)])
    assert result.exit_code == 0, result.output
    for title in ("Disk usage", "Indexes, by table"):
        assert title in result.stdout
    assert "idx_command_history_timestamp" in result.stdout
    assert "schema_migrations" in result.stdout


def test_stats_json_is_the_report(vault: Path) -> None:
    result = run(["stats", "--json", str(vault)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"timestamp", "query_performance", "disk_usage", "index_usage"}
    objects = {o["name"]: o for o in data["disk_usage"]["objects"]}
    assert objects["command_history"]["rows"] == 200
    assert {r["kind"] for r in data["recommendations"]} >= {"analyze"}


def test_stats_prometheus_output_parses(vault: Path) -> None:
    result = run(["stats", "--prometheus", str(vault)])
    assert result.exit_code == 0, result.output
    families = {f.name: f for f in text_string_to_metric_families(result.stdout)}
    for name in (
        "mangostore_statement_runs",
        "mangostore_statement_latency_seconds",
        "mangostore_cache_hits",
        "mangostore_database_bytes",
        "mangostore_freelist_ratio",
        "mangostore_object_bytes",
        "mangostore_index_uses",
        "mangostore_recommendations",
    ):
        assert name in families, name
    sizes = {s.labels["name"]: s.value for s in families["mangostore_object_bytes"].samples}
    assert sizes["command_history"] > 0
    [database] = families["mangostore_database_bytes"].samples
    assert database.value == vault.stat().st_size
    tiers = {s.labels["tier"] for s in families["mangostore_cache_hits"].samples}
    assert tiers == {"memory", "disk", "query"}


def test_stats_of_an_unencrypted_database(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    mangostore.create(path, encrypted=False).db.close()
    assert run(["stats", "--plain", str(path)], passphrase=None).exit_code == 0


def test_stats_refuses_two_formats(vault: Path) -> None:
    result = run(["stats", "--json", "--prometheus", str(vault)])
    assert result.exit_code == 2


def test_stats_with_a_wrong_passphrase_is_one_line(vault: Path) -> None:
    result = run(["stats", str(vault)], passphrase="wrong")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.splitlines()) == 1
