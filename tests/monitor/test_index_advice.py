"""The performance report finds a missing composite index from the slow plans it saw.

The tell is a search of an index on the leading (equality) columns followed by a sort
of every row found: ``SEARCH command_history USING INDEX idx_command_history_user_id
(user_id=?)`` then ``USE TEMP B-TREE FOR ORDER BY``. The databases here lack the index
migration 15 adds for the query (it is dropped), and ``Settings.slow_query_ms = 0``
makes every run a slow one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import mangostore
from mangostore import Settings
from mangostore.monitor import PerformanceReport, Recommendation

#: What the report should advise for each query below, once the index is gone.
BY_TIME = (
    'CREATE INDEX "idx_command_history_user_id_timestamp" '
    'ON "command_history"("user_id", "timestamp")'
)
BY_TIME_AND_ID = (
    'CREATE INDEX "idx_command_history_user_id_timestamp_id" '
    'ON "command_history"("user_id", "timestamp", "id")'
)


def sort_advice(report: PerformanceReport) -> list[Recommendation]:
    return [
        r
        for r in report.recommendations
        if r.kind == "add_index" and "temporary B-tree for ORDER BY" in r.message
    ]


def open_db(slow_query_ms: int) -> mangostore.Database:
    return mangostore.open(
        ":memory:", encrypted=False, settings=Settings(slow_query_ms=slow_query_ms)
    )


@pytest.fixture
def db() -> Iterator[mangostore.Database]:
    database = open_db(0)
    yield database
    database.close()


def seed(db: mangostore.Database, *, drop: bool = True) -> str:
    ann = db.users.create(username="ann").id
    db.command_history.create_many(
        {"user_id": ann, "command": f"make test {n}", "timestamp": n} for n in range(200)
    )
    if drop:
        db.execute("DROP INDEX idx_command_history_user_time")
        db.execute("DROP INDEX idx_command_history_user_project_time")
    assert db.monitor is not None
    db.monitor.reset()
    return ann


def test_the_recent_commands_query_gets_its_index_recommended(db: mangostore.Database) -> None:
    ann = seed(db)
    for _ in range(3):
        db.command_history.list(user_id=ann, order_by="-timestamp", limit=20, use_cache=False)
    report = db.performance_report()
    [advice] = sort_advice(report)
    assert advice.action == BY_TIME
    assert advice.subject == "command_history"
    assert advice.severity == "warning"
    assert "idx_command_history_user_id (user_id=?)" in advice.message
    assert "ORDER BY timestamp DESC" in advice.message
    assert "3 runs" in advice.message
    [sort] = report.index_usage.sorts
    assert sort.equality_columns == ["user_id"]
    assert sort.order_columns == ["-timestamp"]
    assert any("USE TEMP B-TREE FOR ORDER BY" in line for line in sort.plan)

    # Following the advice removes the sort, and the advice with it.
    assert advice.action is not None
    db.execute(advice.action)
    db.command_history.list(user_id=ann, order_by="-timestamp", limit=20, use_cache=False)
    report = db.performance_report()
    assert sort_advice(report) == []
    assert report.index_usage.sorts == []


def test_a_tie_breaking_order_column_joins_the_index(db: mangostore.Database) -> None:
    ann = seed(db)
    db.command_history.recent(ann, limit=20, use_cache=False)
    assert [a.action for a in sort_advice(db.performance_report())] == [BY_TIME_AND_ID]


def test_mixed_directions_are_kept_in_the_index(db: mangostore.Database) -> None:
    ann = seed(db)
    db.query(
        "SELECT id FROM command_history WHERE user_id = ? ORDER BY timestamp DESC, id ASC LIMIT 5",
        (ann,),
        use_cache=False,
    )
    [advice] = sort_advice(db.performance_report())
    assert advice.action == (
        'CREATE INDEX "idx_command_history_user_id_timestamp_id" '
        'ON "command_history"("user_id", "timestamp", "id" DESC)'
    )


def test_nothing_is_advised_while_the_index_is_there(db: mangostore.Database) -> None:
    ann = seed(db, drop=False)
    db.command_history.recent(ann, limit=20, use_cache=False)
    db.command_history.list(user_id=ann, order_by="-timestamp", limit=20, use_cache=False)
    report = db.performance_report()
    assert sort_advice(report) == []
    assert report.index_usage.sorts == []


def test_fast_sorts_are_not_advised_against() -> None:
    with open_db(60_000) as db:
        ann = seed(db)
        db.command_history.list(user_id=ann, order_by="-timestamp", limit=20, use_cache=False)
        report = db.performance_report()
        assert len(report.index_usage.sorts) == 1  # seen ...
        assert sort_advice(report) == []  # ... but it was not slow


@pytest.mark.parametrize(
    "sql",
    [
        # One row per search (a unique index): there is nothing to sort.
        "SELECT id FROM command_history WHERE id = ? ORDER BY timestamp",
        # The order is not a column: no index serves it as such.
        "SELECT id FROM command_history WHERE user_id = ? ORDER BY length(command)",
        # The sort is for grouping, then ordering an aggregate.
        "SELECT exit_code, count(*) FROM command_history WHERE user_id = ? "
        "GROUP BY exit_code ORDER BY 2",
    ],
)
def test_sorts_no_index_can_serve_are_not_advised(db: mangostore.Database, sql: str) -> None:
    ann = seed(db)
    db.query(sql, (ann,), use_cache=False)
    report = db.performance_report()
    assert sort_advice(report) == []
