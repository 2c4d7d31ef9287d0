"""The memory tier: an LRU cache bounded by bytes and by time, whose entries carry tags.

Sizes are estimates of the memory an entry holds (key and value, containers walked
one level at a time), made once when the entry is stored; a caller that knows
better passes ``size_bytes``. Time comes from an injectable
:class:`~mangostore.clock.Clock`, so expiry is tested by moving a manual clock.

Tags and patterns invalidate entries. So that a value read from the database before
an invalidation is never stored after it, a writer of such values takes a
:meth:`MemoryCache.guard` before reading and hands it to :meth:`MemoryCache.set`,
which refuses the value if any of its tags was invalidated (or the cache flushed)
in between.
"""

from __future__ import annotations

import fnmatch
import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from mangostore.clock import Clock, SystemClock
from mangostore.errors import ConfigurationError

#: Returned by :meth:`MemoryCache.get` (and the other tiers) when there is no entry.
MISSING: Final[Any] = type("Missing", (), {"__repr__": lambda self: "MISSING"})()

#: Tags whose invalidation generations are remembered; past this many the cache is
#: flushed instead, so the table cannot grow without bound.
_MAX_REMEMBERED_TAGS: Final = 10_000
#: Containers with more items than this are sized from a sample of their items.
_SAMPLE_ITEMS: Final = 64


@dataclass(frozen=True, slots=True)
class TierStats:
    """Counters of one cache tier since it was made.

    Attributes:
        tier: ``"memory"``, ``"disk"`` or ``"query"``.
        hits: lookups answered from the tier.
        misses: lookups that found nothing (or only an expired entry).
        evictions: entries dropped to stay under ``max_bytes``.
        expirations: entries dropped because their time to live had passed.
        invalidations: entries dropped by :meth:`invalidate_tags`,
            :meth:`invalidate_pattern` or a flush (for the disk tier: tags and
            patterns invalidated, as it cannot count entries cheaply).
        bypassed: lookups that could not use the tier (the query tier: a statement
            that cannot be cached, or freshness that could not be checked).
        entries: entries held now.
        bytes: estimated bytes held now.
        max_bytes: the bound on ``bytes``.
        available: whether the tier can be used at all (the disk tier needs a
            file database with a keyring).
    """

    tier: str
    hits: int
    misses: int
    evictions: int
    expirations: int
    invalidations: int
    bypassed: int
    entries: int
    bytes: int
    max_bytes: int
    available: bool = True

    @property
    def lookups(self) -> int:
        """Hits plus misses."""
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        """Hits per lookup, or ``None`` before the first lookup."""
        return self.hits / self.lookups if self.lookups else None


class _Entry:
    __slots__ = ("expires_ms", "size", "tags", "value")

    def __init__(self, value: Any, size: int, expires_ms: int, tags: frozenset[str]) -> None:
        self.value = value
        self.size = size
        self.expires_ms = expires_ms
        self.tags = tags


#: What :meth:`MemoryCache.guard` returns: the flush epoch and the sum of the tags'
#: generations (which only grow between flushes, so any invalidation changes it).
Guard = tuple[int, int]


