"""Sweeping and checking the chunk folder against the database.

A sweep removes, while no put runs (it holds the folder's exclusive lock, see
:mod:`.chunkstore`):

- chunks marked ``dead`` (no file uses them any more), file and row, in one
  transaction; a crash after a file is gone leaves a ``dead`` row, which the next
  sweep removes and a put of the same chunk writes again;
- chunk files no row names: left by a put that failed or was killed before its
  commit, or by a deleted user;
- half-written chunk files in ``tmp/``.

A check also reads every chunk the files use: a missing file, or one that does not
authenticate, is reported with the files that use it.
"""

from __future__ import annotations

import json
from pathlib import Path

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.engine.store import Store
from mangostore.errors import DatabaseError, TamperedDataError
from mangostore.filestore.chunkcrypt import ChunkContext, key_id_of, open_chunk
from mangostore.filestore.chunkstore import ChunkStore
from mangostore.filestore.model import CheckReport, SweepReport
from mangostore.filestore.owner_keys import OwnerKeys

__all__ = ["check_store", "mark_unused_chunks", "refuse_inside_transaction", "sweep_store"]


def refuse_inside_transaction(store: Store, what: str) -> None:
    """File puts and sweeps commit on their own: refuse them inside a transaction.

    Raises:
        DatabaseError: the calling thread is inside ``db.transaction()``.
    """
    if store.in_transaction():
        raise DatabaseError(
            f"db.files.{what} cannot run inside a transaction: its chunks are written "
            "outside the database, and a rollback would leave them named by nothing, or "
            "gone while named; call it after the transaction"
        )


def mark_unused_chunks(conn: Connection, names: list[str] | None = None) -> int:
    """Mark ``dead`` every live chunk no file uses (among ``names`` when given); return
    how many (in ``conn``'s transaction)."""
    sql = (
        "UPDATE file_chunks SET state = 'dead' WHERE state = 'live' AND NOT EXISTS "
        "(SELECT 1 FROM file_parts p WHERE p.chunk = file_chunks.name)"
    )
    with driver_errors("marking unused file chunks"):
        if names is None:
            return int(conn.execute(sql).rowcount)
        sql += " AND name IN (SELECT value FROM json_each(?))"
        return int(conn.execute(sql, (json.dumps(names),)).rowcount)


def sweep_store(
    store: Store,
    chunks: ChunkStore,
    *,
    only: tuple[str, set[str]] | None = None,
    walk: bool = True,
) -> SweepReport:
    """Remove dead chunks, orphaned chunk files and leftovers, unless a put runs.

    ``only`` limits the orphans looked for to ``(owner, names)``: the chunks of one
    failed put. ``walk=False`` removes dead chunks only (after a delete), without
    walking the folder for orphans.
    """
    refuse_inside_transaction(store, "sweep")
    with chunks.sweeping() as held:
        if not held:
            return SweepReport(deferred=True)
        removed = freed = 0
        with store.transaction() as conn, driver_errors("sweeping file chunks"):
            if only is None and walk:
                mark_unused_chunks(conn)
            dead = conn.execute(
                "SELECT name, user_id, stored_size FROM file_chunks WHERE state = 'dead'"
            ).fetchall()
            for name, owner, stored in dead:
                if chunks.remove(str(owner), str(name)):
                    freed += int(stored)
                conn.execute("DELETE FROM file_chunks WHERE name = ? AND state = 'dead'", (name,))
                removed += 1
        orphans = orphan_bytes = temps = 0
        if only is not None or walk:
            orphans, orphan_bytes = _remove_orphans(store, chunks, only)
        if only is None and walk:
            for path in chunks.temp_files():
                path.unlink(missing_ok=True)
                temps += 1
    return SweepReport(removed, freed + orphan_bytes, orphans, temps)


