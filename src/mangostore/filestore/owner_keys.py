"""The owner's data key that seals a file's chunks.

Chunks are sealed under the owner's per-user data key (the one that seals their
encrypted fields, kept wrapped in the keyring sidecar, see
:mod:`mangostore.keys.field_cipher`), through a key derived for each chunk
(:mod:`.chunkcrypt`). A put uses the owner's primary key, making one if the owner
has none yet; a read uses the key the chunk's header names, which stays readable when
it is retired by a rotation. Erasing the owner destroys every one of their keys, and
with them every copy of their chunks, backups included.
"""

from __future__ import annotations

import uuid

from mangostore.engine.store import Store
from mangostore.errors import ConfigurationError
from mangostore.filestore.chunkcrypt import tampered
from mangostore.keys.field_cipher import FieldCipher, unwrap_data_key
from mangostore.keys.keyring import Keyring

__all__ = ["OwnerKeys", "require_keys"]


def require_keys(store: Store) -> tuple[Keyring, FieldCipher]:
    """The keyring and field cipher file storage needs.

    Raises:
        ConfigurationError: the database was opened without a passphrase.
    """
    keyring, cipher = store.keyring, store.field_cipher
    if keyring is None or cipher is None:
        raise ConfigurationError(
            "file storage encrypts every file with its owner's data key, which a database "
            "opened without a passphrase does not have: open it with a passphrase"
        )
    return keyring, cipher


class OwnerKeys:
    """Finds (and makes) owners' data keys for sealing and opening chunks."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __repr__(self) -> str:
        return "<OwnerKeys>"

    def sealing_key(self, owner: str) -> tuple[uuid.UUID, bytes]:
        """The owner's primary data key as ``(key id, key)``, made if they have none.

        Raises:
            KeyManagementError: the owner was erased (no new key is made for them).
            ConfigurationError: the database has no keyring.
        """
        keyring, cipher = require_keys(self._store)
        with self._store.reading() as conn:
            key_id = cipher.primary_key_id(conn, owner)
        key = None if key_id is None else self._unwrap(keyring, key_id, owner)
        if key is None:
            with self._store.transaction() as conn:
                key_id = cipher.primary_key_id(conn, owner)
                if key_id is None or self._unwrap(keyring, key_id, owner) is None:
                    # Rotating a user without a key makes their first one; one whose key
                    # left the keyring gets a new primary key.
                    key_id = cipher.rotate_user_key(conn, owner)
            key = self._unwrap(keyring, key_id, owner)
        if key_id is None or key is None:  # pragma: no cover - a key just made is there
            raise tampered("the owner's data key")
        return key_id, key

    def opening_key(self, key_id: uuid.UUID, owner: str) -> bytes:
        """The data key ``key_id`` of ``owner``, to open a chunk with.

        Raises:
            TamperedDataError: no such key of this owner (destroyed, or another owner's).
        """
        keyring, _ = require_keys(self._store)
        key = self._unwrap(keyring, key_id, owner)
        if key is None:
            raise tampered()
        return key

    @staticmethod
    def _unwrap(keyring: Keyring, key_id: uuid.UUID, owner: str) -> bytes | None:
        entry = keyring.get_data_key(str(key_id))
        if entry is None or entry.user_id != owner:
            return None
        return unwrap_data_key(keyring.subkey("field"), keyring.vault_id, entry)