class MemoryCache:
    """A thread-safe LRU cache bounded by ``max_bytes`` and ``ttl_ms``.

    Keys are any hashable values; :meth:`invalidate_pattern` matches the glob
    against ``str(key)`` (or the key's first item, for a tuple, so a query key
    ``(sql, params)`` matches on its SQL). An entry larger than ``max_bytes`` divided
    by ``max_entry_fraction`` is not stored, so one huge value cannot empty the tier.

    Args:
        max_bytes: bound on the estimated bytes held; 0 disables the tier.
        ttl_ms: default time to live of an entry.
        clock: the time source (default: the system clock).
        tier: the name shown in :class:`TierStats`.
        max_entry_fraction: see above.
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        ttl_ms: int,
        clock: Clock | None = None,
        tier: str = "memory",
        max_entry_fraction: int = 8,
    ) -> None:
        if max_bytes < 0 or ttl_ms < 0:
            raise ConfigurationError("a cache's max_bytes and ttl_ms must not be negative")
        self.tier = tier
        self.max_bytes = max_bytes
        self.ttl_ms = ttl_ms
        self._max_entry = max_bytes // max(1, max_entry_fraction)
        self._clock = clock or SystemClock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._by_tag: dict[str, set[Hashable]] = {}
        self._generation: dict[str, int] = {}
        self._epoch = 0
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0
        self.expirations = self.invalidations = self.bypassed = 0

    # -- reading and writing --------------------------------------------------------------

    def get(self, key: Hashable, default: Any = MISSING) -> Any:
        """Return the value stored under ``key`` and mark it recently used.

        Returns ``default`` (:data:`MISSING` unless given) when there is no live entry.
        """
        now = self._clock.now_ms()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return default
            if now >= entry.expires_ms:
                self._drop(key, entry)
                self.expirations += 1
                self.misses += 1
                return default
            self._entries.move_to_end(key)
            self.hits += 1
            return entry.value

    def set(
        self,
        key: Hashable,
        value: Any,
        *,
        ttl_ms: int | None = None,
        tags: Iterable[str] = (),
        size_bytes: int | None = None,
        guard: Guard | None = None,
    ) -> bool:
        """Store ``value`` under ``key``, replacing any entry there.

        Args:
            key: a hashable key.
            value: the value; it is kept as it is (not copied), so store values that
                nobody changes afterwards.
            ttl_ms: time to live (default: the tier's); 0 stores nothing.
            tags: names that :meth:`invalidate_tags` can drop the entry by.
            size_bytes: the entry's size, when the caller knows it better than
                :func:`estimate_size`.
            guard: from :meth:`guard`, taken before ``value`` was read: the value is
                refused if one of ``tags`` was invalidated (or the tier flushed) since.

        Returns:
            Whether the value was stored (not when too large, refused by ``guard``,
            the TTL is 0 or the tier is disabled).
        """
        ttl = self.ttl_ms if ttl_ms is None else ttl_ms
        if ttl <= 0 or self.max_bytes == 0:
            return False
        tag_set = frozenset(tags)
        size = size_bytes if size_bytes is not None else estimate_size(key) + estimate_size(value)
        if size > self._max_entry:
            return False
        expires = self._clock.now_ms() + ttl
        with self._lock:
            if guard is not None and guard != self._guard(tag_set):
                return False
            old = self._entries.get(key)
            if old is not None:
                self._drop(key, old)
            self._entries[key] = _Entry(value, size, expires, tag_set)
            self._bytes += size
            for tag in tag_set:
                self._by_tag.setdefault(tag, set()).add(key)
            self._shrink()
        return True

    def delete(self, key: Hashable) -> bool:
        """Remove the entry under ``key``; return whether there was one."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False
            self._drop(key, entry)
            return True

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, Hashable):
            return False
        with self._lock:
            entry = self._entries.get(key)
            return entry is not None and self._clock.now_ms() < entry.expires_ms

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- invalidation ---------------------------------------------------------------------

    def guard(self, tags: Iterable[str]) -> Guard:
        """Return the state that :meth:`set` checks its ``guard`` against (see there)."""
        tag_set = frozenset(tags)
        with self._lock:
            return self._guard(tag_set)

    def _guard(self, tags: frozenset[str]) -> Guard:
        generation = self._generation
        return self._epoch, sum(generation.get(t, 0) for t in tags)

    def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Drop every entry carrying any of ``tags``; return how many were dropped."""
        dropped = 0
        with self._lock:
            for tag in set(tags):
                self._generation[tag] = self._generation.get(tag, 0) + 1
                for key in list(self._by_tag.get(tag, ())):
                    entry = self._entries.get(key)
                    if entry is not None:
                        self._drop(key, entry)
                        dropped += 1
            if len(self._generation) > _MAX_REMEMBERED_TAGS:
                dropped += self._flush()
            self.invalidations += dropped
        return dropped

    def invalidate_pattern(self, pattern: str) -> int:
        """Drop every entry whose key matches the glob ``pattern``; return how many.

        The match is case-sensitive (:func:`fnmatch.fnmatchcase`). A tuple key is
        matched by its first item.
        """
        with self._lock:
            # A value being read for a matching key now must not be stored after this.
            self._epoch += 1
            doomed = [k for k in self._entries if fnmatch.fnmatchcase(_key_text(k), pattern)]
            for key in doomed:
                self._drop(key, self._entries[key])
            self.invalidations += len(doomed)
        return len(doomed)

    def clear(self) -> int:
        """Drop every entry (counted as invalidations); return how many there were."""
        with self._lock:
            dropped = self._flush()
            self.invalidations += dropped
        return dropped

    def purge_expired(self) -> int:
        """Drop the entries whose time to live has passed; return how many."""
        now = self._clock.now_ms()
        with self._lock:
            doomed = [(k, e) for k, e in self._entries.items() if now >= e.expires_ms]
            for key, entry in doomed:
                self._drop(key, entry)
            self.expirations += len(doomed)
        return len(doomed)

    def stats(self) -> TierStats:
        """Return the tier's counters and current size."""
        with self._lock:
            return TierStats(
                tier=self.tier,
                hits=self.hits,
                misses=self.misses,
                evictions=self.evictions,
                expirations=self.expirations,
                invalidations=self.invalidations,
                bypassed=self.bypassed,
                entries=len(self._entries),
                bytes=self._bytes,
                max_bytes=self.max_bytes,
            )

    def count_bypass(self) -> None:
        """Count a lookup that could not use the tier (see :attr:`TierStats.bypassed`)."""
        with self._lock:
            self.bypassed += 1

    # -- internals (the caller holds the lock) ---------------------------------------------

    def _flush(self) -> int:
        dropped = len(self._entries)
        self._entries.clear()
        self._by_tag.clear()
        # A new epoch makes every earlier guard fail, so the generations can go too.
        self._generation.clear()
        self._epoch += 1
        self._bytes = 0
        return dropped

    def _drop(self, key: Hashable, entry: _Entry) -> None:
        del self._entries[key]
        self._bytes -= entry.size
        for tag in entry.tags:
            keys = self._by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_tag[tag]

    def _shrink(self) -> None:
        """Evict least recently used entries until the tier is within ``max_bytes``."""
        if self._bytes <= self.max_bytes:
            return
        now = self._clock.now_ms()
        # Expired entries go first: dropping them loses nothing.
        for key, entry in [(k, e) for k, e in self._entries.items() if now >= e.expires_ms]:
            self._drop(key, entry)
            self.expirations += 1
        while self._bytes > self.max_bytes and self._entries:
            key, entry = next(iter(self._entries.items()))
            self._drop(key, entry)
            self.evictions += 1


