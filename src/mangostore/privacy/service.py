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

from mangostore.clock import Instant, epoch_ms
from mangostore.privacy.compliance import ComplianceReport, compliance_report
from mangostore.privacy.erasure import ErasureReport, erase_user, reapply_erasures
from mangostore.privacy.export import ExportedFile, ExportManifest, export_user, verify_export
from mangostore.privacy.pseudonyms import (
    AnalyticsExport,
    PseudonymReport,
    ReidentificationKey,
    Reidentified,
    export_analytics,
    pseudonym_of,
    pseudonymize,
    reidentify,
)
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
    from mangostore.security.audit import AuditCheckpoint

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
    """``db.privacy``: retention, export, erasure, pseudonyms and the compliance report
    (design section 13).

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

    # -- pseudonymisation and compliance (docs/compliance.md) ----------------------------

    def pseudonym_of(self, user_id: str) -> str:
        """The pseudonym of ``user_id``: the same on every device of the vault, another
        in another vault, computed from the vault's ``pseudonym`` key.

        Raises:
            ConfigurationError: the database has no keyring.
        """
        return pseudonym_of(self._db, user_id)

    def pseudonymize(self, user_id: str, key: ReidentificationKey | None = None) -> PseudonymReport:
        """Replace the user's direct identifiers with their pseudonym.

        The user name becomes the pseudonym, the e-mail address is cleared, session IP
        addresses are cleared, and in the plain text and JSON columns of the user's
        rows (:data:`~mangostore.privacy.pseudonyms.PSEUDONYMIZED_COLUMNS`) every
        occurrence of the user name, the address or its local part (as a whole word;
        a user name under three characters only as a path segment) is replaced. Full-
        text indexes are compacted and the WAL truncated, so the old values do not
        linger in the file. Encrypted columns are left as they are (sealed under the
        user's key). An audit event records it.

        Args:
            user_id: the user.
            key: with a key, the old user name and address are sealed under it in the
                audit event, so :meth:`reidentify` can bring them back; without one,
                the change cannot be undone.

        Returns:
            The pseudonym and the rows changed per table.

        Raises:
            NotFoundError: no such user.
            ConfigurationError: the database has no keyring (pseudonyms are keyed).
            DatabaseError: called inside a transaction.
        """
        return pseudonymize(self._db, user_id, key)

    def reidentify(self, pseudonym: str, key: ReidentificationKey) -> Reidentified:
        """Bring back the user id, user name and address behind ``pseudonym``.

        Raises:
            NotFoundError: no pseudonymisation with a key is recorded for it.
            TamperedDataError: ``key`` is not the one it was sealed under.
        """
        return reidentify(self._db, pseudonym, key)

    def export_analytics(
        self, dest: str | os.PathLike[str], *, since: Instant | None = None
    ) -> AnalyticsExport:
        """Write the command history as a CSV file for statistics, pseudonymised by
        construction: the user's pseudonym, a keyed pseudonym of the project, the day,
        the program's name, type, exit code, duration, voice confidence and whether the
        assistant suggested it; never free text, paths, ids or exact times.

        Args:
            dest: a new file (written mode 0600).
            since: only commands from this time on (epoch ms or an aware datetime).

        Raises:
            ValidationError: ``dest`` exists.
            ConfigurationError: the database has no keyring.
        """
        start = None if since is None else epoch_ms(since, "since")
        return export_analytics(self._db, dest, since=start)

    def compliance_report(
        self,
        *,
        now: Instant | None = None,
        checkpoint: AuditCheckpoint | None = None,
        backup_to: object = None,
        verify_backup: bool = True,
        max_backup_age_hours: float = 24.0,
        policies: Sequence[RetentionPolicy] = (),
    ) -> ComplianceReport:
        """Check each data-protection control and return pass/fail with evidence.

        See :mod:`mangostore.privacy.compliance` and docs/compliance.md for the
        controls and what each checks.

        Args:
            now: the instant ages are measured from (default: the database clock).
            checkpoint: the last audit checkpoint kept apart; the chain is verified
                against it.
            backup_to: the backup destination (default: the saved one).
            verify_backup: verify the newest backup (a restore into a temporary file).
            max_backup_age_hours: the newest backup may be at most this old.
            policies: the retention policies in force (defaults for the tables they
                do not name), as given to :meth:`apply_retention`.
        """
        return compliance_report(
            self._db,
            now=now,
            checkpoint=checkpoint,
            backup_to=backup_to,
            verify_backup=verify_backup,
            max_backup_age_hours=max_backup_age_hours,
            policies=policies,
        )
