"""Retention: archive and delete rows older than their table's policy allows.

Command history is archived, then deleted. Notifications are deleted (by their type's
``retention_days`` and the policy). Security events are archived, then removed from
the head of the audit chain behind an anchor event appended first, so the kept chain
still verifies (see :mod:`mangostore.security.audit`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mangostore.clock import Instant, epoch_ms
from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import InvalidValueError
from mangostore.privacy.archive import StagedArchive, archive_dir, stage_archive
from mangostore.privacy.common import refuse_inside_transaction, select_dicts
from mangostore.privacy.ownership import SchemaMap, key_batches, read_schema
from mangostore.privacy.pseudonyms import anonymize_commands
from mangostore.progress import Progress, Reporter
from mangostore.security.audit import ANCHOR_COMPONENT
from mangostore.sql import quote_identifier

if TYPE_CHECKING:
    from mangostore.privacy.ports import RetentionDatabase

__all__ = [
    "DAY_MS",
    "DEFAULT_POLICIES",
    "RETAINED_TABLES",
    "RETENTION_RECORD_FORMAT",
    "RetentionPolicy",
    "RetentionReport",
    "TableRetention",
    "apply_retention",
    "delete_with_children",
    "run_record_path",
]

DAY_MS: Final = 86_400_000
RETAINED_TABLES: Final = ("command_history", "notifications", "security_events")
#: The format name of the record each run writes (see :func:`run_record_path`).
RETENTION_RECORD_FORMAT: Final = "mangostore-retention-run"


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
        anonymize: command history only: older rows stay for statistics, anonymised
            (see :func:`mangostore.privacy.pseudonyms.anonymize_commands`), instead
            of being archived and deleted.
    """

    table: str
    days: int | None
    anonymize: bool = False

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
        if self.anonymize and self.table != "command_history":
            raise InvalidValueError(
                f"{self.table} cannot be anonymised (only command_history keeps rows for "
                "statistics); leave anonymize=False",
                field="anonymize",
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
    anonymized: int = 0


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
        """Return the entry of one table.

        Raises:
            KeyError: the report has no entry for ``name``.
        """
        for entry in self.tables:
            if entry.table == name:
                return entry
        raise KeyError(name)


def apply_retention(
    db: RetentionDatabase,
    now: Instant | None = None,
    policies: Sequence[RetentionPolicy] | None = None,
    *,
    archive_dir_path: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> RetentionReport:
    """Archive and delete what the policies say is too old, in ``db``.

    What :meth:`mangostore.privacy.PrivacyService.apply_retention` does; arguments,
    result and errors as there.

    Raises:
        ConfigurationError: archiving is needed but there is no place for files.
        DatabaseError: called inside a transaction.
        InvalidValueError: ``now`` is not a time.
    """
    refuse_inside_transaction(db, "apply_retention")
    at = db.clock.now_ms() if now is None else epoch_ms(now, "now")
    chosen = {p.table: p for p in DEFAULT_POLICIES}
    for policy in policies or ():
        chosen[policy.table] = policy
    results: list[TableRetention] = []
    anchor_seq: int | None = None
    # One stage a table, reported before it starts and once it has committed.
    report = Reporter(progress)
    report.begin("command_history")
    results.append(_retain_commands(db, chosen["command_history"], at, archive_dir_path))
    report.end(results[-1].deleted)
    report.begin("notifications")
    results.append(_retain_notifications(db, chosen["notifications"], at))
    report.end(results[-1].deleted)
    report.begin("security_events")
    events, anchor_seq = _retain_events(db, chosen["security_events"], at, archive_dir_path)
    results.append(events)
    report.end(events.deleted)
    _record_run(db, at, list(chosen.values()), results)
    return RetentionReport(now=at, tables=tuple(results), anchor_seq=anchor_seq)


def _record_run(
    db: RetentionDatabase, now: int, policies: list[RetentionPolicy], done: list[TableRetention]
) -> None:
    """Write when retention last ran, with which policies, beside the database file."""
    path = run_record_path(db)
    if path is None:
        return
    record = {
        "format": RETENTION_RECORD_FORMAT,
        "ran_at": db.clock.now_ms(),
        "now": now,
        "policies": [
            {"table": p.table, "days": p.days, "anonymize": p.anonymize} for p in policies
        ],
        "tables": {
            t.table: {"archived": t.archived, "deleted": t.deleted, "anonymized": t.anonymized}
            for t in done
        },
    }
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record, sort_keys=True) + "\n")
    temporary.chmod(0o600)
    os.replace(temporary, path)


