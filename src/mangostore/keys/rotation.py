"""Rotation of the per-user data keys, and re-encryption of every value under the new ones.

A rotation runs in two phases:

1. The rotation is recorded in ``field_key_rotations``; then every user who has a
   usable data key gets a new primary key and their previous keys become
   ``retired``, :data:`USERS_PER_BATCH` users a transaction with one keyring write
   each, so other writers wait at most one batch. The new keys' rows name the
   rotation (``field_keys.rotation_id``). From each commit on, that batch's new
   values use the new keys.
2. Table by table (:data:`~mangostore.schema.sensitive.ALL_SENSITIVE_FIELDS`, except the
   append-only audit log, whose values keep the key that sealed them), every value
   whose envelope names a key other than its owner's primary is opened with its old
   key and sealed again, for the same place, under the new one. Each batch of rows
   is one transaction.

Retired keys stay in the keyring, so a rotation stopped at any point (an exception,
a crash, a killed process) leaves every value readable, under either its old or its
new key. Running :func:`rotate_field_keys` again finds the unfinished rotation,
gives new keys only to the users it had not reached, and completes the
re-encryption. Keys stored by a batch that never committed are removed from the
keyring when a rotation starts. Retired keys are never
destroyed automatically: an older copy of the database may still need them.
Destroying a user's keys is erasure, done through
:meth:`~mangostore.keys.field_cipher.FieldCipher.destroy_user_keys`.

Values under a destroyed key (an erased user) are counted and left as they are;
values that fail authentication are listed in the report and also left untouched,
so one damaged row does not stop the rotation of all the others.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import uuid6

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import ConfigurationError, InvalidValueError, TamperedDataError
from mangostore.keys.envelope import parse_header
from mangostore.keys.field_cipher import FieldCipher, field_cipher_for
from mangostore.progress import Progress, Reporter
from mangostore.schema.sensitive import ALL_SENSITIVE_FIELDS, APPEND_ONLY_TABLES, OWNER_COLUMN
from mangostore.sql import quote_identifier

if TYPE_CHECKING:
    from mangostore.keys.ports import RotationDatabase

__all__ = ["FieldRef", "RotationReport", "rotate_field_keys"]

#: Users given new keys per transaction in phase 1 (one keyring write each).
USERS_PER_BATCH = 200

#: The next users, by id, who hold a usable key but no primary made by this rotation;
#: and whether they have a primary key at all (it is retired).
_SQL_USERS_TO_ROTATE = """
SELECT k.user_id, max(k.status = 'primary') FROM field_keys AS k
WHERE k.user_id > ? AND k.status IN ('primary', 'retired')
  AND NOT EXISTS (
      SELECT 1 FROM field_keys AS p
      WHERE p.user_id = k.user_id AND p.status = 'primary' AND p.rotation_id = ?
  )
GROUP BY k.user_id ORDER BY k.user_id LIMIT ?
"""


@dataclass(frozen=True, slots=True)
class FieldRef:
    """Where one encrypted value lives."""

    table: str
    column: str
    row_id: str


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What one call of :func:`rotate_field_keys` did.

    Attributes:
        rotation_id: the row of ``field_key_rotations`` this run started or resumed.
        resumed: an interrupted rotation was finished rather than a new one started.
        keys_created: new primary keys made by this call (0 when resuming).
        keys_retired: primary keys retired by this call.
        rows_scanned: rows holding at least one encrypted value that were examined.
        values_reencrypted: values sealed again under their owner's new primary key.
        values_current: values already under their owner's primary key.
        values_shredded: values under a destroyed key (erased users), left as they are.
        unreadable: values that failed authentication, left as they are.
    """

    rotation_id: str
    resumed: bool
    keys_created: int
    keys_retired: int
    rows_scanned: int
    values_reencrypted: int
    values_current: int
    values_shredded: int
    unreadable: tuple[FieldRef, ...]


@dataclass
class _Tally:
    rows: int = 0
    reencrypted: int = 0
    current: int = 0
    shredded: int = 0
    unreadable: list[FieldRef] = field(default_factory=list)


