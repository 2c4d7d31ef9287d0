"""db.transaction(): commit, rollback, savepoints, read-your-writes, and failed commits."""

from __future__ import annotations

import contextlib
import threading

import pytest
import sqlcipher3

import mangostore
from mangostore.errors import (
    DatabaseError,
    ForeignKeyError,
    QueryError,
    UniqueConstraintError,
)

ITEM_SQL = "INSERT INTO items (name) VALUES (?)"


def add_items(db: mangostore.Database) -> None:
    """A scratch ``items`` table."""
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")


# An in-memory and a file database, each with the items table.
pytestmark = pytest.mark.database("plain_db", "encrypted_db", setup=add_items)


class Boom(Exception):
    """An application error raised inside a transaction."""


def names(db: mangostore.Database) -> list[str]:
    return [r[0] for r in db.query("SELECT name FROM items ORDER BY id")]


def write_then_raise(
    db: mangostore.Database, *items: str, error: BaseException | None = None
) -> None:
    """Insert ``items`` in one transaction, then raise ``error`` (default: Boom) inside it."""
    with db.transaction():
        for item in items:
            db.execute(ITEM_SQL, (item,))
        raise error or Boom


def test_block_commits(db: mangostore.Database) -> None:
    with db.transaction() as same:
        assert same is db
        db.execute(ITEM_SQL, ("a",))
        db.execute(ITEM_SQL, ("b",))
    assert names(db) == ["a", "b"]


def test_exception_rolls_back_and_propagates(db: mangostore.Database) -> None:
    with pytest.raises(Boom):
        write_then_raise(db, "a")
    assert names(db) == []
    db.execute(ITEM_SQL, ("b",))  # the writer is usable again
    assert names(db) == ["b"]


def test_base_exception_rolls_back(db: mangostore.Database) -> None:
    with pytest.raises(KeyboardInterrupt):
        write_then_raise(db, "a", error=KeyboardInterrupt())
    assert names(db) == []


def test_constraint_error_rolls_back_everything(db: mangostore.Database) -> None:
    with pytest.raises(UniqueConstraintError):
        write_then_raise(db, "a", "a")
    assert names(db) == []


def test_inner_failure_caught_rolls_back_only_the_inner_part(db: mangostore.Database) -> None:
    with db.transaction():
        db.execute(ITEM_SQL, ("outer-1",))
        with pytest.raises(Boom):
            write_then_raise(db, "inner")
        db.execute(ITEM_SQL, ("outer-2",))
    assert names(db) == ["outer-1", "outer-2"]


def test_inner_constraint_error_caught(db: mangostore.Database) -> None:
    with db.transaction():
        db.execute(ITEM_SQL, ("a",))
        with pytest.raises(UniqueConstraintError):
            db.execute(ITEM_SQL, ("a",))  # each execute is its own savepoint
        db.execute(ITEM_SQL, ("b",))
    assert names(db) == ["a", "b"]


def test_outer_failure_rolls_back_committed_savepoints(db: mangostore.Database) -> None:
    def block() -> None:
        with db.transaction():
            with db.transaction():
                db.execute(ITEM_SQL, ("inner",))
            write_then_raise(db, "outer")

    with pytest.raises(Boom):
        block()
    assert names(db) == []


def test_three_levels(db: mangostore.Database) -> None:
    def inner_commits_then_outer_fails() -> None:
        with db.transaction():
            db.execute(ITEM_SQL, ("4",))
            with db.transaction():
                db.execute(ITEM_SQL, ("5",))
            raise Boom

    with db.transaction():
        db.execute(ITEM_SQL, ("1",))
        with db.transaction():
            db.execute(ITEM_SQL, ("2",))
            with pytest.raises(Boom):
                write_then_raise(db, "3")
            with db.transaction():
                db.execute(ITEM_SQL, ("3b",))
        with pytest.raises(Boom):
            inner_commits_then_outer_fails()
    assert names(db) == ["1", "2", "3b"]
    assert db.store.writer._depth == 0


def test_reads_inside_see_own_writes(db: mangostore.Database) -> None:
    with db.transaction():
        db.execute(ITEM_SQL, ("a",))
        assert names(db) == ["a"]
        with db.transaction():
            db.execute(ITEM_SQL, ("b",))
            assert names(db) == ["a", "b"]
        assert db.query("SELECT count(*) FROM items")[0][0] == 2


def test_other_threads_do_not_see_uncommitted_writes(
    encrypted_db: mangostore.Database,
) -> None:
    db = encrypted_db
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
    seen: list[list[str]] = []
    with db.transaction():
        db.execute(ITEM_SQL, ("a",))
        # A reader in another thread is not blocked, and sees the last commit.
        reader = threading.Thread(target=lambda: seen.append(names(db)))
        reader.start()
        reader.join()
    assert seen == [[]]
    assert names(db) == ["a"]


def test_query_inside_transaction_uses_the_writer(encrypted_db: mangostore.Database) -> None:
    encrypted_db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
    assert encrypted_db.store.pool is not None
    before = encrypted_db.store.pool.stats()
    with encrypted_db.transaction():
        # Through the writer, query may even write: it is the same transaction.
        encrypted_db.query("INSERT INTO items (name) VALUES ('via query') RETURNING id")
    assert names(encrypted_db) == ["via query"]
    assert encrypted_db.store.pool.stats().open == max(before.open, 1)


# -- commits that fail -----------------------------------------------------------------


ORPHAN_SQL = (
    "INSERT INTO projects (id, user_id, name, path, created_at, updated_at) "
    "VALUES ('p1', 'nobody', 'p', '/p', 1, 1)"
)


