"""Access control (``db.access``): grant, deny, revoke, check, require.

The model, on the design's ``permissions`` table:

- A record lets (``allow``) or forbids (``deny``) one user one permission type
  (``read``, ``write``, ``execute``, ``admin``) on one resource (``resource_type`` and
  ``resource_id``), or on every resource of that type (``resource_id = '*'``). A
  ``'*'`` never reaches another resource type. Records with ``resource_id`` NULL
  (written around this service) match nothing.
- ``admin`` implies the other three: an ``admin`` record answers a check for any
  permission type (an ``admin`` deny forbids them all). A check *for* ``admin`` needs
  an ``admin`` record.
- A record counts while not revoked, before its ``expires_at`` and while its
  conditions hold (:mod:`mangostore.security.conditions`).
- Deny by default; an explicit deny wins over any allow.

Answers come from a cache of each (user, resource type, resource id)'s records, tagged
with ``access_generation``, a counter that triggers bump in the same transaction as any
write to ``permissions`` or ``permission_effects`` (by this service, a repository, raw
SQL, or another process). A check first asks the database's commit watch
(:attr:`mangostore.Database.commits`) whether anything was committed at all; only then
does it read the counter. Checks made by a thread inside ``db.transaction()`` bypass
the cache and read the transaction's own view. So a check that follows a revoke always
denies. Expiry and time windows are evaluated at every check with the database's clock.
Reading the records and deciding from them is :mod:`mangostore.security.access_rules`'s.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

from mangostore.clock import Instant, epoch_ms
from mangostore.engine.connection import driver_errors
from mangostore.errors import (
    ConfigurationError,
    InvalidValueError,
    PermissionDenied,
)
from mangostore.ids import new_id
from mangostore.records import Permission
from mangostore.security.access_rules import Rule, evaluate, load_rules
from mangostore.security.conditions import (
    EMPTY_CONTEXT,
    parse_context,
    validate_conditions,
)
from mangostore.security.session_policy import MINUTE_MS
from mangostore.security.throttle import EventThrottle

if TYPE_CHECKING:
    from mangostore.security.service_ports import AccessDatabase

__all__ = ["Effect", "Grant", "PermissionService"]

Effect = Literal["allow", "deny"]
RESOURCE_TYPES: Final = frozenset({"project", "terminal", "voice", "ai"})
PERMISSION_TYPES: Final = frozenset({"read", "write", "execute", "admin"})
ALL_RESOURCES: Final = "*"
_MAX_ID_CHARS: Final = 256
_COMPONENT: Final = "permissions"
#: Cached (user, type, resource) entries kept before the cache starts afresh.
CACHE_MAX_ENTRIES: Final = 16_384


class Grant(NamedTuple):
    """A permission record and its effect, as :meth:`PermissionService.grants` lists them."""

    permission: Permission
    effect: Effect


class PermissionService:
    """``db.access``: grants, explicit denies, revocation and cached checks.

    Thread-safe. See the module docstring for the model and docs/authentication.md
    for examples.
    """

    def __init__(self, db: AccessDatabase, *, denial_log_interval_ms: int = MINUTE_MS) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, str], tuple[int, tuple[Rule, ...]]] = {}
        self._generation: int | None = None
        self._epoch = 0
        #: The commit watch's count when the cache was last checked against it.
        self._seen_commits: int | None = None
        self._denials = EventThrottle(denial_log_interval_ms)

    def __repr__(self) -> str:
        return f"<PermissionService {self._db.path!r}>"

    def configure(self, *, denial_log_interval_ms: int) -> None:
        """Set how long repeats of one denial are counted instead of written (ms).

        Raises:
            ConfigurationError: not a non-negative integer.
        """
        value = denial_log_interval_ms
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigurationError("denial_log_interval_ms must be a non-negative integer")
        self._denials = EventThrottle(value)

    # -- writing --------------------------------------------------------------------------

    def grant(
        self,
        user_id: str,
        resource_type: str,
        resource_id: str,
        permission_type: str,
        *,
        expires_at: Instant | None = None,
        conditions: Mapping[str, Any] | None = None,
        granted_by: str | None = None,
    ) -> Permission:
        """Let a user do ``permission_type`` on a resource (``resource_id='*'``: all of that type).

        Joins the caller's transaction, if any; the cache sees the grant once it commits.

        Args:
            user_id: who gets the permission.
            resource_type: ``project``, ``terminal``, ``voice`` or ``ai``.
            resource_id: one resource's id, or ``'*'`` for every resource of the type.
            permission_type: ``read``, ``write``, ``execute`` or ``admin`` (all of them).
            expires_at: the time (epoch ms or an aware datetime) after which the grant
                no longer counts; later than now.
            conditions: when the grant applies (see :mod:`.conditions`).
            granted_by: who granted it (a user id, or any short label).

        Returns:
            The stored permission record.

        Raises:
            InvalidValueError: a bad type, id, expiry or conditions (unknown operator,
                malformed, too large, too deeply nested); nothing is written.
            ForeignKeyError: no such user.
        """
        return self._write(
            "allow",
            user_id,
            resource_type,
            resource_id,
            permission_type,
            expires_at,
            conditions,
            granted_by,
        )

    def deny(
        self,
        user_id: str,
        resource_type: str,
        resource_id: str,
        permission_type: str,
        *,
        expires_at: Instant | None = None,
        conditions: Mapping[str, Any] | None = None,
        granted_by: str | None = None,
    ) -> Permission:
        """Forbid a user ``permission_type`` on a resource, whatever else they are granted.

        Arguments, return value and errors as :meth:`grant`. A deny of ``admin``
        forbids every permission type. A conditional deny applies unless its
        conditions are known to be false (missing context does not lift it).
        """
        return self._write(
            "deny",
            user_id,
            resource_type,
            resource_id,
            permission_type,
            expires_at,
            conditions,
            granted_by,
        )

    def _write(
        self,
        effect: Effect,
        user_id: str,
        resource_type: str,
        resource_id: str,
        permission_type: str,
        expires_at: Instant | None,
        conditions: Mapping[str, Any] | None,
        granted_by: str | None,
    ) -> Permission:
        _check_kind(resource_type, permission_type)
        _check_id("resource_id", resource_id)
        if granted_by is not None:
            _check_id("granted_by", granted_by)
        plain = validate_conditions(conditions)
        db = self._db
        now = db.clock.now_ms()
        expires_at = epoch_ms(expires_at, "expires_at")
        if expires_at is not None and expires_at <= now:
            raise InvalidValueError("expires_at must be later than now", field="expires_at")
        with db.store.transaction() as conn:
            record = db.permissions.create(
                id=new_id(),
                user_id=user_id,
                resource_type=resource_type,
                resource_id=resource_id,
                permission_type=permission_type,
                granted_by=granted_by,
                granted_at=now,
                expires_at=expires_at,
                conditions=plain,
            )
            with driver_errors("permission_effects"):
                conn.execute(
                    "INSERT INTO permission_effects (permission_id, effect) VALUES (?, ?)",
                    (record.id, effect),
                )
            self._audit(
                "info",
                user_id,
                {
                    "action": "grant" if effect == "allow" else "deny",
                    "permission_id": record.id,
                    "resource_type": resource_type,
                    "resource_id": resource_id,
                    "permission": permission_type,
                    "expires_at": expires_at,
                    "conditional": plain is not None,
                    "granted_by": granted_by,
                },
            )
        return record

    def revoke(self, permission_id: str, *, revoked_by: str | None = None) -> bool:
        """Revoke one grant or deny; return whether it was in force (not revoked already).

        The record stays, with ``revoked_at`` and ``revoked_by``, as history. Joins the
        caller's transaction, if any.

        Raises:
            InvalidValueError: a bad ``revoked_by``.
        """
        if revoked_by is not None:
            _check_id("revoked_by", revoked_by)
        now = self._db.clock.now_ms()
        with self._db.store.transaction() as conn:
            with driver_errors("permissions"):
                rows = conn.execute(
                    "UPDATE permissions SET revoked_at = ?, revoked_by = ? "
                    "WHERE id = ? AND revoked_at IS NULL RETURNING user_id",
                    (now, revoked_by, permission_id),
                ).fetchall()
            if not rows:
                return False
            self._audit(
                "info",
                str(rows[0][0]),
                {"action": "revoke", "permission_id": permission_id, "revoked_by": revoked_by},
            )
        return True

    def revoke_all(
        self,
        user_id: str,
        *,
        resource_type: str | None = None,
        resource_id: str | None = None,
        permission_type: str | None = None,
        revoked_by: str | None = None,
    ) -> int:
        """Revoke every grant and deny of a user matching the given filters; return how many.

        Raises:
            InvalidValueError: a bad filter or ``revoked_by``.
        """
        where = ["user_id = ?", "revoked_at IS NULL"]
        params: list[Any] = [user_id]
        if resource_type is not None:
            _check_kind(resource_type, "read")
            where.append("resource_type = ?")
            params.append(resource_type)
        if resource_id is not None:
            _check_id("resource_id", resource_id)
            where.append("resource_id = ?")
            params.append(resource_id)
        if permission_type is not None:
            _check_kind("project", permission_type)
            where.append("permission_type = ?")
            params.append(permission_type)
        if revoked_by is not None:
            _check_id("revoked_by", revoked_by)
        now = self._db.clock.now_ms()
        with self._db.store.transaction() as conn:
            with driver_errors("permissions"):
                count = int(
                    conn.execute(
                        "UPDATE permissions SET revoked_at = ?, revoked_by = ? WHERE "
                        + " AND ".join(where),
                        (now, revoked_by, *params),
                    ).rowcount
                )
            if count:
                self._audit(
                    "info",
                    user_id,
                    {
                        "action": "revoke_all",
                        "count": count,
                        "resource_type": resource_type,
                        "resource_id": resource_id,
                        "permission": permission_type,
                        "revoked_by": revoked_by,
                    },
                )
        return count

    # -- reading --------------------------------------------------------------------------

    def grants(self, user_id: str, *, include_inactive: bool = False) -> list[Grant]:
        """Return a user's grants and denies, oldest first.

        By default only those in force now (not revoked, not expired); conditions are
        not evaluated here.
        """
        now = self._db.clock.now_ms()
        records = self._db.permissions.list(user_id=user_id, order_by=["granted_at", "id"])
        effects = {
            str(r[0]): str(r[1])
            for r in self._db.query(
                "SELECT e.permission_id, e.effect FROM permission_effects AS e "
                "JOIN permissions AS p ON p.id = e.permission_id WHERE p.user_id = ?",
                (user_id,),
            )
        }
        found = []
        for record in records:
            active = record.revoked_at is None and (
                record.expires_at is None or now < record.expires_at
            )
            if include_inactive or active:
                effect: Effect = "deny" if effects.get(record.id) == "deny" else "allow"
                found.append(Grant(record, effect))
        return found

    def check(
        self,
        user_id: str,
        resource_type: str,
        resource_id: str,
        permission: str,
        *,
        context: Mapping[str, Any] | None = None,
    ) -> bool:
        """Tell whether the user may do ``permission`` on the resource now.

        Denials are written to the audit log (repeats of the same denial within the
        denial log interval are counted into the next written one).

        Args:
            user_id, resource_type, resource_id, permission: what is asked; a concrete
                resource id (not ``'*'``).
            context: ``{"project_id": ..., "security_level": ...}`` for conditional
                records; what is missing makes conditions that need it unknown.

        Raises:
            InvalidValueError: an unknown resource or permission type, a bad id, or a
                bad context.
        """
        allowed, reason = self._decide(user_id, resource_type, resource_id, permission, context)
        if not allowed:
            self._log_denial(user_id, resource_type, resource_id, permission, reason)
        return allowed

    def require(
        self,
        user_id: str,
        resource_type: str,
        resource_id: str,
        permission: str,
        *,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Like :meth:`check`, but raise instead of returning ``False``.

        Raises:
            PermissionDenied: the user may not.
            InvalidValueError: as :meth:`check`.
        """
        if not self.check(user_id, resource_type, resource_id, permission, context=context):
            raise PermissionDenied(
                f"user {user_id!r} may not {permission} {resource_type} {resource_id!r}; "
                "ask an administrator for a grant"
            )

    def clear_cache(self) -> None:
        """Forget every cached answer (never needed for correctness; for measurements)."""
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        """Forget every cached answer (the database is closing)."""
        with self._lock:
            self._cache.clear()
            self._seen_commits = None

    # -- deciding -------------------------------------------------------------------------

    def _decide(
        self,
        user_id: str,
        resource_type: str,
        resource_id: str,
        permission: str,
        context: Mapping[str, Any] | None,
    ) -> tuple[bool, str]:
        db = self._db
        db.store.check_open()
        _check_kind(resource_type, permission)
        if (
            type(resource_id) is not str
            or resource_id == ALL_RESOURCES
            or not 0 < len(resource_id) <= _MAX_ID_CHARS
        ):
            raise InvalidValueError(
                f"check() needs one resource id (a string of 1 to {_MAX_ID_CHARS} "
                "characters, not '*')",
                field="resource_id",
            )
        if type(user_id) is not str:
            raise InvalidValueError("user_id must be a string", field="user_id")
        ctx = parse_context(context) if context else EMPTY_CONTEXT
        key = (user_id, resource_type, resource_id)
        if db.store.in_transaction():
            # Inside a transaction: its own uncommitted writes count, and nothing read
            # here may be cached for other threads.
            with db.store.reading() as conn:
                rules = load_rules(conn, key)[1]
        else:
            rules = self._rules(key)
        return evaluate(rules, permission, db.clock.now_ms(), ctx)

    def _rules(self, key: tuple[str, str, str]) -> tuple[Rule, ...]:
        with self._lock:
            if self._watch_changed():
                # Something was committed: the counter must be read again before any
                # cached entry is trusted; a newer change makes older reads useless.
                self._generation = None
                self._epoch += 1
            epoch, generation = self._epoch, self._generation
            if generation is not None:
                entry = self._cache.get(key)
                if entry is not None and entry[0] == generation:
                    return entry[1]
        with self._db.store.snapshot() as conn:
            loaded_at, rules = load_rules(conn, key)
        with self._lock:
            if self._epoch == epoch and self._generation is None:
                # The snapshot began after the change was seen, and no later change
                # has been seen since: its counter is the current one.
                self._generation = loaded_at
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
            # Tagged with the counter of the snapshot it was read in: valid exactly
            # while the counter has not moved since.
            self._cache[key] = (loaded_at, rules)
        return rules

    def _watch_changed(self) -> bool:
        """Tell whether anything may have been committed since the last call."""
        now = self._db.commits.version()
        if now is not None and now == self._seen_commits:
            return False
        self._seen_commits = now
        return True

    # -- audit ----------------------------------------------------------------------------

    def _log_denial(
        self, user_id: str, resource_type: str, resource_id: str, permission: str, reason: str
    ) -> None:
        held = self._denials.admit(
            (user_id, resource_type, resource_id, permission, reason), self._db.clock.now_ms()
        )
        if held is None:
            return
        data: dict[str, Any] = {
            "action": "check",
            "outcome": "denied",
            "reason": reason,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "permission": permission,
        }
        if held:
            data["suppressed"] = held
        # Events are sealed under their subject's key: an id that names no user is
        # recorded in the event, under the system key, rather than given a key.
        subject: str | None = user_id
        if not self._db.query("SELECT 1 FROM users WHERE id = ?", (user_id,)):
            subject, data["user_id"] = None, user_id
        self._audit("warning", subject, data, risk=0.5 if reason == "denied" else 0.3)

    def _audit(
        self, severity: str, user_id: str | None, data: dict[str, Any], *, risk: float = 0.0
    ) -> None:
        self._db.audit.append(
            "access", severity, _COMPONENT, user_id=user_id, event_data=data, risk_score=risk
        )


def _check_kind(resource_type: Any, permission: Any) -> None:
    if type(resource_type) is not str or resource_type not in RESOURCE_TYPES:
        raise InvalidValueError(
            f"resource_type must be one of {', '.join(sorted(RESOURCE_TYPES))}; "
            f"got {resource_type!r}",
            field="resource_type",
        )
    if type(permission) is not str or permission not in PERMISSION_TYPES:
        raise InvalidValueError(
            f"permission must be one of {', '.join(sorted(PERMISSION_TYPES))}; got {permission!r}",
            field="permission_type",
        )


def _check_id(name: str, value: Any) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID_CHARS:
        raise InvalidValueError(
            f"{name} must be a string of 1 to {_MAX_ID_CHARS} characters", field=name
        )
