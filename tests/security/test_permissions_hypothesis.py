"""Property test: ``db.access.check`` agrees with a simple reference evaluator.

Random programs of grants, denies, revokes (through the service, inside transactions
that commit or roll back, and as raw SQL), clock moves and checks run against a real
database, cache and all; every check is compared with a from-scratch evaluation of
the same records.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.clock import ManualClock

USERS = 2
RESOURCE_TYPES = ["project", "terminal"]
GRANT_IDS = ["r1", "*"]
CHECK_IDS = ["r1", "r2"]
PERMISSIONS = ["read", "write", "execute", "admin"]
LEVELS = ["low", "standard", "high"]
CONDITIONS: list[dict[str, Any] | None] = [
    None,
    None,
    None,
    None,
    {"project": ["p1"]},
    {"min_security_level": "standard"},
    {"any": [{"project": ["p2"]}, {"min_security_level": "high"}]},
]


@dataclass
class Record:
    """The reference model's copy of one permission record."""

    id: str
    user: int
    resource_type: str
    resource_id: str
    permission: str
    deny: bool
    expires_at: int | None
    conditions: dict[str, Any] | None
    revoked: bool = False


def holds(conditions: dict[str, Any] | None, ctx: dict[str, str]) -> bool | None:
    """Three-valued evaluation of the few condition shapes used here."""
    if conditions is None:
        return True
    if "project" in conditions:
        project = ctx.get("project_id")
        return None if project is None else project in conditions["project"]
    if "min_security_level" in conditions:
        level = ctx.get("security_level")
        if level is None:
            return None
        return LEVELS.index(level) >= LEVELS.index(conditions["min_security_level"])
    results = [holds(member, ctx) for member in conditions["any"]]
    return True if True in results else None if None in results else False


def reference(
    records: list[Record], user: int, rtype: str, rid: str, permission: str, now: int, ctx: Any
) -> bool:
    allowed = False
    for r in records:
        if r.revoked or r.user != user or r.resource_type != rtype:
            continue
        if r.resource_id not in (rid, "*") or r.permission not in (permission, "admin"):
            continue
        if r.expires_at is not None and now >= r.expires_at:
            continue
        result = holds(r.conditions, ctx)
        if r.deny and result is not False:
            return False
        if not r.deny and result is True:
            allowed = True
    return allowed


contexts = st.fixed_dictionaries(
    {},
    optional={
        "project_id": st.sampled_from(["p1", "p2", "p3"]),
        "security_level": st.sampled_from(LEVELS),
    },
)
writes = st.tuples(
    st.just("write"),
    st.sampled_from([False, False, False, False, True]),  # deny
    st.integers(0, USERS - 1),
    st.sampled_from(RESOURCE_TYPES),
    st.sampled_from(GRANT_IDS),
    st.sampled_from(PERMISSIONS),
    st.sampled_from([None, None, None, 1_000, 5_000]),
    st.sampled_from(CONDITIONS),
)
revokes = st.tuples(
    st.just("revoke"), st.integers(0, 1_000), st.sampled_from(["service", "sql", "rollback"])
)
checks = st.tuples(
    st.just("check"),
    st.integers(0, USERS - 1),
    st.sampled_from(RESOURCE_TYPES),
    st.sampled_from(CHECK_IDS),
    st.sampled_from(PERMISSIONS),
    contexts,
)
# A check of the user, type and resource of an earlier record: a random check rarely
# lands on what was just granted or revoked.
related = st.tuples(
    st.just("related"),
    st.integers(0, 1_000),
    st.sampled_from(CHECK_IDS),
    st.sampled_from([None, None, *PERMISSIONS]),  # None: the record's own permission
    contexts,
)
# A deny (or an allow) on exactly what an earlier record covers: the interplay of
# effects, conditions and expiry on one resource is where the rules are subtle.
shadows = st.tuples(
    st.just("shadow"),
    st.integers(0, 1_000),
    st.booleans(),  # deny
    st.sampled_from([None, 1_000, 5_000]),
    st.sampled_from(CONDITIONS[-3:]),
)
moves = st.tuples(st.just("clock"), st.integers(-2_000, 4_000))
# The clock set to just before, at, or just after an earlier record's expiry.
edges = st.tuples(st.just("edge"), st.integers(0, 1_000), st.sampled_from([-1, 0, 1]))
programs = st.lists(
    st.one_of(writes, writes, shadows, revokes, checks, related, related, related, moves, edges),
    min_size=10,
    max_size=30,
)


def test_check_agrees_with_the_reference_evaluator(tmp_path: Path) -> None:
    clock = ManualClock()
    names = itertools.count()
    with mangostore.create(
        tmp_path / "property.db",
        passphrase=PASSPHRASE,
        settings=Settings(kdf=FAST_KDF),
        clock=clock,
    ).db as db:

        @settings(max_examples=100)
        @given(program=programs)
        def run(program: list[tuple[Any, ...]]) -> None:
            users = [db.users.create(username=f"user-{next(names)}").id for _ in range(USERS)]
            records: list[Record] = []
            for op in program:
                if op[0] == "shadow" and records:
                    _, index, deny, ttl, conditions = op
                    target = records[index % len(records)]
                    op = ("write", deny, target.user, target.resource_type)
                    op += (target.resource_id, target.permission, ttl, conditions)
                if op[0] == "write":
                    _, deny, user, rtype, rid, permission, ttl, conditions = op
                    expires_at = None if ttl is None else clock.now_ms() + ttl
                    write = db.access.deny if deny else db.access.grant
                    record = write(
                        users[user],
                        rtype,
                        rid,
                        permission,
                        expires_at=expires_at,
                        conditions=conditions,
                    )
                    records.append(
                        Record(
                            record.id, user, rtype, rid, permission, deny, expires_at, conditions
                        )
                    )
                elif op[0] == "revoke" and records:
                    _, index, how = op
                    target = records[index % len(records)]
                    if how == "service":
                        db.access.revoke(target.id)
                        target.revoked = True
                    elif how == "sql":
                        db.execute(
                            "UPDATE permissions SET revoked_at = ? WHERE id = ?",
                            (clock.now_ms(), target.id),
                        )
                        target.revoked = True
                    else:
                        with contextlib.suppress(RuntimeError), db.transaction():
                            db.access.revoke(target.id)
                            raise RuntimeError("roll it back")
                elif op[0] == "clock":
                    clock.advance(op[1])
                elif op[0] == "edge" and records:
                    expiring = records[op[1] % len(records)].expires_at
                    if expiring is not None:
                        clock.set(expiring + op[2])
                elif op[0] in ("check", "related"):
                    if op[0] == "check":
                        _, user, rtype, rid, permission, ctx = op
                    elif records:
                        _, index, rid, permission, ctx = op
                        target = records[index % len(records)]
                        user, rtype = target.user, target.resource_type
                        permission = permission or target.permission
                        rid = rid if target.resource_id == "*" else target.resource_id
                    else:
                        continue
                    expected = reference(records, user, rtype, rid, permission, clock.now_ms(), ctx)
                    actual = db.access.check(users[user], rtype, rid, permission, context=ctx)
                    assert actual == expected, (op, records)

        run()
