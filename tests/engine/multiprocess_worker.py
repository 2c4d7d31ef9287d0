"""One process of a multi-process test (run as a script by ``test_multiprocess.py``).

``python multiprocess_worker.py ROLE PATH SECONDS [ARGS]``; the passphrase comes from
``MANGOSTORE_PASSPHRASE``. Every role runs until SECONDS have passed, prints one JSON
line of counters and exits 0; any failure (an error, a stale read, a snapshot that
moved) exits non-zero with the reason on stderr. Writers, readers and checkpointers
go on past SECONDS until they have opened the database ``MIN_OPENS_EACH`` times (and a
writer has committed once), however slow the machine.

Roles:

- ``writer NAME MODE ACKS``: commits rows of user NAME and, after each commit
  returns, appends the total committed so far to the file ACKS. MODE ``long`` holds
  each transaction open for a while, ``short`` writes single rows on their own.
- ``reader ACKDIR``: opens, reads and closes again and again; each read must count at
  least the rows the writers' ACKS files had acknowledged before it began.
- ``checkpointer``: ``db.checkpoint(truncate=True)`` in a loop.
- ``snapshot``: holds a read transaction on a plain connection of its own; the rows it
  counts must not change inside it.
- ``cli NAME``: runs the ``mangostore`` command line (``memory list``, ``status``).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import sqlcipher3

import mangostore

COUNT_SQL = "SELECT count(*) FROM command_history"
#: Opens each writer, reader and checkpointer makes at the least, going on past SECONDS
#: when the machine is slow: the opens the test counts must not depend on its load.
MIN_OPENS_EACH = 10


def going_on(deadline: float, opens: int) -> bool:
    """Whether a role that opens the database again and again opens it once more."""
    return time.monotonic() < deadline or opens < MIN_OPENS_EACH


def writer(path: str, deadline: float, name: str, mode: str, acks: Path) -> dict[str, int]:
    """Commit rows and acknowledge each commit after it returned."""
    committed = transactions = opens = 0
    per_transaction = 20 if mode == "long" else 1
    while going_on(deadline, opens):
        opens += 1
        with mangostore.open(path, os.environ["MANGOSTORE_PASSPHRASE"], create=False) as db:
            user = db.users.get_by_username(name) or db.users.create(username=name)
            for _ in range(10 if mode == "long" else 100):
                if time.monotonic() >= deadline and transactions > 0:
                    break
                with db.transaction():
                    for i in range(per_transaction):
                        db.command_history.create(
                            user_id=user.id, command=f"{name} {committed + i}", timestamp=1
                        )
                    if mode == "long":
                        time.sleep(random.uniform(0.05, 0.4))  # a long-held write lock
                committed += per_transaction
                transactions += 1
                with acks.open("a", encoding="utf-8") as out:
                    out.write(f"{committed}\n")
                time.sleep(random.uniform(0, 0.01))
    return {"opens": opens, "transactions": transactions, "rows": committed}


def acknowledged(ackdir: Path) -> dict[str, int]:
    """The rows each writer has acknowledged so far (by user name)."""
    found = {}
    for file in ackdir.glob("*.acks"):
        lines = file.read_text(encoding="utf-8").split()
        if lines:
            found[file.stem] = int(lines[-1])
    return found


def reader(path: str, deadline: float, ackdir: Path) -> dict[str, int]:
    """Open, read through the query cache, close; never see less than acknowledged."""
    opens = reads = 0
    while going_on(deadline, opens):
        opens += 1
        with mangostore.open(path, os.environ["MANGOSTORE_PASSPHRASE"], create=False) as db:
            for _ in range(random.randint(1, 20)):
                expected = acknowledged(ackdir)
                for name, rows in expected.items():
                    user = db.users.get_by_username(name)
                    seen = 0 if user is None else db.command_history.count(user_id=user.id)
                    if seen < rows:
                        sys.exit(f"stale read: {name} has {seen} rows, {rows} acknowledged")
                    reads += 1
                db.query(COUNT_SQL)
                time.sleep(random.uniform(0, 0.02))
    return {"opens": opens, "reads": reads}


def checkpointer(path: str, deadline: float) -> dict[str, int]:
    """Checkpoint and truncate the WAL while others write and read."""
    opens = checkpoints = complete = 0
    while going_on(deadline, opens):
        opens += 1
        with mangostore.open(path, os.environ["MANGOSTORE_PASSPHRASE"], create=False) as db:
            for _ in range(10):
                checkpoints += 1
                complete += db.checkpoint(truncate=True)
                time.sleep(random.uniform(0.05, 0.2))
    return {"opens": opens, "checkpoints": checkpoints, "complete": complete}


def snapshot(path: str, deadline: float) -> dict[str, int]:
    """Hold read transactions on a plain connection; what they see must not move."""
    with mangostore.open(path, os.environ["MANGOSTORE_PASSPHRASE"], create=False) as db:
        assert db.keyring is not None
        key = db.keyring.subkey("page").hex()
    conn = sqlcipher3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{key}'\"")
    conn.execute("PRAGMA busy_timeout = 5000")
    snapshots = 0
    try:
        while time.monotonic() < deadline:
            conn.execute("BEGIN")
            first = conn.execute(COUNT_SQL).fetchone()[0]
            time.sleep(random.uniform(0.2, 1.0))
            again = conn.execute(COUNT_SQL).fetchone()[0]
            conn.execute("COMMIT")
            if first != again:
                sys.exit(f"a snapshot moved from {first} to {again} rows")
            snapshots += 1
    finally:
        conn.close()
    return {"snapshots": snapshots}


def cli(path: str, deadline: float, name: str) -> dict[str, int]:
    """Run read commands of the command line, as a person in another terminal would."""
    command = str(Path(sys.executable).parent / "mangostore")
    runs = 0
    while time.monotonic() < deadline:
        for args in (["memory", "list", path, "--user", name], ["status", path]):
            done = subprocess.run(
                [command, *args], capture_output=True, text=True, timeout=60, check=False
            )
            if done.returncode != 0:
                sys.exit(f"mangostore {' '.join(args)} exited {done.returncode}: {done.stderr}")
            runs += 1
    return {"runs": runs}


def main(argv: list[str]) -> None:
    role, path, seconds, *rest = argv
    deadline = time.monotonic() + float(seconds)
    if role == "writer":
        counters = writer(path, deadline, rest[0], rest[1], Path(rest[2]))
    elif role == "reader":
        counters = reader(path, deadline, Path(rest[0]))
    elif role == "checkpointer":
        counters = checkpointer(path, deadline)
    elif role == "snapshot":
        counters = snapshot(path, deadline)
    elif role == "cli":
        counters = cli(path, deadline, rest[0])
    else:
        sys.exit(f"unknown role {role!r}")
    print(json.dumps({"role": role, **counters}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
