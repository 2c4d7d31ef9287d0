"""The keyring sidecar on disk: where it lives, how it is read, checked and written.

Nothing here needs a key: the sidecar's format, its keyless checksum, its atomic and
durable replacement, the advisory lock that serialises its writers across processes,
and the copies a killed writer leaves behind. :mod:`mangostore.keys.keyring` holds the
keys and the MAC on top of this.

A keyring is written to ``<keyring>.tmp-<random>`` (mode 0600), fsynced, and renamed
over the keyring (``link()`` for a new one, which never replaces a file); the folder is
fsynced after. A writer killed between the two leaves that copy behind: a complete
keyring, perhaps under an older passphrase. :func:`remove_leftovers` deletes such
copies; it runs under the writers' lock, so no writer is between writing and renaming.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import glob
import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from mangostore.errors import KeyringCorruptError, KeyringError, KeyringMissingError
from mangostore.files import fsync_directory, os_errors

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_KEYRING_BYTES",
    "Stamp",
    "b64",
    "canonical",
    "checksum",
    "file_lock",
    "keyring_path",
    "lock_path",
    "read_keyring",
    "remove_leftovers",
    "stale_keyring",
    "stamp_of",
    "unb64",
    "write_keyring",
]

FORMAT: Final = "mangostore-keyring"
FORMAT_VERSION: Final = 1
MAX_KEYRING_BYTES: Final = 16 * 1024 * 1024
#: A keyring is written to ``<keyring><TEMP_INFIX><random>`` and renamed into place.
TEMP_INFIX: Final = ".tmp-"
#: The prefix of the temporary files of older versions (one per directory, not per file).
LEGACY_TEMP_PREFIX: Final = ".keyring-"

#: What identifies one version of the sidecar on disk: (device, inode, size, mtime).
#: Every write replaces the file, so a change of any of these means "read it again".
Stamp = tuple[int, int, int, int]


def stamp_of(st: os.stat_result) -> Stamp:
    """Return the identity of the file version described by ``st``."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def keyring_path(database_path: str | os.PathLike[str]) -> Path:
    """Return where the keyring sidecar of ``database_path`` lives."""
    return Path(os.fspath(database_path) + ".keyring")


def lock_path(keyring: Path) -> Path:
    """Return the file whose ``flock`` serialises the writers of ``keyring``."""
    return Path(str(keyring) + ".lock")


