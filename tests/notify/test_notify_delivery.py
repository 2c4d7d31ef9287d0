"""Deliverers, failures, retries with backoff, and deliveries interrupted mid-way."""

from __future__ import annotations

import logging

import pytest
from tests.conftest import NotifyWorld

import mangostore
from mangostore.clock import ManualClock
from mangostore.errors import ConfigurationError, DeliveryError
from mangostore.notify import (
    LOGGER_NAME,
    Deliverer,
    LogDeliverer,
    RecordingDeliverer,
    RetryPolicy,
)
from mangostore.records import Notification

START = 1_717_243_200_000  # 2024-06-01 12:00 UTC


@pytest.fixture
def world(notify_world: NotifyWorld) -> NotifyWorld:
    """The notification world with a type ``build`` and retries: four attempts, 1 s, 2 s, 4 s."""
    notify_world.db.notify.register_type(
        "build", category="project", template="Build {name} finished"
    )
    notify_world.db.notify.retry = RetryPolicy(max_attempts=4, base_delay_ms=1_000, factor=2.0)
    return notify_world


def test_implementations_conform_to_the_protocol() -> None:
    assert isinstance(LogDeliverer(), Deliverer)
    assert isinstance(RecordingDeliverer("voice"), Deliverer)


# -- the retry policy ----------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay_ms=1_000, factor=2, max_delay_ms=5_000)
    assert [policy.delay_ms(n) for n in range(1, 6)] == [1_000, 2_000, 4_000, 5_000, 5_000]
    assert policy.delay_ms(10_000) == 5_000
    assert policy.next_attempt_at(1, 100) == 1_100
    assert policy.next_attempt_at(9, 0) == 5_000
    assert policy.next_attempt_at(10, 0) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"base_delay_ms": -1},
        {"factor": 0.5},
        {"claim_timeout_ms": 1.5},
        {"max_attempts": True},
    ],
)
def test_policy_refuses_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# -- failures and retries ------------------------------------------------------------------


def test_a_failure_is_recorded_and_retried_with_backoff_until_the_limit(world: NotifyWorld) -> None:
    db, clock, desktop = world.db, world.clock, world.desktop
    desktop.fail_next(100, "display unavailable")
    sent = db.notify.send(world.user, "build", {"name": "api"})
    assert sent.status == "failed"

    def desktop_state() -> tuple[str, int, str | None, int | None]:
        state = {s.method: s for s in db.notify.deliveries(sent.id)}["desktop"]
        return state.status, state.attempt, state.error, state.next_attempt_at

    assert desktop_state() == ("failed", 1, "display unavailable", START + 1_000)
    # Not due yet: nothing happens.
    assert db.notify.deliver_due(START + 999).attempted == 0
    expected_next = {2: START + 1_000 + 2_000, 3: START + 3_000 + 4_000}
    now = START + 1_000
    for attempt in (2, 3):
        clock.set(now)
        report = db.notify.deliver_due()
        assert (report.attempted, report.failed, report.gave_up) == (1, 1, 0)
        assert desktop_state() == ("failed", attempt, "display unavailable", expected_next[attempt])
        now = expected_next[attempt]
    clock.set(now)
    report = db.notify.deliver_due()
    assert (report.attempted, report.failed, report.gave_up) == (1, 0, 1)
    assert desktop_state() == ("failed", 4, "display unavailable", None)
    # Given up: never tried again, but kept, failed, with its reason.
    clock.advance(10**9)
    assert db.notify.deliver_due().attempted == 0
    assert desktop.attempts == 4
    kept = db.notifications.get(sent.id)
    assert kept.status == "failed"
    assert db.notify.history(world.user, status="failed") == [kept]


def test_a_retry_that_succeeds_delivers(world: NotifyWorld) -> None:
    db, desktop = world.db, world.desktop
    desktop.fail_next(2)
    sent = db.notify.send(world.user, "build", {"name": "api"})
    assert db.notify.deliver_due(START + 1_000).failed == 1
    report = db.notify.deliver_due(START + 3_000)
    assert (report.attempted, report.delivered) == (1, 1)
    delivered = db.notifications.get(sent.id)
    assert (delivered.status, delivered.delivered_at) == ("delivered", START + 3_000)
    state = {s.method: s for s in db.notify.deliveries(sent.id)}["desktop"]
    assert (state.status, state.attempt, state.next_attempt_at) == ("delivered", 3, None)
    assert desktop.ids == [sent.id]


def test_any_exception_of_a_deliverer_is_a_failed_attempt(world: NotifyWorld) -> None:
    def broken(notification: Notification) -> None:
        raise RuntimeError("socket closed")

    world.db.notify.register_deliverer(RecordingDeliverer("desktop", on_deliver=broken))
    sent = world.db.notify.send(world.user, "build", {"name": "api"})
    assert sent.status == "failed"
    state = {s.method: s for s in world.db.notify.deliveries(sent.id)}["desktop"]
    assert state.error == "RuntimeError: socket closed"


