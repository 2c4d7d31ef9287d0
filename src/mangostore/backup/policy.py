"""The tunables of backups, in one place, with their units in their names."""

from __future__ import annotations

from dataclasses import dataclass

from mangostore.errors import ValidationError

__all__ = ["BackupPolicy"]


@dataclass(frozen=True, slots=True)
class BackupPolicy:
    """How backups are made, kept and scheduled.

    Attributes:
        part_bytes: a stream is cut into objects of about this size (at least one
            chunk, 1 MiB).
        zstd_level: zstd's compression level (1 fastest .. 19 smallest).
        zstd_threads: zstd worker threads compressing the rows while they are read
            (0: compress in the reading thread; each worker holds a few MiB).
        max_chain: incrementals on top of one full backup before the next backup is a
            full one, so a restore reads at most ``max_chain + 1`` backups.
        retention_days: backups younger than this are kept (with every backup they
            need); older ones are pruned. The newest full chain is always kept.
        incremental_every_s: the schedule makes a backup when the newest is this old.
        full_every_s: the schedule makes a full backup when the newest full one is
            this old.
        after_writes_s: when set, the schedule also makes an incremental backup as
            soon as the database has changed since the newest backup and that backup
            is this old, so that restore points follow the writes (minutes apart, say)
            instead of the hour; an incremental costs what the changes cost.
        orphan_grace_s: objects no manifest lists are removed by ``prune`` once they
            are this old (a backup being written lists its objects only at the end).
    """

    part_bytes: int = 64 * 1024 * 1024
    zstd_level: int = 3
    zstd_threads: int = 1
    max_chain: int = 24
    retention_days: float = 30.0
    incremental_every_s: float = 3600.0
    full_every_s: float = 86400.0
    after_writes_s: float | None = None
    orphan_grace_s: float = 86400.0

    def __post_init__(self) -> None:
        if (
            self.part_bytes <= 0
            or not 1 <= self.zstd_level <= 22
            or not 0 <= self.zstd_threads <= 64
            or self.max_chain < 0
        ):
            raise ValidationError(
                "part_bytes must be positive, zstd_level between 1 and 22, zstd_threads "
                "between 0 and 64 and max_chain not negative"
            )
        if (
            self.retention_days <= 0
            or self.incremental_every_s <= 0
            or self.full_every_s <= 0
            or (self.after_writes_s is not None and self.after_writes_s <= 0)
        ):
            raise ValidationError(
                "retention_days, incremental_every_s, full_every_s and after_writes_s "
                "must be positive"
            )
