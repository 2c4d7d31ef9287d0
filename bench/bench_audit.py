"""Audit-log benchmarks: appending to the HMAC chain and verifying it, against bare SQL.

Every figure has baselines run straight through ``sqlcipher3`` on the same encrypted
file, in the same run, on raw connections keyed with the database's page key:

- ``audit append``: ``db.audit.append`` of a realistic event (sealed ``event_data`` and
  ``client_info`` under the user's data key, next sequence number, MAC), in its own
  transaction, next to a bare indexed ``SELECT`` by id and to a bare ``INSERT`` of a
  row of the same size into an indexed table in its own ``BEGIN IMMEDIATE``/``COMMIT``.
  ``db.audit.append`` inside a caller's transaction of 100 events is also shown, per
  event, next to 100 bare inserts in one transaction.
- ``audit verify``: ``db.audit.verify()`` over ``Config.rows`` events, per event, next
  to a bare scan of the same rows in sequence order.

Run as a script it measures the size instead: ``python -m bench.bench_audit --size N``
appends N realistic events of one heavy user to a new encrypted database and reports
the bytes per event and the extrapolation to 30 days at 2,000 events a day.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uuid6

import mangostore
from bench.harness import Config, Measurement, Suite, raw_connection
from mangostore import KdfParams, Settings

PASSPHRASE = "bench: correct horse battery staple"
#: The cheapest Argon2id parameters mangostore accepts: setup only.
FAST_KDF = KdfParams(memory_kib=19_456, iterations=2, parallelism=1)
#: A heavy user's day, as the seed's 15.2 size target counts it.
EVENTS_PER_DAY = 2_000
DAYS = 30
TARGET_BYTES = 100 * 1024 * 1024
BATCH = 100


def realistic_events(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Make ``count`` events as a busy terminal user produces them.

    The mix: command executions (60%), permission checks (20%), voice commands (10%),
    logins and session checks (7%), data exports and the like (3%), each with the
    fields its source component records.
    """
    rng = random.Random(seed)
    commands = [
        "git status",
        "git commit -m 'fix flaky test in the sync client'",
        "pytest -x tests/test_sync.py -k conflict",
        "docker compose up -d postgres",
        "make lint",
        "npm run build -- --mode production",
        "ssh deploy@staging.example.net 'systemctl restart mango'",
    ]
    agents = [
        "AlphanumericMango/1.4.2 (Linux x86_64; tmux 3.4)",
        "AlphanumericMango/1.4.2 (macOS 14.5; iTerm2)",
    ]
    events: list[dict[str, Any]] = []
    for _ in range(count):
        roll = rng.random()
        ip = f"192.168.{rng.randrange(4)}.{rng.randrange(2, 250)}"
        client = {"ip": ip, "user_agent": rng.choice(agents), "device": "workstation-3"}
        event: dict[str, Any]
        if roll < 0.6:
            event = {
                "event_type": "command",
                "severity": "info",
                "source_component": "terminal",
                "event_data": {
                    "command": rng.choice(commands),
                    "cwd": f"/home/dev/src/project-{rng.randrange(12)}",
                    "exit_code": rng.choice([0, 0, 0, 1, 2]),
                    "duration_ms": rng.randrange(5, 90_000),
                    "session": f"tmux-{rng.randrange(8)}",
                },
                "client_info": None,
                "risk_score": rng.choice([0.0, 0.0, 0.1, 0.4]),
            }
        elif roll < 0.8:
            granted = rng.random() < 0.95
            event = {
                "event_type": "access",
                "severity": "info" if granted else "warning",
                "source_component": "permissions",
                "event_data": {
                    "resource_type": rng.choice(["project", "terminal", "voice", "ai"]),
                    "resource_id": str(uuid6.uuid7()),
                    "permission": rng.choice(["read", "write", "execute"]),
                    "granted": granted,
                },
                "client_info": None,
                "risk_score": 0.0 if granted else 2.5,
            }
        elif roll < 0.9:
            event = {
                "event_type": "voice",
                "severity": "info",
                "source_component": "voice",
                "event_data": {
                    "transcript": "run the tests for the sync module",
                    "confidence": round(rng.uniform(0.7, 0.99), 3),
                    "profile": "default",
                },
                "client_info": {"device": "usb-microphone", "sample_rate": 16_000},
                "risk_score": 0.0,
            }
        elif roll < 0.97:
            ok = rng.random() < 0.9
            event = {
                "event_type": "auth",
                "severity": "info" if ok else "warning",
                "source_component": "auth",
                "event_data": {"action": "login" if ok else "login_failed", "method": "password"},
                "client_info": client,
                "risk_score": 0.5 if ok else 12.0,
            }
        else:
            event = {
                "event_type": "data",
                "severity": "info",
                "source_component": "privacy",
                "event_data": {"action": "export", "tables": 14, "rows": rng.randrange(10_000)},
                "client_info": client,
                "risk_score": 1.0,
            }
        events.append(event)
    return events


def run(config: Config) -> list[Measurement]:
    """Seed an encrypted database in a temporary folder, run every benchmark, return the rows."""
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp:
        path = Path(tmp) / "audit.db"
        with mangostore.create(
            path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)
        ).db as db:
            assert db.keyring is not None
            page_key = db.keyring.subkey("page")
            user = db.users.create(username="heavy-user").id
            _seed(db, user, config.rows)
            reader = raw_connection(path, page_key)
            writer = raw_connection(path, page_key, writer=True)
            try:
                writer.execute(
                    "CREATE TABLE bench_plain (id TEXT PRIMARY KEY, user_id TEXT, "
                    "timestamp INTEGER NOT NULL, event_data BLOB, client_info BLOB)"
                )
                writer.execute("CREATE INDEX bench_plain_user ON bench_plain(user_id)")
                results = _bench_append(config, db, user, reader, writer)
                results += _bench_verify(config, db, reader)
            finally:
                reader.close()
                writer.close()
    return results


