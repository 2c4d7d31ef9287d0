"""``db.files``: encrypted files beside the database, deduplicated, streamed, erasable.

A put splits the file into content-defined chunks (:mod:`.chunking`), names each
with a keyed hash of its owner and bytes, and stores each name once per owner:
compressed when that helps and sealed under the owner's data key (:mod:`.chunkcrypt`),
as one file of the chunk folder (:mod:`.chunkstore`). The chunks are written and
flushed first; then one transaction records the file, its chunk list and any new
chunk, after checking the owner's quota. A put that fails or is killed leaves no
file visible; its chunks, which no row names, are removed by the next sweep.

Deleting a file marks the chunks no other file uses ``dead``; a sweep removes dead
chunks and orphaned chunk files while no put runs (see the lock in
:mod:`.chunkstore`). :meth:`FileService.check` finds missing, corrupt and orphaned
chunks (:mod:`.checking`).
"""

from __future__ import annotations

import builtins
import contextlib
import mimetypes
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from mangostore.engine.connection import driver_errors
from mangostore.engine.store import MEMORY, Store
from mangostore.errors import (
    FileStoreError,
    NotFoundError,
    SyncError,
    ValidationError,
)
from mangostore.files import private_file
from mangostore.filestore.attachments import Attachments
from mangostore.filestore.checking import (
    check_store,
    mark_unused_chunks,
    refuse_inside_transaction,
    sweep_store,
)
from mangostore.filestore.chunkcrypt import (
    ChunkContext,
    key_id_of,
    open_chunk,
    tampered,
)
from mangostore.filestore.chunkstore import ChunkStore, chunk_folder
from mangostore.filestore.model import CheckReport, FileRecord, FileUsage, SweepReport
from mangostore.filestore.owner_keys import OwnerKeys, require_keys
from mangostore.filestore.remote import (
    BlobRelay,
    SendReport,
    fetch_chunk,
    fetch_missing,
    forget_owner_later,
    send_chunks,
)
from mangostore.filestore.stream import FileStream, Part
from mangostore.filestore.transfer import ChunkRef, referenced_chunks, valid_chunk_name
from mangostore.filestore.writing import (
    FILE_COLUMNS,
    Put,
    Source,
    metadata_text,
    open_source,
    over_quota,
    quota_state,
    record_of,
)
from mangostore.progress import Progress
from mangostore.schema import introspect
from mangostore.schema.introspect import has_table

__all__ = ["DEFAULT_MEDIA_TYPE", "FileService", "Source"]

DEFAULT_MEDIA_TYPE: Final = "application/octet-stream"


