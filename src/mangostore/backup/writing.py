"""Making a backup: a full one, or an incremental one in the newest one's series.

Both read one consistent snapshot (:mod:`mangostore.backup.snapshot`), which starts as
the backup cuts the change log (:mod:`mangostore.backup.changelog`), and write three
things: the ``data`` stream (the schema, then rows), the ``index`` stream (keyed
digests of the tables SQLite writes itself, which no trigger sees:
:mod:`mangostore.backup.index`) and the key block; then the manifest, last.

An incremental backup writes the blocks and keys the change log tagged after its
parent's cut, reading only those rows, and compares the few tables the log does not
cover (full-text shadow tables, ``sqlite_sequence``) with its parent's index
(:mod:`mangostore.backup.tables`). It is built only on a backup of this format cut
from the same log.

The incrementals since a full backup form levels (:func:`level_parent`): the ``n``-th
is built on the newest backup at its level or above, so with ``fanout`` 8 the 8th,
16th, ... hold the changes of the eight before them, the 64th, 128th, ... those of
the eight level-1 ones before them, and so on. Restore points can then be a minute
apart while a restore reads at most ``fanout - 1`` backups per level and each change
is stored once per level. Once the new backup's manifest is written, the indexes of
the incrementals nothing will be built on again (outside :func:`spine`) are dropped;
a full backup keeps its own.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Literal

from mangostore.backup.catalog import Catalog, ManifestCache, load_catalog
from mangostore.backup.changelog import (
    KEEP_EPOCHS,
    LogMark,
    RowDelta,
    changed_keys,
    cut,
    logged_tables,
    restart,
    row_deltas,
)
from mangostore.backup.destinations import Destination, put_bytes
from mangostore.backup.filechunks import chain_chunks, copy_chunks
from mangostore.backup.index import IndexWriter, ParentIndex, digester
from mangostore.backup.keyblock import KeyBlock, write_keyblock
from mangostore.backup.manifest import (
    VERSION,
    Manifest,
    data_key,
    derive_key,
    level_of,
    manifest_name,
    sign_manifest,
)
from mangostore.backup.policy import BackupPolicy
from mangostore.backup.snapshot import SchemaPlan, is_utf8, read_plan
from mangostore.backup.stream import ObjectInfo, StreamReader, StreamWriter, frame, read_records
from mangostore.backup.tables import Copied, copy_all, copy_logged, copy_table
from mangostore.engine.pragmas import Connection
from mangostore.engine.store import StoreProtocol
from mangostore.errors import BackupCorruptError, BackupError, ConfigurationError
from mangostore.filestore.service import FileService
from mangostore.filestore.transfer import referenced_chunks
from mangostore.ids import new_id
from mangostore.keys.keyring import Keyring
from mangostore.progress import Progress
from mangostore.schema import introspect

__all__ = ["backup_keyring", "drop_index", "level_parent", "spine", "take_backup"]


def backup_keyring(store: StoreProtocol) -> Keyring:
    """The keyring backups are sealed with.

    Raises:
        ConfigurationError: the database has no keyring (backups are always encrypted).
    """
    if store.keyring is None:
        raise ConfigurationError(
            "backups are encrypted with the database's keys: this database was opened "
            "without a passphrase, so it cannot be backed up this way"
        )
    return store.keyring


def index_digest_key(backup_key: bytes) -> bytes:
    """The key of the rows' digests (keyed, so a digest says nothing of a row)."""
    return derive_key(backup_key, "row-digest")


