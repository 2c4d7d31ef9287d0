"""HKDF sub-keys, one per purpose, derived from the master key.

No two purposes share a key: a leak of, say, the backup key does not decrypt pages.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

Purpose = Literal[
    "page",
    "field",
    "blind-index",
    "audit",
    "backup",
    "sync",
    "sync-auth",
    "export",
    "keyring",
    "recovery",
    "cache",
    "files",
    "pseudonym",
]
PURPOSES: Final[tuple[str, ...]] = get_args(Purpose)
_INFO_PREFIX: Final = b"mangostore/v1/"


def derive_subkey(key: bytes, purpose: str, *, salt: bytes) -> bytes:
    """Derive the 256-bit sub-key for ``purpose`` from ``key``.

    ``salt`` is the vault id, so two vaults with the same master key (which should
    never happen) still get unrelated sub-keys.

    Raises:
        ValueError: ``purpose`` is not one of :data:`PURPOSES` (a programming error).
    """
    if purpose not in PURPOSES:
        raise ValueError(f"unknown key purpose {purpose!r}")
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO_PREFIX + purpose.encode()
    )
    return hkdf.derive(key)