def rotate_field_keys(
    db: RotationDatabase,
    *,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> RotationReport:
    """Give every user a new data key and re-encrypt their values under it.

    Safe to interrupt at any point and to run again (see the module docs); other
    readers and writers keep working between batches.

    Args:
        db: an open database with a keyring.
        batch_size: rows re-encrypted per transaction.
        progress: told (see :mod:`mangostore.progress`) of the stages ``"new keys"``
            (users given a new key, after each batch of :data:`USERS_PER_BATCH`
            commits) and ``"re-encrypting"`` (rows holding an encrypted value, after
            each batch of ``batch_size`` commits). A callback that raises stops the
            rotation between two batches; running it again resumes it.

    Returns:
        The counts of keys made and values examined, re-encrypted and skipped.

    Raises:
        ConfigurationError: the database has no keyring (no field is encrypted).
        InvalidValueError: ``batch_size`` is not a positive integer.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    cipher = field_cipher_for(db)
    if cipher is None:
        raise ConfigurationError(
            "this database was opened without a passphrase, so it has no field keys to rotate"
        )
    report = Reporter(progress)
    report.begin("new keys")
    rotation_id, resumed, created, retired = _start(db, cipher, report)
    report.end()
    tally = _Tally()
    report.begin("re-encrypting", _count_rows(db))
    for table, columns in _rotated_fields():
        after = ""
        while True:
            with db.store.transaction() as conn:
                rows = _batch(conn, table, columns, after, batch_size)
                if not rows:
                    break
                done = _reencrypt_rows(conn, cipher, table, columns, rows, tally)
                with driver_errors("recording rotation progress"):
                    conn.execute(
                        "UPDATE field_key_rotations SET values_reencrypted = "
                        "values_reencrypted + ? WHERE id = ?",
                        (done, rotation_id),
                    )
            after = rows[-1][0]
            tally.rows += len(rows)
            report.advance(len(rows))
            if len(rows) < batch_size:
                break
    with db.store.transaction() as conn, driver_errors("finishing a key rotation"):
        conn.execute(
            "UPDATE field_key_rotations SET finished_at = ? WHERE id = ?",
            (db.clock.now_ms(), rotation_id),
        )
    report.end()
    return RotationReport(
        rotation_id=rotation_id,
        resumed=resumed,
        keys_created=created,
        keys_retired=retired,
        rows_scanned=tally.rows,
        values_reencrypted=tally.reencrypted,
        values_current=tally.current,
        values_shredded=tally.shredded,
        unreadable=tuple(tally.unreadable),
    )


def _start(
    db: RotationDatabase, cipher: FieldCipher, report: Reporter
) -> tuple[str, bool, int, int]:
    """Resume the unfinished rotation or record a new one, then give new keys to every
    user who has none from it yet, :data:`USERS_PER_BATCH` users a transaction.

    Returns:
        ``(rotation id, resumed, keys created, keys retired)``.
    """
    with db.store.transaction() as conn:
        # Keys of a batch that was rolled back or killed were stored but never named.
        cipher.prune_unused_keys(conn)
        with driver_errors("reading key rotations"):
            running = conn.execute(
                "SELECT id FROM field_key_rotations WHERE finished_at IS NULL"
            ).fetchone()
            resumed = running is not None
            rotation_id = str(running[0]) if running is not None else str(uuid6.uuid7())
            if not resumed:
                conn.execute(
                    "INSERT INTO field_key_rotations (id, started_at, keys_created) "
                    "VALUES (?, ?, 0)",
                    (rotation_id, db.clock.now_ms()),
                )
            users = None
            if report.wanted:
                # LIMIT -1: every user still to rotate, for the progress total.
                users = conn.execute(
                    f"SELECT count(*) FROM ({_SQL_USERS_TO_ROTATE})", ("", rotation_id, -1)
                ).fetchone()[0]
    if users is not None:
        report.advance(0, total=int(users))
    created = retired = 0
    after = ""
    while True:
        # One batch a transaction: other writers carry on between batches, and the
        # keyring is written once a batch instead of once a user.
        with db.store.transaction() as conn:
            with driver_errors("reading field keys"):
                rows = conn.execute(_SQL_USERS_TO_ROTATE, (after, rotation_id, USERS_PER_BATCH))
                batch = [(str(user_id), bool(has_primary)) for user_id, has_primary in rows]
            if not batch:
                break
            cipher.rotate_user_keys(conn, [u for u, _ in batch], rotation_id=rotation_id)
            with driver_errors("recording a key rotation"):
                conn.execute(
                    "UPDATE field_key_rotations SET keys_created = keys_created + ? WHERE id = ?",
                    (len(batch), rotation_id),
                )
        created += len(batch)
        retired += sum(has_primary for _, has_primary in batch)
        after = batch[-1][0]
        report.advance(len(batch))
    return rotation_id, resumed, created, retired


def _rotated_fields() -> list[tuple[str, tuple[str, ...]]]:
    """The encrypted columns to re-seal: rows of append-only tables never change (the
    audit chain's MACs cover their ciphertext), so they stay under their retired keys."""
    return [(t, c) for t, c in ALL_SENSITIVE_FIELDS.items() if t not in APPEND_ONLY_TABLES]


def _not_null(columns: Sequence[str]) -> str:
    return " OR ".join(f"{quote_identifier(c)} IS NOT NULL" for c in columns)


def _count_rows(db: RotationDatabase) -> int:
    """Count the rows holding at least one encrypted value, over every table."""
    total = 0
    for table, columns in _rotated_fields():
        rows = db.query(
            f"SELECT count(*) FROM {quote_identifier(table)} WHERE {_not_null(columns)}"
        )
        total += int(rows[0][0])
    return total


def _batch(
    conn: Connection, table: str, columns: Sequence[str], after: str, limit: int
) -> list[Any]:
    """Return the next ``limit`` rows of ``table`` after id ``after`` that hold a value."""
    select = ", ".join(quote_identifier(c) for c in (OWNER_COLUMN[table], *columns))
    sql = (
        f"SELECT id, {select} FROM {quote_identifier(table)} "
        f"WHERE id > ? AND ({_not_null(columns)}) ORDER BY id LIMIT ?"
    )
    with driver_errors(f"reading {table} for key rotation"):
        return list(conn.execute(sql, (after, limit)).fetchall())


def _reencrypt_rows(
    conn: Connection,
    cipher: FieldCipher,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Any],
    tally: _Tally,
) -> int:
    """Re-seal the values of ``rows`` that are not under their owner's primary key.

    Returns:
        How many values were re-encrypted.
    """
    primaries: dict[str, uuid.UUID | None] = {}
    statuses: dict[uuid.UUID, str | None] = {}
    done = 0
    for row in rows:
        row_id, owner = row[0], row[1]
        changed: dict[str, bytes] = {}
        for offset, column in enumerate(columns, start=2):
            value = row[offset]
            if value is None:
                continue
            ref = FieldRef(table, column, str(row_id))
            if not isinstance(owner, str) or not isinstance(row_id, str):
                tally.unreadable.append(ref)
                continue
            try:
                _, _, key_id = parse_header(value)
            except TamperedDataError:
                tally.unreadable.append(ref)
                continue
            if owner not in primaries:
                primaries[owner] = cipher.primary_key_id(conn, owner)
            if key_id == primaries[owner]:
                tally.current += 1
                continue
            if key_id not in statuses:
                statuses[key_id] = _key_status(conn, key_id)
            if statuses[key_id] == "destroyed":
                tally.shredded += 1
                continue
            try:
                plaintext = cipher.decrypt(table, column, row_id, owner, value)
            except TamperedDataError:
                tally.unreadable.append(ref)
                continue
            sealed = cipher.encrypt(conn, table, column, row_id, owner, plaintext)
            # encrypt() may have made a new primary (use limit, or a user without one).
            primaries[owner] = parse_header(sealed)[2]
            changed[column] = sealed
        if changed:
            assignments = ", ".join(f"{quote_identifier(c)} = ?" for c in changed)
            with driver_errors(f"re-encrypting {table}"):
                conn.execute(
                    f"UPDATE {quote_identifier(table)} SET {assignments} WHERE id = ?",
                    (*changed.values(), row_id),
                )
            done += len(changed)
    tally.reencrypted += done
    return done


def _key_status(conn: Connection, key_id: uuid.UUID) -> str | None:
    with driver_errors("reading field keys"):
        row = conn.execute("SELECT status FROM field_keys WHERE id = ?", (str(key_id),)).fetchone()
    return None if row is None else str(row[0])
