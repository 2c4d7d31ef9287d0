"""BERT's uncased WordPiece tokenizer in Python, as all-MiniLM-L6-v2's ``tokenizer.json`` has it.

It reproduces the Hugging Face ``tokenizers`` pipeline of that file token for token: the
special tokens are matched in the raw text, then ``BertNormalizer`` (drop control and
format characters, whitespace to spaces, spaces around CJK ideographs, NFD with the
non-spacing marks removed, lowercase), ``BertPreTokenizer`` (split at whitespace and
around every punctuation character), greedy longest-match-first WordPiece with ``##``
continuations, truncation and ``[CLS] ... [SEP]``. A test compares its ids with the
ones ``tokenizers`` gave on a broad set of texts (``tests/kg/embedding_tokenizer_ids.json``).

Why not a library: ``tokenizers`` (and ``transformers``, whose ``BertTokenizer`` is
Python) install ``huggingface_hub`` and with it an HTTP stack and a download client, in
a product that must never go online; the other WordPiece packages on PyPI are native
builds of one author each or unmaintained, and every text a user stores would pass
through them. The algorithm is small and stable, and this module needs nothing beyond
the standard library.

Where ``tokenizers`` classifies characters with its own Unicode tables (categories of
an older Unicode version than Python's ``unicodedata``), :data:`_OLD_TABLES` records
the code points whose class differs, found by comparing every code point on Python 3.11
(Unicode 14.0). On a later Python, a character that Unicode assigned after 14.0 as a
mark, punctuation or format character follows its new category here and stays a letter
there: a text with such a character may get other ids than ``tokenizers`` gives it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from mangostore.errors import ConfigurationError

__all__ = ["WordPieceTokenizer"]

#: Unicode's White_Space property (what Rust's ``char::is_whitespace`` tests).
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: The blocks that ``tokenizers`` treats as CJK ideographs, each split into its own word.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
#: The classes a character can have for this pipeline.
_KEEP, _DROP, _SPACE, _MARK, _PUNCT, _CJK = range(6)
#: Code points (hexadecimal, ranges inclusive) that ``tokenizers`` keeps as letters
#: although Python 3.11's ``unicodedata`` (Unicode 14.0) makes them marks, punctuation or
#: format characters: its category tables predate their assignment. Found by encoding
#: every code point with both tokenizers.
_ADDED_SINCE_ITS_TABLES = """
    61D 7FD 890-891 898-89F 8CA-8E2 9FD-9FE A76 AFA-AFF B55 C04 C3C C77 C84 D00 D3B-D3C D81
    EBA 180F 1885-1886 1ABF-1ACE 1B7D-1B7E 1DF6-1DFB 2E43-2E4F 2E52-2E5D A82C A8C5 A8FF
    A9BD 10D24-10D27 10EAB-10EAD 10F46-10F50 10F55-10F59 10F82-10F89 11070 11073-11074
    110C2 110CD 111CF 1123E 1133B 11438-1143F 11442-11444 11446 1144B-1144F 1145A-1145B
    1145D-1145E 11660-1166C 116B9 1182F-11837 11839-1183B 1193B-1193C 1193E 11943-11946
    119D4-119D7 119DA-119DB 119E0 119E2 11A01-11A0A 11A33-11A38 11A3B-11A47 11A51-11A56
    11A59-11A5B 11A8A-11A96 11A98-11A9C 11A9E-11AA2 11C30-11C36 11C38-11C3D 11C3F
    11C41-11C45 11C70-11C71 11C92-11CA7 11CAA-11CB0 11CB2-11CB3 11CB5-11CB6 11D31-11D36
    11D3A 11D3C-11D3D 11D3F-11D45 11D47 11D90-11D91 11D95 11D97 11EF3-11EF4 11EF7-11EF8
    11FFF 12FF1-12FF2 13430-13438 16E97-16E9A 16F4F 16FE2 16FE4 1CF00-1CF2D 1CF30-1CF46
    1E000-1E006 1E008-1E018 1E01B-1E021 1E023-1E024 1E026-1E02A 1E130-1E136 1E2AE
    1E2EC-1E2EF 1E944-1E94A 1E95E-1E95F
