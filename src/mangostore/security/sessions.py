"""Login sessions (``db.sessions``): issue, validate, touch, revoke, step up.

A session token is ``selector.verifier``: 16 random bytes that find the session and
32 random bytes that prove the caller holds it (384 bits from :mod:`secrets`,
unpadded URL-safe base64, 66 characters). ``user_sessions.session_token`` stores the
selector; ``session_verifiers`` stores only a keyed digest of the verifier, bound to
the session's id, user, level and lifetime (see :mod:`mangostore.security.digests`),
and compared in constant time. A copy of the database therefore holds nothing that
can be presented as a token, and moving a verifier digest to another user's session
does not make it valid there.

Lifetimes depend on ``security_level`` (:class:`SessionPolicy`): a session ends when
it has been idle for the level's idle timeout, or at its absolute expiry
(``user_sessions.expires_at``), whichever comes first. See docs/authentication.md.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidValueError,
    SessionExpired,
    SessionRevoked,
)
from mangostore.records import User, UserSession
from mangostore.repos.base import new_id
from mangostore.security.conditions import SECURITY_LEVELS
from mangostore.security.digests import digest_key, keyed_digest
from mangostore.security.throttle import EventThrottle
from mangostore.sql import quote_identifier

if TYPE_CHECKING:
    from mangostore.db import Database

__all__ = [
    "TOKEN_CHARS",
    "IssuedSession",
    "Lifetime",
    "SecurityLevel",
    "SessionInfo",
    "SessionPolicy",
    "SessionService",
]

SecurityLevel = Literal["low", "standard", "high"]

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS

SELECTOR_BYTES: Final = 16
VERIFIER_BYTES: Final = 32
_SELECTOR_CHARS: Final = 22
_VERIFIER_CHARS: Final = 43
#: Length of a session token: selector, ".", verifier.
TOKEN_CHARS: Final = _SELECTOR_CHARS + 1 + _VERIFIER_CHARS

#: ``revoked_reason`` of a session that ended by timing out (it was not revoked).
IDLE_TIMEOUT: Final = "idle_timeout"
ABSOLUTE_TIMEOUT: Final = "absolute_timeout"
_EXPIRY_REASONS: Final = frozenset({IDLE_TIMEOUT, ABSOLUTE_TIMEOUT})
_RANK: Final = {level: rank for rank, level in enumerate(SECURITY_LEVELS)}
_DIGEST_LABEL: Final = "mangostore/session-verifier/v1"
_COMPONENT: Final = "sessions"
_MAX_REASON_CHARS: Final = 200
_MAX_IP_CHARS: Final = 128
_MAX_USER_AGENT_CHARS: Final = 1024

MALFORMED: Final = "the session token is malformed; log in again"
INVALID: Final = "the session token is not valid; log in again"


@dataclass(frozen=True, slots=True)
class Lifetime:
    """How long a session of one security level may live, in milliseconds."""

    #: The session ends once this long has passed since its last recorded activity.
    idle_ms: int
    #: The session ends this long after it was issued, however active.
    absolute_ms: int


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """Session lifetimes per security level, and how often activity is written.

    Defaults: ``low`` 24 h idle / 30 days absolute, ``standard`` 30 min / 12 h,
    ``high`` 5 min / 1 h.
    """

    low: Lifetime = Lifetime(idle_ms=24 * HOUR_MS, absolute_ms=30 * DAY_MS)
    standard: Lifetime = Lifetime(idle_ms=30 * MINUTE_MS, absolute_ms=12 * HOUR_MS)
    high: Lifetime = Lifetime(idle_ms=5 * MINUTE_MS, absolute_ms=HOUR_MS)
    #: ``last_activity`` is written at most this often per session (a write per
    #: request would make every validation a write transaction); the idle timeout
    #: counts from the last *written* activity, so a session may end up to this much
    #: earlier than its last use plus the idle timeout.
    activity_write_interval_ms: int = MINUTE_MS
    #: How far the clock may be behind a session's creation before the session is
    #: refused (clocks are corrected backwards; beyond this, something is wrong).
    max_clock_skew_ms: int = 5 * MINUTE_MS
    #: Repeats of the same noisy audit event (unknown tokens, replays of one revoked
    #: session) within this interval are counted, not written one by one.
    audit_repeat_interval_ms: int = MINUTE_MS

    def __post_init__(self) -> None:
        for level in SECURITY_LEVELS:
            life = getattr(self, level)
            if not isinstance(life, Lifetime) or not 0 < life.idle_ms <= life.absolute_ms:
                raise ConfigurationError(
                    f"SessionPolicy.{level} needs 0 < idle_ms <= absolute_ms (milliseconds)"
                )
        shortest = min(getattr(self, level).idle_ms for level in SECURITY_LEVELS)
        if not 0 <= self.activity_write_interval_ms < shortest:
            raise ConfigurationError(
                "SessionPolicy.activity_write_interval_ms must be below the shortest idle timeout"
            )
        for name in ("max_clock_skew_ms", "audit_repeat_interval_ms"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"SessionPolicy.{name} must not be negative")

    def lifetime(self, level: str) -> Lifetime:
        """Return the lifetime of ``level`` (``low``, ``standard`` or ``high``)."""
        life: Lifetime = getattr(self, check_level(level))
        return life


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A new session and its token. The token is shown to the caller once, never stored."""

    token: str = field(repr=False)
    session: UserSession


