"""Tunables of a mangostore database, in one place, with units in the names."""

from __future__ import annotations

from dataclasses import dataclass, field

from mangostore.keys.kdf import KdfParams


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a caller may tune when opening a database.

    Defaults follow the design (pool of 10 readers, 10 s acquire timeout, 30 s idle
    timeout) and the KDF parameters recommended for interactive unlocking.
    """

    #: How long SQLite retries a locked database before giving up, and how long
    #: a writer waits for the in-process writer lock.
    busy_timeout_ms: int = 5_000
    #: Most reader connections kept open at once.
    pool_max_readers: int = 10
    #: How long ``query`` waits for a free reader before :class:`PoolTimeoutError`.
    pool_acquire_timeout_ms: int = 10_000
    #: Reader connections unused this long are closed.
    pool_idle_timeout_ms: int = 30_000
    #: Argon2id parameters used when a keyring is created or a passphrase changed.
    kdf: KdfParams = field(default_factory=KdfParams)
    #: Largest serialised JSON value accepted for a JSON column.
    json_max_bytes: int = 1_048_576
    #: Make an encrypted copy of the database before applying migrations.
    backup_before_migrate: bool = True
    #: Pre-migration copies kept beside the database (the newest); 0 keeps them all.
    migration_copies_kept: int = 3
    #: Whether ``db.query`` and repository reads use the query cache when the call
    #: does not say (``use_cache=``). See docs/caching.md.
    cache_queries: bool = True
    #: The query tier: results of reads, invalidated exactly on writes; 0 disables it.
    cache_query_max_bytes: int = 50 * 1024 * 1024
    #: How long a cached result is kept at most (a memory bound, not a staleness one).
    cache_query_ttl_ms: int = 600_000
    #: The memory tier of ``db.cache``; 0 disables it.
    cache_memory_max_bytes: int = 100 * 1024 * 1024
    #: Default time to live of a memory tier entry.
    cache_memory_ttl_ms: int = 300_000
    #: The disk tier of ``db.cache`` (encrypted, beside the database); 0 disables it.
    cache_disk_max_bytes: int = 1024 * 1024 * 1024
    #: Default time to live of a disk tier entry.
    cache_disk_ttl_ms: int = 3_600_000
    #: Where the disk tier lives; default ``<database>.cache/``.
    cache_disk_dir: str | None = None
    #: Time every statement and keep statistics per statement shape.
    monitor_queries: bool = True
    #: A statement at least this slow is logged with its query plan.
    slow_query_ms: int = 100
    #: Size the performance report warns about as it is approached (80% of it).
    max_database_bytes: int = 10 * 1024 * 1024 * 1024
    #: Below this hit rate (0 to 1) the report recommends looking at the cache.
    cache_hit_rate_target: float = 0.8
    #: Free pages above this share of the file (0 to 1) make the report recommend VACUUM.
    vacuum_freelist_ratio: float = 0.25

    def __post_init__(self) -> None:
        from mangostore.errors import ConfigurationError

        for name in (
            "busy_timeout_ms",
            "pool_max_readers",
            "pool_acquire_timeout_ms",
            "pool_idle_timeout_ms",
            "json_max_bytes",
            "migration_copies_kept",
            "cache_query_max_bytes",
            "cache_query_ttl_ms",
            "cache_memory_max_bytes",
            "cache_memory_ttl_ms",
            "cache_disk_max_bytes",
            "cache_disk_ttl_ms",
            "slow_query_ms",
            "max_database_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(
                    f"Settings.{name} must be a non-negative integer, got {value!r}"
                )
        if self.pool_max_readers < 1:
            raise ConfigurationError("Settings.pool_max_readers must be at least 1")
        for name in ("cache_hit_rate_target", "vacuum_freelist_ratio"):
            ratio = getattr(self, name)
            if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0 <= ratio <= 1:
                raise ConfigurationError(f"Settings.{name} must be between 0 and 1, got {ratio!r}")