"""
#: Code points whose class for this pipeline differs from what ``unicodedata`` says.
_OLD_TABLES: dict[int, int] = {
    **{
        code: _KEEP
        for item in _ADDED_SINCE_ITS_TABLES.split()
        for low, _, high in [item.partition("-")]
        for code in range(int(low, 16), int(high or low, 16) + 1)
    },
    # Categories that changed: Po then So, Mn then Mc, Po then Mn.
    0x166D: _PUNCT,  # CANADIAN SYLLABICS CHI SIGN
    0x1734: _MARK,  # HANUNOO SIGN PAMUDPOD
    0x111C9: _PUNCT,  # SHARADA SANDHI MARK
}
#: Words remembered with their ids; bounded so that a long-running process stays small.
_CACHE_WORDS = 50_000


def _char_class(char: str) -> int:
    code = ord(char)
    if code in _OLD_TABLES:
        return _OLD_TABLES[code]
    if char in "\t\n\r":
        return _SPACE
    category = unicodedata.category(char)
    if code in (0, 0xFFFD) or category in ("Cc", "Cf", "Co"):
        return _DROP
    if char in _WHITESPACE:
        return _SPACE
    if any(low <= code <= high for low, high in _CJK_RANGES):
        return _CJK
    if category == "Mn":
        return _MARK
    # Rust's is_ascii_punctuation counts the ASCII symbols ($ + < = > ^ ` |) too.
    if category.startswith("P") or (code < 128 and not char.isalnum() and char.isprintable()):
        return _PUNCT
    return _KEEP


class WordPieceTokenizer:
    """Turns text into the token ids all-MiniLM-L6-v2 reads.

    Build it with :meth:`from_tokenizer_json`, which refuses a file describing another
    pipeline. Instances are safe to share between threads.
    """

    def __init__(
        self,
        vocab: dict[str, int],
        *,
        unk: str,
        cls: str,
        sep: str,
        specials: Sequence[str],
        prefix: str = "##",
        max_word_chars: int = 100,
    ) -> None:
        self._vocab = vocab
        self._unk = vocab[unk]
        self._cls = vocab[cls]
        self._sep = vocab[sep]
        self._specials = {token: vocab[token] for token in specials}
        # Longest first: the leftmost-longest match of the added-token search.
        pattern = "|".join(re.escape(t) for t in sorted(specials, key=len, reverse=True))
        self._special_split = re.compile(f"({pattern})") if pattern else None
        self._prefix = prefix
        self._max_word_chars = max_word_chars
        self._classes: dict[str, int] = {}
        self._words: dict[str, list[int]] = {}

    @property
    def cached_words(self) -> int:
        """How many words' ids are cached (the cache is bounded)."""
        return len(self._words)

    @classmethod
    def from_tokenizer_json(cls, data: bytes) -> WordPieceTokenizer:
        """Build the tokenizer that a Hugging Face ``tokenizer.json`` describes.

        Args:
            data: the file's bytes (verified by the caller).

        Raises:
            ConfigurationError: the file describes anything but an uncased BERT
                WordPiece tokenizer with ``[CLS] $A [SEP]`` around a single text.
        """
        refusal = ConfigurationError(
            "the model's tokenizer.json is not the uncased BERT WordPiece tokenizer "
            "this embedder implements; use the model files of all-MiniLM-L6-v2"
        )
        expected_normalizer = {
            "type": "BertNormalizer",
            "clean_text": True,
            "handle_chinese_chars": True,
            "strip_accents": None,
            "lowercase": True,
        }
        try:
            spec: dict[str, Any] = json.loads(data)
            model = spec["model"]
            added = spec["added_tokens"]
            pieces = [next(iter(part.values()))["id"] for part in spec["post_processor"]["single"]]
            if (
                model["type"] != "WordPiece"
                or spec["normalizer"] != expected_normalizer
                or spec["pre_tokenizer"]["type"] != "BertPreTokenizer"
                or len(pieces) != 3
                or pieces[1] != "A"
                or any(not t["special"] or t["normalized"] for t in added)
            ):
                raise refusal
            return cls(
                dict(model["vocab"]),
                unk=model["unk_token"],
                cls=pieces[0],
                sep=pieces[2],
                specials=[t["content"] for t in added],
                prefix=model["continuing_subword_prefix"],
                max_word_chars=int(model["max_input_chars_per_word"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError, StopIteration):
            raise refusal from None

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """Return the ids of ``text`` between ``[CLS]`` and ``[SEP]``, at most ``max_tokens``.

        Like ``tokenizers``, the text is cut after the word piece that fills the budget
        (``max_tokens`` counts the two special tokens).
        """
        budget = max_tokens - 2
        ids: list[int] = []
        parts = self._special_split.split(text) if self._special_split else [text]
        for index, part in enumerate(parts):
            if index % 2:  # the capturing group: a special token written in the text
                ids.append(self._specials[part])
            elif part:
                for word in self._words_of(part):
                    ids.extend(self._word_ids(word))
            if len(ids) >= budget:
                break
        return [self._cls, *ids[:budget], self._sep]

    def _class(self, char: str) -> int:
        kind = self._classes.get(char)
        if kind is None:
            kind = self._classes[char] = _char_class(char)
        return kind

    def _words_of(self, text: str) -> list[str]:
        """Normalise ``text`` and split it into words and punctuation marks."""
        kept: list[str] = []
        for char in text:
            kind = self._class(char)
            if kind in (_KEEP, _MARK, _PUNCT):
                kept.append(char)
            elif kind == _SPACE:
                kept.append(" ")
            elif kind == _CJK:
                kept.append(f" {char} ")
        cleaned = "".join(kept)
        if not cleaned.isascii():  # NFD leaves ASCII as it is
            # NFD splits accented letters; their non-spacing marks are then dropped.
            decomposed = unicodedata.normalize("NFD", cleaned)
            cleaned = "".join(c for c in decomposed if self._class(c) != _MARK)
        # Per character, as tokenizers does: str.lower() would turn a final Σ into ς.
        lowered = (
            cleaned.lower() if "\u03a3" not in cleaned else "".join(c.lower() for c in cleaned)
        )
        words: list[str] = []
        for chunk in lowered.split():
            start = 0
            for end, char in enumerate(chunk):
                if self._class(char) == _PUNCT:
                    if start < end:
                        words.append(chunk[start:end])
                    words.append(char)
                    start = end + 1
            if start < len(chunk):
                words.append(chunk[start:])
        return words

    def _word_ids(self, word: str) -> list[int]:
        """Greedy longest-match-first WordPiece; one ``[UNK]`` for a word it cannot split."""
        cached = self._words.get(word)
        if cached is not None:
            return cached
        ids: list[int] = []
        if len(word) > self._max_word_chars:
            ids = [self._unk]
        else:
            start = 0
            while start < len(word):
                end = len(word)
                found = None
                while end > start:
                    piece = word[start:end] if start == 0 else self._prefix + word[start:end]
                    found = self._vocab.get(piece)
                    if found is not None:
                        break
                    end -= 1
                if found is None:
                    ids = [self._unk]
                    break
                ids.append(found)
                start = end
        if len(self._words) >= _CACHE_WORDS:
            self._words.clear()
        self._words[word] = ids
        return ids
