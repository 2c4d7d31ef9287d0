"""The lifecycle: every status change, allowed or refused, and all-or-nothing batches."""

from __future__ import annotations

import itertools

import pytest
from tests.conftest import NotifyWorld

from mangostore.errors import InvalidTransitionError, InvalidValueError, NotFoundError
from mangostore.notify import STATUSES, TRANSITIONS, check_transition

START = 1_717_243_200_000
PAIRS = list(itertools.product(STATUSES, STATUSES))
STAMP = {"delivered": "delivered_at", "read": "read_at", "dismissed": "dismissed_at"}


@pytest.fixture
def world(notify_world: NotifyWorld) -> NotifyWorld:
    """The notification world with a type ``t``."""
    notify_world.db.notify.register_type("t", category="system", template="hello {who}")
    return notify_world


def in_status(world: NotifyWorld, status: str) -> str:
    """Make a notification and put it in ``status`` directly (test setup only)."""
    sent = world.db.notify.send(world.user, "t", {"who": status}, deliver=False)
    world.db.notifications.update(sent.id, status=status)
    return sent.id


def test_the_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(STATUSES)
    for targets in TRANSITIONS.values():
        assert targets <= set(STATUSES)


@pytest.mark.parametrize(("current", "target"), PAIRS)
def test_check_transition(current: str, target: str) -> None:
    if target in TRANSITIONS[current]:
        check_transition(current, target)
    else:
        with pytest.raises(InvalidTransitionError, match=f"{current} notification cannot"):
            check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), PAIRS)
def test_every_transition_through_the_service(
    world: NotifyWorld, current: str, target: str
) -> None:
    db = world.db
    notification_id = in_status(world, current)
    before = db.notifications.get(notification_id)
    world.clock.advance(1_000)
    if target in TRANSITIONS[current]:
        (after,) = db.notify.transition([notification_id], target)
        assert after.status == target
        if target in STAMP:
            assert getattr(after, STAMP[target]) == START + 1_000
    else:
        with pytest.raises(InvalidTransitionError):
            db.notify.transition([notification_id], target)
        assert db.notifications.get(notification_id) == before


@pytest.mark.parametrize("current", STATUSES)
def test_mark_read_and_dismiss_follow_the_table(world: NotifyWorld, current: str) -> None:
    for action, target in (
        (world.db.notify.mark_read, "read"),
        (world.db.notify.dismiss, "dismissed"),
    ):
        notification_id = in_status(world, current)
        if target in TRANSITIONS[current]:
            assert action([notification_id])[0].status == target
        else:
            with pytest.raises(InvalidTransitionError):
                action([notification_id])
            assert world.db.notifications.get(notification_id).status == current


def test_reading_a_batch_is_all_or_nothing(world: NotifyWorld) -> None:
    db = world.db
    good = [db.notify.send(world.user, "t", {"who": str(i)}).id for i in range(3)]
    dismissed = in_status(world, "dismissed")
    with pytest.raises(InvalidTransitionError, match=dismissed):
        db.notify.mark_read([*good, dismissed])
    assert {db.notifications.get(i).status for i in good} == {"delivered"}
    with pytest.raises(NotFoundError, match="nothing was changed"):
        db.notify.mark_read([*good, "no-such-id"])
    assert {db.notifications.get(i).read_at for i in good} == {None}
    done = db.notify.mark_read(good)
    assert [n.id for n in done] == good
    assert {n.status for n in done} == {"read"}
    assert db.notify.unread(world.user) == []


def test_a_single_id_and_duplicates_are_accepted(world: NotifyWorld) -> None:
    sent = world.db.notify.send(world.user, "t", {"who": "x"})
    (read,) = world.db.notify.mark_read([sent.id, sent.id])
    assert read.status == "read"
    (dismissed,) = world.db.notify.dismiss(sent.id)
    assert dismissed.status == "dismissed"


def test_reading_twice_is_refused(world: NotifyWorld) -> None:
    sent = world.db.notify.send(world.user, "t", {"who": "x"})
    world.db.notify.mark_read([sent.id])
    with pytest.raises(InvalidTransitionError, match="read notification cannot become read"):
        world.db.notify.mark_read([sent.id])


def test_an_unknown_status_is_refused(world: NotifyWorld) -> None:
    sent = world.db.notify.send(world.user, "t", {"who": "x"})
    with pytest.raises(InvalidValueError) as caught:
        world.db.notify.transition([sent.id], "archived")
    assert caught.value.field == "status"


def test_unread_lists_newest_first_and_filters_by_project(world: NotifyWorld) -> None:
    db, clock = world.db, world.clock
    project = db.projects.create(user_id=world.user, name="p", path="/p")
    first = db.notify.send(world.user, "t", {"who": "1"})
    clock.advance(1)
    second = db.notify.send(world.user, "t", {"who": "2"}, project_id=project.id)
    clock.advance(1)
    db.notify.send(world.user, "t", {"who": "3"}, deliver=False)  # pending: not shown
    assert [n.id for n in db.notify.unread(world.user)] == [second.id, first.id]
    assert [n.id for n in db.notify.unread(world.user, limit=1)] == [second.id]
    assert [n.id for n in db.notify.unread(world.user, project_id=project.id)] == [second.id]
    other = db.users.create(username="bob")
    assert db.notify.unread(other.id) == []
