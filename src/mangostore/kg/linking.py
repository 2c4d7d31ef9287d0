"""Which entities a spoken question names, and how surely.

A span of the question (one to four words) links an entity when it is the entity's
name or one of its aliases (canonically), when it sounds like one (the same Metaphone
code, for names a transcription misheard: ``graph ana`` for ``grafana``), when it is a
spelled-out or abbreviated form of one (:mod:`~mangostore.kg.jargon`), or when it is
part of a name. How sure a link is depends on how specific its words are: the inverse
document frequency of each word over all names and aliases. A word that many names
share ("service", "api") links each of them only weakly, so that it cannot pull the
neighbourhoods of dozens of entities into the answer; a rare word links strongly.

"I", "me" and "my" link the speaker's own entity (:class:`Speaker`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mangostore.kg.jargon import spoken_forms
from mangostore.kg.names import canonical, compact, sound, trigram_similarity
from mangostore.kg.names import words as name_words
from mangostore.kg.query_text import FILLERS, STOPWORDS, porter_stem

if TYPE_CHECKING:
    from mangostore.engine.pragmas import Connection
    from mangostore.kg.store import GraphStore

__all__ = ["PRONOUNS", "Link", "Linker", "speaker_words", "specificity"]

#: Words by which the speaker means themself.
PRONOUNS = frozenset(["i", "me", "my", "mine", "myself", "im", "i'm", "ive", "i've", "id", "i'd"])
#: How sure a link by sound or by a spoken form is, before its words' specificity.
SOUND_LINK = 0.85
#: Least trigram similarity of one word to the name it sounds like, to link it.
ONE_WORD_SOUND = 0.25
#: Least Metaphone code length for a one-word sound link (short codes collide).
MIN_SOUND = 3
#: How sure a link by part of a name is, at most (all of its specific words named).
PARTIAL_LINK = 0.75
#: How sure a link by the start of a name is, at most ("prom" for prometheus).
CLIPPED_LINK = 0.8
#: Least letters of a clipped name, and most names it may start.
MIN_CLIPPED = 4
MAX_CLIPPED = 3
#: Least trigram similarity of a misspelt name to link its entity.
SIMILAR_LINK = 0.75
#: Most entities linked by one question.
MAX_LINKS = 8
#: Most entities one word may link by part of their name: a word in more names than
#: this is no name at all.
MAX_PARTIAL = 12


@dataclass(slots=True)
class Link:
    """An entity the question names.

    Attributes:
        entity_id: the entity.
        weight: how sure the link is, 0 to 1.
        words: the question's words that named it.
        how: ``"name"``, ``"sound"``, ``"part"``, ``"clipped"`` or ``"speaker"``.
    """

    entity_id: str
    weight: float
    words: frozenset[str] = field(default_factory=frozenset)
    how: str = "name"


def specificity(df: int, total: int) -> float:
    """Return how specific a word found in ``df`` of ``total`` names is, 0 to 1."""
    if total <= 1:
        return 1.0
    return max(0.0, min(1.0, math.log((total + 1) / (df + 0.5)) / math.log(total + 1)))


def speaker_words(words: Sequence[str]) -> frozenset[str]:
    """The words by which the speaker means themself.

    "me" in "remind me", "tell me" is part of the request, and "I" in "how do I" means
    anyone: neither is about the speaker's own facts.
    """
    mine = set()
    for i, w in enumerate(words):
        if w not in PRONOUNS:
            continue
        if w == "me" and i > 0 and words[i - 1] in FILLERS:
            continue
        if w == "i" and i >= 2 and words[i - 2] == "how" and words[i - 1] in _MODALS:
            continue
        mine.add(w)
    return frozenset(mine)


_MODALS = frozenset({"do", "can", "could", "should", "would", "shall", "to"})


def _spans(words: Sequence[str]) -> list[tuple[int, int]]:
    return [
        (i, i + n)
        for n in range(1, min(4, len(words)) + 1)
        for i in range(len(words) - n + 1)
        if not all(w in STOPWORDS or w in PRONOUNS for w in words[i : i + n])
    ]


class Linker:
    """Links the words of a question to the user's entities.

    Args:
        store: the graph's row access (names, aliases, sounds, name frequencies).
    """

    def __init__(self, store: GraphStore) -> None:
        self._store = store

    def link(
        self,
        conn: Connection,
        user_id: str,
        words: Sequence[str],
        similar: Sequence[tuple[str, str, float]],
        speaker: str | None,
        known: dict[str, int],
    ) -> list[Link]:
        """Return the entities ``words`` name, surest first.

        Args:
            similar: (entity id, name, trigram similarity) of names like the question's
                words, from the trigram retriever.
            speaker: the speaker's entity, linked when the question says "I" or "my".
            known: in how many rows of the full-text index each word's stem occurs.
        """
        spans = _spans(words)
        total, counts = self._store.name_frequencies(conn, set(words))
        spec = {w: specificity(counts.get(w, 0), total) for w in words}
        links: dict[str, Link] = {}

        def offer(entity_id: str, weight: float, used: frozenset[str], how: str) -> None:
            old = links.get(entity_id)
            if old is None or weight > old.weight:
                links[entity_id] = Link(entity_id, weight, used, how)

        def span_weight(used: Sequence[str]) -> float:
            content = [spec[w] for w in used if w not in STOPWORDS]
            return 0.6 + 0.4 * max(content, default=0.0)

        keys: dict[str, tuple[str, ...]] = {}
        for i, j in spans:
            keys.setdefault(canonical(" ".join(words[i:j])), tuple(words[i:j]))
        forms = spoken_forms(words)
        for i, j, form in forms:
            keys.setdefault(canonical(form), tuple(words[i:j]))
        for entity_id, key in self._store.entities_named(conn, user_id, keys):
            used = keys[key]
            offer(entity_id, span_weight(used), frozenset(used), "name")
        codes: dict[str, tuple[str, ...]] = {}
        for i, j in spans:
            if j - i == 1 and words[i] in FILLERS:
                continue  # "forgot" sounds like fira code, and says nothing
            code = sound(" ".join(words[i:j]))
            if len(code) >= MIN_SOUND or (j - i >= 2 and len(code) >= 2):
                codes.setdefault(code, tuple(words[i:j]))
        for i, j, form in forms:
            code = sound(form)
            if len(code) >= 2:
                codes.setdefault(code, tuple(words[i:j]))
        for entity_id, name, code in self._store.entities_sounding(conn, user_id, codes):
            used = codes[code]
            # One word that merely sounds like a name ("flight", "vault") must also be
            # spelt a little like it: misheard names are ("graphana", "grafana").
            if len(used) == 1 and trigram_similarity(used[0], name) < ONE_WORD_SOUND:
                continue
            if compact(" ".join(used)) == compact(name):  # "catalog client": catalog-client
                offer(entity_id, span_weight(used), frozenset(used), "name")
            else:
                offer(entity_id, SOUND_LINK * span_weight(used), frozenset(used), "sound")
        self._partial(words, spec, similar, offer)
        self._clipped(conn, user_id, words, counts, known, offer)
        mine = speaker_words(words)
        if speaker is not None and mine:
            offer(speaker, 1.0, mine, "speaker")
        return sorted(links.values(), key=lambda link: -link.weight)[:MAX_LINKS]

    def _clipped(
        self,
        conn: Connection,
        user_id: str,
        words: Sequence[str],
        counts: dict[str, int],
        known: dict[str, int],
        offer: Callable[[str, float, frozenset[str], str], None],
    ) -> None:
        """Link a name the question clips: "prom" for prometheus, "elastic" for
        elasticsearch. Only a word the graph does not know otherwise, of at least
        :data:`MIN_CLIPPED` letters, that starts at most :data:`MAX_CLIPPED` names."""
        for word in dict.fromkeys(words):
            if len(word) < MIN_CLIPPED or word in STOPWORDS or counts.get(word, 0):
                continue
            if known.get(porter_stem(word), 0):
                continue  # a word of the graph's text, not a clipped name
            found = self._store.names_starting(conn, user_id, word, MAX_CLIPPED + 1)
            whole = [(e, n) for e, n in found if any(p.startswith(word) for p in name_words(n))]
            if 0 < len(whole) <= MAX_CLIPPED:
                for entity_id, name in whole:
                    share = len(word) / max(len(w) for w in name_words(name) if w.startswith(word))
                    offer(
                        entity_id, CLIPPED_LINK * (0.5 + 0.5 * share), frozenset({word}), "clipped"
                    )

    @staticmethod
    def _partial(
        words: Sequence[str],
        spec: dict[str, float],
        similar: Sequence[tuple[str, str, float]],
        offer: Callable[[str, float, frozenset[str], str], None],
    ) -> None:
        """Link names the question names in part, by the specificity of the shared words.

        Also links names like a question word by trigrams (a misspelling), as surely as
        the two are alike.
        """
        asked = {w for w in words if w not in STOPWORDS}
        by_word: dict[str, int] = {}
        candidates: list[tuple[str, frozenset[str], float]] = []
        shared: frozenset[str]
        for entity_id, name, similarity in similar:
            parts = name_words(name)
            shared = frozenset(asked.intersection(parts))
            if shared:
                mass = sum(spec.get(p, 1.0) for p in parts) or 1.0
                share = sum(spec[w] for w in shared) / mass
                telling = max(spec[w] for w in shared)
                candidates.append((entity_id, shared, PARTIAL_LINK * telling * (0.5 + 0.5 * share)))
                for w in shared:
                    by_word[w] = by_word.get(w, 0) + 1
            elif similarity >= SIMILAR_LINK:
                close = frozenset(w for w in asked if trigram_similarity(w, name) >= 0.4)
                candidates.append((entity_id, close, SOUND_LINK * similarity))
        for entity_id, shared, weight in candidates:
            if all(by_word.get(w, 0) <= MAX_PARTIAL for w in shared):
                offer(entity_id, weight, shared, "part")