def run_record_path(db: RetentionDatabase) -> Path | None:
    """Where the record of the last retention run is (``<database>.retention.json``);
    ``None`` for an in-memory database."""
    return None if db.path == ":memory:" else Path(db.path + ".retention.json")


def _retain_commands(
    db: RetentionDatabase, policy: RetentionPolicy, now: int, where: str | os.PathLike[str] | None
) -> TableRetention:
    if policy.days is None:
        return TableRetention("command_history", None, 0, 0)
    cutoff = now - policy.days * DAY_MS
    if policy.anonymize:
        with db.store.transaction() as conn:
            anonymized = anonymize_commands(db, conn, cutoff)
        return TableRetention("command_history", cutoff, 0, 0, anonymized=anonymized)
    staged: StagedArchive | None = None
    try:
        with db.store.transaction() as conn:
            rows = select_dicts(
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
            deleted = delete_with_children(
                conn, read_schema(conn), "command_history", "timestamp < ?", (cutoff,)
            )
    except BaseException:
        if staged is not None:
            staged.discard()
        raise
    assert staged is not None
    path = staged.place()
    return TableRetention("command_history", cutoff, len(rows), deleted, path)


def _retain_notifications(
    db: RetentionDatabase, policy: RetentionPolicy, now: int
) -> TableRetention:
    deleted = 0
    notify = getattr(db, "notify", None)
    if notify is not None and hasattr(notify, "apply_retention"):
        deleted += int(notify.apply_retention(now))
    cutoff = None
    if policy.days is not None:
        cutoff = now - policy.days * DAY_MS
        with db.store.transaction() as conn:
            deleted += delete_with_children(
                conn, read_schema(conn), "notifications", "created_at < ?", (cutoff,)
            )
    return TableRetention("notifications", cutoff, 0, deleted)


def _retain_events(
    db: RetentionDatabase, policy: RetentionPolicy, now: int, where: str | os.PathLike[str] | None
) -> tuple[TableRetention, int | None]:
    if policy.days is None:
        return TableRetention("security_events", None, 0, 0), None
    cutoff = now - policy.days * DAY_MS
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
            rows = select_dicts(
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
            anchor = db.audit.append_reserved_in(
                conn,
                "data",
                ANCHOR_COMPONENT,
                {
                    "removed_from_seq": int(rows[0]["seq"]),
                    "removed_through_seq": through,
                    "removed": len(rows),
                    "chain_from": chain_from,
                    "archive": staged.name.name,
                    "archive_sha256": digest,
                    "cutoff": cutoff,
                },
            )
            with driver_errors("removing archived security events"):
                conn.execute(
                    "UPDATE audit_control SET retention_through_seq = ? WHERE id = 1",
                    (through,),
                )
                deleted = int(
                    conn.execute("DELETE FROM security_events WHERE seq <= ?", (through,)).rowcount
                )
                conn.execute("UPDATE audit_control SET retention_through_seq = NULL WHERE id = 1")
    except BaseException:
        if staged is not None:
            staged.discard()
        raise
    assert staged is not None
    path = staged.place()
    return TableRetention("security_events", cutoff, len(rows), deleted, path), anchor.seq


def delete_with_children(
    conn: Connection, schema: SchemaMap, table: str, where: str, params: Sequence[Any]
) -> int:
    """Delete the rows of ``table`` matching ``where``, and the rows below them.

    Rows of child tables (through foreign keys, transitively) go first, so no
    reference is left dangling. Runs in the caller's transaction ``conn``.

    Args:
        conn: the connection of the caller's write transaction.
        schema: the live schema (:func:`~mangostore.privacy.ownership.read_schema`).
        table: the table to delete from.
        where: an SQL condition on ``table``, with ``?`` for each of ``params``.
        params: the values of the condition.

    Returns:
        How many rows of ``table`` itself were deleted.
    """
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
            delete_with_children(
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
