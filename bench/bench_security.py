"""Access-control and session benchmarks, against a bare indexed SELECT in the same run.

- ``access check``: ``db.access.check`` answered from the cache (the common case: no
  commit since the last check), and uncached (the cache emptied before every call, so
  each check reads the generation counter and the records in one snapshot), next to
  the bare indexed SELECT of the same records on a raw ``sqlcipher3`` connection keyed
  with the database's page key. A conditional grant (a time window, evaluated with the
  clock at every check) is timed cached as well. Goals: cached under 5 µs median,
  uncached under 100 µs.
- ``session validate``: ``db.sessions.validate`` (parse the token, find the session by
  selector, recompute the verifier's HMAC, check lifetimes, load the user; activity is
  written at most once a minute, so not within a round) and ``db.sessions.peek`` (no
  activity bookkeeping at all), next to the bare SELECT of the session row by its
  indexed ``session_token``.

The database is seeded through the repositories (``Config.rows`` users with a grant
each, plus the measured user's dozen grants across types, ``'*'`` and a deny); opening
uses the cheapest allowed KDF and is not measured.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import sqlcipher3

import mangostore
from bench.harness import Config, Measurement, Suite
from mangostore import KdfParams, Settings

PASSPHRASE = "bench: correct horse battery staple"
#: The cheapest Argon2id parameters mangostore accepts: setup only.
FAST_KDF = KdfParams(memory_kib=19_456, iterations=2, parallelism=1)
#: The whole day, in UTC: the conditional grant always applies, so it is always evaluated.
ALL_DAY = {"time_window": {"start": "00:00", "end": "23:59"}}

SQL_PERMISSIONS = (
    "SELECT id, resource_id, permission_type, expires_at, conditions FROM permissions "
    "WHERE user_id = ? AND resource_type = ? AND resource_id IN (?, '*') "
    "AND revoked_at IS NULL"
)
SQL_SESSION = (
    "SELECT id, user_id, created_at, last_activity, expires_at, revoked_at, is_active, "
    "security_level FROM user_sessions WHERE session_token = ?"
)


def run(config: Config) -> list[Measurement]:
    """Seed an encrypted database in a temporary folder, run both groups, return the rows."""
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp:
        path = Path(tmp) / "security.db"
        with mangostore.create(
            path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)
        ).db as db:
            assert db.keyring is not None
            user = _seed(db, config)
            raw = sqlcipher3.connect(str(path), isolation_level=None)
            try:
                raw.execute(f"PRAGMA key = \"x'{db.keyring.subkey('page').hex()}'\"")
                results = _bench_check(config, db, raw, user)
                results += _bench_validate(config, db, raw, user)
            finally:
                raw.close()
    return results


def _seed(db: mangostore.Database, config: Config) -> str:
    """Fill the database; return the id of the user whose permissions are checked."""
    users = db.users.create_many({"username": f"user-{n}"} for n in range(max(config.rows, 2)))
    db.permissions.create_many(
        {
            "user_id": u.id,
            "resource_type": "project",
            "resource_id": f"p{n}",
            "permission_type": "read",
        }
        for n, u in enumerate(users)
    )
    me = users[0].id
    access = db.access
    access.grant(me, "project", "p-read", "read")
    access.grant(me, "project", "p-write", "write")
    access.grant(me, "project", "p-admin", "admin")
    access.grant(me, "terminal", "*", "execute")
    access.grant(me, "terminal", "t-1", "read")
    access.grant(me, "voice", "*", "read")
    access.grant(me, "ai", "*", "read")
    access.grant(me, "ai", "a-timed", "write", conditions=ALL_DAY)
    access.deny(me, "ai", "a-private", "read")
    return me


def _bench_check(config: Config, db: mangostore.Database, raw: Any, user: str) -> list[Measurement]:
    suite = Suite("access check", config)
    number = 5_000
    base = "sqlcipher3 indexed SELECT of the records"
    key = (user, "project", "p-admin")
    suite.add(base, lambda: raw.execute(SQL_PERMISSIONS, key).fetchall(), number=number)
    access = db.access
    assert access.check(user, "project", "p-admin", "write")
    suite.add(
        "db.access.check, cached",
        lambda: access.check(user, "project", "p-admin", "write"),
        number=number,
        baseline=base,
    )
    assert access.check(user, "ai", "a-timed", "write")
    suite.add(
        "db.access.check, cached, time window",
        lambda: access.check(user, "ai", "a-timed", "write"),
        number=number,
        baseline=base,
    )

    def uncached() -> bool:
        access.clear_cache()
        return access.check(user, "project", "p-admin", "write")

    suite.add("db.access.check, uncached", uncached, number=number // 5, baseline=base)
    return suite.run()


def _bench_validate(
    config: Config, db: mangostore.Database, raw: Any, user: str
) -> list[Measurement]:
    suite = Suite("session validate", config)
    number = 2_000
    issued = db.sessions.issue(user, ip_address="192.0.2.1", user_agent="bench")
    token = issued.token
    selector = (issued.session.session_token,)
    base = "sqlcipher3 indexed SELECT of the session"
    suite.add(base, lambda: raw.execute(SQL_SESSION, selector).fetchone(), number=number)
    suite.add(
        "db.sessions.validate", lambda: db.sessions.validate(token), number=number, baseline=base
    )
    suite.add("db.sessions.peek", lambda: db.sessions.peek(token), number=number, baseline=base)
    return suite.run()
