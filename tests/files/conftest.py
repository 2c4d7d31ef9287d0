"""Fixtures of the file store tests: an encrypted file database with two users, and
deterministic pseudo-random bytes (incompressible, so chunking is content-defined)."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings

SETTINGS = Settings(kdf=FAST_KDF)


def noise(size: int, seed: int = 0) -> bytes:
    """``size`` pseudo-random bytes, the same for the same seed."""
    return random.Random(seed).randbytes(size)


class NoiseStream(io.RawIOBase):
    """A readable stream of ``size`` pseudo-random bytes made as they are read, so
    that no copy of the whole exists in memory."""

    def __init__(self, size: int, seed: int = 0) -> None:
        super().__init__()
        self._left = size
        self._rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self._left, 1 << 20)
        if count <= 0:
            return 0
        memoryview(buffer)[:count] = self._rng.randbytes(count)
        self._left -= count
        return count


def chunk_files(db: mangostore.Database) -> list[Path]:
    """Every sealed chunk file in the database's chunk folder."""
    base = db.files.folder / "v1"
    return sorted(p for p in base.glob("*/*") if p.is_file()) if base.is_dir() else []


@dataclass
class Vault:
    """An open encrypted file database with users ``ann`` and ``bob``."""

    db: mangostore.Database
    path: Path
    ann: str
    bob: str


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    """An encrypted file database with two users and no files yet."""
    path = tmp_path / "vault.db"
    db = mangostore.create(path, passphrase=PASSPHRASE, settings=SETTINGS).db
    ann = db.users.create(username="ann").id
    bob = db.users.create(username="bob").id
    yield Vault(db, path, ann, bob)
    db.close()
