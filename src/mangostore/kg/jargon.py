"""How developers say names aloud: spelled-out letters and common abbreviations.

A voice transcription writes what it heard: ``jay queue`` for ``jq``, ``k eight s``
for ``k8s``, ``kube`` for ``kubernetes``. :func:`spoken_forms` turns a question's words
into the other spellings a name in the graph may have, which entity linking then looks
up like any name. The table is small and generic on purpose: the user's own aliases
(``db.kg.add_alias``) are looked up the same way and teach search the rest.

No library ships developer jargon with its spoken forms, hence this table.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ABBREVIATIONS", "LETTER_NAMES", "spoken_forms"]

#: English names of letters and digits as a transcription writes them.
LETTER_NAMES: dict[str, str] = {
    "a": "a", "ay": "a", "bee": "b", "be": "b", "b": "b", "see": "c", "sea": "c", "c": "c",
    "dee": "d", "d": "d", "e": "e", "ee": "e", "eff": "f", "ef": "f", "f": "f", "gee": "g",
    "g": "g", "aitch": "h", "h": "h", "eye": "i", "i": "i", "jay": "j", "j": "j",
    "kay": "k", "k": "k", "el": "l", "ell": "l", "l": "l", "em": "m", "m": "m", "en": "n",
    "n": "n", "oh": "o", "o": "o", "pee": "p", "pea": "p", "p": "p", "cue": "q", "queue": "q",
    "q": "q", "ar": "r", "are": "r", "r": "r", "ess": "s", "es": "s", "s": "s", "tee": "t",
    "tea": "t", "t": "t", "you": "u", "u": "u", "vee": "v", "v": "v", "double you": "w",
    "w": "w", "ex": "x", "x": "x", "why": "y", "y": "y", "zee": "z", "zed": "z", "z": "z",
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip

#: Abbreviations developers say aloud, with what they stand for (either way round).
ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "k8s": ("kubernetes", "kube", "kates"),
    "kube": ("kubernetes", "k8s"),
    "pg": ("postgres", "postgresql"),
    "postgres": ("postgresql", "pg"),
    "tf": ("terraform",),
    "gh": ("github",),
    "gl": ("gitlab",),
    "js": ("javascript",),
    "ts": ("typescript",),
    "py": ("python",),
    "rb": ("ruby",),
    "db": ("database",),
    "repo": ("repository",),
    "env": ("environment",),
    "config": ("configuration",),
    "prod": ("production",),
    "dev": ("development",),
    "stg": ("staging", "stage"),
    "stage": ("staging",),
    "infra": ("infrastructure",),
    "auth": ("authentication", "authorization"),
    "ci": ("continuous integration",),
    "cd": ("continuous delivery", "continuous deployment"),
    "pr": ("pull request",),
    "mr": ("merge request",),
    "vm": ("virtual machine",),
    "ml": ("machine learning",),
    "ui": ("user interface",),
    "api": ("application programming interface",),
    "cli": ("command line",),
    "vscode": ("visual studio code", "vs code"),
    "nvim": ("neovim",),
    "neovim": ("nvim",),
    "vim": ("vi",),
    "nginx": ("engine x",),
    "mongo": ("mongodb",),
    "redis": ("redis server",),
    "sql": ("sequel",),
    "regex": ("regular expression", "regexp"),
    "ssh": ("secure shell",),
    "tls": ("ssl",),
    "dns": ("domain name system",),
    "aws": ("amazon web services",),
    "gcp": ("google cloud",),
    "oncall": ("on call",),
    "docs": ("documentation",),
    "eng": ("engineering",),
    "mgr": ("manager",),
    "pm": ("product manager", "project manager"),
    "qa": ("quality assurance",),
    "sre": ("site reliability",),
}
#: Letter names that are also everyday words: a run of spelled letters must hold at
#: least one other ("why are you" is not ``yru``; "k eight s" is ``k8s``).
_EVERYDAY = frozenset(
    {
        "a", "ay", "i", "be", "see", "sea", "are", "you", "why", "tea", "pea", "oh", "eye",
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "zero",
    }
)  # fmt: skip
# Each expansion also leads back to its abbreviation.
_EXPANSIONS: dict[str, set[str]] = {}
for _short, _longs in ABBREVIATIONS.items():
    _EXPANSIONS.setdefault(_short, set()).update(_longs)
    for _long in _longs:
        _EXPANSIONS.setdefault(_long, set()).add(_short)


def _letter_runs(words: Sequence[str]) -> list[tuple[int, int, str]]:
    """Return (start, end, letters) for each run of two or more spelled letters."""
    runs: list[tuple[int, int, str]] = []
    i = 0
    while i < len(words):
        j, letters, telling = i, "", False
        while j < len(words):
            pair = " ".join(words[j : j + 2])
            if j + 1 < len(words) and pair in LETTER_NAMES:
                letters += LETTER_NAMES[pair]
                telling = True
                j += 2
            elif words[j] in LETTER_NAMES:
                letters += LETTER_NAMES[words[j]]
                telling = telling or words[j] not in _EVERYDAY
                j += 1
            else:
                break
        if j - i >= 2 and len(letters) >= 2 and telling:
            runs.append((i, j, letters))
            i = j
        elif j - i == 1 and telling:
            runs.append((i, j, letters))  # one spelled letter, joined to the next word below
            i = j
        else:
            i += 1
    return runs


def spoken_forms(words: Sequence[str]) -> list[tuple[int, int, str]]:
    """Return other spellings of spans of ``words``: (first word, end, spelling).

    Runs of spelled letters become the letters (``jay queue`` -> ``jq``, also joined
    to the next word: ``vee ess code`` -> ``vscode``); a known abbreviation or its
    expansion becomes the other (``k8s`` <-> ``kubernetes``, ``prod`` ->
    ``production``).
    """
    forms: list[tuple[int, int, str]] = []
    for start, end, letters in _letter_runs(words):
        if end - start >= 2:
            forms.append((start, end, letters))
        forms.extend((start, end, other) for other in sorted(_EXPANSIONS.get(letters, ())))
        if end < len(words):
            forms.append((start, end + 1, letters + words[end]))
    for n in (1, 2, 3):
        for i in range(len(words) - n + 1):
            span = " ".join(words[i : i + n])
            near = _EXPANSIONS.get(span, set())
            # One step further: "kates" -> k8s -> kubernetes.
            wider = near.union(*(_EXPANSIONS.get(other, set()) for other in near)) - {span}
            forms.extend((i, i + n, other) for other in sorted(wider))
    return forms
