"""User names: one stored spelling, one identity for every spelling, no look-alikes.

A new or changed user name must be text that can be stored (no unpaired surrogate), 1
to :data:`MAX_USERNAME_CHARS` characters after NFC, without white space at either end,
without control, format, separator, private-use, surrogate or unassigned characters
(categories Cc, Cf, Zl, Zp, Co, Cs, Cn) or other invisible ones, and written in one
script (see :func:`check_scripts`). It is stored in NFC. Two more values are derived
from it and kept, each under a UNIQUE index, in ``user_name_keys`` (migration 13):

* :func:`username_key`, its identity: NFKC and Unicode case folding, as the PRECIS
  ``UsernameCaseMapped`` profile (RFC 8265) maps names before comparing them. ``José``
  typed as NFC or NFD, ``ANN``, ``ann`` and a fullwidth ``ann`` (U+FF41...) are one name: only one
  user can have it, and logging in with any of them finds that user.
* :func:`username_skeleton`, its look: the "skeleton" of Unicode TS #39 (section 4),
  which maps every character to the prototype it can be mistaken for, so that ``paypal``
  and ``paypal`` spelt with a Cyrillic ``a`` (U+0430), ``bill`` and ``biII``, ``modern``
  and ``rnodern`` have the same skeleton, and a second name that looks like a taken one is refused.
  The confusables table is Unicode's ``confusables.txt``, as shipped by the
  ``confusable-homoglyphs`` package.

See docs/authentication.md ("User names").
"""

from __future__ import annotations

import functools
import unicodedata
from collections import defaultdict
from typing import Final

from mangostore.errors import InvalidValueError
from mangostore.repos.spec import encodable

__all__ = [
    "MAX_USERNAME_CHARS",
    "check_scripts",
    "normalize_username",
    "username_key",
    "username_skeleton",
]

#: The longest user name accepted, in characters after NFC.
MAX_USERNAME_CHARS: Final = 128
_FIELD: Final = "username"
_REFUSED_CATEGORIES: Final = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Co": "a private-use character",
    "Cs": "a surrogate",
    "Cn": "an unassigned code point",
}
# Default-ignorable code points (Unicode's DerivedCoreProperties) that render as
# nothing yet are not of a refused category (letters and marks), so the category test
# alone would let them hide inside a name: combining grapheme joiner, Hangul fillers,
# Khmer inherent vowels, Mongolian variation selectors, variation selectors.
_INVISIBLE: Final = (
    frozenset(
        (0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x3164, 0xFFA0)
    )
    | frozenset(range(0xFE00, 0xFE10))
    | frozenset(range(0xE0100, 0xE01F0))
)
# Characters of these scripts belong to no one script and never count as mixing.
_ANY_SCRIPT: Final = frozenset({"COMMON", "INHERITED"})
# Scripts that one language writes together (Unicode TS #39's "highly restrictive"
# level): Japanese, Chinese with Bopomofo, Korean, each with Latin.
_WRITTEN_TOGETHER: Final = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
# Right-to-left and left-to-right marks that confusables.txt's comments put around
# right-to-left characters for display; they are not part of the mapping.
_DISPLAY_MARKS: Final = str.maketrans("", "", "\u200e\u200f")


def normalize_username(value: object) -> str:
    """Check a new user name against the rules above and return it in NFC.

    Raises:
        InvalidValueError: with ``field="username"``, saying which rule the name breaks.
    """
    if not isinstance(value, str):
        raise _refused(f"must be a string, not {type(value).__name__}")
    if not encodable(value):
        raise _refused(
            "contains a lone surrogate code point, which is not valid Unicode; pass valid "
            "text (decode bytes with errors='replace', not 'surrogateescape')"
        )
    name = unicodedata.normalize("NFC", value)
    if not 0 < len(name) <= MAX_USERNAME_CHARS:
        raise _refused(f"must have 1 to {MAX_USERNAME_CHARS} characters")
    if name != name.strip():
        raise _refused("must not begin or end with white space; remove it")
    for char in name:
        what = _REFUSED_CATEGORIES.get(unicodedata.category(char))
        if what is None and ord(char) in _INVISIBLE:
            what = "an invisible character"
        if what is not None:
            raise _refused(
                f"contains {what} ({_describe(char)}); user names may hold only visible "
                "characters and spaces"
            )
    check_scripts(name)
    return name


