"""Password authentication (``db.auth``): passwords, login, logout, lock-out, step-up.

- Passwords are hashed with Argon2id (:mod:`mangostore.security.passwords`); a hash
  below the current parameters is replaced at its owner's next successful login.
- Failed attempts are counted per attempted *user name* in ``login_attempts``
  (:mod:`mangostore.security.login_attempts`), whether or not that user exists, one
  count for every spelling of the name. Each failure sleeps for an exponentially growing,
  capped delay; ``AuthPolicy.max_failures`` failures within
  ``AuthPolicy.failure_window_ms`` lock the name for ``AuthPolicy.lockout_ms``, during
  which even the right password is refused (and not even checked).
- An unknown user name costs the same Argon2id verification (against a dummy hash),
  is counted and locked the same way, and gets the same error message, so neither
  timing, messages nor lock-outs tell which names exist.
- Every attempt, good or bad, appends an ``auth`` event to the audit log with a risk
  score (0 to 1): failures raise it, a lock-out more, an attempt on a locked name most.
  Passwords, tokens and hashes are never part of an event.

See docs/authentication.md.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NoReturn

from mangostore.clock import Instant, epoch_ms
from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import (
    AccountLockedError,
    AuthenticationError,
    ConfigurationError,
    DatabaseError,
    InvalidValueError,
)
from mangostore.records import User, UserSession
from mangostore.repos.spec import encodable
from mangostore.repos.usernames import normalize_username
from mangostore.security import login_attempts as attempts
from mangostore.security.passwords import PasswordHasher, PasswordParams
from mangostore.security.session_audit import AuthEvents, client_info
from mangostore.security.session_policy import LEVEL_RANK, MINUTE_MS, check_level

if TYPE_CHECKING:
    from mangostore.security.auth_ports import AuthDatabase

__all__ = ["AuthPolicy", "AuthService", "LoginResult"]

#: The one message of every refused login, whatever the reason.
GENERIC_FAILURE: Final = "the user name or password is wrong"
LOCKED: Final = (
    "too many failed attempts: this account is locked for a while; try again after "
    "locked_until (epoch milliseconds)"
)


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """Password rules, lock-out and back-off. Times in milliseconds."""

    #: Argon2id cost of new hashes; stored hashes below it are upgraded at login.
    password: PasswordParams = field(default_factory=PasswordParams)
    #: Shortest and longest password accepted when one is set (characters, after NFC).
    min_password_chars: int = 8
    max_password_chars: int = 1024
    #: Failures within ``failure_window_ms`` of each other that lock the user name.
    max_failures: int = 5
    failure_window_ms: int = 15 * MINUTE_MS
    #: How long a lock lasts.
    lockout_ms: int = 15 * MINUTE_MS
    #: The n-th consecutive failure sleeps ``min(backoff_base_ms * 2**(n-1), backoff_max_ms)``.
    backoff_base_ms: int = 250
    backoff_max_ms: int = 4_000
    #: Security level of the sessions ``login`` issues unless told otherwise.
    default_security_level: str = "standard"

    def __post_init__(self) -> None:
        if not isinstance(self.password, PasswordParams):
            raise ConfigurationError("AuthPolicy.password must be a PasswordParams")
        for name in (
            "min_password_chars",
            "max_password_chars",
            "max_failures",
            "failure_window_ms",
            "lockout_ms",
            "backoff_base_ms",
            "backoff_max_ms",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"AuthPolicy.{name} must be a non-negative integer")
        if not 1 <= self.min_password_chars <= self.max_password_chars:
            raise ConfigurationError(
                "AuthPolicy needs 1 <= min_password_chars <= max_password_chars"
            )
        if self.max_failures < 1:
            raise ConfigurationError("AuthPolicy.max_failures must be at least 1")
        check_level(self.default_security_level)

    def backoff_ms(self, failures: int) -> int:
        """Return the delay after the ``failures``-th consecutive failure."""
        if failures < 1 or self.backoff_base_ms == 0:
            return 0
        exponent = min(failures - 1, 32)  # 2**32 already exceeds any sane cap
        return int(min(self.backoff_base_ms * 2**exponent, self.backoff_max_ms))


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A successful login: the session token (shown once, never stored), user and session."""

    token: str = field(repr=False)
    user: User
    session: UserSession