class SessionInfo(NamedTuple):
    """What :meth:`SessionService.validate` returns: the user and their session."""

    user: User
    session: UserSession


def check_level(level: Any) -> str:
    """Return ``level`` if it is a security level.

    Raises:
        InvalidValueError: it is not ``low``, ``standard`` or ``high``.
    """
    if level not in _RANK:
        raise InvalidValueError(
            f"security_level must be one of {', '.join(SECURITY_LEVELS)}; got {level!r}",
            field="security_level",
        )
    return str(level)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# Unpadded URL-safe base64 of 16 and 32 bytes. The last character carries spare bits
# that must be zero (the decoder would ignore them): only the one canonical spelling
# of each token is accepted.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]\.[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]\Z")


def parse_token(token: Any) -> tuple[str, bytes]:
    """Split a token into its selector (as stored) and its verifier bytes.

    Raises:
        AuthenticationError: the token does not have the shape of a session token.
    """
    if type(token) is not str or len(token) != TOKEN_CHARS or not _TOKEN.match(token):
        raise AuthenticationError(MALFORMED)
    return token[:_SELECTOR_CHARS], base64.urlsafe_b64decode(token[_SELECTOR_CHARS + 1 :] + "=")


class _Activity:
    """How a validation records activity."""

    NONE: Final = 0
    THROTTLED: Final = 1
    FORCED: Final = 2


