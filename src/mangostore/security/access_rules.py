"""The permission records of one (user, resource type, resource id), read and decided.

What :class:`~mangostore.security.permissions.PermissionService` caches is the
result of :func:`load_rules`: the records in force, with their conditions compiled,
tagged with the ``access_generation`` counter of the snapshot they were read in.
:func:`evaluate` answers a check from them: deny wins, then any allow; nothing
matching denies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import MangoError
from mangostore.security.conditions import CheckContext, Condition, compile_conditions

__all__ = ["Rule", "evaluate", "load_rules"]

_SQL_RULES: Final = (
    "SELECT p.id, p.resource_id, p.permission_type, p.expires_at, p.conditions, e.effect "
    "FROM permissions AS p LEFT JOIN permission_effects AS e ON e.permission_id = p.id "
    "WHERE p.user_id = ? AND p.resource_type = ? AND p.resource_id IN (?, '*') "
    "AND p.revoked_at IS NULL"
)
_SQL_GENERATION: Final = "SELECT generation FROM access_generation WHERE id = 1"


@dataclass(frozen=True, slots=True)
class Rule:
    """One permission record, ready to evaluate."""

    id: str
    permission_type: str
    expires_at: int | None
    deny: bool
    #: ``None``: unconditional.
    condition: Condition | None


def _unreadable(now_ms: int, context: CheckContext) -> None:
    """The condition of a record whose stored conditions do not validate: unknown."""
    return None


def load_rules(conn: Connection, key: tuple[str, str, str]) -> tuple[int, tuple[Rule, ...]]:
    """Read the generation and the records in force for ``key`` from one snapshot.

    Args:
        conn: a connection inside one read transaction (or the caller's write
            transaction), so that the generation and the records agree.
        key: ``(user id, resource type, resource id)``; records for ``'*'`` of the
            type are included.

    Returns:
        The ``access_generation`` counter and the records, not revoked (expiry and
        conditions are left to :func:`evaluate`).
    """
    with driver_errors("permissions"):
        generation = int(conn.execute(_SQL_GENERATION).fetchone()[0])
        rows = conn.execute(_SQL_RULES, key).fetchall()
    rules = []
    for permission_id, _resource_id, permission_type, expires_at, conditions, effect in rows:
        deny = effect == "deny"
        condition: Condition | None = None
        if conditions is not None:
            try:
                condition = compile_conditions(json.loads(conditions))
            except (MangoError, ValueError):
                # Written around grant(): an allow that cannot be read never applies,
                # a deny that cannot be read always does.
                condition = _unreadable
        rules.append(Rule(permission_id, permission_type, expires_at, deny, condition))
    return generation, tuple(rules)


def evaluate(
    rules: tuple[Rule, ...], permission: str, now: int, context: CheckContext
) -> tuple[bool, str]:
    """Return (allowed, reason): deny wins, then any allow; nothing matching denies.

    Args:
        rules: the records of the resource (:func:`load_rules`).
        permission: the permission type asked for (``admin`` records answer any).
        now: the time (epoch ms) expiry and time windows are evaluated at.
        context: what the check knows for conditional records.

    Returns:
        Whether the permission is granted, and why: ``"allowed"``, ``"denied"`` (an
        explicit deny) or ``"no_grant"``.
    """
    allowed = False
    for rule in rules:
        if rule.permission_type != permission and rule.permission_type != "admin":
            continue
        if rule.expires_at is not None and now >= rule.expires_at:
            continue
        if rule.condition is not None:
            holds = rule.condition(now, context)
            if holds is False or (holds is None and not rule.deny):
                continue
        if rule.deny:
            return False, "denied"
        allowed = True
    return allowed, "allowed" if allowed else "no_grant"
