"""Keyed digests for values the database may hold only in a one-way form.

With a keyring the digest is HMAC-SHA256 under the ``blind-index`` sub-key: a copy of
the database file alone lets nobody compute, check or forge one. A database opened
without a passphrase has no key, and the digest is plain SHA-256 of the same input;
see docs/authentication.md for what that still protects (a session verifier has 256
random bits, so its SHA-256 cannot be inverted) and what it does not (anyone who can
write to the file can plant a digest of a value they chose).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from mangostore.keys.envelope import length_prefixed

if TYPE_CHECKING:
    from mangostore.security.ports import KeyedDatabase

DIGEST_BYTES = 32


def digest_key(db: KeyedDatabase) -> bytes | None:
    """Return the key for :func:`keyed_digest`, or ``None`` for a database without a keyring."""
    keyring = db.keyring
    return None if keyring is None else keyring.subkey("blind-index")


def keyed_digest(key: bytes | None, label: str, *parts: str, secret: bytes = b"") -> bytes:
    """Return the 32-byte digest of ``label``, ``parts`` and ``secret``, unambiguously encoded.

    ``label`` separates the uses of the key (a session verifier's digest is never a
    valid user-name digest); ``parts`` are length-prefixed; ``secret`` comes last.
    """
    message = length_prefixed(label, *parts) + secret
    if key is None:
        return hashlib.sha256(message).digest()
    return hmac.digest(key, message, "sha256")
