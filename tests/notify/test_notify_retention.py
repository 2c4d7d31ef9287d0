"""The retention sweep: each type keeps its notifications for its own number of days."""

from __future__ import annotations

import pytest

import mangostore
from mangostore.clock import ManualClock
from mangostore.notify import RecordingDeliverer

DAY = 86_400_000
START = 1_717_243_200_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


def register_types(database: mangostore.Database) -> None:
    """Types keeping their notifications 1, 30, 0 days and for ever; a desktop deliverer."""
    database.notify.register_type("short", category="system", template="s", retention_days=1)
    database.notify.register_type(
        "long",
        category="system",
        template="l",
        retention_days=30,
        default_actions=[{"type": "button", "label": "ok"}],
    )
    database.notify.register_type("keep", category="system", template="k", retention_days=None)
    database.notify.register_type("now", category="system", template="n", retention_days=0)
    database.notify.register_deliverer(RecordingDeliverer("desktop"))


pytestmark = pytest.mark.database("clocked_db", setup=register_types)


def count(db: mangostore.Database, table: str) -> int:
    return int(db.query(f"SELECT count(*) FROM {table}")[0][0])


def test_each_type_keeps_its_own_days(db: mangostore.Database) -> None:
    clock = db.clock
    assert isinstance(clock, ManualClock)
    user = db.users.create(username="ann")
    made: dict[str, str] = {}
    for name in ("short", "long", "keep"):
        made[name] = db.notify.send(user.id, name).id
    clock.advance(DAY)
    # Exactly one day old: not older than a one-day retention yet.
    assert db.notify.apply_retention() == 0
    clock.advance(1)
    assert db.notify.apply_retention() == 1
    assert not db.notifications.exists(made["short"])
    assert db.notifications.exists(made["long"])
    clock.set(START + 31 * DAY)
    assert db.notify.apply_retention() == 1
    assert db.notify.history(user.id) == [db.notifications.get(made["keep"])]
    clock.set(START + 10_000 * DAY)
    assert db.notify.apply_retention() == 0


def test_actions_and_deliveries_go_with_their_notification(db: mangostore.Database) -> None:
    user = db.users.create(username="ann")
    sent = db.notify.send(user.id, "long")
    db.notify.attach_action(sent.id, "auto", "archive")
    assert count(db, "notification_actions") == 2
    assert count(db, "notification_deliveries") == 2
    assert db.notify.apply_retention(START + 31 * DAY) == 1
    assert count(db, "notifications") == 0
    assert count(db, "notification_actions") == 0
    assert count(db, "notification_deliveries") == 0


def test_zero_days_removes_everything_older_than_now(db: mangostore.Database) -> None:
    user = db.users.create(username="ann")
    db.notify.send(user.id, "now")
    assert db.notify.apply_retention(START) == 0
    assert db.notify.apply_retention(START + 1) == 1


def test_retention_applies_whatever_the_status(db: mangostore.Database) -> None:
    user = db.users.create(username="ann")
    pending = db.notify.send(user.id, "short", scheduled_at=START + 10 * DAY)
    read = db.notify.send(user.id, "short")
    db.notify.mark_read([read.id])
    assert pending.status == "pending"
    assert db.notify.apply_retention(START + 2 * DAY) == 2
