"""Access control: grants, denies, '*', admin, expiry, conditions, the cache, denial logging."""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.clock import ManualClock
from mangostore.errors import ForeignKeyError, InvalidValueError, PermissionDenied
from mangostore.security import permissions as permissions_module
from mangostore.security.conditions import MAX_CONDITION_BYTES, MAX_DEPTH, MAX_NODES
from mangostore.security.throttle import EventThrottle

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
RESOURCE_TYPES = ["project", "terminal", "voice", "ai"]
PERMISSIONS = ["read", "write", "execute", "admin"]
# 2023-11-14 22:13:20 UTC, the ManualClock's default start: a Tuesday.
START = 1_700_000_000_000

pytestmark = pytest.mark.database("clocked_file_db")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(params=["file", "memory"])
def any_db(request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path) -> Iterator[Any]:
    """A file database and an in-memory one: their caches watch commits differently."""
    path = tmp_path / "any.db" if request.param == "file" else ":memory:"
    database = mangostore.create(
        path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF), clock=clock
    ).db
    yield database
    database.close()


@pytest.fixture
def ann(db: mangostore.Database) -> str:
    return db.users.create(username="ann").id


@pytest.fixture(scope="module")
def refusing() -> Iterator[tuple[mangostore.Database, str]]:
    """One database for the tests of refused input, which write nothing, and its user."""
    database = mangostore.open(":memory:", encrypted=False, clock=ManualClock(START))
    yield database, database.users.create(username="ann").id
    database.close()


def denials(db: mangostore.Database) -> list[Any]:
    return [
        e
        for e in db.audit.events()
        if e.source_component == "permissions" and (e.event_data or {}).get("action") == "check"
    ]


# -- the model -----------------------------------------------------------------------------


def test_deny_by_default(db: mangostore.Database, ann: str) -> None:
    for rtype, permission in itertools.product(RESOURCE_TYPES, PERMISSIONS):
        assert db.access.check(ann, rtype, "r1", permission) is False


def test_grant_allows_exactly_what_it_names(db: mangostore.Database, ann: str) -> None:
    record = db.access.grant(ann, "project", "p1", "write", granted_by="admin-1")
    assert (record.user_id, record.resource_id, record.granted_by) == (ann, "p1", "admin-1")
    assert db.access.check(ann, "project", "p1", "write")
    assert not db.access.check(ann, "project", "p1", "read")
    assert not db.access.check(ann, "project", "p2", "write")
    assert not db.access.check(ann, "terminal", "p1", "write")
    db.access.require(ann, "project", "p1", "write")
    with pytest.raises(PermissionDenied, match="may not read"):
        db.access.require(ann, "project", "p1", "read")


def test_star_never_crosses_resource_types(db: mangostore.Database) -> None:
    for granted in RESOURCE_TYPES:
        user = db.users.create(username=f"admin of every {granted}").id
        db.access.grant(user, granted, "*", "admin")
        assert db.access.check(user, granted, "anything", "read")
        for asked, permission in itertools.product(RESOURCE_TYPES, PERMISSIONS):
            if asked != granted:
                assert not db.access.check(user, asked, "anything", permission)
                assert not db.access.check(user, asked, "*x", permission)


def test_star_covers_every_resource_of_its_type(db: mangostore.Database, ann: str) -> None:
    db.access.grant(ann, "terminal", "*", "execute")
    for resource in ("t1", "t2", "0190e2c4-7a1b-7cc0-8000-000000000000", "**"):
        assert db.access.check(ann, "terminal", resource, "execute")


def test_star_is_not_a_resource_one_can_check(db: mangostore.Database, ann: str) -> None:
    db.access.grant(ann, "terminal", "*", "execute")
    with pytest.raises(InvalidValueError):
        db.access.check(ann, "terminal", "*", "execute")


