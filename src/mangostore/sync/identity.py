"""How a device proves to a sync server that it belongs to a vault.

Every device of a vault derives the same Ed25519 key pair from the vault's master key
(the ``sync-auth`` sub-key is the private key's seed). The first device to attach the
vault gives the server the public key; from then on a device asks for a challenge,
signs it, and gets a short-lived bearer token. The server keeps only public keys,
random challenges and the hashes of tokens: nothing it holds signs, decrypts or
unwraps anything. Both sides build the signed message with :func:`challenge_message`.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mangostore.keys.keyring import Keyring

__all__ = [
    "AUTH_CONTEXT",
    "VaultSigner",
    "b64decode",
    "b64encode",
    "challenge_message",
    "verify_signature",
]

#: What a signature is for, so a signature made here means nothing elsewhere.
AUTH_CONTEXT = b"mangostore-sync-auth/1"


def challenge_message(vault_id: str, device_id: str, challenge: bytes) -> bytes:
    """The bytes a device signs to answer ``challenge``: bound to the vault and the
    device, so an answer cannot be replayed for another."""
    return b"\x00".join((AUTH_CONTEXT, vault_id.encode(), device_id.encode(), challenge))


class VaultSigner:
    """The vault's signing key on a device (never leaves it)."""

    def __init__(self, keyring: Keyring) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(keyring.subkey("sync-auth"))

    def __repr__(self) -> str:
        return "<mangostore VaultSigner>"

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key the server checks signatures with."""
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, vault_id: str, device_id: str, challenge: bytes) -> bytes:
        """Sign the answer to a server's ``challenge``."""
        return self._key.sign(challenge_message(vault_id, device_id, challenge))


def verify_signature(
    public_key: bytes, vault_id: str, device_id: str, challenge: bytes, signature: bytes
) -> bool:
    """Whether ``signature`` answers ``challenge`` for (vault, device) under ``public_key``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            signature, challenge_message(vault_id, device_id, challenge)
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def b64encode(data: bytes) -> str:
    """URL-safe base64 text of ``data`` (how bytes travel in the server's JSON)."""
    return base64.urlsafe_b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """The inverse of :func:`b64encode`.

    Raises:
        ValueError: ``text`` is not base64.
    """
    try:
        # Strict: characters outside the alphabet are refused, not skipped (skipping
        # would turn "!!" into an empty body).
        return base64.b64decode(text.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not base64 text") from exc
