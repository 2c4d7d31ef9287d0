"""Full-text indexes kept in step by triggers, hostile queries, hybrid search, embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import FAST_KDF, PASSPHRASE, skip_unless_available
from tests.kg_helpers import Graph

import mangostore
from mangostore import errors
from mangostore.kg import HashingEmbedder
from mangostore.kg.embedding import (
    MINILM_FILES,
    MiniLMEmbedder,
    NumpyIndex,
    SqliteVecIndex,
    minilm_directory,
    sqlite_vec_path,
)
from mangostore.kg.onnx_encoder import onnx_runtime_available
from mangostore.kg.query_text import fts_query, porter_stem


def _fts(db: mangostore.Database, word: str) -> list[str]:
    rows = db.query(
        "SELECT entity_id FROM kg_search_index WHERE kg_search_index MATCH ? ORDER BY rowid",
        (fts_query(word),),
    )
    return [r[0] for r in rows]


def _trigram(db: mangostore.Database, text: str) -> list[str]:
    rows = db.query(
        "SELECT entity_id FROM kg_trigram_index WHERE kg_trigram_index MATCH ?",
        ('"' + text + '"',),
    )
    return [r[0] for r in rows]


# -- the indexes follow every change ----------------------------------------------------------


def test_fts_follows_entities_aliases_and_observations(graph: Graph) -> None:
    db, kg = graph.db, graph.kg
    e = kg.upsert_entity(graph.user, "project", "falcon", description="payment gateway").entity
    assert _fts(db, "payments") == [e.id]  # porter stemming
    assert _trigram(db, "alco") == [e.id]
    db.kg_entities.update(e.id, description="billing engine")  # raw repository write
    assert _fts(db, "payment") == []
    assert _fts(db, "billing") == [e.id]
    kg.add_alias(e, "hawk-api")
    assert _fts(db, "hawk") == [e.id]
    assert _trigram(db, "k-ap") == [e.id]
    kg.remove_alias(e, "hawk-api")
    assert _fts(db, "hawk") == []
    assert _trigram(db, "k-ap") == []
    o = kg.observe(e, "fact", "deployed on kubernetes")
    assert _fts(db, "kubernetes") == [e.id]
    db.kg_observations.update(o.id, content="deployed on nomad")
    assert _fts(db, "kubernetes") == []
    assert _fts(db, "nomad") == [e.id]
    db.kg_observations.delete(o.id)
    assert _fts(db, "nomad") == []
    kg.delete_entity(e)
    assert _fts(db, "billing") == []
    assert _trigram(db, "alco") == []
    assert db.query("SELECT count(*) FROM kg_search_index")[0][0] == 0
    assert db.query("SELECT count(*) FROM kg_search_rows")[0][0] == 0


def test_fts_follows_raw_sql_and_merges(graph: Graph) -> None:
    db, kg = graph.db, graph.kg
    db.execute(
        "INSERT INTO kg_entities (id, user_id, entity_type, name, created_at, updated_at) "
        "VALUES ('raw-1', ?, 'concept', 'raw zebra', 0, 0)",
        (graph.user,),
    )
    assert _fts(db, "zebra") == ["raw-1"]
    keep = kg.upsert_entity(graph.user, "concept", "keeper").entity
    kg.observe("raw-1", "fact", "striped animal")
    report = kg.merge(keep, "raw-1")
    assert _fts(db, "striped") == [keep.id]
    assert _fts(db, "zebra") == [keep.id]  # the dropped name is an alias now
    kg.undo_merge(report.merge_id or "")
    assert _fts(db, "striped") == ["raw-1"]
    assert _fts(db, "zebra") == ["raw-1"]


# -- hostile input -------------------------------------------------------------------------

# A lone surrogate is not text: it is refused (tests/regressions/test_lone_surrogate_*).
HOSTILE = [
    '"',
    '""',
    "*",
    "zeb*",
    "NEAR(",
    "NEAR(a b, 2)",
    "AND OR NOT",
    "zebra AND",
    "^zebra",
    "-zebra",
    ":",
    "content:zebra",
    "entity_id:raw",
    "{entity_id content}: x",
    "((zebra",
    "zebra))",
    "\x00",
    "zebra\x00 DROP TABLE kg_entities; --",
    "'; DELETE FROM kg_entities; --",
    "",
    "   ",
    "a" * 5000,
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_neither_fail_nor_inject(graph: Graph, query: str) -> None:
    graph.kg.set_embedder(HashingEmbedder())
    zebra = graph.kg.upsert_entity(graph.user, "concept", "zebra", description="striped").entity
    # No confidence floor: a question that is mostly noise is otherwise rightly not
    # answered, and this is about what the noise can do.
    hits = graph.kg.search(graph.user, query, explain=True, min_confidence=0)
    assert all(h.entity.user_id == graph.user for h in hits)
    assert graph.db.kg_entities.count() == 1
    if "zebra" in query:
        assert hits
        assert hits[0].entity.id == zebra.id


def test_fts_query_quotes_every_word() -> None:
    assert (
        fts_query('say "hi" NEAR(x) col:y')
        == 'content : ("say" OR "hi" OR "near" OR "x" OR "col" OR "y")'
    )
    assert fts_query("*^-:()") is None


# -- ranking --------------------------------------------------------------------------------


def _history(graph: Graph) -> dict[str, str]:
    kg, u = graph.kg, graph.user
    kg.declare_predicate("preferred_shell")
    ann = kg.upsert_entity(u, "person", "Ann Smith").entity
    bash = kg.upsert_entity(u, "command", "bash", description="a Unix shell").entity
    zsh = kg.upsert_entity(u, "command", "zsh", description="a Unix shell").entity
    site = kg.upsert_entity(u, "project", "falcon-api", description="payments service").entity
    kg.relate(ann, "preferred_shell", bash)
    graph.clock.advance(86_400_000)
    kg.relate(ann, "preferred_shell", zsh)
    kg.relate(ann, "works_on", site)
    kg.observe(site, "fact", "deployed every friday")
    return {"ann": ann.id, "bash": bash.id, "zsh": zsh.id, "site": site.id}


def test_search_without_embedder_uses_text_and_graph(graph: Graph) -> None:
    ids = _history(graph)
    hits = graph.kg.search(graph.user, "which shell does Ann prefer", explain=True)
    names = [h.entity.name for h in hits]
    assert "zsh" in names
    assert "bash" not in names  # superseded by zsh, which was found: left out
    zsh = next(h for h in hits if h.entity.id == ids["zsh"])
    assert zsh.explanation is not None
    assert set(zsh.explanation.components) == {"fts", "graph"}
    graph_evidence = next(e for e in zsh.explanation.evidence if e.retriever == "graph")
    assert "preferred_shell" in graph_evidence.text
    alone = graph.kg.search(graph.user, "bash", explain=True)  # still found by name
    assert alone[0].entity.id == ids["bash"]
    assert alone[0].explanation is not None
    # Named in the question, it is what the question is about: not marked down.
    assert "superseded" not in alone[0].explanation.factors
    assert hits[0].score >= hits[-1].score


def test_search_as_of_sees_the_old_value(graph: Graph) -> None:
    ids = _history(graph)
    past = graph.clock.now_ms() - 86_400_000 + 1
    hits = graph.kg.search(graph.user, "Ann shell", as_of=past, retrievers=["graph"])
    names = [h.entity.name for h in hits]
    assert names[0] in ("bash", "Ann Smith")
    assert "bash" in names
    assert ids["zsh"] not in {h.entity.id for h in hits}


def test_search_finds_misspelt_names_and_filters_types(graph: Graph) -> None:
    ids = _history(graph)
    assert graph.kg.search(graph.user, "falcn api")[0].entity.id == ids["site"]
    assert graph.kg.search(graph.user, "friday deploys")[0].entity.id == ids["site"]
    only = graph.kg.search(graph.user, "shell", types=["person"])
    assert all(h.entity.entity_type == "person" for h in only)
    assert graph.kg.search(graph.user, "zzzz qqqq") == []
    with pytest.raises(errors.InvalidValueError):
        graph.kg.search(graph.user, "x", k=0)
    with pytest.raises(errors.InvalidValueError):
        graph.kg.search(graph.user, "x", types=["place"])
    with pytest.raises(errors.InvalidValueError):
        graph.kg.search(graph.user, "x", retrievers=["magic"])


def test_search_ignores_invalidated_observations(graph: Graph) -> None:
    ids = _history(graph)
    o = graph.kg.observations(ids["site"])[0]
    graph.kg.invalidate(o)
    assert ids["site"] not in {
        h.entity.id for h in graph.kg.search(graph.user, "friday", retrievers=["fts"])
    }


def test_search_never_returns_another_users_entities(graph: Graph) -> None:
    other = graph.db.users.create(username="bob").id
    graph.kg.upsert_entity(other, "concept", "secret zebra")
    graph.kg.set_embedder(HashingEmbedder())
    assert graph.kg.search(graph.user, "secret zebra") == []


def test_search_ranks_by_confidence_and_counts_nothing_unless_asked(graph: Graph) -> None:
    sure = graph.kg.upsert_entity(graph.user, "concept", "tea one", confidence=1.0).entity
    unsure = graph.kg.upsert_entity(graph.user, "concept", "tea two", confidence=0.1).entity
    graph.kg.flush()
    before = graph.db.kg_entities.get(sure.id).access_count
    hits = graph.kg.search(graph.user, "tea", explain=True)
    assert [h.entity.id for h in hits] == [sure.id, unsure.id]
    graph.kg.flush()
    assert graph.db.kg_entities.get(sure.id).access_count == before  # search only reads
    graph.kg.search(graph.user, "tea", record_access=True)
    graph.kg.flush()
    assert graph.db.kg_entities.get(sure.id).access_count == before + 1


# -- embeddings -------------------------------------------------------------------------------


class CountingEmbedder(HashingEmbedder):
    """Counts the texts it embeds."""

    def __init__(self) -> None:
        super().__init__(32)
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # type: ignore[override]
        self.seen.extend(texts)
        return super().embed(texts)


def test_unchanged_text_is_never_embedded_twice(graph: Graph) -> None:
    counting = CountingEmbedder()
    graph.kg.set_embedder(counting)
    e = graph.kg.upsert_entity(graph.user, "concept", "zebra", description="striped").entity
    twin = graph.kg.upsert_entity(graph.user, "project", "zebra", description="striped").entity
    graph.kg.observe(e, "fact", "lives in africa")
    assert graph.kg.embed_pending(graph.user) == 2  # the twin's text has the same hash
    assert sorted(counting.seen) == ["lives in africa", "zebra. striped"]
    assert graph.db.kg_embeddings.count(user_id=graph.user) == 3
    assert graph.kg.embed_pending(graph.user) == 0
    graph.db.kg_entities.update(e.id, updated_at=graph.clock.now_ms() + 5)  # text unchanged
    graph.db.kg_entities.update(twin.id, description="striped")
    assert graph.kg.embed_pending(graph.user) == 0
    graph.db.kg_entities.update(e.id, description="black and white")
    assert graph.kg.embed_pending(graph.user) == 1
    assert counting.seen[-1] == "zebra. black and white"
    graph.kg.delete_entity(e)
    assert graph.db.kg_embeddings.count(user_id=graph.user) == 1


def test_a_new_model_version_embeds_everything_again(graph: Graph) -> None:
    graph.kg.set_embedder(HashingEmbedder(16))
    graph.kg.upsert_entity(graph.user, "concept", "zebra")
    assert graph.kg.embed_pending(graph.user) == 1
    graph.kg.set_embedder(HashingEmbedder(24))
    assert graph.kg.embed_pending(graph.user) == 1
    versions = {r[0] for r in graph.db.query("SELECT model_version FROM kg_embeddings")}
    assert versions == {"hashing-16", "hashing-24"}


def test_vector_search_with_the_test_double(graph: Graph) -> None:
    graph.kg.set_embedder(HashingEmbedder(128))
    target = graph.kg.upsert_entity(graph.user, "concept", "photosynthesis").entity
    graph.kg.upsert_entity(graph.user, "concept", "volcano")
    hits = graph.kg.search(graph.user, "photosynthesis", retrievers=["vector"], explain=True)
    assert hits[0].entity.id == target.id
    assert hits[0].explanation is not None
    assert hits[0].explanation.components["vector"].raw_score > 0.9


def test_sqlite_vec_inside_the_encrypted_file_agrees_with_numpy(db_path: Path) -> None:
    skip_unless_available(sqlite_vec_path() is not None, "sqlite-vec is not installed")
    db = mangostore.create(
        db_path, passphrase=PASSPHRASE, settings=mangostore.Settings(kdf=FAST_KDF)
    ).db
    try:
        assert SqliteVecIndex.available(db)
        kg = db.kg
        kg.set_embedder(HashingEmbedder(64))
        user = db.users.create(username="ann").id
        for name in ("alpha centauri", "beta blocker", "gamma ray", "delta force", "alphabet"):
            kg.upsert_entity(user, "concept", name)
        kg.embed_pending(user)
        query = HashingEmbedder(64).embed(["alpha"])[0]
        by_vec = SqliteVecIndex(db).search(user, "hashing-64", query, 5)
        by_numpy = NumpyIndex(db).search(user, "hashing-64", query, 5)
        assert [h.entity_id for h in by_vec] == [h.entity_id for h in by_numpy]
        assert [round(h.similarity, 4) for h in by_vec] == [
            round(h.similarity, 4) for h in by_numpy
        ]
        assert kg.search(user, "alpha")  # the whole pipeline on the encrypted file
    finally:
        db.close()


def test_model_files_are_pinned(tmp_path: Path) -> None:
    directory = minilm_directory()
    skip_unless_available(directory is not None, "the embeddings extra is not installed")
    assert directory is not None
    fake = tmp_path / "model"
    (fake / "1_Pooling").mkdir(parents=True)
    for name in MINILM_FILES:
        (fake / name).write_bytes((directory / name).read_bytes())
    (fake / "config.json").write_bytes(b'{"tampered": true}')
    with pytest.raises(errors.TamperedDataError):
        MiniLMEmbedder.load(fake)


def test_the_default_embedder_is_a_real_sentence_model() -> None:
    skip_unless_available(minilm_directory() is not None, "the embeddings extra is not installed")
    from mangostore.kg import default_embedder

    model = default_embedder()
    assert model is not None
    assert model.dimensions == 384
    vectors = model.embed(
        ["A man is eating food.", "A man is eating a piece of bread.", "A monkey is playing drums."]
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(0.755, abs=0.01)
    assert float(vectors[0] @ vectors[2]) < 0.2


def test_both_runtimes_compute_the_same_vectors() -> None:
    skip_unless_available(minilm_directory() is not None, "the embeddings extra is not installed")
    skip_unless_available(onnx_runtime_available(), "onnxruntime is not installed")
    by_onnx = MiniLMEmbedder.load(runtime="onnxruntime", threads=1)
    by_numpy = MiniLMEmbedder.load(runtime="numpy")
    assert (by_onnx.runtime, by_numpy.runtime) == ("onnxruntime", "numpy")
    assert by_onnx.model_version == by_numpy.model_version
    texts = [
        "copy the compiled website to production",
        "x",
        "naïve café ünïcödé " * 40,  # past the 256-token cut
        "",
    ]
    a, b = by_onnx.embed(texts), by_numpy.embed(texts)
    assert np.allclose(a, b, atol=1e-5)
    # Batches of different lengths pad differently; padding must not change a vector.
    alone = by_onnx.embed([texts[1]])[0]
    assert np.allclose(alone, a[1], atol=1e-5)


def test_an_unknown_runtime_is_refused() -> None:
    skip_unless_available(minilm_directory() is not None, "the embeddings extra is not installed")
    with pytest.raises(errors.ConfigurationError, match="unknown runtime"):
        MiniLMEmbedder.load(runtime="torch")  # type: ignore[arg-type]
    with pytest.raises(errors.ConfigurationError, match="threads"):
        MiniLMEmbedder.load(threads=0)


def test_default_embedder_serves_db_kg(graph: Graph) -> None:
    skip_unless_available(minilm_directory() is not None, "the embeddings extra is not installed")
    db = mangostore.open(":memory:", encrypted=False)
    try:
        user = db.users.create(username="ann").id
        db.kg.upsert_entity(user, "command", "htop", description="interactive process viewer")
        db.kg.upsert_entity(user, "concept", "sourdough", description="bread from wild yeast")
        hits = db.kg.search(user, "see which programs use the CPU", retrievers=["vector"])
        assert hits[0].entity.name == "htop"
    finally:
        db.close()


def test_porter_stem_agrees_with_the_fts5_tokenizer(graph: Graph) -> None:
    words = [
        "making",
        "papers",
        "findable",
        "by",
        "keyword",
        "copy",
        "compiled",
        "website",
        "production",
        "cache",
        "files",
        "databases",
        "statistics",
        "relational",
        "running",
        "runs",
        "ran",
        "happily",
        "generalization",
        "is",
        "as",
        "a",
        "us",
        "bus",
        "caresses",
        "ponies",
        "ties",
        "caress",
        "cats",
        "agreed",
        "plastered",
        "motoring",
        "sing",
        "conflated",
        "troubled",
        "sized",
        "hopping",
        "tanned",
        "falling",
        "hissing",
        "fizzed",
        "failing",
        "filing",
        "happy",
        "sky",
        "relational",
        "conditional",
        "rational",
        "valenci",
        "hesitanci",
        "digitizer",
        "conformabli",
        "radicalli",
        "differentli",
        "vileli",
        "analogousli",
        "vietnamization",
        "predication",
        "operator",
        "feudalism",
        "decisiveness",
        "hopefulness",
        "callousness",
        "formaliti",
        "sensitiviti",
        "sensibiliti",
        "triplicate",
        "formative",
        "formalize",
        "electriciti",
        "electrical",
        "hopeful",
        "goodness",
        "revival",
        "allowance",
        "inference",
        "airliner",
        "gyroscopic",
        "adjustable",
        "defensible",
        "irritant",
        "replacement",
        "adjustment",
        "dependent",
        "adoption",
        "homologou",
        "communism",
        "activate",
        "angulariti",
        "homologous",
        "effective",
        "bowdlerize",
        "probate",
        "rate",
        "cease",
        "controll",
        "roll",
        "shell",
        "preferred",
    ]
    db = graph.db
    for word in words:
        entity = graph.kg.upsert_entity(graph.user, "concept", f"zz {word}").entity
        # The index's terms for this row: "zz", the stem, and pieces of the entity id.
        terms = {r[0] for r in db.query("SELECT term FROM kg_search_vocab")}
        assert porter_stem(word) in terms, word
        graph.kg.delete_entity(entity)
