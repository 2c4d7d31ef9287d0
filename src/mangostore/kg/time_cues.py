"""When a spoken question is about: now, before (a previous value), or a stretch of time.

"which editor do I use these days" asks about now; "what editor did I use before this
one", "the previous on-call", "what did I use to use" ask for a value that no longer
holds; "last week", "three months ago", "in march", "in 2024" name a stretch of time.
:func:`time_scope` reads these from the question's words, so that the caller never has
to compute an ``as_of`` date. Dates are worked out in UTC from the database clock.
"""

from __future__ import annotations

import calendar
import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["TimeScope", "time_scope"]

_DAY_MS = 86_400_000
_UNITS_MS = {
    "day": _DAY_MS,
    "week": 7 * _DAY_MS,
    "month": 30 * _DAY_MS,
    "year": 365 * _DAY_MS,
}
_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "couple": 2,
    "few": 3,
}  # fmt: skip
#: Words that ask for a value that no longer holds.
_BEFORE = frozenset(
    {
        "before", "previous", "previously", "formerly", "former", "earlier", "prior",
        "originally", "used", "anymore", "longer", "old", "ex", "replaced", "switched",
        "past", "once",
    }
)  # fmt: skip
#: Words that ask about the present explicitly.
_NOW = frozenset(
    {"now", "currently", "current", "nowadays", "days", "today", "moment", "presently", "present"}
)
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})


@dataclass(frozen=True, slots=True)
class TimeScope:
    """What time a question is about.

    Attributes:
        mode: ``"now"`` (facts that hold now), ``"before"`` (facts that held and no
            longer do, the latest first) or ``"during"`` (facts that held at some time
            from ``start`` to ``end``).
        start, end: the stretch of a ``"during"`` question, epoch ms.
        words: the question's words that said so (they need no other explanation).
    """

    mode: Literal["now", "before", "during"] = "now"
    start: int | None = None
    end: int | None = None
    words: frozenset[str] = field(default_factory=frozenset)


def _unit(word: str) -> str | None:
    stem = word[:-1] if word.endswith("s") else word
    return stem if stem in _UNITS_MS else None


def _during(words: Sequence[str], now: int) -> TimeScope | None:
    for i, word in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        unit = _unit(nxt)
        if word in ("last", "past") and unit is not None:
            size = _UNITS_MS[unit]
            return TimeScope("during", now - 2 * size, now - size // 2, frozenset({word, nxt}))
        if word == "yesterday":
            return TimeScope("during", now - 2 * _DAY_MS, now, frozenset({word}))
        if word == "ago" and i >= 1:
            unit = _unit(words[i - 1])
            if unit is not None:
                count = 1
                if i >= 2:
                    before = words[i - 2]
                    count = int(before) if before.isdigit() else _NUMBERS.get(before, 1)
                size = _UNITS_MS[unit]
                centre = now - count * size
                used = frozenset(words[max(0, i - 2) : i + 1])
                return TimeScope("during", centre - size, centre + size // 2, used)
        if word == "in" and nxt:
            span = _named_span(nxt, now)
            if span is not None:
                return TimeScope("during", span[0], span[1], frozenset({word, nxt}))
    return None


def _named_span(word: str, now: int) -> tuple[int, int] | None:
    """The last month of this name before now, or a year, as (start, end) epoch ms."""
    today = dt.datetime.fromtimestamp(now / 1000, tz=dt.UTC)
    if word.isdigit() and len(word) == 4:
        year = int(word)
        start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
        end = dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC)
    elif word in _MONTHS and word not in ("may", "mar"):  # everyday words first
        month = _MONTHS[word]
        year = today.year if month <= today.month else today.year - 1
        start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
        end = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=dt.UTC)
    else:
        return None
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def time_scope(words: Sequence[str], now: int) -> TimeScope:
    """Return what time the question made of ``words`` (lower case) is about."""
    during = _during(words, now)
    if during is not None:
        return during
    used = frozenset(w for w in words if w in _BEFORE)
    # "used" alone is a verb ("which editor is used"); "used to" is the past, and so is
    # "did I use to", as transcriptions write it.
    pairs = list(itertools.pairwise(words))
    habit = any(a == "used" and b == "to" for a, b in pairs) or any(
        a == "did" and b == "i" and c == "use" and d == "to"
        for a, b, c, d in zip(words, words[1:], words[2:], words[3:], strict=False)
    )
    if "used" in used and not habit:
        used = used - {"used"}
    if habit:
        used = used | {"used", "use", "to"}
    if used:
        return TimeScope("before", words=used)
    return TimeScope("now", words=frozenset(w for w in words if w in _NOW or w == "these"))
