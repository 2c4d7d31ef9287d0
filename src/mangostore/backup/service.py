"""``db.backup``: encrypted, compressed, verified full and incremental backups.

See docs/backup.md for the formats, the threat model and restore drills. Every method
takes the destination as ``to``: a folder path, a ``file://`` or ``s3://`` URL, or a
:class:`~mangostore.backup.destinations.Destination`; ``None`` uses the destination
saved with :meth:`BackupService.save_destination`.
"""

from __future__ import annotations

import builtins
import json
import os
from pathlib import Path
from typing import Any, Literal

from mangostore.backup.catalog import Catalog, ManifestCache, load_catalog
from mangostore.backup.changelog import current_log_id, written_since
from mangostore.backup.destinations import Destination, open_destination
from mangostore.backup.keyblock import scrub_keyblocks
from mangostore.backup.manifest import Manifest, sign_manifest
from mangostore.backup.policy import BackupPolicy
from mangostore.backup.restore import MakeDatabase, RestoreReport, restore_into
from mangostore.backup.retention import PruneReport, prune
from mangostore.backup.schedule import BackupSchedule, due_kind
from mangostore.backup.verify import VerifyReport, verify_backup
from mangostore.backup.writing import backup_keyring, take_backup
from mangostore.clock import Instant, epoch_ms
from mangostore.engine.store import MEMORY, Store
from mangostore.errors import BackupDestinationError, BackupError, ConfigurationError
from mangostore.filestore.service import FileService
from mangostore.keys.keyring import Keyring
from mangostore.progress import Progress
from mangostore.settings import Settings

__all__ = ["BackupService", "Target", "restore_backup"]

Target = str | os.PathLike[str] | Destination | None


