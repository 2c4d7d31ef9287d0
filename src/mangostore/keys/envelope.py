"""The field envelope: one AES-256-GCM ciphertext with the header needed to open it.

Byte layout (all of it stored as one BLOB)::

    offset  size  field
    0       1     version     = 1
    1       1     alg         = 1 (AES-256-GCM)
    2       16    key_id      the data key's UUID, as its 16 raw bytes
    18      12    nonce       random for every encryption
    30      n+16  ciphertext  AES-256-GCM of the plaintext, followed by its 16-byte tag

The associated data is the 18-byte header followed by the length-prefixed encoding
(4-byte big-endian length, then the UTF-8 bytes) of the vault id, table, column,
row id and owner user id, in that order. Binding them means a value copied into
another row, column, owner or database fails authentication, and so does a header
edited to point at a different key or algorithm.

Every way an envelope can fail to open raises the same :class:`TamperedDataError`
with the same message, so an attacker probing with altered values learns nothing
about which check failed. The module is pure: no database, no keyring.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mangostore.engine.connection import UndecodableText
from mangostore.errors import TamperedDataError

VERSION: Final = 1
ALG_AES_256_GCM: Final = 1
KEY_BYTES: Final = 32
KEY_ID_BYTES: Final = 16
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
HEADER_BYTES: Final = 2 + KEY_ID_BYTES
#: The shortest well-formed envelope: the sealing of an empty plaintext.
MIN_ENVELOPE_BYTES: Final = HEADER_BYTES + NONCE_BYTES + TAG_BYTES
_MAX_PART_BYTES: Final = 2**32 - 1

KeyLookup = Callable[[bytes], bytes | None]


@dataclass(frozen=True, slots=True)
class FieldContext:
    """Where an encrypted value lives; all of it is bound into the associated data.

    Attributes:
        vault_id: the keyring's vault id, shared by every device of one database.
        table: the table holding the value.
        column: the encrypted column.
        row_id: the row's ``id``.
        user_id: the owning user's id (see :data:`mangostore.schema.sensitive.OWNER_COLUMN`).
    """

    vault_id: str
    table: str
    column: str
    row_id: str
    user_id: str


def length_prefixed(*parts: str) -> bytes:
    """Encode strings unambiguously: each as a 4-byte big-endian length and its UTF-8 bytes.

    Lone surrogates are encoded as they are (``surrogatepass``), so every Python
    string has exactly one encoding and no two sequences of strings share one.

    Raises:
        ValueError: a part is longer than 2**32 - 1 bytes.
    """
    out = bytearray()
    for part in parts:
        raw = part.encode("utf-8", "surrogatepass")
        if len(raw) > _MAX_PART_BYTES:
            raise ValueError("an associated-data part is longer than 4 GiB")
        out += len(raw).to_bytes(4, "big")
        out += raw
    return bytes(out)


def associated_data(header: bytes, context: FieldContext) -> bytes:
    """Return the associated data that an envelope with ``header`` is sealed with."""
    return header + length_prefixed(
        context.vault_id, context.table, context.column, context.row_id, context.user_id
    )


def _key_id_bytes(key_id: uuid.UUID | bytes) -> bytes:
    raw = key_id.bytes if isinstance(key_id, uuid.UUID) else bytes(key_id)
    if len(raw) != KEY_ID_BYTES:
        raise ValueError(f"a key id is {KEY_ID_BYTES} bytes, got {len(raw)}")
    return raw


def seal(key: bytes, key_id: uuid.UUID | bytes, plaintext: bytes, context: FieldContext) -> bytes:
    """Encrypt ``plaintext`` for the place ``context`` describes and return the envelope.

    Args:
        key: the 256-bit data key.
        key_id: the data key's id, written into the header so the value can be opened.
        plaintext: the bytes to protect (may be empty).
        context: the value's vault, table, column, row and owner.

    Returns:
        The envelope bytes (``MIN_ENVELOPE_BYTES + len(plaintext)`` long).

    Raises:
        ValueError: ``key`` is not 32 bytes or ``key_id`` not 16 (programming errors).
    """
    if len(key) != KEY_BYTES:
        raise ValueError(f"a field key is {KEY_BYTES} bytes, got {len(key)}")
    place = length_prefixed(context.vault_id, context.table, context.column)
    return seal_with(
        AESGCM(key), header_for(key_id), plaintext, place, context.row_id, context.user_id
    )


def header_for(key_id: uuid.UUID | bytes) -> bytes:
    """Return the 18-byte envelope header naming ``key_id`` (version, algorithm, key id).

    Raises:
        ValueError: ``key_id`` is not 16 bytes.
    """
    return bytes((VERSION, ALG_AES_256_GCM)) + _key_id_bytes(key_id)


def seal_with(
    aead: AESGCM, header: bytes, plaintext: bytes, place: bytes, row_id: str, user_id: str
) -> bytes:
    """:func:`seal` for a caller that seals many values: the same envelope, with the key
    already made into an ``AESGCM``, its header made by :func:`header_for`, and
    ``place`` the length-prefixed vault id, table and column
    (``length_prefixed(vault_id, table, column)``), computed once per column.
    """
    nonce = secrets.token_bytes(NONCE_BYTES)
    aad = header + place + length_prefixed(row_id, user_id)
    return header + nonce + aead.encrypt(nonce, plaintext, aad)


def _tampered(context: FieldContext | None) -> TamperedDataError:
    where = (
        f"{context.table}.{context.column} of row {context.row_id!r}"
        if context is not None
        else "a field"
    )
    return TamperedDataError(
        f"the encrypted value in {where} cannot be decrypted: it was altered, moved from "
        "another row, column, user or database, or its key was destroyed; restore the row "
        "from a backup if the data is still needed"
    )


def _envelope_bytes(blob: object, context: FieldContext | None) -> bytes:
    # An envelope is stored as a BLOB; one cast to TEXT was changed outside mangostore.
    if not isinstance(blob, bytes | bytearray | memoryview) or isinstance(blob, UndecodableText):
        raise _tampered(context)
    raw = bytes(blob)
    if len(raw) < MIN_ENVELOPE_BYTES:
        raise _tampered(context)
    return raw


def parse_header(blob: object, context: FieldContext | None = None) -> tuple[int, int, uuid.UUID]:
    """Return ``(version, alg, key_id)`` of an envelope without opening it.

    The values are not checked against the known versions and algorithms; only
    :func:`open_envelope` says whether the envelope is genuine.

    Args:
        blob: the stored value.
        context: where the value came from, named in the error if it is malformed.

    Raises:
        TamperedDataError: ``blob`` is not bytes or is shorter than any envelope.
    """
    raw = _envelope_bytes(blob, context)
    return raw[0], raw[1], uuid.UUID(bytes=raw[2:HEADER_BYTES])


def open_envelope(lookup_key: KeyLookup, blob: object, context: FieldContext) -> bytes:
    """Authenticate and decrypt an envelope sealed by :func:`seal` for ``context``.

    Args:
        lookup_key: given the 16-byte key id from the header, returns the 32-byte data
            key, or ``None`` when there is no such key (never made, or destroyed).
            Its own exceptions propagate unchanged.
        blob: the stored value.
        context: where the value was read from; must equal the context it was sealed for.

    Returns:
        The plaintext.

    Raises:
        TamperedDataError: for every failure: not bytes, too short, unknown version or
            algorithm, unknown or destroyed key, or failed authentication.
    """
    raw = _envelope_bytes(blob, context)
    header = raw[:HEADER_BYTES]
    if header[0] != VERSION or header[1] != ALG_AES_256_GCM:
        raise _tampered(context)
    key = lookup_key(header[2:])
    if key is None or len(key) != KEY_BYTES:
        raise _tampered(context)
    nonce = raw[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
    sealed = raw[HEADER_BYTES + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, sealed, associated_data(header, context))
    except InvalidTag:
        raise _tampered(context) from None
