"""The in-memory vector index: change tracking, appends, binary codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.conftest import skip_unless_available

import mangostore
from mangostore import errors
from mangostore.ids import new_id
from mangostore.kg import HashingEmbedder, embedding
from mangostore.kg.embedding import MiniLMEmbedder, NumpyIndex, minilm_directory, to_blob

MODEL = "hashing-64"


def _hashing_embedder(database: mangostore.Database) -> None:
    database.kg.set_embedder(HashingEmbedder(64))


# A file database (so reads go through the reader pool) with the hashing embedder.
pytestmark = pytest.mark.database("clocked_plain_file_db", setup=_hashing_embedder)


def _changes(db: mangostore.Database, user: str) -> tuple[int, int] | None:
    rows = db.query("SELECT appended, rewritten FROM kg_vector_changes WHERE user_id = ?", (user,))
    return (rows[0][0], rows[0][1]) if rows else None


class _CountingIndex(NumpyIndex):
    """A NumpyIndex that counts how often it reads every vector again."""

    def __init__(self, db: mangostore.Database, **kwargs: int) -> None:
        super().__init__(db, **kwargs)
        self.full_loads = 0

    def _load(self, user_id: str, model_version: str, dims: int):  # type: ignore[no-untyped-def]
        self.full_loads += 1
        return super()._load(user_id, model_version, dims)


def test_triggers_count_inserts_and_rewrites(db: mangostore.Database) -> None:
    user = db.users.create(username="ann").id
    assert _changes(db, user) is None
    a = db.kg.upsert_entity(user, "concept", "alpha").entity
    db.kg.upsert_entity(user, "concept", "beta")
    db.kg.embed_pending(user)
    first = _changes(db, user)
    assert first is not None
    assert first[0] == 2
    db.kg.delete_entity(a)  # its vector goes with it
    second = _changes(db, user)
    assert second == (2, first[1] + 1)
    db.privacy.erase_user(user)  # the counter goes with its user
    assert _changes(db, user) is None


def test_new_vectors_are_appended_without_reading_everything_again(
    db: mangostore.Database,
) -> None:
    index = _CountingIndex(db)
    db.kg.vector_index = index
    user = db.users.create(username="ann").id
    db.kg.upsert_entity(user, "concept", "photosynthesis")
    assert db.kg.search(user, "photosynthesis", retrievers=["vector"])
    assert index.full_loads == 1
    volcano = db.kg.upsert_entity(user, "concept", "volcano eruption").entity
    hits = db.kg.search(user, "volcano eruption", retrievers=["vector"])
    assert hits[0].entity.id == volcano.id  # found: appended to the cached matrix
    assert index.full_loads == 1
    db.kg.delete_entity(volcano)
    hits = db.kg.search(user, "volcano eruption", retrievers=["vector"])
    assert volcano.id not in {h.entity.id for h in hits}
    assert index.full_loads == 2  # a removal means reading everything again


def test_changes_made_through_another_handle_are_seen(
    db: mangostore.Database, db_path: Path
) -> None:
    user = db.users.create(username="ann").id
    db.kg.upsert_entity(user, "concept", "photosynthesis")
    db.kg.search(user, "photosynthesis", retrievers=["vector"])
    other = mangostore.open(db_path, encrypted=False)
    try:
        other.kg.set_embedder(HashingEmbedder(64))
        added = other.kg.upsert_entity(user, "concept", "glacier melting").entity
        other.kg.embed_pending(user)
        hits = db.kg.search(user, "glacier melting", retrievers=["vector"])
        assert hits[0].entity.id == added.id
        other.kg.delete_entity(added)
    finally:
        other.close()
    hits = db.kg.search(user, "glacier melting", retrievers=["vector"])
    assert added.id not in {h.entity.id for h in hits}


def test_vectors_of_another_model_are_counted_but_not_mixed(db: mangostore.Database) -> None:
    user = db.users.create(username="ann").id
    target = db.kg.upsert_entity(user, "concept", "photosynthesis").entity
    db.kg.search(user, "photosynthesis", retrievers=["vector"])
    db.kg.set_embedder(HashingEmbedder(32))
    db.kg.embed_pending(user)  # a second model's vectors for the same user
    db.kg.set_embedder(HashingEmbedder(64))
    index = db.kg.vector_index
    assert isinstance(index, NumpyIndex)
    hits = index.search(user, MODEL, HashingEmbedder(64).embed(["photosynthesis"])[0], 5)
    assert [h.entity_id for h in hits] == [target.id]


def _insert_vectors(db: mangostore.Database, user: str, vectors: np.ndarray) -> list[str]:
    """Store ``vectors`` as embeddings of new entities (raw rows: fast and exact)."""
    ids = [new_id() for _ in range(len(vectors))]
    with db.transaction() as tx:
        for entity_id, vector in zip(ids, vectors, strict=True):
            tx.execute(
                "INSERT INTO kg_entities (id, user_id, entity_type, name, created_at, "
                "updated_at) VALUES (?, ?, 'concept', ?, 0, 0)",
                (entity_id, user, entity_id),
            )
            embedding_id = new_id()
            tx.execute(
                "INSERT INTO kg_embeddings (id, entity_id, user_id, vector_data, dimensions, "
                "model_version, created_at) VALUES (?, ?, ?, ?, 64, ?, 0)",
                (embedding_id, entity_id, user, to_blob(vector), MODEL),
            )
            tx.execute(
                "INSERT INTO kg_embedding_sources (embedding_id, source_id, model_version, "
                "content_hash) VALUES (?, ?, ?, 'x')",
                (embedding_id, entity_id, MODEL),
            )
        tx.execute("DELETE FROM kg_embedding_queue")
    return ids


def _unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def test_binary_codes_find_what_exact_search_finds(db: mangostore.Database) -> None:
    rng = np.random.default_rng(7)
    user = db.users.create(username="ann").id
    # Clusters, as sentence embeddings are, rather than uniform noise.
    centres = _unit(rng.normal(size=(40, 64)))
    stored = _unit(centres[rng.integers(0, 40, 3_000)] + 0.6 * rng.normal(size=(3_000, 64)))
    ids = _insert_vectors(db, user, stored[:2_500])
    quantized = NumpyIndex(db, quantize_from=1_000, rescore_min=200)
    exact = NumpyIndex(db, quantize_from=10**9)
    queries = _unit(stored[:50] + 0.05 * rng.normal(size=(50, 64)))
    overlap = []
    for i, query in enumerate(queries):
        found = quantized.search(user, MODEL, query, 10)
        assert found[0].entity_id == ids[i]  # a near copy of a stored vector comes first
        truth = {h.entity_id for h in exact.search(user, MODEL, query, 10)}
        overlap.append(len(truth & {h.entity_id for h in found}) / 10)
        assert [h.similarity for h in found] == sorted((h.similarity for h in found), reverse=True)
    # 200 candidates of 2,500 drawn at random would hold 8% of the true top 10.
    assert float(np.mean(overlap)) >= 0.6
    # Appended rows get codes too.
    more = _insert_vectors(db, user, stored[2_500:])
    hit = quantized.search(user, MODEL, stored[2_900], 1)
    assert hit[0].entity_id == more[400]


def test_search_inside_a_transaction_sees_its_writes(db: mangostore.Database) -> None:
    user = db.users.create(username="ann").id
    with db.transaction():
        target = db.kg.upsert_entity(user, "concept", "photosynthesis").entity
        hits = db.kg.search(user, "photosynthesis", retrievers=["vector"])
    assert hits[0].entity.id == target.id


def test_a_stored_vector_of_the_wrong_length_is_refused(db: mangostore.Database) -> None:
    user = db.users.create(username="ann").id
    ids = _insert_vectors(db, user, _unit(np.ones((2, 64), dtype=np.float32)))
    db.execute(
        "UPDATE kg_embeddings SET vector_data = ? WHERE entity_id = ?",
        (to_blob(np.ones(63, dtype=np.float32)), ids[0]),
    )
    with pytest.raises(errors.ConfigurationError, match="63 dimensions instead of 64"):
        NumpyIndex(db).search(user, MODEL, np.ones(64, dtype=np.float32), 1)


def test_the_onnx_runtime_is_refused_when_it_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    skip_unless_available(minilm_directory() is not None, "the embeddings extra is not installed")
    monkeypatch.setattr(embedding, "onnx_runtime_available", lambda: False)
    with pytest.raises(errors.ConfigurationError, match="needs onnxruntime"):
        MiniLMEmbedder.load(runtime="onnxruntime")
    assert MiniLMEmbedder.load().runtime == "numpy"  # "auto" falls back
