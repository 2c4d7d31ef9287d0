"""The Python WordPiece tokenizer gives the ids the Hugging Face ``tokenizers`` library gave.

``embedding_tokenizer_ids.json`` holds texts and the ids ``tokenizers`` 0.23 produced for
them with all-MiniLM-L6-v2's ``tokenizer.json`` (truncated at 256): hand-picked texts
(accents, case, CJK, Hangul, RTL scripts, emoji, control, format and space characters,
special tokens written in the text, words past 100 characters, long texts cut at the
limit) and seeded random mixtures of them. Before the fixture was written, every code
point was also compared alone and inside words, with no difference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import skip_unless_available

from mangostore import errors
from mangostore.kg import wordpiece
from mangostore.kg.embedding import MINILM_FILES, minilm_directory
from mangostore.kg.wordpiece import WordPieceTokenizer

FIXTURE = Path(__file__).with_name("embedding_tokenizer_ids.json")
SIGMA = "\u03c3"  # small sigma; a capital one (U+03A3) lowers to it


def _spec(**changes: Any) -> dict[str, Any]:
    """A tokenizer.json of the MiniLM kind over a vocabulary of a few words."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "aff"]
    words += ["a", "b", "x", "##x", ",", "!", "$", "[", "]", "sep", "日", "cafe", "i", "##s"]
    words += [SIGMA, "##" + SIGMA]
    spec: dict[str, Any] = {
        "added_tokens": [
            {"id": i, "content": w, "special": True, "normalized": False}
            for i, w in enumerate(words[:5])
        ],
        "normalizer": {
            "type": "BertNormalizer",
            "clean_text": True,
            "handle_chinese_chars": True,
            "strip_accents": None,
            "lowercase": True,
        },
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
            ],
        },
        "model": {
            "type": "WordPiece",
            "unk_token": "[UNK]",
            "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
            "vocab": {w: i for i, w in enumerate(words)},
        },
    }
    spec.update(changes)
    return spec


@pytest.fixture
def small() -> WordPieceTokenizer:
    return WordPieceTokenizer.from_tokenizer_json(json.dumps(_spec()).encode())


def _pieces(tokenizer: WordPieceTokenizer, text: str, max_tokens: int = 256) -> list[str]:
    names = {i: w for w, i in _spec()["model"]["vocab"].items()}
    return [names[i] for i in tokenizer.encode(text, max_tokens)]


def test_the_fixture_was_made_from_the_pinned_tokenizer_file() -> None:
    fixture = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert fixture["tokenizer_json_sha256"] == MINILM_FILES["tokenizer.json"]
    assert fixture["max_tokens"] == 256
    texts = [text for text, _ in fixture["cases"]]
    assert len(texts) > 250
    assert any(len(ids) == 256 for _, ids in fixture["cases"])  # truncation is covered


def test_ids_match_the_huggingface_tokenizer_on_every_fixture_text() -> None:
    directory = minilm_directory()
    skip_unless_available(directory is not None, "the embeddings extra is not installed")
    assert directory is not None
    tokenizer = WordPieceTokenizer.from_tokenizer_json((directory / "tokenizer.json").read_bytes())
    fixture = json.loads(FIXTURE.read_text(encoding="utf-8"))
    wrong = [
        (text[:60], ids[:12], got[:12])
        for text, ids in fixture["cases"]
        if (got := tokenizer.encode(text, fixture["max_tokens"])) != ids
    ]
    assert wrong == []


def test_greedy_longest_match_first(small: WordPieceTokenizer) -> None:
    assert _pieces(small, "unaffable") == ["[CLS]", "un", "##aff", "##able", "[SEP]"]
    assert _pieces(small, "aff xxx") == ["[CLS]", "aff", "x", "##x", "##x", "[SEP]"]


