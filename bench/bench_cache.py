"""Query cache and monitoring benchmarks, against bare sqlcipher3 and each other.

One encrypted database (cheapest KDF, for setup only) holds ``Config.rows`` users. It
is opened twice in the same run: once as shipped (statement monitoring and the query
cache on) and once with both off (``monitor_queries=False, cache_query_max_bytes=0``),
and a bare ``sqlcipher3`` connection keyed with the page sub-key reads the same file.

- ``cache read``: ``SELECT * FROM users WHERE id = ?`` for ids in a fixed random order:
  bare ``sqlcipher3`` (execute + fetchall), ``db.query`` with neither monitoring nor
  cache, ``db.query(..., use_cache=False)`` monitored (the ratio is what monitoring
  adds to an uncached point lookup), and a cache hit (one id, read again and again)
  against both the uncached ``db.query`` and bare ``sqlcipher3``; ``db.users.get``
  uncached and from the cache.
- ``cache write``: one ``UPDATE`` per transaction through ``db.execute``, with the
  cache and monitoring off and on (what tracking the tables written costs each
  write), next to bare ``BEGIN IMMEDIATE; UPDATE; COMMIT``; then a read followed by
  an update of the table it read, so every write invalidates a cached result and
  every read misses and stores again: the worst case of caching.
"""

from __future__ import annotations

import itertools
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uuid6

import mangostore
from bench.harness import Config, Measurement, Suite, raw_connection
from mangostore import KdfParams, Settings

PASSPHRASE = "bench: correct horse battery staple"
FAST_KDF = KdfParams(memory_kib=19_456, iterations=2, parallelism=1)
LOOKUP_SQL = "SELECT * FROM users WHERE id = ?"
UPDATE_SQL = "UPDATE users SET updated_at = ? WHERE id = ?"
INSERT_SQL = (
    "INSERT INTO users (id, username, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
)
#: Settings with the query cache and statement monitoring off: the library without them.
BARE = Settings(kdf=FAST_KDF, monitor_queries=False, cache_query_max_bytes=0)
SHIPPED = Settings(kdf=FAST_KDF)


def run(config: Config) -> list[Measurement]:
    """Seed a database in a temporary folder, run every cache benchmark, return the rows."""
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp:
        path = Path(tmp) / "cache.db"
        ids = _seed(path, config.rows)
        with (
            mangostore.open(path, passphrase=PASSPHRASE, settings=SHIPPED) as db,
            mangostore.open(path, passphrase=PASSPHRASE, settings=BARE) as bare,
        ):
            assert db.keyring is not None
            raw = raw_connection(path, db.keyring.subkey("page"), writer=True)
            try:
                results = _bench_read(config, db, bare, raw, ids)
                results += _bench_write(config, db, bare, raw, ids)
            finally:
                raw.close()
    return results


def _seed(path: Path, count: int) -> list[str]:
    now = int(time.time() * 1000)
    ids = [str(uuid6.uuid7()) for _ in range(count)]
    with (
        mangostore.create(path, passphrase=PASSPHRASE, settings=BARE).db as db,
        db.transaction(),
    ):
        for uid in ids:
            db.execute(INSERT_SQL, (uid, f"user-{uid}", f"{uid}@example.com", now, now))
    return ids


def _cycle(ids: list[str]) -> Iterator[str]:
    return itertools.cycle(random.Random(7).sample(ids, len(ids)))


def _bench_read(
    config: Config,
    db: mangostore.Database,
    bare: mangostore.Database,
    raw: Any,
    ids: list[str],
) -> list[Measurement]:
    suite = Suite("cache read", config)
    number = 2_000
    raw_ids, bare_ids, db_ids, get_ids = (_cycle(ids) for _ in range(4))
    hot = ids[len(ids) // 2]

    def raw_once() -> list[Any]:
        return list(raw.execute(LOOKUP_SQL, (next(raw_ids),)).fetchall())

    suite.add("sqlcipher3 SELECT", raw_once, number=number)
    suite.add(
        "db.query, no monitor, no cache",
        lambda: bare.query(LOOKUP_SQL, (next(bare_ids),)),
        number=number,
        baseline="sqlcipher3 SELECT",
    )
    suite.add(
        "db.query, monitored, use_cache=False",
        lambda: db.query(LOOKUP_SQL, (next(db_ids),), use_cache=False),
        number=number,
        baseline="db.query, no monitor, no cache",
    )
    hit: Callable[[], Any] = lambda: db.query(LOOKUP_SQL, (hot,))  # noqa: E731
    suite.add(
        "db.query, cache hit", hit, number=number, baseline="db.query, monitored, use_cache=False"
    )
    suite.add("db.query, cache hit (again)", hit, number=number, baseline="sqlcipher3 SELECT")
    suite.add(
        "db.users.get, use_cache=False",
        lambda: db.users.get(next(get_ids), use_cache=False),
        number=number,
        baseline="sqlcipher3 SELECT",
    )
    suite.add(
        "db.users.get, cache hit",
        lambda: db.users.get(hot),
        number=number,
        baseline="db.users.get, use_cache=False",
    )
    return suite.run()


def _bench_write(
    config: Config,
    db: mangostore.Database,
    bare: mangostore.Database,
    raw: Any,
    ids: list[str],
) -> list[Measurement]:
    suite = Suite("cache write", config)
    number = 500
    stamps = itertools.count(1)
    raw_ids, bare_ids, db_ids = (_cycle(ids) for _ in range(3))
    target = ids[0]

    def raw_once() -> None:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(UPDATE_SQL, (next(stamps), next(raw_ids)))
        raw.execute("COMMIT")

    def read_then_write(database: mangostore.Database) -> Callable[[], None]:
        def once() -> None:
            database.query(LOOKUP_SQL, (target,))
            database.execute(UPDATE_SQL, (next(stamps), target))

        return once

    suite.add("sqlcipher3 BEGIN/UPDATE/COMMIT", raw_once, number=number)
    suite.add(
        "db.execute UPDATE, no monitor, no cache",
        lambda: bare.execute(UPDATE_SQL, (next(stamps), next(bare_ids))),
        number=number,
        baseline="sqlcipher3 BEGIN/UPDATE/COMMIT",
    )
    suite.add(
        "db.execute UPDATE, monitored, cache on",
        lambda: db.execute(UPDATE_SQL, (next(stamps), next(db_ids))),
        number=number,
        baseline="db.execute UPDATE, no monitor, no cache",
    )
    suite.add(
        "read + UPDATE of it, no monitor, no cache",
        read_then_write(bare),
        number=number,
    )
    suite.add(
        "read + UPDATE of it, cached then invalidated",
        read_then_write(db),
        number=number,
        baseline="read + UPDATE of it, no monitor, no cache",
    )
    return suite.run()
