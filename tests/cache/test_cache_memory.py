"""The memory tier: LRU order, the byte bound, TTL expiry on a manual clock, tags, patterns."""

from __future__ import annotations

import threading

import pytest

from mangostore.cache import MISSING, MemoryCache, estimate_size
from mangostore.clock import ManualClock
from mangostore.errors import ConfigurationError


def make(max_bytes: int = 10_000, ttl_ms: int = 1_000) -> tuple[MemoryCache, ManualClock]:
    clock = ManualClock()
    return MemoryCache(max_bytes=max_bytes, ttl_ms=ttl_ms, clock=clock, max_entry_fraction=1), clock


def test_get_returns_what_set_stored_and_counts_hits_and_misses() -> None:
    cache, _ = make()
    assert cache.get("a") is MISSING
    assert cache.set("a", [1, 2])
    assert cache.get("a") == [1, 2]
    assert cache.get("b", default=None) is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (1, 2, 1)
    assert stats.hit_rate == pytest.approx(1 / 3)


def test_none_is_a_value_not_a_miss() -> None:
    cache, _ = make()
    cache.set("k", None)
    assert cache.get("k") is None
    assert cache.stats().hits == 1


def test_entries_expire_when_the_clock_passes_their_ttl() -> None:
    cache, clock = make(ttl_ms=1_000)
    cache.set("default", 1)
    cache.set("short", 2, ttl_ms=10)
    clock.advance(9)
    assert cache.get("short") == 2
    clock.advance(1)
    assert cache.get("short") is MISSING
    assert cache.get("default") == 1
    clock.advance(990)
    assert "default" not in cache
    assert cache.get("default") is MISSING
    stats = cache.stats()
    assert stats.expirations == 2
    assert stats.entries == 0


def test_a_zero_ttl_stores_nothing() -> None:
    cache, _ = make()
    assert not cache.set("k", 1, ttl_ms=0)
    assert cache.get("k") is MISSING


def test_purge_expired_drops_only_expired_entries() -> None:
    cache, clock = make(ttl_ms=100)
    cache.set("old", 1)
    clock.advance(50)
    cache.set("new", 2)
    clock.advance(60)
    assert cache.purge_expired() == 1
    assert cache.get("new") == 2


def test_the_byte_bound_evicts_the_least_recently_used_entry() -> None:
    cache, _ = make(max_bytes=300)
    for key in "abc":
        assert cache.set(key, "v", size_bytes=100)
    assert cache.get("a") == "v"  # "b" is now the least recently used
    cache.set("d", "v", size_bytes=100)
    assert cache.get("b") is MISSING
    assert [cache.get(k) for k in "acd"] == ["v", "v", "v"]
    stats = cache.stats()
    assert stats.evictions == 1
    assert stats.bytes == 300 <= stats.max_bytes


def test_expired_entries_are_dropped_before_live_ones_are_evicted() -> None:
    cache, clock = make(max_bytes=300)
    cache.set("expiring", 1, ttl_ms=10, size_bytes=100)
    cache.set("a", 1, size_bytes=100)
    cache.set("b", 1, size_bytes=100)
    cache.get("expiring")  # most recently used, but about to expire
    clock.advance(10)
    cache.set("c", 1, size_bytes=100)
    assert [cache.get(k) for k in "abc"] == [1, 1, 1]
    assert cache.stats().evictions == 0


def test_replacing_an_entry_replaces_its_size() -> None:
    cache, _ = make(max_bytes=1_000)
    cache.set("k", "x", size_bytes=600)
    cache.set("k", "y", size_bytes=300)
    assert cache.stats().bytes == 300
    assert cache.get("k") == "y"


def test_an_entry_larger_than_its_share_of_the_tier_is_not_stored() -> None:
    cache = MemoryCache(max_bytes=800, ttl_ms=1_000, clock=ManualClock())  # an eighth: 100
    assert not cache.set("big", "x", size_bytes=101)
    assert cache.set("fits", "x", size_bytes=100)