def b64(data: bytes) -> str:
    """Encode ``data`` as standard base64 text."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, what: str) -> bytes:
    """Decode base64 ``text`` read from the keyring field ``what``.

    Raises:
        KeyringCorruptError: the field is missing, not text, or not base64.
    """
    if not isinstance(text, str):
        raise KeyringCorruptError(f"the keyring's {what} is missing or not text; restore it")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyringCorruptError(f"the keyring's {what} is not valid base64; restore it") from None


def canonical(doc: dict[str, Any], *, without: tuple[str, ...] = ("mac", "checksum")) -> bytes:
    """Serialise ``doc`` deterministically, leaving out the integrity fields in ``without``."""
    body = {k: v for k, v in doc.items() if k not in without}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def checksum(doc: dict[str, Any]) -> str:
    """Return the keyless checksum of ``doc`` (everything but the checksum itself)."""
    return b64(hashlib.sha256(canonical(doc, without=("checksum",))).digest())


def stale_keyring(path: Path) -> KeyringError:
    """Return the error for creating a database where a keyring already exists."""
    return KeyringError(
        f"a keyring already exists at {path} but its database does not; restore the "
        "database beside it, or move the stale keyring away before creating a new one"
    )


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold the advisory lock that serialises every writer of the keyring at ``path``."""
    with os_errors("locking the keyring", path, KeyringError):
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_keyring(path: Path, doc: dict[str, Any], *, exclusive: bool = False) -> Stamp:
    """Write ``doc`` to ``path`` durably and atomically; with ``exclusive``, never
    replace a file. The caller holds :func:`file_lock`.

    Returns the stamp of the file written.

    Raises:
        KeyringError: ``exclusive`` and a keyring already exists at the path, or the
            file system refused the write (the previous keyring is left whole).
        DiskFullError: no room on the disk (the previous keyring is left whole).
    """
    directory = path.parent
    with os_errors("writing the keyring", path, KeyringError):
        # Named after this keyring, so a copy left by a killed writer is found and
        # removed (remove_leftovers) rather than kept beside the database forever.
        fd, tmp = tempfile.mkstemp(prefix=path.name + TEMP_INFIX, dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(doc, handle, sort_keys=True, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
                written = stamp_of(os.fstat(handle.fileno()))
            os.chmod(tmp, 0o600)
            if exclusive:
                # link() fails if the name exists, where replace() would clobber it.
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise stale_keyring(path) from None
                os.unlink(tmp)
            else:
                os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        fsync_directory(directory)
    return written


def remove_leftovers(path: Path, vault_id: str) -> list[Path]:
    """Delete copies of the keyring at ``path`` left by writers killed mid-write.

    Older versions named the copy ``.keyring-<random>``; those are removed when they
    belong to ``vault_id``. Returns what was removed.
    """
    directory, name = path.parent, path.name
    removed = []
    with file_lock(path):
        candidates = list(directory.glob(f"{glob.escape(name)}{TEMP_INFIX}*"))
        candidates += [
            p for p in directory.glob(f"{LEGACY_TEMP_PREFIX}*") if _vault_of(p) == vault_id
        ]
        for leftover in candidates:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
                removed.append(leftover)
    return removed


def _vault_of(path: Path) -> str | None:
    """Return the vault id a keyring file (or a copy of one) names, or ``None``."""
    try:
        with path.open("rb") as handle:
            doc = json.loads(handle.read(MAX_KEYRING_BYTES + 1))
    except (OSError, ValueError):
        return None
    vault = doc.get("vault_id") if isinstance(doc, dict) else None
    return vault if isinstance(vault, str) else None


def read_keyring(path: Path) -> tuple[dict[str, Any], Stamp]:
    """Read the sidecar and check its size, format, version, checksum and shape.

    Nothing here needs a key, so a damaged file is refused before any derivation.
    Returns the document and the stamp of the file version it came from.

    Raises:
        KeyringMissingError: there is no file at ``path``.
        KeyringCorruptError: the file is damaged or not a keyring this code reads.
        KeyringError: the file cannot be read (a directory, no permission).
    """
    try:
        with os_errors("reading the keyring", path, KeyringError), path.open("rb") as handle:
            seen = stamp_of(os.fstat(handle.fileno()))
            raw = handle.read(MAX_KEYRING_BYTES + 1)
    except FileNotFoundError:
        raise KeyringMissingError(
            f"no keyring at {path}: an encrypted database needs its .keyring file beside "
            "it; restore it from where you keep backups"
        ) from None
    if len(raw) > MAX_KEYRING_BYTES:
        raise KeyringCorruptError(f"the keyring at {path} is implausibly large; restore it")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyringCorruptError(
            f"the keyring at {path} is damaged (not valid JSON); restore it from a backup"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KeyringCorruptError(f"{path} is not a mangostore keyring")
    if doc.get("version") != FORMAT_VERSION:
        raise KeyringCorruptError(
            f"the keyring at {path} has format version {doc.get('version')!r}; this "
            f"mangostore reads version {FORMAT_VERSION}: upgrade mangostore"
        )
    stored = doc.get("checksum")
    if not isinstance(stored, str) or not hmac.compare_digest(stored, checksum(doc)):
        raise KeyringCorruptError(
            f"the keyring at {path} is damaged (its checksum does not match its contents); "
            "restore it from a backup"
        )
    shape = (
        isinstance(doc.get("vault_id"), str)
        and isinstance(doc.get("kdf"), dict)
        and isinstance(doc.get("master"), dict)
        and isinstance(doc.get("data_keys"), dict)
        and isinstance(doc.get("erased_users"), list)
        and isinstance(doc.get("page_encryption"), bool)
    )
    if not shape:
        raise KeyringCorruptError(f"the keyring at {path} is incomplete; restore it")
    return doc, seen
