"""File store benchmarks: put and read of a large file next to a bare pipeline and `cp`.

The file is ``--mb`` megabytes (default 50; ``--mb 200`` for the figure the design
asks for) of random bytes, as compressed audio is: nothing to gain from compression.

- ``bare put pipeline``: read the file in 1 MiB blocks, zstd (level 3), AES-256-GCM,
  write to one output file, fsync. The baseline of ``put``.
- ``put``: ``db.files.put(user, path)`` into an empty store (the previous round's file
  deleted and swept first): chunking, keyed names, SHA-256, zstd tried on every
  chunk, AES-256-GCM under a per-chunk key, one atomic file per chunk, the commit.
- ``put again (deduplicated)``: the same file once more: nothing new is written.
- ``put after a 1 KB edit``: the file with 1 KB changed in the middle; the name says
  how many bytes the store grew by.
- ``bare read pipeline``: read the bare output back, decrypt, decompress; the baseline
  of ``read``. ``read``: ``db.files.open`` read to the end in 1 MiB reads.
- ``cp``: the ``cp`` command copying the file (no fsync), for scale.

Peak RSS of the process (``ru_maxrss``) is printed by ``main``.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Final

import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import mangostore
from bench.harness import Config, Measurement, measure_seconds
from mangostore import KdfParams, Settings

PASSPHRASE: Final = "bench: correct horse battery staple"
SETTINGS: Final = Settings(kdf=KdfParams(memory_kib=19 * 1024, iterations=2, parallelism=1))
GROUP: Final = "files"
MiB: Final = 1024 * 1024


def _make_file(path: Path, size: int) -> None:
    """Write ``size`` random bytes, a block at a time (memory stays small)."""
    rng = random.Random(1)
    with path.open("wb") as out:
        left = size
        while left:
            block = rng.randbytes(min(left, MiB))
            out.write(block)
            left -= len(block)


def _bare_put(source: Path, target: Path, key: bytes) -> float:
    started = time.perf_counter()
    aead = AESGCM(key)
    packer = zstandard.ZstdCompressor(level=3)
    with source.open("rb") as src, target.open("wb") as dst:
        while block := src.read(MiB):
            packed = packer.compress(block)
            nonce = secrets.token_bytes(12)
            sealed = aead.encrypt(nonce, packed, None)
            dst.write(len(sealed).to_bytes(4, "big") + nonce + sealed)
        dst.flush()
        os.fsync(dst.fileno())
    return time.perf_counter() - started


def _bare_read(target: Path, key: bytes) -> float:
    started = time.perf_counter()
    aead = AESGCM(key)
    unpacker = zstandard.ZstdDecompressor()
    with target.open("rb") as src:
        while head := src.read(4):
            nonce = src.read(12)
            sealed = src.read(int.from_bytes(head, "big"))
            unpacker.decompress(aead.decrypt(nonce, sealed, None), max_output_size=MiB)
    return time.perf_counter() - started


def _read(db: mangostore.Database, file_id: str) -> float:
    started = time.perf_counter()
    with db.files.open(file_id) as stream:
        while stream.read(MiB):
            pass
    return time.perf_counter() - started


def _cp(source: Path, target: Path) -> float:
    started = time.perf_counter()
    if shutil.which("cp"):
        subprocess.run(["cp", str(source), str(target)], check=True)
    else:  # pragma: no cover - every POSIX system has cp
        shutil.copyfile(source, target)
    return time.perf_counter() - started


def run(config: Config, megabytes: float | None = None) -> list[Measurement]:
    """Time put, read, a deduplicated put and an edited put, and the bare pipelines."""
    mb = megabytes if megabytes is not None else max(1.0, 50 * min(1.0, config.rows / 10_000))
    rounds = max(1, min(3, config.rounds // 5))
    size = int(mb * MiB)
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "source.bin"
        _make_file(source, size)
        db = mangostore.create(tmp / "bench.db", passphrase=PASSPHRASE, settings=SETTINGS).db
        try:
            user = db.users.create(username="bench").id
            bare_put = [_bare_put(source, tmp / "bare.out", key) for _ in range(rounds)]
            bare_read = [_bare_read(tmp / "bare.out", key) for _ in range(rounds)]
            cp = [_cp(source, tmp / f"copy{n}.bin") for n in range(rounds)]
            put_s, read_s = [], []
            file_id = ""
            for _ in range(rounds):
                if file_id:
                    db.files.delete(file_id)
                started = time.perf_counter()
                file_id = db.files.put(user, source).id
                put_s.append(time.perf_counter() - started)
                read_s.append(_read(db, file_id))
            started = time.perf_counter()
            db.files.put(user, source)
            dedup_s = [time.perf_counter() - started]
            before = db.files.usage(user).stored_bytes
            edited = tmp / "edited.bin"
            shutil.copyfile(source, edited)
            with edited.open("r+b") as handle:
                handle.seek(size // 2)
                handle.write(random.Random(2).randbytes(min(1024, size)))
            started = time.perf_counter()
            db.files.put(user, edited)
            edit_s = [time.perf_counter() - started]
            grew = db.files.usage(user).stored_bytes - before
        finally:
            db.close()
    base_put = measure_seconds(GROUP, f"bare put pipeline, {mb:.0f} MB", bare_put)
    base_read = measure_seconds(GROUP, f"bare read pipeline, {mb:.0f} MB", bare_read)
    return [
        base_put,
        measure_seconds(GROUP, f"put, {mb:.0f} MB", put_s, base_put),
        measure_seconds(GROUP, f"cp, {mb:.0f} MB", cp, base_put),
        measure_seconds(GROUP, "put again (deduplicated)", dedup_s, base_put),
        measure_seconds(GROUP, f"put after a 1 KB edit (+{grew / MiB:.1f} MiB)", edit_s, base_put),
        base_read,
        measure_seconds(GROUP, f"read, {mb:.0f} MB", read_s, base_read),
    ]


def main() -> None:
    """``python -m bench.bench_files [--mb N]``: print the figures and the peak RSS."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=float, default=50.0, help="file size in MB (200 for the goal)")
    args = parser.parse_args()
    for m in run(Config(rounds=10), args.mb):
        seconds = m.median_us / 1e6
        rate = f"{args.mb / seconds:7.0f} MB/s" if "deduplicated" not in m.name else ""
        ratio = f"  speed x{1 / m.ratio:.2f} of {m.baseline}" if m.baseline else ""
        print(f"{m.name}: {seconds:.3f} s {rate}{ratio}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
