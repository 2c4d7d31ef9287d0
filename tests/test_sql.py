"""The helpers that build SQL text."""

from __future__ import annotations

from mangostore.sql import IN_LIST_SIZE, batches, placeholders, quote_identifier


def test_placeholders() -> None:
    assert placeholders(0) == ""
    assert placeholders(1) == "?"
    assert placeholders(3) == "?, ?, ?"


def test_batches_cover_every_item_once_within_the_limit() -> None:
    items = list(range(2 * IN_LIST_SIZE + 7))
    chunks = list(batches(items))
    assert [len(c) for c in chunks] == [IN_LIST_SIZE, IN_LIST_SIZE, 7]
    assert [x for c in chunks for x in c] == items
    assert list(batches([], 3)) == []
    assert list(batches("abcde", 2)) == ["ab", "cd", "e"]


def test_quote_identifier_doubles_quotes() -> None:
    assert quote_identifier('we"ird') == '"we""ird"'
