"""File store benchmarks: put and read of a large file next to a bare pipeline and `cp`.

The file is ``--mb`` megabytes (default 50; ``--mb 200`` for the figure the design
asks for) of random bytes, as compressed audio is: nothing to gain from compression
(``--kind text`` gives bytes of four bits of entropy each instead, which zstd halves).

- ``bare put pipeline``: what a put must do at the least, in a plain loop: read the
  file, cut it at the same FastCDC boundaries as the store, zstd (level 3) every
  chunk, AES-256-GCM, write to one output file, ``fsync`` it. The baseline of ``put``.
  It leaves out what only the store does: the keyed name of every chunk (HMAC-SHA256)
  and the SHA-256 of the whole file, a key derived per chunk, one file per chunk
  (each flushed and renamed, then their folder flushed) and the commit.
- ``put``: ``db.files.put(user, path)`` into an empty store (the previous round's file
  deleted and swept first): chunking, keyed names, SHA-256, zstd tried on every
  chunk (skipped when samples of it do not compress), AES-256-GCM under a per-chunk
  key, one atomic file per chunk, the commit.
- ``put again (deduplicated)``: the same file once more: nothing new is written.
- ``put after a 1 KB edit``: the file with 1 KB changed in the middle; the name says
  how many bytes the store grew by.
- ``bare read pipeline``: read the bare output back, decrypt, decompress; the baseline
  of ``read``. It opens one file where the store opens one per chunk.
  ``read``: ``db.files.open`` read to the end in 1 MiB reads, as an application
  reads: every chunk authenticated; the whole file's SHA-256 is not checked, since the
  database's pages are encrypted and authenticated (docs/files.md, "Reading").
- ``bare read pipeline + SHA-256``: the same, hashing the plaintext as it goes;
  ``read, digest checked`` (``open(..., check_digest=True)``, what an export and a
  read of a database with plain pages do) is measured against it.
- ``cp``: the ``cp`` command copying the file (no fsync), for scale.

The rounds alternate (bare put, put, bare reads, read, cp), so a change of the load
on a shared machine weighs on the baseline and the store alike. Peak RSS of the
process (``ru_maxrss``) is printed by ``main``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import resource
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastcdc.fastcdc_cy import fastcdc_cy  # type: ignore[import-untyped]

import mangostore
from bench.harness import Config, Measurement, measure_seconds
from mangostore import KdfParams, Settings
from mangostore.filestore.chunking import AVG_CHUNK, MAX_CHUNK, MIN_CHUNK

PASSPHRASE: Final = "bench: correct horse battery staple"
SETTINGS: Final = Settings(kdf=KdfParams(memory_kib=19 * 1024, iterations=2, parallelism=1))
GROUP: Final = "files"
MiB: Final = 1024 * 1024


def _make_file(path: Path, size: int, kind: str = "random") -> None:
    """Write ``size`` random bytes, a block at a time (memory stays small); with
    ``kind="text"``, bytes of 16 letters only (compressible, never repeating)."""
    rng = random.Random(1)
    letters = bytes(range(97, 113)) * 16  # byte b becomes letter b % 16
    with path.open("wb") as out:
        left = size
        while left:
            block = rng.randbytes(min(left, MiB))
            out.write(block.translate(letters) if kind == "text" else block)
            left -= len(block)


def _bare_chunks(src: io.BufferedReader) -> Iterator[memoryview]:
    """The file's FastCDC chunks (the store's sizes), cut from one reused buffer: each
    view is valid until the next one is asked for."""
    buf = bytearray(3 * MAX_CHUNK)
    view = memoryview(buf)
    filled = 0
    more = True
    while more:
        while filled < len(buf):
            count = src.readinto(view[filled:])
            if not count:
                more = False
                break
            filled += count
        start = 0
        for cut in fastcdc_cy(view[:filled], MIN_CHUNK, AVG_CHUNK, MAX_CHUNK, False):
            if more and start + cut.length == filled:
                break  # cut by the buffer's end: it starts the next round
            yield view[start : start + cut.length]
            start += cut.length
        view[: filled - start] = view[start:filled]
        filled -= start


def _bare_put(source: Path, target: Path, key: bytes) -> float:
    started = time.perf_counter()
    aead = AESGCM(key)
    packer = zstandard.ZstdCompressor(level=3)
    with source.open("rb") as src, target.open("wb") as dst:
        for chunk in _bare_chunks(src):
            packed = packer.compress(chunk)
            nonce = secrets.token_bytes(12)
            sealed = aead.encrypt(nonce, packed, None)
            dst.write(len(sealed).to_bytes(4, "big") + nonce + sealed)
        dst.flush()
        os.fsync(dst.fileno())
    return time.perf_counter() - started


def _bare_read(target: Path, key: bytes, *, hashed: bool = False) -> float:
    started = time.perf_counter()
    aead = AESGCM(key)
    unpacker = zstandard.ZstdDecompressor()
    digest = hashlib.sha256()
    with target.open("rb") as src:
        while head := src.read(4):
            nonce = src.read(12)
            sealed = src.read(int.from_bytes(head, "big"))
            plain = unpacker.decompress(
                aead.decrypt(nonce, sealed, None), max_output_size=MAX_CHUNK
            )
            if hashed:
                digest.update(plain)
    return time.perf_counter() - started


def _read(db: mangostore.Database, file_id: str, *, check_digest: bool | None = None) -> float:
    started = time.perf_counter()
    with db.files.open(file_id, check_digest=check_digest) as stream:
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


def run(
    config: Config, megabytes: float | None = None, rounds: int | None = None, kind: str = "random"
) -> list[Measurement]:
    """Time put, read, a deduplicated put and an edited put, and the bare pipelines."""
    mb = megabytes if megabytes is not None else max(1.0, 50 * min(1.0, config.rows / 10_000))
    rounds = rounds if rounds is not None else max(1, min(3, config.rounds // 5))
    size = int(mb * MiB)
    key = secrets.token_bytes(32)
    bare_put: list[float] = []
    bare_read: list[float] = []
    bare_hashed: list[float] = []
    cp: list[float] = []
    put_s: list[float] = []
    read_s: list[float] = []
    checked_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "source.bin"
        _make_file(source, size, kind)
        db = mangostore.create(tmp / "bench.db", passphrase=PASSPHRASE, settings=SETTINGS).db
        try:
            user = db.users.create(username="bench").id
            file_id = ""
            for n in range(rounds):
                if file_id:
                    db.files.delete(file_id)
                bare_put.append(_bare_put(source, tmp / "bare.out", key))
                started = time.perf_counter()
                file_id = db.files.put(user, source).id
                put_s.append(time.perf_counter() - started)
                bare_read.append(_bare_read(tmp / "bare.out", key))
                bare_hashed.append(_bare_read(tmp / "bare.out", key, hashed=True))
                read_s.append(_read(db, file_id))
                checked_s.append(_read(db, file_id, check_digest=True))
                cp.append(_cp(source, tmp / f"copy{n}.bin"))
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
    base_hashed = measure_seconds(GROUP, f"bare read pipeline + SHA-256, {mb:.0f} MB", bare_hashed)
    return [
        base_put,
        measure_seconds(GROUP, f"put, {mb:.0f} MB", put_s, base_put),
        measure_seconds(GROUP, f"cp, {mb:.0f} MB", cp, base_put),
        measure_seconds(GROUP, "put again (deduplicated)", dedup_s, base_put),
        measure_seconds(GROUP, f"put after a 1 KB edit (+{grew / MiB:.1f} MiB)", edit_s, base_put),
        base_read,
        measure_seconds(GROUP, f"read, {mb:.0f} MB", read_s, base_read),
        base_hashed,
        measure_seconds(GROUP, f"read, {mb:.0f} MB, digest checked", checked_s, base_hashed),
    ]


def main() -> None:
    """``python -m bench.bench_files [--mb N] [--rounds R] [--kind random|text]``: print
    the medians, their ratios, the spread and the peak RSS."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=float, default=50.0, help="file size in MB (200 for the goal)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--kind", choices=["random", "text"], default="random")
    args = parser.parse_args()
    for m in run(Config(rounds=10), args.mb, args.rounds, args.kind):
        seconds = m.median_us / 1e6
        rate = f"{args.mb / seconds:7.0f} MB/s" if "deduplicated" not in m.name else ""
        ratio = f"  speed x{1 / m.ratio:.2f} of {m.baseline}" if m.baseline else ""
        spread = f" [{m.min_us / 1e6:.3f}-{(m.max_us or m.median_us) / 1e6:.3f} s]"
        print(f"{m.name}: {seconds:.3f} s {rate}{ratio}{spread if m.calls > 1 else ''}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the process: {peak:.0f} MiB; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
