"""Caching: memory, disk and query tiers, and the query tier's exact invalidation.

See docs/caching.md. ``db.cache`` is a :class:`CacheManager`; ``db.query`` and the
repositories' reads go through the query tier.
"""

from mangostore.cache.disk import DiskCache, disk_cache_dir
from mangostore.cache.manager import TIERS, CacheManager, Tier
from mangostore.cache.memory import MISSING, MemoryCache, TierStats, estimate_size
from mangostore.cache.query import NONDETERMINISTIC_FUNCTIONS, VIRTUAL_TAG, QueryCache

__all__ = [
    "MISSING",
    "NONDETERMINISTIC_FUNCTIONS",
    "TIERS",
    "VIRTUAL_TAG",
    "CacheManager",
    "DiskCache",
    "MemoryCache",
    "QueryCache",
    "Tier",
    "TierStats",
    "disk_cache_dir",
    "estimate_size",
]