class SessionService:
    """``db.sessions``: login sessions with selector/verifier tokens.

    Thread-safe. Every state change is one transaction that also appends its audit
    event; :meth:`validate` writes only when it records activity or finds the
    session expired.
    """

    def __init__(self, db: Database, *, policy: SessionPolicy | None = None) -> None:
        self._db = db
        self.policy = policy or SessionPolicy()
        self._noise = EventThrottle(self.policy.audit_repeat_interval_ms)
        self._repo = db.user_sessions
        self._users = db.users
        sessions, users = self._repo.spec, self._users.spec
        self._session_columns = len(sessions.names)
        # One statement finds the session, its verifier digest and its user.
        columns = [f"s.{quote_identifier(n)}" for n in sessions.names]
        columns += ["v.verifier_hash"] + [f"u.{quote_identifier(n)}" for n in users.names]
        self._sql_find = (
            f"SELECT {', '.join(columns)} FROM {sessions.quoted_table} AS s "
            "JOIN session_verifiers AS v ON v.session_id = s.id "
            f"JOIN {users.quoted_table} AS u ON u.id = s.user_id WHERE s.session_token = ?"
        )

    def __repr__(self) -> str:
        return f"<SessionService {self._db.path!r}>"

    def configure(self, policy: SessionPolicy) -> None:
        """Replace the policy (lifetimes apply to existing sessions from now on)."""
        if not isinstance(policy, SessionPolicy):
            raise ConfigurationError("configure() takes a SessionPolicy")
        self.policy = policy
        self._noise = EventThrottle(policy.audit_repeat_interval_ms)

    # -- issuing --------------------------------------------------------------------------

    def issue(
        self,
        user_id: str,
        *,
        security_level: str = "standard",
        device_info: Mapping[str, Any] | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
    ) -> IssuedSession:
        """Start a session for a user who has already been authenticated.

        :meth:`mangostore.security.auth.AuthService.login` calls this after checking a
        password; call it directly only after authenticating the person some other
        way (a voice print, a second factor). Joins the caller's transaction, if any.

        Returns:
            The token (give it to the client; it is not stored) and the session.

        Raises:
            InvalidValueError: a bad security level, IP address or user agent.
            ForeignKeyError: no such user.
        """
        with self._db.store.transaction() as conn:
            issued = self._issue(
                conn,
                user_id,
                security_level=security_level,
                device_info=device_info,
                ip_address=ip_address,
                user_agent=user_agent,
            )
            self._audit(
                "info",
                issued.session.user_id,
                {"action": "session_issued", "session_id": issued.session.id},
                issued.session,
            )
        return issued

    def _issue(
        self,
        conn: Connection,
        user_id: str,
        *,
        security_level: str,
        device_info: Mapping[str, Any] | None,
        ip_address: str | None,
        user_agent: str | None,
    ) -> IssuedSession:
        """Insert a session and its verifier digest in the open transaction ``conn``."""
        level = check_level(security_level)
        _check_text("ip_address", ip_address, _MAX_IP_CHARS)
        _check_text("user_agent", user_agent, _MAX_USER_AGENT_CHARS)
        selector = _b64(secrets.token_bytes(SELECTOR_BYTES))
        verifier = secrets.token_bytes(VERIFIER_BYTES)
        now = self._db.clock.now_ms()
        session = self._repo.create(
            id=new_id(),
            user_id=user_id,
            session_token=selector,
            device_info=None if device_info is None else dict(device_info),
            ip_address=ip_address,
            user_agent=user_agent,
            created_at=now,
            last_activity=now,
            expires_at=now + self.policy.lifetime(level).absolute_ms,
            is_active=True,
            security_level=level,
        )
        digest = self._digest(digest_key(self._db), session, selector, verifier)
        with driver_errors("user_sessions"):
            conn.execute(
                "INSERT INTO session_verifiers (session_id, verifier_hash) VALUES (?, ?)",
                (session.id, digest),
            )
        return IssuedSession(token=f"{selector}.{_b64(verifier)}", session=session)

    @staticmethod
    def _digest(key: bytes | None, session: UserSession, selector: str, verifier: bytes) -> bytes:
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

    # -- validating -----------------------------------------------------------------------

    def validate(self, token: str) -> SessionInfo:
        """Return the user and session a token belongs to, recording activity.

        ``last_activity`` is written at most once per
        ``SessionPolicy.activity_write_interval_ms``. Can run inside a transaction.

        Raises:
            AuthenticationError: the token is malformed, unknown, or its verifier is
                wrong (one message for the last two).
            SessionRevoked: the session was revoked (logout, password change, step-up).
            SessionExpired: it was idle too long or passed its absolute expiry, or the
                clock is behind the session's start by more than the allowed skew.
        """
        return self._validate(token, _Activity.THROTTLED)

    def touch(self, token: str) -> SessionInfo:
        """Validate like :meth:`validate`, and write ``last_activity`` now, unthrottled.

        Raises:
            AuthenticationError, SessionRevoked, SessionExpired: as :meth:`validate`.
        """
        return self._validate(token, _Activity.FORCED)

    def peek(self, token: str) -> SessionInfo:
        """Validate like :meth:`validate` without recording activity.

        Raises:
            AuthenticationError, SessionRevoked, SessionExpired: as :meth:`validate`.
        """
        return self._validate(token, _Activity.NONE)

    def _validate(self, token: str, activity: int) -> SessionInfo:
        db = self._db
        db.store.check_open()
        session, user = self._authenticate(token)
        now = db.clock.now_ms()
        last = self._check_live(session, now)
        if activity == _Activity.FORCED or (
            activity == _Activity.THROTTLED and now - last >= self.policy.activity_write_interval_ms
        ):
            session = self._record_activity(session, now)
        return SessionInfo(user, session)

    def _authenticate(self, token: str) -> tuple[UserSession, User]:
        """Find the session of ``token`` and its user, and check the verifier; no lifetimes."""
        selector, verifier = parse_token(token)
        key = digest_key(self._db)
        with self._db.store.reading() as conn, driver_errors("user_sessions"):
            row = conn.execute(self._sql_find, (selector,)).fetchone()
        if row is None:
            # The same work as a wrong verifier, so timing does not tell them apart.
            keyed_digest(key, _DIGEST_LABEL, "", "", selector, "", "", "", secret=verifier)
            self._audit_noise(("unknown",), None, "unknown_token", 0.3)
            raise AuthenticationError(INVALID)
        values = tuple(row)
        split = self._session_columns
        session = self._repo.record_from_row(values[:split])
        if not hmac.compare_digest(
            self._digest(key, session, selector, verifier), bytes(values[split])
        ):
            self._audit_noise(("verifier", session.id), session.user_id, "wrong_verifier", 0.8)
            raise AuthenticationError(INVALID)
        return session, self._users.record_from_row(values[split + 1 :])

    def _check_live(self, session: UserSession, now: int) -> int:
        """Raise unless the session is live at ``now``; return its last recorded activity."""
        if session.revoked_at is not None or (
            session.is_active is not True and session.revoked_reason not in _EXPIRY_REASONS
        ):
            self._audit_noise(("revoked", session.id), session.user_id, "revoked_token", 0.7)
            raise SessionRevoked("this session was revoked; log in again")
        if session.is_active is not True:
            raise SessionExpired("this session has expired; log in again")
        policy = self.policy
        created = session.created_at
        if now + policy.max_clock_skew_ms < created:
            self._audit_noise(("clock", session.id), session.user_id, "clock_behind", 0.5)
            raise SessionExpired(
                "the clock is behind the time this session started; check the system "
                "clock and log in again"
            )
        life = policy.lifetime(session.security_level or "standard")
        last = max(created, session.last_activity or created)
        # A clock set back (within the skew) neither revives nor lengthens a session.
        effective = max(now, last)
        expires_at = session.expires_at
        if expires_at is None:
            expires_at = created + life.absolute_ms
        if effective >= expires_at:
            self._expire(session, ABSOLUTE_TIMEOUT)
        if effective - last >= life.idle_ms:
            self._expire(session, IDLE_TIMEOUT)
        return last

    def _expire(self, session: UserSession, reason: str) -> None:
        """Mark the session ended (so a clock set back cannot revive it) and raise."""
        with self._db.store.transaction() as conn:
            with driver_errors("user_sessions"):
                changed = conn.execute(
                    "UPDATE user_sessions SET is_active = 0, revoked_reason = ? "
                    "WHERE id = ? AND is_active = 1 AND revoked_at IS NULL",
                    (reason, session.id),
                ).rowcount
            if changed:
                self._audit(
                    "info",
                    session.user_id,
                    {"action": "session_expired", "session_id": session.id, "reason": reason},
                )
        what = "was idle too long" if reason == IDLE_TIMEOUT else "reached its time limit"
        raise SessionExpired(f"this session {what}; log in again")

    def _record_activity(self, session: UserSession, now: int) -> UserSession:
        with self._db.store.transaction() as conn, driver_errors("user_sessions"):
            conn.execute(
                "UPDATE user_sessions SET last_activity = ? WHERE id = ? AND is_active = 1 "
                "AND revoked_at IS NULL AND coalesce(last_activity, 0) < ?",
                (now, session.id, now),
            )
        if now > (session.last_activity or 0):
            return dataclasses.replace(session, last_activity=now)
        return session

    # -- ending ---------------------------------------------------------------------------

    def revoke(self, session_id: str, *, reason: str = "revoked") -> bool:
        """Revoke one session; return whether it was live (not revoked already).

        Joins the caller's transaction, if any.

        Raises:
            InvalidValueError: ``reason`` is empty, too long, or a timeout reason.
        """
        _check_reason(reason)
        now = self._db.clock.now_ms()
        with self._db.store.transaction() as conn:
            with driver_errors("user_sessions"):
                row = conn.execute(
                    "UPDATE user_sessions SET is_active = 0, revoked_at = ?, revoked_reason = ? "
                    "WHERE id = ? AND revoked_at IS NULL RETURNING user_id",
                    (now, reason, session_id),
                ).fetchone()
            if row is None:
                return False
            self._audit(
                "info",
                str(row[0]),
                {"action": "session_revoked", "session_id": session_id, "reason": reason},
            )
        return True

    def revoke_all(
        self, user_id: str, *, reason: str = "revoked", except_session_id: str | None = None
    ) -> int:
        """Revoke every live session of a user (but ``except_session_id``); return how many.

        Joins the caller's transaction, if any.

        Raises:
            InvalidValueError: as :meth:`revoke`.
        """
        _check_reason(reason)
        now = self._db.clock.now_ms()
        with self._db.store.transaction() as conn:
            count = self._revoke_all(conn, user_id, reason, now, except_session_id)
            self._audit(
                "info",
                user_id,
                {"action": "sessions_revoked", "reason": reason, "count": count},
            )
        return count

    @staticmethod
    def _revoke_all(conn: Connection, user_id: str, reason: str, now: int, keep: str | None) -> int:
        with driver_errors("user_sessions"):
            return int(
                conn.execute(
                    "UPDATE user_sessions SET is_active = 0, revoked_at = ?, revoked_reason = ? "
                    "WHERE user_id = ? AND revoked_at IS NULL AND is_active = 1 AND id IS NOT ?",
                    (now, reason, user_id, keep),
                ).rowcount
            )

    def step_up(self, token: str, security_level: str = "high") -> IssuedSession:
        """Replace a live session by a new one at ``security_level``; the old token is revoked.

        Call this only after re-authenticating the person (``db.auth.step_up`` does it
        with their password). The new session keeps the device details and gets the
        lifetime of its new level. Stepping to the same level renews the token.

        Raises:
            AuthenticationError, SessionRevoked, SessionExpired: as :meth:`validate`.
            InvalidValueError: ``security_level`` is lower than the session's.
        """
        session = self.peek(token).session
        current = session.security_level or "standard"
        if _RANK[check_level(security_level)] < _RANK[current]:
            raise InvalidValueError(
                f"cannot step a {current} session down to {security_level}; "
                "issue a new session instead",
                field="security_level",
            )
        with self._db.store.transaction() as conn:
            issued = self._replace(conn, session, security_level)
            self._audit(
                "info",
                session.user_id,
                {
                    "action": "session_stepped_up",
                    "session_id": issued.session.id,
                    "replaces": session.id,
                    "security_level": security_level,
                },
                issued.session,
            )
        return issued

    def _replace(self, conn: Connection, session: UserSession, level: str) -> IssuedSession:
        """Revoke ``session`` and issue its successor at ``level`` in transaction ``conn``."""
        now = self._db.clock.now_ms()
        with driver_errors("user_sessions"):
            revoked = conn.execute(
                "UPDATE user_sessions SET is_active = 0, revoked_at = ?, revoked_reason = ? "
                "WHERE id = ? AND revoked_at IS NULL AND is_active = 1",
                (now, "step_up", session.id),
            ).rowcount
        if not revoked:
            raise SessionRevoked("this session was revoked; log in again")
        return self._issue(
            conn,
            session.user_id,
            security_level=level,
            device_info=session.device_info,
            ip_address=session.ip_address,
            user_agent=session.user_agent,
        )

    # -- listing and housekeeping -----------------------------------------------------------

    def active(self, user_id: str) -> list[UserSession]:
        """Return the user's live sessions (not revoked, not timed out), newest first."""
        now = self._db.clock.now_ms()
        found = self._repo.list(user_id=user_id, is_active=True, revoked_at=None)
        live = []
        for session in found:
            life = self.policy.lifetime(session.security_level or "standard")
            last = max(session.created_at, session.last_activity or session.created_at)
            effective = max(now, last)
            expires_at = session.expires_at or session.created_at + life.absolute_ms
            if effective < expires_at and effective - last < life.idle_ms:
                live.append(session)
        live.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        return live

    def sweep(self, *, keep_ms: int = 30 * DAY_MS) -> int:
        """Delete sessions that ended more than ``keep_ms`` ago; return how many.

        A session has ended when it was revoked, timed out, or passed its absolute
        expiry. Recently ended ones are kept so that a replayed token is still
        recognised (and reported) as revoked rather than unknown.
        """
        if not isinstance(keep_ms, int) or isinstance(keep_ms, bool) or keep_ms < 0:
            raise InvalidValueError("keep_ms must be a non-negative integer", field="keep_ms")
        cutoff = self._db.clock.now_ms() - keep_ms
        with self._db.store.transaction() as conn, driver_errors("user_sessions"):
            return int(
                conn.execute(
                    "DELETE FROM user_sessions WHERE (revoked_at IS NOT NULL AND revoked_at < ?) "
                    "OR (expires_at IS NOT NULL AND expires_at < ?) "
                    "OR (is_active IS NOT 1 AND coalesce(last_activity, created_at) < ?)",
                    (cutoff, cutoff, cutoff),
                ).rowcount
            )

    # -- audit ----------------------------------------------------------------------------

    def _audit(
        self,
        severity: str,
        user_id: str | None,
        data: dict[str, Any],
        session: UserSession | None = None,
        risk: float = 0.0,
    ) -> None:
        client = None
        if session is not None:
            client = {
                k: v
                for k, v in (("ip_address", session.ip_address), ("user_agent", session.user_agent))
                if v is not None
            } or None
        self._db.audit.append(
            "auth",
            severity,
            _COMPONENT,
            user_id=user_id,
            event_data=data,
            client_info=client,
            risk_score=risk,
        )

    def _audit_noise(
        self, key: tuple[str, ...], user_id: str | None, outcome: str, risk: float
    ) -> None:
        """Record a refused token, aggregating repeats (see :mod:`.throttle`)."""
        held = self._noise.admit(key, self._db.clock.now_ms())
        if held is None:
            return
        data: dict[str, Any] = {"action": "validate", "outcome": outcome}
        if held:
            data["suppressed"] = held
        if len(key) > 1:
            data["session_id"] = key[1]
        self._audit("warning", user_id, data, risk=risk)


def _check_reason(reason: Any) -> None:
    if not isinstance(reason, str) or not 0 < len(reason) <= _MAX_REASON_CHARS:
        raise InvalidValueError(
            f"reason must be a string of 1 to {_MAX_REASON_CHARS} characters", field="reason"
        )
    if reason in _EXPIRY_REASONS:
        raise InvalidValueError(
            f"{reason!r} is reserved for sessions that timed out", field="reason"
        )


def _check_text(name: str, value: Any, limit: int) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise InvalidValueError(
            f"{name} must be a string of at most {limit} characters", field=name
        )
