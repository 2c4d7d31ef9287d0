"""``db.privacy``: retention policies, export of a user's data, and erasure of a user."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import (
    ConfigurationError,
    DatabaseError,
    InvalidValueError,
    TamperedDataError,
    ValidationError,
)
from mangostore.files import write_private
from mangostore.keys.field_cipher import field_cipher_for
from mangostore.privacy.archive import (
    StagedArchive,
    archive_dir,
    encode_value,
    list_archives,
    read_archive,
    rewrite_archive,
    stage_archive,
)
from mangostore.privacy.ownership import (
    EXPORTED_APART,
    KEPT_ON_ERASURE,
    Ownership,
    SchemaMap,
    key_batches,
    read_schema,
)
from mangostore.records import RECORD_CLASSES, Record
from mangostore.schema.copies import migration_copies
from mangostore.schema.sensitive import ALL_SENSITIVE_FIELDS, OWNER_COLUMN
from mangostore.security.audit import ANCHOR_COMPONENT, ERASURE_COMPONENT
from mangostore.sql import batches, quote_identifier

if TYPE_CHECKING:
    from mangostore.db import Database

__all__ = [
    "DEFAULT_POLICIES",
    "ErasureReport",
    "ExportManifest",
    "PrivacyService",
    "RetentionPolicy",
    "RetentionReport",
    "TableRetention",
    "verify_export",
]

DAY_MS: Final = 86_400_000
RETAINED_TABLES: Final = ("command_history", "notifications", "security_events")
MANIFEST: Final = "manifest.json"
EXPORT_FORMAT: Final = "mangostore-export"
_RECORD_TABLES: Final = {cls.__table__: cls for cls in RECORD_CLASSES}
#: Columns holding credentials: exported as "[redacted]", never as their value.
_CREDENTIAL_WORDS: Final = ("password", "verifier", "secret")
_REDACTED: Final = "[redacted]"


# -- policies and reports ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long rows of one table are kept.

    Attributes:
        table: ``command_history`` (archived, then deleted), ``notifications``
            (deleted) or ``security_events`` (archived, then removed from the head of
            the audit chain behind an anchor event).
        days: rows older than this many days go; ``None`` keeps them. For
            notifications the per-type ``retention_days`` always applies as well
            (through ``db.notify.apply_retention``); ``days`` is an upper bound for all.
    """

    table: str
    days: int | None

    def __post_init__(self) -> None:
        if self.table not in RETAINED_TABLES:
            raise InvalidValueError(
                f"no retention policy for {self.table!r}; tables: {', '.join(RETAINED_TABLES)}",
                field="table",
            )
        days = self.days
        if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 0):
            raise InvalidValueError(
                "retention days must be a non-negative integer or None", field="days"
            )


#: The defaults: command history 90 days, notifications by their type's
#: ``retention_days`` only, security events one year.
DEFAULT_POLICIES: Final = (
    RetentionPolicy("command_history", 90),
    RetentionPolicy("notifications", None),
    RetentionPolicy("security_events", 365),
)


@dataclass(frozen=True, slots=True)
class TableRetention:
    """What retention did to one table."""

    table: str
    cutoff: int | None
    archived: int
    deleted: int
    archive: Path | None = None


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """The outcome of :meth:`PrivacyService.apply_retention`.

    ``anchor_seq`` is the sequence number of the anchor event appended to the audit
    chain when security events were removed.
    """

    now: int
    tables: tuple[TableRetention, ...]
    anchor_seq: int | None = None

    def table(self, name: str) -> TableRetention:
        """Return the entry of one table."""
        for entry in self.tables:
            if entry.table == name:
                return entry
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class ExportedFile:
    """One JSON Lines file of an export."""

    name: str
    table: str
    rows: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ExportManifest:
    """What :meth:`PrivacyService.export_user` wrote (also saved as ``manifest.json``)."""

    user_id: str
    directory: Path
    created_at: int
    schema_version: int
    files: tuple[ExportedFile, ...]

    def rows(self, table: str) -> int:
        """How many rows of ``table`` were exported."""
        return next((f.rows for f in self.files if f.table == table), 0)

    def to_json(self) -> str:
        """The manifest as JSON text."""
        return json.dumps(
            {
                "format": EXPORT_FORMAT,
                "version": 1,
                "user_id": self.user_id,
                "created_at": self.created_at,
                "schema_version": self.schema_version,
                "files": [
                    {"name": f.name, "table": f.table, "rows": f.rows, "sha256": f.sha256}
                    for f in self.files
                ],
            },
            indent=2,
            sort_keys=True,
        )


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

    @property
    def total_deleted(self) -> int:
        """Rows deleted over every table."""
        return sum(self.rows_deleted.values())


