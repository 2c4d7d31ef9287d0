"""A second process storing a file (run as a script by ``test_files_processes.py``).

``python files_worker.py PATH USER SIZE SEED [RELEASE]``; the passphrase comes from
``MANGOSTORE_PASSPHRASE``. Stores SIZE pseudo-random bytes (``noise`` of SEED) for
USER, slowly: after the first 12 MiB (the chunks of the chunker's first window are
done by then) each MiB waits 20 ms; when RELEASE is given, the put creates
RELEASE.waiting there and waits until RELEASE exists. Prints the new file's id.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

from tests.files.conftest import SETTINGS, NoiseStream

import mangostore

MiB = 1024 * 1024


class SlowStream(io.RawIOBase):
    """NoiseStream, slowed down (and held at RELEASE) after its first 12 MiB."""

    def __init__(self, size: int, seed: int, release: Path | None) -> None:
        super().__init__()
        self._inner = NoiseStream(size, seed)
        self._done = 0
        self._release = release

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._done >= 12 * MiB:
            if self._release is not None:
                # Say where the put is (the chunks of the first window are done),
                # then wait to be released.
                Path(str(self._release) + ".waiting").touch()
                while not self._release.exists():
                    time.sleep(0.01)
            else:
                time.sleep(0.02)
        count = self._inner.readinto(memoryview(buffer)[:MiB])
        self._done += count
        return count


def main() -> None:
    path, user, size, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    release = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    passphrase = os.environ["MANGOSTORE_PASSPHRASE"]
    with mangostore.open(path, passphrase=passphrase, settings=SETTINGS) as db:
        record = db.files.put(user, io.BufferedReader(SlowStream(size, seed, release)))
    print(record.id, flush=True)


if __name__ == "__main__":
    main()