def test_a_failed_method_does_not_block_the_others(world: NotifyWorld) -> None:
    voice = RecordingDeliverer("voice")
    world.db.notify.register_deliverer(voice)
    world.db.notify.set_preferences(world.user, "build", delivery_methods=["desktop", "voice"])
    world.desktop.fail_next()
    sent = world.db.notify.send(world.user, "build", {"name": "api"})
    assert voice.ids == [sent.id]
    assert sent.status == "failed"


class ProcessDied(BaseException):
    """Stands for the process being killed in the middle of a delivery."""


def test_a_delivery_interrupted_by_a_crash_is_retried_after_its_claim_lapses(
    world: NotifyWorld,
) -> None:
    db = world.db
    db.notify.retry = RetryPolicy(claim_timeout_ms=60_000)

    def die(notification: Notification) -> None:
        raise ProcessDied

    db.notify.register_deliverer(RecordingDeliverer("desktop", on_deliver=die))
    with pytest.raises(ProcessDied):
        db.notify.send(world.user, "build", {"name": "api"})
    (sent,) = db.notify.history(world.user)
    assert sent.status == "pending"  # committed before the deliverer ran
    state = {s.method: s for s in db.notify.deliveries(sent.id)}["desktop"]
    assert (state.status, state.attempt, state.next_attempt_at) == ("pending", 1, START + 60_000)
    # While the claim holds, nobody else runs it.
    db.notify.register_deliverer(world.desktop)
    assert db.notify.deliver_due(START + 59_999).attempted == 0
    report = db.notify.deliver_due(START + 60_000)
    assert report.delivered == 2  # the desktop, and the log that never got its turn
    assert world.desktop.ids == [sent.id]
    assert db.notifications.get(sent.id).status == "delivered"


def test_a_dismissed_notification_is_not_retried(world: NotifyWorld) -> None:
    db = world.db
    world.desktop.fail_next(5)
    sent = db.notify.send(world.user, "build", {"name": "api"})
    db.notify.dismiss([sent.id])
    assert db.notify.deliver_due(START + 10**9).attempted == 0
    state = {s.method: s for s in db.notify.deliveries(sent.id)}["desktop"]
    assert (state.status, state.error) == ("cancelled", "dismissed before delivery")


def test_deliver_due_respects_its_limit(world: NotifyWorld) -> None:
    db = world.db
    for i in range(5):
        db.notify.send(world.user, "build", {"name": str(i)}, deliver=False)
    assert db.notify.deliver_due(limit=3).attempted == 3
    assert db.notify.deliver_due(limit=100).attempted == 7
    assert len(world.desktop.ids) == 5


def test_concurrent_schedulers_deliver_each_notification_once(tmp_path: object) -> None:
    import threading
    from pathlib import Path

    path = Path(str(tmp_path)) / "n.db"
    clock = ManualClock(START)
    with mangostore.create(path, encrypted=False, clock=clock).db as db:
        user = db.users.create(username="ann")
        db.notify.register_type("t", category="system", template="x")
        desktop = RecordingDeliverer("desktop")
        db.notify.register_deliverer(desktop)
        for _ in range(40):
            db.notify.send(user.id, "t", deliver=False)
        barrier = threading.Barrier(4)

        def scheduler() -> None:
            barrier.wait()
            for _ in range(10):
                db.notify.deliver_due(limit=5)

        threads = [threading.Thread(target=scheduler) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(desktop.ids) == sorted({n.id for n in db.notify.history(user.id)})
        assert len(desktop.ids) == 40


# -- the log deliverer ---------------------------------------------------------------------


def test_log_deliverer_writes_one_line_without_metadata(
    caplog: pytest.LogCaptureFixture, memory_db: mangostore.Database
) -> None:
    db = memory_db
    user = db.users.create(username="ann")
    db.notify.register_type("alert", category="system", template="Disk {disk} is full")
    with caplog.at_level(logging.DEBUG, logger=LOGGER_NAME):
        sent = db.notify.send(
            user.id,
            "alert",
            {"disk": "/dev/sda\nnotification forged"},
            priority="high",
            metadata={"token": "very-secret-value"},
        )
    lines = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert len(lines) == 1
    record = lines[0]
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert sent.id in text
    assert "Disk /dev/sda\\nnotification forged is full" in text
    assert "\n" not in text
    assert "very-secret-value" not in caplog.text


def test_log_levels_follow_priority(caplog: pytest.LogCaptureFixture, world: NotifyWorld) -> None:
    world.db.notify.set_preferences(world.user, "build", delivery_methods=["log"],
                                    urgency_threshold="low")  # fmt: skip
    with caplog.at_level(logging.DEBUG, logger=LOGGER_NAME):
        for priority in ("low", "normal", "high", "critical"):
            world.db.notify.send(world.user, "build", {"name": "x"}, priority=priority)
    levels = [r.levelno for r in caplog.records if r.name == LOGGER_NAME]
    assert levels == [logging.DEBUG, logging.INFO, logging.WARNING, logging.CRITICAL]


def test_recording_deliverer_fails_on_demand() -> None:
    double = RecordingDeliverer("voice")
    double.fail_next(1, "speaker off")
    with pytest.raises(DeliveryError, match="speaker off"):
        double.deliver(None)  # type: ignore[arg-type]
    assert double.attempts == 1
    assert double.delivered == []
