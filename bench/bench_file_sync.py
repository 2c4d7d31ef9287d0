"""Stored files between two devices: sending a file's chunks to the relay and the
first read on the other device (which fetches them), next to a read on the device
that stored the file, in the same run.

Each round puts a new file of ``--mb`` megabytes of random bytes (as compressed audio
is) on device A (not timed), then times:

- ``read on A`` (the baseline): ``db.files.read`` where the chunks are on disk;
- ``send to the relay``: ``a.files.send_chunks()`` (what a sync does before pushing);
- ``first read on B``: B pulls the row (not timed), then ``b.files.read``: every chunk
  fetched from the relay, authenticated, written to B's folder, and decrypted;
- ``second read on B``: the same read, now from B's own folder.

The relay is the in-process one (``--relay memory``: the cost of mangostore's own
work), or a ``mangostore serve-sync`` process on loopback over SQLite (``--relay
server``: HTTP, base64 and the server's store added).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Final

import mangostore
from bench.harness import Config, Measurement, measure_seconds
from mangostore import KdfParams, Settings
from mangostore.sync import MemoryRelay
from mangostore.testing.sync_server import SyncServerProcess

PASSPHRASE: Final = "bench: correct horse battery staple"
SETTINGS: Final = Settings(
    kdf=KdfParams(memory_kib=19 * 1024, iterations=2, parallelism=1),
    backup_before_migrate=False,
)


def _timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def run(
    config: Config,
    megabytes: float | None = None,
    rounds: int | None = None,
    relay: str = "memory",
) -> list[Measurement]:
    """Time ``rounds`` rounds with files of ``megabytes`` MB through ``relay``
    (defaults from ``config``: 32 MB and 3 rounds for a full run)."""
    mb = megabytes if megabytes is not None else max(0.25, 32 * min(1.0, config.rows / 10_000))
    count = rounds if rounds is not None else max(1, min(3, config.rounds // 5))
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp:
        return _run(mb, count, relay, Path(tmp))


def _run(mb: float, rounds: int, relay: str, folder: Path) -> list[Measurement]:
    size = int(mb * 1024 * 1024)
    group = f"file sync, {mb:g} MB, {relay} relay"
    times: dict[str, list[float]] = {
        k: [] for k in ("read on A", "send", "first read on B", "second read on B")
    }
    with ExitStack() as stack:
        a, _ = mangostore.create(folder / "a.db", passphrase=PASSPHRASE, settings=SETTINGS)
        stack.callback(a.close)
        user = a.users.create(username="bench").id
        b, _ = a.sync.new_device(folder / "b.db", PASSPHRASE, settings=SETTINGS)
        stack.callback(b.close)
        if relay == "server":
            server = SyncServerProcess("sqlite://" + str(folder / "relay.sqlite"))
            server.start()
            stack.callback(server.stop)
            a.sync.attach(server.url)
            b.sync.connect(b.sync.server(server.url))
        else:
            memory = MemoryRelay()
            a.sync.enable(memory)
            b.sync.connect(memory)
        rng = random.Random(1)
        for _ in range(rounds):
            file_id = a.files.put(user, rng.randbytes(size)).id
            times["read on A"].append(_timed(a.files.read, file_id))
            times["send"].append(_timed(a.files.send_chunks))
            a.sync.sync()
            b.sync.sync()
            times["first read on B"].append(_timed(b.files.read, file_id))
            times["second read on B"].append(_timed(b.files.read, file_id))
    base = measure_seconds(group, "read on A (chunks on disk)", times["read on A"])
    return [
        base,
        measure_seconds(group, "a.files.send_chunks()", times["send"], base),
        measure_seconds(group, "first read on B (fetches)", times["first read on B"], base),
        measure_seconds(group, "second read on B", times["second read on B"], base),
    ]


def main() -> None:
    """``python -m bench.bench_file_sync [--mb N] [--rounds R] [--relay memory|server]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=float, default=32.0, help="file size in MB")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--relay", choices=["memory", "server"], default="memory")
    args = parser.parse_args()
    for m in run(Config(), args.mb, args.rounds, args.relay):
        seconds = m.median_us / 1e6
        ratio = f"  x{m.ratio:.2f} of {m.baseline}" if m.baseline else ""
        print(f"{m.group}: {m.name}: {seconds:.3f} s ({args.mb / seconds:.0f} MB/s){ratio}")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
