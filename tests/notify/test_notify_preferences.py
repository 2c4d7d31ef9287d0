"""Preference validation, quiet hours in the user's zone (DST nights included), resolution."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import mangostore
from mangostore.errors import InvalidValueError, NotFoundError
from mangostore.notify import EffectivePreference, ProjectOverride, QuietHours, resolve
from mangostore.notify.preferences import load_zone, parse_hhmm

UTC = dt.UTC
NEW_YORK = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")
NIGHT = QuietHours.parse("22:00", "07:00")


def register_build(database: mangostore.Database) -> None:
    database.notify.register_type("build", category="project", template="done")


pytestmark = pytest.mark.database("clocked_db", setup=register_build)


def ms(year: int, month: int, day: int, hour: int, minute: int = 0, zone: Any = UTC) -> int:
    """Epoch ms of a wall-clock time; ``fold`` is never needed by the callers."""
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=zone).timestamp() * 1000)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> int:
    return ms(year, month, day, hour, minute)


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["00:00", "07:30", "23:59", "12:05"])
def test_accepts_hh_mm(text: str) -> None:
    assert parse_hhmm(text, field="x").strftime("%H:%M") == text


@pytest.mark.parametrize(
    "text",
    [
        "24:00",
        "7:00",
        "07:60",
        "0700",
        "07:00:00",
        "ab:cd",
        "",
        " 7:00",
        "\u0660\u0667:\u0660\u0660",
        700,
        None,
    ],
)
def test_refuses_bad_times(text: Any) -> None:
    with pytest.raises(InvalidValueError, match="HH:MM") as caught:
        parse_hhmm(text, field="quiet_hours_start")
    assert caught.value.field == "quiet_hours_start"


def test_refuses_empty_quiet_hours() -> None:
    with pytest.raises(InvalidValueError, match="different times") as caught:
        QuietHours.parse("22:00", "22:00")
    assert caught.value.field == "quiet_hours_end"


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../../etc/passwd", "/etc/localtime", 3])
def test_refuses_unknown_zones(name: Any) -> None:
    with pytest.raises(InvalidValueError, match="IANA") as caught:
        load_zone(name)
    assert caught.value.field == "timezone"


def test_refuses_bad_project_overrides() -> None:
    with pytest.raises(InvalidValueError, match="unknown key"):
        ProjectOverride.parse({"loud": True}, project_id="p")
    with pytest.raises(InvalidValueError) as caught:
        ProjectOverride.parse({"delivery_methods": ["pager"]}, project_id="p")
    assert caught.value.field == "delivery_methods"
    with pytest.raises(InvalidValueError) as caught:
        ProjectOverride.parse({"urgency_threshold": "urgent"}, project_id="p")
    assert caught.value.field == "urgency_threshold"
    with pytest.raises(InvalidValueError) as caught:
        ProjectOverride.parse({"enabled": "yes"}, project_id="p")
    assert caught.value.field == "enabled"


# -- quiet hours ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "quiet"),
    [("21:59", False), ("22:00", True), ("23:59", True), ("00:00", True), ("06:59", True),
     ("07:00", False), ("12:00", False)],
)  # fmt: skip
def test_quiet_hours_across_midnight(local: str, quiet: bool) -> None:
    assert NIGHT.contains(parse_hhmm(local, field="t")) is quiet


def test_quiet_hours_within_a_day() -> None:
    lunch = QuietHours.parse("12:00", "13:30")
    assert lunch.contains(dt.time(12, 0))
    assert lunch.contains(dt.time(13, 29))
    assert not lunch.contains(dt.time(13, 30))
    assert not lunch.contains(dt.time(11, 59))
    assert lunch.ends_after(utc(2024, 6, 1, 12, 10), UTC) == utc(2024, 6, 1, 13, 30)


def test_end_of_quiet_hours_before_and_after_midnight() -> None:
    assert NIGHT.ends_after(utc(2024, 6, 1, 23), UTC) == utc(2024, 6, 2, 7)
    assert NIGHT.ends_after(utc(2024, 6, 2, 3), UTC) == utc(2024, 6, 2, 7)
    assert NIGHT.ends_after(utc(2024, 6, 2, 7), UTC) is None
    assert NIGHT.ends_after(utc(2024, 6, 2, 21, 59), UTC) is None


def test_quiet_hours_are_read_in_the_users_zone() -> None:
    # 21:30 UTC in January is 22:30 in Paris (UTC+1), and 16:30 in New York.
    now = utc(2024, 1, 15, 21, 30)
    assert NIGHT.ends_after(now, PARIS) == ms(2024, 1, 16, 7, zone=PARIS) == utc(2024, 1, 16, 6)
    assert NIGHT.ends_after(now, NEW_YORK) is None
    assert NIGHT.ends_after(now, UTC) is None


def test_spring_forward_night_in_new_york_is_an_hour_shorter() -> None:
    # 2024-03-10: 02:00 EST jumps to 03:00 EDT. 23:00 EST is 04:00 UTC; 07:00 EDT is 11:00 UTC.
    start = utc(2024, 3, 10, 4)
    end = NIGHT.ends_after(start, NEW_YORK)
    assert end == utc(2024, 3, 10, 11)
    assert end - start == 7 * 3_600_000  # 8 hours of wall clock


def test_fall_back_night_in_new_york_is_an_hour_longer() -> None:
    # 2024-11-03: 02:00 EDT falls back to 01:00 EST. 23:00 EDT is 03:00 UTC; 07:00 EST is 12:00 UTC.
    start = utc(2024, 11, 3, 3)
    end = NIGHT.ends_after(start, NEW_YORK)
    assert end == utc(2024, 11, 3, 12)
    assert end - start == 9 * 3_600_000  # 8 hours of wall clock


def test_quiet_hours_ending_in_the_skipped_hour_end_when_the_clock_jumps() -> None:
    # 02:30 does not exist in New York on 2024-03-10: the clock goes from 01:59:59 EST
    # straight to 03:00 EDT (07:00 UTC), which is when 02:30 has been passed.
    quiet = QuietHours.parse("22:00", "02:30")
    assert quiet.ends_after(utc(2024, 3, 10, 4), NEW_YORK) == utc(2024, 3, 10, 7)
    # Paris, 2024-03-31: 02:00 CET jumps to 03:00 CEST at 01:00 UTC.
    early = QuietHours.parse("01:00", "02:30")
    assert early.ends_after(utc(2024, 3, 31, 0, 30), PARIS) == utc(2024, 3, 31, 1)


def test_quiet_hours_ending_in_the_repeated_hour_end_at_its_first_occurrence() -> None:
    # 01:30 happens twice in New York on 2024-11-03: at 05:30 UTC (EDT), then 06:30 UTC (EST).
    quiet = QuietHours.parse("22:00", "01:30")
    assert quiet.ends_after(utc(2024, 11, 3, 3), NEW_YORK) == utc(2024, 11, 3, 5, 30)
    # During the repeated hour, 01:15 EST is quiet again, until 01:30 EST.
    assert quiet.ends_after(utc(2024, 11, 3, 6, 15), NEW_YORK) == utc(2024, 11, 3, 6, 30)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (utc(2024, 3, 30, 22), utc(2024, 3, 31, 5)),  # 23:00 CET -> 07:00 CEST: 7 h
        (utc(2024, 10, 26, 21), utc(2024, 10, 27, 6)),  # 23:00 CEST -> 07:00 CET: 9 h
        (utc(2024, 7, 1, 21), utc(2024, 7, 2, 5)),  # summer: 23:00 -> 07:00 CEST
    ],
)
def test_paris_nights_around_the_changes(start: int, end: int) -> None:
    assert NIGHT.ends_after(start, PARIS) == end


def test_held_notifications_are_resolved_to_the_end_of_quiet_hours() -> None:
    pref = EffectivePreference(delivery_methods=("desktop", "voice", "log"), voice_enabled=True,
                               quiet_hours=NIGHT)  # fmt: skip
    plan = resolve(
        priority="high", preference=pref, project_id=None, zone=NEW_YORK, at_ms=utc(2024, 3, 10, 4)
    )
    assert plan.reason == "quiet_hours"
    assert plan.immediate == ("log",)
    assert plan.held == ("desktop", "voice")
    assert plan.held_until == utc(2024, 3, 10, 11)
    assert plan.methods == ("desktop", "voice", "log")


def test_critical_notifications_go_through_quiet_hours() -> None:
    pref = EffectivePreference(quiet_hours=NIGHT)
    plan = resolve(
        priority="critical", preference=pref, project_id=None, zone=UTC, at_ms=utc(2024, 6, 1, 23)
    )
    assert plan.reason == "critical"
    assert plan.immediate == ("desktop", "log")
    assert plan.held_until is None


def test_quiet_hours_without_log_hold_everything() -> None:
    pref = EffectivePreference(delivery_methods=("desktop",), quiet_hours=NIGHT)
    plan = resolve(
        priority="normal", preference=pref, project_id=None, zone=UTC, at_ms=utc(2024, 6, 1, 23)
    )
    assert plan.immediate == ()
    assert plan.held == ("desktop",)
    assert plan.held_until == utc(2024, 6, 2, 7)


# -- threshold and override matrix ---------------------------------------------------------

ALL = ("desktop", "voice", "log")


@pytest.mark.parametrize(
    ("priority", "threshold", "methods", "expected"),
    [
        ("low", "low", ALL, ALL),
        ("low", "normal", ALL, ("log",)),
        ("normal", "normal", ALL, ALL),
        ("normal", "high", ALL, ("log",)),
        ("high", "high", ALL, ALL),
        ("high", "critical", ALL, ("log",)),
        ("critical", "critical", ALL, ALL),
        ("critical", "low", ALL, ALL),
        ("low", "critical", ("desktop", "voice"), ()),  # below, and no log: inbox only
        ("normal", "normal", ("voice",), ("voice",)),
        ("normal", "low", ("log",), ("log",)),
    ],
)
def test_urgency_threshold(
    priority: str, threshold: str, methods: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    pref = EffectivePreference(
        delivery_methods=methods, voice_enabled=True, urgency_threshold=threshold
    )
    plan = resolve(priority=priority, preference=pref, project_id=None, zone=UTC, at_ms=0)
    assert plan.immediate == expected
    assert plan.reason == ("below_threshold" if expected != methods else "normal")


@pytest.mark.parametrize(
    ("override", "priority", "expected_enabled", "expected"),
    [
        (None, "normal", True, ("desktop", "log")),
        (ProjectOverride(), "normal", True, ("desktop", "log")),
        (ProjectOverride(enabled=False), "critical", False, ()),
        (ProjectOverride(delivery_methods=("log",)), "normal", True, ("log",)),
        (ProjectOverride(urgency_threshold="critical"), "high", True, ("log",)),
        (ProjectOverride(urgency_threshold="low"), "low", True, ("desktop", "log")),
        (
            ProjectOverride(delivery_methods=("desktop",), urgency_threshold="high"),
            "normal",
            True,
            (),
        ),
    ],
)
def test_project_overrides(
    override: ProjectOverride | None,
    priority: str,
    expected_enabled: bool,
    expected: tuple[str, ...],
) -> None:
    projects = {"p1": override} if override is not None else {}
    pref = EffectivePreference(delivery_methods=("desktop", "log"), projects=projects)
    plan = resolve(priority=priority, preference=pref, project_id="p1", zone=UTC, at_ms=0)
    assert plan.enabled is expected_enabled
    assert plan.immediate == expected
    # Another project, or none, is not affected.
    for other in ("p2", None):
        general = resolve(priority=priority, preference=pref, project_id=other, zone=UTC, at_ms=0)
        assert general.enabled


def test_an_override_can_enable_a_type_disabled_in_general() -> None:
    pref = EffectivePreference(enabled=False, projects={"p": ProjectOverride(enabled=True)})
    assert resolve(priority="normal", preference=pref, project_id="p", zone=UTC, at_ms=0).enabled
    assert not resolve(
        priority="normal", preference=pref, project_id=None, zone=UTC, at_ms=0
    ).enabled


def test_voice_needs_voice_enabled() -> None:
    pref = EffectivePreference(delivery_methods=ALL, voice_enabled=False)
    plan = resolve(priority="normal", preference=pref, project_id=None, zone=UTC, at_ms=0)
    assert plan.immediate == ("desktop", "log")


# -- the service's preference API ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"delivery_methods": ["desktop", "pager"]}, "delivery_methods"),
        ({"delivery_methods": "desktop"}, "delivery_methods"),
        ({"urgency_threshold": "urgent"}, "urgency_threshold"),
        ({"quiet_hours": ("22:00", "25:00")}, "quiet_hours_end"),
        ({"quiet_hours": ("10pm", "07:00")}, "quiet_hours_start"),
        ({"quiet_hours": "22:00-07:00"}, "quiet_hours"),
        ({"quiet_hours": ("22:00",)}, "quiet_hours"),
        ({"enabled": "yes"}, "enabled"),
        ({"project_overrides": {"p": {"delivery_methods": ["fax"]}}}, "delivery_methods"),
        ({"project_overrides": {"p": {"volume": 3}}}, "project_specific"),
    ],
)
def test_set_preferences_refuses_bad_values(
    db: mangostore.Database, kwargs: dict[str, Any], field: str
) -> None:
    user = db.users.create(username="ann")
    with pytest.raises(InvalidValueError) as caught:
        db.notify.set_preferences(user.id, "build", **kwargs)
    assert caught.value.field == field
    assert db.notification_preferences.count() == 0


def test_set_preferences_stores_and_replaces(db: mangostore.Database) -> None:
    user = db.users.create(username="ann")
    project = db.projects.create(user_id=user.id, name="api", path="/srv/api")
    stored = db.notify.set_preferences(
        user.id,
        "build",
        delivery_methods=["log", "voice", "desktop", "log"],
        urgency_threshold="high",
        quiet_hours=("22:00", "07:00"),
        project_overrides={project.id: {"enabled": False}},
    )
    assert stored.delivery_methods == ["desktop", "voice", "log"]
    assert stored.voice_enabled is True
    assert (stored.quiet_hours_start, stored.quiet_hours_end) == ("22:00", "07:00")
    assert stored.project_specific == {project.id: {"enabled": False}}
    replaced = db.notify.set_preferences(user.id, "build", delivery_methods=["log"])
    assert replaced.id == stored.id
    assert replaced.quiet_hours_start is None
    assert replaced.project_specific is None
    assert replaced.urgency_threshold == "normal"
    assert db.notification_preferences.count() == 1


def test_project_override_patches_one_project(db: mangostore.Database) -> None:
    user = db.users.create(username="ann")
    one = db.projects.create(user_id=user.id, name="one", path="/one")
    two = db.projects.create(user_id=user.id, name="two", path="/two")
    db.notify.set_project_override(user.id, "build", one.id, enabled=False)
    row = db.notify.set_project_override(user.id, "build", two.id, delivery_methods=["log"])
    assert row.project_specific == {
        one.id: {"enabled": False},
        two.id: {"delivery_methods": ["log"]},
    }
    assert row.delivery_methods == ["desktop", "log"]  # the category's defaults
    row = db.notify.set_project_override(user.id, "build", one.id)
    assert row.project_specific == {two.id: {"delivery_methods": ["log"]}}
    assert db.notify.resolve(user.id, "build", project_id=two.id).immediate == ("log",)
    with pytest.raises(NotFoundError):
        db.notify.set_project_override(user.id, "build", "no-such-project", enabled=False)


def test_timezone_is_kept_in_the_users_preferences(db: mangostore.Database) -> None:
    user = db.users.create(username="ann", preferences={"theme": "dark"})
    assert db.notify.timezone(user.id) is dt.UTC
    db.notify.set_timezone(user.id, "Europe/Paris")
    assert db.users.get(user.id).preferences == {"theme": "dark", "timezone": "Europe/Paris"}
    assert db.notify.timezone(user.id) == PARIS
    with pytest.raises(InvalidValueError) as caught:
        db.notify.set_timezone(user.id, "Europe/Atlantis")
    assert caught.value.field == "timezone"
    with pytest.raises(NotFoundError):
        db.notify.set_timezone("nobody", "UTC")


def test_an_unknown_stored_zone_falls_back_to_utc(db: mangostore.Database) -> None:
    user = db.users.create(username="ann", preferences={"timezone": "Nowhere/Land"})
    assert db.notify.timezone(user.id) is dt.UTC


def test_preferences_of_unknown_users_and_types_are_refused(db: mangostore.Database) -> None:
    user = db.users.create(username="ann")
    with pytest.raises(NotFoundError):
        db.notify.set_preferences("nobody", "build")
    with pytest.raises(NotFoundError, match="register_type"):
        db.notify.set_preferences(user.id, "no-such-type")


# -- quiet hours, any instant ----------------------------------------------------------------

ZONES = ["UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "America/Santiago"]
HHMM = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))


@given(
    now_s=st.integers(1_577_836_800, 1_893_456_000),  # 2020 to 2030
    start=HHMM,
    end=HHMM,
    zone_name=st.sampled_from(ZONES),
)
def test_quiet_hours_end_is_the_first_moment_outside_them(
    now_s: int, start: str, end: str, zone_name: str
) -> None:
    assume(start != end)
    quiet = QuietHours.parse(start, end)
    zone = ZoneInfo(zone_name)
    now = now_s * 1000

    def is_quiet(instant_ms: int) -> bool:
        local = dt.datetime.fromtimestamp(instant_ms / 1000, zone)
        return quiet.contains(local.time())

    finish = quiet.ends_after(now, zone)
    if finish is None:
        assert not is_quiet(now)
        return
    assert is_quiet(now)
    assert now < finish <= now + 25 * 3_600_000
    assert not is_quiet(finish)
    # Quiet all along until then (checked every 15 minutes and just before the end).
    for instant in [*range(now, finish, 15 * 60_000), finish - 1_000]:
        if instant >= now:
            assert is_quiet(instant), dt.datetime.fromtimestamp(instant / 1000, zone)
