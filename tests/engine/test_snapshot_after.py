"""``Store.snapshot_after``: a read transaction that starts exactly as a write commits."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlcipher3
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.engine.pragmas import Connection
from mangostore.errors import DatabaseError


@pytest.fixture
def db(tmp_path: Path) -> mangostore.Database:
    made = mangostore.create(
        tmp_path / "s.db", passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)
    ).db
    made.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, n INTEGER)")
    made.execute("INSERT INTO c (id, n) VALUES (1, 0)")
    return made


def _bump(conn: Connection) -> int:
    conn.execute("UPDATE c SET n = n + 1 WHERE id = 1")
    return int(conn.execute("SELECT n FROM c WHERE id = 1").fetchone()[0])


def test_the_read_starts_at_the_write_and_sees_nothing_later(db: mangostore.Database) -> None:
    with db.store.snapshot_after(_bump) as (conn, value):
        assert value == 1
        # The write committed, but the read began just before it did.
        assert db.query("SELECT n FROM c WHERE id = 1", use_cache=False)[0][0] == 1
        assert conn.execute("SELECT n FROM c WHERE id = 1").fetchone()[0] == 0
        writer = threading.Thread(target=db.execute, args=("INSERT INTO c (n) VALUES (5)",))
        writer.start()
        writer.join()  # other writers go on while the read is open
        assert conn.execute("SELECT count(*) FROM c").fetchone()[0] == 1
    assert db.query("SELECT count(*) FROM c", use_cache=False)[0][0] == 2
    db.close()


def test_a_failing_write_commits_nothing_and_lends_nothing(db: mangostore.Database) -> None:
    def fail(conn: Connection) -> None:
        conn.execute("UPDATE c SET n = 99")
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"), db.store.snapshot_after(fail):
        pytest.fail("the block must not run")
    assert db.query("SELECT n FROM c", use_cache=False)[0][0] == 0
    db.close()


def test_it_refuses_to_run_inside_a_transaction(db: mangostore.Database) -> None:
    with (
        db.transaction(),
        pytest.raises(DatabaseError, match="inside a transaction"),
        db.store.snapshot_after(_bump),
    ):
        pytest.fail("the block must not run")
    db.close()


def test_in_memory_the_block_runs_inside_the_write() -> None:
    with mangostore.open(":memory:", encrypted=False) as memory:
        memory.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, n INTEGER)")
        memory.execute("INSERT INTO c (id, n) VALUES (1, 0)")
        with memory.store.snapshot_after(_bump) as (conn, value):
            assert value == 1
            assert conn.execute("SELECT n FROM c").fetchone()[0] == 1
        assert memory.query("SELECT n FROM c", use_cache=False)[0][0] == 1


def test_the_read_has_a_connection_of_its_own(db: mangostore.Database) -> None:
    # Pooled connections keep up to STATEMENT_CACHE_SIZE prepared statements, which
    # hold SQLite's per-connection small-allocation memory and slow a long scan; the
    # snapshot's connection is made for it (keeping none) and closed after it.
    pool = db.store.pool
    assert pool is not None
    with db.store.reading():
        pass  # one pooled connection now idle
    before = pool.stats()
    with db.store.snapshot_after(_bump) as (conn, _):
        assert pool.stats() == before  # no pooled connection lent
        assert conn.execute("SELECT n FROM c WHERE id = 1").fetchone()[0] == 0
    with pytest.raises(sqlcipher3.ProgrammingError):
        conn.execute("SELECT 1")
    assert pool.stats() == before
