"""Archive files: rows removed by retention, as JSON Lines, compressed, encrypted in chunks.

Layout of an archive file::

    magic       8 bytes   b"MSARCH1\\n"
    header_len  4 bytes   big-endian
    header      JSON      format, version, table, vault_id, created_at, first/last
                          timestamps, rows, cipher ("aes-256-gcm" or "none"), salt
    chunks      repeated  4-byte big-endian length, then the sealed chunk

The rows are JSON Lines (one object per row; ``bytes`` values as ``{"base64": ...}``),
compressed as one zstandard stream, cut into chunks of at most 1 MiB. With a keyring,
each chunk is sealed with AES-256-GCM under a key derived (HKDF) from the keyring's
``backup`` sub-key and the header's random salt; the nonce is the chunk's index and
the associated data is the whole header, the index and a "last chunk" flag. So a
chunk that was altered, moved, dropped, or a file cut short at a chunk boundary, all
fail to open (:class:`~mangostore.errors.TamperedDataError`); so does a header edit.

A database opened without a passphrase has no keys: its archives use cipher
``none``, where each chunk carries a SHA-256 over the same associated data instead.
That catches accidental damage, not deliberate edits, exactly like the database
file itself.

Files are written next to the database, in ``<database>.archive/`` (mode 0700), to a
temporary name first, flushed to disk, then renamed into place.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mangostore.errors import ConfigurationError, TamperedDataError
from mangostore.files import fsync_directory

if TYPE_CHECKING:
    from mangostore.keys.keyring import Keyring
    from mangostore.privacy.ports import ArchiveDatabase

__all__ = [
    "Archive",
    "StagedArchive",
    "archive_dir",
    "free_name",
    "list_archives",
    "read_archive",
    "rewrite_archive",
    "stage_archive",
    "write_archive",
]

MAGIC: Final = b"MSARCH1\n"
FORMAT: Final = "mangostore-archive"
SUFFIX_ENCRYPTED: Final = ".jsonl.zst.enc"
SUFFIX_PLAIN: Final = ".jsonl.zst"
CHUNK_BYTES: Final = 1 << 20
_MAX_HEADER_BYTES: Final = 64 * 1024
_TAG_BYTES: Final = 16
_HKDF_INFO: Final = b"mangostore/archive/v1"


@dataclass(frozen=True, slots=True)
class Archive:
    """An archive read back: its header and its rows, in the order they were written."""

    path: Path
    header: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def table(self) -> str:
        """The table the rows came from."""
        return str(self.header["table"])


def archive_dir(db: ArchiveDatabase, override: str | os.PathLike[str] | None = None) -> Path:
    """Return where ``db`` keeps its archives (``<database>.archive``).

    Raises:
        ConfigurationError: an in-memory database and no ``override``.
    """
    if override is not None:
        return Path(override)
    if db.path == ":memory:":
        raise ConfigurationError(
            "an in-memory database has no place for archive files: pass archive_dir=..."
        )
    return Path(db.path + ".archive")


def encode_value(value: Any) -> Any:
    """Make a column value JSON-ready: ``bytes`` become ``{"base64": ...}``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _json_line(row: Mapping[str, Any]) -> bytes:
    clean = {k: encode_value(v) for k, v in row.items()}
    return json.dumps(clean, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def _file_key(keyring: Keyring, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_HKDF_INFO).derive(
        keyring.subkey("backup")
    )


def _aad(header: bytes, index: int, last: bool) -> bytes:
    return header + index.to_bytes(8, "big") + (b"\x01" if last else b"\x00")


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


@dataclass(frozen=True, slots=True)
class StagedArchive:
    """An archive file written under a temporary name, not yet in place.

    :meth:`place` gives it its name; :meth:`discard` removes it.
    """

    path: Path
    name: Path

    def place(self) -> Path:
        """Move the file to :attr:`name`, or the next free name after it; return where.

        An existing file is never replaced: the name is taken with ``link()``,
        which fails when the name exists.
        """
        for candidate in _candidates(self.name):
            try:
                os.link(self.path, candidate)
            except FileExistsError:
                continue
            os.unlink(self.path)
            fsync_directory(candidate.parent)
            return candidate
        raise AssertionError("unreachable")  # pragma: no cover

    def discard(self) -> None:
        """Remove the temporary file."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def write_archive(
    directory: Path,
    table: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    keyring: Keyring | None,
    created_at: int,
    first_ts: int,
    last_ts: int,
    row_count: int,
) -> Path:
    """Write ``rows`` of ``table`` to a new archive file in ``directory``; return its path.

    The file is complete and on disk (fsynced, renamed into place) when this returns.
    """
    staged = stage_archive(
        directory,
        table,
        rows,
        keyring=keyring,
        created_at=created_at,
        first_ts=first_ts,
        last_ts=last_ts,
        row_count=row_count,
    )
    try:
        return staged.place()
    except BaseException:
        staged.discard()
        raise


def stage_archive(
    directory: Path,
    table: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    keyring: Keyring | None,
    created_at: int,
    first_ts: int,
    last_ts: int,
    row_count: int,
) -> StagedArchive:
    """Write an archive file like :func:`write_archive`, but leave it under a temporary
    name (complete and fsynced) until :meth:`StagedArchive.place` is called."""
    import zstandard

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    suffix = SUFFIX_ENCRYPTED if keyring is not None else SUFFIX_PLAIN
    salt = secrets.token_bytes(16)
    header_doc = {
        "format": FORMAT,
        "version": 1,
        "table": table,
        "vault_id": None if keyring is None else keyring.vault_id,
        "created_at": created_at,
        "first_timestamp": first_ts,
        "last_timestamp": last_ts,
        "rows": row_count,
        "cipher": "aes-256-gcm" if keyring is not None else "none",
        "compression": "zstd",
        "salt": salt.hex(),
    }
    header = json.dumps(header_doc, sort_keys=True, separators=(",", ":")).encode("utf-8")
    key = None if keyring is None else _file_key(keyring, salt)
    compressed = zstandard.ZstdCompressor(level=10).compress(
        b"".join(_json_line(row) for row in rows)
    )
    target = free_name(directory / f"{table}-{first_ts}-{last_ts}{suffix}")
    fd, tmp = tempfile.mkstemp(prefix=".archive-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(MAGIC + len(header).to_bytes(4, "big") + header)
            chunks = [
                compressed[i : i + CHUNK_BYTES] for i in range(0, len(compressed), CHUNK_BYTES)
            ] or [b""]
            for index, chunk in enumerate(chunks):
                aad = _aad(header, index, index == len(chunks) - 1)
                if key is not None:
                    sealed = AESGCM(key).encrypt(_nonce(index), chunk, aad)
                else:
                    sealed = chunk + hashlib.sha256(aad + chunk).digest()[:_TAG_BYTES]
                out.write(len(sealed).to_bytes(4, "big") + sealed)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return StagedArchive(Path(tmp), target)


def read_archive(path: str | os.PathLike[str], db: ArchiveDatabase) -> Archive:
    """Read an archive written for ``db`` (or a copy of it with the same keyring).

    Raises:
        TamperedDataError: the file was altered, cut short, reordered, or was written
            under other keys (one message for every case).
        ConfigurationError: the archive is encrypted but ``db`` has no keyring.
        OSError: the file cannot be read.
    """
    import zstandard

    file = Path(path)
    raw = file.read_bytes()
    bad = TamperedDataError(
        f"the archive {file.name} cannot be read: it was altered, cut short, or written "
        "for another database"
    )
    if len(raw) < len(MAGIC) + 4 or not raw.startswith(MAGIC):
        raise bad
    at = len(MAGIC)
    size = int.from_bytes(raw[at : at + 4], "big")
    at += 4
    if size > _MAX_HEADER_BYTES or at + size > len(raw):
        raise bad
    header = raw[at : at + size]
    at += size
    try:
        doc = json.loads(header)
    except ValueError:
        raise bad from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != 1:
        raise bad
    keyring = db.keyring
    encrypted = doc.get("cipher") == "aes-256-gcm"
    if encrypted and keyring is None:
        raise ConfigurationError(
            f"the archive {file.name} is encrypted: open the database with its passphrase"
        )
    if not encrypted and doc.get("cipher") != "none":
        raise bad
    key = None
    if encrypted:
        assert keyring is not None
        if doc.get("vault_id") != keyring.vault_id:
            raise bad
        try:
            key = _file_key(keyring, bytes.fromhex(str(doc.get("salt"))))
        except ValueError:
            raise bad from None
    sealed_chunks: list[bytes] = []
    while at < len(raw):
        if at + 4 > len(raw):
            raise bad
        length = int.from_bytes(raw[at : at + 4], "big")
        at += 4
        if length < _TAG_BYTES or at + length > len(raw):
            raise bad
        sealed_chunks.append(raw[at : at + length])
        at += length
    if not sealed_chunks:
        raise bad
    parts: list[bytes] = []
    for index, sealed in enumerate(sealed_chunks):
        aad = _aad(header, index, index == len(sealed_chunks) - 1)
        if key is not None:
            try:
                parts.append(AESGCM(key).decrypt(_nonce(index), sealed, aad))
            except InvalidTag:
                raise bad from None
        else:
            body, tag = sealed[:-_TAG_BYTES], sealed[-_TAG_BYTES:]
            if hashlib.sha256(aad + body).digest()[:_TAG_BYTES] != tag:
                raise bad
            parts.append(body)
    try:
        text = zstandard.ZstdDecompressor().decompressobj().decompress(b"".join(parts))
        rows = [json.loads(line) for line in text.splitlines() if line]
    except (zstandard.ZstdError, ValueError):
        raise bad from None
    if len(rows) != doc.get("rows"):
        raise bad
    return Archive(file, doc, rows)


def rewrite_archive(
    db: ArchiveDatabase, archive: Archive, rows: list[dict[str, Any]]
) -> Path | None:
    """Replace ``archive`` with one holding only ``rows``; remove it when none are left.

    Returns the new file, or ``None`` when the archive was removed.
    """
    directory = archive.path.parent
    if not rows:
        archive.path.unlink()
        fsync_directory(directory)
        return None
    header = archive.header
    decoded = [{k: _decode(v) for k, v in row.items()} for row in rows]
    staged = stage_archive(
        directory,
        archive.table,
        decoded,
        keyring=db.keyring,
        created_at=int(header["created_at"]),
        first_ts=int(header["first_timestamp"]),
        last_ts=int(header["last_timestamp"]),
        row_count=len(decoded),
    )
    try:
        # atomically: the old file or the new, never neither
        os.replace(staged.path, archive.path)
    except BaseException:
        staged.discard()
        raise
    fsync_directory(directory)
    return archive.path


def list_archives(directory: Path) -> Iterator[Path]:
    """Yield the archive files of ``directory`` (none if it does not exist), by name."""
    if not directory.is_dir():
        return
    for entry in sorted(directory.iterdir()):
        if entry.is_file() and entry.name.endswith((SUFFIX_ENCRYPTED, SUFFIX_PLAIN)):
            yield entry


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"base64"} and isinstance(value["base64"], str):
        return base64.b64decode(value["base64"])
    return value


def free_name(path: Path) -> Path:
    """Return ``path``, or the first of ``<name>-1<suffix>``, ``<name>-2<suffix>``, ...
    that does not exist now.

    It may exist by the time it is used: :meth:`StagedArchive.place` takes the name
    with ``link()``, and moves on to the next one when it is taken.
    """
    return next(c for c in _candidates(path) if not c.exists())


def _candidates(path: Path) -> Iterator[Path]:
    """``path``, then ``<name>-1<suffix>``, ``<name>-2<suffix>``, ..."""
    yield path
    stem = path.name
    for suffix in (SUFFIX_ENCRYPTED, SUFFIX_PLAIN):
        if stem.endswith(suffix):
            base, ext = stem[: -len(suffix)], suffix
            break
    else:
        base, ext = stem, ""
    n = 1
    while True:
        yield path.with_name(f"{base}-{n}{ext}")
        n += 1
