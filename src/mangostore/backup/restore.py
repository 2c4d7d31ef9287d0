"""Restoring a backup chain into a new encrypted database.

A restore never writes into an existing database. It makes a new database of the same
vault (its own passphrase, its own recovery key) under a temporary name beside the
target, creates the tables, applies the full backup and then each incremental of the
chain in one transaction, builds the full-text indexes the backup left out again
(:mod:`mangostore.schema.derived`), creates indexes, views and triggers last, puts the
per-user data keys of the chain's key blocks into the new keyring (without those of
erased users), re-applies every erasure it knows of, and only then moves the files into
place. Any failure, a damaged object included, removes the temporary files: the target
is untouched.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mangostore.backup.catalog import Catalog
from mangostore.backup.destinations import Destination
from mangostore.backup.filechunks import restore_chunks
from mangostore.backup.keyblock import read_keyblock
from mangostore.backup.manifest import Manifest, data_key, manifest_name
from mangostore.backup.snapshot import SchemaPlan, TablePlan
from mangostore.backup.writing import stream_records
from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import BackupCorruptError, BackupError
from mangostore.filestore.transfer import (
    chunk_folder_exists,
    move_chunk_folder,
    remove_chunk_folder,
)
from mangostore.keys.keyring import DataKeyEntry, Keyring, keyring_path
from mangostore.monitor.connection import execute_unmonitored
from mangostore.progress import Progress
from mangostore.settings import Settings
from mangostore.sql import quote_identifier

__all__ = ["RestoreReport", "apply_chain", "database_files", "restore_into"]

#: The page cache of the connection a restore writes through (KiB; the engine's own
#: setting comes back afterwards).
_RESTORE_CACHE_KIB = 64 * 1024

#: Makes a new database of a vault: ``(path, passphrase, vault_of=, settings=,
#: migrate=)`` -> an object with ``.db`` and ``.recovery_key`` (``create_database``).
MakeDatabase = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What :meth:`BackupService.restore` did.

    Attributes:
        path: the restored database.
        backup_id: the backup restored (the last of its chain).
        created_at: when that backup's snapshot was taken (epoch ms).
        backups_read: the full backup and the incrementals applied.
        bytes_read: stored bytes read from the destination.
        tables: every table's row count in the restored database.
        erasures_reapplied: users whose rows were erased again after the restore.
        recovery_key: the new database's recovery key (shown once; store it apart
            from the passphrase).
        integrity_problems: what ``PRAGMA integrity_check`` found (checked only when
            asked for; verify does).
    """

    path: str
    backup_id: str
    created_at: int
    backups_read: int
    bytes_read: int
    tables: dict[str, int]
    erasures_reapplied: int
    recovery_key: str | None
    integrity_problems: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"RestoreReport(path={self.path!r}, backup_id={self.backup_id!r}, "
            f"backups_read={self.backups_read}, recovery_key=<hidden>)"
        )


def database_files(path: Path) -> list[Path]:
    """The files of a database at ``path``: itself, its WAL and shared memory, its keyring."""
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm"), keyring_path(path)]


class _Bytes:
    def __init__(self, progress: Progress | None, total: int) -> None:
        self._progress = progress
        self.total = total
        self.done = 0

    def __call__(self, size: int) -> None:
        self.done += size
        if self._progress is not None:
            self._progress(self.done, max(self.total, self.done), "restoring")


