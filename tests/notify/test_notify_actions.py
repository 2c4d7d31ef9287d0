"""Actions attached to notifications: defaults, per send, and executed exactly once."""

from __future__ import annotations

import threading

import pytest

import mangostore
from mangostore.clock import ManualClock
from mangostore.errors import InvalidTransitionError, InvalidValueError, NotFoundError
from mangostore.records import NotificationAction

START = 1_717_243_200_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


def ann_and_build(database: mangostore.Database) -> None:
    """The user ``ann`` and a type ``build`` with two default actions."""
    database.users.create(username="ann")
    database.notify.register_type(
        "build",
        category="project",
        template="Build {name} failed",
        default_actions=[
            {"type": "button", "label": "Open log", "command": "open-log", "data": {"n": 1}},
            {"type": "voice_command", "label": "retry build"},
        ],
    )


# A file, so the racing threads below read through the reader pool as well.
pytestmark = pytest.mark.database("clocked_plain_file_db", setup=ann_and_build)


def user_id(db: mangostore.Database) -> str:
    user = db.users.get_by_username("ann")
    assert user is not None
    return user.id


def test_default_and_per_send_actions_are_attached(db: mangostore.Database) -> None:
    sent = db.notify.send(
        user_id(db), "build", {"name": "api"}, actions=[{"type": "auto", "label": "collect logs"}]
    )
    actions = db.notify.actions(sent.id)
    assert [(a.action_type, a.action_label) for a in actions] == [
        ("button", "Open log"),
        ("voice_command", "retry build"),
        ("auto", "collect logs"),
    ]
    assert actions[0].action_command == "open-log"
    assert actions[0].action_data == {"n": 1}
    assert all(a.executed_at is None for a in actions)


def test_attach_action(db: mangostore.Database) -> None:
    sent = db.notify.send(user_id(db), "build", {"name": "api"})
    action = db.notify.attach_action(sent.id, "button", "Snooze", command="snooze 10m")
    assert action.notification_id == sent.id
    assert db.notify.actions(sent.id)[-1] == action
    with pytest.raises(InvalidValueError) as caught:
        db.notify.attach_action(sent.id, "swipe", "x")
    assert caught.value.field == "action_type"
    with pytest.raises(NotFoundError):
        db.notify.attach_action("no-such-id", "button", "x")


def test_an_action_runs_once(db: mangostore.Database) -> None:
    sent = db.notify.send(user_id(db), "build", {"name": "api"})
    action = db.notify.actions(sent.id)[0]
    seen: list[str] = []

    def run(a: NotificationAction) -> str:
        seen.append(a.id)
        return "log opened"

    done = db.notify.execute_action(action.id, run)
    assert (done.executed_at, done.execution_result) == (START, "log opened")
    with pytest.raises(InvalidTransitionError, match="only once"):
        db.notify.execute_action(action.id, run)
    assert seen == [action.id]
    with pytest.raises(InvalidTransitionError):
        db.notify.execute_action(action.id, result="again")


def test_a_result_given_by_the_caller(db: mangostore.Database) -> None:
    sent = db.notify.send(user_id(db), "build", {"name": "api"})
    action = db.notify.actions(sent.id)[1]
    done = db.notify.execute_action(action.id, result="build restarted")
    assert done.execution_result == "build restarted"
    with pytest.raises(InvalidValueError):
        db.notify.execute_action(db.notify.actions(sent.id)[0].id, lambda a: "x", result="y")


def test_a_failing_action_is_recorded_and_not_run_again(db: mangostore.Database) -> None:
    sent = db.notify.send(user_id(db), "build", {"name": "api"})
    action = db.notify.actions(sent.id)[0]

    def boom(a: NotificationAction) -> str:
        raise OSError("no such file")

    with pytest.raises(OSError, match="no such file"):
        db.notify.execute_action(action.id, boom)
    stored = db.notification_actions.get(action.id)
    assert stored.executed_at == START
    assert stored.execution_result == "OSError: no such file"
    with pytest.raises(InvalidTransitionError):
        db.notify.execute_action(action.id, boom)


def test_an_unknown_action(db: mangostore.Database) -> None:
    with pytest.raises(NotFoundError):
        db.notify.execute_action("no-such-action", result="x")


def race(db: mangostore.Database, action_id: str, threads: int) -> tuple[list[str], list[str]]:
    """Execute one action from ``threads`` threads at once; return the runs and outcomes."""
    runs: list[str] = []
    outcomes: list[str] = []
    barrier = threading.Barrier(threads)

    def run(action: NotificationAction) -> str:
        runs.append(action.id)
        return "ran"

    def contender() -> None:
        barrier.wait()
        try:
            db.notify.execute_action(action_id, run)
        except InvalidTransitionError:
            outcomes.append("refused")
        else:
            outcomes.append("ran")

    workers = [threading.Thread(target=contender) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return runs, outcomes


def test_threads_racing_run_the_action_once(db: mangostore.Database) -> None:
    sent = db.notify.send(user_id(db), "build", {"name": "api"})
    for action in db.notify.actions(sent.id):
        runs, outcomes = race(db, action.id, 8)
        assert runs == [action.id]
        assert sorted(outcomes) == ["ran"] + ["refused"] * 7
        assert db.notification_actions.get(action.id).execution_result == "ran"
