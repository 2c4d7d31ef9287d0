"""Login sessions (``db.sessions``): issue, validate, touch, revoke, step up.

A session token is ``selector.verifier``: the selector finds the session, the verifier
proves the caller holds it, and only a keyed digest of the verifier is stored
(:mod:`mangostore.security.session_tokens`). A copy of the database therefore holds
nothing that can be presented as a token, and moving a verifier digest to another
user's session does not make it valid there.

Lifetimes depend on ``security_level`` (:class:`SessionPolicy`, in
:mod:`mangostore.security.session_policy`): a session ends when it has been idle for
the level's idle timeout, or at its absolute expiry (``user_sessions.expires_at``),
whichever comes first. See docs/authentication.md.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from mangostore.clock import Duration, Instant, duration_ms, epoch_ms
from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import (
    AuthenticationError,
    ConfigurationError,
    DatabaseError,
    InvalidValueError,
    SessionExpired,
    SessionRevoked,
)
from mangostore.ids import new_id
from mangostore.records import User, UserSession
from mangostore.security.digests import digest_key
from mangostore.security.session_audit import SessionEvents
from mangostore.security.session_policy import (
    ABSOLUTE_TIMEOUT,
    DAY_MS,
    EXPIRY_REASONS,
    IDLE_TIMEOUT,
    LEVEL_RANK,
    Lifetime,
    SecurityLevel,
    SessionPolicy,
    check_level,
    check_reason,
)
from mangostore.security.session_tokens import (
    INVALID,
    MALFORMED,
    TOKEN_CHARS,
    decoy_digest,
    format_token,
    new_token,
    parse_token,
    verifier_digest,
)
from mangostore.sql import quote_identifier

if TYPE_CHECKING:
    from mangostore.security.service_ports import SessionsDatabase

# The policy and token names are re-exported: they were always importable from here.
__all__ = [
    "ABSOLUTE_TIMEOUT",
    "IDLE_TIMEOUT",
    "INVALID",
    "MALFORMED",
    "TOKEN_CHARS",
    "IssuedSession",
    "Lifetime",
    "SecurityLevel",
    "SessionInfo",
    "SessionPolicy",
    "SessionService",
    "check_level",
    "parse_token",
]

_MAX_IP_CHARS: Final = 128
_MAX_USER_AGENT_CHARS: Final = 1024


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A new session and its token. The token is shown to the caller once, never stored."""

    token: str = field(repr=False)
    session: UserSession