def restore_into(
    destination: Destination,
    catalog: Catalog,
    target: Manifest,
    keyring: Keyring,
    make_database: MakeDatabase,
    into: Path,
    passphrase: str,
    *,
    settings: Settings | None = None,
    force: bool = False,
    progress: Progress | None = None,
    integrity: bool = False,
) -> RestoreReport:
    """Restore ``target`` (with its chain) into a new database at ``into``.

    Raises:
        BackupError: ``into`` exists and ``force`` is false.
        BackupCorruptError: an object of the chain is missing or damaged (named);
            nothing was written at ``into``.
    """
    into = Path(into)
    existing = [p for p in database_files(into) if p.exists()]
    if (existing or chunk_folder_exists(into)) and not force:
        raise BackupError(
            f"{into} already exists: restore into a new path, or pass force=True "
            "(--force) to replace it (close every program using it first)"
        )
    chain = catalog.chain(target)
    backup_key = keyring.subkey("backup")
    erased = set(keyring.erased_users())
    entries: dict[str, DataKeyEntry] = {}
    for manifest in chain:
        block = read_keyblock(destination, manifest, data_key(backup_key, manifest.id))
        erased |= set(block.erased_users)
        for entry in block.entries:
            entries[entry.key_id] = entry
    temp = into.parent / f".{into.name}.restoring-{secrets.token_hex(6)}"
    created = make_database(
        str(temp), passphrase, vault_of=keyring, settings=settings, migrate=False
    )
    db = created.db
    counter = _Bytes(progress, sum(m.stored_bytes for m in chain))
    try:
        if progress is not None:
            progress(0, counter.total, "restoring")
        with db.store.idle_connection() as conn:
            # This database lives only for the restore: a page cache that holds it
            # lets the restore's one transaction write each page once, and the row
            # counts below read the pages just written rather than decrypt them again.
            conn.execute(f"PRAGMA cache_size = {-_RESTORE_CACHE_KIB}")
            apply_chain(conn, destination, chain, backup_key, counter)
        # The rows went in around the query cache (see _apply_one): nothing it holds
        # of the new database may be trusted.
        db.cache.clear()
        ring: Keyring = db.store.keyring
        ring.put_data_keys([e for e in entries.values() if e.user_id not in erased])
        for user_id in sorted(erased):
            ring.destroy_user_keys(user_id)
        reports = db.privacy.reapply_erasures() if erased else []
        # After the erasures: the chunks of the files still there, no others.
        restore_chunks(db.files, destination, chain, backup_key, counter)
        with db.store.idle_connection() as conn:
            tables = {t: _count(conn, t) for t in target.tables}
        problems = tuple(db.check_integrity(quick=False)) if integrity else ()
        if integrity:
            problems += _file_problems(db)
        db.checkpoint(truncate=True)
        db.close()
    except BaseException:
        with contextlib.suppress(Exception):
            db.close()
        remove_chunk_folder(temp)
        _remove_all(temp)
        raise
    if force:
        for path in existing:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        remove_chunk_folder(into)
    for src, dst in zip(database_files(temp), database_files(into), strict=True):
        if src.exists():
            os.replace(src, dst)
    move_chunk_folder(temp, into)
    # What the engine kept beside the temporary file (its lock files) goes too.
    _remove_all(temp)
    return RestoreReport(
        path=str(into),
        backup_id=target.id,
        created_at=target.created_at,
        backups_read=len(chain),
        bytes_read=counter.done,
        tables=tables,
        erasures_reapplied=len(reports),
        recovery_key=created.recovery_key,
        integrity_problems=problems,
    )


def _file_problems(db: Any) -> tuple[str, ...]:
    """What the restored file store's check finds: every chunk its files use must be
    there and open under the restored keys."""
    if not db.files.referenced_chunks():
        return ()  # no stored file has a chunk (or the schema predates file storage)
    report = db.files.check(verify=True, repair=False)
    problems = [f"file chunk {name} is missing after the restore" for name in report.missing]
    problems += [f"file chunk {name} does not open after the restore" for name in report.corrupt]
    problems += [
        f"stored file {fid} cannot be read after the restore" for fid in report.damaged_files
    ]
    return tuple(problems)


