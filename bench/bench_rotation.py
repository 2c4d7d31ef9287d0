"""Field-key rotation at 1,000 and 4,000 users, and what it costs a writer in another process.

- ``key rotation, N users``: ``rotate_field_keys`` on an encrypted database where each
  of N users has one encrypted value (``users.security_profile``): a new key for every
  user (in batches, one keyring write each), then every value opened and sealed again.
  Baseline: the raw engine doing the same number of row updates in one transaction
  with a bare AES-GCM open and seal of the same value (what the work costs without
  keys, batches or bookkeeping).
- ``writer during rotation``: another process inserts a row with ``db.execute`` every
  few milliseconds while the 4,000-user rotation runs; its per-write latency (median,
  p95, and the longest wait as ``max``) next to the same writes with no rotation.
  Goal: the longest wait under 200 ms.

Each round uses a new database (keys and values made in batches, not measured).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import mangostore
from bench.harness import Config, Measurement, measure_seconds, raw_connection
from mangostore import KdfParams, Settings
from mangostore.keys.field_cipher import field_cipher_for
from mangostore.keys.rotation import rotate_field_keys

PASSPHRASE = "bench: correct horse battery staple"
FAST_KDF = KdfParams(memory_kib=19_456, iterations=2, parallelism=1)
SIZES = (1_000, 4_000)
NOW = 1_700_000_000_000

WRITER = """
import json, os, sys, time, mangostore
db = mangostore.open(sys.argv[1], sys.argv[2], create=False)
db.execute("CREATE TABLE IF NOT EXISTS bench_writes (n INTEGER)")
print("READY", flush=True)
waits = []
while not os.path.exists(sys.argv[3]):
    started = time.perf_counter_ns()
    db.execute("INSERT INTO bench_writes VALUES (1)")
    waits.append(time.perf_counter_ns() - started)
    time.sleep(0.005)
db.close()
print(json.dumps(waits), flush=True)
"""


def run(config: Config) -> list[Measurement]:
    """Time rotations of each size and a concurrent writer; return the rows."""
    scale = max(config.rows / Config().rows, 0.01)  # smoke runs rotate a few users
    sizes = [max(5, round(n * scale)) for n in SIZES]
    rounds = max(1, min(config.rounds, 3))
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp:
        folder = Path(tmp)
        for size in sizes:
            group = f"key rotation, {size:,} users"
            raw = [_time_raw(folder, size, r) for r in range(rounds)]
            rotations = [_time_rotation(folder, size, r) for r in range(rounds)]
            base = measure_seconds(group, f"sqlcipher3 re-seal of {size:,} values", raw)
            results += [base, measure_seconds(group, "rotate_field_keys", rotations, base)]
        results += _writer_during_rotation(folder, sizes[-1])
    return results


def _seed(path: Path, users: int) -> mangostore.Database:
    """An encrypted database whose users each have a key and one encrypted value."""
    db = mangostore.create(path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)).db
    cipher = field_cipher_for(db)
    assert cipher is not None
    ids = [str(uuid.uuid4()) for _ in range(users)]
    with db.transaction():
        for start in range(0, users, 500):
            for user_id in ids[start : start + 500]:
                db.execute(
                    "INSERT INTO users (id, username, created_at, updated_at) VALUES (?, ?, ?, ?)",
                    (user_id, f"user-{user_id}", NOW, NOW),
                )
    for start in range(0, users, 500):
        batch = ids[start : start + 500]
        with db.store.transaction() as conn:
            # First keys made in batches (one keyring write each), not one by one.
            cipher.rotate_user_keys(conn, batch)
            for user_id in batch:
                db.users.update(user_id, security_profile={"pin": secrets.token_hex(8)})
    return db


def _time_rotation(folder: Path, users: int, round_: int) -> float:
    with _seed(folder / f"rotate-{users}-{round_}.db", users) as db:
        started = time.perf_counter()
        report = rotate_field_keys(db)
        elapsed = time.perf_counter() - started
        assert report.values_reencrypted == users, report
    return elapsed


def _time_raw(folder: Path, users: int, round_: int) -> float:
    """The same row updates on a bare connection, each value opened and sealed again."""
    path = folder / f"raw-{users}-{round_}.db"
    conn = raw_connection(path, secrets.token_bytes(32), writer=True)
    try:
        conn.execute("CREATE TABLE sealed (id TEXT PRIMARY KEY, value BLOB)")
        old, new = AESGCM(secrets.token_bytes(32)), AESGCM(secrets.token_bytes(32))
        rows = []
        for _ in range(users):
            nonce = secrets.token_bytes(12)
            rows.append((str(uuid.uuid4()), nonce + old.encrypt(nonce, b'{"pin": "x"}', None)))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO sealed VALUES (?, ?)", rows)
        conn.execute("COMMIT")
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for row_id, value in conn.execute("SELECT id, value FROM sealed").fetchall():
            plain = old.decrypt(value[:12], value[12:], None)
            nonce = secrets.token_bytes(12)
            conn.execute(
                "UPDATE sealed SET value = ? WHERE id = ?",
                (nonce + new.encrypt(nonce, plain, None), row_id),
            )
        conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def _writer_during_rotation(folder: Path, users: int) -> list[Measurement]:
    """A writer process's latencies with no rotation, then during one."""
    group = "writer during rotation"
    idle = _writer_waits(folder / "idle.db", users, rotate=False)
    busy = _writer_waits(folder / "busy.db", users, rotate=True)
    base = measure_seconds(group, "db.execute INSERT, no rotation", idle)
    return [base, measure_seconds(group, f"db.execute INSERT, {users:,}-user rotation", busy, base)]


def _writer_waits(path: Path, users: int, *, rotate: bool) -> list[float]:
    db = _seed(path, users)
    stop = Path(f"{path}.stop")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), PASSPHRASE, str(stop)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY"
        time.sleep(0.2)
        if rotate:
            rotate_field_keys(db)
        else:
            time.sleep(1.0)
        stop.touch()
        out, _ = child.communicate(timeout=120)
    db.close()
    return [ns / 1e9 for ns in json.loads(out)]
