"""Which words of a question name a predicate: ``maintains``, ``maintainer`` and ``who
looks after`` all mean ``maintains``.

A predicate's own words (``depends_on`` -> ``depends``) are stemmed as the full-text
index stems them, with agent and action suffixes taken off (``owner`` -> ``own``,
``dependency`` -> ``depend``), and widened by a small table of verbs that people use
for the relations a developer's graph holds. Words that connect rather than name
(``on``, ``of``, ``for``) never count.
"""

from __future__ import annotations

import functools

from mangostore.kg.query_text import porter_stem

__all__ = ["cue_stems", "predicate_stems", "word_stems"]

#: Parts of predicate names that say nothing on their own.
_CONNECTIVES = frozenset(
    {
        "a", "an", "and", "as", "at", "by", "for", "from", "has", "have", "in", "into", "is",
        "of", "on", "or", "the", "to", "via", "with",
    }
)  # fmt: skip
#: Stems that mean the same relation, each group's members standing for one another.
_SYNONYMS: tuple[frozenset[str], ...] = tuple(
    frozenset(porter_stem(w) for w in group.split())
    for group in (
        "maintain own look respons steward caretak ask took take",
        "depend need requir reli import",
        "use run employ",
        "prefer favourit favorit like love default choic",
        "work contribut develop build hack plate busi",
        "member belong join team",
        "report manag boss lead supervis head",
        "call page pager pagerduty rotat escal",
        "deploy host live ship serv run cluster",
        "written write languag implement",
        "review approv check",
        "author creat wrote made start found",
        "test verifi",
        "store save kept keep locat",
        "mentor teach coach",
        "know expert speak",
        "block wait",
        "relat link connect",
        "theme colour color scheme palett",
    )
)


@functools.lru_cache(maxsize=8192)
def word_stems(word: str) -> frozenset[str]:
    """Return the stems of a word: its Porter stem, and that stem without an agent or
    action suffix (``owner`` -> ``own``; ``prefer`` keeps ``prefer`` as well)."""
    stem = porter_stem(word)
    stems = {stem}
    for suffix in ("er", "or", "ion", "ment", "enc", "anc"):
        if stem.endswith(suffix) and len(stem) - len(suffix) >= 3:
            stems.add(stem[: -len(suffix)])
    return frozenset(stems)


@functools.lru_cache(maxsize=1024)
def predicate_stems(predicate: str) -> frozenset[str]:
    """Return the stems that name ``predicate`` (its own words and their synonyms)."""
    own: set[str] = set()
    for part in predicate.lower().split("_"):
        if part and part not in _CONNECTIVES:
            own |= word_stems(part)
    wider = set(own)
    for group in _SYNONYMS:
        if own & group:
            wider |= group
    return frozenset(wider)


def cue_stems(words: list[str]) -> dict[str, frozenset[str]]:
    """Return the stems of each question word that may name a predicate, by word."""
    return {w: word_stems(w) for w in words if len(w) >= 2 and w not in _CONNECTIVES}
