"""The keyring sidecar: the wrapped master key, its KDF parameters, and the per-user key block.

Layout of ``<database>.keyring`` (JSON, format version 1)::

    {
      "format": "mangostore-keyring", "version": 1,
      "vault_id": "<uuid shared by every device of this database>",
      "page_encryption": true,
      "kdf": {"alg": "argon2id", "memory_kib": .., "iterations": .., "parallelism": ..,
              "salt": b64},
      "master": {"passphrase": b64(nonce | AES-GCM(kek, master)),
                 "recovery":   b64(nonce | AES-GCM(recovery-kek, master))},
      "data_keys": {"<key id>": {"user_id": "..", "wrapped": b64}},
      "erased_users": ["<user id>", ...],
      "mac": b64(HMAC-SHA256(keyring sub-key, canonical JSON of everything above)),
      "checksum": b64(SHA-256(canonical JSON of everything above, mac included))
    }

Two integrity checks, for two different failures. The checksum needs no key, so
accidental damage (a truncated copy, flipped bits, a hand edit) is reported as a
damaged keyring before any key is derived; without it a damaged salt, wrapped key
or vault id would look exactly like a wrong passphrase. The MAC needs the master
key, so it is checked after unlocking and catches deliberate edits whose author
also recomputed the checksum.

The passphrase never touches the database: Argon2id turns it into a key-encryption
key (KEK) that only unwraps the random master key. Changing the passphrase rewraps
that one key. Per-user data keys live here rather than in the database file, so
destroying one (erasure) also reaches every copy of the database file.

Concurrent writers (two processes creating user keys) are serialised with an
advisory ``flock`` on ``<keyring>.lock``; the file itself is replaced atomically,
and a new keyring is linked into place only if none exists, so creating one never
overwrites another.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any, Final

from mangostore.errors import (
    ConfigurationError,
    KeyringCorruptError,
    WrongPassphraseError,
)
from mangostore.keys.kdf import SALT_BYTES, KdfParams, derive_kek
from mangostore.keys.keyring_file import (
    FORMAT,
    FORMAT_VERSION,
    MAX_KEYRING_BYTES,
    Stamp,
    b64,
    canonical,
    checksum,
    file_lock,
    keyring_path,
    lock_path,
    read_keyring,
    remove_leftovers,
    stale_keyring,
    stamp_of,
    unb64,
    write_keyring,
)
from mangostore.keys.subkeys import derive_subkey
from mangostore.keys.wrapping import (
    MASTER_BYTES,
    aad,
    format_recovery_key,
    open_master,
    parse_recovery_key,
    unwrap,
    wrap,
)

# The sidecar's paths and format are defined in keyring_file and offered here too:
# callers deal with "the keyring", not with how its file is kept.
__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_KEYRING_BYTES",
    "DataKeyEntry",
    "Keyring",
    "format_recovery_key",
    "keyring_path",
    "lock_path",
    "parse_recovery_key",
]

#: The ``format`` of :meth:`Keyring.escrow` copies.
ESCROW_FORMAT: Final = "mangostore-keyring-escrow/1"


@dataclass(frozen=True, slots=True)
class DataKeyEntry:
    """One per-user data key as stored in the key block: still wrapped."""

    key_id: str
    user_id: str
    wrapped: bytes


@dataclass(eq=False)
class Keyring:
    """An unlocked keyring: the master key in memory and the sidecar it came from.

    ``path`` is ``None`` for an in-memory database, whose keyring is never written.
    The repr shows neither the master key nor any sub-key.
    """

    path: Path | None
    vault_id: str
    page_encryption: bool
    kdf: KdfParams
    _master: bytes = field(repr=False)
    _doc: dict[str, Any] = field(repr=False)
    _subkeys: dict[str, bytes] = field(default_factory=dict, repr=False)
    # The file version _doc was read from or written as; None until known.
    _seen: Stamp | None = field(default=None, repr=False)
    # Reentrant: _update holds it while _verify and _seal take sub-keys.
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # True for a keyring just made: it is sealed and written, never replacing a file.
    # False for one read from disk: its MAC is checked.
    new: InitVar[bool] = False

    def __post_init__(self, new: bool) -> None:
        if not new:
            self._verify(self._doc)
            return
        self._seal(self._doc)
        if self.path is not None:
            with file_lock(self.path):
                self._seen = write_keyring(self.path, self._doc, exclusive=True)

    # -- creation and unlocking -------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path | None,
        passphrase: str,
        kdf: KdfParams,
        *,
        page_encryption: bool,
    ) -> tuple[Keyring, str]:
        """Create a keyring with a fresh master key; return it and the recovery key text.

        The recovery key is returned once and stored nowhere: only its wrap of the
        master key is kept.

        Raises:
            ConfigurationError: unsafe KDF parameters or an empty passphrase.
            KeyringError: a keyring already exists at ``path`` (it is left untouched).
        """
        vault_id, master = str(uuid.uuid4()), secrets.token_bytes(MASTER_BYTES)
        return cls._made(path, passphrase, kdf, page_encryption, vault_id, master)

    def new_device(self, path: Path | None, passphrase: str, kdf: KdfParams) -> tuple[Keyring, str]:
        """Create the keyring of another device of this vault; return it and its
        recovery key text.

        It holds the same vault id and master key (so synced ciphertext and batches
        open on both devices) under its own passphrase and recovery key.

        Raises:
            ConfigurationError: unsafe KDF parameters or an empty passphrase.
            KeyringError: a keyring already exists at ``path`` (it is left untouched).
        """
        return self._made(path, passphrase, kdf, self.page_encryption, self.vault_id, self._master)

    @classmethod
    def _made(
        cls,
        path: Path | None,
        passphrase: str,
        kdf: KdfParams,
        page_encryption: bool,
        vault_id: str,
        master: bytes,
    ) -> tuple[Keyring, str]:
        """A keyring of ``vault_id`` wrapping ``master`` under ``passphrase`` and a new
        recovery key."""
        kdf.check()
        if path is not None and path.exists():
            # Checked again, atomically, when the file is linked into place; this
            # early check only spares the Argon2id work.
            raise stale_keyring(path)
        salt = secrets.token_bytes(SALT_BYTES)
        recovery_raw = secrets.token_bytes(MASTER_BYTES)
        recovery_kek = derive_subkey(recovery_raw, "recovery", salt=vault_id.encode())
        doc: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "vault_id": vault_id,
            "page_encryption": page_encryption,
            "kdf": {**kdf.to_json(), "salt": b64(salt)},
            "master": {
                "passphrase": wrap(
                    derive_kek(passphrase, salt, kdf), master, aad(vault_id, "passphrase")
                ),
                "recovery": wrap(recovery_kek, master, aad(vault_id, "recovery")),
            },
            "data_keys": {},
            "erased_users": [],
        }
        ring = cls(path, vault_id, page_encryption, kdf, master, doc, new=True)
        return ring, format_recovery_key(recovery_raw)

    @classmethod
    def unlock(
        cls,
        path: Path,
        *,
        passphrase: str | None = None,
        recovery_key: str | None = None,
    ) -> Keyring:
        """Read the sidecar at ``path`` and unwrap the master key.

        Raises:
            KeyringMissingError: there is no sidecar.
            KeyringCorruptError: the sidecar is unreadable, malformed or tampered with.
            WrongPassphraseError: neither the passphrase nor the recovery key fits.
        """
        doc, seen = read_keyring(path)
        name = path.name.removesuffix(".keyring")
        master = open_master(doc, name, passphrase=passphrase, recovery_key=recovery_key)
        kdf = KdfParams.from_json(doc["kdf"])
        vault_id = doc["vault_id"]
        ring = cls(path, vault_id, bool(doc["page_encryption"]), kdf, master, doc, _seen=seen)
        ring.remove_leftovers()
        return ring

    def escrow(self) -> dict[str, Any]:
        """What a sync server may keep so that a new machine can join this vault.

        The vault id, the KDF parameters with their salt, and the master key wrapped
        under the passphrase and under the recovery key: opening it costs the same
        Argon2id guessing as this file. No data key, no erased user. A MAC under the
        keyring sub-key lets the joining device detect a changed copy.
        """
        doc = self._refresh()
        out: dict[str, Any] = {
            "format": ESCROW_FORMAT,
            "vault_id": self.vault_id,
            "page_encryption": self.page_encryption,
            "kdf": doc["kdf"],
            "master": doc["master"],
        }
        out["mac"] = b64(hmac.digest(self.subkey("keyring"), canonical(out), "sha256"))
        return out

    @classmethod
    def from_escrow(
        cls,
        escrow: dict[str, Any],
        *,
        passphrase: str | None = None,
        recovery_key: str | None = None,
    ) -> Keyring:
        """Unlock an :meth:`escrow` copy into a keyring held in memory only; make the
        joining device's own with :meth:`new_device`.

        Raises:
            KeyringCorruptError: ``escrow`` is not an escrow copy or was changed.
            WrongPassphraseError: neither the passphrase nor the recovery key fits.
        """
        if not isinstance(escrow, dict) or escrow.get("format") != ESCROW_FORMAT:
            raise KeyringCorruptError("the server's copy of the vault's key is not readable")
        master = open_master(escrow, "the vault", passphrase=passphrase, recovery_key=recovery_key)
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "vault_id": escrow["vault_id"],
            "page_encryption": bool(escrow["page_encryption"]),
            "kdf": escrow["kdf"],
            "master": escrow["master"],
            "data_keys": {},
            "erased_users": [],
        }
        kdf = KdfParams.from_json(escrow["kdf"])
        ring = cls(
            None,
            str(escrow["vault_id"]),
            bool(escrow["page_encryption"]),
            kdf,
            master,
            doc,
            new=True,
        )
        body = {k: v for k, v in escrow.items() if k != "mac"}
        expected = hmac.digest(ring.subkey("keyring"), canonical(body), "sha256")
        if not hmac.compare_digest(expected, unb64(escrow.get("mac"), "MAC")):
            raise KeyringCorruptError("the server's copy of the vault's key was changed")
        return ring

    # -- keys ---------------------------------------------------------------------------

    def subkey(self, purpose: str) -> bytes:
        """Return the sub-key for ``purpose`` (see :data:`mangostore.keys.subkeys.PURPOSES`)."""
        with self._lock:
            key = self._subkeys.get(purpose)
            if key is None:
                key = derive_subkey(self._master, purpose, salt=self.vault_id.encode())
                self._subkeys[purpose] = key
            return key

    def change_passphrase(self, old: str, new: str, kdf: KdfParams | None = None) -> None:
        """Rewrap the master key under ``new``; the data is not re-encrypted.

        Raises:
            WrongPassphraseError: ``old`` is not the current passphrase.
            ConfigurationError: ``new`` is empty or the KDF parameters are unsafe.
        """
        params = kdf or self.kdf
        params.check()
        _check_new_passphrase(new)
        wrong = WrongPassphraseError("the current passphrase is wrong; nothing was changed")
        if not isinstance(old, str) or not old:
            raise wrong
        with self._update() as doc:
            salt = unb64(doc["kdf"].get("salt"), "KDF salt")
            current = KdfParams.from_json(doc["kdf"])
            old_kek = derive_kek(old, salt, current)
            if (
                unwrap(
                    old_kek,
                    unb64(doc["master"]["passphrase"], "passphrase slot"),
                    aad(self.vault_id, "passphrase"),
                )
                is None
            ):
                raise wrong
            self._set_passphrase(doc, new, params)
        self.kdf = params

    def reset_passphrase(self, new: str, kdf: KdfParams | None = None) -> None:
        """Set a new passphrase on a keyring unlocked with the recovery key.

        The old passphrase is not needed (it is presumed lost); the recovery key
        keeps working.

        Raises:
            ConfigurationError: ``new`` is empty or the KDF parameters are unsafe.
        """
        params = kdf or self.kdf
        params.check()
        _check_new_passphrase(new)
        with self._update() as doc:
            self._set_passphrase(doc, new, params)
        self.kdf = params

    def _set_passphrase(self, doc: dict[str, Any], new: str, params: KdfParams) -> None:
        """Wrap the master key under ``new`` with a fresh salt, in ``doc`` only."""
        salt = secrets.token_bytes(SALT_BYTES)
        doc["kdf"] = {**params.to_json(), "salt": b64(salt)}
        doc["master"]["passphrase"] = wrap(
            derive_kek(new, salt, params), self._master, aad(self.vault_id, "passphrase")
        )

    # -- the per-user key block ---------------------------------------------------------

    def data_keys(self) -> list[DataKeyEntry]:
        """Return every per-user data key entry (wrapped), reading the sidecar afresh."""
        doc = self._refresh()
        return [
            DataKeyEntry(key_id, entry["user_id"], unb64(entry["wrapped"], "data key"))
            for key_id, entry in doc["data_keys"].items()
        ]

    def get_data_key(self, key_id: str) -> DataKeyEntry | None:
        """Return the wrapped data key ``key_id``, or ``None`` if it was never made or destroyed.

        The sidecar is read again whenever it changed on disk, so a key destroyed
        through another handle (or process) is gone here too; otherwise the copy in
        memory is used and a lookup costs one ``stat``.

        Raises:
            KeyringMissingError, KeyringCorruptError: the sidecar changed and is unusable.
        """
        doc = self._current()
        entry = doc["data_keys"].get(key_id)
        if entry is None:
            return None
        return DataKeyEntry(key_id, entry["user_id"], unb64(entry["wrapped"], "data key"))

    def put_data_key(self, entry: DataKeyEntry) -> None:
        """Store a wrapped data key, durably, before anything is encrypted with it."""
        self.put_data_keys([entry])

    def put_data_keys(self, entries: list[DataKeyEntry]) -> None:
        """Store several wrapped data keys with one durable write of the sidecar."""
        if not entries:
            return
        with self._update() as doc:
            for entry in entries:
                doc["data_keys"][entry.key_id] = {
                    "user_id": entry.user_id,
                    "wrapped": b64(entry.wrapped),
                }

    def remove_data_keys_except(self, keep: set[str]) -> list[str]:
        """Remove every data key whose id is not in ``keep``; return the ids removed.

        For keys that no record names (a transaction that made them was rolled back or
        killed): the caller must hold the database's write transaction, in which every
        key is stored, so that no key being made right now is taken for an unused one.
        """
        with self._update() as doc:
            unused = [key_id for key_id in doc["data_keys"] if key_id not in keep]
            for key_id in unused:
                del doc["data_keys"][key_id]
        return unused

    def destroy_user_keys(self, user_id: str) -> list[str]:
        """Remove every data key of ``user_id`` and remember the user as erased.

        Returns the ids of the destroyed keys.
        """
        with self._update() as doc:
            gone = [k for k, e in doc["data_keys"].items() if e["user_id"] == user_id]
            for key_id in gone:
                del doc["data_keys"][key_id]
            if user_id not in doc["erased_users"]:
                doc["erased_users"].append(user_id)
        return gone

    def erased_users(self) -> list[str]:
        """Return the ids of users whose keys were destroyed.

        Re-read from disk only when the sidecar changed there (as :meth:`get_data_key`
        does): a pull asks once a batch, and another process's erasure replaces the
        file, which changes its identity.
        """
        doc = self._current()
        return list(doc["erased_users"])

    # -- persistence --------------------------------------------------------------------

    def _seal(self, doc: dict[str, Any]) -> None:
        """Set the MAC and then the checksum of ``doc``."""
        doc["mac"] = b64(hmac.digest(self.subkey("keyring"), canonical(doc), "sha256"))
        doc["checksum"] = checksum(doc)

    def _verify(self, doc: dict[str, Any]) -> None:
        """Check the MAC of ``doc`` under this keyring's sub-key.

        Raises:
            KeyringCorruptError: the MAC does not match.
        """
        expected = hmac.digest(self.subkey("keyring"), canonical(doc), "sha256")
        if not hmac.compare_digest(expected, unb64(doc.get("mac"), "MAC")):
            raise KeyringCorruptError(
                "the keyring was modified outside mangostore (its MAC does not match); "
                "restore it from a backup"
            )

    def _refresh(self) -> dict[str, Any]:
        """Re-read and verify the sidecar; keep and return it."""
        if self.path is None:
            return self._doc
        doc, seen = read_keyring(self.path)
        self._verify(doc)
        with self._lock:
            self._doc, self._seen = doc, seen
        return doc

    def _current(self) -> dict[str, Any]:
        """The sidecar as it is now: read again only when it changed on disk (a lookup
        otherwise costs one ``stat``)."""
        return self._refresh() if self._changed_on_disk() else self._doc

    def _changed_on_disk(self) -> bool:
        """Tell whether the sidecar differs from the version held in memory."""
        if self.path is None:
            return False
        try:
            now = stamp_of(os.stat(self.path))
        except FileNotFoundError:
            return True  # let the re-read report the missing keyring
        return self._seen is None or now != self._seen

    @contextlib.contextmanager
    def _update(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write the sidecar under the file lock; nothing is written on error."""
        lock = file_lock(self.path) if self.path is not None else contextlib.nullcontext()
        with self._lock, lock:
            doc = self._doc if self.path is None else read_keyring(self.path)[0]
            if self.path is not None:
                self._verify(doc)
            work = json.loads(json.dumps(doc))
            yield work
            self._seal(work)
            if self.path is not None:
                self._seen = write_keyring(self.path, work)
            self._doc = work

    def remove_leftovers(self) -> list[Path]:
        """Delete copies of this keyring left by writers that were killed mid-write.

        A copy holds the same wrapped keys as the keyring did (perhaps under an older
        passphrase, perhaps with keys erasure has since destroyed), so none may stay.
        Runs under the file lock: no writer is between writing a copy and renaming it.
        Older versions named the copy ``.keyring-<random>``; those are removed when
        they belong to this vault. Returns what was removed.
        """
        if self.path is None:
            return []
        with self._lock:
            return remove_leftovers(self.path, self.vault_id)

    def describe(self) -> dict[str, Any]:
        """Return what may be shown about this keyring: never a key."""
        return {
            "vault_id": self.vault_id,
            "page_encryption": self.page_encryption,
            "kdf": self.kdf.to_json(),
            "format_version": FORMAT_VERSION,
            "data_keys": len(self._doc["data_keys"]),
        }


def _check_new_passphrase(new: Any) -> None:
    """Refuse a new passphrase that could not be used to unlock.

    Raises:
        ConfigurationError: ``new`` is not a non-empty string.
    """
    if not isinstance(new, str) or not new:
        raise ConfigurationError("the new passphrase must be a non-empty string")
