"""Search answers spoken questions: each mechanism on a world of its own.

Specific words link, generic ones barely do; names are found by how they sound and by
how developers spell them out; each hop of a two-hop question is matched; time words
choose the facts; "I" is the speaker; questions the graph cannot answer get nothing;
near-duplicate command names are suggested, never merged.
"""

from __future__ import annotations

import pytest
from tests.kg_helpers import Graph

from mangostore import errors
from mangostore.kg.jargon import spoken_forms
from mangostore.kg.linking import specificity
from mangostore.kg.names import sound
from mangostore.kg.time_cues import time_scope

DAY = 86_400_000


def _names(graph: Graph, question: str, **options: object) -> list[str]:
    return [h.entity.name for h in graph.kg.search(graph.user, question, **options)]  # type: ignore[arg-type]


# -- linking ---------------------------------------------------------------------------------


def test_a_word_many_names_share_links_weakly(graph: Graph) -> None:
    kg, u = graph.kg, graph.user
    for i, word in enumerate(
        ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    ):
        service = kg.upsert_entity(u, "project", f"{word} service").entity
        kg.relate(service, "depends_on", kg.upsert_entity(u, "project", f"lib{i}").entity)
    billing = kg.upsert_entity(u, "project", "billing service").entity
    ledger = kg.upsert_entity(u, "project", "ledger", description="double entry book").entity
    kg.relate(billing, "depends_on", ledger)
    # "service" is in eleven names: it must not pull their neighbours ahead of the answer.
    assert _names(graph, "what does the billing service depend on")[0] == "ledger"
    assert specificity(11, 40) < specificity(1, 40)


def test_names_are_found_by_how_they_sound(graph: Graph) -> None:
    kg, u = graph.kg, graph.user
    kg.upsert_entity(u, "command", "pytest", description="runs the test suite")
    kg.upsert_entity(u, "project", "grafana", description="dashboards")
    kg.upsert_entity(u, "command", "ls", description="lists a folder")
    assert sound("pie test") == sound("pytest")
    assert _names(graph, "how do i run pie test")[0] == "pytest"
    assert _names(graph, "open graph ana")[0] == "grafana"


def test_spelled_letters_and_abbreviations_link(graph: Graph) -> None:
    kg, u = graph.kg, graph.user
    kg.upsert_entity(u, "command", "jq", description="slices json")
    kg.upsert_entity(u, "project", "kubernetes", description="container orchestration")
    kg.upsert_entity(u, "concept", "sourdough", description="bread")
    assert "jq" in {form for _, _, form in spoken_forms(["what", "does", "jay", "queue", "do"])}
    assert _names(graph, "what does jay queue do")[0] == "jq"
    assert _names(graph, "restart k eight s")[0] == "kubernetes"


def test_the_users_own_aliases_link(graph: Graph) -> None:
    kg, u = graph.kg, graph.user
    falcon = kg.upsert_entity(u, "project", "falcon payments gateway").entity
    kg.add_alias(falcon, "the gateway")
    kg.upsert_entity(u, "project", "heron", description="payments dashboard")
    assert _names(graph, "is the gateway up")[0] == "falcon payments gateway"


# -- facts as answers ----------------------------------------------------------------------------


def test_each_hop_of_a_two_hop_question_is_matched(graph: Graph) -> None:
    kg, u = graph.kg, graph.user
    job = kg.upsert_entity(u, "project", "billing job").entity
    lib = kg.upsert_entity(u, "project", "moneylib", description="a library").entity
    ann = kg.upsert_entity(u, "person", "Ann Lee").entity
    bob = kg.upsert_entity(u, "person", "Bob Ray").entity
    kg.relate(job, "depends_on", lib)
    kg.relate(ann, "maintains", lib)
    kg.relate(bob, "maintains", job)
    hits = graph.kg.search(u, "who maintains the library the billing job depends on")
    assert hits[0].entity.name == "Ann Lee"
    assert hits[0].fact is not None
    assert hits[0].fact.predicate == "maintains"