def test_a_word_that_cannot_be_split_is_one_unknown_token(small: WordPieceTokenizer) -> None:
    assert _pieces(small, "unaffablez a") == ["[CLS]", "[UNK]", "a", "[SEP]"]
    assert _pieces(small, "x" * 100) == ["[CLS]", "x", *["##x"] * 99, "[SEP]"]
    assert _pieces(small, "x" * 101) == ["[CLS]", "[UNK]", "[SEP]"]


def test_normalisation_case_accents_cjk_and_cleaning(small: WordPieceTokenizer) -> None:
    assert _pieces(small, "CAFÉ") == ["[CLS]", "cafe", "[SEP]"]
    assert _pieces(small, "Cafe\u0301") == ["[CLS]", "cafe", "[SEP]"]  # combining accent
    assert _pieces(small, "a日b") == ["[CLS]", "a", "日", "b", "[SEP]"]
    # Control and format characters vanish; other whitespace separates words.
    assert _pieces(small, "c\x00a\u200bf\x0be") == ["[CLS]", "cafe", "[SEP]"]
    assert _pieces(small, "a\u00a0b\u3000a\tb") == ["[CLS]", "a", "b", "a", "b", "[SEP]"]
    # Each capital sigma lowers to the small one, never to the final form.
    assert _pieces(small, "\u03a3\u03a3") == ["[CLS]", SIGMA, "##" + SIGMA, "[SEP]"]
    # İ loses its dot above before it is lowered.
    assert _pieces(small, "İS") == ["[CLS]", "i", "##s", "[SEP]"]


def test_punctuation_and_ascii_symbols_are_words_of_their_own(small: WordPieceTokenizer) -> None:
    assert _pieces(small, "a,b!$x") == ["[CLS]", "a", ",", "b", "!", "$", "x", "[SEP]"]


def test_special_tokens_written_in_the_text(small: WordPieceTokenizer) -> None:
    assert _pieces(small, "a[SEP]b") == ["[CLS]", "a", "[SEP]", "b", "[SEP]"]
    # Matched as written only: in lower case it is text, as in tokenizers.
    assert _pieces(small, "[sep]") == ["[CLS]", "[", "sep", "]", "[SEP]"]


def test_a_lone_surrogate_is_an_unknown_word(small: WordPieceTokenizer) -> None:
    # tokenizers refused such a text with a TypeError; it can come from surrogatepass input.
    assert _pieces(small, "a\ud800 b") == ["[CLS]", "[UNK]", "b", "[SEP]"]


def test_the_word_cache_stays_bounded(
    small: WordPieceTokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wordpiece, "_CACHE_WORDS", 2)
    for _ in range(2):
        assert _pieces(small, "a b x cafe") == ["[CLS]", "a", "b", "x", "cafe", "[SEP]"]
    assert small.cached_words <= 2


def test_truncation_keeps_the_special_tokens(small: WordPieceTokenizer) -> None:
    assert _pieces(small, "a b a b a", max_tokens=4) == ["[CLS]", "a", "b", "[SEP]"]
    assert _pieces(small, "unaffable", max_tokens=4) == ["[CLS]", "un", "##aff", "[SEP]"]
    assert _pieces(small, "", max_tokens=4) == ["[CLS]", "[SEP]"]


@pytest.mark.parametrize(
    "changes",
    [
        {"normalizer": {**_spec()["normalizer"], "lowercase": False}},
        {"pre_tokenizer": {"type": "Whitespace"}},
        {"model": {**_spec()["model"], "type": "BPE"}},
        {"post_processor": {"type": "TemplateProcessing", "single": []}},
        {"added_tokens": [{"id": 0, "content": "[PAD]", "special": True, "normalized": True}]},
        {"model": None},
        {"post_processor": {"single": [{}]}},
    ],
)
def test_another_tokenizer_configuration_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(errors.ConfigurationError, match="not the uncased BERT WordPiece"):
        WordPieceTokenizer.from_tokenizer_json(json.dumps(_spec(**changes)).encode())
