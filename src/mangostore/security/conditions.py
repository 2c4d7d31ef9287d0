"""Permission conditions: a closed set of operators, checked when a grant is written.

A condition is a JSON object whose keys are operators; every operator must hold::

    {"time_window": {"start": "09:00", "end": "17:30", "timezone": "Europe/Berlin"}}
    {"project": ["0190e2c4-...", "0190e2c5-..."]}
    {"min_security_level": "high"}
    {"any": [{"project": ["p1"]}, {"min_security_level": "high"}]}
    {"all": [{...}, {...}]}

- ``time_window``: the local time of day (``timezone``, an IANA name, default
  ``"UTC"``) is in ``[start, end)``; a window whose end is before its start wraps
  past midnight (``22:00`` to ``06:00``). ``start`` and ``end`` must differ.
- ``project``: the check's context names one of these project ids.
- ``min_security_level``: the check's context has at least this session level
  (``low`` < ``standard`` < ``high``).
- ``all`` / ``any``: every / at least one of a non-empty list of conditions.

Any other key, a malformed argument, a value larger than :data:`MAX_CONDITION_BYTES`
once serialised, nesting deeper than :data:`MAX_DEPTH` or more than
:data:`MAX_NODES` condition objects is refused with ``InvalidValueError`` before
anything is written.

Evaluation is three-valued: a condition that needs context the check did not give
(no ``project_id``, no ``security_level``) is *unknown*. An allow applies only when
its condition is true; a deny applies unless its condition is false, so missing
context never opens access and never lifts a deny.
"""

from __future__ import annotations

import datetime
import json
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from mangostore.errors import InvalidValueError

__all__ = [
    "MAX_CONDITION_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "OPERATORS",
    "SECURITY_LEVELS",
    "CheckContext",
    "Condition",
    "compile_conditions",
    "parse_context",
    "validate_conditions",
]

