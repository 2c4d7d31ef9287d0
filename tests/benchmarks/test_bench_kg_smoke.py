"""The knowledge graph retrieval benchmark still runs at a tiny scale. No time is asserted."""

from __future__ import annotations

import bench.__main__ as runner
from bench import bench_kg_retrieval as retrieval
from tests.bench_helpers import smoke_results


def test_retrieval_benchmark_runs_every_mode_against_its_baseline() -> None:
    assert "kg_retrieval" in runner.available()
    results = smoke_results("kg_retrieval")
    names = {m.name for m in results}
    assert names == {
        "sqlite FTS5 MATCH (baseline)",
        "db.kg.search fts",
        "db.kg.search vector",
        "db.kg.search fts+graph",
        "db.kg.search hybrid",
    }
    for m in results:
        assert m.calls > 0, m
        if m.baseline is not None:
            assert m.baseline == "sqlite FTS5 MATCH (baseline)"


def test_the_synthetic_history_asks_answerable_questions() -> None:
    world = retrieval.build(300, 40, retrieval.HashingEmbedder(64))
    try:
        kinds = {q.kind for q in world.questions}
        assert {"preference", "misspelt"} <= kinds
        ids = {r[0] for r in world.db.query("SELECT id FROM kg_entities")}
        assert all(q.answer in ids for q in world.questions)
        assert all(
            q.stale and q.answer not in q.stale for q in world.questions if q.kind == "preference"
        )
        closed = world.db.query(
            "SELECT count(*) FROM kg_relation_validity WHERE valid_to IS NOT NULL"
        )
        assert closed[0][0] > 0  # preferences changed over time
        quality, _ = retrieval.evaluate(world)
        assert set(quality) == set(retrieval.MODES)
        assert all(0.0 <= q["recall@5"] <= 1.0 for q in quality.values())
    finally:
        world.db.close()
