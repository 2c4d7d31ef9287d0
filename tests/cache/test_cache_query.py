"""The query cache never serves stale data: exact invalidation on every write path.

Every test reads through the cache first (so a stale entry would exist), writes by
one route, and reads again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.cache import VIRTUAL_TAG
from mangostore.errors import QueryError

NAME_SQL = "SELECT username FROM users WHERE id = ?"

pytestmark = pytest.mark.database("memory_db", "encrypted_db")


def name_of(db: mangostore.Database, user_id: str) -> str:
    return str(db.query(NAME_SQL, (user_id,))[0][0])


def query_stats(db: mangostore.Database) -> tuple[int, int]:
    stats = db.cache.stats()["query"]
    return stats.hits, stats.misses


@pytest.fixture
def ann(db: mangostore.Database) -> str:
    return db.users.create(username="ann", email="ann@example.com").id


# -- hits -----------------------------------------------------------------------------------


def test_a_repeated_query_is_answered_by_the_cache(db: mangostore.Database, ann: str) -> None:
    before = query_stats(db)
    assert name_of(db, ann) == "ann"
    assert name_of(db, ann) == "ann"
    hits, misses = query_stats(db)
    assert (hits - before[0], misses - before[1]) == (1, 1)


def test_a_hit_returns_a_new_list_each_time(db: mangostore.Database, ann: str) -> None:
    first = db.query(NAME_SQL, (ann,))
    first.clear()
    assert len(db.query(NAME_SQL, (ann,))) == 1


def test_use_cache_false_neither_reads_nor_fills_the_cache(
    db: mangostore.Database, ann: str
) -> None:
    before = query_stats(db)
    for _ in range(3):
        assert db.query(NAME_SQL, (ann,), use_cache=False)[0][0] == "ann"
    assert query_stats(db) == before
    assert db.cache.stats()["query"].entries == 0


def test_caching_can_be_off_by_default_and_asked_for(tmp_path: Path) -> None:
    settings = Settings(kdf=FAST_KDF, cache_queries=False)
    with mangostore.open(":memory:", encrypted=False, settings=settings) as db:
        user = db.users.create(username="ann", email="a@example.com")
        db.query(NAME_SQL, (user.id,))
        assert db.cache.stats()["query"].lookups == 0
        db.query(NAME_SQL, (user.id,), use_cache=True)
        db.query(NAME_SQL, (user.id,), use_cache=True)
        assert db.cache.stats()["query"].hits == 1


def test_parameters_of_different_types_are_different_keys(db: mangostore.Database) -> None:
    assert db.query("SELECT typeof(?)", (1,))[0][0] == "integer"
    assert db.query("SELECT typeof(?)", (1.0,))[0][0] == "real"
    assert db.query("SELECT typeof(:v)", {"v": "x"})[0][0] == "text"


def test_unhashable_parameters_bypass_the_cache(db: mangostore.Database) -> None:
    assert db.query("SELECT length(?)", (bytearray(b"abc"),))[0][0] == 3
    assert db.cache.stats()["query"].bypassed >= 1


# -- the table sets come from the authorizer ----------------------------------------------------


def test_the_tables_read_come_from_sqlite(db: mangostore.Database, ann: str) -> None:
    query = db.store.instruments.query
    assert query is not None
    sql = (
        "SELECT u.username, (SELECT count(*) FROM command_history) FROM users u "
        "LEFT JOIN projects p ON p.user_id = u.id WHERE u.id = ?"
    )
    db.query(sql, (ann,))
    assert query.tables_read(sql) == {"users", "projects", "command_history"}


def test_a_view_is_tagged_with_the_tables_under_it(db: mangostore.Database, ann: str) -> None:
    db.execute(
        "CREATE VIEW user_projects AS SELECT u.username, p.name FROM users u "
        "JOIN projects p ON p.user_id = u.id"
    )
    db.projects.create(user_id=ann, name="alpha", path="/a")
    sql = "SELECT name FROM user_projects WHERE username = ?"
    assert [r[0] for r in db.query(sql, ("ann",))] == ["alpha"]
    query = db.store.instruments.query
    assert query is not None
    assert {"users", "projects"} <= (query.tables_read(sql) or set())
    db.projects.create(user_id=ann, name="beta", path="/b")
    assert sorted(r[0] for r in db.query(sql, ("ann",))) == ["alpha", "beta"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT random()",
        "SELECT datetime('now')",
        "SELECT count(*) FROM pragma_table_list",
        "SELECT changes()",
    ],
)
def test_statements_whose_result_changes_by_itself_are_not_cached(
    db: mangostore.Database, sql: str
) -> None:
    db.query(sql)
    db.query(sql)
    query = db.store.instruments.query
    assert query is not None
    assert query.tables_read(sql) is None
    assert db.cache.stats()["query"].hits == 0


def test_random_is_really_random_each_time(db: mangostore.Database) -> None:
    values = {db.query("SELECT random()")[0][0] for _ in range(5)}
    assert len(values) > 1


# -- writes, same thread -------------------------------------------------------------------------

WRITES: dict[str, Callable[[mangostore.Database, str], None]] = {
    "repository update": lambda db, uid: db.users.update(uid, username="new"),
    "raw UPDATE": lambda db, uid: db.execute(
        "UPDATE users SET username = 'new' WHERE id = ?", (uid,)
    ),
    "update in a transaction": lambda db, uid: _in_transaction(db, uid),
    "update_many batch": lambda db, uid: db.users.update_many([(uid, {"username": "new"})]),
    "INSERT OR REPLACE": lambda db, uid: db.execute(
        "INSERT OR REPLACE INTO users (id, username, email, created_at, updated_at) "
        "VALUES (?, 'new', 'n@example.com', 1, 1)",
        (uid,),
    ),
    "executemany": lambda db, uid: _executemany(db, uid),
    "autocommit on the writer connection": lambda db, uid: _autocommit(db, uid),
    "script on the writer connection": lambda db, uid: _script(db, uid),
}


def _in_transaction(db: mangostore.Database, uid: str) -> None:
    with db.transaction():
        db.execute("UPDATE users SET email = 'x@example.com' WHERE id = ?", (uid,))
        with db.transaction():  # a savepoint
            db.users.update(uid, username="new")


def _executemany(db: mangostore.Database, uid: str) -> None:
    with db.store.transaction() as conn:
        conn.executemany("UPDATE users SET username = ? WHERE id = ?", [("new", uid)])


def _autocommit(db: mangostore.Database, uid: str) -> None:
    with db.store.idle_connection() as conn:
        conn.execute("UPDATE users SET username = 'new' WHERE id = ?", (uid,))


def _script(db: mangostore.Database, uid: str) -> None:
    with db.store.idle_connection() as conn:
        conn.executescript(f"UPDATE users SET username = 'new' WHERE id = '{uid}';")


@pytest.mark.parametrize("route", sorted(WRITES))
def test_no_read_after_a_committed_write_returns_the_old_value(
    db: mangostore.Database, ann: str, route: str
) -> None:
    assert name_of(db, ann) == "ann"
    assert db.users.get(ann).username == "ann"
    assert db.users.count(username="ann") == 1
    WRITES[route](db, ann)
    assert name_of(db, ann) == "new"
    assert db.users.get(ann).username == "new"
    assert db.users.count(username="ann") == 0


def test_repository_reads_are_cached_and_invalidated(db: mangostore.Database, ann: str) -> None:
    db.projects.create(user_id=ann, name="alpha", path="/a")
    reads = {
        "get": lambda: db.users.get(ann).username,
        "list": lambda: [p.name for p in db.projects.list(user_id=ann)],
        "count": lambda: db.projects.count(user_id=ann),
        "exists": lambda: db.projects.exists(name="beta"),
        "find_by_user": lambda: [p.name for p in db.projects.find_by_user(ann)],
    }
    first = {name: read() for name, read in reads.items()}
    hits = query_stats(db)[0]
    assert {name: read() for name, read in reads.items()} == first
    assert query_stats(db)[0] - hits == len(reads)
    db.projects.create(user_id=ann, name="beta", path="/b")
    db.users.update(ann, username="anne")
    after = {name: read() for name, read in reads.items()}
    assert after == {
        "get": "anne",
        "list": ["alpha", "beta"],
        "count": 2,
        "exists": True,
        "find_by_user": ["alpha", "beta"],
    }


def test_repository_reads_can_opt_out(db: mangostore.Database, ann: str) -> None:
    before = query_stats(db)
    db.users.get(ann, use_cache=False)
    db.users.list(use_cache=False)
    db.users.count(use_cache=False)
    db.users.exists(ann, use_cache=False)
    assert query_stats(db) == before


def test_a_write_to_another_table_keeps_the_entry(db: mangostore.Database, ann: str) -> None:
    name_of(db, ann)
    db.projects.create(user_id=ann, name="alpha", path="/a")
    hits = query_stats(db)[0]
    assert name_of(db, ann) == "ann"
    assert query_stats(db)[0] == hits + 1


def test_writes_by_triggers_invalidate_what_they_write(db: mangostore.Database, ann: str) -> None:
    generation_sql = "SELECT generation FROM access_generation WHERE id = 1"
    before = db.query(generation_sql)[0][0]
    # permissions_bump_generation_insert updates access_generation.
    db.permissions.create(user_id=ann, resource_type="project", permission_type="read")
    assert db.query(generation_sql)[0][0] == before + 1


def test_writes_to_a_full_text_index_by_triggers_and_cascades(
    db: mangostore.Database, ann: str
) -> None:
    sql = "SELECT count(*) FROM ai_memory_fts WHERE ai_memory_fts MATCH ?"
    assert db.query(sql, ("zsh",))[0][0] == 0
    memory = db.ai_memory.create(
        user_id=ann, memory_type="preference", key_name="shell", value_data={"name": "zsh"}
    )
    # ai_memory_after_insert writes ai_memory_fts.
    assert db.query(sql, ("zsh",))[0][0] == 1
    query = db.store.instruments.query
    assert query is not None
    assert VIRTUAL_TAG in (query.tables_read(sql) or set())
    # ON DELETE CASCADE to ai_memory_state, whose trigger deletes the FTS row.
    db.ai_memory.delete(memory.id)
    assert db.query(sql, ("zsh",))[0][0] == 0


def test_a_shadow_table_follows_writes_to_its_virtual_table(
    db: mangostore.Database, ann: str
) -> None:
    # The FTS module writes ai_memory_fts_docsize itself, unseen by the authorizer.
    sql = "SELECT count(*) FROM ai_memory_fts_docsize"
    before = db.query(sql)[0][0]
    db.ai_memory.create(user_id=ann, memory_type="fact", key_name="k", value_data="v")
    assert db.query(sql)[0][0] == before + 1


def test_sqlite_internal_tables_are_not_cached(db: mangostore.Database) -> None:
    db.execute("ANALYZE")
    sql = "SELECT count(*) FROM sqlite_stat1"
    db.query(sql)
    query = db.store.instruments.query
    assert query is not None
    assert query.tables_read(sql) is None


def test_a_schema_change_flushes_the_cache(db: mangostore.Database, ann: str) -> None:
    name_of(db, ann)
    db.execute("CREATE TABLE scratch (x)")
    assert db.cache.stats()["query"].entries == 0
    db.execute("INSERT INTO scratch VALUES (1)")
    assert [tuple(r) for r in db.query("SELECT x FROM scratch")] == [(1,)]
    db.execute("ALTER TABLE scratch ADD COLUMN y DEFAULT 2")
    assert [tuple(r) for r in db.query("SELECT * FROM scratch")] == [(1, 2)]


def test_a_rolled_back_write_is_never_seen(db: mangostore.Database, ann: str) -> None:
    seen: list[str] = []

    def write_read_and_fail() -> None:
        with db.transaction():
            db.users.update(ann, username="ghost")
            # Inside the transaction a read sees its own write and is not cached.
            seen.extend([name_of(db, ann), db.users.get(ann).username])
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        write_read_and_fail()
    assert seen == ["ghost", "ghost"]
    assert name_of(db, ann) == "ann"
    assert db.users.get(ann).username == "ann"


def test_a_failed_commit_invalidates_nothing_and_caches_nothing(
    db: mangostore.Database, ann: str
) -> None:
    name_of(db, ann)
    with pytest.raises(QueryError):
        db.execute("UPDATE users SET username = 'x' WHERE no_such_column = 1")
    assert name_of(db, ann) == "ann"


def test_manager_invalidation_reaches_the_query_tier(db: mangostore.Database, ann: str) -> None:
    name_of(db, ann)
    db.query("SELECT count(*) FROM projects")
    assert db.cache.invalidate_tags(["users"])["query"] == 1
    assert db.cache.stats()["query"].entries == 1
    assert db.cache.invalidate_pattern("SELECT count(*) FROM *")["query"] == 1
    assert db.cache.stats()["query"].entries == 0


# -- another thread --------------------------------------------------------------------------------


def test_no_read_in_another_thread_returns_a_value_older_than_the_last_commit(
    db: mangostore.Database, ann: str
) -> None:
    committed = [0]
    stop = threading.Event()
    failures: list[str] = []

    def writer() -> None:
        for n in range(1, 201):
            db.execute("UPDATE users SET username = ? WHERE id = ?", (f"v{n}", ann))
            committed[0] = n  # after the write's transaction returned
        stop.set()

    def reader() -> None:
        while not stop.is_set():
            floor = committed[0]
            seen = name_of(db, ann)
            value = 0 if seen == "ann" else int(seen[1:])
            if value < floor:
                failures.append(f"read {seen} after v{floor} was committed")

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for thread in readers:
        thread.start()
    writer()
    for thread in readers:
        thread.join()
    assert not failures, failures[:5]
    assert name_of(db, ann) == "v200"
    assert db.cache.stats()["query"].hits > 0


# -- another connection, another process ------------------------------------------------


def test_a_write_through_another_handle_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    settings = Settings(kdf=FAST_KDF)
    with (
        mangostore.create(path, passphrase=PASSPHRASE, settings=settings).db as first,
        mangostore.open(path, passphrase=PASSPHRASE, settings=settings) as second,
    ):
        uid = first.users.create(username="ann", email="a@example.com").id
        assert name_of(first, uid) == "ann"
        assert name_of(second, uid) == "ann"
        second.users.update(uid, username="bob")
        assert name_of(first, uid) == "bob"
        assert first.users.get(uid).username == "bob"
        first.users.update(uid, username="cat")
        assert name_of(second, uid) == "cat"


_CHILD = textwrap.dedent(
    """
    import sys
    import mangostore
    from mangostore import KdfParams, Settings

    settings = Settings(kdf=KdfParams(memory_kib=19 * 1024, iterations=2, parallelism=1))
    with mangostore.open(sys.argv[1], passphrase=sys.argv[2], settings=settings) as db:
        db.execute("UPDATE users SET username = ? WHERE id = ?", (sys.argv[4], sys.argv[3]))
    """
)


def test_a_write_by_another_process_is_never_missed(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    settings = Settings(kdf=FAST_KDF)
    with mangostore.create(path, passphrase=PASSPHRASE, settings=settings).db as db:
        uid = db.users.create(username="ann", email="a@example.com").id
        assert name_of(db, uid) == "ann"
        assert db.users.get(uid).username == "ann"
        for value in ("bob", "cat"):
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
            subprocess.run(
                [sys.executable, "-c", _CHILD, str(path), PASSPHRASE, uid, value],
                check=True,
                env=env,
                timeout=60,
            )
            assert name_of(db, uid) == value
            assert db.users.get(uid).username == value
