"""Snapshots compare logical content; the timing helpers report and check plans."""

from __future__ import annotations

import pytest

import mangostore
from mangostore.testing import (
    Factory,
    assert_query_time,
    assert_uses_index,
    measure,
    query_plan,
    snapshot,
)

VOLATILE = {"id", "created_at", "updated_at", "timestamp", "user_id", "granted_at"}


def test_equal_content_gives_equal_snapshots_and_a_change_is_named(
    mango_make: Factory, mango_encrypted_db: mangostore.Database
) -> None:
    other = Factory(mango_encrypted_db)
    for make in (mango_make, other):
        make.user(username="ann", email="ann@example.org", security_profile={"mfa": True})
    tables = ["users"]
    first = snapshot(mango_make.db, tables=tables, ignore=VOLATILE)
    second = snapshot(mango_encrypted_db, tables=tables, ignore=VOLATILE)
    assert first == second  # the encrypted column compares as plaintext
    assert first.rows("users")[0]["security_profile"] == {"mfa": True}
    other.user(username="bob", email=None)
    diff = first.diff(snapshot(mango_encrypted_db, tables=tables, ignore=VOLATILE))
    assert len(diff) == 1
    assert diff[0].startswith("+ users: ")
    assert '"bob"' in diff[0]


def test_a_snapshot_covers_every_real_table_and_is_stable_json(mango_make: Factory) -> None:
    mango_make.kg_embedding()
    whole = snapshot(mango_make.db)
    assert {"kg_embeddings", "users"} <= set(whole.tables)
    assert "schema_migrations" not in whole.tables
    assert not any(name.startswith("kg_search_index") for name in whole.tables)
    vector = whole.rows("kg_embeddings")[0]["vector_data"]
    assert vector == {"base64": "AAAAAAAAAAAAAAAAAAAAAA=="}
    assert whole.to_json() == snapshot(mango_make.db).to_json()


def test_measure_reports_ordered_statistics(mango_make: Factory) -> None:
    timing = measure("SELECT count(*) FROM users", 20, db=mango_make.db)
    assert timing.iterations == 20
    assert timing.min_ms <= timing.median_ms <= timing.p95_ms <= timing.max_ms
    assert timing.min_ms <= timing.mean_ms <= timing.max_ms
    assert "(20 runs)" in timing.summary()


def test_a_fast_enough_query_passes(mango_make: Factory) -> None:
    timing = assert_query_time("SELECT 1", 60_000, 5, db=mango_make.db)
    assert timing.iterations == 5


def test_a_slow_query_fails_with_its_statistics_and_plan(mango_make: Factory) -> None:
    mango_make.command()
    sql = "SELECT count(*) FROM command_history WHERE output LIKE ?"
    with pytest.raises(AssertionError) as failed:
        # Nothing takes less than no time: the limit cannot be met.
        assert_query_time(sql, 0, 3, db=mango_make.db, params=["%x%"])
    message = str(failed.value)
    assert message.startswith("query too slow: mean ")
    for part in ("min ", "p95 ", "max ", "(3 runs)", "sql: SELECT count(*)", "plan:"):
        assert part in message
    assert "command_history" in message.split("plan:")[1]


def test_a_slow_callable_is_named(mango_make: Factory) -> None:
    def list_users() -> object:
        return mango_make.db.users.list()

    with pytest.raises(AssertionError, match=r"callable: .*list_users"):
        assert_query_time(list_users, 0, 2, statistic="p95")


def test_bad_arguments_are_refused(mango_make: Factory) -> None:
    with pytest.raises(TypeError, match="db="):
        measure("SELECT 1")
    with pytest.raises(ValueError, match="at least 1"):
        measure("SELECT 1", 0, db=mango_make.db)
    with pytest.raises(ValueError, match="statistic"):
        assert_query_time("SELECT 1", 1, db=mango_make.db, statistic="average")  # type: ignore[arg-type]


def test_assert_uses_index_passes_an_indexed_query_and_fails_a_scan(mango_make: Factory) -> None:
    db = mango_make.db
    user = mango_make.user()
    plan = assert_uses_index(db, "SELECT * FROM projects WHERE user_id = ?", [user.id])
    assert any("USING" in line for line in plan)
    with pytest.raises(AssertionError, match="reads the whole table: SCAN command_history"):
        assert_uses_index(db, "SELECT * FROM command_history WHERE output = ?", ["x"])
    with pytest.raises(AssertionError, match="does not use the index no_such_index"):
        assert_uses_index(db, "SELECT * FROM users WHERE id = ?", ["x"], index="no_such_index")
    assert query_plan(db, "SELECT 1") in ([], ["SCAN CONSTANT ROW"])
