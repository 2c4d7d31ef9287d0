"""Delivery preferences: validation, quiet hours in the user's zone, and method resolution.

Everything here is a pure function of its arguments: the current time and the
user's zone are passed in, so the rules can be tested at any instant (a
daylight-saving night included) without a database or a clock.

Resolution, in order (see ``docs/notifications.md``):

1. start from the user's preference for the type, or from the type's defaults;
2. apply the override for the notification's project, if there is one;
3. a disabled preference delivers nothing (the notification is still recorded);
4. ``voice`` is dropped unless voice is enabled;
5. a priority below the urgency threshold goes to ``log`` only (to nothing when
   ``log`` is not among the methods: the notification then only reaches the inbox);
6. during quiet hours a non-critical notification goes to ``log`` at once, and its
   ``desktop`` and ``voice`` deliveries are held until the quiet hours end.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mangostore.errors import InvalidValueError

__all__ = [
    "CATEGORIES",
    "CATEGORY_METHODS",
    "METHODS",
    "PRIORITIES",
    "EffectivePreference",
    "ProjectOverride",
    "QuietHours",
    "Resolution",
    "check_methods",
    "check_overrides",
    "check_priority",
    "load_zone",
    "parse_hhmm",
    "priority_rank",
    "quiet_hours_fields",
    "resolve",
]

#: Priorities from least to most urgent.
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "critical")
#: Delivery methods, in the order they are recorded and run.
METHODS: tuple[str, ...] = ("desktop", "voice", "log")
CATEGORIES: tuple[str, ...] = ("system", "voice", "ai", "project")
#: Methods used for a type when the user has no preference for it.
CATEGORY_METHODS: dict[str, tuple[str, ...]] = {
    "system": ("desktop", "log"),
    "voice": ("voice", "log"),
    "ai": ("desktop", "log"),
    "project": ("desktop", "log"),
}
#: Methods that interrupt the user, and so wait for the end of quiet hours.
INTRUSIVE: frozenset[str] = frozenset({"desktop", "voice"})
DEFAULT_ZONE = "UTC"
_OVERRIDE_KEYS = frozenset({"enabled", "delivery_methods", "urgency_threshold"})

Reason = Literal["normal", "disabled", "below_threshold", "quiet_hours", "critical"]


# -- validation --------------------------------------------------------------------------


def check_priority(value: Any, *, field: str = "priority") -> str:
    """Return ``value`` if it is a known priority.

    Raises:
        InvalidValueError: naming ``field`` and listing the priorities.
    """
    if not isinstance(value, str) or value not in PRIORITIES:
        raise InvalidValueError(
            f"{field} must be one of {', '.join(PRIORITIES)}; got {value!r}", field=field
        )
    return value


def priority_rank(priority: str) -> int:
    """Return the position of ``priority`` from ``low`` (0) to ``critical`` (3)."""
    return PRIORITIES.index(priority)


def check_methods(value: Any, *, field: str = "delivery_methods") -> tuple[str, ...]:
    """Return the delivery methods in ``value`` in canonical order, without duplicates.

    Raises:
        InvalidValueError: ``value`` is not a list of known methods.
    """
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidValueError(
            f"{field} must be a list of methods from {', '.join(METHODS)}; got {value!r}",
            field=field,
        )
    items = list(value)
    unknown = [m for m in items if not isinstance(m, str) or m not in METHODS]
    if unknown:
        raise InvalidValueError(
            f"{field} has unknown method(s) {', '.join(map(repr, unknown))}; "
            f"the methods are {', '.join(METHODS)}",
            field=field,
        )
    return tuple(m for m in METHODS if m in items)


def parse_hhmm(value: Any, *, field: str) -> dt.time:
    """Parse a wall-clock time written ``HH:MM`` (``00:00`` to ``23:59``).

    Raises:
        InvalidValueError: anything else (``24:00``, ``7:5``, ``07:00:00``, ...).
    """
    ok = (
        isinstance(value, str)
        and len(value) == 5
        and value[2] == ":"
        and value[:2].isdigit()
        and value[3:].isdigit()
        and value.isascii()
    )
    if ok and int(value[:2]) < 24 and int(value[3:]) < 60:
        return dt.time(int(value[:2]), int(value[3:]))
    raise InvalidValueError(
        f"{field} must be a time written HH:MM (00:00 to 23:59); got {value!r}", field=field
    )


def load_zone(name: Any, *, field: str = "timezone") -> zoneinfo.ZoneInfo:
    """Return the IANA time zone called ``name`` (``"Europe/Paris"``).

    Raises:
        InvalidValueError: ``name`` is not a zone the system's time zone database knows.
    """
    if isinstance(name, str) and name and not name.startswith(("/", ".")) and ".." not in name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise InvalidValueError(
        f"{field} must be an IANA time zone name such as 'Europe/Paris'; got {name!r}",
        field=field,
    )


def check_overrides(value: Any) -> dict[str, ProjectOverride]:
    """Validate ``project_specific``: ``{project_id: {...}}`` with the keys of an override.

    The keys are ``enabled``, ``delivery_methods`` and ``urgency_threshold``, each optional.

    Raises:
        InvalidValueError: not an object keyed by project id, or a bad override.
    """
    if not isinstance(value, Mapping):
        raise InvalidValueError(
            "project overrides must map project ids to objects", field="project_specific"
        )
    out: dict[str, ProjectOverride] = {}
    for project_id, override in value.items():
        if not isinstance(project_id, str) or not project_id:
            raise InvalidValueError(
                "project overrides must be keyed by project id", field="project_specific"
            )
        out[project_id] = ProjectOverride.parse(override, project_id=project_id)
    return out


def quiet_hours_fields(quiet_hours: Any) -> dict[str, str | None]:
    """Validate a ``(start, end)`` pair (or ``None``) and return the two columns.

    Raises:
        InvalidValueError: not a pair, a malformed time, or equal times.
    """
    if quiet_hours is None:
        return {"quiet_hours_start": None, "quiet_hours_end": None}
    if (
        isinstance(quiet_hours, str)
        or not isinstance(quiet_hours, Sequence)
        or len(quiet_hours) != 2
    ):
        raise InvalidValueError(
            "quiet_hours must be a (start, end) pair such as ('22:00', '07:00')",
            field="quiet_hours",
        )
    start, end = quiet_hours
    QuietHours.parse(start, end)
    return {"quiet_hours_start": start, "quiet_hours_end": end}


# -- the shapes resolution works on ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily quiet period in local wall-clock time; ``start > end`` spans midnight."""

    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, start: Any, end: Any) -> QuietHours:
        """Build quiet hours from two ``HH:MM`` strings.

        Raises:
            InvalidValueError: a time is malformed, or both are equal (an empty or
                whole-day period is not a quiet period).
        """
        begin = parse_hhmm(start, field="quiet_hours_start")
        finish = parse_hhmm(end, field="quiet_hours_end")
        if begin == finish:
            raise InvalidValueError(
                f"quiet hours must start and end at different times; both are {start}",
                field="quiet_hours_end",
            )
        return cls(begin, finish)

    def contains(self, local: dt.time) -> bool:
        """Tell whether the wall-clock time ``local`` falls in the quiet period."""
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def ends_after(self, now_ms: int, zone: dt.tzinfo) -> int | None:
        """Return when the quiet period around ``now_ms`` ends (epoch ms), or ``None``.

        ``None`` means ``now_ms`` is not in quiet hours. The end is the first instant
        after ``now_ms`` at which the local clock reads ``end`` or later: when ``end``
        falls in a skipped hour (spring forward) that is the moment the clock jumps;
        when it occurs twice (fall back) it is the first occurrence still ahead.
        """
        now = dt.datetime.fromtimestamp(now_ms / 1000, zone)
        local = now.replace(tzinfo=None).time()
        if not self.contains(local):
            return None
        day = now.date()
        if self.start > self.end and local >= self.start:
            day += dt.timedelta(days=1)
        return _first_instant_at(dt.datetime.combine(day, self.end), zone, now_ms)