def _key_text(key: Hashable) -> str:
    if isinstance(key, tuple) and key:
        key = key[0]
    return key if isinstance(key, str) else str(key)


def estimate_size(value: Any, *, _depth: int = 0) -> int:
    """Estimate the bytes ``value`` holds: itself plus what its containers refer to.

    Strings, bytes and numbers are measured with :func:`sys.getsizeof`; lists,
    tuples, sets, dicts and rows (anything iterable that is not text) add their
    items, down to four levels; containers larger than 64 items are sized from a
    sample of them. Shared objects are counted once per reference, so the
    estimate errs on the large side.
    """
    size = sys.getsizeof(value)
    if _depth >= 4 or isinstance(value, str | bytes | bytearray | int | float | bool | None):
        return size
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple | set | frozenset) or _is_row(value):
        items = list(value)
    else:
        return size
    count = len(items)
    if count > _SAMPLE_ITEMS:
        step = count / _SAMPLE_ITEMS
        sample = [items[int(i * step)] for i in range(_SAMPLE_ITEMS)]
        return size + int(sum(estimate_size(v, _depth=_depth + 1) for v in sample) * step)
    return size + sum(estimate_size(v, _depth=_depth + 1) for v in items)


def _is_row(value: Any) -> bool:
    return callable(getattr(value, "keys", None)) and hasattr(value, "__getitem__")
