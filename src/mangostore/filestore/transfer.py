"""What backups need of the file store, and nothing of its layout.

The backup service (:mod:`mangostore.backup`) copies the sealed chunks a snapshot
names into its backups and puts them back into a restored database's chunk folder.
It reaches them only through what this module and
:class:`~mangostore.filestore.service.FileService` offer: the chunks the database's
rows use (:func:`referenced_chunks`, read in the caller's transaction so that the
set matches the rows it copies), a chunk's sealed bytes, writing sealed bytes back,
and moving or removing a database's chunk folder with the database's own files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import FileStoreError
from mangostore.files import fsync_directory, os_errors
from mangostore.filestore.chunkstore import chunk_folder
from mangostore.schema.introspect import has_table

__all__ = [
    "ChunkRef",
    "chunk_folder_exists",
    "move_chunk_folder",
    "referenced_chunks",
    "remove_chunk_folder",
    "valid_chunk_name",
]

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """A stored chunk that a file uses.

    Attributes:
        owner: the user whose data key sealed it.
        name: its keyed-hash name (64 hex digits).
        stored_size: its sealed size in bytes.
    """

    owner: str
    name: str
    stored_size: int


def valid_chunk_name(name: str) -> bool:
    """Whether ``name`` has the form of a chunk name (64 lowercase hex digits)."""
    return len(name) == 64 and set(name) <= _HEX


def referenced_chunks(conn: Connection) -> list[ChunkRef]:
    """Every chunk some file uses, read through ``conn`` (in the caller's
    transaction), ordered by owner and name; empty before the file tables exist."""
    if not has_table(conn, "file_parts"):
        return []
    with driver_errors("listing file chunks"):
        rows = conn.execute(
            "SELECT c.user_id, c.name, c.stored_size FROM file_chunks c "
            "WHERE EXISTS (SELECT 1 FROM file_parts p WHERE p.chunk = c.name) "
            "ORDER BY c.user_id, c.name"
        ).fetchall()
    return [ChunkRef(str(owner), str(name), int(size)) for owner, name, size in rows]


def chunk_folder_exists(database_path: str | os.PathLike[str]) -> bool:
    """Whether the database at ``database_path`` has a chunk folder."""
    return chunk_folder(os.fspath(database_path)).exists()


def remove_chunk_folder(database_path: str | os.PathLike[str]) -> None:
    """Remove the chunk folder of the database at ``database_path``, if any (a
    database that is being thrown away, or replaced)."""
    folder = chunk_folder(os.fspath(database_path))
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            folder.unlink()


def move_chunk_folder(
    source_database: str | os.PathLike[str], target_database: str | os.PathLike[str]
) -> bool:
    """Move the chunk folder of ``source_database`` to be ``target_database``'s,
    replacing any folder there; return whether there was one to move.

    Call it with both databases closed, when the database file itself is moved.

    Raises:
        FileStoreError: the folder could not be moved.
    """
    source = chunk_folder(os.fspath(source_database))
    target = chunk_folder(os.fspath(target_database))
    if not source.is_dir():
        return False
    remove_chunk_folder(target_database)
    with os_errors("moving a chunk folder", target, FileStoreError):
        os.replace(source, target)
        fsync_directory(Path(target).parent)
    return True