# -- the service ---------------------------------------------------------------------------


class PrivacyService:
    """``db.privacy``: retention, export and erasure (design section 13).

    Erasure and retention take the write lock for their whole run and refuse to run
    inside a caller's transaction: their effects outside the database (the keyring,
    archive files, the WAL) cannot be rolled back with it.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<PrivacyService {self._db.path!r}>"

    # -- retention --------------------------------------------------------------------

    def apply_retention(
        self,
        now: int | None = None,
        policies: Sequence[RetentionPolicy] | None = None,
        *,
        archive_dir_path: str | os.PathLike[str] | None = None,
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
            now: the time to measure ages from (default: the database clock).
            policies: replace the defaults for the tables they name
                (:data:`DEFAULT_POLICIES` for the others).
            archive_dir_path: where archive files go (default ``<database>.archive``;
                required for an in-memory database that has rows to archive).

        Raises:
            ConfigurationError: archiving is needed but there is no place for files.
            DatabaseError: called inside a transaction.
        """
        self._refuse_inside_transaction("apply_retention")
        db = self._db
        at = db.clock.now_ms() if now is None else now
        chosen = {p.table: p for p in DEFAULT_POLICIES}
        for policy in policies or ():
            chosen[policy.table] = policy
        results: list[TableRetention] = []
        anchor_seq: int | None = None
        results.append(self._retain_commands(chosen["command_history"], at, archive_dir_path))
        results.append(self._retain_notifications(chosen["notifications"], at))
        events, anchor_seq = self._retain_events(chosen["security_events"], at, archive_dir_path)
        results.append(events)
        return RetentionReport(now=at, tables=tuple(results), anchor_seq=anchor_seq)

    def _retain_commands(
        self, policy: RetentionPolicy, now: int, where: str | os.PathLike[str] | None
    ) -> TableRetention:
        if policy.days is None:
            return TableRetention("command_history", None, 0, 0)
        cutoff = now - policy.days * DAY_MS
        db = self._db
        staged: StagedArchive | None = None
        try:
            with db.store.transaction() as conn:
                rows = _select_dicts(
                    conn,
                    "SELECT * FROM command_history WHERE timestamp < ? ORDER BY timestamp, id",
                    (cutoff,),
                )
                if not rows:
                    return TableRetention("command_history", cutoff, 0, 0)
                staged = stage_archive(
                    archive_dir(db, where),
                    "command_history",
                    rows,
                    keyring=db.keyring,
                    created_at=now,
                    first_ts=int(rows[0]["timestamp"]),
                    last_ts=int(rows[-1]["timestamp"]),
                    row_count=len(rows),
                )
                deleted = _delete_with_children(
                    conn, read_schema(conn), "command_history", "timestamp < ?", (cutoff,)
                )
        except BaseException:
            if staged is not None:
                staged.discard()
            raise
        assert staged is not None
        path = staged.place()
        return TableRetention("command_history", cutoff, len(rows), deleted, path)

    def _retain_notifications(self, policy: RetentionPolicy, now: int) -> TableRetention:
        db = self._db
        deleted = 0
        notify = getattr(db, "notify", None)
        if notify is not None and hasattr(notify, "apply_retention"):
            deleted += int(notify.apply_retention(now))
        cutoff = None
        if policy.days is not None:
            cutoff = now - policy.days * DAY_MS
            with db.store.transaction() as conn:
                deleted += _delete_with_children(
                    conn, read_schema(conn), "notifications", "created_at < ?", (cutoff,)
                )
        return TableRetention("notifications", cutoff, 0, deleted)

    def _retain_events(
        self, policy: RetentionPolicy, now: int, where: str | os.PathLike[str] | None
    ) -> tuple[TableRetention, int | None]:
        if policy.days is None:
            return TableRetention("security_events", None, 0, 0), None
        cutoff = now - policy.days * DAY_MS
        db = self._db
        staged: StagedArchive | None = None
        try:
            with db.store.transaction() as conn:
                with driver_errors("reading the audit log"):
                    newer = conn.execute(
                        "SELECT min(seq) FROM security_events WHERE timestamp >= ?", (cutoff,)
                    ).fetchone()[0]
                    last = conn.execute("SELECT max(seq) FROM security_events").fetchone()[0]
                if last is None:
                    return TableRetention("security_events", cutoff, 0, 0), None
                through = int(last) if newer is None else int(newer) - 1
                rows = _select_dicts(
                    conn,
                    "SELECT * FROM security_events WHERE seq <= ? ORDER BY seq",
                    (through,),
                )
                if not rows:
                    return TableRetention("security_events", cutoff, 0, 0), None
                staged = stage_archive(
                    archive_dir(db, where),
                    "security_events",
                    rows,
                    keyring=db.keyring,
                    created_at=now,
                    first_ts=min(int(r["timestamp"]) for r in rows),
                    last_ts=max(int(r["timestamp"]) for r in rows),
                    row_count=len(rows),
                )
                chain_from = None
                if db.keyring is not None:
                    chain_from = db.audit.chain_mac_at(conn, through).hex()
                digest = hashlib.sha256(staged.path.read_bytes()).hexdigest()
                anchor = db.audit._append(
                    "data",
                    "info",
                    ANCHOR_COMPONENT,
                    user_id=None,
                    event_data={
                        "removed_from_seq": int(rows[0]["seq"]),
                        "removed_through_seq": through,
                        "removed": len(rows),
                        "chain_from": chain_from,
                        "archive": staged.name.name,
                        "archive_sha256": digest,
                        "cutoff": cutoff,
                    },
                    client_info=None,
                    risk_score=0.0,
                )
                with driver_errors("removing archived security events"):
                    conn.execute(
                        "UPDATE audit_control SET retention_through_seq = ? WHERE id = 1",
                        (through,),
                    )
                    deleted = int(
                        conn.execute(
                            "DELETE FROM security_events WHERE seq <= ?", (through,)
                        ).rowcount
                    )
                    conn.execute(
                        "UPDATE audit_control SET retention_through_seq = NULL WHERE id = 1"
                    )
        except BaseException:
            if staged is not None:
                staged.discard()
            raise
        assert staged is not None
        path = staged.place()
        return TableRetention("security_events", cutoff, len(rows), deleted, path), anchor.seq

    # -- export -------------------------------------------------------------------------

    def export_user(self, user_id: str, dest_dir: str | os.PathLike[str]) -> ExportManifest:
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

        Raises:
            NotFoundError: no such user.
            ValidationError: ``dest_dir`` exists and is not empty.
            TamperedDataError: one of the user's encrypted values does not authenticate.
        """
        db = self._db
        db.users.get(user_id)  # NotFoundError for an unknown user
        directory = Path(dest_dir)
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise ValidationError(f"{directory} must be an empty directory or not exist yet")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        created_at = db.clock.now_ms()
        with db.store.snapshot() as conn:
            schema = read_schema(conn)
            owned = Ownership.find(conn, schema, user_id, follow_others=False, skip=EXPORTED_APART)
            files: list[ExportedFile] = []
            for table in schema.owned_tables(EXPORTED_APART):
                rows = self._export_rows(conn, schema, table, owned.rows.get(table, set()))
                files.append(_write_jsonl(directory, table, rows))
        events = (
            {**e.to_dict(), "mac": None if e.mac is None else e.mac.hex()}
            for e in db.audit.iter_events(user_id=user_id)
        )
        files.append(_write_jsonl(directory, "security_events", events))
        manifest = ExportManifest(
            user_id=user_id,
            directory=directory,
            created_at=created_at,
            schema_version=db.schema_version,
            files=tuple(sorted(files, key=lambda f: f.name)),
        )
        write_private(directory / MANIFEST, manifest.to_json().encode("utf-8"))
        return manifest

    def _export_rows(
        self, conn: Connection, schema: SchemaMap, table: str, keys: set[Any]
    ) -> Iterator[dict[str, Any]]:
        if not keys:
            return
        record = _RECORD_TABLES.get(table)
        repo = getattr(self._db, table, None) if record is not None else None
        info = schema.tables[table]
        quoted = quote_identifier(table)
        key = info.key
        for batch in key_batches(keys):
            if repo is not None and "id" in info.columns:
                with driver_errors(f"exporting {table}"):
                    ids = [
                        str(r[0])
                        for r in conn.execute(
                            f"SELECT id FROM {quoted} WHERE {key} IN "
                            f"(SELECT value FROM json_each(?)) ORDER BY {key}",
                            (batch,),
                        ).fetchall()
                    ]
                for chunk in batches(ids):
                    found: list[Record] = repo.list(id=list(chunk))
                    by_id = {r.id: r for r in found}  # type: ignore[attr-defined]
                    for row_id in chunk:
                        yield _redact(table, by_id[row_id].to_dict())
            else:
                rows = _select_dicts(
                    conn,
                    f"SELECT * FROM {quoted} WHERE {key} IN "
                    f"(SELECT value FROM json_each(?)) ORDER BY {key}",
                    (batch,),
                )
                for row in rows:
                    yield _redact(table, self._decrypt_row(table, row))

    def _decrypt_row(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        """Open the sealed columns of a table that has no repository."""
        columns = ALL_SENSITIVE_FIELDS.get(table, ())
        if not columns:
            return row
        cipher = field_cipher_for(self._db)
        owner = row.get(OWNER_COLUMN.get(table, "user_id"))
        for column in columns:
            value = row.get(column)
            if value is None:
                continue
            if cipher is None or isinstance(value, str):
                continue  # stored as plaintext by a database without a keyring
            plaintext = cipher.decrypt(table, column, str(row["id"]), str(owner), value)
            text = plaintext.decode("utf-8")
            try:
                row[column] = json.loads(text)
            except ValueError:
                row[column] = text
        return row

    # -- erasure ------------------------------------------------------------------------

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

        Raises:
            ValidationError: ``user_id`` is not a non-empty string.
            DatabaseError: called inside a transaction.
        """
        return self._erase(user_id, reapplied=False)

    def reapply_erasures(self) -> list[ErasureReport]:
        """Erase again every user the keyring says was erased but whose rows are back.

        This is what opening a database does (an older copy, a restored backup, a
        pre-migration copy): the keys are gone already; the rows still there are
        deleted. The archive files beside the database lose every erased user's
        rows too. Returns one report per user erased again.
        """
        keyring = self._db.keyring
        if keyring is None:
            return []
        erased = keyring.erased_users()
        if not erased:
            return []
        with self._db.store.transaction() as conn:
            schema = read_schema(conn)
            back = [u for u in erased if _has_rows(conn, schema, u)]
        reports = [self._erase(user_id, reapplied=True) for user_id in back]
        # An erasure interrupted between its commit and its archive scrub left no rows
        # to find above, but may have left the user's rows in archive files.
        rest = [u for u in erased if u not in back]
        if rest:
            self._scrub_archives(*rest)
        return reports

    def _erase(self, user_id: str, *, reapplied: bool) -> ErasureReport:
        if not isinstance(user_id, str) or not user_id:
            raise ValidationError("user_id must be a non-empty string", field="user_id")
        self._refuse_inside_transaction("erase_user")
        db = self._db
        keyring = db.keyring
        key = keyring.subkey("audit") if keyring is not None else None
        subject = (
            hmac.new(key, b"mangostore/erasure/v1" + user_id.encode("utf-8"), "sha256").hexdigest()
            if key is not None
            else None
        )
        cipher = field_cipher_for(db)
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
            redacted = 0 if keyring is not None else _redact_events(conn, user_id)
            for fts in schema.fts5:
                with driver_errors(f"compacting the full-text index {fts}"):
                    conn.execute(
                        f"INSERT INTO {quote_identifier(fts)} ({quote_identifier(fts)}) "
                        "VALUES ('optimize')"
                    )
            if _has_column(conn, "security_events", "seq"):
                db.audit._append(
                    "data",
                    "info",
                    ERASURE_COMPONENT,
                    user_id=None,
                    event_data={
                        "subject": subject,
                        "rows_deleted": sum(deleted.values()),
                        "tables": len(deleted),
                        "keys_destroyed": destroyed,
                        "reapplied": reapplied,
                    },
                    client_info=None,
                    risk_score=0.0,
                )
        rewritten = self._scrub_archives(user_id)
        truncated = self._truncate_wal()
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
            copies_not_reached=tuple(self._copies()),
            keyring_copies_removed=tuple(leftovers),
        )

    def _scrub_archives(self, *user_ids: str) -> list[Path]:
        """Remove the users' rows from the archive files beside the database."""
        db = self._db
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

    def _truncate_wal(self) -> bool:
        """Checkpoint the WAL into the file and truncate it to zero bytes."""
        db = self._db
        if db.path == ":memory:":
            return True
        for attempt in range(20):
            if db.checkpoint(truncate=True):
                return True
            time.sleep(0.05 * (attempt + 1))  # a reader was still in the old snapshot
        return False

    def _copies(self) -> list[Path]:
        path = self._db.path
        if path == ":memory:":
            return []
        return migration_copies(path)

    def _refuse_inside_transaction(self, what: str) -> None:
        if self._db.store.in_transaction():
            raise DatabaseError(
                f"{what} cannot run inside a transaction (its effects on the keyring, "
                "archive files and the WAL cannot be rolled back): call it outside "
                "db.transaction()"
            )