def write_orphan_with_deferred_keys(db: mangostore.Database) -> None:
    """Deferred foreign keys are only checked at COMMIT, which then fails."""
    with db.transaction():
        db.execute("PRAGMA defer_foreign_keys = ON")
        db.execute(ITEM_SQL, ("a",))
        db.execute(ORPHAN_SQL)


def test_failed_commit_rolls_back_and_raises_a_typed_error(db: mangostore.Database) -> None:
    with pytest.raises(ForeignKeyError, match="committing") as info:
        write_orphan_with_deferred_keys(db)
    assert isinstance(info.value.__cause__, sqlcipher3.IntegrityError)
    assert names(db) == []
    assert db.query("SELECT count(*) FROM projects")[0][0] == 0
    assert db.store.writer._depth == 0
    assert not db.store.in_transaction()
    with db.store.transaction() as conn:
        assert conn.execute("PRAGMA defer_foreign_keys").fetchone()[0] == 0
    # The next transaction starts clean and commits.
    with db.transaction():
        db.execute(ITEM_SQL, ("b",))
    assert names(db) == ["b"]


def test_failed_commit_lets_other_threads_in(db: mangostore.Database) -> None:
    with pytest.raises(ForeignKeyError):
        write_orphan_with_deferred_keys(db)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            db.execute(ITEM_SQL, ("from thread",))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert errors == []
    assert names(db) == ["from thread"]


def test_rollback_by_sqlite_inside_a_savepoint_is_not_hidden(db: mangostore.Database) -> None:
    """Regression: ON CONFLICT ROLLBACK ends the whole transaction inside a savepoint.

    The constraint error used to be replaced by 'no such savepoint', and the block's
    later writes then committed on their own.
    """
    db.execute("CREATE TABLE strict_items (name TEXT UNIQUE ON CONFLICT ROLLBACK)")

    def block() -> None:
        with db.transaction():
            db.execute(ITEM_SQL, ("before",))
            db.execute("INSERT INTO strict_items VALUES ('x')")
            with pytest.raises(UniqueConstraintError):
                db.execute("INSERT INTO strict_items VALUES ('x')")
            db.execute(ITEM_SQL, ("after",))

    with pytest.raises(DatabaseError, match="rolled back by SQLite"):
        block()
    assert names(db) == []
    assert db.query("SELECT count(*) FROM strict_items")[0][0] == 0


def test_rollback_by_sqlite_caught_then_leaving_block(db: mangostore.Database) -> None:
    db.execute("CREATE TABLE strict_items (name TEXT UNIQUE ON CONFLICT ROLLBACK)")
    db.execute("INSERT INTO strict_items VALUES ('x')")

    def block() -> None:
        with db.transaction():
            db.execute(ITEM_SQL, ("lost",))
            with contextlib.suppress(UniqueConstraintError):
                db.execute("INSERT INTO strict_items VALUES ('x')")

    with pytest.raises(DatabaseError, match="nothing more is written"):
        block()
    assert names(db) == []
    db.execute(ITEM_SQL, ("later",))
    assert names(db) == ["later"]


def test_transaction_control_inside_a_block_is_refused(db: mangostore.Database) -> None:
    with db.transaction():
        db.execute(ITEM_SQL, ("a",))
        with pytest.raises(QueryError):
            db.execute("COMMIT")
        with pytest.raises(QueryError):
            db.query("ROLLBACK")
        db.execute(ITEM_SQL, ("b",))
    assert names(db) == ["a", "b"]


def test_transactions_from_many_threads_are_serialised(db: mangostore.Database) -> None:
    def work(n: int) -> None:
        for i in range(20):
            with db.transaction():
                db.execute(ITEM_SQL, (f"{n}-{i}",))
                with pytest.raises(Boom):
                    write_then_raise(db, f"{n}-{i}-inner")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = names(db)
    assert len(rows) == 80
    assert not any(r.endswith("inner") for r in rows)


def test_a_driver_error_inside_a_write_block_leaves_as_a_mangostore_error(
    plain_db: mangostore.Database,
) -> None:
    # Services run their own statements on the writer connection; whatever the driver
    # raises there is translated at the boundary, after the rollback.

    def insert_then_fail() -> None:
        with plain_db.store.transaction() as conn:
            conn.execute(
                "INSERT INTO users (id, username, created_at, updated_at) VALUES ('a', 'a', 0, 0)"
            )
            conn.execute("SELECT ?", ({"not": "bindable"},))

    with pytest.raises(mangostore.errors.QueryError):
        insert_then_fail()
    assert plain_db.users.count() == 0


def test_a_driver_error_on_a_reader_leaves_as_a_mangostore_error(
    encrypted_db: mangostore.Database,
) -> None:
    with pytest.raises(mangostore.errors.QueryError), encrypted_db.store.reading() as conn:
        conn.execute("SELECT * FROM no_such_table")


def test_a_service_statement_with_a_bad_value_raises_a_mangostore_error(
    plain_db: mangostore.Database,
) -> None:
    with pytest.raises(mangostore.errors.MangoError):
        plain_db.kg.declare_predicate("likes", description={"a": 1})  # type: ignore[arg-type]


def test_reads_inside_a_transaction_open_no_savepoint(plain_db: mangostore.Database) -> None:
    statements: list[str] = []
    plain_db.store.writer.connection.set_trace_callback(statements.append)
    try:
        with plain_db.transaction():
            plain_db.query("SELECT 1", use_cache=False)
            plain_db.query("SELECT 2", use_cache=False)
    finally:
        plain_db.store.writer.connection.set_trace_callback(None)
    assert not [s for s in statements if s.startswith(("SAVEPOINT", "RELEASE"))]
    assert "SELECT 1" in statements
    assert "SELECT 2" in statements