def check_scripts(name: str) -> None:
    """Refuse a name whose letters and digits come from scripts no language mixes.

    Characters common to all scripts (digits 0-9, punctuation, spaces) and combining
    marks do not count. A name may use one script, or Latin with Han and the Japanese
    kana, with Han and Bopomofo, or with Han and Hangul (Unicode TS #39's "highly
    restrictive" level). So ``paypal`` with a Cyrillic ``a`` (U+0430) is refused, and so is a
    Latin name with an Arabic-Indic digit.

    Raises:
        InvalidValueError: with ``field="username"``, naming the scripts found.
    """
    from confusable_homoglyphs.categories import alias  # its Scripts.txt table

    scripts = {alias(char) for char in name} - _ANY_SCRIPT
    if len(scripts) <= 1 or any(scripts <= allowed for allowed in _WRITTEN_TOGETHER):
        return
    listed = " and ".join(sorted(s.title().replace("_", " ") for s in scripts))
    raise _refused(f"mixes the scripts {listed}, as look-alike names do; write it in one script")


def username_key(name: str) -> str:
    """Return the identity of a user name: NFKC, then Unicode case folding, then NFKC.

    Every spelling of one name has one key: NFC or NFD, upper or lower case,
    fullwidth or not. Defined for every string, lone surrogates included, so that a
    login with any text can be counted under a key.
    """
    folded = unicodedata.normalize("NFKC", name).casefold()
    return unicodedata.normalize("NFKC", folded)


def username_skeleton(name: str) -> str:
    """Return what a user name looks like: its Unicode TS #39 skeleton, without case.

    The skeleton of the name as typed (so that a capital ``I`` passes for an ``l``),
    case folded, and the skeleton of that again (so that case cannot hide a look-alike
    either). Two names with one skeleton can be mistaken for each other.
    """
    return _skeleton(_skeleton(name).casefold())


def _skeleton(text: str) -> str:
    """NFD, each character replaced by its prototype, NFD again; repeated until stable."""
    prototypes = _prototypes()
    current = unicodedata.normalize("NFD", text)
    # The mapping is idempotent in Unicode's data; a prototype chosen between two
    # equals (below) may not be, and a second round makes the result stable. Bounded
    # so no data can make it loop.
    for _ in range(4):
        mapped = unicodedata.normalize(
            "NFD", "".join(prototypes.get(char, char) for char in current)
        )
        if mapped == current:
            break
        current = mapped
    return current


@functools.cache
def _prototypes() -> dict[str, str]:
    """Map each confusable character to the prototype of its class (built once).

    ``confusable-homoglyphs`` stores ``confusables.txt`` both ways (each source lists
    its prototype, each prototype its sources), so the direction is recovered: every
    class is a star around its prototype, the one member with more than one neighbour.
    For a class of two, either member may be the prototype: a string of several
    characters is (sources are single characters), else the lower code point is taken.
    Any fixed choice gives equal skeletons for the two, which is all a comparison needs.
    """
    from confusable_homoglyphs.confusables import confusables_data

    neighbours: defaultdict[str, set[str]] = defaultdict(set)
    for source, entries in confusables_data.items():
        a = source.translate(_DISPLAY_MARKS)
        for entry in entries:
            b = str(entry["c"]).translate(_DISPLAY_MARKS)
            if a and b and a != b:
                neighbours[a].add(b)
                neighbours[b].add(a)
    prototypes: dict[str, str] = {}
    for node, near in neighbours.items():
        if len(node) != 1 or len(near) > 1:
            continue  # only single characters are looked up; a hub is a prototype
        (other,) = near
        if len(neighbours[other]) > 1 or len(other) > 1 or other < node:
            prototypes[node] = other
    return prototypes


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X} {name}".rstrip()


def _refused(problem: str) -> InvalidValueError:
    return InvalidValueError(f"users.username {problem}", field=_FIELD)