# -- helpers -------------------------------------------------------------------------------


def _select_dicts(conn: Connection, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    with driver_errors("reading rows"):
        cursor = conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, tuple(row), strict=True)) for row in cursor.fetchall()]


def _has_column(conn: Connection, table: str, column: str) -> bool:
    with driver_errors("reading the schema"):
        rows = conn.execute("SELECT name FROM pragma_table_info(?)", (table,)).fetchall()
    return any(r[0] == column for r in rows)


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


def _delete_with_children(
    conn: Connection, schema: SchemaMap, table: str, where: str, params: Sequence[Any]
) -> int:
    """Delete the rows of ``table`` matching ``where``, and the rows below them."""
    quoted = quote_identifier(table)
    key = schema.tables[table].key
    with driver_errors(f"deleting from {table}"):
        keys = [r[0] for r in conn.execute(f"SELECT {key} FROM {quoted} WHERE {where}", params)]
    if not keys:
        return 0
    for fk in schema.children.get(table, ()):
        target = "rowid" if fk.target == "rowid" else quote_identifier(fk.target)
        sub = f"SELECT {target} FROM {quoted} WHERE {key} IN (SELECT value FROM json_each(?))"
        for batch in key_batches(keys):
            _delete_with_children(
                conn, schema, fk.child, f"{quote_identifier(fk.column)} IN ({sub})", (batch,)
            )
    deleted = 0
    for batch in key_batches(keys):
        with driver_errors(f"deleting from {table}"):
            deleted += int(
                conn.execute(
                    f"DELETE FROM {quoted} WHERE {key} IN (SELECT value FROM json_each(?))",
                    (batch,),
                ).rowcount
            )
    return deleted


