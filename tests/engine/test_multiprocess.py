"""Several processes on one database file: the normal way mangostore is used.

Each pattern runs its processes (the command line among them) together for
``SECONDS`` (longer on a slow machine: see multiprocess_worker.py) while they open,
read, write and close again and again, then checks that every process exited 0, that
every acknowledged commit is in the file, that no read saw less than had been
acknowledged before it began, and that ``integrity_check`` is ok. Each run opens and
closes the database dozens of times across processes, the moments a process that
touches SQLite's files behind its back breaks another (a crash in one of a handful of
such moments would not pass).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.errors import DatabaseLockedError

pytestmark = pytest.mark.slow

SECONDS = 10
WORKER = Path(__file__).with_name("multiprocess_worker.py")
#: Opens (and closes) of the database that a pattern must have made across its
#: processes, so that a run cannot pass by doing little.
MIN_OPENS = 20

# Each pattern: the processes to start, as (role, arguments after PATH SECONDS).
PATTERNS = {
    "long-transactions": [
        ("writer", ["ann", "long"]),
        ("writer", ["bob", "short"]),
        ("reader", []),
        ("cli", ["ann"]),
    ],
    "short-autocommit-writes": [
        ("writer", ["ann", "short"]),
        ("writer", ["bob", "short"]),
        ("reader", []),
        ("reader", []),
    ],
    "checkpoints": [
        ("writer", ["ann", "short"]),
        ("writer", ["bob", "long"]),
        ("checkpointer", []),
        ("reader", []),
    ],
    "reader-holding-a-snapshot": [
        ("writer", ["ann", "short"]),
        ("snapshot", []),
        ("reader", []),
        ("cli", ["ann"]),
    ],
}


def run_pattern(db_path: Path, ackdir: Path, processes: list[tuple[str, list[str]]]) -> list[dict]:
    """Start every process of a pattern at once; return their counters when all are done."""
    env = {**os.environ, "MANGOSTORE_PASSPHRASE": PASSPHRASE}
    children = []
    for role, args in processes:
        if role == "writer":
            args = [*args, str(ackdir / f"{args[0]}.acks")]
        elif role == "reader":
            args = [str(ackdir)]
        children.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), role, str(db_path), str(SECONDS), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    results = []
    failures = []
    for (role, _), child in zip(processes, children, strict=True):
        out, err = child.communicate(timeout=SECONDS + 120)
        if child.returncode != 0:
            failures.append(f"{role} exited {child.returncode}: {err.strip()[-2000:]}")
        else:
            results.append(json.loads(out.strip().splitlines()[-1]))
    assert failures == []
    return results


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_processes_share_one_file(pattern: str, db_path: Path, tmp_path: Path) -> None:
    with mangostore.create(
        db_path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)
    ).db as db:
        ann = db.users.create(username="ann")
        db.memory.remember(ann.id, "theme", "prefers dark mode")
    ackdir = tmp_path / "acks"
    ackdir.mkdir()
    results = run_pattern(db_path, ackdir, PATTERNS[pattern])

    assert sum(r.get("opens", 0) for r in results) >= MIN_OPENS
    writers = [r for r in results if r["role"] == "writer"]
    assert all(w["transactions"] > 0 for w in writers)
    assert all(r["reads"] > 0 for r in results if r["role"] == "reader")
    with mangostore.open(db_path, passphrase=PASSPHRASE, create=False) as db:
        assert db.query("PRAGMA integrity_check", use_cache=False)[0][0] == "ok"
        for file in ackdir.glob("*.acks"):
            user = db.users.get_by_username(file.stem)
            assert user is not None
            acknowledged = int(file.read_text(encoding="utf-8").split()[-1])
            # Every acknowledged commit is there, and nothing else was written.
            assert db.command_history.count(user_id=user.id) == acknowledged


HOLDER = """
import sys, mangostore
db = mangostore.open(sys.argv[1], sys.argv[2], create=False)
with db.transaction():
    db.users.create(username="held")
    print("HOLDING", flush=True)
    sys.stdin.readline()
db.close()
print("COMMITTED", flush=True)
"""


def test_open_while_another_process_holds_a_write_transaction(
    db_path: Path, fast_settings: Settings
) -> None:
    """Opening and reading never wait for the writer; a write waits, then says how long;
    the other process's transaction commits."""
    mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db.close()
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db_path), PASSPHRASE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "HOLDING"
            settings = Settings(busy_timeout_ms=300)
            for _ in range(3):  # open, read, close and open again while the lock is held
                with mangostore.open(db_path, PASSPHRASE, create=False, settings=settings) as db:
                    assert db.users.get_by_username("held") is None
                    with pytest.raises(DatabaseLockedError, match=r"waited \d+ ms \(busy"):
                        db.users.create(username="second")
            child.stdin.write("\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "COMMITTED"
            assert child.wait(timeout=30) == 0
        finally:
            if child.poll() is None:
                child.kill()
    with mangostore.open(db_path, PASSPHRASE, create=False) as db:
        assert db.users.get_by_username("held") is not None
        assert db.users.get_by_username("second") is None
