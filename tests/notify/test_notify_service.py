"""Sending: types, resolution through the service, quiet hours, schedules, expiry."""

from __future__ import annotations

import datetime as dt
import inspect

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE, NotifyWorld

import mangostore
from mangostore import notify
from mangostore.clock import ManualClock
from mangostore.errors import (
    ForeignKeyError,
    InvalidValueError,
    NotFoundError,
)
from mangostore.notify import NotificationService, RecordingDeliverer


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp() * 1000)


@pytest.fixture
def world(notify_world: NotifyWorld) -> NotifyWorld:
    """The notification world with a type ``build`` of normal priority."""
    notify_world.db.notify.register_type(
        "build", category="project", template="Build {name} finished", priority="normal"
    )
    return notify_world


def test_exports_are_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(notify).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(notify.__all__) == public


def test_db_notify_is_one_service(world: NotifyWorld) -> None:
    assert isinstance(world.db.notify, NotificationService)
    assert world.db.notify is world.db.notify


# -- types ---------------------------------------------------------------------------------


def test_register_type_is_idempotent_and_updates(world: NotifyWorld) -> None:
    db = world.db
    first = db.notify.get_type("build")
    again = db.notify.register_type(
        "build",
        category="system",
        template="Build {name} done",
        priority="high",
        default_actions=[{"type": "button", "label": "Open log", "command": "open-log"}],
        retention_days=7,
    )
    assert again.id == first.id
    assert (again.category, again.priority, again.retention_days) == ("system", "high", 7)
    assert again.default_actions == [{"type": "button", "label": "Open log", "command": "open-log"}]
    assert db.notification_types.count() == 1
    assert db.notify.get_type(first.id).name == "build"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"category": "email"}, "category"),
        ({"priority": "urgent"}, "priority"),
        ({"retention_days": -1}, "retention_days"),
        ({"retention_days": 1.5}, "retention_days"),
        ({"default_actions": [{"type": "click", "label": "x"}]}, "action_type"),
        ({"default_actions": [{"type": "button"}]}, "action_label"),
        ({"default_actions": [{"type": "button", "label": "x", "run": "rm"}]}, "actions"),
    ],
)
def test_register_type_refuses_bad_values(
    world: NotifyWorld, kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {"category": "system", "template": "hi"} | kwargs
    with pytest.raises(InvalidValueError) as caught:
        world.db.notify.register_type("other", **args)  # type: ignore[arg-type]
    assert caught.value.field == field
    with pytest.raises(NotFoundError):
        world.db.notify.get_type("other")


# -- sending -------------------------------------------------------------------------------


def test_send_delivers_at_once_and_records_the_methods(world: NotifyWorld) -> None:
    sent = world.db.notify.send(world.user, "build", {"name": "api"})
    assert sent.status == "delivered"
    assert sent.delivered_at == world.clock.now_ms()
    assert sent.message == "Build api finished"
    assert sent.title == "build"
    assert sent.priority == "normal"
    assert sent.delivery_methods == ["desktop", "log"]
    assert world.desktop.ids == [sent.id]
    assert world.voice.ids == []
    assert [s.status for s in world.db.notify.deliveries(sent.id)] == ["delivered", "delivered"]
    assert world.db.notify.unread(world.user) == [sent]


def test_send_takes_priority_title_metadata_and_project(world: NotifyWorld) -> None:
    project = world.db.projects.create(user_id=world.user, name="api", path="/srv/api")
    sent = world.db.notify.send(
        world.user,
        "build",
        {"name": "api"},
        project_id=project.id,
        priority="critical",
        title="Build finished",
        metadata={"run": 7},
    )
    assert (sent.priority, sent.title, sent.project_id) == (
        "critical",
        "Build finished",
        project.id,
    )
    assert world.db.notifications.get(sent.id).metadata == {"run": 7}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"priority": "urgent"}, InvalidValueError),
        ({"scheduled_at": "tomorrow"}, InvalidValueError),
        ({"expires_at": 1.5}, InvalidValueError),
        ({"title": 5}, InvalidValueError),
        ({"actions": [{"type": "button"}]}, InvalidValueError),
        ({"project_id": "no-such-project"}, ForeignKeyError),
    ],
)
def test_send_refuses_bad_input_and_writes_nothing(
    world: NotifyWorld, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        world.db.notify.send(world.user, "build", {"name": "x"}, **kwargs)  # type: ignore[arg-type]
    assert world.db.notifications.count() == 0
    assert world.db.query("SELECT count(*) FROM notification_deliveries")[0][0] == 0


def test_send_to_unknown_user_or_type(world: NotifyWorld) -> None:
    with pytest.raises(NotFoundError):
        world.db.notify.send("nobody", "build", {"name": "x"})
    with pytest.raises(NotFoundError):
        world.db.notify.send(world.user, "nothing", {})


def test_without_a_deliverer_a_delivery_waits(world: NotifyWorld) -> None:
    world.db.notify.unregister_deliverer("desktop")
    sent = world.db.notify.send(world.user, "build", {"name": "api"})
    assert sent.status == "pending"
    assert world.db.notify.due() == [sent]
    assert world.db.notify.deliver_due().attempted == 0
    world.db.notify.register_deliverer(world.desktop)
    report = world.db.notify.deliver_due()
    assert report.delivered == 1
    assert world.db.notifications.get(sent.id).status == "delivered"
    assert world.desktop.ids == [sent.id]


def test_register_deliverer_refuses_unknown_methods(world: NotifyWorld) -> None:
    with pytest.raises(InvalidValueError) as caught:
        world.db.notify.register_deliverer(RecordingDeliverer("pager"))
    assert caught.value.field == "method"
    with pytest.raises(InvalidValueError):
        world.db.notify.register_deliverer(object())  # type: ignore[arg-type]


def test_send_with_deliver_false_leaves_it_to_the_scheduler(world: NotifyWorld) -> None:
    sent = world.db.notify.send(world.user, "build", {"name": "api"}, deliver=False)
    assert sent.status == "pending"
    assert world.desktop.ids == []
    assert world.db.notify.deliver_due().delivered == 2
    assert world.db.notifications.get(sent.id).status == "delivered"


# -- disabled and below the threshold ------------------------------------------------------


def test_a_disabled_type_is_recorded_but_never_delivered(world: NotifyWorld) -> None:
    world.db.notify.set_preferences(world.user, "build", enabled=False)
    sent = world.db.notify.send(world.user, "build", {"name": "api"}, priority="critical")
    assert sent.status == "dismissed"
    assert sent.dismissed_at == world.clock.now_ms()
    assert sent.delivery_methods == []
    assert world.desktop.ids == []
    assert world.db.notify.unread(world.user) == []
    assert world.db.notify.history(world.user) == [sent]
    world.clock.advance(3_600_000)
    assert world.db.notify.deliver_due().attempted == 0


def test_below_the_threshold_only_the_log_is_used(world: NotifyWorld) -> None:
    world.db.notify.set_preferences(world.user, "build", urgency_threshold="high")
    sent = world.db.notify.send(world.user, "build", {"name": "api"}, priority="normal")
    assert sent.delivery_methods == ["log"]
    assert sent.status == "delivered"
    assert world.desktop.ids == []


def test_below_the_threshold_without_log_reaches_the_inbox_only(world: NotifyWorld) -> None:
    world.db.notify.set_preferences(
        world.user, "build", delivery_methods=["desktop"], urgency_threshold="high"
    )
    sent = world.db.notify.send(world.user, "build", {"name": "api"}, priority="low")
    assert sent.delivery_methods == []
    assert sent.status == "delivered"
    assert world.db.notify.deliveries(sent.id) == []
    assert world.db.notify.unread(world.user) == [sent]


def test_a_project_override_applies_to_that_project_only(world: NotifyWorld) -> None:
    db = world.db
    noisy = db.projects.create(user_id=world.user, name="noisy", path="/noisy")
    db.notify.set_preferences(
        world.user,
        "build",
        delivery_methods=["desktop", "voice", "log"],
        project_overrides={noisy.id: {"delivery_methods": ["log"]}},
    )
    quiet = db.notify.send(world.user, "build", {"name": "x"}, project_id=noisy.id)
    loud = db.notify.send(world.user, "build", {"name": "y"})
    assert quiet.delivery_methods == ["log"]
    assert loud.delivery_methods == ["desktop", "voice", "log"]
    assert world.voice.ids == [loud.id]


def test_voice_category_defaults_to_voice(world: NotifyWorld) -> None:
    world.db.notify.register_type("heard", category="voice", template="ok")
    sent = world.db.notify.send(world.user, "heard")
    assert sent.delivery_methods == ["voice", "log"]
    assert world.voice.ids == [sent.id]


# -- quiet hours through the service -------------------------------------------------------


def test_quiet_hours_hold_desktop_and_log_at_once(world: NotifyWorld) -> None:
    db, clock = world.db, world.clock
    db.notify.set_timezone(world.user, "America/New_York")
    db.notify.set_preferences(world.user, "build", quiet_hours=("22:00", "07:00"))
    clock.set(utc(2024, 3, 10, 4))  # 23:00 EST on the night clocks spring forward
    sent = db.notify.send(world.user, "build", {"name": "api"})
    end = utc(2024, 3, 10, 11)  # 07:00 EDT
    assert sent.status == "pending"
    assert sent.scheduled_at == end
    assert sent.delivery_methods == ["desktop", "log"]
    states = {s.method: s for s in db.notify.deliveries(sent.id)}
    assert states["log"].status == "delivered"
    assert (states["desktop"].status, states["desktop"].next_attempt_at) == ("pending", end)
    assert world.desktop.ids == []
    assert db.notify.unread(world.user) == []

    clock.set(end - 1)
    assert db.notify.due() == []
    assert db.notify.deliver_due().attempted == 0
    clock.set(end)
    assert [n.id for n in db.notify.due()] == [sent.id]
    assert db.notify.deliver_due().delivered == 1
    delivered = db.notifications.get(sent.id)
    assert (delivered.status, delivered.delivered_at) == ("delivered", end)
    assert world.desktop.ids == [sent.id]


def test_quiet_hours_on_the_fall_back_night(world: NotifyWorld) -> None:
    db = world.db
    db.notify.set_timezone(world.user, "America/New_York")
    db.notify.set_preferences(world.user, "build", quiet_hours=("22:00", "07:00"))
    world.clock.set(utc(2024, 11, 3, 3))  # 23:00 EDT
    sent = db.notify.send(world.user, "build", {"name": "api"})
    assert sent.scheduled_at == utc(2024, 11, 3, 12)  # 07:00 EST


def test_quiet_hours_in_paris(world: NotifyWorld) -> None:
    db = world.db
    db.notify.set_timezone(world.user, "Europe/Paris")
    db.notify.set_preferences(world.user, "build", quiet_hours=("22:00", "07:00"))
    world.clock.set(utc(2024, 3, 30, 21, 30))  # 22:30 CET, the night of the change
    sent = db.notify.send(world.user, "build", {"name": "api"})
    assert sent.scheduled_at == utc(2024, 3, 31, 5)  # 07:00 CEST
    world.clock.set(utc(2024, 3, 30, 20, 30))  # 21:30 CET: not quiet yet
    assert db.notify.send(world.user, "build", {"name": "x"}).status == "delivered"


def test_critical_ignores_quiet_hours(world: NotifyWorld) -> None:
    db = world.db
    db.notify.set_preferences(world.user, "build", quiet_hours=("00:00", "23:59"))
    sent = db.notify.send(world.user, "build", {"name": "api"}, priority="critical")
    assert sent.status == "delivered"
    assert world.desktop.ids == [sent.id]


def test_quiet_hours_with_no_log_method_hold_everything(world: NotifyWorld) -> None:
    db = world.db
    db.notify.set_preferences(
        world.user, "build", delivery_methods=["desktop"], quiet_hours=("11:00", "13:00")
    )
    sent = db.notify.send(world.user, "build", {"name": "api"})
    assert sent.status == "pending"
    assert sent.scheduled_at == utc(2024, 6, 1, 13)


# -- scheduled and expired -----------------------------------------------------------------


def test_scheduled_notifications_wait_for_their_time(world: NotifyWorld) -> None:
    db, clock = world.db, world.clock
    later = clock.now_ms() + 60_000
    sent = db.notify.send(world.user, "build", {"name": "api"}, scheduled_at=later)
    assert (sent.status, sent.scheduled_at) == ("pending", later)
    assert db.notify.due() == []
    assert db.notify.deliver_due().attempted == 0
    clock.set(later)
    assert [n.id for n in db.notify.due()] == [sent.id]
    assert db.notify.deliver_due().delivered == 2
    assert db.notifications.get(sent.id).status == "delivered"
    assert db.notify.due() == []


def test_a_schedule_in_the_past_means_now(world: NotifyWorld) -> None:
    sent = world.db.notify.send(
        world.user, "build", {"name": "api"}, scheduled_at=world.clock.now_ms() - 5
    )
    assert sent.status == "delivered"


def test_a_schedule_into_quiet_hours_is_held_until_they_end(world: NotifyWorld) -> None:
    db = world.db
    db.notify.set_preferences(world.user, "build", quiet_hours=("22:00", "07:00"))
    sent = db.notify.send(world.user, "build", {"name": "x"}, scheduled_at=utc(2024, 6, 1, 23))
    assert sent.scheduled_at == utc(2024, 6, 2, 7)
    log = {s.method: s for s in db.notify.deliveries(sent.id)}["log"]
    assert log.next_attempt_at == utc(2024, 6, 1, 23)  # the log at the scheduled time


def test_an_inbox_only_notification_scheduled_later_arrives_on_time(world: NotifyWorld) -> None:
    db, clock = world.db, world.clock
    db.notify.set_preferences(world.user, "build", delivery_methods=["desktop"],
                              urgency_threshold="critical")  # fmt: skip
    later = clock.now_ms() + 1_000
    sent = db.notify.send(world.user, "build", {"name": "x"}, scheduled_at=later)
    assert sent.status == "pending"
    assert db.notify.deliver_due().settled == 0
    clock.set(later)
    assert db.notify.deliver_due().settled == 1
    assert db.notifications.get(sent.id).status == "delivered"


def test_an_expired_notification_is_never_delivered(world: NotifyWorld) -> None:
    db, clock = world.db, world.clock
    now = clock.now_ms()
    sent = db.notify.send(world.user, "build", {"name": "x"}, expires_at=now)
    assert sent.status == "pending"
    assert world.desktop.ids == []
    assert {s.status for s in db.notify.deliveries(sent.id)} == {"cancelled"}
    assert db.notify.due() == []
    clock.advance(3_600_000)
    assert db.notify.deliver_due().attempted == 0
    assert db.notifications.get(sent.id).status == "pending"


def test_a_notification_expiring_before_its_time_is_never_delivered(world: NotifyWorld) -> None:
    db, clock = world.db, world.clock
    now = clock.now_ms()
    sent = db.notify.send(
        world.user, "build", {"name": "x"}, scheduled_at=now + 10_000, expires_at=now + 20_000
    )
    clock.set(now + 10_000)
    world.desktop.fail_next(1)
    assert db.notify.deliver_due().failed == 1  # desktop failed, log delivered
    clock.set(now + 20_000)  # the retry is due after the expiry
    assert db.notify.due() == []
    report = db.notify.deliver_due(now + 40_000)
    assert (report.attempted, report.expired) == (0, 1)
    desktop = {s.method: s for s in db.notify.deliveries(sent.id)}["desktop"]
    assert (desktop.status, desktop.error) == ("cancelled", "expired before delivery")
    assert world.desktop.ids == []


def test_expired_notifications_leave_the_unread_list(world: NotifyWorld) -> None:
    db, clock = world.db, world.clock
    sent = db.notify.send(world.user, "build", {"name": "x"}, expires_at=clock.now_ms() + 10)
    assert db.notify.unread(world.user) == [sent]
    clock.advance(10)
    assert db.notify.unread(world.user) == []


def test_due_lists_unscheduled_first_then_by_time(world: NotifyWorld) -> None:
    db, clock = world.db, world.clock
    db.notify.unregister_deliverer("desktop")
    now = clock.now_ms()
    late = db.notify.send(world.user, "build", {"name": "late"}, scheduled_at=now + 20)
    early = db.notify.send(world.user, "build", {"name": "early"}, scheduled_at=now + 10)
    unscheduled = db.notify.send(world.user, "build", {"name": "now"})
    assert [n.id for n in db.notify.due(now + 20)] == [unscheduled.id, early.id, late.id]
    assert [n.id for n in db.notify.due(now + 20, limit=2)] == [unscheduled.id, early.id]
    assert [n.id for n in db.notify.due(now + 10)] == [unscheduled.id, early.id]


def test_an_encrypted_database_keeps_metadata_encrypted(db_path: object) -> None:
    clock = ManualClock()
    settings = mangostore.Settings(kdf=FAST_KDF)
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=settings, clock=clock).db as db:  # type: ignore[arg-type]
        user = db.users.create(username="ann")
        db.notify.register_type("t", category="ai", template="{x}")
        sent = db.notify.send(user.id, "t", {"x": "hello"}, metadata={"secret": "s3cr3t"})
        raw = db.query("SELECT metadata FROM notifications WHERE id = ?", (sent.id,))[0][0]
        assert isinstance(raw, bytes)
        assert b"s3cr3t" not in raw
        assert db.notify.history(user.id)[0].metadata == {"secret": "s3cr3t"}


def test_resolve_previews_without_sending(world: NotifyWorld) -> None:
    world.db.notify.set_preferences(world.user, "build", quiet_hours=("11:00", "13:00"))
    plan = world.db.notify.resolve(world.user, "build", priority="high")
    assert plan.held == ("desktop",)
    assert plan.held_until == utc(2024, 6, 1, 13)
    assert world.db.notifications.count() == 0
    assert world.db.notify.timezone(world.user) is dt.UTC
