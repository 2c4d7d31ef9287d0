"""A process killed with SIGKILL mid-write loses no committed row and keeps no uncommitted one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings

pytestmark = pytest.mark.slow

#: Rows committed one by one before the transaction that is killed.
COMMITTED = 25
#: Rows of each batch in the batch variant, each with a 1 KiB random payload.
BATCH = 3000

CHILD = f"""
import os, sys
import mangostore
from mangostore import KdfParams, Settings

kdf = KdfParams(memory_kib={FAST_KDF.memory_kib}, iterations={FAST_KDF.iterations},
                parallelism={FAST_KDF.parallelism})
db = mangostore.open(sys.argv[1], passphrase=os.environ["VAULT_PASSPHRASE"],
                     settings=Settings(kdf=kdf))
INSERT = (
    "WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n + 1 < ?) "
    "INSERT INTO crash_rows (batch, n, payload) SELECT ?, n, randomblob(1024) FROM c"
)

def committed_then_hang():
    for n in range({COMMITTED}):
        db.execute("INSERT INTO crash_rows (batch, n, payload) VALUES (0, ?, x'00')", (n,))
    print("COMMITTED", flush=True)
    with db.transaction():
        db.execute(INSERT, (500, 1))
        db.execute("UPDATE crash_rows SET payload = x'ff' WHERE batch = 0")
        db.execute("DELETE FROM crash_rows WHERE batch = 0 AND n < 5")
        print("IN FLIGHT", flush=True)
        sys.stdin.readline()  # the parent kills us here

def batches_forever():
    batch = int(sys.argv[3])
    while True:
        with db.transaction():
            db.execute(INSERT, ({BATCH}, batch))
        print(f"BATCH {{batch}}", flush=True)
        batch += 1

committed_then_hang() if sys.argv[2] == "hang" else batches_forever()
"""


@pytest.fixture
def crash_db(tmp_path: Path) -> Path:
    """An encrypted database with a ``crash_rows`` table, closed."""
    path = tmp_path / "crash.db"
    with mangostore.create(path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)).db as db:
        db.execute(
            "CREATE TABLE crash_rows (batch INTEGER NOT NULL, n INTEGER NOT NULL, "
            "payload BLOB, PRIMARY KEY (batch, n))"
        )
    (tmp_path / "child.py").write_text(CHILD)
    return path


def spawn(path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(path.parent / "child.py"), str(path), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "VAULT_PASSPHRASE": PASSPHRASE},
    )


def read_line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        child.wait()
        assert child.stderr is not None
        pytest.fail(f"the child exited early ({child.returncode}): {child.stderr.read()}")
    return line.strip()


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    for stream in (child.stdin, child.stdout, child.stderr):
        if stream is not None:
            stream.close()


Reopen = Callable[[], mangostore.Database]


@pytest.fixture
def reopened(crash_db: Path) -> Iterator[Reopen]:
    """Open the crashed database again, check its integrity, and yield it to the test."""
    opened: list[mangostore.Database] = []

    def reopen() -> mangostore.Database:
        db = mangostore.open(crash_db, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF))
        opened.append(db)
        assert db.query("PRAGMA integrity_check")[0][0] == "ok"
        assert db.query("PRAGMA foreign_key_check") == []
        return db

    yield reopen
    for db in opened:
        db.close()


def test_kill_inside_an_open_transaction(crash_db: Path, reopened: Reopen) -> None:
    child = spawn(crash_db, "hang")
    assert read_line(child) == "COMMITTED"
    assert read_line(child) == "IN FLIGHT"
    kill(child)
    db = reopened()
    rows = db.query("SELECT batch, n, payload FROM crash_rows ORDER BY batch, n")
    # Every committed row is there, untouched by the killed transaction...
    assert [(r[0], r[1], r[2]) for r in rows] == [(0, n, b"\x00") for n in range(COMMITTED)]
    # ...and the database takes writes again.
    db.execute("INSERT INTO crash_rows (batch, n) VALUES (1, 0)")
    assert db.query("SELECT count(*) FROM crash_rows")[0][0] == COMMITTED + 1


def test_kill_while_committing_big_batches(crash_db: Path, reopened: Reopen) -> None:
    rng = random.Random(20240601)
    known: set[int] = set()  # batches known to be committed
    next_batch = 0
    for _ in range(5):
        child = spawn(crash_db, "batches", str(next_batch))
        last = next_batch + rng.randrange(3)
        while (line := read_line(child)) != f"BATCH {last}":
            assert line.startswith("BATCH ")
        reported = known | set(range(next_batch, last + 1))
        # Land anywhere in the next batch: building it, spilling it, committing it.
        time.sleep(rng.uniform(0, 0.08))
        kill(child)
        db = reopened()
        sizes = dict(db.query("SELECT batch, count(*) FROM crash_rows GROUP BY batch"))
        db.close()
        # No batch is partial; every reported batch survived; batches commit in
        # order, so those committed after the last report follow it without a gap.
        assert set(sizes.values()) == {BATCH}
        assert reported <= set(sizes)
        assert sorted(sizes) == list(range(max(sizes) + 1))
        known = set(sizes)
        next_batch = max(known) + 1
    assert len(known) >= 5
