"""``db.performance_report()`` after known workloads: plans, indexes, disk, recommendations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.monitor import PerformanceReport, Recommendation

SCAN_SQL = "SELECT id FROM command_history WHERE working_directory = ? AND exit_code = ?"

pytestmark = pytest.mark.database("plain_db")


def recommendations(report: PerformanceReport, kind: str) -> list[Recommendation]:
    return [r for r in report.recommendations if r.kind == kind]


@pytest.fixture
def owner(db: mangostore.Database) -> str:
    uid = db.users.create(username="ann", email="ann@example.com").id
    db.command_history.create_many(
        {
            "user_id": uid,
            "command": f"make test {n}",
            "exit_code": n % 3,
            "working_directory": f"/src/p{n % 10}",
            "timestamp": n,
        }
        for n in range(300)
    )
    return uid


def test_a_scanning_query_appears_with_its_plan_and_an_index_to_add(
    db: mangostore.Database, owner: str
) -> None:
    for n in range(20):
        db.query(SCAN_SQL, (f"/src/p{n % 10}", n % 3), use_cache=False)
    report = db.performance_report()
    [scan] = [s for s in report.index_usage.scans if s.shape == SCAN_SQL]
    assert scan.table == "command_history"
    assert scan.executions == 20
    assert set(scan.equality_columns) == {"working_directory", "exit_code"}
    assert any(line.strip() == "SCAN command_history" for line in scan.plan)
    [statement] = [s for s in report.query_performance.statements if s.shape == SCAN_SQL]
    assert statement.plan == scan.plan
    assert statement.count == 20
    assert statement.rows == 20 * 10
    [advice] = [r for r in recommendations(report, "add_index") if r.subject == "command_history"]
    assert advice.action is not None
    assert advice.action.startswith('CREATE INDEX "idx_command_history_')
    assert "300 rows" in advice.message
    assert "20 runs" in advice.message

    # Following the advice removes the scan: the plans are made afresh for each report.
    db.execute(advice.action)
    report = db.performance_report()
    assert not [s for s in report.index_usage.scans if s.shape == SCAN_SQL]
    [statement] = [s for s in report.query_performance.statements if s.shape == SCAN_SQL]
    assert any("USING INDEX idx_command_history_" in line for line in statement.plan)
    assert not [r for r in recommendations(report, "add_index") if r.subject == "command_history"]


def test_a_range_filter_is_put_after_the_equalities(db: mangostore.Database, owner: str) -> None:
    sql = "SELECT id FROM command_history WHERE execution_time > ? AND working_directory = ?"
    db.query(sql, (5, "/src/p1"), use_cache=False)
    [scan] = [s for s in db.performance_report().index_usage.scans if s.shape == sql]
    assert scan.suggested_index == (
        'CREATE INDEX "idx_command_history_working_directory_execution_time" '
        'ON "command_history"("working_directory", "execution_time")'
    )


def test_a_scan_without_a_filter_is_listed_without_advice(
    db: mangostore.Database, owner: str
) -> None:
    db.query("SELECT count(*) FROM command_history WHERE length(command) > 0", use_cache=False)
    report = db.performance_report()
    scans = [s for s in report.index_usage.scans if "length(command)" in s.shape]
    assert scans
    assert scans[0].suggested_index is None
    assert not [r for r in report.recommendations if r.subject == "command_history"]


def test_indexes_used_and_unused(db: mangostore.Database, owner: str) -> None:
    ids = [r[0] for r in db.query("SELECT id FROM command_history")]
    for cid in ids[:150]:
        db.command_history.get(cid, use_cache=False)
    report = db.performance_report()
    usage = {i.name: i for i in report.index_usage.indexes}
    assert usage["sqlite_autoindex_command_history_1"].uses >= 150
    assert "idx_command_history_timestamp" in report.index_usage.unused
    dropped = {r.subject for r in recommendations(report, "drop_unused_index")}
    assert "idx_command_history_timestamp" in dropped
    assert "idx_command_history_command_type" in dropped
    # Never an index that serves a foreign key or enforces uniqueness.
    assert "idx_command_history_user_id" not in dropped
    assert "sqlite_autoindex_command_history_1" not in dropped
    assert not any(name.startswith("idx_users") for name in dropped)  # users was not read


def test_unused_indexes_need_enough_runs_before_advice(db: mangostore.Database, owner: str) -> None:
    assert db.monitor is not None
    db.monitor.reset()
    for _ in range(20):  # 60 statements: each read of an in-memory database is three
        db.command_history.list(limit=1, use_cache=False)
    assert not recommendations(db.performance_report(), "drop_unused_index")


def test_vacuum_is_recommended_when_the_freelist_is_large(db: mangostore.Database) -> None:
    uid = db.users.create(username="ann", email="ann@example.com").id
    db.command_history.create_many(
        {"user_id": uid, "command": "x" * 2_000, "timestamp": n} for n in range(400)
    )
    assert not recommendations(db.performance_report(), "vacuum")
    db.execute("DELETE FROM command_history")
    report = db.performance_report()
    assert report.disk_usage.freelist_ratio > 0.25
    [advice] = recommendations(report, "vacuum")
    assert advice.action == "VACUUM"
    with db.store.idle_connection() as conn:  # VACUUM cannot run in a transaction
        conn.execute("VACUUM")
    assert not recommendations(db.performance_report(), "vacuum")


def test_analyze_is_recommended_while_statistics_are_missing(
    db: mangostore.Database, owner: str
) -> None:
    report = db.performance_report()
    assert not report.index_usage.statistics
    [advice] = recommendations(report, "analyze")
    assert "300 rows" in advice.message
    db.execute("ANALYZE")
    report = db.performance_report()
    assert report.index_usage.statistics
    assert not recommendations(report, "analyze")


def test_size_approaching_the_limit(db_path: Path) -> None:
    settings = Settings(kdf=FAST_KDF, max_database_bytes=64 * 1024)
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=settings).db as db:
        report = db.performance_report()
    [advice] = recommendations(report, "size_limit")
    assert advice.severity == "critical"
    assert report.disk_usage.limit_ratio > 1
    assert report.disk_usage.wal_bytes > 0


def test_a_low_hit_rate_is_reported_with_its_cause(db: mangostore.Database, owner: str) -> None:
    for n in range(120):
        db.query("SELECT command FROM command_history WHERE timestamp = ?", (n,))
    report = db.performance_report()
    [advice] = recommendations(report, "cache_hit_rate")
    assert advice.subject == "query"
    assert "0% of 120 lookups" in advice.message
    query_tier = next(t for t in report.cache_performance.tiers if t.tier == "query")
    assert (query_tier.hits, query_tier.misses) == (0, 120)
    for n in range(1_000):
        db.query("SELECT command FROM command_history WHERE timestamp = ?", (n % 5,))
    assert not recommendations(db.performance_report(), "cache_hit_rate")


def test_disk_usage_covers_every_table_and_index(db: mangostore.Database, owner: str) -> None:
    disk = db.performance_report().disk_usage
    assert disk.method in ("dbstat", "estimate")
    names = {o.name: o for o in disk.objects}
    assert names["command_history"].kind == "table"
    assert names["command_history"].rows == 300
    assert names["idx_command_history_timestamp"].kind == "index"
    assert names["idx_command_history_timestamp"].table == "command_history"
    assert names["command_history"].bytes > names["users"].bytes
    used = (disk.page_count - disk.freelist_count) * disk.page_size
    assert sum(o.bytes for o in disk.objects) == pytest.approx(used, rel=0.05)


def test_the_report_is_json_with_the_designed_fields(db: mangostore.Database, owner: str) -> None:
    db.query(SCAN_SQL, ("/src/p1", 1))
    data = json.loads(db.performance_report().to_json())
    assert set(data) == {
        "timestamp",
        "query_performance",
        "cache_performance",
        "disk_usage",
        "index_usage",
        "recommendations",
    }
    assert data["query_performance"]["total_queries"] > 0
    assert {t["tier"] for t in data["cache_performance"]["tiers"]} == {"memory", "disk", "query"}
    assert data["disk_usage"]["total_bytes"] == (
        data["disk_usage"]["file_bytes"] + data["disk_usage"]["wal_bytes"]
    )


def test_the_report_does_not_count_its_own_statements(db: mangostore.Database, owner: str) -> None:
    assert db.monitor is not None
    db.monitor.reset()
    db.performance_report()
    assert db.performance_report().query_performance.total_queries == 0
