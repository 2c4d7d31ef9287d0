"""The sync server's settings, with safe defaults."""

from __future__ import annotations

from dataclasses import dataclass

from mangostore.errors import ConfigurationError

__all__ = ["DEFAULT_DEVICE_RATE", "ServerSettings"]

#: Requests a second a device may make, by default.
DEFAULT_DEVICE_RATE = 50.0


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Limits and lifetimes of the sync server (every field has a safe default)."""

    #: Largest request body; a batch body is at most about 1 MB (``BATCH_BYTES`` of
    #: JSON before compression), a snapshot part the same.
    max_body_bytes: int = 8 * 1024 * 1024
    #: Largest escrow copy accepted (a keyring's wrapped master key is about 1 kB).
    max_escrow_bytes: int = 64 * 1024
    #: Requests a second per device, and the burst allowed.
    device_rate: float = DEFAULT_DEVICE_RATE
    device_burst: int = 500
    #: Requests a second per client address before it has a token (challenges,
    #: tokens, escrow), and the burst allowed.
    address_rate: float = 2.0
    address_burst: int = 30
    #: How long a challenge and a bearer token live.
    challenge_ttl_s: int = 120
    token_ttl_s: int = 900
    #: Most batches in one pull.
    max_page: int = 500
    #: How often expired challenges and tokens are swept.
    sweep_interval_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_escrow_bytes", "device_burst", "address_burst"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"ServerSettings.{name} must be at least 1")
        for name in ("device_rate", "address_rate", "sweep_interval_s"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"ServerSettings.{name} must be above 0")
        if self.challenge_ttl_s < 1 or self.token_ttl_s < 1 or self.max_page < 1:
            raise ConfigurationError("ServerSettings lifetimes and max_page must be at least 1")
