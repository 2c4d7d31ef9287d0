"""Backups: encrypted, compressed, verified, full and incremental, to a folder or S3.

Reached as ``db.backup`` (:class:`BackupService`); see docs/backup.md.
"""

from __future__ import annotations

from mangostore.backup.catalog import Catalog
from mangostore.backup.destinations import (
    Destination,
    FsspecDestination,
    MemoryDestination,
    open_destination,
)
from mangostore.backup.manifest import Manifest
from mangostore.backup.policy import BackupPolicy
from mangostore.backup.restore import RestoreReport
from mangostore.backup.retention import PruneReport
from mangostore.backup.schedule import BackupSchedule
from mangostore.backup.service import BackupService, restore_backup
from mangostore.backup.verify import VerifyReport

__all__ = [
    "BackupPolicy",
    "BackupSchedule",
    "BackupService",
    "Catalog",
    "Destination",
    "FsspecDestination",
    "Manifest",
    "MemoryDestination",
    "PruneReport",
    "RestoreReport",
    "VerifyReport",
    "open_destination",
    "restore_backup",
]
