"""Two processes each doing short single writes: one of them waited out its whole busy
timeout and failed with DatabaseLockedError once or twice a run, and the writes split
about 2.5:1. SQLite's busy handler does not queue: the process that just committed
takes the lock again before the other one's next retry. A turnstile beside the database
now makes writers of several processes take turns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.engine.turnstile import Turnstile, turnstile_path

pytestmark = pytest.mark.slow

SECONDS = 5
#: Far below the 5 s default: a writer that waits out even this is starved.
BUSY_TIMEOUT_MS = 1_000

WRITER = """
import json, sys, time, mangostore
from mangostore import Settings
from mangostore.errors import DatabaseLockedError
settings = Settings(busy_timeout_ms=int(sys.argv[4]))
db = mangostore.open(sys.argv[1], sys.argv[2], create=False, settings=settings)
user = db.users.get_by_username(sys.argv[3])
writes = locked = 0
stop = time.monotonic() + float(sys.argv[5])
while time.monotonic() < stop:
    try:
        db.command_history.create(user_id=user.id, command="ls", timestamp=1)
        writes += 1
    except DatabaseLockedError:
        locked += 1
db.close()
print(json.dumps({"writes": writes, "locked": locked}))
"""


def test_two_busy_writers_take_turns(db_path: Path, fast_settings: Settings) -> None:
    with mangostore.create(db_path, PASSPHRASE, settings=fast_settings).db as db:
        for name in ("ann", "bob"):
            db.users.create(username=name)
    args = [str(db_path), PASSPHRASE]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, *args, name, str(BUSY_TIMEOUT_MS), str(SECONDS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("ann", "bob")
    ]
    results = []
    for child in children:
        out, _ = child.communicate(timeout=SECONDS + 60)
        assert child.returncode == 0
        results.append(json.loads(out))
    assert [r["locked"] for r in results] == [0, 0]
    fewer, more = sorted(r["writes"] for r in results)
    assert fewer > 0
    assert more / fewer < 2  # turns, not a race the last committer wins
    with mangostore.open(db_path, PASSPHRASE, create=False) as db:
        assert db.command_history.count() == fewer + more


def test_the_turnstile_is_a_file_of_its_own(db_path: Path, fast_settings: Settings) -> None:
    with mangostore.create(db_path, PASSPHRASE, settings=fast_settings).db as db:
        db.users.create(username="ann")
        path = turnstile_path(str(db_path))
        assert Path(path).exists()
        assert os.stat(path).st_mode & 0o777 == 0o600
        # A writer that holds the turnstile makes this one wait, then time out.
        other = Turnstile(path)
        assert other.enter(1.0)
        try:
            slow = mangostore.open(
                db_path, PASSPHRASE, create=False, settings=Settings(busy_timeout_ms=200)
            )
            with slow, pytest.raises(mangostore.errors.DatabaseLockedError, match="behind"):
                slow.users.create(username="bob")
        finally:
            other.leave()
            other.close()
        db.users.create(username="bob")  # through again once it is left
