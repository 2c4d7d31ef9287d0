"""The generated world of the answer-quality benchmark keeps its own promises, and the
runner reports every figure it names. No quality threshold is asserted."""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path
from typing import Any

import bench.__main__ as runner
import pytest
from bench import bench_kg_quality as quality
from bench.kg_questions import CATEGORIES
from bench.kg_vocabulary import spoken_forms
from bench.kg_world import World, build_world

from mangostore.kg.embedding import HashingEmbedder
from mangostore.kg.names import compact


@functools.cache
def world(seed: int = 1) -> World:
    return build_world(seed)


def test_the_world_is_big_enough_and_asks_every_category() -> None:
    w = world()
    assert len(w.entities) >= 300
    assert len(w.relations) >= 450
    assert len(w.questions) >= 150
    counts = Counter(q.category for q in w.questions)
    assert set(counts) == set(CATEGORIES)
    assert counts["unanswerable"] >= 10
    assert all(n >= 15 for c, n in counts.items() if c != "unanswerable"), counts


def test_every_answer_is_an_entity_of_the_world() -> None:
    w = world()
    names = {e.name for e in w.entities}
    for q in w.questions:
        assert q.answers <= names, q
        assert bool(q.answers) == (q.category != "unanswerable"), q


def test_names_are_distinct_even_without_separators_and_case() -> None:
    w = world()
    keys = [compact(e.name) for e in w.entities]
    assert len(keys) == len(set(keys))
    assert len({q.text for q in w.questions}) == len(w.questions)


def test_facts_are_recorded_in_time_and_some_changed() -> None:
    w = world()
    names = {e.name for e in w.entities}
    created = {e.name: e.created_at for e in w.entities}
    for r in w.relations:
        assert {r.subject, r.object} <= names, r
        assert created[r.subject] <= r.valid_from, r
        assert created[r.object] <= r.valid_from, r
        assert r.valid_to is None or r.valid_from < r.valid_to <= w.now, r
    for o in w.observations:
        assert o.valid_to is None or o.valid_from < o.valid_to <= w.now, o
    assert any(r.superseded for r in w.relations)  # a single-valued value replaced
    assert any(r.valid_to and not r.superseded for r in w.relations)  # a relation closed
    assert any(o.replaced for o in w.observations)  # replaced in its slot
    assert any(o.valid_to and not o.replaced for o in w.observations)  # invalidated
    times = [e.at for e in w.events()]
    assert times == sorted(times)
    superseded = {r.predicate for r in w.relations if r.superseded}
    assert superseded <= set(w.single_valued)


def test_short_command_names_come_in_near_duplicate_pairs() -> None:
    tools = {e.name for e in world().of_kind("tool")}
    assert {"kubectl", "kubectx", "git", "gh", "jq", "yq"} <= tools


def test_same_seed_same_world_other_seed_other_world() -> None:
    again = build_world(1)
    assert again.questions == world().questions
    assert again.relations == world().relations
    other = build_world(2)
    assert {e.name for e in other.entities} != {e.name for e in world().entities}


@pytest.mark.parametrize(
    ("name", "heard"),
    [
        ("jq", "jay queue"),
        ("pytest", "pie test"),
        ("kubectl", "cube cuddle"),
        ("nginx", "engine x"),
        ("postgres", "post gress"),
        ("grafana", "graph ana"),
        ("htop", "aitch top"),
        ("k9s", "kay nine ess"),
        ("terraform", "terra form"),
    ],
)
def test_names_are_heard_the_way_speech_recognisers_write_them(name: str, heard: str) -> None:
    forms = spoken_forms(name)
    assert heard in forms
    assert name not in forms


def test_the_runner_reports_every_figure(tmp_path: Path) -> None:
    report = quality.evaluate_seed(1, HashingEmbedder(64), tmp_path, per_category=2)
    assert report["questions"] == 2 * len(CATEGORIES)
    assert set(report["categories"]) == {*CATEGORIES, "all answerable"}
    for name, row in report["categories"].items():
        assert {"n", "abstained", "p50_ms", "p95_ms"} <= set(row)
        assert 0.0 <= row["abstained"] <= 1.0
        if name != "unanswerable":
            assert 0.0 <= row["recall@1"] <= row["recall@5"] <= 1.0
            assert row["recall@1"] <= row["mrr"] <= row["recall@5"]
    assert isinstance(report["wrong_merges"], list)
    assert report["lost_entities"] == []
    assert report["merges"] >= 0
    assert len(report["answers"]) == report["questions"]
    assert all(len(a["got"]) <= quality.K for a in report["answers"])
    measured = quality.measurements(report)
    assert measured[0].name == quality.BASELINE
    assert {m.baseline for m in measured[1:]} == {quality.BASELINE}


def test_the_scores_follow_the_rank_of_the_first_right_hit() -> None:
    answers: list[dict[str, Any]] = [
        {"category": "voice", "rank": 1, "got": ["JQ"], "ns": 1},
        {"category": "voice", "rank": 2, "got": ["x", "jq"], "ns": 3},
        {"category": "voice", "rank": None, "got": [], "ns": 2},
        {"category": "unanswerable", "rank": None, "got": [], "ns": 2},
    ]
    figures = quality.score(answers)
    assert figures["voice"]["recall@1"] == pytest.approx(1 / 3)
    assert figures["voice"]["recall@5"] == pytest.approx(2 / 3)
    assert figures["voice"]["mrr"] == pytest.approx(0.5)
    assert figures["voice"]["abstained"] == pytest.approx(1 / 3)
    assert figures["unanswerable"]["abstained"] == 1.0
    assert "recall@1" not in figures["unanswerable"]


def test_the_benchmark_is_found_by_name() -> None:
    assert "kg_quality" in runner.available()