def test_a_hit_carries_the_fact_that_answers_it(graph: Graph) -> None:
    kg, u = graph.kg, graph.user
    kg.declare_predicate("preferred_shell")
    ann = kg.upsert_entity(u, "person", "Ann Smith").entity
    zsh = kg.upsert_entity(u, "command", "zsh", description="a Unix shell").entity
    kg.relate(ann, "preferred_shell", zsh)
    [first, *_] = graph.kg.search(u, "which shell does ann prefer")
    assert first.entity.id == zsh.id
    assert first.fact is not None
    assert first.fact.valid_to is None
    assert 0 < first.confidence <= 1


# -- time --------------------------------------------------------------------------------------


def _editors(graph: Graph) -> dict[str, str]:
    kg, u = graph.kg, graph.user
    kg.declare_predicate("uses_editor")
    me = kg.upsert_entity(u, "person", "Dana").entity
    kg.set_speaker(u, me)
    ids = {"me": me.id}
    for name in ("vim", "emacs", "neovim"):
        entity = kg.upsert_entity(u, "command", name, description="a text editor").entity
        ids[name] = entity.id
        kg.relate(me, "uses_editor", entity, valid_from=graph.clock.now_ms())
        graph.clock.advance(60 * DAY)
    return ids


def test_a_changed_fact_answers_with_its_new_value(graph: Graph) -> None:
    _editors(graph)
    assert _names(graph, "which editor do i use these days")[0] == "neovim"


def test_before_previously_and_used_to_ask_for_the_old_value(graph: Graph) -> None:
    _editors(graph)
    assert _names(graph, "what editor did i use before this one")[0] == "emacs"
    assert _names(graph, "what editor was i using previously")[0] == "emacs"
    assert _names(graph, "what editor did i use before neovim")[0] == "emacs"
    assert time_scope(["what", "did", "i", "use", "to", "use"], 0).mode == "before"
    assert time_scope(["which", "editor", "is", "used"], 0).mode == "now"


def test_a_stretch_of_time_is_read_from_the_question(graph: Graph) -> None:
    _editors(graph)  # vim for days 0-60, emacs 60-120, neovim since 120; now is day 180
    assert _names(graph, "which editor did i use four months ago")[0] == "emacs"
    scope = time_scope(["what", "did", "i", "work", "on", "last", "week"], 100 * DAY)
    assert scope.mode == "during"
    assert scope.start is not None
    assert scope.end is not None
    assert scope.start < 93 * DAY < scope.end


def test_a_slot_observation_replaces_the_older_one(graph: Graph) -> None:
    kg, u = graph.kg, graph.user
    standup = kg.upsert_entity(u, "concept", "standup").entity
    old = kg.observe(standup, "fact", "standup is at nine thirty", slot="time")
    graph.clock.advance(DAY)
    new = kg.observe(standup, "fact", "standup moved to ten", slot="time")
    assert kg.observation(old.id).valid_to == new.valid_from
    assert kg.observation(old.id).superseded_by == new.id
    assert [o.id for o in kg.observations(standup)] == [new.id]
    [hit, *_] = kg.search(u, "when is standup")
    assert hit.fact is not None
    assert hit.fact.id == new.id
    with pytest.raises(errors.InvalidValueError, match="slot"):
        kg.observe(standup, "fact", "x", slot="  ")


# -- the speaker -------------------------------------------------------------------------------


def test_i_and_my_mean_the_speaker(graph: Graph) -> None:
    kg, u = graph.kg, graph.user
    kg.declare_predicate("prefers_shell")
    me = kg.upsert_entity(u, "person", "Dana").entity
    other = kg.upsert_entity(u, "person", "Eli").entity
    fish = kg.upsert_entity(u, "command", "fish", description="a friendly shell").entity
    bash = kg.upsert_entity(u, "command", "bash", description="a shell").entity
    kg.relate(other, "prefers_shell", bash)
    kg.relate(other, "works_on", kg.upsert_entity(u, "project", "p1").entity)
    kg.relate(me, "prefers_shell", fish)
    kg.set_speaker(u, me)
    assert _names(graph, "what's my favourite shell")[0] == "fish"
    assert _names(graph, "what's my favourite shell", speaker=other)[0] == "bash"
    with pytest.raises(errors.InvalidValueError, match="person"):
        kg.set_speaker(u, fish)
    # Another user's person is not this user's speaker: their facts stay theirs.
    bob = graph.db.users.create(username="bob").id
    bobs = kg.upsert_entity(bob, "person", "Bob").entity
    with pytest.raises(errors.InvalidValueError, match="same user"):
        kg.search(u, "my shell", speaker=bobs)
    with pytest.raises(errors.NotFoundError):
        kg.search(u, "my shell", speaker="no-such-entity")