def _remove_orphans(
    store: Store, chunks: ChunkStore, only: tuple[str, set[str]] | None
) -> tuple[int, int]:
    """Remove chunk files no row names (the caller holds the exclusive lock)."""
    count = size = 0
    if only is not None:
        owner, names = only
        with store.reading() as conn, driver_errors("reading file chunks"):
            known = {
                str(row[0])
                for row in conn.execute(
                    "SELECT name FROM file_chunks WHERE name IN (SELECT value FROM json_each(?))",
                    (json.dumps(sorted(names)),),
                )
            }
        for name in names - known:
            freed = _remove(chunks.path(owner, name))
            if freed is not None:
                size += freed
                count += 1
        return count, size
    with store.reading() as conn, driver_errors("reading file chunks"):
        owners = {
            str(name): str(owner)
            for name, owner in conn.execute("SELECT name, user_id FROM file_chunks")
        }
    tags: dict[str, str] = {}
    for tag, name, path in chunks.all_files():
        known_owner = owners.get(name)
        if known_owner is not None:
            if known_owner not in tags:
                tags[known_owner] = chunks.owner_tag(known_owner)
            if tags[known_owner] == tag:
                continue
        freed = _remove(path)
        if freed is not None:
            size += freed
            count += 1
    return count, size


def _remove(path: Path) -> int | None:
    """Delete a chunk file; return the bytes it held (``None``: it was gone already)."""
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return None
    return size


def check_store(
    store: Store, chunks: ChunkStore, keys: OwnerKeys, *, verify: bool, repair: bool
) -> CheckReport:
    """What :meth:`FileService.check` does."""
    refuse_inside_transaction(store, "check")
    sweep = sweep_store(store, chunks) if repair else SweepReport()
    vault = store.keyring.vault_id if store.keyring is not None else ""
    with store.snapshot() as conn, driver_errors("checking stored files"):
        (files,) = conn.execute("SELECT count(*) FROM files").fetchone()
        # The chunks this device holds; a synced file's chunks never fetched here have
        # no row (they are counted as remote, fetched when the file is opened).
        used = conn.execute(
            "SELECT DISTINCT c.name, c.user_id, c.size FROM file_parts p "
            "JOIN file_chunks c ON c.name = p.chunk ORDER BY c.user_id, c.name"
        ).fetchall()
        (remote,) = conn.execute(
            "SELECT count(DISTINCT p.chunk) FROM file_parts p "
            "WHERE NOT EXISTS (SELECT 1 FROM file_chunks c WHERE c.name = p.chunk)"
        ).fetchone()
        uneven = [
            str(row[0])
            for row in conn.execute(
                "SELECT f.id FROM files f LEFT JOIN (SELECT file_id, count(*) AS n, "
                "SUM(size) AS total FROM file_parts GROUP BY file_id) s ON s.file_id = f.id "
                "WHERE COALESCE(s.n, 0) != f.chunk_count OR COALESCE(s.total, 0) != f.size"
            )
        ]
    missing: list[str] = []
    corrupt: list[str] = []
    for name, owner, size in used:
        blob = chunks.read(str(owner), str(name))
        if blob is None:
            missing.append(str(name))
            continue
        try:
            key_id = key_id_of(blob)
            if verify:
                key = keys.opening_key(key_id, str(owner))
                open_chunk(key, blob, ChunkContext(vault, str(owner), str(name)), int(size))
        except TamperedDataError:
            corrupt.append(str(name))
    damaged = set(uneven)
    bad = missing + corrupt
    if bad:
        with store.reading() as conn, driver_errors("checking stored files"):
            damaged |= {
                str(row[0])
                for row in conn.execute(
                    "SELECT DISTINCT file_id FROM file_parts "
                    "WHERE chunk IN (SELECT value FROM json_each(?))",
                    (json.dumps(bad),),
                )
            }
    return CheckReport(
        files_checked=int(files),
        chunks_checked=len(used),
        not_fetched=int(remote),
        missing=tuple(missing),
        corrupt=tuple(corrupt),
        damaged_files=tuple(sorted(damaged)),
        sweep=sweep,
    )
