"""Restore points a minute apart: incrementals in levels against one linear chain.

A database of ``--commands`` (default 10,000) commands recorded through
``db.command_history`` (full-text index included) gets a full backup in two folders.
Then ``--points`` times (default 511, the worst case of fanout 8 below 512: digits
7, 7, 7), 20 commands are recorded and 20 others updated (a minute of use), and an
incremental backup is made in each folder:

- ``levels``: the default policy (``fanout=8``): the ``n``-th incremental is built on
  the newest backup at its level or above.
- ``linear``: ``fanout=1024``, above the number of points, so every incremental is
  built on the one before (the chain a restore of the newest must read whole).

Reported: each incremental's median time and its CPU time, the bytes stored by all
the incrementals, the backups a restore of the newest point reads, and that restore's
time, each of the levels against the linear chain measured in the same run. The two
folders' backups alternate, so a change in the machine's load falls on both alike.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Final

import mangostore
from bench.harness import Config, Measurement, measure_seconds, print_seconds
from mangostore import KdfParams, Settings
from mangostore.backup import BackupPolicy

PASSPHRASE: Final = "bench: correct horse battery staple"
SETTINGS: Final = Settings(kdf=KdfParams(memory_kib=19 * 1024, iterations=2, parallelism=1))
GROUP: Final = "backup points"
_WORDS = ["git", "push", "commit", "status", "make", "test", "deploy", "rebase", "log"]
_KINDS: Final = {"levels": BackupPolicy(), "linear": BackupPolicy(fanout=1024)}


def _minute(db: mangostore.Database, user: str, ids: list[str], rng: random.Random) -> None:
    """Twenty commands recorded and twenty others updated."""
    made = db.command_history.create_many(
        {
            "user_id": user,
            "command": " ".join(rng.choice(_WORDS) for _ in range(6)),
            "exit_code": 0,
        }
        for _ in range(20)
    )
    ids.extend(c.id for c in made)
    with db.store.transaction() as conn:
        conn.executemany(
            "UPDATE command_history SET exit_code = exit_code + 1 WHERE id = ?",
            [(i,) for i in rng.sample(ids, 20)],
        )


def run(
    config: Config, points: int | None = None, commands: int | None = None
) -> list[Measurement]:
    """Make ``points`` restore points both ways and compare them."""
    points = points if points is not None else max(3, min(511, config.rows // 20))
    commands = commands if commands is not None else max(100, min(10_000, config.rows))
    rng = random.Random(7)
    seconds: dict[str, list[float]] = {k: [] for k in _KINDS}
    cpu: dict[str, list[float]] = {k: [] for k in _KINDS}
    stored: dict[str, int] = {}
    reads: dict[str, int] = {}
    restore_s: dict[str, list[float]] = {k: [] for k in _KINDS}
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp_name:
        tmp = Path(tmp_name)
        db = mangostore.create(tmp / "points.db", passphrase=PASSPHRASE, settings=SETTINGS).db
        try:
            user = db.users.create(username="ann").id
            ids = [
                c.id
                for c in db.command_history.create_many(
                    {"user_id": user, "command": f"echo {n}", "exit_code": 0}
                    for n in range(commands)
                )
            ]
            for kind, policy in _KINDS.items():
                db.backup.configure(policy)
                db.backup.create(tmp / kind, kind="full")
            for _ in range(points):
                _minute(db, user, ids, rng)
                for kind, policy in _KINDS.items():
                    db.backup.configure(policy)
                    started, used = time.perf_counter(), time.process_time()
                    made = db.backup.create(tmp / kind)
                    seconds[kind].append(time.perf_counter() - started)
                    cpu[kind].append(time.process_time() - used)
                    assert made.kind == "incremental"
            for kind in _KINDS:
                catalog = db.backup.list(tmp / kind)
                stored[kind] = sum(
                    m.stored_bytes for m in catalog.backups if m.kind == "incremental"
                )
                newest = catalog.backups[-1]
                reads[kind] = newest.depth + 1
            for n in range(max(1, min(3, config.rounds // 5))):
                for kind in _KINDS:
                    started = time.perf_counter()
                    db.backup.restore(
                        tmp / f"{kind}-{n}.db",
                        passphrase=PASSPHRASE,
                        to=tmp / kind,
                        settings=SETTINGS,
                    )
                    restore_s[kind].append(time.perf_counter() - started)
        finally:
            db.close()
    linear = measure_seconds(GROUP, f"incremental, linear chain of {points}", seconds["linear"])
    linear_cpu = measure_seconds(GROUP, "incremental, linear chain, CPU time", cpu["linear"])
    linear_restore = measure_seconds(
        GROUP, f"restore the newest point, linear: reads {reads['linear']}", restore_s["linear"]
    )
    return [
        linear,
        measure_seconds(GROUP, "incremental, levels of 8", seconds["levels"], linear),
        linear_cpu,
        measure_seconds(GROUP, "incremental, levels of 8, CPU time", cpu["levels"], linear_cpu),
        linear_restore,
        measure_seconds(
            GROUP,
            f"restore the newest point, levels: reads {reads['levels']}; stored "
            f"{stored['levels'] / max(stored['linear'], 1):.2f}x the linear chain's "
            f"{stored['linear'] / 1e6:.1f} MB",
            restore_s["levels"],
            linear_restore,
        ),
    ]


def main() -> None:
    """``python -m bench.bench_backup_points [--points N]``: print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--points", type=int, default=511, help="incrementals after the full")
    parser.add_argument("--commands", type=int, default=10_000, help="commands to start with")
    parser.add_argument("--rounds", type=int, default=3, help="timed restores of each")
    args = parser.parse_args()
    print_seconds(lambda: run(Config(rounds=5 * args.rounds), args.points, args.commands))


if __name__ == "__main__":
    main()
