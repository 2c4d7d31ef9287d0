"""A lone surrogate in the text given to ``db.kg`` or ``db.memory`` escaped as a raw exception.

``db.kg.search(user, "x\\ud800y")`` raised ``TypeError`` (from the embedder's tokenizer);
``db.kg.upsert_entity`` and ``db.memory.remember`` raised ``UnicodeEncodeError`` (from the
driver, binding the name or key for a lookup before any repository checked it). Every
public method of both services now checks its text arguments on the way in
(:mod:`mangostore.kg.inputs`) and refuses such text with ``InvalidValueError`` naming the
argument, before anything is read or written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import mangostore
from mangostore.errors import InvalidValueError, ValidationError

BAD = "x\ud800y"

TABLES = [
    "kg_entities",
    "kg_aliases",
    "kg_observations",
    "kg_relations",
    "kg_predicates",
    "kg_search_index",
    "ai_memory",
    "ai_memory_fts",
]


def _counts(db: mangostore.Database) -> dict[str, int]:
    return {t: db.query(f"SELECT count(*) FROM {t}", use_cache=False)[0][0] for t in TABLES}


Call = Callable[[mangostore.Database, str, str], Any]

# (call given the database, the user and an existing entity's id; the field it names)
CALLS: list[Any] = [
    pytest.param(lambda db, u, e: db.kg.search(u, BAD), "query", id="search"),
    pytest.param(lambda db, u, e: db.kg.search(u, "ann", types=[BAD]), "types", id="search-types"),
    pytest.param(lambda db, u, e: db.kg.upsert_entity(u, "concept", BAD), "name", id="upsert"),
    pytest.param(
        lambda db, u, e: db.kg.upsert_entity(u, "concept", "ok", description=BAD),
        "description",
        id="upsert-description",
    ),
    pytest.param(
        lambda db, u, e: db.kg.upsert_entity(u, "concept", "ok", aliases=["fine", BAD]),
        "aliases",
        id="upsert-aliases",
    ),
    pytest.param(
        lambda db, u, e: db.kg.upsert_entity(u, "concept", "ok", metadata={"k": [BAD]}),
        "metadata",
        id="upsert-metadata",
    ),
    pytest.param(lambda db, u, e: db.kg.upsert_entity(BAD, "concept", "ok"), "user_id", id="user"),
    pytest.param(lambda db, u, e: db.kg.find(u, BAD), "name", id="find"),
    pytest.param(lambda db, u, e: db.kg.resolve(u, BAD), "entity", id="resolve"),
    pytest.param(lambda db, u, e: db.kg.get(BAD), "entity", id="get"),
    pytest.param(lambda db, u, e: db.kg.add_alias(e, BAD), "alias", id="add-alias"),
    pytest.param(lambda db, u, e: db.kg.observe(e, "fact", BAD), "content", id="observe"),
    pytest.param(lambda db, u, e: db.kg.relate(e, "uses", BAD), "object", id="relate"),
    pytest.param(
        lambda db, u, e: db.kg.declare_predicate("uses", description=BAD),
        "description",
        id="declare-predicate",
    ),
    pytest.param(
        lambda db, u, e: db.kg.import_jsonl(
            u, ['{"type": "entity", "name": "x\\ud800", "entityType": "concept"}']
        ),
        "name",
        id="import-escaped-in-json",
    ),
    pytest.param(lambda db, u, e: db.memory.remember(u, BAD, "v"), "key", id="remember"),
    pytest.param(lambda db, u, e: db.memory.remember(u, "k", BAD), "value", id="remember-value"),
    pytest.param(
        lambda db, u, e: db.memory.remember(u, "k", {"nested": {BAD: 1}}),
        "value",
        id="remember-value-key",
    ),
    pytest.param(
        lambda db, u, e: db.memory.remember(u, "k", "v", project_id=BAD),
        "project_id",
        id="remember-project",
    ),
    pytest.param(lambda db, u, e: db.memory.recall(u, query=BAD), "query", id="recall-query"),
    pytest.param(lambda db, u, e: db.memory.recall(u, BAD), "key", id="recall-key"),
    pytest.param(lambda db, u, e: db.memory.history(u, BAD), "key", id="history"),
    pytest.param(lambda db, u, e: db.memory.forget(u, BAD), "key", id="forget"),
]


@pytest.mark.parametrize(("call", "field"), CALLS)
def test_a_lone_surrogate_is_refused_naming_the_field(
    encrypted_db: mangostore.Database, call: Call, field: str
) -> None:
    db = encrypted_db
    user = db.users.create(username="ann").id
    entity = db.kg.upsert_entity(user, "person", "Ann").entity.id
    db.memory.remember(user, "k", "v")
    before = _counts(db)

    with pytest.raises(InvalidValueError) as refused:
        call(db, user, entity)

    assert refused.value.field == field
    message = str(refused.value)
    assert field in message
    assert "surrogate" in message
    assert "pass valid text" in message
    assert BAD not in message
    assert _counts(db) == before


def test_a_surrogate_an_iterator_yields_is_refused_too(plain_db: mangostore.Database) -> None:
    """Iterators are not walked in advance (that would consume them): the driver's refusal
    is still turned into InvalidValueError, and the write is rolled back."""
    user = plain_db.users.create(username="ann").id
    plain_db.kg.set_embedder(None)
    before = _counts(plain_db)

    with pytest.raises(InvalidValueError, match="surrogate"):
        plain_db.kg.upsert_entity(user, "concept", "ok", aliases=(a for a in ["fine", BAD]))

    assert _counts(plain_db) == before


@pytest.mark.parametrize("text", ["naïve café", "💥 zsh", "日本語", "\ufffd", "a\x00b"])
def test_valid_unicode_is_accepted(plain_db: mangostore.Database, text: str) -> None:
    user = plain_db.users.create(username="ann").id
    plain_db.kg.set_embedder(None)
    entity = plain_db.kg.upsert_entity(user, "concept", f"name {text}", aliases=[text]).entity
    assert plain_db.kg.search(user, text) is not None
    assert plain_db.memory.remember(user, "k", {"v": [text]}).value_data == {"v": [text]}
    assert plain_db.kg.get(entity.id).name == f"name {text}"


def test_two_surrogate_code_points_are_no_pair_in_python(plain_db: mangostore.Database) -> None:
    user = plain_db.users.create(username="ann").id
    with pytest.raises(InvalidValueError) as refused:
        plain_db.memory.remember(user, "\ud83d\ude00", "v")
    assert "U+D83D at index 0" in str(refused.value)


def test_a_value_that_holds_itself_is_walked_once(plain_db: mangostore.Database) -> None:
    user = plain_db.users.create(username="ann").id
    looping: list[Any] = ["fine"]
    looping.append(looping)
    with pytest.raises(ValidationError):  # not JSON: refused by the repository
        plain_db.memory.remember(user, "k", looping)