def _seed(db: mangostore.Database, user: str, count: int) -> None:
    with db.transaction():
        for event in realistic_events(count):
            db.audit.append(user_id=user, **event)


def _bench_append(
    config: Config, db: mangostore.Database, user: str, reader: Any, writer: Any
) -> list[Measurement]:
    suite = Suite("audit append", config)
    ids = itertools.cycle([r[0] for r in db.query("SELECT id FROM security_events LIMIT 1000")])
    select = "SELECT * FROM security_events WHERE id = ?"
    suite.add(
        "sqlcipher3 indexed SELECT by id",
        lambda: reader.execute(select, (next(ids),)).fetchone(),
        number=2_000,
    )
    # A row as large as a sealed event: two envelopes of about the same sizes.
    data, client = os.urandom(190), os.urandom(120)
    insert = (
        "INSERT INTO bench_plain (id, user_id, timestamp, event_data, client_info) "
        "VALUES (?, ?, ?, ?, ?)"
    )

    def raw_insert() -> None:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(insert, (str(uuid6.uuid7()), user, time.time_ns(), data, client))
        writer.execute("COMMIT")

    suite.add("sqlcipher3 indexed INSERT, own transaction", raw_insert, number=500)
    events = itertools.cycle(realistic_events(1_000, seed=11))
    suite.add(
        "db.audit.append, own transaction",
        lambda: db.audit.append(user_id=user, **next(events)),
        number=500,
        baseline="sqlcipher3 indexed INSERT, own transaction",
    )
    suite.add(
        "db.audit.append vs indexed SELECT",
        lambda: db.audit.append(user_id=user, **next(events)),
        number=500,
        baseline="sqlcipher3 indexed SELECT by id",
    )

    def raw_batch() -> None:
        writer.execute("BEGIN IMMEDIATE")
        for _ in range(BATCH):
            writer.execute(insert, (str(uuid6.uuid7()), user, time.time_ns(), data, client))
        writer.execute("COMMIT")

    def audit_batch() -> None:
        with db.transaction():
            for _ in range(BATCH):
                db.audit.append(user_id=user, **next(events))

    suite.add(f"sqlcipher3 {BATCH} INSERTs, one transaction", raw_batch, number=20)
    suite.add(
        f"db.audit.append x{BATCH}, one transaction",
        audit_batch,
        number=20,
        baseline=f"sqlcipher3 {BATCH} INSERTs, one transaction",
    )
    return suite.run()


def _bench_verify(config: Config, db: mangostore.Database, reader: Any) -> list[Measurement]:
    suite = Suite("audit verify", config)
    scan = "SELECT * FROM security_events ORDER BY seq"
    suite.add("sqlcipher3 scan in seq order", lambda: reader.execute(scan).fetchall(), number=5)
    suite.add(
        "db.audit.verify()", db.audit.verify, number=5, baseline="sqlcipher3 scan in seq order"
    )
    return suite.run()


# -- size ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SizeReport:
    """Bytes the audit log takes per event, and 30 heavy days extrapolated."""

    events: int
    bytes_total: int
    bytes_per_event: float
    thirty_days_bytes: float

    @property
    def within_target(self) -> bool:
        """Whether 30 days stay under the seed's 100 MB."""
        return self.thirty_days_bytes < TARGET_BYTES


def measure_size(events: int, directory: Path | None = None) -> SizeReport:
    """Append ``events`` realistic events to a new encrypted database; measure its growth.

    The growth of the file (pages, indexes, free space; closing the database folds the
    WAL back into it) from just before the first event to just after the last is
    divided by the events.
    """
    settings = Settings(kdf=FAST_KDF)
    with tempfile.TemporaryDirectory(prefix="mangostore-size-", dir=directory) as tmp:
        path = Path(tmp) / "size.db"
        with mangostore.create(path, passphrase=PASSPHRASE, settings=settings).db as db:
            user = db.users.create(username="heavy-user").id
        before = os.path.getsize(path)
        with mangostore.open(path, passphrase=PASSPHRASE, settings=settings) as db:
            stream = realistic_events(events)
            for start in range(0, events, BATCH):
                with db.transaction():
                    for event in stream[start : start + BATCH]:
                        db.audit.append(user_id=user, **event)
        after = os.path.getsize(path)
    total = after - before
    per_event = total / events
    return SizeReport(events, total, per_event, per_event * EVENTS_PER_DAY * DAYS)


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="events to append")
    args = parser.parse_args()
    report = measure_size(args.size)
    mib = 1024 * 1024
    print(f"events:               {report.events}")
    print(f"file growth:          {report.bytes_total / mib:.2f} MiB")
    print(f"bytes per event:      {report.bytes_per_event:.0f}")
    print(
        f"30 days x {EVENTS_PER_DAY}/day:  {report.thirty_days_bytes / mib:.1f} MiB "
        f"(target < 100 MB: {'met' if report.within_target else 'MISSED'})"
    )


if __name__ == "__main__":
    _main()
