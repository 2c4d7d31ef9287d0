"""The disk tier: encrypted values, hashed keys, TTL, tags across handles, refusals."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.cache import MISSING, DiskCache, disk_cache_dir
from mangostore.clock import ManualClock
from mangostore.errors import ConfigurationError, InvalidValueError

SECRET_KEY = "user:ann:shell-history"
SECRET_VALUE = "the plaintext that must never reach the disk"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[tuple[DiskCache, ManualClock]]:
    clock = ManualClock()
    cache = DiskCache(
        tmp_path / "cache", secrets.token_bytes(32), max_bytes=10**7, ttl_ms=1_000, clock=clock
    )
    yield cache, clock
    cache.close()


def every_byte_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_values_round_trip(disk: tuple[DiskCache, ManualClock]) -> None:
    cache, _ = disk
    value = {"rows": [(1, "a", b"\x00"), (2, None, 2.5)]}
    assert cache.set("k", value)
    assert cache.get("k") == value
    assert cache.get("absent") is MISSING
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (1, 1, 1)


def test_neither_keys_nor_values_are_written_in_plaintext(
    disk: tuple[DiskCache, ManualClock], tmp_path: Path
) -> None:
    cache, _ = disk
    cache.set(SECRET_KEY, SECRET_VALUE, tags=["user:ann"])
    cache.set("big", SECRET_VALUE * 2_000)  # large values go to files of their own
    cache.close()
    data = every_byte_under(tmp_path / "cache")
    assert data
    for text in (SECRET_KEY, SECRET_VALUE, "user:ann", "plaintext"):
        assert text.encode() not in data
        assert text.encode("utf-16-le") not in data


def test_the_directory_is_private(disk: tuple[DiskCache, ManualClock], tmp_path: Path) -> None:
    cache, _ = disk
    cache.set("k", 1)
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700


def test_another_key_cannot_read_the_entries(tmp_path: Path) -> None:
    first = DiskCache(tmp_path / "c", secrets.token_bytes(32), max_bytes=10**6, ttl_ms=1_000)
    first.set("k", "v")
    first.close()
    other = DiskCache(tmp_path / "c", secrets.token_bytes(32), max_bytes=10**6, ttl_ms=1_000)
    try:
        assert other.get("k") is MISSING
    finally:
        other.close()


def test_entries_expire_by_the_injected_clock(disk: tuple[DiskCache, ManualClock]) -> None:
    cache, clock = disk
    cache.set("k", 1, ttl_ms=100)
    clock.advance(99)
    assert cache.get("k") == 1
    clock.advance(1)
    assert cache.get("k") is MISSING
    assert cache.stats().expirations == 1


def test_tags_invalidate_entries_across_handles(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    one = DiskCache(tmp_path / "c", key, max_bytes=10**6, ttl_ms=60_000)
    two = DiskCache(tmp_path / "c", key, max_bytes=10**6, ttl_ms=60_000)
    try:
        one.set("a", 1, tags=["users"])
        one.set("b", 2, tags=["projects"])
        assert two.get("a") == 1
        two.invalidate_tags(["users"])
        assert one.get("a") is MISSING
        assert one.get("b") == 2
    finally:
        one.close()
        two.close()


def test_pattern_invalidation_matches_the_real_keys(disk: tuple[DiskCache, ManualClock]) -> None:
    cache, _ = disk
    for key in ("user:1:profile", "user:2:profile", "project:1"):
        cache.set(key, key)
    assert cache.invalidate_pattern("user:*") == 2
    assert cache.get("project:1") == "project:1"
    assert cache.clear() == 1


def test_the_size_bound_evicts(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", secrets.token_bytes(32), max_bytes=200_000, ttl_ms=60_000)
    try:
        for n in range(40):
            cache.set(f"k{n}", secrets.token_bytes(20_000))
        stats = cache.stats()
        assert stats.evictions > 0
        assert stats.bytes <= 200_000
    finally:
        cache.close()


def test_keys_must_be_strings(disk: tuple[DiskCache, ManualClock]) -> None:
    cache, _ = disk
    with pytest.raises(InvalidValueError):
        cache.set(("tuple",), 1)  # type: ignore[arg-type]


def test_an_unused_tier_makes_no_directory(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", secrets.token_bytes(32), max_bytes=10**6, ttl_ms=1_000)
    assert cache.get("k") is MISSING
    assert cache.invalidate_tags(["t"]) == 0
    assert cache.stats().entries == 0
    cache.close()
    assert not (tmp_path / "c").exists()


# -- through the database ------------------------------------------------------------------------


def test_a_database_with_a_keyring_has_an_encrypted_disk_tier(db_path: Path) -> None:
    settings = Settings(kdf=FAST_KDF)
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=settings).db as db:
        assert not disk_cache_dir(str(db_path)).exists()  # made on first use only
        db.cache.set(SECRET_KEY, SECRET_VALUE, "disk", tags=["shell"])
        assert db.cache.get(SECRET_KEY, "disk") == SECRET_VALUE
    with mangostore.open(db_path, passphrase=PASSPHRASE, settings=settings) as db:
        assert db.cache.get(SECRET_KEY, "disk") == SECRET_VALUE  # it persists
        assert db.cache.invalidate_tags(["shell"])["disk"] == 1
        assert db.cache.get(SECRET_KEY, "disk", default="gone") == "gone"
    data = every_byte_under(disk_cache_dir(str(db_path)))
    assert SECRET_VALUE.encode() not in data
    assert SECRET_KEY.encode() not in data


def test_the_disk_tier_is_refused_without_a_keyring_or_a_file(tmp_path: Path) -> None:
    with mangostore.create(tmp_path / "plain.db", encrypted=False).db as db:
        with pytest.raises(ConfigurationError, match="passphrase"):
            db.cache.set("k", 1, "disk")
        assert not db.cache.stats()["disk"].available
        assert "disk" not in db.cache.invalidate_tags(["t"])
    settings = Settings(kdf=FAST_KDF)
    with mangostore.open(":memory:", passphrase=PASSPHRASE, settings=settings) as db:
        assert not db.cache.stats()["disk"].available
        with pytest.raises(ConfigurationError):
            db.cache.get("k", "disk")


def test_the_memory_tier_through_the_manager(plain_db: mangostore.Database) -> None:
    cache = plain_db.cache
    assert cache.set("greeting", "hello", tags=["t"])
    assert cache.get("greeting") == "hello"
    assert cache.delete("greeting")
    assert cache.get("greeting", default=0) == 0
    with pytest.raises(InvalidValueError):
        cache.get("k", "nowhere")  # type: ignore[arg-type]
    assert set(cache.stats()) == {"memory", "disk", "query"}