def test_admin_implies_read_write_execute_but_not_the_reverse(
    db: mangostore.Database, ann: str
) -> None:
    db.access.grant(ann, "project", "p1", "admin")
    for permission in PERMISSIONS:
        assert db.access.check(ann, "project", "p1", permission)
    bob = db.users.create(username="bob").id
    for permission in ("read", "write", "execute"):
        db.access.grant(bob, "project", "p1", permission)
    assert not db.access.check(bob, "project", "p1", "admin")


def test_deny_wins_over_any_allow(db: mangostore.Database, ann: str) -> None:
    db.access.grant(ann, "project", "*", "admin")
    db.access.deny(ann, "project", "secret", "write")
    assert db.access.check(ann, "project", "secret", "read")
    assert not db.access.check(ann, "project", "secret", "write")
    assert db.access.check(ann, "project", "other", "write")
    db.access.deny(ann, "project", "*", "admin")
    for permission in PERMISSIONS:
        assert not db.access.check(ann, "project", "other", permission)


def test_revoking_a_deny_restores_the_allow(db: mangostore.Database, ann: str) -> None:
    db.access.grant(ann, "ai", "*", "read")
    deny = db.access.deny(ann, "ai", "a1", "read")
    assert not db.access.check(ann, "ai", "a1", "read")
    assert db.access.revoke(deny.id)
    assert db.access.check(ann, "ai", "a1", "read")


