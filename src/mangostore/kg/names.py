"""Entity names: the canonical form, character trigrams, and the near-duplicate rule.

Three tests decide whether two names of the same entity type denote one thing:

1. **Canonical equality.** :func:`canonical` applies Unicode NFKC (full-width letters,
   ligatures and compatibility forms become plain ones), case folding (``ß`` → ``ss``)
   and whitespace collapsing. ``"New  York"``, ``"new york"`` and the same
   in full-width letters are one name.
2. **Separator variants.** :func:`compact` also drops everything that is not a letter or a
   digit, so ``auth-service``, ``auth_service``, ``Auth Service`` and ``authservice``
   are one name.
3. **Near misses** (:func:`near_duplicate`): names whose trigram similarity is at least
   :data:`TRIGRAM_THRESHOLD` and that differ in exactly one word, where that word is at
   least :data:`MIN_EDITED_WORD` letters long in both names, contains no digit, keeps its
   first letter, and is at most one edit away (two for words of nine letters or more).
   This catches typing and speech-recognition slips (``kubernetes`` / ``kubernetis``,
   ``postgres`` / ``postgress``) and refuses names that differ in what identifies them:
   ``auth-service`` / ``oauth-service`` (a different first letter, and a short word),
   ``api-v1`` / ``api-v2`` (digits), ``service-a`` / ``service-b`` (a one-letter word).
"""

from __future__ import annotations

import re
import unicodedata

import jellyfish

__all__ = [
    "MIN_EDITED_WORD",
    "TRIGRAM_THRESHOLD",
    "canonical",
    "compact",
    "edit_distance",
    "near_duplicate",
    "sound",
    "trigram_similarity",
    "trigrams",
    "words",
]

#: Least trigram similarity (Dice coefficient of padded trigram sets) of a near duplicate.
TRIGRAM_THRESHOLD = 0.6
#: Least length, in letters, of the one word in which two near duplicates may differ.
MIN_EDITED_WORD = 5

_SPACE = re.compile(r"\s+")
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WORD = re.compile(r"[^\W_]+")


def canonical(name: str) -> str:
    """Return the canonical form of a name: NFKC, case-folded, whitespace collapsed.

    NUL and other control characters count as whitespace, so they cannot make two
    otherwise equal names differ.
    """
    if name.isascii():
        # The same result, faster: ASCII is its own NFKC form, casefold() is lower(),
        # and its control characters (category Cc) are 0-31 and 127.
        return _SPACE.sub(" ", _ASCII_CONTROL.sub(" ", name.lower())).strip()
    return _canonical_unicode(name)


def _canonical_unicode(name: str) -> str:
    # NFKC again after folding: folding can leave text that is not in NFKC form.
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    text = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)
    return _SPACE.sub(" ", text).strip()


def words(name: str) -> list[str]:
    """Return the words (runs of letters and digits) of the canonical form of ``name``."""
    return _WORD.findall(canonical(name))


def compact(name: str) -> str:
    """Return the canonical form without separators (``auth-service`` → ``authservice``)."""
    return "".join(words(name))


def sound(name: str) -> str:
    """Return the Metaphone code of a name without its separators (``pie test`` and
    ``pytest`` are both ``PTST``), or ``""`` for a name without letters."""
    return str(jellyfish.metaphone(compact(name))).replace(" ", "")


def trigrams(text: str) -> set[str]:
    """Return the character trigrams of each word of ``text``, padded as pg_trgm does.

    Each word is padded with two spaces in front and one behind, so short words still
    give trigrams and word starts weigh more than word middles.
    """
    grams: set[str] = set()
    for word in words(text):
        padded = f"  {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


def trigram_similarity(a: str, b: str) -> float:
    """Return the Dice coefficient of the trigram sets of ``a`` and ``b`` (0.0 to 1.0)."""
    ta, tb = trigrams(a), trigrams(b)
    if not ta or not tb:
        return 0.0
    return 2 * len(ta & tb) / (len(ta) + len(tb))


def edit_distance(a: str, b: str, limit: int = 3) -> int:
    """Return the Damerau-Levenshtein distance (adjacent swaps count once), capped at ``limit``."""
    if abs(len(a) - len(b)) >= limit:
        return limit
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) >= limit:
            return limit
        previous2, previous = previous, current
    return min(previous[-1], limit)


def near_duplicate(a: str, b: str) -> float | None:
    """Return the trigram similarity of two names if they are near duplicates, else ``None``.

    Canonical and separator-only variants are near duplicates with similarity 1.0; see
    the module docstring for the rule applied to the rest.
    """
    if compact(a) == compact(b):
        return 1.0
    wa, wb = words(a), words(b)
    if len(wa) != len(wb):
        return None
    differing = [(x, y) for x, y in zip(wa, wb, strict=True) if x != y]
    if len(differing) != 1:
        return None
    x, y = differing[0]
    if min(len(x), len(y)) < MIN_EDITED_WORD or x[0] != y[0]:
        return None
    if any(ch.isdigit() for ch in x + y):
        return None
    allowed = 2 if min(len(x), len(y)) >= 9 else 1
    if edit_distance(x, y, allowed + 1) > allowed:
        return None
    similarity = trigram_similarity(a, b)
    return similarity if similarity >= TRIGRAM_THRESHOLD else None