#: Largest serialised condition accepted, in bytes.
MAX_CONDITION_BYTES: Final = 4096
#: Deepest JSON nesting accepted (the top-level object is depth 1).
MAX_DEPTH: Final = 10
#: Most condition objects (the top level, and each member of ``all``/``any``).
MAX_NODES: Final = 32
#: Most project ids in one ``project`` list, and the longest id.
MAX_PROJECTS: Final = 256
MAX_ID_CHARS: Final = 256
#: The operators there are; anything else is refused.
OPERATORS: Final = frozenset({"time_window", "project", "min_security_level", "all", "any"})
#: Session security levels, weakest first.
SECURITY_LEVELS: Final = ("low", "standard", "high")
_RANK: Final = {level: rank for rank, level in enumerate(SECURITY_LEVELS)}
_HHMM = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d\Z")
_WINDOW_KEYS: Final = frozenset({"start", "end", "timezone"})
_CONTEXT_KEYS: Final = frozenset({"project_id", "security_level"})
_UTC = datetime.UTC


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a permission check knows about the request (both optional)."""

    project_id: str | None = None
    security_level: str | None = None


EMPTY_CONTEXT: Final = CheckContext()

#: A compiled condition: (now in epoch ms, context) -> True, False or None (unknown).
Condition = Callable[[int, CheckContext], bool | None]


def parse_context(context: Mapping[str, Any] | None) -> CheckContext:
    """Turn a check's ``context`` mapping into a :class:`CheckContext`.

    Raises:
        InvalidValueError: an unknown key, or a value of the wrong type or level.
    """
    if not context:
        return EMPTY_CONTEXT
    if not isinstance(context, Mapping):
        raise InvalidValueError("context must be a mapping or None", field="context")
    unknown = set(context) - _CONTEXT_KEYS
    if unknown:
        raise InvalidValueError(
            f"context takes project_id and security_level, not {sorted(map(str, unknown))}",
            field="context",
        )
    project_id = context.get("project_id")
    level = context.get("security_level")
    if project_id is not None and not isinstance(project_id, str):
        raise InvalidValueError("context project_id must be a string", field="context")
    if level is not None and level not in _RANK:
        raise InvalidValueError(
            f"context security_level must be one of {', '.join(SECURITY_LEVELS)}",
            field="context",
        )
    return CheckContext(project_id, level)


# -- validation ---------------------------------------------------------------------------


def _refuse(message: str) -> InvalidValueError:
    return InvalidValueError(f"permission conditions: {message}", field="conditions")


def _check_shape(value: Any) -> None:
    """Refuse values nested too deeply or too big, without recursing (so without limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > MAX_CONDITION_BYTES:  # every JSON value takes at least one byte
            raise _refuse(f"larger than {MAX_CONDITION_BYTES} bytes")
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth >= MAX_DEPTH and len(children):
            raise _refuse(f"nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def validate_conditions(conditions: Any) -> dict[str, Any] | None:
    """Check ``conditions`` and return them as a plain, JSON-ready dict (``None`` stays ``None``).

    Raises:
        InvalidValueError: not a JSON object, an unknown operator, a malformed
            argument, too large, or nested too deeply.
    """
    if conditions is None:
        return None
    if not isinstance(conditions, Mapping):
        raise _refuse("must be a JSON object (a mapping) or None")
    _check_shape(conditions)
    try:
        text = json.dumps(conditions, ensure_ascii=False, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise _refuse(f"not JSON-serialisable ({exc})") from None
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CONDITION_BYTES:
        raise _refuse(f"larger than {MAX_CONDITION_BYTES} bytes")
    plain = json.loads(text)
    nodes = [0]
    _validate_node(plain, nodes)
    return dict(plain)


def _validate_node(node: Any, nodes: list[int]) -> None:
    nodes[0] += 1
    if nodes[0] > MAX_NODES:
        raise _refuse(f"more than {MAX_NODES} condition objects")
    if not isinstance(node, dict) or not node:
        raise _refuse("each condition must be a non-empty JSON object")
    for operator, argument in node.items():
        if operator not in OPERATORS:
            raise _refuse(
                f"unknown operator {operator!r}; the operators are {', '.join(sorted(OPERATORS))}"
            )
        if operator in ("all", "any"):
            if not isinstance(argument, list) or not argument:
                raise _refuse(f"{operator} takes a non-empty list of conditions")
            for member in argument:
                _validate_node(member, nodes)
        elif operator == "time_window":
            _window(argument)
        elif operator == "project":
            _projects(argument)
        else:
            _level(argument)


def _window(argument: Any) -> tuple[int, int, datetime.tzinfo]:
    if not isinstance(argument, dict) or not {"start", "end"} <= set(argument):
        raise _refuse('time_window takes {"start": "HH:MM", "end": "HH:MM", "timezone": ...}')
    extra = set(argument) - _WINDOW_KEYS
    if extra:
        raise _refuse(f"time_window does not take {sorted(extra)}")
    bounds = []
    for name in ("start", "end"):
        value = argument[name]
        if not isinstance(value, str) or not _HHMM.match(value):
            raise _refuse(f"time_window {name} must be 'HH:MM' (00:00 to 23:59)")
        bounds.append(int(value[:2]) * 60 + int(value[3:]))
    if bounds[0] == bounds[1]:
        raise _refuse("time_window start and end must differ")
    return bounds[0], bounds[1], _zone(argument.get("timezone", "UTC"))


def _zone(name: Any) -> datetime.tzinfo:
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        raise _refuse("time_window timezone must be an IANA time zone name")
    if name == "UTC":
        return _UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise _refuse(f"unknown time zone {name!r}") from None


def _projects(argument: Any) -> frozenset[str]:
    if not isinstance(argument, list) or not 0 < len(argument) <= MAX_PROJECTS:
        raise _refuse(f"project takes a list of 1 to {MAX_PROJECTS} project ids")
    for item in argument:
        if not isinstance(item, str) or not 0 < len(item) <= MAX_ID_CHARS:
            raise _refuse(f"project ids must be strings of 1 to {MAX_ID_CHARS} characters")
    return frozenset(argument)


def _level(argument: Any) -> int:
    if argument not in _RANK:
        raise _refuse(f"min_security_level must be one of {', '.join(SECURITY_LEVELS)}")
    return _RANK[argument]


# -- compilation --------------------------------------------------------------------------


def compile_conditions(conditions: Any) -> Condition:
    """Validate ``conditions`` (as stored) and return a function evaluating them.

    Raises:
        InvalidValueError: as :func:`validate_conditions`.
    """
    plain = validate_conditions(conditions)
    assert plain is not None
    return _compile(plain)


def _compile(node: dict[str, Any]) -> Condition:
    parts = [_compile_operator(op, arg) for op, arg in node.items()]
    return parts[0] if len(parts) == 1 else _all_of(parts)


def _compile_operator(operator: str, argument: Any) -> Condition:
    if operator == "all":
        return _all_of([_compile(member) for member in argument])
    if operator == "any":
        return _any_of([_compile(member) for member in argument])
    if operator == "time_window":
        return _time_window(*_window(argument))
    if operator == "project":
        projects = _projects(argument)

        def in_project(now_ms: int, context: CheckContext) -> bool | None:
            if context.project_id is None:
                return None
            return context.project_id in projects

        return in_project
    minimum = _level(argument)

    def at_least(now_ms: int, context: CheckContext) -> bool | None:
        if context.security_level is None:
            return None
        return _RANK[context.security_level] >= minimum

    return at_least


def _time_window(start: int, end: int, zone: datetime.tzinfo) -> Condition:
    def within(now_ms: int, context: CheckContext) -> bool:
        local = datetime.datetime.fromtimestamp(now_ms / 1000, tz=zone)
        minute = local.hour * 60 + local.minute
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end  # wraps past midnight

    return within


def _all_of(parts: list[Condition]) -> Condition:
    def all_hold(now_ms: int, context: CheckContext) -> bool | None:
        unknown = False
        for part in parts:
            result = part(now_ms, context)
            if result is False:
                return False
            if result is None:
                unknown = True
        return None if unknown else True

    return all_hold


def _any_of(parts: list[Condition]) -> Condition:
    def any_holds(now_ms: int, context: CheckContext) -> bool | None:
        unknown = False
        for part in parts:
            result = part(now_ms, context)
            if result is True:
                return True
            if result is None:
                unknown = True
        return None if unknown else False

    return any_holds
