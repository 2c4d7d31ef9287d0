"""Statement timing per shape, literal normalisation and the slow query log."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import mangostore
from mangostore import Settings
from mangostore.clock import ManualClock
from mangostore.monitor import Monitor, normalize
from mangostore.monitor.normalize import parameter_skeleton, tokenize


@pytest.mark.parametrize(
    ("sql", "shape"),
    [
        ("SELECT * FROM t WHERE a = 'x''y'", "SELECT * FROM t WHERE a = ?"),
        ("select 1, 2.5e-3, 0x1F, x'00ff', -7", "select ?, ..., - ?"),
        ("SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (?, ...)"),
        ("SELECT * FROM t WHERE id IN (?, ?)", "SELECT * FROM t WHERE id IN (?, ...)"),
        ("SELECT  a\n\tFROM t -- note\n WHERE b = 1 /* why */", "SELECT a FROM t WHERE b = ?"),
        (
            'SELECT "it\'s" FROM [odd name] WHERE `c` = :name',
            'SELECT "it\'s" FROM [odd name] WHERE `c` = :name',
        ),
        ("SELECT count(*) FROM t LIMIT 10 OFFSET 20", "SELECT count(*) FROM t LIMIT ? OFFSET ?"),
        ("SELECT 1_000_000, 12abc", "SELECT ?, 12abc"),
        ("SELECT j ->> '$.a' FROM t WHERE x = ?3", "SELECT j ->> ? FROM t WHERE x = ?3"),
    ],
)
def test_literals_are_normalised_away(sql: str, shape: str) -> None:
    assert normalize(sql) == shape


def test_statements_differing_only_in_literals_share_a_shape() -> None:
    assert normalize("SELECT * FROM users WHERE name = 'ann'") == normalize(
        "SELECT  *  FROM users WHERE name='bob'"
    )


def test_tokens_follow_sqlite_rules_for_quotes_and_comments() -> None:
    kinds = [(t.kind, t.text) for t in tokenize('SELECT \'a--b\' /* x */ , "c""d" -- e')]
    assert kinds == [("word", "SELECT"), ("literal", "?"), ("op", ","), ("ident", '"c""d"')]


def test_parameter_skeletons_fit_the_placeholders() -> None:
    assert parameter_skeleton("SELECT ?, ?3, ?") == (None,) * 4
    assert parameter_skeleton("SELECT :a, @b, :a") == {"a": None, "b": None}
    assert parameter_skeleton("SELECT :a, ?") is None


def test_record_keeps_count_total_percentiles_max_and_rows() -> None:
    monitor = Monitor(slow_query_ms=100)
    for ms in range(1, 101):
        monitor.record(f"SELECT * FROM t WHERE id = {ms}", ms * 1_000_000, 1, None)
    monitor.record_error("SELECT * FROM t WHERE id = 0", 5)
    [stats] = monitor.statements()
    assert stats.shape == "SELECT * FROM t WHERE id = ?"
    assert (stats.count, stats.errors, stats.rows) == (100, 1, 100)
    assert stats.total_ms == pytest.approx(5050)
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.p50_ms == pytest.approx(50)
    assert stats.p95_ms == pytest.approx(95)
    assert stats.max_ms == pytest.approx(100)
    assert monitor.slow_runs() == 1  # only the 100 ms run reaches the threshold


def test_the_slow_log_keeps_the_shape_and_the_plan_never_the_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    with mangostore.open(
        ":memory:", encrypted=False, settings=Settings(slow_query_ms=0), clock=clock
    ) as db:
        user = db.users.create(username="ann-secret", email="ann@example.com")
        db.monitor.reset()  # type: ignore[union-attr]
        with caplog.at_level(logging.WARNING, logger="mangostore.slow_queries"):
            db.query(
                "SELECT * FROM users WHERE username = 'ann-secret' AND id = ?",
                (user.id,),
                use_cache=False,
            )
        slow = db.monitor.slow_queries()  # type: ignore[union-attr]
    [entry] = [q for q in slow if "FROM users" in q.shape]
    assert entry.shape == "SELECT * FROM users WHERE username = ? AND id = ?"
    assert entry.at_ms == clock.now_ms()
    assert entry.rows == 1
    assert any("USING INDEX" in line for line in entry.plan)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "plan: SEARCH users" in logged
    assert "ann-secret" not in logged
    assert user.id not in logged


@pytest.fixture
def monitored() -> Iterator[mangostore.Database]:
    db = mangostore.open(":memory:", encrypted=False)
    yield db
    db.close()


def shapes(db: mangostore.Database) -> dict[str, object]:
    assert db.monitor is not None
    return {s.shape: s for s in db.monitor.statements()}


def test_every_statement_is_timed_whatever_runs_it(monitored: mangostore.Database) -> None:
    db = monitored
    user = db.users.create(username="ann", email="a@example.com")
    db.users.get(user.id, use_cache=False)
    db.users.list(use_cache=False)
    db.query("SELECT count(*) FROM users", use_cache=False)
    db.execute("UPDATE users SET email = ? WHERE id = ?", ("b@example.com", user.id))
    with db.store.reading() as conn:  # as services do
        rows = list(conn.execute("SELECT id FROM users"))
    assert len(rows) == 1
    seen = shapes(db)
    assert "SELECT count(*) FROM users" in seen
    assert "UPDATE users SET email = ? WHERE id = ?" in seen
    assert "SELECT id FROM users" in seen
    assert any(s.startswith('INSERT INTO "users"') for s in seen)
    assert any(s.startswith("SELECT") and "WHERE id = ?" in s for s in seen)
    assert "BEGIN IMMEDIATE" in seen
    assert "COMMIT" in seen


def test_rows_are_counted_however_they_are_fetched(monitored: mangostore.Database) -> None:
    db = monitored
    db.users.create_many({"username": f"u{n}", "email": f"u{n}@example.com"} for n in range(5))
    assert db.monitor is not None
    db.monitor.reset()
    with db.store.reading() as conn:
        conn.execute("SELECT id FROM users WHERE 1").fetchall()
        conn.execute("SELECT id FROM users WHERE 2").fetchone()
        list(conn.execute("SELECT id FROM users WHERE 3"))
        conn.execute("SELECT id FROM users WHERE 4").fetchmany(2)
        conn.execute("SELECT id FROM users WHERE 5")  # never fetched
    stats = shapes(db)["SELECT id FROM users WHERE ?"]
    assert stats.count == 5  # type: ignore[attr-defined]
    assert stats.rows == 5 + 1 + 5 + 2 + 0  # type: ignore[attr-defined]


def test_a_failing_statement_counts_as_an_error(monitored: mangostore.Database) -> None:
    db = monitored
    with pytest.raises(mangostore.errors.QueryError):
        db.query("SELECT no_such_column FROM users", use_cache=False)
    assert shapes(db)["SELECT no_such_column FROM users"].errors == 1  # type: ignore[attr-defined]


def test_the_statistics_start_when_the_database_is_open(monitored: mangostore.Database) -> None:
    assert not any(s.startswith("CREATE") for s in shapes(monitored))


def test_monitoring_can_be_off() -> None:
    with mangostore.open(
        ":memory:", encrypted=False, settings=Settings(monitor_queries=False)
    ) as db:
        db.query("SELECT 1")
        assert db.monitor is None
        assert db.performance_report().query_performance.total_queries == 0
