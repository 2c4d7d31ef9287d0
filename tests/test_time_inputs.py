"""Every public parameter that takes a time accepts epoch milliseconds and aware datetimes;
every one that takes a duration accepts milliseconds and timedeltas; both refuse naive
datetimes and other types with an ``InvalidValueError`` naming the parameter, before
anything is written (docs/api-conventions.md, "Times").

Each scenario below exercises one parameter of one service. It gets ``t`` (or ``d``)
to write the moment (or duration) it passes, so one scenario runs once per accepted
form of the value and once per refused one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.conftest import CHEAP_PASSWORDS

import mangostore
from mangostore.clock import ManualClock, duration_ms, epoch_ms
from mangostore.errors import AuthenticationError, InvalidValueError, ValidationError
from mangostore.notify import RecordingDeliverer

#: 2024-06-01 12:00 UTC, a Saturday.
START = 1_717_243_200_000
HOUR = 3_600_000
DAY = 24 * HOUR
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
INDIA = dt.timezone(dt.timedelta(hours=5, minutes=30))


@dataclass
class World:
    """An in-memory database on a manual clock at :data:`START`, with ``ann``, two
    entities related since :data:`START` (``vim`` uses ``lua``), an observation of
    ``vim`` and a notification type ``ping`` kept one day."""

    db: mangostore.Database
    clock: ManualClock
    user: str
    vim: str
    lua: str


@pytest.fixture
def world() -> Iterator[World]:
    clock = ManualClock(START)
    with mangostore.open(":memory:", encrypted=False, clock=clock) as db:
        db.kg.set_embedder(None)
        db.auth.configure(policy=CHEAP_PASSWORDS, sleep=lambda seconds: None)
        user = db.users.create(username="ann").id
        vim = db.kg.upsert_entity(user, "command", "vim").entity.id
        lua = db.kg.upsert_entity(user, "concept", "lua").entity.id
        db.kg.relate(vim, "uses", lua)
        db.kg.observe(vim, "preference", "modal editing")
        db.notify.register_type("ping", category="system", template="ping", retention_days=1)
        db.notify.register_deliverer(RecordingDeliverer("desktop"))
        yield World(db, clock, user, vim, lua)


Time = Callable[[int], Any]
Scenario = Callable[[World, Time], None]

# -- the scenarios: one per public time parameter ---------------------------------------------


def kg_describe(w: World, t: Time) -> None:
    assert w.db.kg.describe(w.vim, as_of=t(START - HOUR)).observations == []
    assert len(w.db.kg.describe(w.vim, as_of=t(START + HOUR)).observations) == 1


def kg_relations(w: World, t: Time) -> None:
    assert w.db.kg.relations(w.vim, as_of=t(START - HOUR)) == []
    assert len(w.db.kg.relations(w.vim, as_of=t(START + HOUR))) == 1


def kg_observations(w: World, t: Time) -> None:
    assert w.db.kg.observations(w.vim, as_of=t(START - HOUR)) == []
    assert len(w.db.kg.observations(w.vim, as_of=t(START + HOUR))) == 1


def kg_neighbors(w: World, t: Time) -> None:
    assert w.db.kg.neighbors(w.vim, as_of=t(START - HOUR)) == []
    assert [n.entity.id for n in w.db.kg.neighbors(w.vim, as_of=t(START + HOUR))] == [w.lua]


def kg_paths(w: World, t: Time) -> None:
    assert w.db.kg.paths(w.vim, w.lua, as_of=t(START - HOUR)) == []
    assert len(w.db.kg.paths(w.vim, w.lua, as_of=t(START + HOUR))) == 1


def kg_subgraph(w: World, t: Time) -> None:
    assert w.db.kg.subgraph([w.vim], as_of=t(START - HOUR)).relations == []
    assert len(w.db.kg.subgraph([w.vim], as_of=t(START + HOUR)).relations) == 1


def kg_search(w: World, t: Time) -> None:
    hits = w.db.kg.search(w.user, "vim", as_of=t(START + HOUR))
    assert [h.entity.id for h in hits] == [
        h.entity.id for h in w.db.kg.search(w.user, "vim", as_of=START + HOUR)
    ]


def kg_relate(w: World, t: Time) -> None:
    relation = w.db.kg.relate(w.lua, "depends_on", w.vim, valid_from=t(START - HOUR))
    assert relation.valid_from == START - HOUR


def kg_observe(w: World, t: Time) -> None:
    observation = w.db.kg.observe(w.lua, "fact", "embeddable", valid_from=t(START - HOUR))
    assert observation.valid_from == START - HOUR


def kg_invalidate(w: World, t: Time) -> None:
    relation = w.db.kg.relations(w.vim)[0]
    assert w.db.kg.invalidate(relation, at=t(START + HOUR)).valid_to == START + HOUR


def memory_sweep(w: World, t: Time) -> None:
    w.db.memory.policy = dataclasses.replace(w.db.memory.policy, purge_grace_ms=0)
    w.db.memory.remember(w.user, "shell", "fish", ttl=HOUR)
    assert w.db.memory.sweep(t(START + HOUR - 1)).expired == 0
    assert w.db.memory.sweep(t(START + HOUR)).expired == 1


def conversations_expire(w: World, t: Time) -> None:
    conversation = w.db.conversations.create(w.user)
    assert w.db.conversations.expire(conversation.id, at=t(START + HOUR)).expires_at == START + HOUR


def conversations_sweep(w: World, t: Time) -> None:
    w.db.conversations.create(w.user, ttl=HOUR)
    assert w.db.conversations.sweep(t(START + HOUR - 1)) == 0
    assert w.db.conversations.sweep(t(START + HOUR)) == 1


def notify_resolve(w: World, t: Time) -> None:
    w.db.notify.set_preferences(w.user, "ping", quiet_hours=("22:00", "07:00"))
    assert w.db.notify.resolve(w.user, "ping", at=t(START)).held_until is None
    late = w.db.notify.resolve(w.user, "ping", at=t(START + 11 * HOUR))  # 23:00 UTC
    assert late.held_until == START + 19 * HOUR  # 07:00 UTC the next day


def notify_send_scheduled_at(w: World, t: Time) -> None:
    sent = w.db.notify.send(w.user, "ping", scheduled_at=t(START + HOUR), deliver=False)
    assert sent.scheduled_at == START + HOUR


def notify_send_expires_at(w: World, t: Time) -> None:
    sent = w.db.notify.send(w.user, "ping", expires_at=t(START + HOUR), deliver=False)
    assert sent.expires_at == START + HOUR


def notify_due(w: World, t: Time) -> None:
    sent = w.db.notify.send(w.user, "ping", scheduled_at=START + HOUR, deliver=False)
    assert w.db.notify.due(t(START + HOUR - 1)) == []
    assert [n.id for n in w.db.notify.due(t(START + HOUR))] == [sent.id]


def notify_deliver_due(w: World, t: Time) -> None:
    w.db.notify.send(w.user, "ping", scheduled_at=START + HOUR, deliver=False)
    assert w.db.notify.deliver_due(t(START + HOUR - 1)).attempted == 0
    assert w.db.notify.deliver_due(t(START + HOUR)).attempted >= 1


def notify_apply_retention(w: World, t: Time) -> None:
    w.db.notify.send(w.user, "ping", deliver=False)
    assert w.db.notify.apply_retention(t(START + DAY)) == 0
    assert w.db.notify.apply_retention(t(START + DAY + 1)) == 1


def privacy_apply_retention(w: World, t: Time) -> None:
    w.db.notify.send(w.user, "ping", deliver=False)
    report = w.db.privacy.apply_retention(t(START + 2 * DAY))
    assert report.now == START + 2 * DAY
    assert report.table("notifications").deleted == 1


def access_grant(w: World, t: Time) -> None:
    grant = w.db.access.grant(w.user, "project", "*", "read", expires_at=t(START + HOUR))
    assert grant.expires_at == START + HOUR


def access_deny(w: World, t: Time) -> None:
    deny = w.db.access.deny(w.user, "project", "*", "write", expires_at=t(START + HOUR))
    assert deny.expires_at == START + HOUR


def sessions_sweep(w: World, t: Time) -> None:
    issued = w.db.sessions.issue(w.user)
    w.db.sessions.revoke(issued.session.id)
    assert w.db.sessions.sweep(t(START + 30 * DAY)) == 0
    assert w.db.sessions.sweep(t(START + 30 * DAY + 1)) == 1


def auth_sweep(w: World, t: Time) -> None:
    with pytest.raises(AuthenticationError):
        w.db.auth.login("nobody", "a wrong password")
    stale = START + max(CHEAP_PASSWORDS.failure_window_ms, CHEAP_PASSWORDS.lockout_ms)
    assert w.db.auth.sweep(t(stale)) == 0
    assert w.db.auth.sweep(t(stale + 1)) == 1


def command_history_stats(w: World, t: Time) -> None:
    w.db.command_history.record(w.user, "git push")
    assert w.db.command_history.stats(w.user, since=t(START)).total == 1
    assert w.db.command_history.stats(w.user, since=t(START + 1)).total == 0


def maintenance(w: World, t: Time) -> None:
    w.db.conversations.create(w.user, ttl=HOUR)
    report = w.db.maintenance(t(START + HOUR))
    assert (report.now, report.conversations, report.failures) == (START + HOUR, 1, {})


#: scenario -> the parameter it passes a time to.
INSTANTS: dict[Scenario, str] = {
    kg_describe: "as_of",
    kg_relations: "as_of",
    kg_observations: "as_of",
    kg_neighbors: "as_of",
    kg_paths: "as_of",
    kg_subgraph: "as_of",
    kg_search: "as_of",
    kg_relate: "valid_from",
    kg_observe: "valid_from",
    kg_invalidate: "at",
    memory_sweep: "now",
    conversations_expire: "at",
    conversations_sweep: "now",
    notify_resolve: "at",
    notify_send_scheduled_at: "scheduled_at",
    notify_send_expires_at: "expires_at",
    notify_due: "now",
    notify_deliver_due: "now",
    notify_apply_retention: "now",
    privacy_apply_retention: "now",
    access_grant: "expires_at",
    access_deny: "expires_at",
    sessions_sweep: "now",
    auth_sweep: "now",
    command_history_stats: "since",
    maintenance: "now",
}


def aware(ms: int, zone: dt.tzinfo = dt.UTC) -> dt.datetime:
    """The moment ``ms`` as an aware datetime in ``zone``, exactly."""
    return (EPOCH + dt.timedelta(milliseconds=ms)).astimezone(zone)


#: The accepted forms of a moment, each written from epoch milliseconds. The datetime is
#: in a zone half an hour off whole hours, so no accident of UTC or of whole-hour offsets
#: can pass for the conversion (UTC datetimes: the helper's own tests, below).
FORMS: dict[str, Time] = {
    "int": lambda ms: ms,
    "aware_datetime": lambda ms: aware(ms, INDIA),
}

#: Refused moments: what each is (a naive datetime, then wrong types).
REFUSED: dict[str, Any] = {
    "naive_datetime": dt.datetime(2024, 6, 1, 12, 0),
    "iso_string": "2024-06-01T12:00:00Z",
    "float": 1_717_243_200_000.0,
    "bool": True,
    "date": dt.date(2024, 6, 1),
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
@pytest.mark.parametrize("scenario", INSTANTS, ids=lambda s: s.__name__)
def test_a_time_is_accepted_as_epoch_ms_or_an_aware_datetime(
    world: World, scenario: Scenario, form: Time
) -> None:
    scenario(world, form)


def _table_counts(db: mangostore.Database) -> dict[str, int]:
    return {table.name: table.rows for table in db.status().tables}


@pytest.mark.parametrize("scenario", INSTANTS, ids=lambda s: s.__name__)
def test_a_time_of_another_kind_is_refused_naming_the_parameter(
    world: World, scenario: Scenario
) -> None:
    # Every refused value in one test: each is refused before anything is written, so
    # the scenario can run again (a database costs more to open than the calls).
    before: dict[str, int] = {}
    for kind, value in REFUSED.items():
        before.clear()

        def refused(ms: int, value: Any = value) -> Any:
            # Arguments are evaluated just before the call that must refuse them.
            before.update(_table_counts(world.db))
            return value

        with pytest.raises(InvalidValueError) as raised:
            scenario(world, refused)
        assert raised.value.field == INSTANTS[scenario], kind
        assert INSTANTS[scenario] in str(raised.value), kind
        assert _table_counts(world.db) == before, f"{kind}: something was written"


def test_a_naive_datetime_is_refused_with_what_to_do(world: World) -> None:
    with pytest.raises(InvalidValueError, match=r"naive datetime.*datetime\.UTC"):
        world.db.kg.search(world.user, "vim", as_of=dt.datetime(2024, 6, 1))


# -- durations ---------------------------------------------------------------------------------


def memory_remember_ttl(w: World, d: Time) -> None:
    memory = w.db.memory.remember(w.user, "shell", "fish", ttl=d(HOUR))
    assert memory.expires_at == START + HOUR


def conversations_create_ttl(w: World, d: Time) -> None:
    assert w.db.conversations.create(w.user, ttl=d(HOUR)).expires_at == START + HOUR


def sessions_sweep_keep_ms(w: World, d: Time) -> None:
    issued = w.db.sessions.issue(w.user)
    w.db.sessions.revoke(issued.session.id)
    w.clock.advance(2 * HOUR)
    assert w.db.sessions.sweep(keep_ms=d(2 * HOUR)) == 0
    assert w.db.sessions.sweep(keep_ms=d(HOUR)) == 1


DURATIONS: dict[Scenario, str] = {
    memory_remember_ttl: "ttl",
    conversations_create_ttl: "ttl",
    sessions_sweep_keep_ms: "keep_ms",
}

DURATION_FORMS: dict[str, Time] = {
    "int": lambda ms: ms,
    "timedelta": lambda ms: dt.timedelta(milliseconds=ms),
}

REFUSED_DURATIONS: dict[str, Any] = {
    "naive_datetime": dt.datetime(2024, 6, 1, 12, 0),
    "aware_datetime": dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC),
    "string": "1h",
    "float": 3_600_000.0,
    "bool": True,
    "negative": -1,
    "negative_timedelta": dt.timedelta(hours=-1),
}


@pytest.mark.parametrize("form", DURATION_FORMS.values(), ids=DURATION_FORMS.keys())
@pytest.mark.parametrize("scenario", DURATIONS, ids=lambda s: s.__name__)
def test_a_duration_is_accepted_as_ms_or_a_timedelta(
    world: World, scenario: Scenario, form: Time
) -> None:
    scenario(world, form)


@pytest.mark.parametrize("scenario", DURATIONS, ids=lambda s: s.__name__)
def test_a_duration_of_another_kind_is_refused_naming_the_parameter(
    world: World, scenario: Scenario
) -> None:
    for kind, value in REFUSED_DURATIONS.items():
        with pytest.raises(InvalidValueError) as raised:
            scenario(world, lambda ms, value=value: value)
        assert raised.value.field == DURATIONS[scenario], kind


# -- the helpers themselves --------------------------------------------------------------------


def test_epoch_ms_is_exact_and_rounds_microseconds_down() -> None:
    assert epoch_ms(aware(START), "t") == START
    assert epoch_ms(aware(START, INDIA), "t") == START
    assert epoch_ms(aware(START) + dt.timedelta(microseconds=999), "t") == START
    assert epoch_ms(EPOCH - dt.timedelta(microseconds=1), "t") == -1  # down, not to zero
    assert epoch_ms(None, "t") is None


def test_epoch_ms_refuses_what_sqlite_cannot_hold() -> None:
    with pytest.raises(InvalidValueError, match="out of range") as raised:
        epoch_ms(2**63, "until")
    assert raised.value.field == "until"


def test_duration_ms_is_exact_and_keeps_its_minimum() -> None:
    assert duration_ms(dt.timedelta(days=1, microseconds=999), "ttl") == DAY
    assert duration_ms(0, "keep_ms") == 0
    with pytest.raises(InvalidValueError, match="ttl must be positive"):
        duration_ms(0, "ttl", minimum=1)
    assert duration_ms(None, "ttl") is None
    with pytest.raises(InvalidValueError, match="out of range"):
        duration_ms(2**63, "ttl")


def test_time_errors_are_validation_errors() -> None:
    # One ``except ValidationError`` catches every refused input, times included.
    with pytest.raises(ValidationError):
        epoch_ms("now", "now")
