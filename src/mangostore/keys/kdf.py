"""Argon2id derivation of the key-encryption key, with a safety floor and a memory ceiling."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from argon2.exceptions import HashingError
from argon2.low_level import Type, hash_secret_raw

from mangostore.errors import ConfigurationError, KeyringCorruptError

# The floor is OWASP's minimum for Argon2id (19 MiB, 2 passes); anything weaker
# makes an offline guess of a stolen keyring cheap.
MIN_MEMORY_KIB = 19 * 1024
MIN_ITERATIONS = 2
# The ceiling stops a planted keyring from making open() allocate without bound.
MAX_MEMORY_KIB = 4 * 1024 * 1024
MAX_ITERATIONS = 64
MAX_PARALLELISM = 64
SALT_BYTES = 16
KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost parameters; the defaults suit unlocking on a laptop (~0.2 s)."""

    memory_kib: int = 64 * 1024
    iterations: int = 3
    parallelism: int = 4

    def check(self, *, error: type[Exception] = ConfigurationError) -> None:
        """Refuse parameters below the floor or above the ceiling.

        Raises:
            ConfigurationError (or ``error``): naming the parameter and its bounds.
        """
        bounds = (
            ("memory_kib", self.memory_kib, MIN_MEMORY_KIB, MAX_MEMORY_KIB),
            ("iterations", self.iterations, MIN_ITERATIONS, MAX_ITERATIONS),
            ("parallelism", self.parallelism, 1, MAX_PARALLELISM),
        )
        for name, value, low, high in bounds:
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise error(
                    f"Argon2id {name}={value!r} is outside the safe range {low}..{high}; "
                    "use parameters within it"
                )

    def to_json(self) -> dict[str, Any]:
        """Return the parameters as a JSON-ready mapping."""
        return {
            "alg": "argon2id",
            "memory_kib": self.memory_kib,
            "iterations": self.iterations,
            "parallelism": self.parallelism,
        }

    @classmethod
    def from_json(cls, data: Any) -> KdfParams:
        """Read parameters stored in a keyring, refusing unknown or unsafe ones.

        Raises:
            KeyringCorruptError: the record is malformed or outside the safe range.
        """
        if not isinstance(data, dict) or data.get("alg") != "argon2id":
            raise KeyringCorruptError(
                "the keyring names an unknown key-derivation function; restore the keyring "
                "from a backup"
            )
        try:
            params = cls(
                memory_kib=data["memory_kib"],
                iterations=data["iterations"],
                parallelism=data["parallelism"],
            )
        except KeyError as exc:
            raise KeyringCorruptError(
                f"the keyring's KDF record lacks {exc.args[0]!r}; restore the keyring from a backup"
            ) from None
        params.check(error=KeyringCorruptError)
        return params


def derive_kek(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    """Derive the 256-bit key-encryption key from a passphrase.

    Parameters are checked before any work is done, so hostile parameters cost nothing.
    The passphrase is normalised to Unicode NFC first: the same typed passphrase
    arrives composed from one keyboard and decomposed from another ("é" as one code
    point or as "e" plus an accent) and must unlock either way.

    Args:
        passphrase: the secret typed by the person.
        salt: the random salt stored in the keyring (at least ``SALT_BYTES`` long).
        params: the Argon2id cost parameters.

    Returns:
        ``KEY_BYTES`` bytes of key material.

    Raises:
        ConfigurationError: the passphrase is empty or not text (a lone surrogate), the
            salt too short, the parameters unsafe, or Argon2id could not run with them
            on this machine.
    """
    params.check()
    if not isinstance(passphrase, str) or not passphrase:
        raise ConfigurationError("the passphrase must be a non-empty string")
    if not isinstance(salt, bytes) or len(salt) < SALT_BYTES:
        raise ConfigurationError(f"the Argon2id salt must be at least {SALT_BYTES} bytes")
    try:
        secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            "the passphrase contains a lone surrogate (a code point from U+D800 to U+DFFF), "
            "which is not text and cannot be typed; check how it was read and try again"
        ) from None
    try:
        return hash_secret_raw(
            secret=secret,
            salt=salt,
            time_cost=params.iterations,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=KEY_BYTES,
            type=Type.ID,
        )
    except HashingError as exc:
        # Typically memory_kib more than this machine can allocate.
        raise ConfigurationError(
            f"Argon2id could not run with {params.memory_kib} KiB of memory and "
            f"parallelism {params.parallelism} ({exc}); use smaller KDF parameters"
        ) from exc
