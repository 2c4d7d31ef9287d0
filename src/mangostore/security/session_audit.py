"""Authentication events in the audit log, as ``db.auth`` and ``db.sessions`` write them.

Each is an ``auth`` event of its component (``auth`` or ``sessions``), with the
client's IP address and user agent when they are known: :class:`AuthEvents`, used by
both services. Every state change of a session (issue, step-up, revocation, expiry)
is one event. Refused tokens (unknown, wrong verifier, replayed after revocation, a
clock behind the session) can be produced in a loop by a buggy or hostile caller, so
repeats are counted into the next written event instead
(:mod:`mangostore.security.throttle`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from mangostore.records import UserSession
from mangostore.security.throttle import EventThrottle

if TYPE_CHECKING:
    from mangostore.security.service_ports import AuditedDatabase

__all__ = ["AuthEvents", "SessionEvents", "client_info"]

_COMPONENT: Final = "sessions"


def client_info(ip_address: str | None, user_agent: str | None) -> dict[str, str] | None:
    """Return an event's ``client_info``: the IP address and user agent that are known,
    or ``None`` when neither is."""
    client = {
        k: v for k, v in (("ip_address", ip_address), ("user_agent", user_agent)) if v is not None
    }
    return client or None


class AuthEvents:
    """Appends the ``auth`` events of one component to ``db.audit``. Thread-safe.

    Args:
        db: the database whose audit log is written.
        component: the events' ``source_component`` (``"auth"``, ``"sessions"``).
    """

    def __init__(self, db: AuditedDatabase, component: str) -> None:
        self._db = db
        self._component = component

    def record(
        self,
        severity: str,
        user_id: str | None,
        data: dict[str, Any],
        client: dict[str, str] | None = None,
        *,
        risk: float = 0.0,
    ) -> None:
        """Append one event (joining the caller's transaction, if any).

        Args:
            severity: ``info``, ``warning``, ``error`` or ``critical``.
            user_id: the event's subject.
            data: its ``event_data``; never a password, token or hash.
            client: its ``client_info`` (see :func:`client_info`).
            risk: its risk score, from 0 to 1.
        """
        self._db.audit.append(
            "auth",
            severity,
            self._component,
            user_id=user_id,
            event_data=data,
            client_info=client,
            risk_score=risk,
        )


class SessionEvents:
    """Appends the session service's events to ``db.audit``. Thread-safe."""

    def __init__(self, db: AuditedDatabase, repeat_interval_ms: int) -> None:
        self._db = db
        self._events = AuthEvents(db, _COMPONENT)
        self._noise = EventThrottle(repeat_interval_ms)

    def record(
        self,
        severity: str,
        user_id: str | None,
        data: dict[str, Any],
        session: UserSession | None = None,
        risk: float = 0.0,
    ) -> None:
        """Append one event (joining the caller's transaction, if any).

        Args:
            severity: ``info``, ``warning``, ``error`` or ``critical``.
            user_id: the event's subject.
            data: its ``event_data``.
            session: whose IP address and user agent become its ``client_info``.
            risk: its risk score.
        """
        client = None
        if session is not None:
            client = client_info(session.ip_address, session.user_agent)
        self._events.record(severity, user_id, data, client, risk=risk)

    def refused(self, key: tuple[str, ...], user_id: str | None, outcome: str, risk: float) -> None:
        """Record a refused token, unless it repeats one written within the interval.

        Args:
            key: the kind of refusal; its second item, if any, is the session's id.
            user_id: the event's subject, if known.
            outcome: why the token was refused.
            risk: the event's risk score.
        """
        held = self._noise.admit(key, self._db.clock.now_ms())
        if held is None:
            return
        data: dict[str, Any] = {"action": "validate", "outcome": outcome}
        if held:
            data["suppressed"] = held
        if len(key) > 1:
            data["session_id"] = key[1]
        self.record("warning", user_id, data, risk=risk)
