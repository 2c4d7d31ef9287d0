"""``db.privacy``: the one object through which retention, export and erasure are used.

The work is done by :mod:`.retention`, :mod:`.export` and :mod:`.erasure`;
:class:`PrivacyService` binds them to one database and carries their documentation.
The reports and policies are importable from here as well as from
:mod:`mangostore.privacy`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mangostore.clock import Instant
from mangostore.privacy.erasure import ErasureReport, erase_user, reapply_erasures
from mangostore.privacy.export import ExportedFile, ExportManifest, export_user, verify_export
from mangostore.privacy.retention import (
    DAY_MS,
    DEFAULT_POLICIES,
    RetentionPolicy,
    RetentionReport,
    TableRetention,
    apply_retention,
)
from mangostore.progress import Progress

if TYPE_CHECKING:
    from mangostore.privacy.ports import PrivacyDatabase

# The names this module always offered, kept importable from it.
__all__ = [
    "DAY_MS",
    "DEFAULT_POLICIES",
    "ErasureReport",
    "ExportManifest",
    "ExportedFile",
    "PrivacyService",
    "RetentionPolicy",
    "RetentionReport",
    "TableRetention",
    "verify_export",
]


class PrivacyService:
    """``db.privacy``: retention, export and erasure (design section 13).

    Erasure and retention take the write lock for their whole run and refuse to run
    inside a caller's transaction: their effects outside the database (the keyring,
    archive files, the WAL) cannot be rolled back with it.
    """

    def __init__(self, db: PrivacyDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<PrivacyService {self._db.path!r}>"

    def apply_retention(
        self,
        now: Instant | None = None,
        policies: Sequence[RetentionPolicy] | None = None,
        *,
        archive_dir_path: str | os.PathLike[str] | None = None,
        progress: Progress | None = None,
    ) -> RetentionReport:
        """Archive and delete what the policies say is too old.

        Command history older than its cut-off is written to an encrypted archive
        file (see :mod:`mangostore.privacy.archive`) and then deleted. Notifications
        are deleted by their type's ``retention_days`` and by the policy's cut-off.
        Security events older than the cut-off are archived and removed from the head
        of the chain, behind an anchor event appended first (so the kept chain still
        verifies); only a prefix of the chain is ever removed, so an old event after
        a newer one stays until everything before it has gone.

        Args:
            now: the time to measure ages from (epoch ms or an aware datetime;
                default: the database clock).
            policies: replace the defaults for the tables they name
                (:data:`DEFAULT_POLICIES` for the others).
            archive_dir_path: where archive files go (default ``<database>.archive``;
                required for an in-memory database that has rows to archive).
            progress: told of one stage a table (``"command_history"``,
                ``"notifications"``, ``"security_events"``), counted in rows deleted,
                before the table's work and once it has committed; a callback that
                raises stops retention there (see :mod:`mangostore.progress`).

        Returns:
            What was archived and deleted, per table.

        Raises:
            ConfigurationError: archiving is needed but there is no place for files.
            DatabaseError: called inside a transaction.
            InvalidValueError: ``now`` is not a time.
        """
        return apply_retention(
            self._db, now, policies, archive_dir_path=archive_dir_path, progress=progress
        )

    def export_user(
        self,
        user_id: str,
        dest_dir: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> ExportManifest:
        """Write every row of ``user_id``, decrypted, as JSON Lines with a checksum manifest.

        One ``<table>.jsonl`` per table that can hold the user's rows (found from the
        live schema: every table with ``user_id``, the user's ``users`` row, and the
        tables below them through foreign keys), plus ``security_events.jsonl`` with
        the audit events about the user, and ``manifest.json`` listing each file's row
        count and SHA-256. ``bytes`` values are written as ``{"base64": ...}``;
        credential columns (password hashes, session verifiers) as ``"[redacted]"``.

        The files hold plaintext personal data: they are created mode 0600 in a
        directory made mode 0700; keep them accordingly.

        Args:
            user_id: the user to export.
            dest_dir: a directory that does not exist yet, or is empty.
            progress: told of the stages ``"exporting rows"`` and ``"exporting audit
                events"`` every 500 rows (see :mod:`mangostore.progress`). An export
                stopped half-way (by an error, or a callback that raises) removes the
                files it wrote.

        Returns:
            The manifest, as also written to ``manifest.json``.

        Raises:
            NotFoundError: no such user.
            ValidationError: ``dest_dir`` exists and is not empty.
            TamperedDataError: one of the user's encrypted values does not authenticate.
        """
        return export_user(self._db, user_id, dest_dir, progress=progress)

    def erase_user(self, user_id: str) -> ErasureReport:
        """Erase a user: delete their rows everywhere and destroy their data key.

        In order: the user's data keys are destroyed and the user recorded as erased
        in the keyring (so every copy of the file loses their encrypted values, and
        opening an older copy re-applies the erasure); in one transaction, every row
        of the user in every table is deleted (children first; full-text rows through
        the tables' triggers, then every FTS5 index is optimised so no deleted token
        survives in an index segment), other users' references to those rows are
        cleared, and an erasure event that names no one is appended to the audit log;
        then the WAL is checkpointed and truncated. ``secure_delete`` (always on)
        zeroes the freed space.

        The user's audit events stay: the chain needs them. With a keyring their data
        is sealed under the destroyed key and can no longer be read; without one it
        is cleared. Archive files beside the database lose the user's rows too.

        Returns:
            What was deleted, cleared and destroyed.

        Raises:
            ValidationError: ``user_id`` is not a non-empty string.
            DatabaseError: called inside a transaction.
        """
        return erase_user(self._db, user_id)

    def reapply_erasures(self) -> list[ErasureReport]:
        """Erase again every user the keyring says was erased but whose rows are back.

        This is what opening a database does (an older copy, a restored backup, a
        pre-migration copy): the keys are gone already; the rows still there are
        deleted. The archive files beside the database lose every erased user's
        rows too. Returns one report per user erased again.

        Raises:
            DatabaseError: called inside a transaction, with an erased user's rows back.
        """
        return reapply_erasures(self._db)
