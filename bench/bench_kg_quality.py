"""Answer quality of ``db.kg.search`` on spoken questions about one developer's work.

For each seed (1, 2 and 3; ``--quick``: seed 1 only; ``--smoke``: seed 1, two questions
of each category, the hashing test embedder) the world of :func:`bench.kg_world.build_world`
is loaded into its own encrypted database through ``db.kg``'s public API only, as an
application records it: the clock set to each fact's time, entities upserted with
de-duplication on, aliases added, single-valued predicates declared, relations related
(and ended with ``invalidate``), observations observed (in a slot when ``observe`` takes
``slot=``) and retracted. The speaker is named with ``db.kg.set_speaker`` when the graph
has it. Then every question is asked once with ``db.kg.search(user, text, k=5)``.

Reported per seed and category: recall@1 and recall@5 (a hit is right when its entity's
name is one of the answers, case-insensitively), MRR over the five hits, abstention
(unanswerable questions: the share answered with no hit; the others: the share wrongly
answered with none), p50/p95 latency, and a bare FTS5 ``MATCH`` of the same words as the
latency baseline. Also: wrong merges (two distinct entities of the world that
``db.kg.find`` resolves to one id), ``db.kg.merges`` and merge suggestions counted, and
how many questions get another top five when asked again after all the others (search
must not change later rankings).

Figures go to the table printed and to ``bench/results/kg_quality.json``, with every
question's hits, so that misses can be read.
"""

from __future__ import annotations

import inspect
import json
import re
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import mangostore
from bench.bench_kg_retrieval import PASSPHRASE
from bench.harness import Config, Measurement
from bench.kg_questions import CATEGORIES, Question
from bench.kg_world import AliasSpec, EntitySpec, ObservationSpec, RelationSpec, World, build_world
from mangostore.clock import ManualClock
from mangostore.errors import MangoError
from mangostore.kg.embedding import Embedder, HashingEmbedder, default_embedder

RESULTS = Path(__file__).resolve().parent / "results" / "kg_quality.json"
SEEDS = (1, 2, 3)
K = 5
BASELINE = "sqlite FTS5 MATCH (baseline)"


def open_database(path: Path, clock: ManualClock, embedder: Embedder) -> mangostore.Database:
    """Open a new encrypted database at ``path`` reading time from ``clock``."""
    db = mangostore.create(path, passphrase=PASSPHRASE, clock=clock).db
    db.kg.set_embedder(embedder)
    return db


def load(world: World, db: mangostore.Database, clock: ManualClock, user: str) -> dict[str, Any]:
    """Record ``world`` in ``db`` for ``user`` through ``db.kg``'s public API, in time order.

    Returns what the loading saw: the entity id of each name, entities matched to an
    existing one on upsert, calls refused, whether slots and the speaker were supported,
    and the seconds spent writing and embedding.
    """
    kg = db.kg
    started = time.perf_counter()
    slots = "slot" in inspect.signature(kg.observe).parameters
    for predicate in world.single_valued:
        kg.declare_predicate(predicate, single_valued=True)
    ids: dict[str, str] = {}
    facts: dict[RelationSpec | ObservationSpec, str] = {}
    matched: list[dict[str, Any]] = []
    refused: list[str] = []
    for event in world.events():
        clock.set(event.at)
        item = event.item
        try:
            if isinstance(item, EntitySpec):
                up = kg.upsert_entity(user, item.type, item.name, description=item.description)
                ids[item.name] = up.entity.id
                if not up.created:
                    matched.append(
                        {
                            "name": item.name,
                            "into": up.entity.name,
                            "by": up.matched_by,
                            "similarity": up.similarity,
                        }
                    )
            elif isinstance(item, AliasSpec):
                kg.add_alias(ids[item.entity], item.alias)
            elif isinstance(item, RelationSpec) and event.action == "relate":
                relation = kg.relate(
                    ids[item.subject], item.predicate, ids[item.object], valid_from=item.valid_from
                )
                facts[item] = relation.id
            elif isinstance(item, RelationSpec):
                kg.invalidate(facts[item], at=item.valid_to, reason="ended")
            elif event.action == "observe":
                extra: dict[str, Any] = {"slot": item.slot} if slots and item.slot else {}
                observation = kg.observe(
                    ids[item.entity], item.type, item.content, valid_from=item.valid_from, **extra
                )
                facts[item] = observation.id
            else:
                kg.invalidate(facts[item], at=item.valid_to, reason="no longer true")
        except (MangoError, KeyError) as exc:  # a wrong merge can make a relation a loop
            refused.append(f"{event.action} {item}: {type(exc).__name__}: {exc}")
    clock.set(world.now)
    speaker = hasattr(kg, "set_speaker")
    if speaker:
        kg.set_speaker(user, ids[world.speaker])
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    kg.embed_pending(user)
    return {
        "ids": ids,
        "matched_on_upsert": matched,
        "refused": refused,
        "slot_api": slots,
        "speaker_api": speaker,
        "load_s": load_s,
        "embed_s": time.perf_counter() - started,
    }