def _remove_all(temp: Path) -> None:
    """Remove every file named after the temporary database (WAL, keyring, locks)."""
    for path in temp.parent.glob(glob.escape(temp.name) + "*"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _count(conn: Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {quote_identifier(table)}").fetchone()[0])


def apply_chain(
    conn: Connection,
    destination: Destination,
    chain: list[Manifest],
    backup_key: bytes,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Write the chain's schema and rows through ``conn`` (a new, empty database, no
    transaction open), in one transaction.

    The caller sizes the page cache (the whole restore is one transaction: pages that
    fit in the cache are encrypted and written once, at commit, instead of spilled to
    the WAL early), and clears the database's query cache after: the rows go in
    around the statement monitor and the query cache (see :func:`_apply_one`).

    Raises:
        BackupCorruptError: an object is missing or damaged.
    """
    with driver_errors("restoring a backup"):
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("BEGIN IMMEDIATE")
    try:
        plan: SchemaPlan | None = None
        for position, manifest in enumerate(chain):
            plan = _apply_one(conn, destination, manifest, backup_key, plan, on_bytes, position)
        assert plan is not None
        with driver_errors("building a backup's full-text indexes again"):
            for _, statements in plan.rebuilt:
                for sql in statements:
                    conn.execute(sql)
        with driver_errors("restoring a backup's schema"):
            for item in plan.items:
                if item.type in ("index", "view", "trigger"):
                    conn.execute(item.sql)
            conn.execute(f"PRAGMA user_version = {int(plan.user_version)}")
            conn.execute(f"PRAGMA application_id = {int(plan.application_id)}")
            conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise
    finally:
        with contextlib.suppress(Exception):
            conn.execute("PRAGMA foreign_keys = ON")


def _apply_one(
    conn: Connection,
    destination: Destination,
    manifest: Manifest,
    backup_key: bytes,
    plan: SchemaPlan | None,
    on_bytes: Callable[[int], None] | None,
    position: int,
) -> SchemaPlan:
    records = stream_records(destination, manifest, backup_key, on_bytes)
    parts = manifest.objects_of("data")
    name = parts[0].name if parts else manifest_name(manifest.id)
    first = next(records, None)
    if first is None or first[0] != b"P":
        raise BackupCorruptError(f"backup object {name} does not start with a schema", name)
    try:
        mine = SchemaPlan.from_json(json.loads(first[1]))
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupCorruptError(f"backup object {name} holds a damaged schema", name) from exc
    if mine.digest != manifest.schema_digest:
        raise BackupCorruptError(f"backup object {name} is not the one its manifest made", name)
    if position == 0:
        _create_tables(conn, mine)
    elif plan is None or mine.digest != plan.digest:
        raise BackupCorruptError(
            f"backup {manifest.id} has another schema than the backup it builds on", name
        )
    current: TablePlan | None = None
    with driver_errors("restoring a backup's rows"):
        for kind, payload in records:
            if kind == b"T":
                try:
                    current = mine.table(json.loads(payload)["t"])
                except (KeyError, ValueError) as exc:
                    raise BackupCorruptError(
                        f"backup object {name} names a table its schema lacks", name
                    ) from exc
                if position == 0 and current.made_by_sqlite:
                    conn.execute(current.delete_sql_all())
            elif current is None:
                raise BackupCorruptError(f"backup object {name} has rows before a table", name)
            elif kind == b"D":
                execute_unmonitored(conn, current.delete_sql(_doc(payload, name)))
            elif kind == b"E":
                conn.executemany(current.erase_sql(), _ranges(_doc(payload, name), name))
            elif kind == b"R":
                # Unmonitored: each record is a new statement of up to hundreds of KiB,
                # which the statement monitor and the query cache would each parse
                # again, for nothing (restore_into clears the new database's cache).
                execute_unmonitored(conn, current.insert_sql(payload.decode()))
            else:
                raise BackupCorruptError(f"backup object {name} holds an unknown record", name)
    return mine


def _doc(payload: bytes, name: str) -> Any:
    """A record's JSON (the stream authenticated it: only a bug writes a bad one)."""
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise BackupCorruptError(f"backup object {name} holds a damaged record", name) from exc


def _ranges(doc: Any, name: str) -> list[tuple[int, int]]:
    """The ``[first, last]`` rowid ranges of an ``E`` record."""
    try:
        return [(int(first), int(last)) for first, last in doc]
    except (TypeError, ValueError) as exc:
        raise BackupCorruptError(f"backup object {name} holds a damaged removal", name) from exc


def _create_tables(conn: Connection, plan: SchemaPlan) -> None:
    with driver_errors("restoring a backup's tables"):
        for item in plan.items:
            if item.type == "table" and not item.virtual:
                conn.execute(item.sql)
        for item in plan.items:
            if item.virtual:
                conn.execute(item.sql)
