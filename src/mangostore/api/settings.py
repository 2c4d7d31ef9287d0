"""The local HTTP API's limits, with safe defaults."""

from __future__ import annotations

from dataclasses import dataclass

from mangostore.errors import ConfigurationError

__all__ = ["ApiSettings"]


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Limits of the local HTTP API (every field has a safe default).

    Rates are token buckets kept in the serving process: ``session_rate`` requests a
    second on average per session, bursts of ``session_burst``.
    """

    #: Largest request body, in bytes: a JSON value of ``Settings.json_max_bytes``
    #: (1 MiB) with room for the request around it.
    max_body_bytes: int = 2 * 1024 * 1024
    #: Requests a second per session, and the burst allowed.
    session_rate: float = 20.0
    session_burst: int = 200
    #: Login attempts a second per client address, and the burst allowed (the
    #: library's own lock-out still applies per user name).
    login_rate: float = 0.5
    login_burst: int = 10
    #: Items in a page when the request does not say, and the most it may ask for.
    page_size: int = 50
    max_page_size: int = 500
    #: How often the notification stream looks for new notifications, in ms, and the
    #: longest a stream stays open, in seconds (the client reconnects with
    #: ``Last-Event-ID``).
    stream_poll_ms: int = 1_000
    stream_max_s: int = 300
    #: The ``Host`` headers a request may carry (``localhost:8766``), or ``None`` for
    #: any. ``mangostore serve`` on loopback allows only loopback names, so a web
    #: page whose own name was made to resolve to 127.0.0.1 (DNS rebinding) is refused.
    allowed_hosts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "session_burst", "login_burst", "page_size"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"ApiSettings.{name} must be at least 1")
        for name in ("session_rate", "login_rate"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"ApiSettings.{name} must be above 0")
        if self.max_page_size < self.page_size:
            raise ConfigurationError("ApiSettings.max_page_size must be at least page_size")
        if self.stream_poll_ms < 10 or self.stream_max_s < 1:
            raise ConfigurationError(
                "ApiSettings.stream_poll_ms must be at least 10 and stream_max_s at least 1"
            )
