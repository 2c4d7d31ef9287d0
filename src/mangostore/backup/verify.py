"""Verifying a backup without restoring it by hand.

:func:`verify_backup` checks the manifest's signature, the SHA-256 of every object of
the chain (naming the first bad one), then restores the chain into a temporary
encrypted database (deleted afterwards), runs ``PRAGMA integrity_check`` there and
compares every table's row count with the manifest.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mangostore.backup.catalog import Catalog
from mangostore.backup.destinations import Destination
from mangostore.backup.manifest import Manifest
from mangostore.backup.restore import MakeDatabase, restore_into
from mangostore.errors import BackupCorruptError, BackupError
from mangostore.keys.kdf import KdfParams
from mangostore.keys.keyring import Keyring
from mangostore.progress import Progress
from mangostore.settings import Settings

__all__ = ["VerifyReport", "check_objects", "verify_backup"]

#: The cheapest key derivation the library accepts: the temporary database's
#: passphrase is random and thrown away with it.
_SCRATCH_KDF = KdfParams(memory_kib=19 * 1024, iterations=2, parallelism=1)


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :meth:`BackupService.verify`.

    Attributes:
        backup_id: the backup checked (with every backup it needs).
        ok: everything checked out.
        objects_checked: objects whose SHA-256 was checked.
        bad_object: the first object that failed (``None`` when none did).
        problems: what was wrong, one line each.
    """

    backup_id: str
    ok: bool
    objects_checked: int
    bad_object: str | None = None
    problems: list[str] = field(default_factory=list)


def check_objects(destination: Destination, chain: list[Manifest]) -> int:
    """Check the SHA-256 of every object of ``chain``; return how many were checked.

    Raises:
        BackupCorruptError: the first object missing or not matching its manifest.
    """
    checked = 0
    for manifest in chain:
        for obj in manifest.objects:
            digest = hashlib.sha256()
            size = 0
            with destination.reading(obj.name) as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    size += len(block)
            if size != obj.size or digest.hexdigest() != obj.sha256:
                raise BackupCorruptError(
                    f"backup object {obj.name} does not match the SHA-256 in its manifest "
                    "(changed, truncated or swapped)",
                    obj.name,
                )
            checked += 1
    return checked


def verify_backup(
    destination: Destination,
    catalog: Catalog,
    target: Manifest,
    keyring: Keyring,
    make_database: MakeDatabase,
    *,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check ``target`` and its chain as the module says."""
    checked = 0
    try:
        chain = catalog.chain(target)
        checked = check_objects(destination, chain)
        with tempfile.TemporaryDirectory(prefix="mangostore-verify-") as scratch:
            report = restore_into(
                destination,
                catalog,
                target,
                keyring,
                make_database,
                Path(scratch) / "verify.db",
                secrets.token_urlsafe(24),
                settings=Settings(kdf=_SCRATCH_KDF),
                progress=progress,
                integrity=True,
            )
    except BackupCorruptError as exc:
        return VerifyReport(target.id, False, checked, exc.object_name, [str(exc)])
    except BackupError as exc:
        return VerifyReport(target.id, False, checked, None, [str(exc)])
    problems = list(report.integrity_problems)
    # Erasures made since the backup were applied to the scratch copy: its counts are
    # then lower than the manifest's by the erased rows, which is no damage.
    counted = {} if report.erasures_reapplied else target.tables
    for table, count in counted.items():
        got = report.tables.get(table)
        if got != count:
            problems.append(
                f"table {table} has {got} rows after the restore; the manifest says {count}"
            )
    return VerifyReport(target.id, not problems, checked, None, problems)
