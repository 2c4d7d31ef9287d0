"""Batch writes: create_many and update_many run in one transaction, all or nothing, and
report the failing item's index with the reason as the cause."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

import mangostore
from design import Rows, row_counts
from mangostore.clock import ManualClock
from mangostore.errors import (
    BatchError,
    ForeignKeyError,
    InvalidValueError,
    JSONValueError,
    MangoError,
    MissingFieldError,
    NotFoundError,
    UniqueConstraintError,
    UnknownColumnError,
)

pytestmark = pytest.mark.database("clocked_db", "clocked_memory_db")


@pytest.fixture
def rows(db: mangostore.Database) -> Rows:
    return Rows(db)


def _users(n: int, prefix: str = "batch") -> list[dict[str, Any]]:
    return [{"username": f"{prefix}{i}", "security_profile": {"i": i}} for i in range(n)]


def test_batch_error_is_a_mango_error() -> None:
    error = BatchError("item 3 failed", index=3)
    assert isinstance(error, MangoError)
    assert error.index == 3


# -- create_many --------------------------------------------------------------------------


def test_create_many_creates_every_item_in_order(
    db: mangostore.Database, clock: ManualClock
) -> None:
    created = db.users.create_many(_users(5))
    assert [u.username for u in created] == [f"batch{i}" for i in range(5)]
    assert len({u.id for u in created}) == 5
    assert all(uuid.UUID(u.id).version == 7 for u in created)
    assert all(u.created_at == clock.now_ms() for u in created)
    for user in created:
        assert db.users.get(user.id) == user
    assert [u.security_profile for u in created] == [{"i": i} for i in range(5)]


def test_create_many_accepts_any_iterable(db: mangostore.Database) -> None:
    created = db.users.create_many(item for item in _users(3))
    assert db.users.count() == len(created) == 3


def test_create_many_of_nothing(db: mangostore.Database) -> None:
    before = row_counts(db)
    assert db.users.create_many([]) == []
    assert row_counts(db) == before


def _with_bad_item(bad: dict[str, Any]) -> list[dict[str, Any]]:
    items = _users(5)
    items[3] = bad
    return items


@pytest.mark.parametrize(
    ("bad", "cause"),
    [
        ({"username": "x", "nickname": "x"}, UnknownColumnError),
        ({"username": "batch0"}, UniqueConstraintError),
        ({"email": "e@example.org"}, MissingFieldError),
        ({"username": "x", "last_login": "yesterday"}, InvalidValueError),
        ({"username": "x", "preferences": {1, 2}}, JSONValueError),
        ({"username": "x", "voice_profile_id": "nowhere"}, ForeignKeyError),
    ],
)
def test_create_many_rolls_back_everything_when_an_item_fails(
    db: mangostore.Database,
    rows: Rows,
    bad: dict[str, Any],
    cause: type[MangoError],
) -> None:
    rows.user(username="existing")
    before = row_counts(db)
    with pytest.raises(BatchError) as caught:
        db.users.create_many(_with_bad_item(bad))
    assert caught.value.index == 3
    assert type(caught.value.__cause__) is cause
    assert "3" in str(caught.value)
    assert row_counts(db) == before
    assert db.users.get_by_username("batch0") is None


def test_create_many_rolls_back_on_a_clash_with_an_existing_row(
    db: mangostore.Database, rows: Rows
) -> None:
    rows.user(username="taken")
    before = row_counts(db)
    items = _users(5)
    items[3] = {"username": "taken"}
    with pytest.raises(BatchError) as caught:
        db.users.create_many(items)
    assert caught.value.index == 3
    assert isinstance(caught.value.__cause__, UniqueConstraintError)
    assert row_counts(db) == before


def test_create_many_rolls_back_on_a_bad_foreign_key(db: mangostore.Database, rows: Rows) -> None:
    user = rows.user()
    projects: list[dict[str, Any]] = [
        {"user_id": user.id, "name": f"p{i}", "path": f"/p{i}", "security_config": {"i": i}}
        for i in range(5)
    ]
    projects[3]["user_id"] = "no-such-user"
    before = row_counts(db)
    with pytest.raises(BatchError) as caught:
        db.projects.create_many(projects)
    assert caught.value.index == 3
    assert isinstance(caught.value.__cause__, ForeignKeyError)
    assert caught.value.__cause__.field == "user_id"
    assert row_counts(db) == before


def test_create_many_reports_the_first_failing_item(db: mangostore.Database) -> None:
    items = _users(5)
    items[1] = {"username": "x", "bogus": 1}
    items[3] = {"username": "y", "bogus": 2}
    with pytest.raises(BatchError) as caught:
        db.users.create_many(items)
    assert caught.value.index == 1


def test_create_many_of_children_referring_to_parents_made_earlier(
    db: mangostore.Database, rows: Rows
) -> None:
    user = rows.user()
    entities = db.kg_entities.create_many(
        {"user_id": user.id, "entity_type": "concept", "name": f"e{i}"} for i in range(3)
    )
    relations = db.kg_relations.create_many(
        {
            "user_id": user.id,
            "subject_id": entities[i].id,
            "object_id": entities[i + 1].id,
            "predicate": "relates_to",
        }
        for i in range(2)
    )
    assert [r.subject_id for r in relations] == [entities[0].id, entities[1].id]


def test_voice_profiles_created_active_in_one_batch_leave_one_active(
    db: mangostore.Database, rows: Rows
) -> None:
    user = rows.user()
    made = db.voice_profiles.create_many(
        {"user_id": user.id, "name": f"v{i}", "is_active": True} for i in range(3)
    )
    active = db.voice_profiles.list(user_id=user.id, is_active=True)
    assert [p.id for p in active] == [made[-1].id]
    assert db.users.get(user.id).voice_profile_id == made[-1].id


# -- update_many --------------------------------------------------------------------------


def test_update_many_applies_every_change(
    db: mangostore.Database, rows: Rows, clock: ManualClock
) -> None:
    users = [rows.user() for _ in range(4)]
    later = clock.advance(1_000)
    updated = db.users.update_many(
        (u.id, {"email": f"{u.username}@example.org", "security_profile": {"n": i}})
        for i, u in enumerate(users)
    )
    assert [u.id for u in updated] == [u.id for u in users]
    for i, user in enumerate(users):
        again = db.users.get(user.id)
        assert again.email == f"{user.username}@example.org"
        assert again.security_profile == {"n": i}
        assert again.updated_at == later


@pytest.mark.parametrize(
    ("bad", "cause"),
    [
        (lambda users: ("no-such-id", {"email": "x@example.org"}), NotFoundError),
        (lambda users: (users[3].id, {"nickname": "x"}), UnknownColumnError),
        (lambda users: (users[3].id, {"username": users[0].username}), UniqueConstraintError),
        (lambda users: (users[3].id, {"last_login": "soon"}), InvalidValueError),
        (lambda users: (users[3].id, {"voice_profile_id": "nowhere"}), ForeignKeyError),
        (lambda users: (users[3].id, {"security_profile": {"x": {1}}}), JSONValueError),
    ],
)
def test_update_many_rolls_back_everything_when_a_change_fails(
    db: mangostore.Database,
    rows: Rows,
    bad: Callable[[list[Any]], tuple[str, dict[str, Any]]],
    cause: type[MangoError],
) -> None:
    users = [rows.user(username=f"u{i}") for i in range(5)]
    changes: list[tuple[str, dict[str, Any]]] = [
        (u.id, {"email": f"changed{i}@example.org"}) for i, u in enumerate(users)
    ]
    changes[3] = bad(users)
    with pytest.raises(BatchError) as caught:
        db.users.update_many(changes)
    assert caught.value.index == 3
    assert type(caught.value.__cause__) is cause
    for user in users:
        assert db.users.get(user.id) == user


def test_update_many_of_nothing(db: mangostore.Database) -> None:
    assert db.users.update_many([]) == []


# -- nesting in a transaction ---------------------------------------------------------------


def test_batch_inside_a_transaction_commits_with_it(db: mangostore.Database, rows: Rows) -> None:
    with db.transaction():
        owner = rows.user(username="owner")
        made = db.projects.create_many(
            {"user_id": owner.id, "name": f"p{i}", "path": f"/p{i}"} for i in range(3)
        )
        assert db.projects.count(user_id=owner.id) == 3
    assert {p.id for p in db.projects.find_by_user(owner.id)} == {p.id for p in made}


def test_outer_rollback_undoes_a_successful_batch(db: mangostore.Database) -> None:
    before = row_counts(db)

    def batch_then_fail() -> None:
        with db.transaction():
            db.users.create_many(_users(3))
            db.users.update_many([(db.users.get_by_username("batch0").id, {"email": "e@x"})])
            assert db.users.count() == 3
            raise RuntimeError("abandon")

    with pytest.raises(RuntimeError):
        batch_then_fail()
    assert row_counts(db) == before


def test_failed_batch_inside_a_transaction_keeps_the_outer_work(
    db: mangostore.Database,
) -> None:
    with db.transaction():
        kept = db.users.create(username="kept")
        with pytest.raises(BatchError) as caught:
            db.users.create_many(_with_bad_item({"username": "kept"}))
        assert caught.value.index == 3
        assert db.users.count() == 1
        after = db.users.create(username="after")
    assert {u.id for u in db.users.list()} == {kept.id, after.id}
    assert db.users.get_by_username("batch0") is None


def test_nested_batches_in_savepoints(db: mangostore.Database) -> None:
    with db.transaction():
        db.users.create_many(_users(2, "outer"))
        with db.transaction():
            db.users.create_many(_users(2, "inner"))
        with pytest.raises(BatchError):
            db.users.create_many([{"username": "ok"}, {"username": "outer0"}])
    names = sorted(u.username for u in db.users.list())
    assert names == ["inner0", "inner1", "outer0", "outer1"]