def restore_backup(
    to: str | os.PathLike[str] | Destination,
    keyring: Keyring,
    make_database: MakeDatabase,
    into: str | os.PathLike[str],
    passphrase: str,
    *,
    at: Instant | None = None,
    backup_id: str | None = None,
    force: bool = False,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> RestoreReport:
    """Restore from ``to`` with an unlocked ``keyring`` of the vault, when the database
    itself is gone (``Keyring.unlock`` on a copy of its ``.keyring``).

    ``make_database`` is :func:`mangostore.create` (passed in: this module sits below
    the code that opens databases). Otherwise as :meth:`BackupService.restore`.
    """
    destination = open_destination(to)
    catalog = load_catalog(destination, keyring.subkey("backup"), keyring.vault_id)
    target = _choose(catalog, at, backup_id)
    return restore_into(
        destination,
        catalog,
        target,
        keyring,
        make_database,
        Path(into),
        passphrase,
        settings=settings,
        force=force,
        progress=progress,
    )


def _choose(catalog: Catalog, at: Instant | None, backup_id: str | None) -> Manifest:
    if backup_id is not None:
        return catalog.get(backup_id)
    if at is not None:
        return catalog.at(epoch_ms(at, "at"))
    latest = catalog.latest()
    if latest is None:
        problems = f" ({len(catalog.problems)} damaged manifests)" if catalog.problems else ""
        raise BackupError(f"there is no usable backup of this vault here{problems}")
    return latest


class BackupService:
    """Backups of one database. Reached as ``db.backup``.

    Args:
        store: the database's store.
        files: the database's file store (``db.files``), whose chunks go in backups.
        policy: the tunables (see :class:`BackupPolicy`); change them with
            :meth:`configure`.
    """

    def __init__(
        self, store: Store, files: FileService, policy: BackupPolicy | None = None
    ) -> None:
        self._store = store
        self._files = files
        self._policy = policy or BackupPolicy()
        self._schedule: BackupSchedule | None = None
        # What was read from each destination before (by URL), and the key blocks
        # known to hold no key of an erased user (by SHA-256): see ManifestCache.
        self._manifests: dict[str, ManifestCache] = {}
        self._clean_keyblocks: dict[str, frozenset[str]] = {}

    def __repr__(self) -> str:
        return f"<BackupService {self._store.path!r}>"

    @property
    def policy(self) -> BackupPolicy:
        """The tunables in force."""
        return self._policy

    def configure(self, policy: BackupPolicy) -> None:
        """Use ``policy`` from now on (a running schedule picks it up at its next check)."""
        self._policy = policy

    # -- the default destination ----------------------------------------------------------

    def _sidecar(self) -> Path:
        if self._store.path == MEMORY:
            raise ConfigurationError("an in-memory database cannot save a backup destination")
        return Path(self._store.path + ".backup.json")

    def save_destination(self, url: str) -> None:
        """Remember ``url`` (a folder, ``file://`` or ``s3://`` URL, never a secret) as
        this database's default destination, in ``<database>.backup.json``."""
        self._sidecar().write_text(json.dumps({"destination": str(url)}) + "\n")

    def saved_destination(self) -> str | None:
        """The saved default destination, or ``None``."""
        try:
            doc = json.loads(self._sidecar().read_text())
        except (FileNotFoundError, ValueError, ConfigurationError):
            return None
        found = doc.get("destination") if isinstance(doc, dict) else None
        return str(found) if found else None

    def destination(self, to: Target = None, **storage_options: Any) -> Destination:
        """The destination ``to`` names (``None``: the saved one).

        Raises:
            BackupDestinationError: none given and none saved, or it cannot be used.
        """
        if to is None:
            to = self.saved_destination()
            if to is None:
                raise BackupDestinationError(
                    "name a backup destination (a folder, file:// or s3:// URL), or save a "
                    "default one with save_destination (CLI: --to URL --remember)"
                )
        return open_destination(to, **storage_options)

    # -- operations -----------------------------------------------------------------------

    def _cache(self, destination: Destination) -> ManifestCache:
        return self._manifests.setdefault(destination.url, ManifestCache())

    def _catalog(self, destination: Destination, *, fresh: bool = False) -> Catalog:
        """The catalog of ``destination``; ``fresh``: every manifest read and checked
        again (what ``list`` and ``verify`` report), not taken from the cache."""
        keyring = backup_keyring(self._store)
        cache = None if fresh else self._cache(destination)
        return load_catalog(destination, keyring.subkey("backup"), keyring.vault_id, cache)

    def create(
        self,
        to: Target = None,
        *,
        kind: Literal["auto", "full", "incremental"] = "auto",
        progress: Progress | None = None,
    ) -> Manifest:
        """Make a backup now and return its manifest.

        ``kind="auto"`` (the default) makes an incremental backup on top of the newest
        one when it can (same schema, the change log reaching back to the backup it
        builds on: see ``policy.fanout``), else a full one. Writers are not blocked:
        the snapshot is one read transaction.
        Progress stage: ``writing`` (stored bytes; the total is not known).

        Raises:
            ConfigurationError: the database has no keyring.
            DatabaseError: called inside a transaction: a backup's snapshot starts as it
                cuts the change log, in a write transaction of its own.
            BackupError: ``kind="incremental"`` with nothing to build on.
            BackupDestinationError: the destination failed (nothing that looks like a
                backup was left).
        """
        self._store.check_open()
        destination = self.destination(to)
        self.apply_erasures(destination)
        return take_backup(
            self._store,
            destination,
            self._policy,
            self._files,
            kind=kind,
            progress=progress,
            cache=self._cache(destination),
        )

    def list(self, to: Target = None) -> Catalog:
        """The backups of this vault at ``to`` (oldest first) and the manifests that
        failed their checks."""
        self._store.check_open()
        return self._catalog(self.destination(to), fresh=True)

    def verify(
        self, to: Target = None, backup_id: str | None = None, *, progress: Progress | None = None
    ) -> VerifyReport:
        """Check a backup (default: the newest) and every backup it needs: signatures,
        every object's SHA-256, a restore into a temporary encrypted file, its
        ``integrity_check`` and its row counts. Names the first bad object.

        Raises:
            BackupError: there is no backup to verify.
        """
        self._store.check_open()
        destination = self.destination(to)
        catalog = self._catalog(destination, fresh=True)
        target = _choose(catalog, None, backup_id)
        keyring = backup_keyring(self._store)
        return verify_backup(
            destination, catalog, target, keyring, self._maker(), progress=progress
        )

    def restore(
        self,
        into: str | os.PathLike[str],
        *,
        passphrase: str,
        to: Target = None,
        at: Instant | None = None,
        backup_id: str | None = None,
        force: bool = False,
        settings: Settings | None = None,
        progress: Progress | None = None,
    ) -> RestoreReport:
        """Restore a backup into a new database at ``into``.

        ``at`` (epoch ms or an aware datetime) picks the newest backup made at or before
        that moment; ``backup_id`` picks one by id; neither: the newest. The new
        database belongs to this vault, under ``passphrase`` and a new recovery key
        (in the report). Erasures this database knows of are applied to it.
        Progress stage: ``restoring`` (stored bytes read of the chain's total).

        Raises:
            BackupError: ``into`` exists and ``force`` is false, or no backup fits.
            BackupCorruptError: an object of the chain is missing or damaged (it is
                named); nothing was written at ``into``.
        """
        self._store.check_open()
        keyring = backup_keyring(self._store)
        return restore_backup(
            self.destination(to),
            keyring,
            self._maker(),
            into,
            passphrase,
            at=at,
            backup_id=backup_id,
            force=force,
            settings=settings or self._store.settings,
            progress=progress,
        )

    def prune(
        self, to: Target = None, *, now: Instant | None = None, dry_run: bool = False
    ) -> PruneReport:
        """Delete the backups retention does not keep (``policy.retention_days``; never
        one a kept backup needs) and orphaned objects, after rewriting the key blocks
        of erased users."""
        self._store.check_open()
        destination = self.destination(to)
        if not dry_run:
            self.apply_erasures(destination)
        now_ms = epoch_ms(now, "now") if now is not None else self._store.clock.now_ms()
        return prune(destination, self._catalog(destination), now_ms, self._policy, dry_run=dry_run)

    def apply_erasures(self, to: Target = None) -> builtins.list[str]:
        """Rewrite the key block of every backup at ``to`` that still holds a key of an
        erased user; return the ids of the backups rewritten. ``create``, ``prune`` and
        the schedule call it; call it right after an erasure to reach old backups at
        once."""
        self._store.check_open()
        destination = self.destination(to)
        keyring = backup_keyring(self._store)
        erased = set(keyring.erased_users())
        if not erased:
            return []
        backup_key = keyring.subkey("backup")
        return scrub_keyblocks(
            destination,
            self._catalog(destination).backups,
            backup_key,
            erased,
            lambda m: sign_manifest(m, backup_key),
            self._clean_keyblocks,
        )

    # -- the schedule ---------------------------------------------------------------------

    def tick(self, to: Target = None) -> Manifest | None:
        """Make the backup that is due now, if any (then prune); return it.

        What the schedule runs at every check; see :mod:`mangostore.backup.schedule`.
        """
        destination = self.destination(to)
        catalog = self._catalog(destination)
        kind = due_kind(
            catalog, self._store.clock.now_ms(), self._policy, lambda: self._changed(catalog)
        )
        if kind is None:
            return None
        made = self.create(destination, kind=kind)
        self.prune(destination)
        return made

    def start_schedule(self, to: Target = None, *, check_every_s: float = 60.0) -> BackupSchedule:
        """Make backups in a background thread while the database is open: a full one
        every ``policy.full_every_s``, an incremental one every
        ``policy.incremental_every_s``, catching up at once after the machine slept.

        Raises:
            BackupError: a schedule is already running.
        """
        if self._schedule is not None and self._schedule.running:
            raise BackupError("a backup schedule is already running: stop_schedule() first")
        destination = self.destination(to)
        store = self._store
        schedule = BackupSchedule(
            lambda: self.tick(destination),
            check_every_s=check_every_s,
            alive=lambda: not store.closed,
        )
        self._schedule = schedule
        schedule.start()
        return schedule

    def stop_schedule(self) -> None:
        """Stop the background schedule (a backup in progress finishes first)."""
        if self._schedule is not None:
            self._schedule.stop()
            self._schedule = None

    def _changed(self, catalog: Catalog) -> bool:
        """Whether this database changed since its own newest backup in ``catalog``
        (true when it has none there, or its log cannot tell)."""
        with self._store.snapshot() as conn:
            log_id = current_log_id(conn)
            own = catalog.latest_of_log(log_id) if log_id is not None else None
            if own is None or own.log_epoch is None:
                return True
            return written_since(conn, own.log_epoch)

    def _maker(self) -> MakeDatabase:
        maker = self._store.make_device
        if maker is None:
            raise ConfigurationError("this database cannot make a database of its vault")
        return maker
