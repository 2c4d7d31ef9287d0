"""Wrapping the master key: under a passphrase's or a recovery key's key-encryption
key, bound to its vault and slot; and the recovery key's printed form.

Used by the keyring sidecar and by the escrow copy a sync server keeps.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mangostore.errors import ConfigurationError, KeyringCorruptError, WrongPassphraseError
from mangostore.keys.kdf import SALT_BYTES, KdfParams, derive_kek
from mangostore.keys.keyring_file import FORMAT, FORMAT_VERSION, b64, unb64
from mangostore.keys.subkeys import derive_subkey

__all__ = [
    "MASTER_BYTES",
    "aad",
    "format_recovery_key",
    "open_master",
    "parse_recovery_key",
    "unwrap",
    "wrap",
]

NONCE_BYTES: Final = 12
MASTER_BYTES: Final = 32


def format_recovery_key(raw: bytes) -> str:
    """Render 32 random bytes as groups of base32 characters a person can copy."""
    text = base64.b32encode(raw).decode("ascii").rstrip("=")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def parse_recovery_key(text: str) -> bytes:
    """Read a recovery key typed by a person (case, dashes and spaces ignored).

    Raises:
        WrongPassphraseError: the text is not a well-formed recovery key.
    """
    cleaned = "".join(ch for ch in text.upper() if ch.isalnum())
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != MASTER_BYTES:
        raise WrongPassphraseError(
            "that is not a mangostore recovery key: it should be 52 letters and digits "
            "in groups of four, as shown when the database was created"
        )
    return raw


def wrap(kek: bytes, master: bytes, aad: bytes) -> str:
    """Encrypt ``master`` under ``kek`` with AES-GCM; return ``b64(nonce | ciphertext)``."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return b64(nonce + AESGCM(kek).encrypt(nonce, master, aad))


def unwrap(kek: bytes, blob: bytes, aad: bytes) -> bytes | None:
    """Decrypt a wrapped master key; ``None`` if ``kek`` (or ``aad``) does not fit."""
    if len(blob) != NONCE_BYTES + MASTER_BYTES + 16:
        return None
    try:
        return AESGCM(kek).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        return None


def aad(vault_id: str, slot: str) -> bytes:
    """Bind a wrapped key to its vault and slot, so it cannot be moved to another."""
    return f"{FORMAT}/{FORMAT_VERSION}/{vault_id}/{slot}".encode()


def open_master(
    doc: dict[str, Any], name: str, *, passphrase: str | None, recovery_key: str | None
) -> bytes:
    """Unwrap the master key of a keyring document (or escrow copy) of ``name``.

    Raises:
        ConfigurationError: neither a passphrase nor a recovery key was given.
        KeyringCorruptError: the document's salt or wrapped key is malformed.
        WrongPassphraseError: neither fits.
    """
    if recovery_key is None and passphrase is None:
        raise ConfigurationError("a passphrase or a recovery key is needed to unlock")
    vault_id = str(doc["vault_id"])
    # Everything is validated before the (deliberately expensive) derivation.
    kdf = KdfParams.from_json(doc["kdf"])
    slot = "recovery" if recovery_key is not None else "passphrase"
    wrapped = unb64(doc["master"].get(slot), f"{slot} slot")
    if recovery_key is not None:
        kek = derive_subkey(parse_recovery_key(recovery_key), "recovery", salt=vault_id.encode())
    else:
        assert passphrase is not None
        salt = unb64(doc["kdf"].get("salt"), "KDF salt")
        if len(salt) < SALT_BYTES:
            raise KeyringCorruptError("the keyring's KDF salt is too short; restore it")
        kek = derive_kek(passphrase, salt, kdf)
    master = unwrap(kek, wrapped, aad(vault_id, slot))
    if master is None:
        what = "recovery key" if slot == "recovery" else "passphrase"
        raise WrongPassphraseError(
            f"wrong {what} for {name}: check it and try "
            "again (a lost passphrase can be reset with the recovery key)"
        )
    return master
