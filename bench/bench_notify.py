"""Notification benchmarks: ``db.notify.send`` against a bare INSERT of the same rows.

``send`` renders the type's template, reads the user's time zone and preference,
resolves the delivery methods (threshold, quiet hours, project override), inserts the
notification (sealing its ``metadata``), its delivery rows and its default action,
commits, calls the deliverers, and records their outcome in a second transaction. The
baseline inserts the same ``notifications`` row, with the same values (``metadata`` as
plain JSON), through ``sqlcipher3`` on the same file, one row per transaction
(``BEGIN IMMEDIATE; INSERT; COMMIT``), in the same run:

- ``db.notify.send, encrypted``: sends on an encrypted file (pages and ``metadata``
  encrypted), delivered to a no-op desktop deliverer and to the log (the
  ``mangostore.notify`` logger, below its level as in an application that does not
  log notifications);
- ``db.notify.send, deliver=False``: the same, recorded only (resolution and the first
  transaction with every insert), the deliveries left to ``deliver_due``;
- ``db.notify.send, held by quiet hours``: during the user's quiet hours: the log now,
  the desktop delivery queued for the end of the quiet hours (one deliverer call);
- ``db.notify.resolve``: resolving the methods alone (the type, the zone and the
  preference read, then the rules);
- ``db.notify.send, unencrypted``: the first case on an unencrypted file, against a
  plain SQLite INSERT.

Each round sends 10,000 notifications (at most three timed rounds, after one warm-up).
Inputs (ids, parameters) are made before timing starts.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uuid6

import mangostore
from bench.harness import Config, Measurement, Suite, raw_connection
from mangostore import KdfParams, Settings
from mangostore.records import Notification

PASSPHRASE = "bench: correct horse battery staple"
#: The cheapest Argon2id parameters mangostore accepts: setup only.
FAST_KDF = KdfParams(memory_kib=19_456, iterations=2, parallelism=1)
#: Notifications sent per round at scale 1.
SENDS = 10_000
#: Most timed rounds of :data:`SENDS` sends each (fewer when the config asks for fewer).
ROUNDS = 3
TEMPLATE = "Build {name} finished in {seconds} s"
INSERT_SQL = (
    "INSERT INTO notifications (id, user_id, notification_type_id, title, message, priority, "
    "status, delivery_methods, metadata, delivered_at, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, 'delivered', ?, ?, ?, ?)"
)


class NullDesktop:
    """A desktop deliverer that shows nothing: the cost measured is mangostore's."""

    method = "desktop"

    def deliver(self, notification: Notification) -> None:
        """Accept ``notification``."""


def run(config: Config) -> list[Measurement]:
    """Send notifications on fresh databases in a temporary folder; return the rows."""
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp:
        folder = Path(tmp)
        settings = Settings(kdf=FAST_KDF)
        with (
            mangostore.create(folder / "enc.db", PASSPHRASE, settings=settings).db as enc_db,
            mangostore.create(folder / "plain.db", encrypted=False).db as plain_db,
        ):
            enc = _setup(enc_db)
            plain = _setup(plain_db)
            assert enc_db.keyring is not None
            page_key = enc_db.keyring.subkey("page")
            return _bench_send(config, enc_db, enc, page_key) + _bench_plain(
                config, plain_db, plain
            )


# -- data -------------------------------------------------------------------------------


def _setup(db: mangostore.Database) -> dict[str, str]:
    """Make the sending user, a quiet user, and the type; return their ids."""
    user = db.users.create(username="ann")
    night = db.users.create(username="owl")
    ntype = db.notify.register_type(
        "build.finished",
        category="project",
        template=TEMPLATE,
        default_actions=[{"type": "button", "label": "Open log", "command": "open-log"}],
    )
    db.notify.set_preferences(user.id, "build.finished", delivery_methods=["desktop", "log"])
    # Quiet around the clock: every send of this user is held (only 23:59-00:00 is not).
    db.notify.set_preferences(
        night.id,
        "build.finished",
        delivery_methods=["desktop", "log"],
        quiet_hours=("00:00", "23:59"),
    )
    db.notify.register_deliverer(NullDesktop())
    return {"user": user.id, "night": night.id, "type": ntype.id}


def _params(count: int) -> Iterator[dict[str, str | int]]:
    return iter([{"name": f"api-{i}", "seconds": i % 600} for i in range(count)])


def _rows(count: int, ids: dict[str, str]) -> Iterator[tuple[Any, ...]]:
    """The rows ``send`` writes, ready for a bare INSERT."""
    now = int(time.time() * 1000)
    rows = []
    for i in range(count):
        rows.append(
            (
                str(uuid6.uuid7()),
                ids["user"],
                ids["type"],
                "build.finished",
                TEMPLATE.format(name=f"api-{i}", seconds=i % 600),
                "normal",
                '["desktop","log"]',
                json.dumps({"run": i}),
                now,
                now,
            )
        )
    return iter(rows)


# -- measurements -----------------------------------------------------------------------


def _raw_insert(conn: Any, rows: Iterator[tuple[Any, ...]]) -> Callable[[], None]:
    def once() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(INSERT_SQL, next(rows))
        conn.execute("COMMIT")

    return once


def _send(
    db: mangostore.Database,
    user_id: str,
    params: Iterator[dict[str, str | int]],
    *,
    deliver: bool = True,
) -> Callable[[], Notification]:
    counter = iter(range(1 << 62))
    return lambda: db.notify.send(
        user_id, "build.finished", next(params), metadata={"run": next(counter)}, deliver=deliver
    )


def _resolve(db: mangostore.Database, user_id: str) -> Callable[[], object]:
    return lambda: db.notify.resolve(user_id, "build.finished")


def _capped(config: Config) -> Config:
    """``config`` with at most :data:`ROUNDS` rounds: each round is 10,000 sends."""
    return dataclasses.replace(config, rounds=min(config.rounds, ROUNDS))


def _bench_send(
    config: Config, db: mangostore.Database, ids: dict[str, str], page_key: bytes
) -> list[Measurement]:
    config = _capped(config)
    suite = Suite("notify", config)
    total = config.total_calls(SENDS)
    raw = raw_connection(Path(db.path), page_key, writer=True)
    try:
        base = "sqlcipher3 INSERT, encrypted"
        suite.add(base, _raw_insert(raw, _rows(total, ids)), number=SENDS)
        suite.add(
            "db.notify.send, encrypted",
            _send(db, ids["user"], _params(total)),
            number=SENDS,
            baseline=base,
        )
        suite.add(
            "db.notify.send, deliver=False",
            _send(db, ids["user"], _params(total), deliver=False),
            number=SENDS,
            baseline=base,
        )
        suite.add(
            "db.notify.send, held by quiet hours",
            _send(db, ids["night"], _params(total)),
            number=SENDS,
            baseline=base,
        )
        suite.add("db.notify.resolve", _resolve(db, ids["user"]), number=SENDS, baseline=base)
        return suite.run()
    finally:
        raw.close()


def _bench_plain(config: Config, db: mangostore.Database, ids: dict[str, str]) -> list[Measurement]:
    config = _capped(config)
    suite = Suite("notify, unencrypted", config)
    total = config.total_calls(SENDS)
    raw = raw_connection(Path(db.path), None, writer=True)
    try:
        base = "sqlite INSERT, plain"
        suite.add(base, _raw_insert(raw, _rows(total, ids)), number=SENDS)
        suite.add(
            "db.notify.send, unencrypted",
            _send(db, ids["user"], _params(total)),
            number=SENDS,
            baseline=base,
        )
        return suite.run()
    finally:
        raw.close()
