"""Engine benchmarks: opening, point lookups and single-row inserts, against bare sqlcipher3.

Every mangostore figure has a baseline doing the same work straight through
``sqlcipher3`` on the same file, in the same run:

- ``open``: opening an existing database, whose cost is mostly Argon2id, next to
  Argon2id alone with the same parameters (default and the cheapest allowed);
- ``lookup``: ``SELECT * FROM users WHERE id = ?`` through ``db.query`` next to a raw
  connection that fetches the row and builds a dict, encrypted and unencrypted;
- ``insert``: one ``users`` row per transaction through ``db.execute`` next to
  ``BEGIN IMMEDIATE; INSERT; COMMIT`` on a raw connection with the writer's pragmas.
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
from argon2.low_level import Type, hash_secret_raw

import mangostore
from bench.harness import Config, Measurement, Suite, raw_connection
from mangostore import KdfParams, Settings

PASSPHRASE = "bench: correct horse battery staple"
#: The cheapest Argon2id parameters mangostore accepts (OWASP's floor).
FAST_KDF = KdfParams(memory_kib=19_456, iterations=2, parallelism=1)
LOOKUP_SQL = "SELECT * FROM users WHERE id = ?"
INSERT_SQL = (
    "INSERT INTO users (id, username, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
)
UserRow = tuple[str, str, str, int, int]


def run(config: Config) -> list[Measurement]:
    """Seed the databases in a temporary folder, run every engine benchmark, return the rows."""
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp:
        folder = Path(tmp)
        slow = folder / "default-kdf.db"
        fast = folder / "fast-kdf.db"
        plain = folder / "plain.db"
        users = _user_rows(config.rows)  # the same rows in every database
        _seed(slow, users, Settings(), encrypted=True)
        _seed(fast, users, Settings(kdf=FAST_KDF), encrypted=True)
        _seed(plain, users, Settings(), encrypted=False)
        ids = [user[0] for user in users]
        results = _bench_open(config, slow, fast, plain)
        fast_settings = Settings(kdf=FAST_KDF)
        with (
            mangostore.open(fast, passphrase=PASSPHRASE, settings=fast_settings) as enc_db,
            mangostore.open(plain, encrypted=False) as plain_db,
        ):
            assert enc_db.keyring is not None
            page_key = enc_db.keyring.subkey("page")
            results += _bench_lookup(config, enc_db, plain_db, page_key, ids)
            results += _bench_insert(config, enc_db, plain_db, page_key)
    return results


# -- data -------------------------------------------------------------------------------


def _user_rows(count: int) -> list[UserRow]:
    """Make ``count`` new users rows: UUIDv7 ids, epoch-millisecond timestamps."""
    now = int(time.time() * 1000)
    rows = []
    for _ in range(count):
        uid = str(uuid6.uuid7())
        rows.append((uid, f"user-{uid}", f"{uid}@example.com", now, now))
    return rows


def _seed(path: Path, users: list[UserRow], settings: Settings, *, encrypted: bool) -> None:
    """Create the database at ``path`` holding ``users``."""
    passphrase = PASSPHRASE if encrypted else None
    with (
        mangostore.create(path, passphrase, encrypted=encrypted, settings=settings).db as db,
        db.transaction(),
    ):
        for row in users:
            db.execute(INSERT_SQL, row)


# -- open -------------------------------------------------------------------------------


def _argon2(params: KdfParams) -> Callable[[], bytes]:
    salt = b"\x00" * 16
    return lambda: hash_secret_raw(
        secret=PASSPHRASE.encode(),
        salt=salt,
        time_cost=params.iterations,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=32,
        type=Type.ID,
    )


def _open_close(path: Path, passphrase: str | None) -> Callable[[], None]:
    def once() -> None:
        mangostore.open(path, passphrase, encrypted=passphrase is not None).close()

    return once


def _raw_open_close(path: Path, page_key: bytes | None) -> Callable[[], None]:
    def once() -> None:
        conn = raw_connection(path, page_key)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # decrypts page 1
        conn.close()

    return once


def _bench_open(config: Config, slow: Path, fast: Path, plain: Path) -> list[Measurement]:
    suite = Suite("open", config)
    suite.add("argon2id, default params", _argon2(KdfParams()), number=1)
    suite.add(
        "mangostore.open+close, default KDF",
        _open_close(slow, PASSPHRASE),
        number=1,
        baseline="argon2id, default params",
    )
    suite.add("argon2id, FAST params", _argon2(FAST_KDF), number=3)
    suite.add(
        "mangostore.open+close, FAST KDF",
        _open_close(fast, PASSPHRASE),
        number=3,
        baseline="argon2id, FAST params",
    )
    with mangostore.open(fast, PASSPHRASE) as db:
        assert db.keyring is not None
        page_key = db.keyring.subkey("page")
    suite.add("sqlcipher3 connect+key+read", _raw_open_close(fast, page_key), number=100)
    suite.add("sqlite connect+read, plain", _raw_open_close(plain, None), number=100)
    suite.add(
        "mangostore.open+close, unencrypted",
        _open_close(plain, None),
        number=30,
        baseline="sqlite connect+read, plain",
    )
    return suite.run()


# -- point lookup -----------------------------------------------------------------------


def _raw_lookup(conn: Any, ids: Iterator[str]) -> Callable[[], dict[str, Any]]:
    def once() -> dict[str, Any]:
        cursor = conn.execute(LOOKUP_SQL, (next(ids),))
        row = cursor.fetchone()
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    return once


def _lookup(db: mangostore.Database, ids: Iterator[str]) -> Callable[[], list[Any]]:
    # The engine's path, not the query cache (bench_cache.py measures that).
    return lambda: db.query(LOOKUP_SQL, (next(ids),), use_cache=False)


def _bench_lookup(
    config: Config,
    enc_db: mangostore.Database,
    plain_db: mangostore.Database,
    page_key: bytes,
    ids: list[str],
) -> list[Measurement]:
    suite = Suite("lookup", config)
    order = random.Random(7).sample(ids, len(ids))  # same random order for every row
    number = 2_000
    raw_plain = raw_connection(Path(plain_db.path), None)
    raw_enc = raw_connection(Path(enc_db.path), page_key)
    cold_plain = raw_connection(Path(plain_db.path), None, page_cache=False)
    cold_enc = raw_connection(Path(enc_db.path), page_key, page_cache=False)
    try:
        suite.add("sqlite, plain", _raw_lookup(raw_plain, itertools.cycle(order)), number=number)
        suite.add(
            "mangostore db.query, unencrypted",
            _lookup(plain_db, itertools.cycle(order)),
            number=number,
            baseline="sqlite, plain",
        )
        suite.add(
            "sqlcipher3, encrypted",
            _raw_lookup(raw_enc, itertools.cycle(order)),
            number=number,
            baseline="sqlite, plain",
        )
        suite.add(
            "mangostore db.query, encrypted",
            _lookup(enc_db, itertools.cycle(order)),
            number=number,
            baseline="sqlcipher3, encrypted",
        )
        suite.add(
            "sqlite, plain, cache_size=0",
            _raw_lookup(cold_plain, itertools.cycle(order)),
            number=number,
        )
        suite.add(
            "sqlcipher3, encrypted, cache_size=0",
            _raw_lookup(cold_enc, itertools.cycle(order)),
            number=number,
            baseline="sqlite, plain, cache_size=0",
        )
        return suite.run()
    finally:
        for conn in (raw_plain, raw_enc, cold_plain, cold_enc):
            conn.close()


# -- single-row insert ------------------------------------------------------------------


def _raw_insert(conn: Any, rows: Iterator[UserRow]) -> Callable[[], None]:
    def once() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(INSERT_SQL, next(rows))
        conn.execute("COMMIT")

    return once


def _insert(db: mangostore.Database, rows: Iterator[UserRow]) -> Callable[[], int]:
    return lambda: db.execute(INSERT_SQL, next(rows))


def _bench_insert(
    config: Config,
    enc_db: mangostore.Database,
    plain_db: mangostore.Database,
    page_key: bytes,
) -> list[Measurement]:
    suite = Suite("insert", config)
    number = 1_000

    def fresh() -> Iterator[UserRow]:
        # Made before timing starts, so no measurement pays for UUIDs.
        return iter(_user_rows(config.total_calls(number)))

    raw_plain = raw_connection(Path(plain_db.path), None, writer=True)
    raw_enc = raw_connection(Path(enc_db.path), page_key, writer=True)
    try:
        suite.add("sqlite, plain", _raw_insert(raw_plain, fresh()), number=number)
        suite.add(
            "mangostore db.execute, unencrypted",
            _insert(plain_db, fresh()),
            number=number,
            baseline="sqlite, plain",
        )
        suite.add(
            "sqlcipher3, encrypted",
            _raw_insert(raw_enc, fresh()),
            number=number,
            baseline="sqlite, plain",
        )
        suite.add(
            "mangostore db.execute, encrypted",
            _insert(enc_db, fresh()),
            number=number,
            baseline="sqlcipher3, encrypted",
        )
        return suite.run()
    finally:
        raw_plain.close()
        raw_enc.close()
