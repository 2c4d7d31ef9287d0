"""Session tokens: ``selector.verifier``, and the keyed digest that stands for the verifier.

A token is 16 random bytes that find the session (the selector, stored as
``user_sessions.session_token``) and 32 random bytes that prove the caller holds it
(the verifier, never stored): 384 bits from :mod:`secrets`, unpadded URL-safe base64,
66 characters. ``session_verifiers`` stores a keyed digest of the verifier bound to
the session's id, user, level and lifetime (see :mod:`mangostore.security.digests`),
so a digest copied to another session, or a session whose user, level or expiry was
edited, never verifies.
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any, Final

from mangostore.errors import AuthenticationError
from mangostore.records import UserSession
from mangostore.security.digests import keyed_digest

__all__ = [
    "INVALID",
    "MALFORMED",
    "SELECTOR_BYTES",
    "TOKEN_CHARS",
    "VERIFIER_BYTES",
    "decoy_digest",
    "format_token",
    "new_token",
    "parse_token",
    "verifier_digest",
]

SELECTOR_BYTES: Final = 16
VERIFIER_BYTES: Final = 32
_SELECTOR_CHARS: Final = 22
_VERIFIER_CHARS: Final = 43
#: Length of a session token: selector, ".", verifier.
TOKEN_CHARS: Final = _SELECTOR_CHARS + 1 + _VERIFIER_CHARS
_DIGEST_LABEL: Final = "mangostore/session-verifier/v1"

MALFORMED: Final = "the session token is malformed; log in again"
INVALID: Final = "the session token is not valid; log in again"

# Unpadded URL-safe base64 of 16 and 32 bytes. The last character carries spare bits
# that must be zero (the decoder would ignore them): only the one canonical spelling
# of each token is accepted.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]\.[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]\Z")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def new_token() -> tuple[str, bytes]:
    """Return a fresh selector (as stored) and verifier (bytes, never stored)."""
    return _b64(secrets.token_bytes(SELECTOR_BYTES)), secrets.token_bytes(VERIFIER_BYTES)


def format_token(selector: str, verifier: bytes) -> str:
    """Return the token the client holds: ``selector.verifier``."""
    return f"{selector}.{_b64(verifier)}"


def parse_token(token: Any) -> tuple[str, bytes]:
    """Split a token into its selector (as stored) and its verifier bytes.

    Raises:
        AuthenticationError: the token does not have the shape of a session token.
    """
    if type(token) is not str or len(token) != TOKEN_CHARS or not _TOKEN.match(token):
        raise AuthenticationError(MALFORMED)
    return token[:_SELECTOR_CHARS], base64.urlsafe_b64decode(token[_SELECTOR_CHARS + 1 :] + "=")


def verifier_digest(
    key: bytes | None, session: UserSession, selector: str, verifier: bytes
) -> bytes:
    """Return the digest stored for ``verifier`` of ``session``.

    Args:
        key: :func:`~mangostore.security.digests.digest_key` of the database.
        session: the session, whose id, user, level and lifetime the digest binds.
        selector: the token's selector.
        verifier: the token's verifier.
    """
    # Binding the row's identity and lifetime means a digest copied to another
    # session, or a session whose user, level or expiry was edited, never verifies.
    return keyed_digest(
        key,
        _DIGEST_LABEL,
        session.id,
        session.user_id,
        selector,
        str(session.security_level),
        str(session.created_at),
        str(session.expires_at),
        secret=verifier,
    )


def decoy_digest(key: bytes | None, selector: str, verifier: bytes) -> bytes:
    """Do the work of :func:`verifier_digest` for a selector that finds no session,
    so that timing does not tell an unknown token from a wrong verifier."""
    return keyed_digest(key, _DIGEST_LABEL, "", "", selector, "", "", "", secret=verifier)