def test_without_a_speaker_set_the_centre_of_the_graph_is_me(graph: Graph) -> None:
    kg, u = graph.kg, graph.user
    me = kg.upsert_entity(u, "person", "Dana").entity
    for name in ("p1", "p2", "p3"):
        kg.relate(me, "works_on", kg.upsert_entity(u, "project", name).entity)
    kg.relate(kg.upsert_entity(u, "person", "Eli").entity, "works_on", kg.find(u, "p1") or "")
    assert set(_names(graph, "which projects am i working on")[:3]) == {"p1", "p2", "p3"}


# -- abstention and side effects ----------------------------------------------------------------


def test_a_question_the_graph_cannot_answer_gets_nothing(graph: Graph) -> None:
    kg, u = graph.kg, graph.user
    me = kg.upsert_entity(u, "person", "Dana").entity
    kg.set_speaker(u, me)
    kg.relate(me, "uses", kg.upsert_entity(u, "command", "zsh", description="a shell").entity)
    kg.upsert_entity(u, "project", "falcon", description="payments service")
    assert graph.kg.search(u, "what's my cat's name") == []
    assert graph.kg.search(u, "when is my dentist appointment") == []
    assert _names(graph, "what's my cat's name", min_confidence=0)  # noise, below the floor
    with pytest.raises(errors.InvalidValueError, match="min_confidence"):
        graph.kg.search(u, "zsh", min_confidence=1.5)


def test_searching_does_not_change_later_rankings(graph: Graph) -> None:
    kg, u = graph.kg, graph.user
    for name in ("tea one", "tea two", "tea three"):
        kg.upsert_entity(u, "concept", name)
    first = _names(graph, "tea")
    for _ in range(20):
        _names(graph, "tea three")
    kg.flush()
    assert _names(graph, "tea") == first


# -- merges ------------------------------------------------------------------------------------


def test_near_duplicate_command_names_are_suggested_not_merged(graph: Graph) -> None:
    kg, u = graph.kg, graph.user
    kubectl = kg.upsert_entity(u, "command", "kubectl").entity
    made = kg.upsert_entity(u, "command", "kubectx")
    assert made.created
    assert made.entity.id != kubectl.id
    assert made.suggestion is not None
    assert made.suggestion.candidate_id == kubectl.id
    [suggestion] = kg.merge_suggestions(u)
    assert (suggestion.entity_id, suggestion.candidate_id) == (made.entity.id, kubectl.id)
    kg.dismiss_suggestion(suggestion.id)
    assert kg.merge_suggestions(u) == []
    with pytest.raises(errors.NotFoundError):
        kg.dismiss_suggestion("no-such-suggestion")
    # Short names of other types are suggested too; long ones with one slip still merge.
    assert kg.upsert_entity(u, "concept", "postgres").created
    assert kg.upsert_entity(u, "concept", "postgress").suggestion is not None
    kg.upsert_entity(u, "concept", "kubernetes")
    assert not kg.upsert_entity(u, "concept", "kubernetis").created


def test_the_name_index_follows_renames_aliases_and_deletes(graph: Graph) -> None:
    kg, u = graph.kg, graph.user
    entity = kg.upsert_entity(u, "project", "heron").entity
    kg.add_alias(entity, "blue bird")
    assert _names(graph, "blue bird")[0] == "heron"
    graph.db.kg_entities.update(entity.id, name="egret")
    assert _names(graph, "egret")[0] == "egret"
    assert (
        graph.db.query("SELECT count(*) FROM kg_name_index WHERE kg_name_index MATCH 'heron'")[0][0]
        == 0
    )
    kg.delete_entity(entity)
    assert graph.db.query("SELECT count(*) FROM kg_name_index")[0][0] == 0
