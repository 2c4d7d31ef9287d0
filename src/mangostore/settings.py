"""Tunables of a mangostore database, in one place, with units in the names."""

from __future__ import annotations

from dataclasses import dataclass, field

from mangostore.keys.kdf import KdfParams


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a caller may tune when opening a database.

    Defaults follow the seed (pool of 10 readers, 10 s acquire timeout, 30 s idle
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

    def __post_init__(self) -> None:
        from mangostore.errors import ConfigurationError

        for name in (
            "busy_timeout_ms",
            "pool_max_readers",
            "pool_acquire_timeout_ms",
            "pool_idle_timeout_ms",
            "json_max_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(
                    f"Settings.{name} must be a non-negative integer, got {value!r}"
                )
        if self.pool_max_readers < 1:
            raise ConfigurationError("Settings.pool_max_readers must be at least 1")