def _redact(table: str, row: dict[str, Any]) -> dict[str, Any]:
    for name in row:
        lowered = name.lower()
        credential = any(w in lowered for w in _CREDENTIAL_WORDS) or lowered.endswith("_token")
        if credential and row[name] is not None:
            row[name] = _REDACTED
    return row


def _write_jsonl(directory: Path, table: str, rows: Iterator[Mapping[str, Any]]) -> ExportedFile:
    name = f"{table}.jsonl"
    digest = hashlib.sha256()
    count = 0
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        for row in rows:
            line = (
                json.dumps(
                    {k: encode_value(v) for k, v in row.items()},
                    ensure_ascii=False,
                    sort_keys=True,
                    separators=(",", ":"),
                ).encode("utf-8")
                + b"\n"
            )
            out.write(line)
            digest.update(line)
            count += 1
        out.flush()
        os.fsync(out.fileno())
    return ExportedFile(name, table, count, digest.hexdigest())


def verify_export(directory: str | os.PathLike[str]) -> list[str]:
    """Check an export against its manifest; return the names of files that differ.

    An empty list means every file is present and has the row count and SHA-256 the
    manifest records.

    Raises:
        ValidationError: the directory has no readable manifest.
    """
    folder = Path(directory)
    try:
        doc = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ValidationError(f"{folder} has no readable {MANIFEST}") from None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise ValidationError(f"{folder / MANIFEST} is not a mangostore export manifest")
    bad: list[str] = []
    for entry in doc.get("files", []):
        name = str(entry.get("name"))
        try:
            data = (folder / name).read_bytes()
        except OSError:
            bad.append(name)
            continue
        rows = data.count(b"\n")
        if hashlib.sha256(data).hexdigest() != entry.get("sha256") or rows != entry.get("rows"):
            bad.append(name)
    return bad