def test_expiry_one_second_either_side(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    db.access.grant(ann, "voice", "v1", "read", expires_at=START + HOUR)
    clock.set(START + HOUR - SECOND)
    assert db.access.check(ann, "voice", "v1", "read")
    clock.set(START + HOUR + SECOND)
    assert not db.access.check(ann, "voice", "v1", "read")
    clock.set(START + HOUR)
    assert not db.access.check(ann, "voice", "v1", "read")  # expires_at itself is past


def test_expiring_deny_lifts(db: mangostore.Database, ann: str, clock: ManualClock) -> None:
    db.access.grant(ann, "voice", "v1", "read")
    db.access.deny(ann, "voice", "v1", "read", expires_at=START + MINUTE)
    assert not db.access.check(ann, "voice", "v1", "read")
    clock.advance(MINUTE + SECOND)
    assert db.access.check(ann, "voice", "v1", "read")


@pytest.mark.parametrize("expires_at", [START, START - 1, "tomorrow", 1.5, True])
def test_expiry_must_be_a_future_integer(
    refusing: tuple[mangostore.Database, str], expires_at: Any
) -> None:
    db, ann = refusing
    with pytest.raises(InvalidValueError):
        db.access.grant(ann, "voice", "v1", "read", expires_at=expires_at)


@pytest.mark.parametrize(
    ("rtype", "rid", "permission"),
    [
        ("file", "f1", "read"),
        ("project", "p1", "delete"),
        ("project", "", "read"),
        ("project", "x" * 257, "read"),
        ("project", None, "read"),
        (["project"], "p1", "read"),
        ("project", "p1", {"read"}),
    ],
)
def test_bad_grants_and_checks_are_refused(
    refusing: tuple[mangostore.Database, str], rtype: Any, rid: Any, permission: Any
) -> None:
    db, ann = refusing
    with pytest.raises(InvalidValueError):
        db.access.grant(ann, rtype, rid, permission)
    with pytest.raises(InvalidValueError):
        db.access.check(ann, rtype, rid, permission)
    assert db.permissions.count() == 0


def test_grant_for_a_missing_user_writes_nothing(db: mangostore.Database) -> None:
    with pytest.raises(ForeignKeyError):
        db.access.grant("no-such-user", "project", "p1", "read")
    assert db.query("SELECT count(*) FROM permission_effects")[0][0] == 0


def test_grants_lists_what_is_in_force(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    kept = db.access.grant(ann, "project", "p1", "read")
    denied = db.access.deny(ann, "project", "p2", "read")
    gone = db.access.grant(ann, "project", "p3", "read")
    db.access.grant(ann, "project", "p4", "read", expires_at=START + SECOND)
    db.access.revoke(gone.id, revoked_by="admin-1")
    clock.advance(2 * SECOND)
    assert [(g.permission.id, g.effect) for g in db.access.grants(ann)] == [
        (kept.id, "allow"),
        (denied.id, "deny"),
    ]
    everything = db.access.grants(ann, include_inactive=True)
    assert len(everything) == 4
    assert db.permissions.get(gone.id).revoked_by == "admin-1"


def test_revoke_all_with_filters(db: mangostore.Database, ann: str) -> None:
    db.access.grant(ann, "project", "p1", "read")
    db.access.grant(ann, "project", "p1", "write")
    db.access.grant(ann, "terminal", "t1", "read")
    assert db.access.revoke_all(ann, resource_type="project", permission_type="write") == 1
    assert db.access.check(ann, "project", "p1", "read")
    assert db.access.revoke_all(ann) == 2
    assert not db.access.check(ann, "terminal", "t1", "read")
    assert db.access.revoke("no-such-permission") is False


# -- the cache -----------------------------------------------------------------------------


def test_a_revoke_followed_by_a_check_always_denies(any_db: mangostore.Database) -> None:
    user = any_db.users.create(username="ann").id
    for _ in range(5):
        grant = any_db.access.grant(user, "project", "p1", "read")
        assert any_db.access.check(user, "project", "p1", "read")
        assert any_db.access.check(user, "project", "p1", "read")  # cached
        any_db.access.revoke(grant.id)
        assert not any_db.access.check(user, "project", "p1", "read")


def test_revoke_inside_a_transaction_denies_within_and_after_it(
    any_db: mangostore.Database,
) -> None:
    user = any_db.users.create(username="ann").id
    grant = any_db.access.grant(user, "project", "p1", "read")
    assert any_db.access.check(user, "project", "p1", "read")
    seen_by_other_thread: list[bool] = []
    with any_db.transaction():
        any_db.access.revoke(grant.id)
        assert not any_db.access.check(user, "project", "p1", "read")
        if any_db.path != ":memory:":  # another thread still sees the committed grant
            worker = threading.Thread(
                target=lambda: seen_by_other_thread.append(
                    any_db.access.check(user, "project", "p1", "read")
                )
            )
            worker.start()
            worker.join()
    assert seen_by_other_thread in ([], [True])
    assert not any_db.access.check(user, "project", "p1", "read")


def test_a_rolled_back_revoke_leaves_the_grant(any_db: mangostore.Database) -> None:
    user = any_db.users.create(username="ann").id
    grant = any_db.access.grant(user, "project", "p1", "read")
    with contextlib.suppress(RuntimeError), any_db.transaction():
        any_db.access.revoke(grant.id)
        raise RuntimeError("roll it back")
    assert any_db.access.check(user, "project", "p1", "read")


def test_writes_around_the_service_invalidate_the_cache(any_db: mangostore.Database) -> None:
    user = any_db.users.create(username="ann").id
    grant = any_db.access.grant(user, "project", "p1", "read")
    assert any_db.access.check(user, "project", "p1", "read")
    any_db.permissions.update(grant.id, revoked_at=START)
    assert not any_db.access.check(user, "project", "p1", "read")
    any_db.execute("UPDATE permissions SET revoked_at = NULL")
    assert any_db.access.check(user, "project", "p1", "read")
    any_db.execute(
        "UPDATE permission_effects SET effect = 'deny' WHERE permission_id = ?", (grant.id,)
    )
    assert not any_db.access.check(user, "project", "p1", "read")
    any_db.execute("DELETE FROM permission_effects")  # no effect recorded: an allow
    assert any_db.access.check(user, "project", "p1", "read")
    any_db.execute("DELETE FROM permissions")
    assert not any_db.access.check(user, "project", "p1", "read")


def test_another_connection_revoking_is_seen(
    db: mangostore.Database, db_path: Path, ann: str
) -> None:
    grant = db.access.grant(ann, "project", "p1", "read")
    assert db.access.check(ann, "project", "p1", "read")
    with mangostore.open(db_path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)) as other:
        other.access.revoke(grant.id)
        assert not db.access.check(ann, "project", "p1", "read")
        other.access.grant(ann, "project", "p1", "read")
    assert db.access.check(ann, "project", "p1", "read")


def test_another_process_revoking_is_seen(db: mangostore.Database, db_path: Path, ann: str) -> None:
    grant = db.access.grant(ann, "project", "p1", "read")
    assert db.access.check(ann, "project", "p1", "read")
    script = textwrap.dedent(
        f"""
        import mangostore
        from mangostore import KdfParams, Settings
        kdf = KdfParams(memory_kib={FAST_KDF.memory_kib}, iterations={FAST_KDF.iterations},
                        parallelism={FAST_KDF.parallelism})
        with mangostore.open({str(db_path)!r}, passphrase={PASSPHRASE!r},
                             settings=Settings(kdf=kdf)) as db:
            assert db.access.revoke({grant.id!r})
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert not db.access.check(ann, "project", "p1", "read")


def test_cached_checks_read_nothing_until_something_commits(
    db: mangostore.Database, ann: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.access.grant(ann, "project", "p1", "read")
    db.access.grant(ann, "project", "p2", "read")
    loads: list[Any] = []
    real = permissions_module.load_rules

    def counting(conn: Any, key: Any) -> Any:
        loads.append(key[2])
        return real(conn, key)

    monkeypatch.setattr(permissions_module, "load_rules", counting)
    for _ in range(10):
        assert db.access.check(ann, "project", "p1", "read")
        assert db.access.check(ann, "project", "p2", "read")
    assert loads == ["p1", "p2"]
    db.projects.create(user_id=ann, name="x", path="/x")  # an unrelated commit
    for _ in range(10):
        assert db.access.check(ann, "project", "p1", "read")
        assert db.access.check(ann, "project", "p2", "read")
    # One read learnt that the counter had not moved; p2's entry stayed valid.
    assert loads == ["p1", "p2", "p1"]
    db.access.grant(ann, "project", "p2", "write")
    assert db.access.check(ann, "project", "p2", "write")
    assert db.access.check(ann, "project", "p1", "read")
    assert loads == ["p1", "p2", "p1", "p2", "p1"]


def test_without_a_watch_every_check_reads_the_counter(db: mangostore.Database, ann: str) -> None:
    db.commits.close()  # the watch answers "cannot tell" from now on
    grant = db.access.grant(ann, "project", "p1", "read")
    assert db.access.check(ann, "project", "p1", "read")
    db.access.revoke(grant.id)
    assert not db.access.check(ann, "project", "p1", "read")


def test_close_releases_the_watch_and_keeps_working(db: mangostore.Database, ann: str) -> None:
    db.access.grant(ann, "project", "p1", "read")
    assert db.access.check(ann, "project", "p1", "read")
    db.access.close()
    assert db.access.check(ann, "project", "p1", "read")
    db.access.revoke_all(ann)
    assert not db.access.check(ann, "project", "p1", "read")


def test_concurrent_checks_and_revokes(db: mangostore.Database, ann: str) -> None:
    """After the revoke returns, no thread is ever allowed again."""
    grant = db.access.grant(ann, "project", "p1", "read")
    revoked = threading.Event()
    wrong: list[str] = []

    def checker() -> None:
        for _ in range(300):
            after = revoked.is_set()
            if db.access.check(ann, "project", "p1", "read") and after:
                wrong.append("allowed after the revoke")

    threads = [threading.Thread(target=checker) for _ in range(4)]
    for thread in threads:
        thread.start()
    db.access.revoke(grant.id)
    revoked.set()
    for thread in threads:
        thread.join()
    assert wrong == []


# -- conditions ----------------------------------------------------------------------------


def test_time_window(db: mangostore.Database, ann: str, clock: ManualClock) -> None:
    # START is 22:13 UTC (23:13 in Berlin, 17:13 in New York).
    db.access.grant(
        ann,
        "terminal",
        "t1",
        "execute",
        conditions={"time_window": {"start": "22:00", "end": "22:30"}},
    )
    db.access.grant(
        ann,
        "terminal",
        "t2",
        "execute",
        conditions={
            "time_window": {"start": "09:00", "end": "17:00", "timezone": "America/New_York"}
        },
    )
    db.access.grant(
        ann,
        "terminal",
        "t3",
        "execute",
        conditions={"time_window": {"start": "23:00", "end": "06:00", "timezone": "Europe/Berlin"}},
    )
    assert db.access.check(ann, "terminal", "t1", "execute")
    assert not db.access.check(ann, "terminal", "t2", "execute")
    assert db.access.check(ann, "terminal", "t3", "execute")  # wraps past midnight
    clock.advance(17 * MINUTE)  # 22:30 UTC: the end is excluded
    assert not db.access.check(ann, "terminal", "t1", "execute")
    clock.set(START + 12 * HOUR)  # 10:13 UTC, 05:13 New York, 11:13 Berlin
    assert not db.access.check(ann, "terminal", "t3", "execute")
    clock.set(START + 16 * HOUR)  # 09:13 in New York
    assert db.access.check(ann, "terminal", "t2", "execute")


def test_project_and_security_level_conditions(db: mangostore.Database, ann: str) -> None:
    db.access.grant(ann, "ai", "*", "read", conditions={"project": ["p1", "p2"]})
    db.access.grant(ann, "ai", "*", "write", conditions={"min_security_level": "standard"})
    assert db.access.check(ann, "ai", "a", "read", context={"project_id": "p2"})
    assert not db.access.check(ann, "ai", "a", "read", context={"project_id": "p3"})
    assert not db.access.check(ann, "ai", "a", "read")  # unknown: an allow needs it true
    assert db.access.check(ann, "ai", "a", "write", context={"security_level": "high"})
    assert db.access.check(ann, "ai", "a", "write", context={"security_level": "standard"})
    assert not db.access.check(ann, "ai", "a", "write", context={"security_level": "low"})
    assert not db.access.check(ann, "ai", "a", "write")


def test_missing_context_never_lifts_a_conditional_deny(db: mangostore.Database, ann: str) -> None:
    db.access.grant(ann, "project", "*", "write")
    db.access.deny(ann, "project", "*", "write", conditions={"min_security_level": "high"})
    # The deny holds for sessions below high... and when the level is not known.
    assert not db.access.check(ann, "project", "p", "write")
    assert not db.access.check(ann, "project", "p", "write", context={"security_level": "high"})
    db.access.revoke_all(ann)
    db.access.grant(ann, "project", "*", "write")
    db.access.deny(ann, "project", "*", "write", conditions={"project": ["locked"]})
    assert db.access.check(ann, "project", "p", "write", context={"project_id": "open"})
    assert not db.access.check(ann, "project", "p", "write", context={"project_id": "locked"})
    assert not db.access.check(ann, "project", "p", "write")


def test_all_and_any(db: mangostore.Database, ann: str) -> None:
    db.access.grant(
        ann,
        "voice",
        "*",
        "execute",
        conditions={
            "any": [
                {"project": ["p1"]},
                {"all": [{"project": ["p2"]}, {"min_security_level": "high"}]},
            ]
        },
    )
    check = db.access.check
    assert check(ann, "voice", "v", "execute", context={"project_id": "p1"})
    assert not check(ann, "voice", "v", "execute", context={"project_id": "p2"})
    assert check(
        ann, "voice", "v", "execute", context={"project_id": "p2", "security_level": "high"}
    )
    assert not check(ann, "voice", "v", "execute", context={"security_level": "high"})


@pytest.mark.parametrize(
    "context", [{"project": "p1"}, {"project_id": 5}, {"security_level": "max"}, ["p1"]]
)
def test_bad_context_is_refused(refusing: tuple[mangostore.Database, str], context: Any) -> None:
    db, ann = refusing
    with pytest.raises(InvalidValueError):
        db.access.check(ann, "ai", "a", "read", context=context)


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"project": ["p1"]}
    for _ in range(depth):
        node = {"all": [node]}
    return node


def _deep_list(depth: int) -> Any:
    value: Any = "p1"
    for _ in range(depth):
        value = [value]
    return value


BAD_CONDITIONS = [
    pytest.param({}, id="empty"),
    pytest.param([], id="a-list"),
    pytest.param('{"project": ["p1"]}', id="json-text"),
    pytest.param({"owner": "ann"}, id="unknown-operator"),
    pytest.param({"project": ["p1"], "weekday": "mon"}, id="unknown-beside-known"),
    pytest.param({"any": [{"project": ["p1"]}, {"not": {"project": ["p2"]}}]}, id="unknown-nested"),
    pytest.param({"project": "p1"}, id="project-not-a-list"),
    pytest.param({"project": []}, id="project-empty"),
    pytest.param({"project": [1, 2]}, id="project-not-strings"),
    pytest.param({"project": ["x"] * 257}, id="project-too-many"),
    pytest.param({"min_security_level": "top"}, id="unknown-level"),
    pytest.param({"time_window": {"start": "9:00", "end": "17:00"}}, id="time-not-hhmm"),
    pytest.param({"time_window": {"start": "24:00", "end": "17:00"}}, id="hour-24"),
    pytest.param({"time_window": {"start": "09:00", "end": "09:00"}}, id="empty-window"),
    pytest.param({"time_window": {"start": "09:00"}}, id="no-end"),
    pytest.param(
        {"time_window": {"start": "09:00", "end": "10:00", "timezone": "Mars/Olympus"}},
        id="bad-zone",
    ),
    pytest.param(
        {"time_window": {"start": "09:00", "end": "10:00", "timezone": "../../etc/passwd"}},
        id="zone-path",
    ),
    pytest.param(
        {"time_window": {"start": "09:00", "end": "10:00", "days": ["mon"]}}, id="window-extra"
    ),
    pytest.param({"all": []}, id="all-empty"),
    pytest.param({"any": {"project": ["p1"]}}, id="any-not-a-list"),
    pytest.param({"project": [float("nan")]}, id="nan"),
    pytest.param({"project": [object()]}, id="not-json"),
    pytest.param({"project": ["x" * MAX_CONDITION_BYTES]}, id="oversized"),
    pytest.param({"any": [{"project": [f"p{n}"]} for n in range(MAX_NODES)]}, id="too-many-nodes"),
    pytest.param(_nested(MAX_DEPTH), id="nested-too-deep"),
    pytest.param(_nested(100_000), id="nested-100000-deep"),
    pytest.param({"project": _deep_list(100_000)}, id="list-100000-deep"),
]


@pytest.mark.parametrize("conditions", BAD_CONDITIONS)
def test_bad_conditions_are_refused_at_grant_time(
    refusing: tuple[mangostore.Database, str], conditions: Any
) -> None:
    db, ann = refusing
    with pytest.raises(InvalidValueError) as info:
        db.access.grant(ann, "project", "p1", "read", conditions=conditions)
    assert info.value.field == "conditions"
    with pytest.raises(InvalidValueError):
        db.access.deny(ann, "project", "p1", "read", conditions=conditions)
    assert db.permissions.count() == 0


def test_conditions_just_within_the_limits_are_accepted(db: mangostore.Database, ann: str) -> None:
    db.access.grant(ann, "project", "p1", "read", conditions=_nested(3))
    db.access.grant(
        ann,
        "project",
        "p1",
        "read",
        conditions={"any": [{"project": [f"p{n}"]} for n in range(MAX_NODES - 1)]},
    )
    assert db.access.check(ann, "project", "p1", "read", context={"project_id": "p1"})


def test_unreadable_stored_conditions_fail_closed(db: mangostore.Database, ann: str) -> None:
    allow = db.access.grant(ann, "project", "*", "read", conditions={"project": ["p1"]})
    db.execute("UPDATE permissions SET conditions = ? WHERE id = ?", ('{"owner": "ann"}', allow.id))
    assert not db.access.check(ann, "project", "p1", "read", context={"project_id": "p1"})
    db.access.grant(ann, "project", "*", "write")
    deny = db.access.deny(ann, "project", "*", "write", conditions={"project": ["p9"]})
    db.execute("UPDATE permissions SET conditions = ? WHERE id = ?", ('{"x": 1}', deny.id))
    assert not db.access.check(ann, "project", "p1", "write", context={"project_id": "p1"})


def test_stored_conditions_are_canonical_json(db: mangostore.Database, ann: str) -> None:
    record = db.access.grant(
        ann, "project", "p1", "read", conditions={"min_security_level": "high", "project": ("p1",)}
    )
    assert record.conditions == {"min_security_level": "high", "project": ["p1"]}
    (stored,) = db.query("SELECT conditions FROM permissions")
    assert json.loads(stored[0]) == record.conditions


# -- denial logging ------------------------------------------------------------------------


def test_denials_are_logged_and_repeats_aggregated(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    for _ in range(5):
        assert not db.access.check(ann, "project", "p1", "write")
    with pytest.raises(PermissionDenied):
        db.access.require(ann, "project", "p1", "write")
    assert not db.access.check(ann, "project", "p2", "write")
    clock.advance(MINUTE)
    assert not db.access.check(ann, "project", "p1", "write")
    found = denials(db)
    assert [(e.event_data["resource_id"], e.event_data.get("suppressed")) for e in found] == [
        ("p1", None),
        ("p2", None),
        ("p1", 5),
    ]
    first = found[0]
    assert (first.event_type, first.severity, first.user_id) == ("access", "warning", ann)
    assert first.event_data["reason"] == "no_grant"
    assert first.risk_score > 0


def test_explicit_denials_say_so(db: mangostore.Database, ann: str) -> None:
    db.access.deny(ann, "ai", "a1", "read")
    assert not db.access.check(ann, "ai", "a1", "read")
    (event,) = denials(db)
    assert event.event_data["reason"] == "denied"


def test_denials_for_unknown_users_are_logged_without_a_user_key(db: mangostore.Database) -> None:
    assert not db.access.check("ghost", "ai", "a1", "read")
    (event,) = denials(db)
    assert event.user_id is None
    assert event.event_data["user_id"] == "ghost"


def test_allowed_checks_are_not_logged(db: mangostore.Database, ann: str) -> None:
    db.access.grant(ann, "ai", "a1", "read")
    before = db.audit.count()
    for _ in range(10):
        assert db.access.check(ann, "ai", "a1", "read")
    assert db.audit.count() == before


def test_grants_and_revokes_are_audited(db: mangostore.Database, ann: str) -> None:
    grant = db.access.grant(ann, "ai", "a1", "read", granted_by="admin-1")
    db.access.deny(ann, "ai", "a2", "read")
    db.access.revoke(grant.id, revoked_by="admin-1")
    actions = [
        e.event_data["action"]
        for e in db.audit.events(user_id=ann)
        if e.source_component == "permissions"
    ]
    assert actions == ["grant", "deny", "revoke"]


# -- the event throttle ------------------------------------------------


def test_event_throttle_counts_repeats_within_the_interval() -> None:
    throttle = EventThrottle(1_000, max_keys=2)
    assert throttle.admit("a", 0) == 0
    assert throttle.admit("a", 500) is None
    assert throttle.admit("a", 999) is None
    assert throttle.admit("a", 1_000) == 2
    assert throttle.admit("a", 10) == 0  # the clock went back past the last written one
    assert throttle.admit("b", 10) == 0
    assert throttle.admit("c", 10) == 0  # full: forgets, so writes more, never less
    assert throttle.admit("a", 11) == 0


def test_denial_interval_is_configurable(db: mangostore.Database, ann: str) -> None:
    db.access.configure(denial_log_interval_ms=0)
    for _ in range(3):
        db.access.check(ann, "ai", "a1", "read")
    assert len(denials(db)) == 3
