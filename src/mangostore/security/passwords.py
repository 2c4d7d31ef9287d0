"""Argon2id password hashes: making, verifying, and telling when one needs upgrading.

Hashes are PHC strings (``$argon2id$v=19$m=65536,t=3,p=4$salt$hash``): the parameters
and the salt travel with the hash, so raising the parameters later leaves every stored
hash verifiable, and each is upgraded at its owner's next successful login.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import ARGON2_VERSION

from mangostore.errors import ConfigurationError
from mangostore.keys.kdf import MAX_ITERATIONS, MAX_MEMORY_KIB, MAX_PARALLELISM

__all__ = ["PasswordHasher", "PasswordParams"]


@dataclass(frozen=True, slots=True)
class PasswordParams:
    """Argon2id cost of a password hash.

    The defaults are RFC 9106's second recommended option (64 MiB, 3 passes,
    4 lanes), about 0.1 to 0.4 s on a laptop. Tests pass much lower values.
    """

    #: Memory per hash, in KiB (argon2's minimum is 8 per lane).
    memory_kib: int = 64 * 1024
    #: Passes over the memory.
    time_cost: int = 3
    #: Lanes computed in parallel.
    parallelism: int = 4
    #: Bytes of the salt (random for every hash).
    salt_bytes: int = 16
    #: Bytes of the hash.
    hash_bytes: int = 32

    def __post_init__(self) -> None:
        for name in ("memory_kib", "time_cost", "parallelism", "salt_bytes", "hash_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(
                    f"PasswordParams.{name} must be a positive integer, got {value!r}"
                )
        if self.memory_kib < 8 * self.parallelism:
            raise ConfigurationError("PasswordParams.memory_kib must be at least 8 per lane")
        if self.salt_bytes < 16 or self.hash_bytes < 16:
            raise ConfigurationError("PasswordParams.salt_bytes and hash_bytes must be at least 16")


def _normalise(password: str) -> str:
    # The same typed password must match from every keyboard and input method.
    return unicodedata.normalize("NFC", password)


class PasswordHasher:
    """Hashes and verifies passwords with Argon2id at the configured parameters."""

    def __init__(self, params: PasswordParams) -> None:
        self.params = params
        self._hasher = argon2.PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=params.hash_bytes,
            salt_len=params.salt_bytes,
            type=argon2.Type.ID,
        )
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        """Return the PHC string of ``password`` under a fresh random salt."""
        return self._hasher.hash(_normalise(password))

    def verify(self, stored: str, password: str) -> bool:
        """Tell whether ``password`` matches ``stored``, with the parameters ``stored`` names.

        A malformed or non-Argon2id ``stored`` hash never matches.
        """
        if not stored.startswith("$argon2id$"):
            return False
        try:
            found = argon2.extract_parameters(stored)
            # The ceiling of the keyring's KDF: a planted hash must not make a login
            # allocate gigabytes or run for minutes.
            if (
                found.memory_cost > MAX_MEMORY_KIB
                or found.time_cost > MAX_ITERATIONS
                or found.parallelism > MAX_PARALLELISM
            ):
                return False
            return self._hasher.verify(stored, _normalise(password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def prepare(self) -> None:
        """Make the dummy hash :meth:`burn` verifies against, if not made yet.

        Called before the first verification of any login, so that the one-off cost of
        making it never falls on unknown user names only.
        """
        if self._dummy is None:
            self._dummy = self.hash(secrets.token_urlsafe(24))

    def burn(self, password: str) -> None:
        """Do the work of one verification and throw the answer away.

        Used for unknown users, so that a login takes as long whether or not the user
        name exists. The dummy hash is made once, at the current parameters.
        """
        self.prepare()
        assert self._dummy is not None
        self.verify(self._dummy, password)

    def needs_upgrade(self, stored: str) -> bool:
        """Tell whether ``stored`` is weaker than the current parameters.

        Weaker means: not Argon2id, an older Argon2 version, or less memory, fewer
        passes, a shorter salt or a shorter hash. Stronger stored parameters are kept
        (lowering the configuration does not weaken existing hashes); a different
        number of lanes alone is not a reason to rehash.
        """
        try:
            found = argon2.extract_parameters(stored)
        except InvalidHashError:
            return True
        current = self.params
        return (
            found.type is not argon2.Type.ID
            or found.version < ARGON2_VERSION
            or found.memory_cost < current.memory_kib
            or found.time_cost < current.time_cost
            or found.salt_len < current.salt_bytes
            or found.hash_len < current.hash_bytes
        )