def wrong_merges(
    world: World, db: mangostore.Database, user: str
) -> tuple[list[list[str]], list[str]]:
    """Return the groups of distinct world names that ``db.kg.find`` resolves to one
    entity, and the names it does not find at all."""
    by_id: dict[str, list[str]] = defaultdict(list)
    lost = []
    for spec in world.entities:
        found = db.kg.find(user, spec.name)
        if found is None:
            lost.append(spec.name)
        else:
            by_id[found.id].append(spec.name)
    return [sorted(names) for names in by_id.values() if len(names) > 1], lost


def fts_baseline(db: mangostore.Database, text: str) -> list[Any]:
    """The raw engine's answer: any of the question's words in the full-text index."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    if not words:
        return []
    match = " OR ".join(f'"{w}"' for w in words)
    return db.query(
        "SELECT entity_id FROM kg_search_index WHERE kg_search_index MATCH ? ORDER BY rank LIMIT ?",
        (match, K),
        use_cache=False,
    )


def ask(db: mangostore.Database, user: str, questions: list[Question]) -> list[dict[str, Any]]:
    """Ask each question once; return its hits' names, the answer's rank and the times."""
    answers = []
    for q in questions:
        start = time.perf_counter_ns()
        fts_baseline(db, q.text)
        base_ns = time.perf_counter_ns() - start
        start = time.perf_counter_ns()
        hits = db.kg.search(user, q.text, k=K)
        ns = time.perf_counter_ns() - start
        names = [hit.entity.name for hit in hits]
        right = {a.lower() for a in q.answers}
        rank = next((i + 1 for i, n in enumerate(names) if n.lower() in right), None)
        answers.append(
            {
                "text": q.text,
                "category": q.category,
                "answers": sorted(q.answers),
                "note": q.note,
                "got": names,
                "rank": rank,
                "ns": ns,
                "baseline_ns": base_ns,
            }
        )
    return answers


def _p(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] / 1e6


def score(answers: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Return the figures of each category, and of all answerable questions together."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in answers:
        groups[a["category"]].append(a)
        if a["category"] != "unanswerable":
            groups["all answerable"].append(a)
    figures = {}
    for name in [*CATEGORIES, "all answerable"]:
        group = groups.get(name)
        if not group:
            continue
        n = len(group)
        ranks = [a["rank"] for a in group]
        times = [a["ns"] for a in group]
        empty = sum(1 for a in group if not a["got"]) / n
        p50 = statistics.median(times) / 1e6
        row = {"n": n, "abstained": empty, "p50_ms": p50, "p95_ms": _p(times, 0.95)}
        if name != "unanswerable":
            row |= {
                "recall@1": sum(1 for r in ranks if r == 1) / n,
                "recall@5": sum(1 for r in ranks if r is not None) / n,
                "mrr": sum(1 / r for r in ranks if r is not None) / n,
            }
        figures[name] = row
    return figures


def sample(questions: list[Question], per_category: int | None) -> list[Question]:
    """Keep the first ``per_category`` questions of each category (None: all of them)."""
    if per_category is None:
        return questions
    kept: dict[str, int] = defaultdict(int)
    chosen = []
    for q in questions:
        if kept[q.category] < per_category:
            kept[q.category] += 1
            chosen.append(q)
    return chosen


def evaluate_seed(
    seed: int, embedder: Embedder, directory: Path, per_category: int | None = None
) -> dict[str, Any]:
    """Build the world of ``seed`` in a new database under ``directory``, load it, ask its
    questions (``per_category`` of each, or all) and return the report of this seed."""
    world = build_world(seed)
    questions = sample(world.questions, per_category)
    clock = ManualClock(world.start)
    db = open_database(directory / f"kg-quality-{seed}.db", clock, embedder)
    try:
        user = db.users.create(username=f"developer{seed}").id
        loaded = load(world, db, clock, user)
        db.kg.search(user, "warm up the caches", k=K)
        answers = ask(db, user, questions)
        again = ask(db, user, questions)
        changed = sum(1 for a, b in zip(answers, again, strict=True) if a["got"] != b["got"])
        merged, lost = wrong_merges(world, db, user)
        kg: Any = db.kg
        suggestions = len(kg.merge_suggestions(user)) if hasattr(kg, "merge_suggestions") else None
        merges = len(db.kg.merges(user))
    finally:
        db.close()
    return {
        "seed": seed,
        "speaker": world.speaker,
        "entities": len(world.entities),
        "relations": len(world.relations),
        "observations": len(world.observations),
        "questions": len(questions),
        "load_s": round(loaded["load_s"], 2),
        "embed_s": round(loaded["embed_s"], 2),
        "slot_api": loaded["slot_api"],
        "speaker_api": loaded["speaker_api"],
        "categories": score(answers),
        "wrong_merges": merged,
        "lost_entities": lost,
        "matched_on_upsert": loaded["matched_on_upsert"],
        "refused_calls": loaded["refused"],
        "merges": merges,
        "merge_suggestions": suggestions,
        "changed_on_repeat": changed,
        "answers": answers,
    }


def _table(reports: list[dict[str, Any]], embedder: str) -> Table:
    table = Table(title=f"kg answer quality, k={K} (embedder {embedder})")
    for heading in ("seed", "category", "n", "R@1", "R@5", "MRR", "abstain", "p50 ms", "p95 ms"):
        table.add_column(heading, justify="right" if heading != "category" else "left")
    for report in reports:
        first = True
        for name, row in report["categories"].items():
            recall = [f"{row[m]:.2f}" if m in row else "" for m in ("recall@1", "recall@5", "mrr")]
            table.add_row(
                str(report["seed"]) if first else "",
                name,
                str(row["n"]),
                *recall,
                f"{row['abstained']:.2f}",
                f"{row['p50_ms']:.1f}",
                f"{row['p95_ms']:.1f}",
                end_section=name == "all answerable",
            )
            first = False
    return table


def _summary(report: dict[str, Any]) -> str:
    merged = "; ".join(" = ".join(group) for group in report["wrong_merges"]) or "none"
    notes = [] if report["speaker_api"] else ["db.kg.set_speaker missing: no speaker given"]
    if not report["slot_api"]:
        notes.append("observe() takes no slot: slot observations stored plainly")
    return (
        f"seed {report['seed']}: {report['entities']} entities, {report['relations']} "
        f"relations, {report['questions']} questions; loaded in {report['load_s']} s, "
        f"embedded in {report['embed_s']} s; wrong merges: {merged}; db.kg.merges: "
        f"{report['merges']}; merge suggestions: {report['merge_suggestions']}; "
        f"refused calls: {len(report['refused_calls'])}; other top 5 when asked again: "
        f"{report['changed_on_repeat']}" + "".join(f"; {n}" for n in notes)
    )


def measurements(report: dict[str, Any]) -> list[Measurement]:
    """Return the latency of each category, and of the bare FTS5 query, for one seed."""
    group = f"kg quality seed {report['seed']}"
    answers = report["answers"]
    base = [a["baseline_ns"] for a in answers]
    base_median = statistics.median(base) / 1000
    rows: list[tuple[str, list[int], str | None]] = [(BASELINE, base, None)]
    for category in CATEGORIES:
        times = [a["ns"] for a in answers if a["category"] == category]
        if times:
            rows.append((f"db.kg.search {category}", times, BASELINE))
    return [
        Measurement(
            group=group,
            name=name,
            median_us=statistics.median(ns) / 1000,
            p95_us=_p(ns, 0.95) * 1000,
            min_us=min(ns) / 1000,
            calls=len(ns),
            baseline=baseline,
            ratio=1.0 if baseline is None else statistics.median(ns) / 1000 / base_median,
        )
        for name, ns, baseline in rows
    ]


def run(config: Config) -> list[Measurement]:
    """Evaluate each seed; print the quality table; return the latencies per category."""
    smoke = config.scale <= 0.01
    seeds = SEEDS[:1] if config.scale < 1 else SEEDS
    model = None if smoke else default_embedder()
    embedder: Embedder = model if model is not None else HashingEmbedder(256)
    reports = []
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as directory:
        for seed in seeds:
            reports.append(evaluate_seed(seed, embedder, Path(directory), 2 if smoke else None))
    if not smoke:
        console = Console(width=150)
        console.print(_table(reports, embedder.model_version))
        for report in reports:
            console.print(_summary(report))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "embedder": embedder.model_version,
            "k": K,
            "seeds": {str(r["seed"]): r for r in reports},
        }
        RESULTS.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return [m for report in reports for m in measurements(report)]