class FileService:
    """Encrypted file storage: ``db.files`` (see docs/files.md).

    Thread-safe, and safe with other processes using the same database.

    Args:
        store: the database's store.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._keys = OwnerKeys(store)
        self._chunks: ChunkStore | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._lock = threading.Lock()
        self._relay: BlobRelay | None = None
        self._attachments = Attachments(store)

    def __repr__(self) -> str:
        return f"<FileService {self._store.path!r}>"

    @property
    def folder(self) -> Path:
        """Where the chunks are kept: ``<db>.files`` (a temporary folder in memory)."""
        return self.chunks.root

    @property
    def attachments(self) -> Attachments:
        """Files attached to AI conversations (they own them: see docs/files.md)."""
        return self._attachments

    @property
    def chunks(self) -> ChunkStore:
        """The chunk folder (made on first use)."""
        with self._lock:
            return self._chunk_store()

    def _chunk_store(self) -> ChunkStore:
        if self._chunks is None:
            keyring, _ = require_keys(self._store)
            if self._store.path == MEMORY:
                self._scratch = tempfile.TemporaryDirectory(prefix="mangostore-files-")
                root = Path(self._scratch.name)
            else:
                root = chunk_folder(self._store.path)
            self._chunks = ChunkStore(root, keyring.subkey("files"))
        return self._chunks

    def close(self) -> None:
        """Remove the temporary chunk folder of an in-memory database."""
        with self._lock:
            if self._scratch is not None:
                self._scratch.cleanup()
                self._scratch = None
                self._chunks = None

    # -- storing --------------------------------------------------------------------------

    def put(
        self,
        user_id: str,
        source: Source,
        *,
        name: str | None = None,
        media_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> FileRecord:
        """Store a file for ``user_id``, encrypted under their data key.

        Args:
            user_id: the owner.
            source: the bytes, a path to a file, or a binary stream (read to its end,
                a chunk at a time: memory stays bounded whatever its size).
            name: the file's name (default: the path's base name).
            media_type: its media type (default: guessed from the name, else
                ``application/octet-stream``).
            metadata: a JSON object kept with the file.
            progress: told of the stage ``"storing"`` in bytes (total when known).

        Returns:
            The stored file's record.

        Raises:
            NotFoundError: no such user.
            QuotaExceededError: the file would take the user past their quota
                (nothing is stored).
            KeyManagementError: the user was erased.
            ValidationError, JSONValueError: bad arguments.
            FileStoreError, DiskFullError: the chunk folder cannot be written.
        """
        self._store.check_open()
        refuse_inside_transaction(self._store, "put")
        meta_text = metadata_text(metadata)
        opened, size_hint, default_name = open_source(source)
        name = name if name is not None else default_name
        if media_type is None:
            guessed = mimetypes.guess_type(name)[0] if name else None
            media_type = guessed or DEFAULT_MEDIA_TYPE
        with opened as stream:
            self._require_user(user_id)
            with self._store.reading() as conn:
                limit, used = quota_state(conn, user_id)
            if limit is not None and size_hint is not None and used + size_hint > limit:
                raise over_quota(user_id, limit, used, size_hint)
            key_id, key = self._keys.sealing_key(user_id)
            vault = self._store.keyring.vault_id if self._store.keyring is not None else ""
            put = Put(user_id, key_id, key, vault, limit, used, size_hint)
            try:
                with self.chunks.putting():
                    put.write_chunks(self.chunks, stream, self._chunk_state, progress)
                    return put.record(self._store, name, media_type, meta_text)
            except BaseException:
                if put.written:
                    # The chunks this put wrote, unless another put uses them by now.
                    with contextlib.suppress(Exception):
                        self.sweep(only=(user_id, set(put.written)))
                raise

    # -- reading --------------------------------------------------------------------------

    def get(self, file_id: str) -> FileRecord:
        """The record of file ``file_id``.

        Raises:
            NotFoundError: no such file.
        """
        self._store.check_open()
        with self._store.reading() as conn, driver_errors("reading a stored file"):
            row = conn.execute(
                f"SELECT {FILE_COLUMNS} FROM files WHERE id = ?", (file_id,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no stored file with id {file_id!r}; list them with db.files.list")
        return record_of(row)

    def list(
        self,
        user_id: str,
        *,
        media_type: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[FileRecord]:
        """The files of ``user_id``, oldest first (``media_type`` filters exactly)."""
        self._store.check_open()
        sql = f"SELECT {FILE_COLUMNS} FROM files WHERE user_id = ?"
        params: list[Any] = [user_id]
        if media_type is not None:
            sql += " AND media_type = ?"
            params.append(media_type)
        sql += " ORDER BY created_at, id LIMIT ? OFFSET ?"
        params += [-1 if limit is None else int(limit), int(offset)]
        with self._store.reading() as conn, driver_errors("listing stored files"):
            return [record_of(row) for row in conn.execute(sql, params).fetchall()]

    def open(self, file_id: str, *, check_digest: bool | None = None) -> FileStream:
        """A readable, seekable binary stream over the file, decrypting as it goes.

        Every chunk is authenticated before a byte of it is returned, under a key and
        associated data bound to the owner and the chunk's keyed name, so a chunk
        altered, swapped or moved does not open. ``check_digest`` also checks the
        whole file's SHA-256 at the end of a read from start to end, which catches a
        chunk list reordered or cut short in the database itself. By default it is
        checked only where the database's pages are not encrypted: SQLCipher
        authenticates every page, so there the chunk list cannot be changed without
        the key, and the hash would be a second pass over every byte for nothing.

        Raises:
            NotFoundError: no such file.
            TamperedDataError: (while reading) a chunk is missing, altered, truncated,
                swapped or another user's: nothing of it is returned.
        """
        record = self.get(file_id)
        with self._store.reading() as conn, driver_errors("reading a stored file"):
            rows = conn.execute(
                "SELECT start, size, chunk FROM file_parts WHERE file_id = ? ORDER BY seq",
                (file_id,),
            ).fetchall()
        parts = [Part(int(start), int(size), str(chunk)) for start, size, chunk in rows]
        ends = [p.start + p.size for p in parts]
        if (
            len(parts) != record.chunk_count
            or [p.start for p in parts] != [0, *ends][: len(parts)]
            or (ends[-1] if ends else 0) != record.size
        ):
            raise tampered("the chunk list")
        if check_digest is None:
            keyring = self._store.keyring
            check_digest = keyring is None or not keyring.page_encryption
        return FileStream(
            record.size, record.digest, parts, self._loader(record), check_digest=check_digest
        )

    def _loader(self, record: FileRecord) -> Callable[[Part], bytes]:
        vault = self._store.keyring.vault_id if self._store.keyring is not None else ""
        chunks = self.chunks
        keys: dict[Any, bytes] = {}

        def unseal(part: Part, blob: bytes) -> bytes:
            key_id = key_id_of(blob)
            key = keys.get(key_id)
            if key is None:
                key = keys[key_id] = self._keys.opening_key(key_id, record.user_id)
            context = ChunkContext(vault, record.user_id, part.chunk)
            return open_chunk(key, blob, context, part.size)

        def load(part: Part) -> bytes:
            blob = chunks.read(record.user_id, part.chunk)
            if blob is not None:
                return unseal(part, blob)
            self.get(record.id)  # NotFoundError: deleted while it was read
            # Not in this folder: a synced file's chunk never fetched here, or one lost.
            return fetch_chunk(
                self._store, chunks, self._relay, vault, record.user_id, part, unseal
            )

        return load

    def read(self, file_id: str) -> bytes:
        """The whole file's bytes (for small files; stream large ones with :meth:`open`).

        Raises:
            NotFoundError: no such file.
            TamperedDataError: it does not read back as stored.
        """
        with self.open(file_id) as stream:
            # Whole chunks as decrypted, joined once: one copy of the file.
            return b"".join(iter(stream.read_chunked, b""))

    def export(
        self,
        file_id: str,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> FileRecord:
        """Write the file's plaintext to ``path`` (mode 0600), atomically.

        The bytes go to a temporary file beside ``path``, checked against the file's
        SHA-256, flushed and renamed: a failure leaves nothing at ``path``.

        Raises:
            NotFoundError: no such file.
            ValidationError: ``path`` exists and ``overwrite`` is false.
            TamperedDataError: the file does not read back as stored.
            FileStoreError, DiskFullError: ``path`` cannot be written.
        """
        record = self.get(file_id)
        target = Path(path)
        if target.exists() and not overwrite:
            raise ValidationError(f"{target} exists; pass overwrite=True to replace it")
        with (
            private_file(target, doing="exporting a stored file", other=FileStoreError) as out,
            self.open(file_id, check_digest=True) as stream,
        ):
            done = 0
            if progress is not None:
                progress(0, record.size, "exporting")
            while block := stream.read_chunked():
                out.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, record.size, "exporting")
        return record

    # -- deleting -------------------------------------------------------------------------

    def delete(self, file_id: str) -> None:
        """Delete a file; the chunks no other file uses are removed by a sweep (now,
        unless a put is running, else by the next delete, sweep or check).

        Raises:
            NotFoundError: no such file.
        """
        self._store.check_open()
        with self._store.transaction() as conn, driver_errors("deleting a stored file"):
            names = [
                str(row[0])
                for row in conn.execute(
                    "SELECT DISTINCT chunk FROM file_parts WHERE file_id = ?", (file_id,)
                )
            ]
            gone = conn.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount
            if not gone:
                raise NotFoundError(f"no stored file with id {file_id!r}")
            mark_unused_chunks(conn, names)
        if self._store.keyring is not None and not self._store.in_transaction():
            self._store.check_open()
            sweep_store(self._store, self.chunks, walk=False)

    def in_use(self) -> bool:
        """Whether this database holds stored files or a chunk folder: what a sweep
        looks at (a database that never stored a file has neither, and no keys need)."""
        if self._chunks is not None:
            return True
        if self._store.path != MEMORY and chunk_folder(self._store.path).exists():
            return True
        with self._store.reading() as conn, driver_errors("reading stored files"):
            if not introspect.has_table(conn, "file_chunks"):
                return False
            return conn.execute("SELECT 1 FROM file_chunks LIMIT 1").fetchone() is not None

    def sweep(self, *, only: tuple[str, set[str]] | None = None) -> SweepReport:
        """Remove chunks no file uses and chunk files no row names, unless a put runs.

        ``only`` limits the orphans looked for to ``(owner, names)`` (a failed put's).
        """
        self._store.check_open()
        return sweep_store(self._store, self.chunks, only=only)

    def check(self, *, verify: bool = True, repair: bool = True) -> CheckReport:
        """Find missing, corrupt and orphaned chunks; repair what can be repaired.

        ``verify`` opens and authenticates every chunk (slower: it reads them all);
        otherwise only their presence and sizes are checked. ``repair`` sweeps: chunks
        no file uses, orphaned chunk files and leftovers of killed puts are removed
        (deferred while a put runs). Missing or corrupt chunks cannot be repaired: the
        files using them are listed in ``damaged_files``.
        """
        self._store.check_open()
        return check_store(self._store, self.chunks, self._keys, verify=verify, repair=repair)

    # -- quotas ---------------------------------------------------------------------------

    def set_quota(self, user_id: str, max_bytes: int | None) -> None:
        """Cap the total length of ``user_id``'s files at ``max_bytes`` (``None``: no cap).

        Files already stored stay; puts that would go past the cap are refused.

        Raises:
            NotFoundError: no such user.
            ValidationError: ``max_bytes`` is negative or not an integer.
        """
        if max_bytes is not None and (
            not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0
        ):
            raise ValidationError(
                "max_bytes must be a non-negative integer or None", field="max_bytes"
            )
        self._require_user(user_id)
        with self._store.transaction() as conn, driver_errors("setting a file quota"):
            if max_bytes is None:
                conn.execute("DELETE FROM file_quotas WHERE user_id = ?", (user_id,))
            else:
                conn.execute(
                    "INSERT INTO file_quotas (user_id, max_bytes) VALUES (?, ?) "
                    "ON CONFLICT (user_id) DO UPDATE SET max_bytes = excluded.max_bytes",
                    (user_id, max_bytes),
                )

    def usage(self, user_id: str) -> FileUsage:
        """How many files ``user_id`` has, their bytes, their chunks' bytes, their quota."""
        self._store.check_open()
        with self._store.reading() as conn, driver_errors("reading file usage"):
            files, size = conn.execute(
                "SELECT count(*), COALESCE(SUM(size), 0) FROM files WHERE user_id = ?",
                (user_id,),
            ).fetchone()
            (stored,) = conn.execute(
                "SELECT COALESCE(SUM(stored_size), 0) FROM file_chunks "
                "WHERE user_id = ? AND state = 'live'",
                (user_id,),
            ).fetchone()
            limit, _ = quota_state(conn, user_id)
        return FileUsage(int(files), int(size), int(stored), limit)

    # -- privacy hooks --------------------------------------------------------------------

    def export_user_files(
        self, user_id: str, directory: Path, written: builtins.list[Path]
    ) -> builtins.list[tuple[str, str]]:
        """Write the plaintext of each of ``user_id``'s files into ``directory`` as
        ``file-<id>``, naming each in ``written`` before it is made; return
        ``(file name, SHA-256)`` pairs. Used by the user's export (docs/privacy.md).
        """
        out: builtins.list[tuple[str, str]] = []
        if not self._has_files_table():
            return out  # a database not yet migrated to file storage
        for record in self.list(user_id):
            target = directory / f"file-{record.id}"
            written.append(target)
            self.export(record.id, target)
            out.append((target.name, record.digest))
        return out

    def forget_user(self, user_id: str) -> int:
        """Remove every chunk file of an erased user (their rows and keys are gone), and
        have the next sync round ask the relay to drop theirs; return how many files
        went from this device."""
        if self._store.keyring is None or not self._has_files_table():
            return 0  # no chunk can have been stored here
        forget_owner_later(self._store, self.chunks.owner_tag(user_id))
        if self._chunks is None and (
            self._store.path == MEMORY or not chunk_folder(self._store.path).is_dir()
        ):
            return 0  # no chunk was ever stored in this folder
        return self.chunks.remove_owner(user_id)

    # -- sync (docs/files.md "Sync") ------------------------------------------------------

    def use_relay(self, relay: BlobRelay | None) -> None:
        """Fetch chunks missing here from ``relay`` (``None``: fetch from nowhere).
        The sync service sets it when it connects to a relay that carries files."""
        self._relay = relay

    def fetch_all(self, *, progress: Progress | None = None) -> int:
        """Fetch every chunk of a synced file this device does not hold yet (before
        going offline, or a backup meant to hold every file); return how many.
        ``progress`` hears stage ``"fetching files"``, counted in chunks.

        Raises:
            FileUnavailableError: a chunk cannot be fetched now (what was fetched stays).
            TamperedDataError: the relay's copy of a chunk does not authenticate.
        """
        self._store.check_open()
        if not self._has_files_table():
            return 0
        return fetch_missing(self._store, lambda f: self._loader(self.get(f)), progress)

    def send_chunks(self, *, progress: Progress | None = None) -> SendReport:
        """Send the relay the chunks of this device's files it does not hold, and have
        it drop the chunks of erased owners (the sync service calls it before a push).

        Raises:
            SyncError: no relay carrying files is connected.
            SyncTransportError: the relay could not be reached.
        """
        self._store.check_open()
        if self._relay is None:
            raise SyncError("no relay that carries files is connected; connect sync first")
        if self._store.keyring is None or not self._has_files_table():
            return SendReport()
        vault = self._store.keyring.vault_id
        # The chunk folder is reached only when there is a chunk to send: a push of a
        # database that stores no file makes no folder (nor, in memory, a temporary one).
        return send_chunks(self._store, lambda: self.chunks, self._relay, vault, progress)

    # -- backups (docs/backup.md) ---------------------------------------------------------

    def referenced_chunks(self) -> builtins.list[ChunkRef]:
        """Every chunk some file uses now (a restored database's, for instance)."""
        self._store.check_open()
        with self._store.reading() as conn:
            return referenced_chunks(conn)

    @contextlib.contextmanager
    def holding_chunks(self) -> Iterator[None]:
        """Keep every chunk file on disk for the block: no sweep removes one (they are
        put off, as while a put runs). A backup holds it from before its snapshot until
        it has copied the chunks the snapshot names."""
        if self._store.keyring is None or (
            self._chunks is None
            and (self._store.path == MEMORY or not chunk_folder(self._store.path).is_dir())
        ):
            yield  # no chunk is stored here: nothing to keep
            return
        with self.chunks.putting():
            yield

    def sealed_chunk(self, owner: str, name: str) -> bytes | None:
        """The sealed bytes of chunk ``name`` of ``owner`` as stored (still encrypted
        under the owner's data key), or ``None`` when its file is missing.

        Raises:
            FileStoreError: the chunk file cannot be read.
        """
        if not valid_chunk_name(name):
            raise ValidationError(f"{name!r} is not the name of a file chunk", field="name")
        return self.chunks.read(owner, name)

    def place_chunks(self, chunks: Iterable[tuple[str, str, bytes]]) -> int:
        """Write sealed chunks ``(owner, name, sealed bytes)`` into the chunk folder
        (a restore puts back what :meth:`sealed_chunk` gave), each atomically and
        flushed before this returns; return how many were written. Chunks no row names
        are removed by the next sweep, like any orphan; each opens only under its owner's
        data key, as before.

        Raises:
            ValidationError: a name is not a chunk name.
            FileStoreError, DiskFullError: the chunk folder cannot be written.
        """
        self._store.check_open()

        def checked() -> Iterator[tuple[str, str, bytes]]:
            for owner, name, blob in chunks:
                if not valid_chunk_name(name):
                    raise ValidationError(f"{name!r} is not the name of a file chunk", field="name")
                yield owner, name, blob

        with self.chunks.putting():
            return self.chunks.write_all(checked())

    # -- internals ------------------------------------------------------------------------

    def _require_user(self, user_id: str) -> None:
        if not isinstance(user_id, str) or not user_id:
            raise ValidationError("user_id must be a non-empty string", field="user_id")
        with self._store.reading() as conn, driver_errors("reading users"):
            found = conn.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone()
        if found is None:
            raise NotFoundError(f"no user with id {user_id!r}")

    def _has_files_table(self) -> bool:
        with self._store.reading() as conn, driver_errors("reading the schema"):
            return has_table(conn, "files")

    def _chunk_state(self, name: str) -> str | None:
        with self._store.reading() as conn, driver_errors("reading file chunks"):
            row = conn.execute("SELECT state FROM file_chunks WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])
