"""``db.cache``: the three tiers behind one interface, as in the design's CacheManager."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, Literal, get_args

from mangostore.cache.disk import DiskCache
from mangostore.cache.memory import MISSING, MemoryCache, TierStats
from mangostore.cache.query import QueryCache
from mangostore.errors import ConfigurationError, InvalidValueError

Tier = Literal["memory", "disk", "query"]
TIERS: tuple[Tier, ...] = get_args(Tier)


class CacheManager:
    """The memory, disk and query tiers of one database.

    ``get`` and ``set`` address one tier (``memory`` unless told); the
    invalidations reach every tier. The query tier holds the results of
    ``db.query`` and repository reads, tagged by the tables they read, so
    ``invalidate_tags(["users"])`` drops every cached read of ``users``; values
    stored there by hand sit beside them.

    The disk tier exists only for a file database with a keyring (its entries are
    encrypted with the keyring's ``cache`` sub-key); using it otherwise raises
    :class:`~mangostore.errors.ConfigurationError`, and the invalidations skip it.
    """

    def __init__(
        self, memory: MemoryCache, query: QueryCache | None, disk: DiskCache | None
    ) -> None:
        self.memory = memory
        self.query = query
        self.disk = disk

    def get(self, key: Hashable, tier: Tier = "memory", default: Any = None) -> Any:
        """Return the value cached under ``key`` in ``tier``, or ``default``.

        Raises:
            InvalidValueError: an unknown tier, or a key the tier cannot take (the
                disk tier takes strings).
            ConfigurationError: the tier is not available for this database.
        """
        value = self._tier(tier).get(key)  # type: ignore[arg-type]
        return default if value is MISSING else value

    def set(
        self,
        key: Hashable,
        value: Any,
        tier: Tier = "memory",
        *,
        ttl_ms: int | None = None,
        tags: Iterable[str] = (),
    ) -> bool:
        """Cache ``value`` under ``key`` in ``tier`` for ``ttl_ms`` (default: the tier's).

        Returns whether it was stored (a value larger than an eighth of a memory
        tier is not, nor anything with a TTL of 0).

        Raises:
            InvalidValueError: an unknown tier, a key the tier cannot take, or a value
                the disk tier cannot serialise.
            ConfigurationError: the tier is not available for this database.
        """
        store = self._tier(tier)
        return bool(store.set(key, value, ttl_ms=ttl_ms, tags=tuple(tags)))  # type: ignore[arg-type]

    def delete(self, key: Hashable, tier: Tier = "memory") -> bool:
        """Remove ``key`` from ``tier``; return whether it was there."""
        return bool(self._tier(tier).delete(key))  # type: ignore[arg-type]

    def invalidate_pattern(self, pattern: str) -> dict[str, int]:
        """Drop the entries whose key matches the glob ``pattern``, in every tier.

        In the query tier the pattern is matched against the SQL of each cached
        statement (``"SELECT * FROM users*"``). Returns the count dropped per tier.
        """
        return {name: store.invalidate_pattern(pattern) for name, store in self._present()}

    def invalidate_tags(self, tags: Iterable[str]) -> dict[str, int]:
        """Drop the entries carrying any of ``tags``, in every tier.

        Returns the count dropped per tier (for the disk tier: the tags
        invalidated, as its entries are dropped lazily).
        """
        tag_list = list(tags)
        return {name: store.invalidate_tags(tag_list) for name, store in self._present()}

    def clear(self) -> dict[str, int]:
        """Empty every tier; return how many entries each held."""
        return {name: store.clear() for name, store in self._present()}

    def stats(self) -> dict[str, TierStats]:
        """Return the hit, miss and eviction counters of each tier."""
        out: dict[str, TierStats] = {"memory": self.memory.stats()}
        out["disk"] = self.disk.stats() if self.disk is not None else _absent("disk")
        out["query"] = self.query.stats() if self.query is not None else _absent("query")
        return out

    def _tier(self, tier: str) -> MemoryCache | DiskCache:
        if tier == "memory":
            return self.memory
        if tier == "query":
            if self.query is None:
                raise ConfigurationError(
                    "the query cache is disabled (Settings.cache_query_max_bytes is 0)"
                )
            return self.query.store
        if tier == "disk":
            if self.disk is None:
                raise ConfigurationError(
                    "the disk cache needs a file database opened with a passphrase (its "
                    "entries are encrypted with the keyring), and cache_disk_max_bytes > 0"
                )
            return self.disk
        raise InvalidValueError(f"unknown cache tier {tier!r}; choose one of {', '.join(TIERS)}")

    def _present(self) -> list[tuple[str, MemoryCache | DiskCache]]:
        tiers: list[tuple[str, MemoryCache | DiskCache]] = [("memory", self.memory)]
        if self.disk is not None:
            tiers.append(("disk", self.disk))
        if self.query is not None:
            tiers.append(("query", self.query.store))
        return tiers


def _absent(tier: str) -> TierStats:
    return TierStats(tier, 0, 0, 0, 0, 0, 0, 0, 0, 0, available=False)
