"""The file store's chunks in backups (docs/backup.md, "Files").

A backup holds, beside the rows, the sealed chunks of ``<db>.files/`` that the files
of its snapshot use. The chunk names are read in the snapshot's own read transaction,
and the file store keeps every chunk file on disk (sweeps are put off) from before
the snapshot until the chunks are copied, so the set matches the rows exactly. An
incremental backup stores only the chunks its chain does not hold yet; a restore
takes each chunk the restored rows use from whichever backup of the chain holds it.

Each chunk is one object, ``objects/<backup id>/chunk-<name>.00000``, listed in the
manifest (role ``chunk``) with its SHA-256, so verify checks it like every object.
The chunks are sealed already (AES-256-GCM under their owner's data key), yet each is
stored as a stream of the backup itself, sealed again under the backup's key: a chunk
file's header names the owner's data key in clear, which would tell a reader of the
destination which chunks belong to one person; the backup's associated data binds
each object to this backup and this chunk name, so an object swapped, moved from
another backup or another vault is caught before its bytes reach a restored folder;
and every object at a destination is then protected the one way the threat model
describes. zstd runs at its fastest level: sealed bytes do not compress, and zstd
stores such blocks as they are.

Erasure: an erased user's chunks stay in old backups sealed under data keys that the
rewritten key blocks no longer hold, and a restore does not place them (the erasure
it re-applies deletes the rows that used them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from mangostore.backup.destinations import Destination
from mangostore.backup.manifest import Manifest, data_key, manifest_name
from mangostore.backup.stream import ObjectInfo, StreamReader, StreamWriter
from mangostore.errors import BackupCorruptError, BackupError
from mangostore.filestore.service import FileService
from mangostore.filestore.transfer import ChunkRef, valid_chunk_name

__all__ = ["ROLE", "chain_chunks", "chunk_name", "copy_chunks", "restore_chunks"]

#: The role of chunk objects in a manifest.
ROLE: Final = "chunk"
_PREFIX: Final = "chunk-"


def _stream(name: str) -> str:
    return _PREFIX + name


def chunk_name(obj: ObjectInfo) -> str | None:
    """The file chunk an object holds (``None`` for another object)."""
    if obj.role != ROLE:
        return None
    base = obj.name.rsplit("/", 1)[-1]
    stream = base.rsplit(".", 1)[0]
    name = stream.removeprefix(_PREFIX)
    return name if stream.startswith(_PREFIX) and valid_chunk_name(name) else None


def chain_chunks(chain: list[Manifest]) -> dict[str, tuple[Manifest, list[ObjectInfo]]]:
    """Every chunk the backups of ``chain`` hold: its name, the backup and its objects."""
    found: dict[str, tuple[Manifest, list[ObjectInfo]]] = {}
    for manifest in chain:
        for obj in manifest.objects_of(ROLE):
            name = chunk_name(obj)
            if name is None:
                raise BackupCorruptError(
                    f"backup object {obj.name} is listed as a file chunk but is not named "
                    "like one; its manifest is damaged",
                    manifest_name(manifest.id),
                )
            held = found.get(name)
            if held is None:
                found[name] = (manifest, [obj])
            elif held[0].id == manifest.id:
                held[1].append(obj)
    return found


def copy_chunks(
    files: FileService,
    refs: list[ChunkRef],
    destination: Destination,
    backup_id: str,
    key: bytes,
    already: set[str],
    out: list[ObjectInfo],
    *,
    part_bytes: int,
    on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Store each chunk of ``refs`` not in ``already`` as an object of the backup,
    appending each object to ``out`` once it is committed (so that a caller that
    fails later can delete them); return how many chunks were stored.

    Raises:
        BackupError: a chunk the snapshot's files use is not on disk, so the backup
            would not restore them (run ``db.files.check()``: it names the damaged
            files, which can then be restored from an older backup or deleted).
        BackupDestinationError: the destination failed.
    """
    stored = 0
    for ref in refs:
        if ref.name in already:
            continue
        blob = files.sealed_chunk(ref.owner, ref.name)
        if blob is None:
            raise BackupError(
                "a chunk that stored files use is missing from the chunk folder, so "
                "this backup could not restore them: run db.files.check() (mangostore "
                "files check) to find the damaged files, restore or delete them, "
                "then back up again"
            )
        writer = StreamWriter(
            destination,
            backup_id,
            _stream(ref.name),
            key,
            part_bytes=part_bytes,
            level=1,
            on_bytes=on_bytes,
            role=ROLE,
        )
        try:
            writer.write(blob)
            writer.close()
        except BaseException:
            writer.abort()
            out.extend(writer.objects)
            raise
        out.extend(writer.objects)
        already.add(ref.name)
        stored += 1
    return stored


def restore_chunks(
    files: FileService,
    destination: Destination,
    chain: list[Manifest],
    backup_key: bytes,
    on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Put every chunk the restored database's files use into its chunk folder,
    reading each from the backup of ``chain`` that holds it; return how many.

    Raises:
        BackupCorruptError: a chunk object is missing or damaged (named), or no
            backup of the chain holds a chunk the rows use.
    """
    needed = files.referenced_chunks()
    if not needed:
        return 0
    held = chain_chunks(chain)

    def sealed() -> Iterator[tuple[str, str, bytes]]:
        for ref in needed:
            found = held.get(ref.name)
            if found is None:
                name = manifest_name(chain[-1].id)
                raise BackupCorruptError(
                    f"backup {chain[-1].id} has files whose chunks no backup of its chain "
                    f"holds ({name} or an object of its chain was removed); restore another "
                    "backup",
                    name,
                )
            manifest, objects = found
            reader = StreamReader(
                destination,
                manifest.id,
                _stream(ref.name),
                data_key(backup_key, manifest.id),
                objects,
                on_bytes=on_bytes,
            )
            # A chunk is at most a few MiB: it is read whole, one at a time, and to the
            # end of its stream, so that its tags, index and SHA-256 are all checked.
            source = reader.read()
            parts: list[bytes] = []
            while block := source.read(1 << 20):
                parts.append(block)
            yield ref.owner, ref.name, b"".join(parts)

    return files.place_chunks(sealed())
