"""The failed-login ledger (``login_attempts``): counting, locking, forgetting.

Failures are counted per attempted user name, whether or not a user has it, under
``username_key``: a keyed digest (HMAC-SHA256 under the blind-index sub-key, SHA-256
without a keyring) of the name's identity (:func:`mangostore.repos.usernames.username_key`),
so every spelling of one name (``Ann``, ``ann``, NFC or NFD, fullwidth) shares one
count and one lock, and the table holds no user names. Used by
:class:`mangostore.security.auth.AuthService`; see docs/authentication.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.repos.usernames import username_key
from mangostore.security.digests import digest_key, keyed_digest

if TYPE_CHECKING:
    from mangostore.security.ports import KeyedDatabase, QueryDatabase

__all__ = [
    "FailurePolicy",
    "clear_failures",
    "count_failure",
    "forget_stale",
    "locked_until",
    "name_key",
]

# v2: the digest of the name's identity; v1 digested the name as typed, so its rows
# (a lock-out at most) are no longer found after an upgrade and are pruned as stale.
_NAME_LABEL: Final = "mangostore/login-name/v2"
#: Stale rows deleted per recorded failure, so the table cannot grow without bound.
_PRUNE_ROWS: Final = 64


class FailurePolicy(Protocol):
    """The lock-out rules :func:`count_failure` applies (met by
    :class:`~mangostore.security.auth.AuthPolicy`, which this module does not import:
    the ledger sits below the service that uses it)."""

    @property
    def max_failures(self) -> int:
        """Failures within the window that lock the name."""

    @property
    def failure_window_ms(self) -> int:
        """Failures further apart than this start a new count."""

    @property
    def lockout_ms(self) -> int:
        """How long a lock lasts."""


def name_key(db: KeyedDatabase, username: str) -> bytes:
    """Return the ``login_attempts`` key of a user name, one for all its spellings.

    Defined for any string (a lone surrogate included), so that every attempt counts.
    """
    return keyed_digest(digest_key(db), _NAME_LABEL, username_key(username))


def locked_until(db: QueryDatabase, key: bytes) -> int | None:
    """Return when the lock of ``key`` ends (epoch ms), or ``None`` if it was never locked.

    The lock may already be over; the caller compares with its clock.
    """
    rows = db.query("SELECT locked_until FROM login_attempts WHERE username_key = ?", (key,))
    value = rows[0][0] if rows else None
    return None if value is None else int(value)


def count_failure(
    conn: Connection, policy: FailurePolicy, key: bytes, user_id: str | None, now: int
) -> tuple[int, int | None]:
    """Record one failure of ``key`` in transaction ``conn``; return the count and the
    lock it set, if any.

    Failures more than ``policy.failure_window_ms`` apart, or after a lock ended,
    start a new count; the ``policy.max_failures``-th locks the name for
    ``policy.lockout_ms``. A failure during a lock (a concurrent attempt) does not
    extend it.
    """
    with driver_errors("login_attempts"):
        row = conn.execute(
            "SELECT failed_attempts, last_failed_at, locked_until FROM login_attempts "
            "WHERE username_key = ?",
            (key,),
        ).fetchone()
    failures = 1
    if row is not None:
        count, last_failed, locked = int(row[0]), row[1], row[2]
        if locked is not None and now < locked:
            return count, int(locked)  # locked by a concurrent attempt: not extended
        lock_over = locked is not None and now >= locked
        # A clock set back makes now - last_failed negative: still within the window.
        stale = last_failed is None or now - last_failed > policy.failure_window_ms
        if not lock_over and not stale:
            failures = count + 1
    lock = now + policy.lockout_ms if failures >= policy.max_failures else None
    with driver_errors("login_attempts"):
        conn.execute(
            "INSERT INTO login_attempts (username_key, user_id, failed_attempts, "
            "last_failed_at, locked_until, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (username_key) DO UPDATE SET user_id = excluded.user_id, "
            "failed_attempts = excluded.failed_attempts, "
            "last_failed_at = excluded.last_failed_at, "
            "locked_until = excluded.locked_until, updated_at = excluded.updated_at",
            (key, user_id, failures, now, lock, now),
        )
    # A few at a time, so the table cannot grow without bound between sweeps.
    forget_stale(conn, policy, now, limit=_PRUNE_ROWS)
    return failures, lock


def forget_stale(conn: Connection, policy: FailurePolicy, now: int, *, limit: int = -1) -> int:
    """Forget names whose failures are long past and whose lock is over, in transaction
    ``conn``; return how many were forgotten.

    Such a row no longer counts towards a lock (the next failure starts a new count),
    so deleting it changes no outcome. ``limit`` bounds the rows deleted (``-1``: all).
    """
    horizon = now - max(policy.failure_window_ms, policy.lockout_ms)
    with driver_errors("login_attempts"):
        return int(
            conn.execute(
                "DELETE FROM login_attempts WHERE username_key IN (SELECT username_key FROM "
                "login_attempts WHERE updated_at < ? AND coalesce(locked_until, 0) < ? LIMIT ?)",
                (horizon, now, limit),
            ).rowcount
        )


def clear_failures(conn: Connection, key: bytes, user_id: str | None) -> list[int]:
    """Forget the failures of a name (and of the user's other rows) in transaction
    ``conn``; return the counts that were forgotten."""
    sql = "DELETE FROM login_attempts WHERE username_key = ?"
    params: tuple[Any, ...] = (key,)
    if user_id is not None:
        sql += " OR user_id = ?"
        params += (user_id,)
    with driver_errors("login_attempts"):
        rows = conn.execute(sql + " RETURNING failed_attempts", params).fetchall()
    return [int(r[0]) for r in rows]
