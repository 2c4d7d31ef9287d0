"""Per-user data keys, and the encryption of sensitive fields with them.

Every user gets a random 256-bit data key the first time one of their values is
encrypted. The key is wrapped (AES-256-GCM under the keyring's ``field`` sub-key,
with the vault id, key id and user id as associated data) and stored in the keyring
sidecar's key block *before* anything is encrypted with it, so no value can exist
whose key was never saved. The database only holds metadata, in ``field_keys``:
which key is the user's primary, how many values it has sealed, and which keys were
retired or destroyed. Because the keys are not in the database file, destroying a
user's keys (:meth:`FieldCipher.destroy_user_keys`) makes their values unreadable in
every copy of that file, backups included.

A random 96-bit nonce must not be used with one key more than 2**32 times; each
key seals at most :data:`MAX_ENCRYPTIONS_PER_KEY` values (2**28, a collision chance
below 2**-40) and the next encryption makes a new primary key. Older keys stay
``retired`` and keep decrypting what they sealed. A user's primary key is read once
and kept until another connection commits, and its uses are counted in memory and
written once per key just before ``COMMIT`` (:mod:`mangostore.keys.key_uses`), so
sealing a value runs no statement.

Unwrapped keys are cached in memory for the life of the :class:`FieldCipher`; they
are never logged, and the repr of the cipher shows none of them.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import uuid6
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mangostore.clock import Clock, SystemClock
from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.engine.writer import Writer
from mangostore.errors import KeyManagementError, UnknownColumnError
from mangostore.keys.envelope import (
    KEY_BYTES,
    NONCE_BYTES,
    FieldContext,
    header_for,
    length_prefixed,
    open_envelope,
    seal_with,
)
from mangostore.keys.key_uses import KeyUses, SealingKey
from mangostore.keys.keyring import DataKeyEntry, Keyring
from mangostore.schema.sensitive import is_sensitive

__all__ = [
    "MAX_ENCRYPTIONS_PER_KEY",
    "CipherDatabase",
    "CipherStore",
    "FieldCipher",
    "FieldKeyInfo",
    "field_cipher_for",
    "unwrap_data_key",
    "wrap_data_key",
]

#: Values one data key seals before the next encryption makes a new primary key.
#: Well below the 2**32 random-nonce limit of AES-GCM; read at call time.
MAX_ENCRYPTIONS_PER_KEY: int = 2**28

_WRAP_LABEL = b"mangostore/field-key/v1"
_WRAPPED_BYTES = NONCE_BYTES + KEY_BYTES + 16


def _wrap_aad(vault_id: str, key_id: str, user_id: str) -> bytes:
    return _WRAP_LABEL + length_prefixed(vault_id, key_id, user_id)


def wrap_data_key(
    field_key: bytes, vault_id: str, key_id: str, user_id: str, data_key: bytes
) -> bytes:
    """Wrap ``data_key`` under the field sub-key, bound to its vault, id and user.

    Returns:
        ``nonce (12) | AES-256-GCM ciphertext and tag (48)``.
    """
    nonce = secrets.token_bytes(NONCE_BYTES)
    aad = _wrap_aad(vault_id, key_id, user_id)
    return nonce + AESGCM(field_key).encrypt(nonce, data_key, aad)


def unwrap_data_key(field_key: bytes, vault_id: str, entry: DataKeyEntry) -> bytes | None:
    """Unwrap a key-block entry; ``None`` if it does not authenticate (never raises)."""
    wrapped = entry.wrapped
    if len(wrapped) != _WRAPPED_BYTES:
        return None
    aad = _wrap_aad(vault_id, entry.key_id, entry.user_id)
    try:
        return AESGCM(field_key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
    except InvalidTag:
        return None


@dataclass(frozen=True, slots=True)
class FieldKeyInfo:
    """A row of ``field_keys``: what is known about a data key, never the key itself."""

    id: str
    user_id: str
    status: str
    encryption_count: int
    created_at: int
    retired_at: int | None
    destroyed_at: int | None


class FieldCipher:
    """Encrypts and decrypts sensitive fields with per-user data keys.

    Thread-safe: one lock guards the key cache and key creation, so threads sealing
    the first values of a new user make exactly one primary key. It follows the
    writer's transactions (a :class:`~mangostore.keys.key_uses.KeyUses` ledger is
    registered with the writer): primary keys are read once and kept while no other
    connection commits, and their uses are written when a transaction commits.

    Args:
        keyring: the unlocked keyring holding the key block and the field sub-key.
        writer: the database's writer, whose transaction :meth:`encrypt` runs in.
        clock: stamps key creation, retirement and destruction (default: the system
            clock; ``field_cipher_for`` passes the database's).
    """

    def __init__(self, keyring: Keyring, writer: Writer, clock: Clock | None = None) -> None:
        self._keyring = keyring
        self._writer = writer
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.RLock()
        # key id (16 bytes) -> (owner user id, unwrapped key)
        self._keys: dict[bytes, tuple[str, bytes]] = {}
        # (table, column) -> length-prefixed vault id, table and column: the fixed
        # part of every associated data for that column (only encrypted columns).
        self._places: dict[tuple[str, str], bytes] = {}
        self._uses = KeyUses(self._lock, _use_limit)
        writer.add_listener(self._uses)

    def __repr__(self) -> str:
        return f"<FieldCipher vault {self._keyring.vault_id} ({len(self._keys)} keys cached)>"

    @property
    def vault_id(self) -> str:
        """The vault id bound into every envelope of this database."""
        return self._keyring.vault_id

    def context(self, table: str, column: str, row_id: str, user_id: str) -> FieldContext:
        """Return the context of a value, checking that the column is encrypted.

        Raises:
            UnknownColumnError: ``table.column`` is not in
                :data:`mangostore.schema.sensitive.SENSITIVE_FIELDS`.
        """
        if not is_sensitive(table, column):
            raise UnknownColumnError(
                f"{table}.{column} is not an encrypted column; see "
                "mangostore.schema.sensitive.SENSITIVE_FIELDS"
            )
        return FieldContext(self.vault_id, table, column, row_id, user_id)

    # -- values ---------------------------------------------------------------------------

    def encrypt(
        self,
        conn: Connection,
        table: str,
        column: str,
        row_id: str,
        user_id: str,
        plaintext: bytes,
    ) -> bytes:
        """Seal ``plaintext`` for ``table.column`` of row ``row_id`` under the owner's key.

        Runs in the caller's write transaction. The owner's primary key is read once
        and kept while no other connection commits (made on first use or at the
        limit: its row commits or rolls back with the value); the use is counted in
        memory and added to ``field_keys`` when the transaction commits, or at the
        next commit if it rolls back (see :mod:`mangostore.keys.key_uses`).

        Args:
            conn: the writer connection of the current transaction.
            table, column: an encrypted column.
            row_id: the row's id.
            user_id: the owning user's id.
            plaintext: the serialised value.

        Returns:
            The envelope to store in the column.

        Raises:
            UnknownColumnError: the column is not encrypted.
            KeyManagementError: the user was erased, so no new key is made for them.
            RuntimeError: called outside a write transaction (a programming error).
        """
        place = self._places.get((table, column))
        if place is None:
            place = self._place(table, column)
        self._require_transaction("encrypt")
        with self._lock:
            self._uses.check(conn)
            key = self._uses.ready(user_id)
            if key is None:
                key = self._primary_key(conn, user_id)
            # Counted before sealing: a use counted and not made is the safe direction.
            self._uses.count(key)
        return seal_with(key.aead, key.header, plaintext, place, row_id, user_id)

    def key_ready(self, user_id: str, values: int = 1) -> bool:
        """Tell whether sealing ``values`` more values for ``user_id`` in the calling
        thread's transaction writes nothing (their key is known and stays under the
        limit). A repository writing one row needs no savepoint then.
        """
        if not self._writer.owned_by_current_thread():
            return False
        with self._lock:
            self._uses.check(self._writer.connection)
            return self._uses.ready(user_id, values) is not None

    def decrypt(self, table: str, column: str, row_id: str, user_id: str, blob: object) -> bytes:
        """Open a value read from ``table.column`` of row ``row_id`` owned by ``user_id``.

        Returns:
            The plaintext.

        Raises:
            UnknownColumnError: the column is not encrypted.
            TamperedDataError: the value is not a genuine envelope for this place, or its
                key was destroyed (one generic message, naming only the place).
        """
        ctx = self.context(table, column, row_id, user_id)
        return open_envelope(lambda key_id: self._key(key_id, user_id), blob, ctx)

    # -- keys -----------------------------------------------------------------------------

    def primary_key_id(self, conn: Connection, user_id: str) -> uuid.UUID | None:
        """Return the id of the user's primary key, or ``None`` if they have none."""
        with driver_errors("reading field keys"):
            row = conn.execute(
                "SELECT id FROM field_keys WHERE user_id = ? AND status = 'primary'", (user_id,)
            ).fetchone()
        return None if row is None else uuid.UUID(row[0])

    def rotate_user_key(self, conn: Connection, user_id: str) -> uuid.UUID:
        """Make a new primary key for ``user_id`` and retire the current one.

        Values sealed under the retired key stay readable; new values use the new key.

        Raises:
            KeyManagementError: the user was erased.
            RuntimeError: called outside a write transaction.
        """
        return self.rotate_user_keys(conn, [user_id])[0]

    def rotate_user_keys(
        self, conn: Connection, user_ids: Sequence[str], *, rotation_id: str | None = None
    ) -> list[uuid.UUID]:
        """Give each of ``user_ids`` a new primary key, retiring their current one.

        The new keys are stored with one write of the keyring, before the rows that
        name them; ``rotation_id`` marks the rows as made by that rotation.

        Returns:
            The new keys' ids, in the order of ``user_ids``.

        Raises:
            KeyManagementError: one of the users was erased (nothing is changed).
            RuntimeError: called outside a write transaction.
        """
        self._require_transaction("rotate_user_keys")
        with self._lock:
            now = self._clock.now_ms()
            for user_id in user_ids:
                self._uses.forget_user(user_id)
                old = self.primary_key_id(conn, user_id)
                if old is not None:
                    self._set_status(conn, old, "retired", now)
            return [key.key_id for key in self._create_keys(conn, user_ids, now, rotation_id)]

    def prune_unused_keys(self, conn: Connection) -> int:
        """Remove from the keyring every data key that no ``field_keys`` row names.

        Such keys were stored by a transaction that then rolled back or was killed
        (keys are stored before the row naming them, so that no value can exist
        without its key); nothing was ever sealed with them. Runs in the caller's
        write transaction, the only place keys are stored. Returns how many went.

        Raises:
            RuntimeError: called outside a write transaction.
        """
        self._require_transaction("prune_unused_keys")
        with self._lock, driver_errors("reading field keys"):
            named = {str(row[0]) for row in conn.execute("SELECT id FROM field_keys")}
            return len(self._keyring.remove_data_keys_except(named))

    def destroy_user_keys(self, conn: Connection, user_id: str) -> list[str]:
        """Destroy every data key of ``user_id`` (crypto-shredding); irreversible.

        The metadata rows are marked ``destroyed`` in the caller's transaction, then
        the wrapped keys are removed from the keyring sidecar and from memory. From
        then on every value of the user, in this file and in every copy of it,
        raises :class:`TamperedDataError`, and no new key is made for the user.

        Returns:
            The ids of the keys removed from the keyring.

        Raises:
            RuntimeError: called outside a write transaction.
        """
        self._require_transaction("destroy_user_keys")
        with self._lock:
            with driver_errors("destroying field keys"):
                conn.execute(
                    "UPDATE field_keys SET status = 'destroyed', destroyed_at = ? "
                    "WHERE user_id = ? AND status != 'destroyed'",
                    (self._clock.now_ms(), user_id),
                )
            gone = self._keyring.destroy_user_keys(user_id)
            self._uses.forget_user(user_id)
            for key_id, (owner, _) in list(self._keys.items()):
                if owner == user_id:
                    del self._keys[key_id]
        return gone

    def list_keys(self, user_id: str | None = None) -> list[FieldKeyInfo]:
        """Return the metadata of every data key (of one user if given), oldest first.

        ``encryption_count`` includes the uses this process counted and has not
        written yet (those of the calling thread's open transaction, and those of
        transactions that rolled back, which the next commit adds).
        """
        sql = (
            "SELECT id, user_id, status, encryption_count, created_at, retired_at, "
            "destroyed_at FROM field_keys"
        )
        params: tuple[str, ...] = ()
        if user_id is not None:
            sql += " WHERE user_id = ?"
            params = (user_id,)
        with self._writer.transaction() as conn, driver_errors("reading field keys"):
            rows = conn.execute(sql + " ORDER BY created_at, id", params).fetchall()
            unrecorded = self._uses.unrecorded
            return [
                FieldKeyInfo(id, user, status, count + unrecorded(id), *times)
                for id, user, status, count, *times in rows
            ]

    def forget_cached_keys(self) -> None:
        """Drop every unwrapped key held in memory; they are unwrapped again when needed."""
        with self._lock:
            self._keys.clear()
            self._uses.forget_keys()

    # -- internals ------------------------------------------------------------------------

    def _require_transaction(self, what: str) -> None:
        if not self._writer.owned_by_current_thread():
            raise RuntimeError(
                f"FieldCipher.{what} must run inside the database's write transaction"
            )

    def _key(self, key_id: bytes, user_id: str) -> bytes | None:
        """Return the unwrapped key ``key_id`` if it exists and belongs to ``user_id``."""
        with self._lock:
            cached = self._keys.get(key_id)
            if cached is None:
                entry = self._keyring.get_data_key(str(uuid.UUID(bytes=key_id)))
                if entry is None:
                    return None
                key = unwrap_data_key(self._keyring.subkey("field"), self.vault_id, entry)
                if key is None:
                    return None
                cached = (entry.user_id, key)
                self._keys[key_id] = cached
        owner, key = cached
        return key if owner == user_id else None

    def _place(self, table: str, column: str) -> bytes:
        """Return (and keep) the fixed part of the associated data of ``table.column``.

        Raises:
            UnknownColumnError: the column is not encrypted.
        """
        self.context(table, column, "", "")  # refuses a column that is not encrypted
        place = length_prefixed(self.vault_id, table, column)
        self._places[(table, column)] = place
        return place

    def _primary_key(self, conn: Connection, user_id: str) -> SealingKey:
        """Read the user's primary key for this transaction, making one on first use or
        at the use limit; the caller holds the lock."""
        with driver_errors("reading field keys"):
            row = conn.execute(
                "SELECT id, encryption_count FROM field_keys "
                "WHERE user_id = ? AND status = 'primary'",
                (user_id,),
            ).fetchone()
        now = self._clock.now_ms()
        if row is not None:
            key_id = uuid.UUID(row[0])
            key = self._key(key_id.bytes, user_id)
            recorded = int(row[1])
            if key is None:
                # The keyring no longer holds it (destroyed by another process, or an
                # older keyring beside this file): record that, then make a new one.
                self._set_status(conn, key_id, "destroyed", now)
            elif recorded + self._uses.unrecorded(str(key_id)) >= MAX_ENCRYPTIONS_PER_KEY:
                self._set_status(conn, key_id, "retired", now)
            else:
                sealing = SealingKey(user_id, key_id, header_for(key_id), AESGCM(key), recorded)
                self._uses.remember(sealing)
                return sealing
        return self._create_keys(conn, [user_id], now, None)[0]

    def _create_keys(
        self, conn: Connection, user_ids: Sequence[str], now: int, rotation_id: str | None
    ) -> list[SealingKey]:
        """Make one new primary key for each user: stored in the keyring, then recorded,
        then used for the user's values for the rest of the transaction."""
        erased = set(self._keyring.erased_users())
        for user_id in user_ids:
            if user_id in erased:
                raise KeyManagementError(
                    f"user {user_id!r} was erased and their keys destroyed; no new data can "
                    "be encrypted for them"
                )
        field_key = self._keyring.subkey("field")
        made = []
        for user_id in user_ids:
            key_id = uuid.UUID(bytes=uuid6.uuid7().bytes)
            key = secrets.token_bytes(KEY_BYTES)
            wrapped = wrap_data_key(field_key, self.vault_id, str(key_id), user_id, key)
            made.append((user_id, key_id, key, DataKeyEntry(str(key_id), user_id, wrapped)))
        # The key block is written (durably, once for the batch) before the rows that
        # name the keys, and both before any value is sealed with them. A rollback
        # after this point leaves unused keys in the keyring (prune_unused_keys removes
        # them), never a value without its key.
        self._keyring.put_data_keys([entry for *_, entry in made])
        with driver_errors("recording a field key"):
            conn.executemany(
                "INSERT INTO field_keys (id, user_id, status, encryption_count, created_at, "
                "rotation_id) VALUES (?, ?, 'primary', 0, ?, ?)",
                [(str(key_id), user_id, now, rotation_id) for user_id, key_id, _, _ in made],
            )
        sealing = []
        for user_id, key_id, key, _ in made:
            self._keys[key_id.bytes] = (user_id, key)
            sealing.append(SealingKey(user_id, key_id, header_for(key_id), AESGCM(key), 0))
            self._uses.remember(sealing[-1])
        return sealing

    @staticmethod
    def _set_status(conn: Connection, key_id: uuid.UUID, status: str, now: int) -> None:
        column = "retired_at" if status == "retired" else "destroyed_at"
        with driver_errors("updating a field key"):
            conn.execute(
                f"UPDATE field_keys SET status = ?, {column} = ? WHERE id = ?",
                (status, now, str(key_id)),
            )


def _use_limit() -> int:
    # Read at call time: tests lower the limit with monkeypatch.
    return MAX_ENCRYPTIONS_PER_KEY


class CipherStore(Protocol):
    """What :func:`field_cipher_for` reads of a store (:class:`~mangostore.engine.store.Store`)."""

    @property
    def field_cipher(self) -> FieldCipher | None:
        """The store's field cipher (``None`` without a keyring)."""
        ...


class CipherDatabase(Protocol):
    """What :func:`field_cipher_for` reads of a database (:class:`mangostore.Database`).

    Declared here rather than annotated with the database class: the store owns the
    cipher and imports this module, so naming the database would make a cycle.
    """

    @property
    def store(self) -> CipherStore:
        """The connections, which own the field cipher."""
        ...


def field_cipher_for(db: CipherDatabase) -> FieldCipher | None:
    """Return the field cipher of ``db`` (owned by its store: ``db.store.field_cipher``).

    Returns:
        ``None`` for a database opened without a passphrase: it has no keyring, so its
        sensitive columns are stored as plaintext.
    """
    return db.store.field_cipher
