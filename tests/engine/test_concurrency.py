"""Many threads and several processes using one database at once."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.errors import DatabaseLockedError, UniqueConstraintError

pytestmark = pytest.mark.slow

THREADS = 8
OPS = 200  # per thread, bounded by count rather than time


class Boom(Exception):
    """An application error raised inside a transaction."""


@pytest.fixture
def shared_db(encrypted_db: mangostore.Database) -> mangostore.Database:
    """The encrypted file database with an ``events`` table and one counter."""
    encrypted_db.execute(
        "CREATE TABLE events (thread INTEGER, op INTEGER, kind TEXT, PRIMARY KEY (thread, op))"
    )
    encrypted_db.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    encrypted_db.execute("INSERT INTO counters VALUES ('total', 0)")
    return encrypted_db


def insert(db: mangostore.Database, thread: int, op: int, kind: str) -> None:
    db.execute("INSERT INTO events VALUES (?, ?, ?)", (thread, op, kind))


def own_count(db: mangostore.Database, thread: int) -> int:
    return int(db.query("SELECT count(*) FROM events WHERE thread = ?", (thread,))[0][0])


def failing_savepoint(db: mangostore.Database, thread: int, op: int) -> None:
    with db.transaction():
        insert(db, thread, op, "never")
        raise Boom


def mixed_ops(db: mangostore.Database, thread: int) -> int:
    """Run OPS mixed reads and writes; return how many events this thread committed."""
    committed = 0
    for op in range(OPS):
        kind = op % 5
        if kind == 0:  # a single write
            insert(db, thread, op, "single")
            committed += 1
        elif kind == 1:  # a read on a pooled reader sees every own commit
            assert own_count(db, thread) == committed
        elif kind == 2:  # a transaction that reads its own writes and bumps the counter
            with db.transaction():
                insert(db, thread, op, "tx")
                assert own_count(db, thread) == committed + 1
                db.execute("UPDATE counters SET n = n + 1 WHERE name = 'total'")
            committed += 1
        elif kind == 3:  # a savepoint that fails inside a transaction that commits
            with db.transaction():
                insert(db, thread, op, "outer")
                with pytest.raises(Boom):
                    failing_savepoint(db, thread, -op)
                with pytest.raises(UniqueConstraintError):
                    insert(db, thread, op, "duplicate")
            committed += 1
        else:  # a transaction that fails as a whole
            with contextlib.suppress(Boom):
                failing_savepoint(db, thread, op)
    return committed


def test_threads_reading_and_writing(shared_db: mangostore.Database) -> None:
    errors: list[BaseException] = []
    counts: dict[int, int] = {}
    start = threading.Barrier(THREADS)

    def run(thread: int) -> None:
        try:
            start.wait(30)
            counts[thread] = mixed_ops(shared_db, thread)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    per_thread = OPS // 5 * 3
    assert counts == dict.fromkeys(range(THREADS), per_thread)
    assert shared_db.query("SELECT count(*) FROM events")[0][0] == THREADS * per_thread
    kinds = dict(shared_db.query("SELECT kind, count(*) FROM events GROUP BY kind"))
    assert kinds == {
        "single": THREADS * OPS // 5,
        "tx": THREADS * OPS // 5,
        "outer": THREADS * OPS // 5,
    }
    assert shared_db.query("SELECT n FROM counters")[0][0] == THREADS * OPS // 5
    assert shared_db.query("PRAGMA integrity_check")[0][0] == "ok"
    assert shared_db.store.pool is not None
    stats = shared_db.store.pool.stats()
    assert stats.in_use == 0
    assert stats.open <= 10


LOCK_HOLDER = """
import os, sys
import sqlcipher3

conn = sqlcipher3.connect(sys.argv[1], isolation_level=None)
conn.execute(f"PRAGMA key = \\"x'{os.environ['VAULT_PAGE_KEY']}'\\"")
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO users (id, username, created_at, updated_at) VALUES ('x', 'x', 1, 1)")
print("LOCKED", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
conn.close()
"""


def test_lock_held_by_another_process(db_path: Path, tmp_path: Path) -> None:
    settings = Settings(kdf=FAST_KDF, busy_timeout_ms=200)
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=settings).db as db:
        assert db.keyring is not None
        script = tmp_path / "hold_lock.py"
        script.write_text(LOCK_HOLDER)
        child = subprocess.Popen(
            [sys.executable, str(script), str(db_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "VAULT_PAGE_KEY": db.keyring.subkey("page").hex()},
        )
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "LOCKED"
            with pytest.raises(DatabaseLockedError, match="busy_timeout_ms"):
                db.execute(
                    "INSERT INTO users (id, username, created_at, updated_at) "
                    "VALUES ('u1', 'ada', 1, 1)"
                )
            # Readers see the last commit, without waiting for the other process.
            assert db.query("SELECT count(*) FROM users")[0][0] == 0
            child.stdin.write("\n")
            child.stdin.flush()
            assert child.wait() == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdin.close()
            child.stdout.close()
        # The other process's commit is visible, and the writer works again.
        assert [r[0] for r in db.query("SELECT id FROM users")] == ["x"]
        db.execute(
            "INSERT INTO users (id, username, created_at, updated_at) VALUES ('u1', 'ada', 1, 1)"
        )


WRITER = """
import os, sys
import mangostore
from mangostore import KdfParams, Settings

kdf = KdfParams(memory_kib={memory_kib}, iterations={iterations}, parallelism={parallelism})
with mangostore.open(sys.argv[1], passphrase=os.environ["VAULT_PASSPHRASE"],
                     settings=Settings(kdf=kdf)) as db:
    print("READY", flush=True)
    sys.stdin.readline()  # start writing together with the others
    for i in range({rows}):
        with db.transaction():
            db.execute("INSERT INTO events VALUES (?, ?, 'process')", (int(sys.argv[2]), i))
            db.execute("UPDATE counters SET n = n + 1 WHERE name = 'total'")
"""


def test_processes_writing_at_once(shared_db: mangostore.Database, tmp_path: Path) -> None:
    rows = 100
    script = tmp_path / "writer.py"
    script.write_text(
        WRITER.format(
            memory_kib=FAST_KDF.memory_kib,
            iterations=FAST_KDF.iterations,
            parallelism=FAST_KDF.parallelism,
            rows=rows,
        )
    )
    env = {**os.environ, "VAULT_PASSPHRASE": PASSPHRASE}
    children = [
        subprocess.Popen(
            [sys.executable, str(script), shared_db.path, str(n)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (100, 101)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY", child.communicate()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    # This process writes at the same time.
    for i in range(rows):
        with shared_db.transaction():
            insert(shared_db, 0, i, "parent")
            shared_db.execute("UPDATE counters SET n = n + 1 WHERE name = 'total'")
    for child in children:
        _, err = child.communicate()
        assert child.returncode == 0, err
    assert dict(shared_db.query("SELECT thread, count(*) FROM events GROUP BY thread")) == {
        0: rows,
        100: rows,
        101: rows,
    }
    assert shared_db.query("SELECT count(*) FROM events")[0][0] == 3 * rows
    assert shared_db.query("SELECT n FROM counters")[0][0] == 3 * rows
    assert shared_db.query("PRAGMA integrity_check")[0][0] == "ok"