class AuthService:
    """``db.auth``: passwords, login and logout, lock-out, step-up.

    Thread-safe. ``sleep`` is called with seconds after each failed attempt; tests
    pass a recorder instead of :func:`time.sleep`.
    """

    def __init__(
        self,
        db: AuthDatabase,
        *,
        policy: AuthPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._db = db
        self._events = AuthEvents(db, "auth")
        self.policy = policy or AuthPolicy()
        self._sleep = sleep
        self._hasher = PasswordHasher(self.policy.password)

    def __repr__(self) -> str:
        return f"<AuthService {self._db.path!r}>"

    @property
    def hasher(self) -> PasswordHasher:
        """The Argon2id hasher of the current policy (replaced by :meth:`configure`)."""
        return self._hasher

    def configure(
        self, *, policy: AuthPolicy | None = None, sleep: Callable[[float], None] | None = None
    ) -> None:
        """Replace the policy and/or the sleep function.

        Raises:
            ConfigurationError: ``policy`` is not an :class:`AuthPolicy`.
        """
        if policy is not None:
            if not isinstance(policy, AuthPolicy):
                raise ConfigurationError("configure(policy=...) takes an AuthPolicy")
            self.policy = policy
            self._hasher = PasswordHasher(policy.password)
        if sleep is not None:
            self._sleep = sleep

    # -- passwords ------------------------------------------------------------------------

    def create_user_with_password(self, username: str, password: str, **fields: Any) -> User:
        """Create a user and their password in one transaction; return the user.

        ``fields`` are further ``users`` columns (``email``, ``preferences``, ...).

        Raises:
            InvalidValueError: the user name breaks the rules of user names (see
                docs/authentication.md), or the password breaks the policy (too short or
                too long, or not valid Unicode).
            UniqueConstraintError: the user name (in any spelling, or a look-alike of
                it) or the e-mail address is taken.
            UnknownColumnError, InvalidValueError, JSONValueError: bad ``fields``.
        """
        normalize_username(username)  # before the costly hash; the repository stores it
        self._check_new_password(password)
        stored = self._hasher.hash(password)
        with self._db.store.transaction() as conn:
            user = self._db.users.create(username=username, **fields)
            self._store_hash(conn, user.id, stored)
            self._events.record("info", user.id, {"action": "password_set"})
        return user

    def set_password(
        self, user_id: str, password: str, *, keep_session_id: str | None = None
    ) -> int:
        """Set a user's password (no old password needed) and revoke their sessions.

        Every live session of the user is revoked (reason ``password_change``) except
        ``keep_session_id``, and their failed-login count and lock are cleared. Returns
        how many sessions were revoked.

        Raises:
            NotFoundError: no such user.
            InvalidValueError: the password breaks the policy.
        """
        user = self._db.users.get(user_id)
        self._check_new_password(password)
        return self._replace_password(user, password, keep_session_id, "password_set")

    def change_password(
        self,
        user_id: str,
        old_password: str,
        new_password: str,
        *,
        keep_session_id: str | None = None,
    ) -> int:
        """Change a password after checking the old one; revoke sessions as :meth:`set_password`.

        A wrong old password counts as a failed login (back-off, lock-out, audit).
        Returns how many sessions were revoked.

        Raises:
            NotFoundError: no such user.
            InvalidValueError: the new password breaks the policy.
            AuthenticationError: the old password is wrong.
            AccountLockedError: the account is locked.
            DatabaseError: called inside ``db.transaction()`` (see :meth:`login`).
        """
        self._outside_transaction("change_password")
        user = self._db.users.get(user_id)
        self._check_new_password(new_password)
        self._check_password(user.username, user, old_password, "change_password", None)
        return self._replace_password(user, new_password, keep_session_id, "password_changed")

    def has_password(self, user_id: str) -> bool:
        """Tell whether the user has a password."""
        return bool(self._db.query("SELECT 1 FROM user_credentials WHERE user_id = ?", (user_id,)))

    def _replace_password(
        self, user: User, password: str, keep_session_id: str | None, action: str
    ) -> int:
        stored = self._hasher.hash(password)
        with self._db.store.transaction() as conn:
            self._store_hash(conn, user.id, stored)
            revoked = self._db.sessions.revoke_all_in(
                conn, user.id, reason="password_change", except_session_id=keep_session_id
            )
            attempts.clear_failures(conn, self._name_key(user.username), user.id)
            self._events.record("info", user.id, {"action": action, "sessions_revoked": revoked})
        return revoked

    def _store_hash(self, conn: Connection, user_id: str, stored: str) -> None:
        now = self._db.clock.now_ms()
        with driver_errors("user_credentials"):
            conn.execute(
                "INSERT INTO user_credentials (user_id, password_hash, password_changed_at, "
                "updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
                "password_hash = excluded.password_hash, "
                "password_changed_at = excluded.password_changed_at, "
                "updated_at = excluded.updated_at",
                (user_id, stored, now, now),
            )

    def _check_new_password(self, password: Any) -> None:
        if not isinstance(password, str):
            raise InvalidValueError("a password must be a string", field="password")
        if not encodable(password):
            raise InvalidValueError(
                "a password must be valid Unicode, and this one contains a lone surrogate "
                "code point (U+D800 to U+DFFF); pass the text as typed (decode bytes with "
                "errors='replace', not 'surrogateescape')",
                field="password",
            )
        policy = self.policy
        length = len(password)
        if not policy.min_password_chars <= length <= policy.max_password_chars:
            raise InvalidValueError(
                f"a password must have {policy.min_password_chars} to "
                f"{policy.max_password_chars} characters",
                field="password",
            )

    # -- login and logout -----------------------------------------------------------------

    def login(
        self,
        username: str,
        password: str,
        *,
        device_info: Mapping[str, Any] | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        security_level: str | None = None,
    ) -> LoginResult:
        """Check a user name and password and start a session.

        Must not run inside ``db.transaction()``: a failed attempt is recorded and then
        raised, and the caller's transaction would roll the record back.

        Args:
            username, password: what the person typed.
            device_info, ip_address, user_agent: stored with the session, and (the
                last two) in the audit events of the attempt.
            security_level: of the new session (default
                ``AuthPolicy.default_security_level``).

        Returns:
            The session token (give it to the client), the user and the session.

        Raises:
            AuthenticationError: wrong user name or password (one message for both;
                text that is not valid Unicode, a lone surrogate, is just as wrong).
            AccountLockedError: too many failures; ``locked_until`` says until when.
            InvalidValueError: a non-string user name or password, or a bad level.
            DatabaseError: called inside a transaction.
        """
        self._outside_transaction("login")
        for name, value in (("username", username), ("password", password)):
            if not isinstance(value, str):
                raise InvalidValueError(f"{name} must be a string", field=name)
        level = check_level(security_level or self.policy.default_security_level)
        client = client_info(ip_address, user_agent)
        user = self._db.users.get_by_username(username) if username else None
        self._check_password(username, user, password, "login", client)
        assert user is not None  # _check_password raised for an unknown user
        upgraded = self._upgrade_hash(user.id, password)
        now = self._db.clock.now_ms()
        with self._db.store.transaction() as conn:
            previous = max(
                attempts.clear_failures(conn, self._name_key(username), user.id), default=0
            )
            if upgraded is not None:
                self._replace_hash(conn, user.id, *upgraded)
            with driver_errors("users"):
                conn.execute("UPDATE users SET last_login = ? WHERE id = ?", (now, user.id))
            issued = self._db.sessions.issue_in(
                conn,
                user.id,
                security_level=level,
                device_info=device_info,
                ip_address=ip_address,
                user_agent=user_agent,
            )
            self._events.record(
                "info",
                user.id,
                {
                    "action": "login",
                    "outcome": "success",
                    "session_id": issued.session.id,
                    "security_level": level,
                    "previous_failures": previous,
                    "hash_upgraded": upgraded is not None,
                },
                client,
                risk=min(0.1 * previous, 0.5),
            )
        return LoginResult(issued.token, dataclasses.replace(user, last_login=now), issued.session)

    def logout(self, token: str) -> bool:
        """Revoke the session of ``token``; return whether it was live until now.

        Raises:
            AuthenticationError: the token is malformed, unknown or wrong.
        """
        session = self._db.sessions.verify_token(token)[0]
        return self._db.sessions.revoke(session.id, reason="logout")

    def step_up(self, token: str, password: str, security_level: str = "high") -> LoginResult:
        """Re-check the password of a session's user and replace the session by one at
        ``security_level``; the old token is revoked.

        A wrong password counts as a failed login (back-off, lock-out, audit).

        Raises:
            AuthenticationError, SessionRevoked, SessionExpired: the token is not live.
            AuthenticationError: the password is wrong.
            AccountLockedError: the account is locked.
            InvalidValueError: ``security_level`` is below the session's.
            DatabaseError: called inside a transaction.
        """
        self._outside_transaction("step_up")
        user, session = self._db.sessions.peek(token)
        target = check_level(security_level)
        current = session.security_level or "standard"
        if LEVEL_RANK[target] < LEVEL_RANK[current]:
            raise InvalidValueError(
                f"cannot step a {current} session down to {target}", field="security_level"
            )
        client = client_info(session.ip_address, session.user_agent)
        self._check_password(user.username, user, password, "step_up", client)
        with self._db.store.transaction() as conn:
            attempts.clear_failures(conn, self._name_key(user.username), user.id)
            issued = self._db.sessions.step_up_in(conn, session, target)
            self._events.record(
                "info",
                user.id,
                {
                    "action": "step_up",
                    "outcome": "success",
                    "session_id": issued.session.id,
                    "replaces": session.id,
                    "security_level": target,
                },
                client,
            )
        return LoginResult(issued.token, user, issued.session)

    def unlock(self, username: str) -> bool:
        """Clear the failed-attempt count and lock of a user name; return whether there was one."""
        user = self._db.users.get_by_username(username) if username else None
        with self._db.store.transaction() as conn:
            cleared = attempts.clear_failures(conn, self._name_key(username), None)
            self._events.record("info", None if user is None else user.id, {"action": "unlock"})
        return bool(cleared)

    def sweep(self, now: Instant | None = None) -> int:
        """Forget the failed-login counts that no longer matter at ``now`` (epoch ms or an
        aware datetime; default the database clock); return how many names were forgotten.

        A count older than the failure window whose lock is over would be restarted by the
        next failure anyway: deleting it changes no outcome. Failed logins forget a few
        such rows each; this forgets them all (``db.maintenance()`` calls it).

        Raises:
            InvalidValueError: ``now`` is not a time.
        """
        at = self._db.clock.now_ms() if now is None else epoch_ms(now, "now")
        with self._db.store.transaction() as conn:
            return attempts.forget_stale(conn, self.policy, at)

    # -- the checks ---------------------------------------------------------------------------

    def _check_password(
        self,
        username: str,
        user: User | None,
        password: str,
        action: str,
        client: dict[str, str] | None,
    ) -> None:
        """Refuse a locked name; verify the password (or burn the same work); count a failure."""
        name_key = self._name_key(username)
        self._refuse_if_locked(name_key, user, action, client)
        self._hasher.prepare()
        # The same query for an unknown name (no user has an empty id).
        stored = self._stored_hash(user.id if user is not None else "")
        if len(password) > self.policy.max_password_chars:
            stored, password = None, password[: self.policy.max_password_chars]
        if not encodable(password):
            # No password can be set with a lone surrogate, so this one is wrong: the same
            # work and the same outcome as any wrong password, on an encodable stand-in.
            stored, password = None, password.encode("utf-8", "surrogatepass").hex()
        if stored is None:
            self._hasher.burn(password)
            self._fail(name_key, user, action, client)
        if not self._hasher.verify(stored, password):
            self._fail(name_key, user, action, client)

    def _refuse_if_locked(
        self, name_key: bytes, user: User | None, action: str, client: dict[str, str] | None
    ) -> None:
        until = attempts.locked_until(self._db, name_key)
        now = self._db.clock.now_ms()
        if until is None or now >= until:
            return
        self._events.record(
            "error",
            None if user is None else user.id,
            {"action": action, "outcome": "refused_locked", "locked_until": until},
            client,
            risk=1.0,
        )
        raise AccountLockedError(LOCKED, locked_until=until)

    def _fail(
        self, name_key: bytes, user: User | None, action: str, client: dict[str, str] | None
    ) -> NoReturn:
        user_id = None if user is None else user.id
        now = self._db.clock.now_ms()
        with self._db.store.transaction() as conn:
            failures, until = attempts.count_failure(conn, self.policy, name_key, user_id, now)
            data: dict[str, Any] = {
                "action": action,
                "outcome": "failure",
                "failed_attempts": failures,
                "known_user": user is not None,
            }
            if until is not None:
                data["locked_until"] = until
            self._events.record(
                "error" if until is not None else "warning",
                user_id,
                data,
                client,
                risk=0.9 if until is not None else min(0.2 + 0.1 * (failures - 1), 0.8),
            )
        delay_ms = self.policy.backoff_ms(failures)
        if delay_ms:
            self._sleep(delay_ms / 1000)
        if until is not None:
            raise AccountLockedError(LOCKED, locked_until=until)
        raise AuthenticationError(GENERIC_FAILURE)

    def _stored_hash(self, user_id: str) -> str | None:
        rows = self._db.query(
            "SELECT password_hash FROM user_credentials WHERE user_id = ?", (user_id,)
        )
        return str(rows[0][0]) if rows else None

    def _upgrade_hash(self, user_id: str, password: str) -> tuple[str, str] | None:
        """Return (old hash, new hash) if the stored hash is below the current parameters."""
        stored = self._stored_hash(user_id)
        if stored is None or not self._hasher.needs_upgrade(stored):
            return None
        return stored, self._hasher.hash(password)

    @staticmethod
    def _replace_hash(conn: Connection, user_id: str, old: str, new: str) -> None:
        # Only if unchanged meanwhile: a concurrent password change wins.
        with driver_errors("user_credentials"):
            conn.execute(
                "UPDATE user_credentials SET password_hash = ? "
                "WHERE user_id = ? AND password_hash = ?",
                (new, user_id, old),
            )

    def _name_key(self, username: str) -> bytes:
        return attempts.name_key(self._db, username)

    def _outside_transaction(self, action: str) -> None:
        self._db.store.check_open()
        if self._db.store.in_transaction():
            raise DatabaseError(
                f"{action}() cannot run inside db.transaction(): a failed attempt is recorded "
                "and then raised, and the transaction would roll the record back; call it "
                "outside the transaction"
            )
