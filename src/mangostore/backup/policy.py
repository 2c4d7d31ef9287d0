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
        fanout: how many incrementals of one level the next level rolls up (at least
            2). The ``n``-th incremental since a full backup is built on the newest
            backup at its level or above (see :func:`~mangostore.backup.manifest.level_of`):
            a restore reads at most ``(fanout - 1)`` backups per level, and each
            change is stored once per level (with the default 8, 1,440 incrementals
            a day make 4 levels).
        retention_days: backups younger than this are kept (with every backup they
            need); older ones are pruned. The newest full chain is always kept.
        keep_all_days: every backup younger than this is kept; older ones (up to
            ``retention_days``) are thinned to one per ``thin_every_s``, the one whose
            restore reads the fewest backups.
        thin_every_s: the spacing of the restore points kept after ``keep_all_days``.
        incremental_every_s: the schedule makes a backup when the newest is this old.
        full_every_s: the schedule makes a full backup when the newest full one is
            this old.
        after_writes_s: the schedule also makes an incremental backup as soon as the
            database has changed since the newest backup and that backup is this old,
            so restore points follow the writes (a minute apart by default) instead of
            the hour; an incremental costs what the changes cost. ``None``: only
            every ``incremental_every_s``.
        orphan_grace_s: objects no manifest lists are removed by ``prune`` once they
            are this old (a backup being written lists its objects only at the end).
    """

    part_bytes: int = 64 * 1024 * 1024
    zstd_level: int = 3
    zstd_threads: int = 1
    fanout: int = 8
    retention_days: float = 30.0
    keep_all_days: float = 2.0
    thin_every_s: float = 3600.0
    incremental_every_s: float = 3600.0
    full_every_s: float = 86400.0
    after_writes_s: float | None = 60.0
    orphan_grace_s: float = 86400.0

    def __post_init__(self) -> None:
        if (
            self.part_bytes <= 0
            or not 1 <= self.zstd_level <= 22
            or not 0 <= self.zstd_threads <= 64
            or not 2 <= self.fanout <= 1024
        ):
            raise ValidationError(
                "part_bytes must be positive, zstd_level between 1 and 22, zstd_threads "
                "between 0 and 64 and fanout between 2 and 1024"
            )
        if (
            self.retention_days <= 0
            or self.keep_all_days <= 0
            or self.thin_every_s <= 0
            or self.incremental_every_s <= 0
            or self.full_every_s <= 0
            or (self.after_writes_s is not None and self.after_writes_s <= 0)
        ):
            raise ValidationError(
                "retention_days, keep_all_days, thin_every_s, incremental_every_s, "
                "full_every_s and after_writes_s must be positive"
            )
