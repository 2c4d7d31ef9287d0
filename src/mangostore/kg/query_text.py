"""Query text for the full-text indexes: words, stopwords, Porter stems, safe FTS5 queries.

Shared by the knowledge graph's search and by AI memory's recall, which query FTS5
tables tokenized with ``porter``: what a query word becomes here must be what the
tokenizer made of the same word when it indexed it.
"""

from __future__ import annotations

import functools
import re
import threading

import snowballstemmer  # type: ignore[import-untyped]

__all__ = [
    "FILLERS",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_TERMS",
    "STOPWORDS",
    "fts_query",
    "porter_stem",
    "query_words",
]

#: Longer queries are cut to this many characters before they are split into words.
MAX_QUERY_CHARS = 1_000
#: Most distinct words of a query that are searched for.
MAX_QUERY_TERMS = 32

_WORD = re.compile(r"[^\W_]+(?:_[^\W_]+)*")
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "now",
        "of",
        "on",
        "or",
        "our",
        "please",
        "should",
        "so",
        "some",
        "tell",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "us",
        "use",
        "used",
        "uses",
        "using",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)


#: Words of spoken requests that say nothing about what is asked: fillers, the pieces
#: of contractions, request verbs and vague words ("hey, can you remind me what's up
#: with..."). A question's confidence is measured on its other words.
FILLERS = frozenset(
    {
        "hey", "hi", "um", "uh", "er", "hmm", "ok", "okay", "oh", "well", "so", "like",
        "just", "actually", "really", "again", "also", "still", "ever", "even", "very",
        "s", "t", "re", "ve", "ll", "d", "m", "don", "doesn", "didn", "isn", "wasn", "aren",
        "remind", "tell", "show", "give", "know", "remember", "recall", "say", "find", "forgot",
        "forget", "wonder", "wondering", "please", "mango", "assistant", "question",
        "open", "launch", "restart", "start", "stop", "close", "pull", "bring",
        "let", "get", "got", "go", "going", "doing", "done", "thing", "things",
        "stuff", "one", "ones", "something", "anything", "up", "out", "over", "right",
        "quick", "quickly", "real", "currently", "these", "those", "kind", "sort", "name", "called",
        "mean", "think", "want", "need", "see", "check", "much", "many", "more", "most",
        "last", "back", "here", "all", "other", "else", "exactly",
    }
)  # fmt: skip


def query_words(text: str) -> list[str]:
    """Return the words of ``text``, lower-cased (letters and digits; NUL and symbols dropped)."""
    return [w.casefold() for w in _WORD.findall(text[:MAX_QUERY_CHARS])]


_STEMMER = snowballstemmer.stemmer("porter")
_STEMMER_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4096)
def porter_stem(word: str) -> str:
    """Return ``word`` (lower case) as the FTS5 ``porter`` tokenizer indexes it.

    Both implement Martin Porter's original algorithm; FTS5 leaves words of one or two
    characters as they are.
    """
    if len(word) <= 2:
        return word
    with _STEMMER_LOCK:  # a snowball stemmer keeps its working string on the object
        return str(_STEMMER.stemWord(word))


def fts_query(
    text: str, common: frozenset[str] = frozenset(), *, column: str | None = "content"
) -> str | None:
    """Turn user text into a safe FTS5 query, or None when it has no words.

    Every word becomes a quoted string (inner quotes doubled), the words (at most
    :data:`MAX_QUERY_TERMS`) are joined with OR and ranked by BM25; stopwords and the
    ``common`` words are left out unless nothing else remains. ``column`` restricts
    the query to one column (``None``: all). Nothing in ``text`` can add an operator,
    a column filter or a prefix query.
    """
    words = query_words(text)
    content = [w for w in words if w not in STOPWORDS] or words
    content = [w for w in content if w not in common] or content
    if not content:
        return None
    unique = list(dict.fromkeys(content))[:MAX_QUERY_TERMS]
    terms = " OR ".join('"' + w.replace('"', '""') + '"' for w in unique)
    return terms if column is None else f"{column} : ({terms})"
