"""The engine: connection pragmas, raw SQL, error translation, locking and closing."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings, inspection
from mangostore.engine import pragmas
from mangostore.engine.connection import is_transaction_control, statement_context
from mangostore.errors import (
    CheckConstraintError,
    ConstraintError,
    DatabaseClosedError,
    DatabaseError,
    DatabaseLockedError,
    ForeignKeyError,
    MangoError,
    NotADatabaseError,
    NotNullError,
    QueryError,
    UniqueConstraintError,
)

USER_SQL = "INSERT INTO users (id, username, created_at, updated_at) VALUES (?, ?, 1, 1)"
PROJECT_SQL = (
    "INSERT INTO projects (id, user_id, name, path, created_at, updated_at) "
    "VALUES (?, ?, 'p', ?, 1, 1)"
)


def raw_connection(path: Path, db: mangostore.Database) -> Any:
    """A bare sqlcipher3 connection to ``db``'s file, unlocked with its page key."""
    assert db.keyring is not None
    conn = sqlcipher3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA key = \"x'{db.keyring.subkey('page').hex()}'\"")
    return conn


def open_fds(path: Path) -> list[str]:
    """Paths of this process's open file descriptors that belong to the database ``path``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)) and not target.endswith(".lock"):
            found.append(target)
    return found


@pytest.fixture
def locked_settings() -> Settings:
    """Settings with a short busy timeout, for tests that wait on a held lock."""
    return Settings(kdf=FAST_KDF, busy_timeout_ms=200)


# -- pragmas ---------------------------------------------------------------------------

EXPECTED_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": 1,  # NORMAL
    "secure_delete": 1,
    "temp_store": 2,  # MEMORY
}


def pragma_values(conn: Any) -> dict[str, Any]:
    names = [*EXPECTED_PRAGMAS, "busy_timeout", "query_only"]
    return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in names}


def test_writer_pragmas(db_path: Path) -> None:
    settings = Settings(kdf=FAST_KDF, busy_timeout_ms=1234)
    with (
        mangostore.create(db_path, passphrase=PASSPHRASE, settings=settings).db as db,
        db.store.transaction() as conn,
    ):
        values = pragma_values(conn)
    assert values == {**EXPECTED_PRAGMAS, "busy_timeout": 1234, "query_only": 0}


def test_reader_pragmas(db_path: Path) -> None:
    settings = Settings(kdf=FAST_KDF, busy_timeout_ms=4321)
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=settings).db as db:
        assert db.store.pool is not None
        with db.store.pool.reader() as conn:
            values = pragma_values(conn)
    assert values == {**EXPECTED_PRAGMAS, "busy_timeout": 4321, "query_only": 1}


def test_plain_file_database_has_the_same_pragmas(db_path: Path) -> None:
    with mangostore.create(db_path, encrypted=False).db as db:
        assert db.store.pool is not None
        with db.store.pool.reader() as conn:
            assert pragma_values(conn)["journal_mode"] == "wal"
        assert db.query("PRAGMA foreign_keys")[0][0] == 1


@pytest.mark.parametrize("setup", [pragmas.writer_setup, pragmas.reader_setup])
def test_setup_steps_are_named_and_documented(setup: Callable[[int], list[Any]]) -> None:
    for step in setup(100):
        assert step.__name__ != "<lambda>"
        assert step.__doc__


# -- raw SQL ---------------------------------------------------------------------------


def test_query_and_execute_with_positional_and_named_params(plain_db: mangostore.Database) -> None:
    assert plain_db.execute(USER_SQL, ("u1", "ada")) == 1
    plain_db.execute(
        "INSERT INTO users (id, username, created_at, updated_at) VALUES (:id, :name, 1, 1)",
        {"id": "u2", "name": "bob"},
    )
    rows = plain_db.query("SELECT id, username FROM users WHERE id > ? ORDER BY id", ("u",))
    assert [(r["id"], r[1]) for r in rows] == [("u1", "ada"), ("u2", "bob")]
    assert plain_db.execute("UPDATE users SET last_login = 5") == 2


def test_query_on_file_database_cannot_write(encrypted_db: mangostore.Database) -> None:
    with pytest.raises(QueryError) as info:
        encrypted_db.query(USER_SQL, ("u1", "ada"))
    assert isinstance(info.value.__cause__, sqlcipher3.Error)
    assert encrypted_db.query("SELECT count(*) FROM users")[0][0] == 0


@pytest.mark.parametrize(
    "sql",
    [
        "BEGIN",
        "begin immediate",
        "COMMIT",
        "END",
        "ROLLBACK",
        "SAVEPOINT x",
        "RELEASE x",
        "  -- a comment\n  COMMIT",
        "/* a block\ncomment */ ROLLBACK",
    ],
)
def test_transaction_control_is_refused(plain_db: mangostore.Database, sql: str) -> None:
    assert is_transaction_control(sql)
    with pytest.raises(QueryError, match=r"db\.transaction"):
        plain_db.execute(sql)
    with pytest.raises(QueryError, match=r"db\.transaction"):
        plain_db.query(sql)
    # Nothing was left open: the writer still works.
    plain_db.execute(USER_SQL, ("u1", "ada"))


@pytest.mark.parametrize(
    "sql", ["SELECT 'BEGIN'", "CREATE TABLE begin_log (x)", "UPDATE t SET x = 1 -- COMMIT"]
)
def test_statements_mentioning_transactions_are_allowed(sql: str) -> None:
    assert not is_transaction_control(sql)


def test_statement_context_names_the_written_table() -> None:
    assert statement_context("INSERT INTO projects (a) VALUES (?)") == "writing projects"
    assert statement_context("insert or replace into users values (?)") == "writing users"
    assert statement_context('UPDATE "my table" SET a = ?') == 'writing "my table"'
    assert statement_context("DELETE FROM kg_entities WHERE id = ?") == "writing kg_entities"
    assert statement_context("SELECT 1") == ""


# -- error translation -----------------------------------------------------------------


@pytest.fixture
def user_db(plain_db: mangostore.Database) -> mangostore.Database:
    """An in-memory database holding the user ``u1``."""
    plain_db.execute(USER_SQL, ("u1", "ada"))
    return plain_db


def test_unique_violation(user_db: mangostore.Database) -> None:
    with pytest.raises(UniqueConstraintError, match=r"users\.username") as info:
        user_db.execute(USER_SQL, ("u2", "ada"))
    assert info.value.field == "username"
    assert isinstance(info.value.__cause__, sqlcipher3.IntegrityError)


def test_primary_key_violation(user_db: mangostore.Database) -> None:
    with pytest.raises(UniqueConstraintError, match=r"users\.id"):
        user_db.execute(USER_SQL, ("u1", "someone else"))


def test_not_null_violation(user_db: mangostore.Database) -> None:
    with pytest.raises(NotNullError, match=r"users\.username") as info:
        user_db.execute(USER_SQL, ("u2", None))
    assert info.value.field == "username"
    assert isinstance(info.value.__cause__, sqlcipher3.IntegrityError)


def test_foreign_key_violation_names_the_table(user_db: mangostore.Database) -> None:
    with pytest.raises(ForeignKeyError, match="projects") as info:
        user_db.execute(PROJECT_SQL, ("p1", "nobody", "/x"))
    assert isinstance(info.value.__cause__, sqlcipher3.IntegrityError)
    assert user_db.query("SELECT count(*) FROM projects")[0][0] == 0


def test_deleting_a_referenced_row_is_a_foreign_key_error(user_db: mangostore.Database) -> None:
    user_db.execute(PROJECT_SQL, ("p1", "u1", "/x"))
    with pytest.raises(ForeignKeyError, match="users"):
        user_db.execute("DELETE FROM users WHERE id = ?", ("u1",))


def test_check_violation_names_table_and_column(user_db: mangostore.Database) -> None:
    with pytest.raises(CheckConstraintError, match="projects") as info:
        user_db.execute(
            "INSERT INTO projects (id, user_id, name, path, metadata, created_at, updated_at) "
            "VALUES ('p1', 'u1', 'p', '/x', ?, 1, 1)",
            ("{not json",),
        )
    assert "metadata" in str(info.value)
    assert "{not json" not in str(info.value)  # values are never quoted back
    assert isinstance(info.value.__cause__, sqlcipher3.IntegrityError)


def test_constraint_errors_share_a_base(user_db: mangostore.Database) -> None:
    with pytest.raises(ConstraintError):
        user_db.execute(USER_SQL, ("u1", "ada"))


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC 1",
        "SELECT * FROM no_such_table",
        "SELECT no_such_column FROM users",
        "SELECT 1; SELECT 2",
    ],
)
def test_bad_sql_is_a_query_error(plain_db: mangostore.Database, sql: str) -> None:
    for call in (plain_db.query, plain_db.execute):
        with pytest.raises(QueryError) as info:
            call(sql)
        # Two statements in one string raise the driver's Warning, not an Error.
        assert isinstance(info.value.__cause__, sqlcipher3.Error | sqlcipher3.Warning)


def test_wrong_parameter_count_is_a_query_error(plain_db: mangostore.Database) -> None:
    with pytest.raises(QueryError):
        plain_db.execute(USER_SQL, ("only one",))


def test_unknown_table_named_busy_is_not_a_lock_error(plain_db: mangostore.Database) -> None:
    # The message quotes the name; the error is classified by SQLite's code.
    with pytest.raises(QueryError) as info:
        plain_db.query("SELECT * FROM database_is_locked_busy")
    assert not isinstance(info.value, DatabaseLockedError)


@pytest.mark.parametrize("fixture", ["plain_db", "encrypted_db"])
def test_driver_errors_never_escape(fixture: str, request: pytest.FixtureRequest) -> None:
    db: mangostore.Database = request.getfixturevalue(fixture)
    attempts: list[Callable[[], object]] = [
        lambda: db.query("garbage"),
        lambda: db.execute("garbage"),
        lambda: db.execute(USER_SQL, ("u", None)),
        lambda: db.query("SELECT ?", (object(),)),
        lambda: db.execute("SELECT ?", (object(),)),
    ]
    for attempt in attempts:
        with pytest.raises(MangoError):
            attempt()


# -- locking -----------------------------------------------------------------------------


def test_lock_held_by_another_connection(db_path: Path, locked_settings: Settings) -> None:
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=locked_settings).db as db:
        other = raw_connection(db_path, db)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(DatabaseLockedError, match="busy_timeout_ms") as info:
                db.execute(USER_SQL, ("u1", "ada"))
            assert isinstance(info.value.__cause__, sqlcipher3.OperationalError)
            with pytest.raises(DatabaseLockedError), db.transaction():
                pass  # never reached: BEGIN IMMEDIATE itself waits and fails
            # Readers are not blocked by a writer.
            assert db.query("SELECT count(*) FROM users")[0][0] == 0
            other.execute("ROLLBACK")
        finally:
            other.close()
        db.execute(USER_SQL, ("u1", "ada"))
        assert db.query("SELECT count(*) FROM users")[0][0] == 1


def test_lock_held_by_another_thread(db_path: Path, locked_settings: Settings) -> None:
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=locked_settings).db as db:
        holding, done = threading.Event(), threading.Event()

        def hold() -> None:
            with db.transaction():
                db.execute(USER_SQL, ("u1", "ada"))
                holding.set()
                done.wait(30)

        thread = threading.Thread(target=hold)
        thread.start()
        try:
            assert holding.wait(30)
            with pytest.raises(DatabaseLockedError), db.transaction():
                pass
            with pytest.raises(DatabaseLockedError):
                db.execute(USER_SQL, ("u2", "bob"))
            # The other thread's uncommitted row is invisible to readers.
            assert db.query("SELECT count(*) FROM users")[0][0] == 0
        finally:
            done.set()
            thread.join()
        assert [r[0] for r in db.query("SELECT id FROM users")] == ["u1"]


# -- closing -----------------------------------------------------------------------------


def exercise(db: mangostore.Database) -> None:
    """Use the writer and several readers at once, so every kind of connection is open."""
    db.execute(USER_SQL, ("u1", "ada"))
    barrier = threading.Barrier(3)

    def read() -> None:
        assert db.store.pool is not None
        with db.store.pool.reader() as conn:
            conn.execute("SELECT count(*) FROM users").fetchone()
            barrier.wait(30)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.store.pool is not None
    assert db.store.pool.stats().open == 3


def test_close_releases_every_file_handle(db_path: Path, fast_settings: Settings) -> None:
    assert open_fds(db_path) == []
    db = mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db
    exercise(db)
    assert len(open_fds(db_path)) >= 4  # the writer and three readers
    db.close()
    assert open_fds(db_path) == []
    db.close()  # closing twice is harmless


def test_context_manager_releases_every_file_handle(db_path: Path, fast_settings: Settings) -> None:
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db as db:
        exercise(db)
        assert open_fds(db_path)
    assert open_fds(db_path) == []


def test_failed_open_releases_every_file_handle(db_path: Path, fast_settings: Settings) -> None:
    mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db.close()
    with pytest.raises(MangoError):
        mangostore.open(db_path, passphrase="wrong", settings=fast_settings)
    db_path.with_name("theirs.db").write_bytes(b"not a database at all" * 300)
    with pytest.raises(NotADatabaseError):
        mangostore.open(db_path.with_name("theirs.db"), encrypted=False)
    assert open_fds(db_path.parent) == []


def test_reader_lent_during_close_is_closed_when_returned(
    encrypted_db: mangostore.Database,
) -> None:
    pool = encrypted_db.store.pool
    assert pool is not None
    with pool.reader() as conn:
        encrypted_db.close()
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    assert pool.stats().open == 0
    with pytest.raises(sqlcipher3.ProgrammingError):
        conn.execute("SELECT 1")


@pytest.mark.parametrize(
    "use",
    [
        lambda db: db.query("SELECT 1"),
        lambda db: db.execute(USER_SQL, ("u", "x")),
        lambda db: db.transaction().__enter__(),
        lambda db: db.migrate(),
        lambda db: db.status(),
        lambda db: db.change_passphrase(PASSPHRASE, "new"),
    ],
    ids=["query", "execute", "transaction", "migrate", "status", "change_passphrase"],
)
def test_use_after_close_raises(
    use: Callable[[mangostore.Database], object], db_path: Path, fast_settings: Settings
) -> None:
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db as db:
        pass
    with pytest.raises(DatabaseClosedError):
        use(db)
    assert "closed" in repr(db)


def test_close_waits_for_another_threads_transaction(encrypted_db: mangostore.Database) -> None:
    inside, release = threading.Event(), threading.Event()

    def write() -> None:
        with encrypted_db.transaction():
            encrypted_db.execute(USER_SQL, ("u1", "ada"))
            inside.set()
            release.wait(30)

    thread = threading.Thread(target=write)
    thread.start()
    assert inside.wait(30)
    closer = threading.Thread(target=encrypted_db.close)
    closer.start()
    release.set()
    thread.join()
    closer.join()
    path = encrypted_db.path
    with mangostore.open(path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)) as again:
        assert again.query("SELECT id FROM users")[0][0] == "u1"


def test_close_inside_own_transaction_commits_nothing(
    db_path: Path, fast_settings: Settings
) -> None:
    db = mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db

    def close_inside() -> None:
        with db.transaction():
            db.execute(USER_SQL, ("u1", "ada"))
            db.close()

    with pytest.raises(DatabaseClosedError, match="nothing of it was committed"):
        close_inside()
    assert open_fds(db_path) == []
    with mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings) as again:
        assert again.query("SELECT count(*) FROM users")[0][0] == 0


# -- status ------------------------------------------------------------------------------


def test_status_counts_rows_and_shows_no_key(encrypted_db: mangostore.Database) -> None:
    encrypted_db.execute(USER_SQL, ("u1", "ada"))
    encrypted_db.execute(USER_SQL, ("u2", "bob"))
    info = encrypted_db.status()
    rows = {t.name: t.rows for t in info.tables}
    assert rows["users"] == 2
    assert rows["schema_migrations"] == len(encrypted_db._runner.applied())
    assert "kg_search_index" in rows  # virtual tables are listed...
    assert not any(
        name.startswith(("sqlite_", "kg_search_index_")) for name in rows
    )  # ...not shadows
    assert info.schema_version == info.latest_version == encrypted_db.schema_version
    assert info.page_encryption
    assert info.field_encryption
    assert info.file_bytes > 0
    assert info.pool is not None
    assert info.pool.max_size == 10
    assert encrypted_db.keyring is not None
    key = encrypted_db.keyring.subkey("page").hex()
    assert key not in repr(info)


def test_status_of_memory_database(plain_db: mangostore.Database) -> None:
    info = plain_db.status()
    assert info.path == ":memory:"
    assert info.file_bytes == 0
    assert info.pool is None
    assert info.keyring is None
    assert not info.page_encryption


def test_status_quotes_table_names(plain_db: mangostore.Database) -> None:
    plain_db.execute('CREATE TABLE "odd ""name""; --" (x)')
    plain_db.execute('INSERT INTO "odd ""name""; --" VALUES (1)')
    rows = {t.name: t.rows for t in plain_db.status().tables}
    assert rows['odd "name"; --'] == 1


def test_status_inside_a_transaction_sees_its_writes(encrypted_db: mangostore.Database) -> None:
    with encrypted_db.transaction():
        encrypted_db.execute(USER_SQL, ("u1", "ada"))
        rows = {t.name: t.rows for t in encrypted_db.status().tables}
    assert rows["users"] == 1


def test_status_leaves_no_reader_in_a_transaction(encrypted_db: mangostore.Database) -> None:
    encrypted_db.status()
    assert encrypted_db.store.pool is not None
    with encrypted_db.store.pool.reader() as conn:
        assert not conn.in_transaction
    encrypted_db.execute(USER_SQL, ("u1", "ada"))
    assert encrypted_db.query("SELECT count(*) FROM users")[0][0] == 1


def test_status_counts_are_one_snapshot(
    encrypted_db: mangostore.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A commit made while status() is counting must not show up half-way.
    original = inspection.count_rows
    written = threading.Event()

    def count_after_a_commit(conn: Any, table: str) -> int:
        if not written.is_set():
            written.set()
            writer = threading.Thread(target=encrypted_db.execute, args=(USER_SQL, ("u1", "ada")))
            writer.start()
            writer.join()
        return original(conn, table)

    monkeypatch.setattr(inspection, "count_rows", count_after_a_commit)
    rows = {t.name: t.rows for t in encrypted_db.status().tables}
    assert written.is_set()
    assert rows["users"] == 0
    assert encrypted_db.query("SELECT count(*) FROM users")[0][0] == 1


def test_status_reports_an_uncountable_table(plain_db: mangostore.Database) -> None:
    class MissingModule:
        """A connection on which one table's module is not loaded."""

        def __init__(self, conn: Any) -> None:
            self._conn = conn

        def execute(self, sql: str, *args: Any) -> Any:
            if sql == 'SELECT count(*) FROM "users"':
                raise sqlcipher3.OperationalError("no such module: vec0")
            return self._conn.execute(sql, *args)

    with plain_db.store.transaction() as conn:
        assert inspection.count_rows(MissingModule(conn), "users") == -1
        assert inspection.count_rows(MissingModule(conn), "projects") == 0


def test_database_error_is_the_base_of_engine_errors() -> None:
    for cls in (QueryError, DatabaseLockedError):
        assert issubclass(cls, DatabaseError)


def test_vacuum_reclaims_free_pages_and_keeps_the_data(db_path: Path) -> None:
    db = mangostore.create(db_path, encrypted=False).db
    try:
        for i in range(200):
            db.execute(
                "INSERT INTO users (id, username, created_at, updated_at) VALUES (?, ?, 0, 0)",
                (f"u{i}", "x" * 500 + str(i)),
            )
        db.execute("DELETE FROM users WHERE id <> 'u7'")
        free_before = db.query("PRAGMA freelist_count")[0][0]
        db.vacuum()
        assert free_before > 0
        assert db.query("PRAGMA freelist_count")[0][0] == 0
        assert [r[0] for r in db.query("SELECT id FROM users")] == ["u7"]
        with db.transaction(), pytest.raises(mangostore.errors.DatabaseError):
            db.vacuum()
    finally:
        db.close()