class SessionInfo(NamedTuple):
    """What :meth:`SessionService.validate` returns: the user and their session."""

    user: User
    session: UserSession


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

    def __init__(self, db: SessionsDatabase, *, policy: SessionPolicy | None = None) -> None:
        self._db = db
        self.policy = policy or SessionPolicy()
        self._events = SessionEvents(db, self.policy.audit_repeat_interval_ms)
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
        self._events = SessionEvents(self._db, policy.audit_repeat_interval_ms)

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
            issued = self.issue_in(
                conn,
                user_id,
                security_level=security_level,
                device_info=device_info,
                ip_address=ip_address,
                user_agent=user_agent,
            )
            self._events.record(
                "info",
                issued.session.user_id,
                {"action": "session_issued", "session_id": issued.session.id},
                issued.session,
            )
        return issued

    def issue_in(
        self,
        conn: Connection,
        user_id: str,
        *,
        security_level: str,
        device_info: Mapping[str, Any] | None,
        ip_address: str | None,
        user_agent: str | None,
    ) -> IssuedSession:
        """Insert a session and its verifier digest inside the caller's write transaction.

        What :meth:`issue` does, but without its audit event: for a caller that writes
        its own event in the same transaction (``db.auth.login`` records the login).
        Call it only after authenticating the person.

        Args:
            conn: the connection of the caller's ``db.store.transaction()``.
            user_id, security_level, device_info, ip_address, user_agent: as :meth:`issue`.

        Returns:
            The token (shown once, never stored) and the session.

        Raises:
            DatabaseError: the calling thread is not inside a write transaction.
            InvalidValueError: a bad security level, IP address or user agent.
            ForeignKeyError: no such user.
        """
        self._require_transaction("issue_in")
        level = check_level(security_level)
        _check_text("ip_address", ip_address, _MAX_IP_CHARS)
        _check_text("user_agent", user_agent, _MAX_USER_AGENT_CHARS)
        selector, verifier = new_token()
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
        digest = verifier_digest(digest_key(self._db), session, selector, verifier)
        with driver_errors("user_sessions"):
            conn.execute(
                "INSERT INTO session_verifiers (session_id, verifier_hash) VALUES (?, ?)",
                (session.id, digest),
            )
        return IssuedSession(token=format_token(selector, verifier), session=session)

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
        session, user = self.verify_token(token)
        now = db.clock.now_ms()
        last = self._check_live(session, now)
        if activity == _Activity.FORCED or (
            activity == _Activity.THROTTLED and now - last >= self.policy.activity_write_interval_ms
        ):
            session = self._record_activity(session, now)
        return SessionInfo(user, session)

    def verify_token(self, token: str) -> tuple[UserSession, User]:
        """Find the session of ``token`` and its user, and check the verifier, but not
        whether the session is still live.

        For ending a session in whatever state it is (``db.auth.logout``); to use a
        session, call :meth:`validate` or :meth:`peek`, which check its lifetime too.
        Unknown tokens and wrong verifiers are audited as :meth:`validate` audits them.

        Returns:
            The session (possibly revoked or expired) and its user.

        Raises:
            AuthenticationError: the token is malformed, unknown, or its verifier is
                wrong (one message for the last two).
        """
        selector, verifier = parse_token(token)
        key = digest_key(self._db)
        with self._db.store.reading() as conn, driver_errors("user_sessions"):
            row = conn.execute(self._sql_find, (selector,)).fetchone()
        if row is None:
            decoy_digest(key, selector, verifier)  # the work of a wrong verifier: same timing
            self._events.refused(("unknown",), None, "unknown_token", 0.3)
            raise AuthenticationError(INVALID)
        values = tuple(row)
        split = self._session_columns
        session = self._repo.record_from_row(values[:split])
        if not hmac.compare_digest(
            verifier_digest(key, session, selector, verifier), bytes(values[split])
        ):
            self._events.refused(("verifier", session.id), session.user_id, "wrong_verifier", 0.8)
            raise AuthenticationError(INVALID)
        return session, self._users.record_from_row(values[split + 1 :])

    def _check_live(self, session: UserSession, now: int) -> int:
        """Raise unless the session is live at ``now``; return its last recorded activity."""
        if session.revoked_at is not None or (
            session.is_active is not True and session.revoked_reason not in EXPIRY_REASONS
        ):
            self._events.refused(("revoked", session.id), session.user_id, "revoked_token", 0.7)
            raise SessionRevoked("this session was revoked; log in again")
        if session.is_active is not True:
            raise SessionExpired("this session has expired; log in again")
        policy = self.policy
        created = session.created_at
        if now + policy.max_clock_skew_ms < created:
            self._events.refused(("clock", session.id), session.user_id, "clock_behind", 0.5)
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
                self._events.record(
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
        check_reason(reason)
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
            self._events.record(
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
        check_reason(reason)
        with self._db.store.transaction() as conn:
            count = self.revoke_all_in(
                conn, user_id, reason=reason, except_session_id=except_session_id
            )
            self._events.record(
                "info",
                user_id,
                {"action": "sessions_revoked", "reason": reason, "count": count},
            )
        return count

    def revoke_all_in(
        self,
        conn: Connection,
        user_id: str,
        *,
        reason: str,
        except_session_id: str | None = None,
    ) -> int:
        """Revoke every live session of a user inside the caller's write transaction.

        What :meth:`revoke_all` does, but without its audit event: for a caller that
        records the revocation in its own event (``db.auth`` on a password change).

        Args:
            conn: the connection of the caller's ``db.store.transaction()``.
            user_id: whose sessions.
            reason: stored as ``revoked_reason`` (as :meth:`revoke`).
            except_session_id: a session to keep.

        Returns:
            How many sessions were revoked.

        Raises:
            DatabaseError: the calling thread is not inside a write transaction.
            InvalidValueError: as :meth:`revoke`.
        """
        self._require_transaction("revoke_all_in")
        check_reason(reason)
        now = self._db.clock.now_ms()
        with driver_errors("user_sessions"):
            return int(
                conn.execute(
                    "UPDATE user_sessions SET is_active = 0, revoked_at = ?, revoked_reason = ? "
                    "WHERE user_id = ? AND revoked_at IS NULL AND is_active = 1 AND id IS NOT ?",
                    (now, reason, user_id, except_session_id),
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
        if LEVEL_RANK[check_level(security_level)] < LEVEL_RANK[current]:
            raise InvalidValueError(
                f"cannot step a {current} session down to {security_level}; "
                "issue a new session instead",
                field="security_level",
            )
        with self._db.store.transaction() as conn:
            issued = self.step_up_in(conn, session, security_level)
            self._events.record(
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

    def step_up_in(
        self, conn: Connection, session: UserSession, security_level: str
    ) -> IssuedSession:
        """Revoke ``session`` and issue its successor at ``security_level`` inside the
        caller's write transaction.

        What :meth:`step_up` does once the token was checked, without its audit event:
        for a caller that re-authenticated the person and records the step-up in its
        own event (``db.auth.step_up``). The caller makes sure the level is not below
        the session's. The successor keeps the device details.

        Args:
            conn: the connection of the caller's ``db.store.transaction()``.
            session: the live session to replace.
            security_level: the level of its successor.

        Returns:
            The new token and session.

        Raises:
            DatabaseError: the calling thread is not inside a write transaction.
            SessionRevoked: ``session`` was revoked or ended meanwhile.
            InvalidValueError: a bad security level.
        """
        self._require_transaction("step_up_in")
        now = self._db.clock.now_ms()
        with driver_errors("user_sessions"):
            revoked = conn.execute(
                "UPDATE user_sessions SET is_active = 0, revoked_at = ?, revoked_reason = ? "
                "WHERE id = ? AND revoked_at IS NULL AND is_active = 1",
                (now, "step_up", session.id),
            ).rowcount
        if not revoked:
            raise SessionRevoked("this session was revoked; log in again")
        return self.issue_in(
            conn,
            session.user_id,
            security_level=security_level,
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

    def sweep(self, now: Instant | None = None, *, keep_ms: Duration = 30 * DAY_MS) -> int:
        """Delete sessions that ended more than ``keep_ms`` (ms or a ``timedelta``) before
        ``now`` (epoch ms or an aware datetime; default the clock); return how many.

        A session has ended when it was revoked, timed out, or passed its absolute
        expiry. Recently ended ones are kept so that a replayed token is still
        recognised (and reported) as revoked rather than unknown.
        """
        keep = duration_ms(keep_ms, "keep_ms")
        cutoff = (self._db.clock.now_ms() if now is None else epoch_ms(now, "now")) - keep
        with self._db.store.transaction() as conn, driver_errors("user_sessions"):
            return int(
                conn.execute(
                    "DELETE FROM user_sessions WHERE (revoked_at IS NOT NULL AND revoked_at < ?) "
                    "OR (expires_at IS NOT NULL AND expires_at < ?) "
                    "OR (is_active IS NOT 1 AND coalesce(last_activity, created_at) < ?)",
                    (cutoff, cutoff, cutoff),
                ).rowcount
            )

    def _require_transaction(self, method: str) -> None:
        if not self._db.store.in_transaction():
            raise DatabaseError(
                f"{method}() needs the caller's write transaction: call it inside "
                "db.store.transaction()"
            )


def _check_text(name: str, value: Any, limit: int) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise InvalidValueError(
            f"{name} must be a string of at most {limit} characters", field=name
        )