@dataclass(frozen=True, slots=True)
class ProjectOverride:
    """What a project changes in a preference; ``None`` keeps the preference's value."""

    enabled: bool | None = None
    delivery_methods: tuple[str, ...] | None = None
    urgency_threshold: str | None = None

    @classmethod
    def parse(cls, value: Any, *, project_id: str) -> ProjectOverride:
        """Validate one entry of ``project_specific``.

        Raises:
            InvalidValueError: not an object, an unknown key, or a bad value.
        """
        where = f"project_specific[{project_id!r}]"
        if not isinstance(value, Mapping):
            raise InvalidValueError(f"{where} must be an object", field="project_specific")
        unknown = sorted(set(map(str, value)) - _OVERRIDE_KEYS)
        if unknown:
            raise InvalidValueError(
                f"{where} has unknown key(s) {', '.join(unknown)}; allowed: "
                f"{', '.join(sorted(_OVERRIDE_KEYS))}",
                field="project_specific",
            )
        enabled = value.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise InvalidValueError(f"{where}.enabled must be true or false", field="enabled")
        methods = value.get("delivery_methods")
        threshold = value.get("urgency_threshold")
        return cls(
            enabled=enabled,
            delivery_methods=None if methods is None else check_methods(methods),
            urgency_threshold=(
                None if threshold is None else check_priority(threshold, field="urgency_threshold")
            ),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the override as stored in ``project_specific`` (unset keys left out)."""
        out: dict[str, Any] = {}
        if self.enabled is not None:
            out["enabled"] = self.enabled
        if self.delivery_methods is not None:
            out["delivery_methods"] = list(self.delivery_methods)
        if self.urgency_threshold is not None:
            out["urgency_threshold"] = self.urgency_threshold
        return out


@dataclass(frozen=True, slots=True)
class EffectivePreference:
    """A user's preference for one type, as resolution needs it."""

    enabled: bool = True
    delivery_methods: tuple[str, ...] = ("desktop", "log")
    voice_enabled: bool = False
    urgency_threshold: str = "normal"
    quiet_hours: QuietHours | None = None
    projects: Mapping[str, ProjectOverride] = field(default_factory=dict)

    @classmethod
    def for_category(cls, category: str) -> EffectivePreference:
        """Return what applies when the user has set nothing for a type of ``category``."""
        methods = CATEGORY_METHODS.get(category, ("desktop", "log"))
        return cls(delivery_methods=methods, voice_enabled="voice" in methods)


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where a notification goes, and when.

    Attributes:
        immediate: methods to deliver at the notification's own time.
        held: methods held until ``held_until`` (the end of quiet hours).
        held_until: epoch ms, or ``None`` when nothing is held.
        enabled: ``False`` when the preference (or project override) disables the type.
        reason: the rule that decided (``normal``, ``disabled``, ``below_threshold``,
            ``quiet_hours`` or ``critical`` for a critical one let through quiet hours).
    """

    immediate: tuple[str, ...]
    held: tuple[str, ...] = ()
    held_until: int | None = None
    enabled: bool = True
    reason: Reason = "normal"

    @property
    def methods(self) -> tuple[str, ...]:
        """Every method chosen, in canonical order: what ``delivery_methods`` records."""
        chosen = set(self.immediate) | set(self.held)
        return tuple(m for m in METHODS if m in chosen)


def resolve(
    *,
    priority: str,
    preference: EffectivePreference,
    project_id: str | None,
    zone: dt.tzinfo,
    at_ms: int,
) -> Resolution:
    """Decide which methods deliver a notification of ``priority`` due at ``at_ms``.

    Args:
        priority: the notification's priority.
        preference: the user's preference for the type (or the type's defaults).
        project_id: the notification's project, whose override applies if any.
        zone: the user's time zone, for quiet hours.
        at_ms: when the notification is due (now, or its scheduled time).
    """
    enabled = preference.enabled
    methods = preference.delivery_methods
    threshold = preference.urgency_threshold
    override = preference.projects.get(project_id) if project_id is not None else None
    if override is not None:
        enabled = enabled if override.enabled is None else override.enabled
        methods = methods if override.delivery_methods is None else override.delivery_methods
        threshold = threshold if override.urgency_threshold is None else override.urgency_threshold
    if not enabled:
        return Resolution((), enabled=False, reason="disabled")
    if not preference.voice_enabled:
        methods = tuple(m for m in methods if m != "voice")
    if priority_rank(priority) < priority_rank(threshold):
        return Resolution(tuple(m for m in methods if m == "log"), reason="below_threshold")
    quiet = preference.quiet_hours
    end = quiet.ends_after(at_ms, zone) if quiet is not None else None
    if end is None:
        return Resolution(methods)
    if priority == "critical":
        return Resolution(methods, reason="critical")
    held = tuple(m for m in methods if m in INTRUSIVE)
    immediate = tuple(m for m in methods if m not in INTRUSIVE)
    return Resolution(immediate, held, end if held else None, reason="quiet_hours")


# -- wall clock to instant ---------------------------------------------------------------


def _epoch_ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _first_instant_at(wall: dt.datetime, zone: dt.tzinfo, after_ms: int) -> int:
    """Return the first instant after ``after_ms`` whose local time is ``wall`` or later."""
    early = _epoch_ms(wall.replace(tzinfo=zone, fold=0))
    late = _epoch_ms(wall.replace(tzinfo=zone, fold=1))
    if early == late:
        return early  # an ordinary time: it happens once
    if early < late:
        # Repeated (fall back): the first occurrence, unless it is already past.
        return early if early > after_ms else late
    # Skipped (spring forward): fold=0 reads it with the old offset, landing after the
    # jump, fold=1 before it. The answer is the jump itself: search for the instant
    # where the offset changes, to the second.
    low, high = late // 1000, early // 1000
    target = _offset(high, zone)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(middle, zone) == target:
            high = middle
        else:
            low = middle
    return high * 1000


def _offset(epoch_s: int, zone: dt.tzinfo) -> dt.timedelta | None:
    return dt.datetime.fromtimestamp(epoch_s, zone).utcoffset()
