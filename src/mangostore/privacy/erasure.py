"""Erasure: a user's rows deleted everywhere, their data keys destroyed, the WAL emptied.

The keys go first, and durably: from then on every copy of the file has lost the
user's encrypted values, and opening an older copy re-applies the erasure
(:func:`reapply_erasures`). The user's audit events stay, because the chain needs
them; their data is sealed under the destroyed key (or cleared, in a database without
a keyring).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import BackupError, ConfigurationError, TamperedDataError, ValidationError
from mangostore.privacy.archive import archive_dir, list_archives, read_archive, rewrite_archive
from mangostore.privacy.common import refuse_inside_transaction
from mangostore.privacy.ownership import (
    KEPT_ON_ERASURE,
    Ownership,
    SchemaMap,
    key_batches,
    read_schema,
)
from mangostore.schema.copies import migration_copies
from mangostore.schema.introspect import columns, has_table
from mangostore.security.audit import ERASURE_COMPONENT
from mangostore.sql import quote_identifier

if TYPE_CHECKING:
    from mangostore.privacy.ports import ErasureDatabase

__all__ = ["ErasureReport", "erase_user", "reapply_erasures", "scrub_archives"]


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """The outcome of :meth:`PrivacyService.erase_user`.

    Attributes:
        subject: HMAC-SHA256 of the user id under the audit key (hex): lets whoever
            holds the keys check whether a given id was erased, and names no one.
            ``None`` for a database without a keyring.
        rows_deleted: rows deleted, by table.
        references_cleared: other users' references to the erased rows set to NULL.
        keys_destroyed: per-user data keys removed from the keyring.
        events_redacted: audit events whose plaintext data was cleared (only in a
            database without a keyring; with one, their data is sealed under the
            destroyed key and stays in the chain, unreadable).
        archives_rewritten: archive files the user's rows were removed from.
        wal_truncated: the WAL was checkpointed and truncated to zero bytes.
        reapplied: this run re-applied an earlier erasure (an older copy was opened).
        copies_not_reached: files beside the database (pre-migration copies) that
            still hold the user's plain columns: delete them, or open each to
            re-apply the erasure.
        keyring_copies_removed: copies of the keyring left beside it by a writer that
            was killed mid-write (they would still hold the destroyed keys): deleted.
    """

    subject: str | None
    rows_deleted: dict[str, int]
    references_cleared: int
    keys_destroyed: int
    events_redacted: int
    archives_rewritten: tuple[Path, ...]
    wal_truncated: bool
    reapplied: bool = False
    copies_not_reached: tuple[Path, ...] = field(default_factory=tuple)
    keyring_copies_removed: tuple[Path, ...] = field(default_factory=tuple)
    #: Backups at the saved destination whose key block was rewritten without the
    #: user's keys (docs/backup.md).
    backups_rewritten: tuple[str, ...] = field(default_factory=tuple)
    #: Why the saved backup destination could not be reached (its backups are
    #: rewritten by the next ``backup create``, ``prune`` or scheduled run).
    backups_not_reached: str | None = None

    @property
    def total_deleted(self) -> int:
        """Rows deleted over every table."""
        return sum(self.rows_deleted.values())


def erase_user(db: ErasureDatabase, user_id: str, *, reapplied: bool = False) -> ErasureReport:
    """Erase ``user_id`` from ``db``.

    What :meth:`mangostore.privacy.PrivacyService.erase_user` does; ``reapplied``
    marks a run that re-applies an earlier erasure (:func:`reapply_erasures`).

    Raises:
        ValidationError: ``user_id`` is not a non-empty string.
        DatabaseError: called inside a transaction.
    """
    if not isinstance(user_id, str) or not user_id:
        raise ValidationError("user_id must be a non-empty string", field="user_id")
    refuse_inside_transaction(db, "erase_user")
    keyring = db.keyring
    key = keyring.subkey("audit") if keyring is not None else None
    subject = (
        hmac.new(key, b"mangostore/erasure/v1" + user_id.encode("utf-8"), "sha256").hexdigest()
        if key is not None
        else None
    )
    cipher = db.store.field_cipher
    destroyed = 0
    with db.store.transaction() as conn:
        # First, and durably: from here on the erasure is remembered, and a crash
        # before the commit below is completed at the next open.
        if cipher is not None and _has_column(conn, "field_keys", "id"):
            destroyed = len(cipher.destroy_user_keys(conn, user_id))
        elif keyring is not None:  # a schema from before per-user keys
            destroyed = len(keyring.destroy_user_keys(user_id))
        with driver_errors("preparing an erasure"):
            conn.execute("PRAGMA defer_foreign_keys = ON")
        schema = read_schema(conn)
        owned = Ownership.find(conn, schema, user_id, follow_others=True, skip=KEPT_ON_ERASURE)
        cleared = _clear_references(conn, schema, owned)
        deleted: dict[str, int] = {}
        for table in owned.delete_order(schema):
            count = 0
            for batch in key_batches(owned.rows[table]):
                with driver_errors(f"erasing from {table}"):
                    count += int(
                        conn.execute(
                            f"DELETE FROM {quote_identifier(table)} "
                            f"WHERE {schema.tables[table].key} IN "
                            "(SELECT value FROM json_each(?))",
                            (batch,),
                        ).rowcount
                    )
            deleted[table] = count
        _forget_sync_conflicts(conn, user_id, owned)
        redacted = 0 if keyring is not None else _redact_events(conn, user_id)
        for fts in schema.fts5:
            with driver_errors(f"compacting the full-text index {fts}"):
                conn.execute(
                    f"INSERT INTO {quote_identifier(fts)} ({quote_identifier(fts)}) "
                    "VALUES ('optimize')"
                )
        if _has_column(conn, "security_events", "seq"):
            db.audit.append_reserved_in(
                conn,
                "data",
                ERASURE_COMPONENT,
                {
                    "subject": subject,
                    "rows_deleted": sum(deleted.values()),
                    "tables": len(deleted),
                    "keys_destroyed": destroyed,
                    "reapplied": reapplied,
                },
            )
    db.files.forget_user(user_id)  # the user's chunk files (docs/files.md)
    backups_rewritten, backups_not_reached = _reach_backups(db)
    rewritten = scrub_archives(db, user_id)
    truncated = _truncate_wal(db)
    leftovers = keyring.remove_leftovers() if keyring is not None else []
    return ErasureReport(
        subject=subject,
        rows_deleted={t: n for t, n in deleted.items() if n},
        references_cleared=cleared,
        keys_destroyed=destroyed,
        events_redacted=redacted,
        archives_rewritten=tuple(rewritten),
        wal_truncated=truncated,
        reapplied=reapplied,
        copies_not_reached=tuple(_copies(db)),
        keyring_copies_removed=tuple(leftovers),
        backups_rewritten=tuple(backups_rewritten),
        backups_not_reached=backups_not_reached,
    )


def _reach_backups(db: ErasureDatabase) -> tuple[list[str], str | None]:
    """Rewrite the key blocks of the backups at the saved destination, if one is
    saved; a destination out of reach is reported, not raised (the erasure stands)."""
    if db.backup.saved_destination() is None:
        return [], None
    try:
        return db.backup.apply_erasures(), None
    except BackupError as exc:
        return [], str(exc)


def reapply_erasures(db: ErasureDatabase) -> list[ErasureReport]:
    """Erase again every user of ``db`` the keyring says was erased but whose rows are back.

    What :meth:`mangostore.privacy.PrivacyService.reapply_erasures` does.

    Raises:
        DatabaseError: called inside a transaction, with an erased user's rows back.
    """
    keyring = db.keyring
    if keyring is None:
        return []
    erased = keyring.erased_users()
    if not erased:
        return []
    with db.store.transaction() as conn:
        schema = read_schema(conn)
        back = [u for u in erased if _has_rows(conn, schema, u)]
    reports = [erase_user(db, user_id, reapplied=True) for user_id in back]
    # An erasure interrupted between its commit and its archive scrub left no rows
    # to find above, but may have left the user's rows in archive files.
    rest = [u for u in erased if u not in back]
    if rest:
        scrub_archives(db, *rest)
    return reports


def scrub_archives(db: ErasureDatabase, *user_ids: str) -> list[Path]:
    """Remove the users' rows from the archive files beside ``db``; return the files
    rewritten.

    Security event archives keep their rows when the database has a keyring: their
    data is sealed under the destroyed keys. Without one, their data is cleared.
    Archives this database cannot read are left alone.
    """
    if db.path == ":memory:":
        return []
    erased = set(user_ids)
    rewritten: list[Path] = []
    for path in list_archives(archive_dir(db)):
        try:
            archive = read_archive(path, db)
        except (TamperedDataError, ConfigurationError):
            continue  # not ours to read; reported by whoever reads it
        if archive.table == "security_events" and db.keyring is not None:
            continue  # sealed under the destroyed key; the chain keeps the rows
        kept = [r for r in archive.rows if r.get("user_id") not in erased]
        if archive.table == "security_events":
            kept = [
                r
                if r.get("user_id") not in erased
                else {**r, "event_data": None, "client_info": None}
                for r in archive.rows
            ]
            if kept == archive.rows:
                continue
        elif len(kept) == len(archive.rows):
            continue
        rewrite_archive(db, archive, kept)
        rewritten.append(path)
    return rewritten


def _truncate_wal(db: ErasureDatabase) -> bool:
    """Checkpoint the WAL into the file and truncate it to zero bytes."""
    if db.path == ":memory:":
        return True
    for attempt in range(20):
        if db.checkpoint(truncate=True):
            return True
        time.sleep(0.05 * (attempt + 1))  # a reader was still in the old snapshot
    return False


def _copies(db: ErasureDatabase) -> list[Path]:
    path = db.path
    if path == ":memory:":
        return []
    return migration_copies(path)


def _has_column(conn: Connection, table: str, column: str) -> bool:
    with driver_errors("reading the schema"):
        found = columns(conn, table)
    return any(c.name == column for c in found)


def _has_rows(conn: Connection, schema: SchemaMap, user_id: str) -> bool:
    for table in schema.owned_tables(KEPT_ON_ERASURE):
        owner = schema.tables[table].owner
        if owner is None:
            continue
        with driver_errors("looking for an erased user's rows"):
            found = conn.execute(
                f"SELECT 1 FROM {quote_identifier(table)} "
                f"WHERE {quote_identifier(owner)} = ? LIMIT 1",
                (user_id,),
            ).fetchone()
        if found is not None:
            return True
    return False


def _clear_references(conn: Connection, schema: SchemaMap, owned: Ownership) -> int:
    cleared = 0
    for (table, column), keys in owned.references.items():
        key = schema.tables[table].key
        for batch in key_batches(keys):
            with driver_errors(f"clearing references in {table}"):
                cleared += int(
                    conn.execute(
                        f"UPDATE {quote_identifier(table)} SET {quote_identifier(column)} = NULL "
                        f"WHERE {key} IN (SELECT value FROM json_each(?))",
                        (batch,),
                    ).rowcount
                )
    return cleared


def _forget_sync_conflicts(conn: Connection, user_id: str, owned: Ownership) -> None:
    """Drop the values sync kept of the user's rows when a merge set them aside
    (``sync_conflicts``): the erased rows, and any kept value that names the user."""
    if not has_table(conn, "sync_conflicts"):
        return
    with driver_errors("erasing a user's sync conflicts"):
        for table, keys in owned.rows.items():
            for batch in key_batches(keys):
                conn.execute(
                    "DELETE FROM sync_conflicts WHERE tbl = ? "
                    "AND pk IN (SELECT value FROM json_each(?))",
                    (table, batch),
                )
        conn.execute(
            "DELETE FROM sync_conflicts WHERE pk = ? OR instr(coalesce(kept, ''), ?) > 0 "
            "OR instr(coalesce(lost, ''), ?) > 0",
            (user_id, user_id, user_id),
        )


def _redact_events(conn: Connection, user_id: str) -> int:
    """Clear the plaintext data of a user's audit events (databases without a keyring,
    whose events carry no MAC: the triggers allow exactly this, through audit_control)."""
    with driver_errors("clearing an erased user's audit data"):
        conn.execute("UPDATE audit_control SET redact_user_id = ? WHERE id = 1", (user_id,))
        count = int(
            conn.execute(
                "UPDATE security_events SET event_data = NULL, client_info = NULL "
                "WHERE user_id = ? AND mac IS NULL "
                "AND (event_data IS NOT NULL OR client_info IS NOT NULL)",
                (user_id,),
            ).rowcount
        )
        conn.execute("UPDATE audit_control SET redact_user_id = NULL WHERE id = 1")
    return count
