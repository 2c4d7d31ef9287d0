"""Canonical names, trigram similarity and the near-duplicate rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mangostore.kg.names import (
    _canonical_unicode,
    canonical,
    compact,
    edit_distance,
    near_duplicate,
    trigram_similarity,
)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("New York", "new york"),
        ("New   York", " New York "),
        ("ＮＥＷ ＹＯＲＫ", "new york"),  # noqa: RUF001 - full-width letters on purpose
        ("Straße", "STRASSE"),
        ("tab\there", "tab here"),
        ("nul\x00byte", "nul byte"),
    ],
)
def test_canonical_folds_case_width_and_whitespace(a: str, b: str) -> None:
    assert canonical(a) == canonical(b)


def test_compact_drops_separators() -> None:
    assert compact("auth-service") == compact("Auth_Service") == compact("auth service")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("auth-service", "oauth-service"),
        ("api-v1", "api-v2"),
        ("service-a", "service-b"),
        ("John Smith", "Jon Smith"),
        ("New York City", "NYC"),
        ("billing", "building"),
        ("redis cache", "redis queue"),
    ],
)
def test_near_misses_that_name_different_things_are_not_duplicates(a: str, b: str) -> None:
    assert near_duplicate(a, b) is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("kubernetes", "kubernetis"),
        ("postgres", "postgress"),
        ("auth-service", "auth_service"),
        ("billing service", "biling service"),
    ],
)
def test_slips_of_typing_and_speech_are_duplicates(a: str, b: str) -> None:
    score = near_duplicate(a, b)
    assert score is not None
    assert 0.6 <= score <= 1.0


def test_edit_distance_counts_a_swap_once() -> None:
    assert edit_distance("form", "from") == 1
    assert edit_distance("kitten", "sitting", limit=10) == 3


@given(st.text(max_size=30), st.text(max_size=30))
def test_similarity_is_symmetric_and_bounded(a: str, b: str) -> None:
    s = trigram_similarity(a, b)
    assert 0.0 <= s <= 1.0
    assert s == trigram_similarity(b, a)


@given(st.text(max_size=30))
def test_canonical_is_idempotent(a: str) -> None:
    assert canonical(canonical(a)) == canonical(a)


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_the_ascii_fast_path_gives_the_unicode_result(text: str) -> None:
    assert canonical(text) == _canonical_unicode(text)
