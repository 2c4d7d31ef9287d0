"""The knowledge graph service: dedup, aliases, merge and undo, relations, validity,
observations, traversal and access counting."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.kg_helpers import Graph

import mangostore
from mangostore import errors

# -- dedup ---------------------------------------------------------------------------------


def test_upsert_creates_then_matches_by_canonical_name(graph: Graph) -> None:
    first = graph.kg.upsert_entity(graph.user, "person", "Ann Smith")
    assert first.created
    for variant in ("ann smith", "  Ann   SMITH ", "ＡＮＮ ＳＭＩＴＨ"):  # noqa: RUF001
        again = graph.kg.upsert_entity(graph.user, "person", variant)
        assert not again.created
        assert again.matched_by == "canonical"
        assert again.entity.id == first.entity.id
    assert graph.db.kg_entities.count(user_id=graph.user) == 1


def test_same_name_of_another_type_is_another_entity(graph: Graph) -> None:
    a = graph.kg.upsert_entity(graph.user, "project", "mango").entity
    b = graph.kg.upsert_entity(graph.user, "concept", "mango").entity
    assert a.id != b.id


def test_alias_matches(graph: Graph) -> None:
    nyc = graph.kg.upsert_entity(
        graph.user, "concept", "New York City", aliases=["NYC", "the Big Apple"]
    ).entity
    again = graph.kg.upsert_entity(graph.user, "concept", "nyc")
    assert (again.created, again.matched_by, again.entity.id) == (False, "alias", nyc.id)
    assert graph.kg.find(graph.user, "THE big apple") == graph.kg.get(nyc.id)
    assert set(graph.kg.aliases(nyc)) == {"NYC", "the Big Apple"}
    assert graph.kg.add_alias(nyc, "Gotham")
    assert not graph.kg.add_alias(nyc, "gotham")
    assert graph.kg.remove_alias(nyc, "GOTHAM")


def test_near_miss_names_do_not_merge(graph: Graph) -> None:
    auth = graph.kg.upsert_entity(graph.user, "project", "auth-service").entity
    oauth = graph.kg.upsert_entity(graph.user, "project", "oauth-service")
    assert oauth.created
    assert oauth.entity.id != auth.id
    for name in ("auth-service-v2", "service-auth", "api-v1", "authentication"):
        assert graph.kg.upsert_entity(graph.user, "project", name).created


def test_similar_names_merge_and_become_aliases(graph: Graph) -> None:
    k8s = graph.kg.upsert_entity(graph.user, "concept", "kubernetes").entity
    slip = graph.kg.upsert_entity(graph.user, "concept", "Kubernetis")
    assert (slip.created, slip.matched_by, slip.entity.id) == (False, "similar", k8s.id)
    assert 0.6 <= slip.similarity < 1.0
    assert "Kubernetis" in graph.kg.aliases(k8s)
    separator = graph.kg.upsert_entity(graph.user, "concept", "Kube-Rnetes")
    assert (separator.matched_by, separator.similarity) == ("similar", 1.0)  # separators only
    assert graph.kg.upsert_entity(graph.user, "project", "kubernetis").created  # other type


def test_similarity_is_confirmed_by_embeddings_when_there_is_an_embedder(graph: Graph) -> None:
    class Disagree:
        model_version = "disagree-2"
        dimensions = 2

        def embed(self, texts: list[str]) -> object:
            import numpy as np

            return np.array([[1.0, 0.0], [0.0, 1.0]][: len(texts)], dtype=np.float32)

    graph.kg.set_embedder(Disagree())  # type: ignore[arg-type]
    graph.kg.upsert_entity(graph.user, "concept", "kubernetes")
    assert graph.kg.upsert_entity(graph.user, "concept", "kubernetis").created


def test_upsert_fills_what_was_missing(graph: Graph) -> None:
    graph.kg.upsert_entity(graph.user, "project", "site", metadata={"a": 1}, confidence=0.5)
    again = graph.kg.upsert_entity(
        graph.user,
        "project",
        "Site",
        description="the web site",
        metadata={"b": 2},
        confidence=0.9,
    ).entity
    assert again.description == "the web site"
    assert again.metadata == {"a": 1, "b": 2}
    assert again.confidence_score == 0.9


@pytest.mark.parametrize(
    ("type", "name", "confidence"),
    [("place", "x", None), ("person", "   ", None), ("person", "x", 1.5)],
)
def test_upsert_refuses_bad_input(graph: Graph, type: str, name: str, confidence: float) -> None:
    with pytest.raises(errors.InvalidValueError):
        graph.kg.upsert_entity(graph.user, type, name, confidence=confidence)


def test_renamed_entity_is_found_by_its_new_name(graph: Graph) -> None:
    e = graph.kg.upsert_entity(graph.user, "project", "old name").entity
    graph.db.kg_entities.update(e.id, name="New Name")  # around the service
    assert graph.kg.find(graph.user, "new name") is not None
    assert graph.kg.find(graph.user, "old name") is None
    assert not graph.kg.upsert_entity(graph.user, "project", "NEW name").created


# -- relations ------------------------------------------------------------------------------


def _pair(graph: Graph) -> tuple[str, str]:
    a = graph.kg.upsert_entity(graph.user, "person", "ann").entity.id
    b = graph.kg.upsert_entity(graph.user, "project", "site").entity.id
    return a, b


def test_repeating_a_relation_strengthens_it(graph: Graph) -> None:
    a, b = _pair(graph)
    first = graph.kg.relate(a, "works_on", b, confidence=0.5)
    graph.clock.advance(1_000)
    second = graph.kg.relate(a, "works_on", b, weight=2.0, confidence=0.5)
    assert second.id == first.id
    assert second.weight == 3.0
    assert second.confirmations == 2
    assert second.confidence == pytest.approx(0.75)
    assert second.last_confirmed == first.last_confirmed + 1_000
    assert graph.db.kg_relations.count() == 1


@pytest.mark.parametrize("predicate", ["Works On", "works-on", "", "WORKS"])
def test_predicates_are_lowercase_identifiers(graph: Graph, predicate: str) -> None:
    a, b = _pair(graph)
    with pytest.raises(errors.InvalidValueError):
        graph.kg.relate(a, predicate, b)


def test_single_valued_predicate_closes_the_old_value(graph: Graph) -> None:
    graph.kg.declare_predicate("preferred_shell", single_valued=True)
    assert graph.kg.single_valued("preferred_shell")
    me = graph.kg.upsert_entity(graph.user, "person", "me").entity
    bash = graph.kg.upsert_entity(graph.user, "command", "bash").entity
    zsh = graph.kg.upsert_entity(graph.user, "command", "zsh").entity
    t0 = graph.clock.now_ms()
    old = graph.kg.relate(me, "preferred_shell", bash)
    t1 = graph.clock.advance(60_000)
    new = graph.kg.relate(me, "preferred_shell", zsh)
    closed = graph.kg.relation(old.id)
    assert closed.valid_to == t1
    assert closed.superseded_by == new.id
    assert closed.invalidation_reason == "superseded"
    assert [r.object_id for r in graph.kg.relations(me, direction="out")] == [zsh.id]
    assert [r.object_id for r in graph.kg.relations(me, as_of=t0 + 1)] == [bash.id]
    history = graph.kg.relations(me, include_invalid=True)
    assert [r.object_id for r in history] == [bash.id, zsh.id]  # nothing deleted


def test_multi_valued_predicate_keeps_both(graph: Graph) -> None:
    a, b = _pair(graph)
    c = graph.kg.upsert_entity(graph.user, "project", "api").entity.id
    graph.kg.relate(a, "works_on", b)
    graph.kg.relate(a, "works_on", c)
    assert len(graph.kg.relations(a)) == 2


def test_backdated_relation(graph: Graph) -> None:
    a, b = _pair(graph)
    now = graph.clock.now_ms()
    r = graph.kg.relate(a, "works_on", b, valid_from=now - 10_000)
    assert r.valid_from == now - 10_000
    assert graph.kg.relations(a, as_of=now - 5_000)


def test_invalidate_ends_validity_without_deleting(graph: Graph) -> None:
    a, b = _pair(graph)
    r = graph.kg.relate(a, "works_on", b)
    t = graph.clock.advance(5_000)
    ended = graph.kg.invalidate(r, reason="left the project")
    assert ended.valid_to == t
    assert ended.invalidated_at == t
    assert ended.invalidation_reason == "left the project"
    assert graph.kg.relations(a) == []
    assert graph.kg.relations(a, as_of=t - 1)
    assert graph.db.kg_relations.count() == 1
    with pytest.raises(errors.NotFoundError):
        graph.kg.invalidate("no-such-fact")


def test_relation_between_users_is_refused(graph: Graph) -> None:
    other = graph.db.users.create(username="bob").id
    a = graph.kg.upsert_entity(graph.user, "person", "ann").entity
    b = graph.kg.upsert_entity(other, "person", "bob").entity
    with pytest.raises(errors.ValidationError):
        graph.kg.relate(a, "knows", b)


# -- observations --------------------------------------------------------------------------


def test_observe_confirm_verify_invalidate(graph: Graph) -> None:
    a, _ = _pair(graph)
    o = graph.kg.observe(a, "preference", "Likes dark themes", confidence=0.6)
    again = graph.kg.observe(a, "preference", "likes  DARK themes", confidence=0.5)
    assert again.id == o.id
    assert again.confirmations == 2
    assert again.confidence == pytest.approx(0.8)
    assert not o.verified
    checked = graph.kg.verify(o)
    assert checked.verified
    assert checked.verified_at == graph.clock.now_ms()
    t = graph.clock.advance(1_000)
    graph.kg.invalidate(o.id)
    assert graph.kg.observations(a) == []
    assert [x.id for x in graph.kg.observations(a, as_of=t - 1)] == [o.id]
    assert [x.id for x in graph.kg.observations(a, include_invalid=True)] == [o.id]
    with pytest.raises(errors.InvalidValueError):
        graph.kg.observe(a, "rumour", "x")


# -- traversal -------------------------------------------------------------------------------


def _chain(graph: Graph, names: str) -> dict[str, str]:
    ids = {n: graph.kg.upsert_entity(graph.user, "concept", n).entity.id for n in names}
    return ids


def test_traversal_survives_cycles(graph: Graph) -> None:
    ids = _chain(graph, "abcd")
    for s, o in ("ab", "bc", "ca", "cd"):
        graph.kg.relate(ids[s], "links", ids[o])
    graph.kg.relate(ids["a"], "links", ids["a"])  # a self-loop too
    near = graph.kg.neighbors(ids["a"], depth=10)
    assert sorted((n.entity.name, n.depth) for n in near) == [("b", 1), ("c", 1), ("d", 2)]
    out = graph.kg.neighbors(ids["a"], depth=10, direction="out")
    assert [(n.entity.name, n.depth) for n in out] == [("b", 1), ("c", 2), ("d", 3)]
    assert [r.predicate for r in out[-1].path] == ["links"] * 3
    paths = graph.kg.paths(ids["a"], ids["d"], max_depth=5)
    assert [p.length for p in paths] == [2, 3]
    assert paths[0].entity_ids == [ids["a"], ids["c"], ids["d"]]
    directed = graph.kg.paths(ids["a"], ids["d"], direction="out")
    assert [p.entity_ids for p in directed] == [[ids["a"], ids["b"], ids["c"], ids["d"]]]


def test_traversal_filters_predicates_and_time(graph: Graph) -> None:
    ids = _chain(graph, "abc")
    ab = graph.kg.relate(ids["a"], "uses", ids["b"])
    graph.kg.relate(ids["a"], "knows", ids["c"])
    assert [n.entity.name for n in graph.kg.neighbors(ids["a"], predicates=["uses"])] == ["b"]
    t = graph.clock.advance(1_000)
    graph.kg.invalidate(ab)
    assert [n.entity.name for n in graph.kg.neighbors(ids["a"])] == ["c"]
    assert {n.entity.name for n in graph.kg.neighbors(ids["a"], as_of=t - 1)} == {"b", "c"}
    assert graph.kg.neighbors(ids["a"], as_of=t - 2_000) == []  # before anything
    with pytest.raises(errors.InvalidValueError):
        graph.kg.neighbors(ids["a"], depth=0)


def test_subgraph(graph: Graph) -> None:
    ids = _chain(graph, "abcde")
    for s, o in ("ab", "bc", "cd", "de", "ca"):
        graph.kg.relate(ids[s], "links", ids[o])
    sub = graph.kg.subgraph([ids["a"]], depth=1)
    assert {e.name for e in sub.entities} == {"a", "b", "c"}
    assert {(r.subject_id, r.object_id) for r in sub.relations} == {
        (ids["a"], ids["b"]),
        (ids["b"], ids["c"]),
        (ids["c"], ids["a"]),
    }
    assert {e.name for e in graph.kg.subgraph([ids["a"]], depth=0).entities} == {"a"}


# -- merge ------------------------------------------------------------------------------------


def test_merge_dry_run_merge_and_undo(graph: Graph) -> None:
    kg = graph.kg
    keep = kg.upsert_entity(graph.user, "concept", "New York City").entity
    drop = kg.upsert_entity(graph.user, "concept", "NYC", aliases=["Big Apple"]).entity
    ann = kg.upsert_entity(graph.user, "person", "ann").entity
    bob = kg.upsert_entity(graph.user, "person", "bob").entity
    kg.relate(ann, "lives_in", keep)
    combined = kg.relate(ann, "lives_in", drop, weight=2.0)
    moved = kg.relate(bob, "visited", drop)
    loop = kg.relate(keep, "same_as", drop)
    obs = kg.observe(drop, "fact", "has five boroughs")
    before = graph.db.query("SELECT count(*) FROM kg_relations")[0][0]

    plan = kg.merge(keep, drop, dry_run=True)
    assert plan.dry_run
    assert plan.merge_id is None
    assert plan.relations_repointed == [moved.id]
    assert plan.relations_combined[0][0] == combined.id
    assert plan.self_loops_removed == [loop.id]
    assert plan.observations_moved == [obs.id]
    assert plan.alias_added == "NYC"
    assert kg.get(drop.id).name == "NYC"  # the dry run wrote nothing

    report = kg.merge(keep, drop)
    assert report.merge_id is not None
    with pytest.raises(errors.NotFoundError):
        kg.get(drop.id)
    assert kg.find(graph.user, "nyc").id == keep.id
    assert kg.find(graph.user, "big apple").id == keep.id
    lives = kg.relations(ann, predicates=["lives_in"])
    assert len(lives) == 1
    assert lives[0].weight == 3.0
    assert lives[0].confirmations == 2
    assert kg.relations(bob)[0].object_id == keep.id
    assert [o.id for o in kg.observations(keep)] == [obs.id]
    assert [m["id"] for m in kg.merges(graph.user)] == [report.merge_id]

    restored = kg.undo_merge(report.merge_id)
    assert restored.id == drop.id
    assert restored.name == "NYC"
    assert graph.db.query("SELECT count(*) FROM kg_relations")[0][0] == before
    assert kg.relations(bob)[0].object_id == drop.id
    lives = {r.object_id: r for r in kg.relations(ann, predicates=["lives_in"])}
    assert lives[keep.id].weight == 1.0
    assert lives[drop.id].weight == 2.0
    assert [o.id for o in kg.observations(drop)] == [obs.id]
    assert kg.find(graph.user, "nyc").id == drop.id
    assert kg.find(graph.user, "big apple").id == drop.id
    assert kg.relation(loop.id).subject_id == keep.id
    with pytest.raises(errors.InvalidTransitionError):
        kg.undo_merge(report.merge_id)
    assert kg.merges(graph.user) == []


def test_undo_refused_while_a_later_merge_stands(graph: Graph) -> None:
    a, b, c = (graph.kg.upsert_entity(graph.user, "concept", n).entity for n in ("x1", "y2", "z3"))
    first = graph.kg.merge(a, b)
    graph.kg.merge(a, c)
    with pytest.raises(errors.InvalidTransitionError):
        graph.kg.undo_merge(first.merge_id or "")


def test_merge_refuses_itself_and_other_users(graph: Graph) -> None:
    a = graph.kg.upsert_entity(graph.user, "concept", "a").entity
    other = graph.db.users.create(username="bob").id
    b = graph.kg.upsert_entity(other, "concept", "b").entity
    with pytest.raises(errors.ValidationError):
        graph.kg.merge(a, a)
    with pytest.raises(errors.ValidationError):
        graph.kg.merge(a, b)


# -- deletion and access ---------------------------------------------------------------------


def test_delete_entity_takes_its_facts_along(graph: Graph) -> None:
    a, b = _pair(graph)
    graph.kg.relate(a, "works_on", b)
    graph.kg.observe(a, "fact", "x")
    graph.kg.delete_entity(a)
    assert graph.db.kg_relations.count() == 0
    assert graph.db.kg_observations.count() == 0
    for table in ("kg_entity_names", "kg_aliases", "kg_relation_validity"):
        assert graph.db.query(f"SELECT count(*) FROM {table} WHERE rowid > 0")[0][0] <= 1


def test_reads_are_counted_in_batches(graph: Graph) -> None:
    e = graph.kg.upsert_entity(graph.user, "concept", "counted").entity
    graph.kg.flush()
    writes: list[str] = []
    graph.db.store.writer._conn.set_trace_callback(  # type: ignore[attr-defined]
        lambda sql: writes.append(sql) if sql.startswith("UPDATE kg_entities") else None
    )
    try:
        for _ in range(20):
            graph.kg.get(e.id)
        assert writes == []  # buffered, not written one by one
        assert graph.kg.access.pending == 1
        assert graph.kg.flush() == 1
    finally:
        graph.db.store.writer._conn.set_trace_callback(None)  # type: ignore[attr-defined]
    stored = graph.db.kg_entities.get(e.id)
    assert stored.access_count == 21  # the upsert was a read too
    assert stored.last_accessed == graph.clock.now_ms()


def test_access_is_flushed_on_thresholds(graph: Graph) -> None:
    graph.kg.access.flush_every = 3
    ids = [graph.kg.upsert_entity(graph.user, "concept", f"e{i}").entity.id for i in range(3)]
    assert graph.kg.access.pending == 0  # the third distinct entity triggered a flush
    assert graph.db.kg_entities.get(ids[0]).access_count == 1
    graph.kg.access.flush_every = 1000
    graph.kg.get(ids[0])
    graph.clock.advance(graph.kg.access.flush_after_ms)
    graph.kg.get(ids[1])
    assert graph.kg.access.pending == 0
    graph.kg.get(ids[2])
    graph.kg.close()
    assert graph.db.kg_entities.get(ids[2]).access_count == 2


def test_kg_all_lists_every_public_name() -> None:
    import inspect

    import mangostore.kg
    from mangostore.kg import Embedder, HashingEmbedder

    for name in mangostore.kg.__all__:
        getattr(mangostore.kg, name)  # some are imported on first use
    public = {
        name
        for name, value in vars(mangostore.kg).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert set(mangostore.kg.__all__) == public - {"annotations"}
    assert isinstance(HashingEmbedder(), Embedder)


def test_closing_the_database_writes_buffered_access_counts(db_path: Path) -> None:
    db = mangostore.create(db_path, encrypted=False).db
    user = db.users.create(username="reader")
    entity = db.kg.upsert_entity(user.id, "concept", "write-ahead log").entity
    for _ in range(3):
        db.kg.get(entity.id)
    db.close()  # no explicit db.kg.close(): closing the database settles the buffer
    with mangostore.open(db_path, encrypted=False) as again:
        stored = again.kg_entities.get(entity.id, use_cache=False)
        # Three reads, and the upsert that made the entity counts as one too.
        assert stored.access_count == 4
        assert stored.last_accessed is not None