class _Progress:
    """Stored bytes, reported to the caller's callback as ``writing``."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self.done = 0

    def __call__(self, size: int) -> None:
        self.done += size
        if self._progress is not None:
            self._progress(self.done, None, "writing")


def take_backup(
    store: StoreProtocol,
    destination: Destination,
    policy: BackupPolicy,
    files: FileService,
    *,
    kind: Literal["auto", "full", "incremental"] = "auto",
    progress: Progress | None = None,
    cache: ManifestCache | None = None,
) -> Manifest:
    """Make one backup of ``store`` in ``destination`` and return its manifest.

    ``kind="auto"`` makes an incremental backup when the newest backup here has the
    same schema, its chain is shorter than ``policy.max_chain``, its index is there and
    the change log reaches back to it; otherwise a full one. The chunks of ``files``
    (the database's file store) that the snapshot's files use go with it
    (:mod:`mangostore.backup.filechunks`).

    Raises:
        ConfigurationError: the database has no keyring.
        BackupError: ``kind="incremental"`` and there is nothing to build on; or a
            chunk stored files use is missing (``db.files.check()`` names the files).
        BackupCorruptError: ``kind="incremental"`` and the parent's index is damaged
            (make a full backup; ``"auto"`` makes one by itself).
        BackupDestinationError: the destination failed; nothing was left that looks
            like a backup.
    """
    keyring = backup_keyring(store)
    backup_key = keyring.subkey("backup")
    catalog = load_catalog(destination, backup_key, keyring.vault_id, cache)
    backup_id = new_id()
    key = data_key(backup_key, backup_id)
    digest_key = index_digest_key(backup_key)
    report = _Progress(progress)
    data = StreamWriter(
        destination,
        backup_id,
        "data",
        key,
        part_bytes=policy.part_bytes,
        level=policy.zstd_level,
        threads=policy.zstd_threads,
        on_bytes=report,
    )
    index = StreamWriter(
        destination, backup_id, "index", key, part_bytes=policy.part_bytes, level=1
    )
    entries = IndexWriter(index)
    hasher = digester(digest_key)
    if progress is not None:
        progress(0, None, "writing")
    chunk_objects: list[ObjectInfo] = []
    key_blocks: list[ObjectInfo] = []
    parent: Manifest | None = None

    def abort() -> None:
        data.abort()
        index.abort()
        for obj in data.objects + index.objects + chunk_objects + key_blocks:
            with contextlib.suppress(Exception):
                destination.delete(obj.name)

    try:
        # The chunk files stay on disk (no sweep removes one) from before the snapshot
        # until the chunks it names are copied.
        with files.holding_chunks():
            with store.snapshot_after(cut) as (conn, mark):
                plan = read_plan(conn)
                created_at = store.clock.now_ms()
                parent, seq = _parent(catalog, plan, policy, kind, mark)
                data.write(frame(b"P", json.dumps(plan.to_json()).encode()))
                counts: dict[str, int] = {}
                written = deleted = 0
                old = ParentIndex(destination, parent, backup_key) if parent else None
                since = parent.log_epoch if parent is not None else None
                changed = changed_keys(conn, since, plan) if since is not None else {}
                deltas = row_deltas(conn, since) if since is not None else {}
                logged = logged_tables(conn, plan)
                utf8 = is_utf8(conn)
                for table in plan.tables:
                    copied: Copied
                    if table.name not in logged:
                        before = old.table(table.name) if old is not None else None
                        copied = copy_table(conn, table, data, entries, hasher, before, utf8=utf8)
                    elif parent is None:
                        copied = copy_all(conn, table, data, utf8=utf8)
                    else:
                        copied = copy_logged(
                            conn,
                            table,
                            data,
                            changed.get(table.name, []),
                            parent.tables.get(table.name, 0),
                            deltas.get(table.name, RowDelta()),
                            shift=mark.shift,
                            utf8=utf8,
                        )
                    counts[table.name] = copied.rows
                    written += copied.written
                    deleted += copied.deleted
                entries.flush()
                schema_version = _schema_version(conn)
                clock = _sync_clock(conn)
                # Read in the snapshot's transaction: the chunks of exactly its files.
                refs = referenced_chunks(conn)
            held = set(chain_chunks(catalog.chain(parent))) if parent is not None else set()
            copy_chunks(
                files,
                refs,
                destination,
                backup_id,
                key,
                held,
                chunk_objects,
                part_bytes=policy.part_bytes,
                on_bytes=report,
            )
        objects = data.close() + index.close() + chunk_objects
        block = KeyBlock(tuple(keyring.data_keys()), tuple(sorted(keyring.erased_users())))
        key_blocks.append(write_keyblock(destination, backup_id, 1, key, block))
        objects += key_blocks
        manifest = Manifest(
            id=backup_id,
            parent=parent.id if parent else None,
            base=parent.base if parent else backup_id,
            kind="incremental" if parent else "full",
            depth=parent.depth + 1 if parent else 0,
            schema_version=schema_version,
            schema_digest=plan.digest,
            vault_id=keyring.vault_id,
            created_at=created_at,
            since=parent.created_at if parent else None,
            clock_from=parent.clock_to if parent else 0,
            clock_to=clock,
            plain_bytes=data.plain_bytes,
            stored_bytes=sum(o.size for o in objects),
            changed_rows=written,
            deleted_rows=deleted,
            tables=counts,
            objects=tuple(objects),
            log_id=mark.log_id,
            log_epoch=mark.epoch,
            seq=seq,
        )
        put_bytes(destination, manifest_name(backup_id), sign_manifest(manifest, backup_key))
    except BackupCorruptError as exc:
        abort()
        if parent is None:
            raise
        # What is read while a backup is written is the parent's chain and index, and
        # the change log: an incremental on them could not be restored, and a full
        # backup needs none of them (the log starts again with it).
        if kind == "auto":
            with store.transaction() as conn:
                restart(conn)
            return take_backup(
                store, destination, policy, files, kind="full", progress=progress, cache=cache
            )
        raise BackupCorruptError(
            f"backup {parent.id}, which an incremental backup builds on, its index or the "
            f"change log is damaged ({exc}); make a full backup (kind='full')"
        ) from exc
    except BaseException:
        abort()
        raise
    _drop_spent_indexes(destination, catalog, manifest, policy.fanout, backup_key)
    return manifest


def _drop_spent_indexes(
    destination: Destination,
    catalog: Catalog,
    made: Manifest,
    fanout: int,
    backup_key: bytes,
) -> None:
    """Drop the indexes of the incrementals no later backup of this series will be
    built on: those of the previous newest backup's chain outside the new spine. A
    full backup keeps its index (every level rolls up onto it)."""
    previous = catalog.latest_of_log(made.log_id) if made.log_id else None
    if previous is None:
        return
    try:
        before = catalog.chain(previous)
        after = catalog.chain(made) if made.parent else [made]
    except BackupCorruptError:
        before, after = [previous], [made]
    needed = spine(after, fanout)
    for done in before:
        if done.kind == "incremental" and done.id not in needed and done.objects_of("index"):
            with contextlib.suppress(BackupError):
                drop_index(destination, done, backup_key)


def drop_index(destination: Destination, manifest: Manifest, backup_key: bytes) -> Manifest:
    """Remove a backup's index (needed only to build an incremental on it), re-signing
    its manifest first so that it never lists a missing object."""
    gone = manifest.objects_of("index")
    if not gone:
        return manifest
    kept = [o for o in manifest.objects if o.role != "index"]
    updated = manifest.with_objects(kept)
    put_bytes(destination, manifest_name(manifest.id), sign_manifest(updated, backup_key))
    for obj in gone:
        destination.delete(obj.name)
    return updated


def _parent(
    catalog: Catalog,
    plan: SchemaPlan,
    policy: BackupPolicy,
    kind: str,
    mark: LogMark,
) -> tuple[Manifest | None, int]:
    """The backup the next one is built on (``None``: make a full one) and the next
    one's ``seq``."""
    if kind == "full":
        return None, 0
    # This database's own newest backup: another database of the vault (another
    # device, a restored copy) sharing the destination keeps a series of its own.
    latest = catalog.latest_of_log(mark.log_id) or catalog.latest()
    why = _unusable(latest, plan, mark)
    if not why and latest is not None:
        try:
            parent = level_parent(catalog.chain(latest), policy.fanout)
        except BackupCorruptError as exc:
            why = f"the newest backup's chain is broken ({exc})"
        else:
            why = _unusable(parent, plan, mark)
            if not why:
                return parent, latest.seq + 1
            why = f"the next incremental builds on backup {parent.id}, and {why}"
    if kind == "incremental":
        raise BackupError(f"cannot make an incremental backup: {why}; make a full one")
    return None, 0


def level_parent(chain: list[Manifest], fanout: int) -> Manifest:
    """What the next incremental after ``chain`` (a full backup, then the incrementals
    up to the newest of its series) is built on: the newest backup of the chain at the
    next one's level or above (:func:`~mangostore.backup.manifest.level_of`).

    That backup is always in the newest one's chain: nothing at that level or above
    was made between a backup and its parent.
    """
    successor = replace(chain[-1], kind="incremental", seq=chain[-1].seq + 1)
    wanted = level_of(successor, fanout)
    return next(m for m in reversed(chain) if level_of(m, fanout) >= wanted)


def spine(chain: list[Manifest], fanout: int) -> set[str]:
    """The ids of the backups of ``chain`` (ending with the newest of its series) that
    a later incremental may be built on: the newest, then each older one of a higher
    level than every one after it. The others' indexes are no longer needed."""
    kept: set[str] = set()
    top = -1.0
    for manifest in reversed(chain):
        level = level_of(manifest, fanout)
        if level > top:
            kept.add(manifest.id)
            top = level
    return kept


def _unusable(parent: Manifest | None, plan: SchemaPlan, mark: LogMark) -> str:
    """Why an incremental backup cannot be built on ``parent`` (empty: it can)."""
    if parent is None:
        return "there is no backup here yet"
    if parent.format_version < VERSION:
        return (
            f"backup {parent.id} is in an older format (version {parent.format_version}), "
            "which this version does not build on"
        )
    if parent.schema_digest != plan.digest:
        return f"the schema changed since backup {parent.id}"
    if not parent.objects_of("index"):
        return (
            f"backup {parent.id} has no index (nothing is built on it any more, or it is "
            "a full backup from before full backups kept theirs)"
        )
    if not mark.serves(parent.log_id, parent.log_epoch):
        return (
            f"the database's change log does not reach back to backup {parent.id} (the "
            "database was restored or vacuumed, a table was added or rebuilt, or more "
            f"than {KEEP_EPOCHS} backups were made elsewhere since)"
        )
    return ""


def _schema_version(conn: Connection) -> int:
    if not introspect.has_table(conn, "schema_migrations"):
        return 0
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def _sync_clock(conn: Connection) -> int:
    if not introspect.has_table(conn, "sync_device"):  # before the sync migration
        return 0
    row = conn.execute("SELECT clock FROM sync_device WHERE id = 1").fetchone()
    return int(row[0]) if row is not None else 0


def stream_records(
    destination: Destination,
    manifest: Manifest,
    backup_key: bytes,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[tuple[bytes, bytes]]:
    """The records of a backup's data stream (checked as they are read)."""
    reader = StreamReader(
        destination,
        manifest.id,
        "data",
        data_key(backup_key, manifest.id),
        manifest.objects_of("data"),
        on_bytes=on_bytes,
    )
    first = manifest.objects_of("data")
    name = first[0].name if first else manifest_name(manifest.id)
    return read_records(reader.read(), name)