def test_estimated_sizes_grow_with_the_value() -> None:
    small = estimate_size([("a", 1)])
    large = estimate_size([("a" * 1000, 1)] * 10)
    assert 0 < small < large
    assert estimate_size(list(range(10_000))) > estimate_size(list(range(100)))


def test_invalidate_tags_drops_every_entry_with_any_of_the_tags() -> None:
    cache, _ = make()
    cache.set("u1", 1, tags=["users", "user:1"])
    cache.set("u2", 2, tags=["users", "user:2"])
    cache.set("p1", 3, tags=["projects"])
    assert cache.invalidate_tags(["user:1"]) == 1
    assert cache.get("u1") is MISSING
    assert cache.get("u2") == 2
    assert cache.invalidate_tags(["users", "projects"]) == 2
    assert len(cache) == 0
    assert cache.stats().invalidations == 3


def test_invalidate_pattern_matches_keys_as_globs() -> None:
    cache, _ = make()
    for key in ("user:1:profile", "user:2:profile", "user:1:prefs", "project:1"):
        cache.set(key, key)
    assert cache.invalidate_pattern("user:*:profile") == 2
    assert sorted(k for k in ("user:1:prefs", "project:1") if cache.get(k) is not MISSING) == [
        "project:1",
        "user:1:prefs",
    ]
    assert cache.invalidate_pattern("nothing*") == 0


def test_a_tuple_key_is_matched_by_its_first_item() -> None:
    cache, _ = make()
    cache.set(("SELECT * FROM users WHERE id = ?", ("a",)), 1)
    cache.set(("SELECT * FROM projects", ()), 2)
    assert cache.invalidate_pattern("SELECT * FROM users*") == 1


def test_a_guard_refuses_a_value_read_before_its_tags_were_invalidated() -> None:
    cache, _ = make()
    guard = cache.guard(["users"])
    cache.invalidate_tags(["users"])  # a write committed while the value was read
    assert not cache.set("k", "stale", tags=["users"], guard=guard)
    fresh = cache.guard(["users"])
    assert cache.set("k", "fresh", tags=["users"], guard=fresh)
    assert cache.get("k") == "fresh"


def test_a_guard_is_not_disturbed_by_other_tags_but_is_by_a_flush() -> None:
    cache, _ = make()
    guard = cache.guard(["users"])
    cache.invalidate_tags(["projects"])
    assert cache.set("k", 1, tags=["users"], guard=guard)
    guard = cache.guard(["users"])
    cache.clear()
    assert not cache.set("k", 1, tags=["users"], guard=guard)


def test_clear_empties_the_tier() -> None:
    cache, _ = make()
    cache.set("a", 1, tags=["t"])
    assert cache.clear() == 1
    assert cache.get("a") is MISSING
    assert cache.stats().bytes == 0
    assert cache.invalidate_tags(["t"]) == 0


def test_a_disabled_tier_stores_nothing() -> None:
    cache = MemoryCache(max_bytes=0, ttl_ms=1_000)
    assert not cache.set("k", 1)
    assert cache.get("k") is MISSING


def test_negative_bounds_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        MemoryCache(max_bytes=-1, ttl_ms=1)


def test_concurrent_use_keeps_the_byte_count_exact() -> None:
    cache = MemoryCache(max_bytes=50_000, ttl_ms=60_000, max_entry_fraction=1)

    def work(n: int) -> None:
        for i in range(500):
            cache.set(f"{n}:{i % 50}", i, size_bytes=100, tags=[f"t{i % 7}"])
            cache.get(f"{(n + 1) % 4}:{i % 50}")
            if i % 97 == 0:
                cache.invalidate_tags([f"t{i % 7}"])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = cache.stats()
    assert stats.bytes == stats.entries * 100
    assert stats.bytes <= stats.max_bytes
