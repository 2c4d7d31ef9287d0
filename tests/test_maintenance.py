"""``db.maintenance()``: after the clock moves on, one call expires everything that should
expire, delivers what is due, and reports each job; a failing job stops no other."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path

import pytest
from tests.conftest import CHEAP_PASSWORDS

import mangostore
from mangostore.clock import ManualClock
from mangostore.errors import AuthenticationError, ConfigurationError, DatabaseError
from mangostore.maintenance import JOBS, MaintenanceReport
from mangostore.notify import RecordingDeliverer
from mangostore.privacy import RetentionPolicy

MINUTE = 60_000
DAY = 86_400_000


@dataclasses.dataclass
class Aged:
    """What a database holds that should expire, and the recorder of its deliveries."""

    user: str
    entity: str
    desktop: RecordingDeliverer
    scheduled: str


def fill(db: mangostore.Database) -> Aged:
    """Give ``db`` one of everything that expires, is due later, or is buffered."""
    db.kg.set_embedder(None)
    db.auth.configure(policy=CHEAP_PASSWORDS, sleep=lambda seconds: None)
    user = db.users.create(username="ann").id
    desktop = RecordingDeliverer("desktop")
    db.notify.register_deliverer(desktop)
    db.notify.register_type("ping", category="system", template="ping", retention_days=30)
    db.notify.set_preferences(user, "ping", delivery_methods=["desktop"])
    db.notify.send(user, "ping")  # delivered now, deleted after 30 days
    scheduled = db.notify.send(user, "ping", scheduled_at=db.clock.now_ms() + DAY).id
    db.memory.remember(user, "shell", "fish", ttl=dt.timedelta(days=1))
    conversation = db.conversations.create(user, ttl=dt.timedelta(days=1))
    db.conversations.append(conversation.id, "user", "hello")
    db.sessions.revoke(db.sessions.issue(user).session.id)
    with pytest.raises(AuthenticationError):
        db.auth.login("ann", "not her password")
    db.command_history.record(user, "git push")
    entity = db.kg.upsert_entity(user, "command", "git").entity.id
    db.kg.get(entity)  # one read, buffered
    return Aged(user, entity, desktop, scheduled)


def test_one_call_expires_what_expired(
    clocked_db: mangostore.Database, clock: ManualClock, tmp_path: Path
) -> None:
    db = clocked_db
    aged = fill(db)
    clock.advance(100 * DAY)

    report = db.maintenance(archive_dir_path=tmp_path)

    assert report.ok, report.failures
    assert report.now == clock.now_ms()
    assert report.access_counts == 1
    assert db.kg.get(aged.entity).access_count >= 1
    assert report.deliveries is not None
    assert report.deliveries.delivered == 1
    assert aged.desktop.delivered[-1].id == aged.scheduled
    assert report.memory is not None
    assert report.memory.expired == 1
    assert db.ai_memory.count() == 0
    assert report.conversations == 1
    assert db.query("SELECT count(*) FROM ai_messages")[0][0] == 0
    assert report.sessions == 1
    assert db.user_sessions.count() == 0
    assert report.login_attempts == 1
    assert db.query("SELECT count(*) FROM login_attempts")[0][0] == 0
    assert report.notifications_deleted == 2
    assert db.notifications.count() == 0
    assert report.retention is not None
    history = report.retention.table("command_history")
    assert (history.archived, history.deleted) == (1, 1)
    assert history.archive is not None
    assert history.archive.parent == tmp_path
    assert report.checkpointed is True
    assert report.deleted >= 7


def test_nothing_expires_before_its_time(
    clocked_db: mangostore.Database, clock: ManualClock
) -> None:
    db = clocked_db
    aged = fill(db)
    clock.advance(10 * MINUTE)  # within the failed login's window too

    report = db.maintenance()

    assert report.ok, report.failures
    assert report.deleted == 0
    assert report.checkpointed is None  # nothing deleted, no checkpoint
    assert report.deliveries is not None
    assert report.deliveries.attempted == 0
    assert aged.scheduled not in {n.id for n in aged.desktop.delivered}
    assert db.ai_memory.count() == 1
    assert db.user_sessions.count() == 1


def test_now_may_be_given_as_an_aware_datetime(clocked_db: mangostore.Database) -> None:
    db = clocked_db
    fill(db)
    later = dt.datetime.fromtimestamp(db.clock.now_ms() // 1000, dt.UTC) + dt.timedelta(days=2)

    report = db.maintenance(later)

    assert report.now == int(later.timestamp()) * 1000
    assert report.memory is not None
    assert report.memory.expired == 0
    assert report.conversations == 1


def test_a_failing_job_stops_no_other(
    clocked_db: mangostore.Database, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    db = clocked_db
    fill(db)
    clock.advance(100 * DAY)

    # An in-memory database has no place for the archive of its old command history.
    with caplog.at_level(logging.WARNING, logger="mangostore.maintenance"):
        report = db.maintenance()

    assert not report.ok
    assert set(report.failures) == {"retention"}
    assert isinstance(report.failures["retention"], ConfigurationError)
    assert report.retention is None
    assert "retention" in caplog.text
    # Every other job ran, those after it included.
    assert report.conversations == 1
    assert report.sessions == 1
    assert report.notifications_deleted == 2
    assert report.checkpointed is True


def test_retention_policies_are_passed_on(
    clocked_db: mangostore.Database, clock: ManualClock
) -> None:
    db = clocked_db
    fill(db)
    clock.advance(100 * DAY)
    keep = [RetentionPolicy("command_history", None)]

    report = db.maintenance(policies=keep)

    assert report.ok, report.failures
    assert report.retention is not None
    assert report.retention.table("command_history").deleted == 0
    assert db.command_history.count() == 1


def test_maintenance_refuses_to_run_inside_a_transaction(
    clocked_db: mangostore.Database,
) -> None:
    with clocked_db.transaction(), pytest.raises(DatabaseError, match=r"outside db\.transaction"):
        clocked_db.maintenance()


def test_an_empty_database_needs_nothing(clocked_db: mangostore.Database) -> None:
    report = clocked_db.maintenance()
    assert report == MaintenanceReport(
        now=report.now,
        deliveries=report.deliveries,
        memory=report.memory,
        retention=report.retention,
    )
    assert report.ok
    assert report.deleted == 0


def test_every_job_is_named_once() -> None:
    assert len(JOBS) == len(set(JOBS)) == 10


def test_a_database_that_never_stored_a_file_skips_the_file_sweep(tmp_path: Path) -> None:
    with mangostore.open(tmp_path / "plain.db", encrypted=False, create=True) as db:
        report = db.maintenance()
        assert report.ok, report.failures
        assert report.files is None
        assert not (tmp_path / "plain.db.files").exists()
