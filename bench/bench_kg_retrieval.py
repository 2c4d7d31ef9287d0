"""Retrieval quality and latency of ``db.kg.search`` on a seeded synthetic history.

One user's history: people, projects, files, commands and preferences that change over
time (single-valued predicates: the old value is closed, not deleted), with aliases.
Questions with known answers ask for names with typing and speech-recognition slips,
for things by what they do (paraphrased, not quoted), for who works on what, for files
of projects, and for current preferences. For each graph size and retriever mode it
reports recall@1/5/10, MRR, stale hits (a superseded value in the top 5; counted over
the preference questions) and p50/p95 latency, against a bare FTS5 ``MATCH`` of the same
question on the same connection as the baseline.

Modes: ``fts`` (BM25 and trigram names), ``vector`` (embeddings only), ``fts+graph``
(what search does without an embedder) and ``hybrid`` (everything).

Sizes: smoke 300 entities; ``--quick`` 1,000; full 1,000, 10,000 and 100,000. Each graph
lives in an encrypted database file (the default settings, so searches use the reader
pool as an application's would), built with batched raw inserts (the triggers still
maintain both full-text indexes). Every entity and observation is embedded with the
default embedder (identical texts once). Without the embeddings extra the test double
``HashingEmbedder`` is used and the table says so.

Besides each mode it reports what the vector leg is made of: the median time to
embed one question, and the recall of the in-memory index against exact search (the
share of the exact top 10 and top 150 it returns; 150 is what a search asks for), by
default (binary codes from 20,000 vectors) and with binary codes forced on.

Quality figures are also written to ``bench/results/kg_retrieval.json``.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import mangostore
from bench.harness import Config, Measurement
from mangostore.clock import ManualClock
from mangostore.ids import new_id
from mangostore.kg.embedding import (
    Embedder,
    HashingEmbedder,
    NumpyIndex,
    content_hash,
    default_embedder,
    to_blob,
)
from mangostore.kg.names import canonical
from mangostore.kg.query_text import fts_query
from mangostore.kg.vectors import embedding_text


def _words(text: str) -> list[str]:
    return text.split()


RESULTS = Path(__file__).resolve().parent / "results" / "kg_retrieval.json"
PASSPHRASE = "bench passphrase, not a secret"
DAY = 86_400_000
START = 1_700_000_000_000

FIRST = _words(
    "ann bob carla dmitri elena farid greta hiro ines jamal kofi lena mateo nadia "
    "oskar priya quinn rosa sven tomas uma viktor wen yusuf zoe"
)
LAST = _words(
    "smith garcia novak okafor tanaka rossi dubois kowalski silva haddad nguyen "
    "berg costa ivanova meyer lindqvist"
)
ADJ = _words(
    "falcon amber cobalt tidal quartz ember maple nimbus orbit prism raven sable "
    "topaz velvet willow zephyr coral drift echo flint harbor iris juniper krypton "
    "lumen"
)
NOUN = _words(
    "api web gateway engine portal service worker dashboard pipeline bot cli sync store hub relay"
)

# (description stored, how a question paraphrases it)
DOMAINS = [
    ("handles billing and invoices for customers", "where do we charge clients and send bills"),
    ("renders the public marketing website", "the site that advertises the product"),
    ("stores user photos and resizes images", "where pictures get uploaded and shrunk"),
    ("sends push notifications to phones", "what pings mobile devices with alerts"),
    ("trains the speech recognition model", "teaching the voice transcription network"),
    ("synchronises calendars between devices", "keeping appointments in step across gadgets"),
    ("indexes documents for full text search", "making papers findable by keyword"),
    ("schedules nightly database backups", "copies of the data made every night"),
    ("collects application metrics and logs", "gathering telemetry and log lines"),
    ("manages user accounts and passwords", "sign in and credential handling"),
    ("translates the interface into other languages", "localisation of the UI text"),
    ("streams music to listeners", "playing songs over the network"),
    ("detects fraudulent payments", "spotting scam transactions"),
    ("generates monthly sales reports", "revenue summaries every month"),
    ("routes support tickets to agents", "assigning help desk requests to staff"),
    ("compresses video uploads", "making movie files smaller"),
]
COMMANDS = [
    (
        "docker compose up --build",
        "rebuild and start the containers",
        "restart the docker stack after changing images",
    ),
    (
        "git rebase -i HEAD~5",
        "rewrite the last five commits interactively",
        "squash my recent commits together",
    ),
    (
        "pytest -x -k auth",
        "run the authentication tests and stop at the first failure",
        "test the login code and halt on error",
    ),
    (
        "kubectl rollout restart deployment/web",
        "restart the web pods on the cluster",
        "bounce the web deployment in kubernetes",
    ),
    (
        "rsync -avz build/ server:/srv/www",
        "upload the built site to the server",
        "copy the compiled website to production",
    ),
    (
        "tar -czf backup.tgz data/",
        "archive the data folder",
        "pack the data directory into a tarball",
    ),
    ("npm run lint -- --fix", "fix the javascript style issues", "autocorrect the eslint warnings"),
    (
        "psql -c 'VACUUM ANALYZE'",
        "clean up and analyse the postgres tables",
        "tidy the database statistics",
    ),
    (
        "ffmpeg -i in.mov -crf 28 out.mp4",
        "convert the movie to a smaller mp4",
        "shrink the video file",
    ),
    (
        "openssl req -new -x509 -days 365",
        "make a self signed certificate",
        "create a tls cert for a year",
    ),
    (
        "journalctl -u nginx --since today",
        "read today's nginx service logs",
        "see what the web server logged today",
    ),
    ("htop", "watch processes and cpu use", "which programs are eating the processor"),
]
PREFERENCES = [
    ("preferred_shell", "shell", ["bash", "zsh", "fish", "nushell"]),
    ("preferred_editor", "editor", ["vim", "neovim", "helix", "emacs"]),
    ("preferred_font", "font", ["fira code", "jetbrains mono", "iosevka", "hack"]),
    ("preferred_theme", "theme", ["solarized dark", "gruvbox", "dracula", "nord"]),
    ("preferred_browser", "browser", ["firefox", "chromium", "safari", "vivaldi"]),
]
MODULES = _words("auth billing cache config router models views utils schema migrations worker api")


def misspell(rng: random.Random, text: str) -> str:
    """Make one typing or speech-recognition slip in the longest word of ``text``."""
    words = text.replace("-", " ").split()
    i = max(range(len(words)), key=lambda j: len(words[j]))
    w = words[i]
    if len(w) >= 4:
        k = rng.randrange(1, len(w) - 1)
        kind = rng.randrange(3)
        if kind == 0:
            w = w[:k] + w[k + 1 :]  # a dropped letter
        elif kind == 1:
            w = w[:k] + w[k] + w[k:]  # a doubled letter
        else:
            w = w[: k - 1] + w[k] + w[k - 1] + w[k + 1 :]  # two letters swapped
    words[i] = w
    return " ".join(words)


@dataclass
class Question:
    text: str
    answer: str  # entity id
    kind: str
    stale: set[str] = field(default_factory=set)


@dataclass
class World:
    db: mangostore.Database
    user: str
    questions: list[Question]
    entities: int
    build_s: float
    embed_s: float
    vectors: int


class Builder:
    """Batched raw inserts of one user's graph."""

    def __init__(self, db: mangostore.Database, user: str) -> None:
        self.db = db
        self.user = user
        self.entities: list[tuple[Any, ...]] = []
        self.relations: list[tuple[Any, ...]] = []
        self.closed: list[tuple[Any, ...]] = []
        self.observations: list[tuple[Any, ...]] = []
        self.aliases: list[tuple[Any, ...]] = []

    def entity(self, kind: str, name: str, description: str, at: int) -> str:
        eid = new_id()
        self.entities.append((eid, self.user, kind, name, description, at, at))
        return eid

    def relate(self, s: str, p: str, o: str, at: int, until: int | None = None) -> str:
        rid = new_id()
        self.relations.append((rid, self.user, s, p, o, 1.0, 1.0, at, at, "user"))
        if until is not None:
            self.closed.append((until, until, "superseded", rid))
        return rid

    def observe(self, e: str, content: str, at: int) -> None:
        self.observations.append((new_id(), e, self.user, "fact", content, 1.0, at))

    def alias(self, e: str, alias: str, at: int) -> None:
        self.aliases.append((new_id(), e, self.user, alias, canonical(alias), "user", at))

    def flush(self) -> None:
        with self.db.transaction():
            conn = self.db.store.writer._conn  # type: ignore[attr-defined]
            conn.executemany(
                "INSERT INTO kg_entities (id, user_id, entity_type, name, description, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                self.entities,
            )
            conn.executemany(
                "UPDATE kg_entity_names SET canonical_name = ? WHERE entity_id = ?",
                [(canonical(e[3]), e[0]) for e in self.entities],
            )
            conn.executemany(
                "INSERT INTO kg_relations (id, user_id, subject_id, predicate, object_id, weight, "
                "confidence_score, created_at, last_confirmed, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self.relations,
            )
            conn.executemany(
                "UPDATE kg_relation_validity SET valid_to = ?, invalidated_at = ?, "
                "invalidation_reason = ? WHERE relation_id = ?",
                self.closed,
            )
            conn.executemany(
                "INSERT INTO kg_observations (id, entity_id, user_id, observation_type, content, "
                "confidence_score, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                self.observations,
            )
            conn.executemany(
                "INSERT INTO kg_aliases (id, entity_id, user_id, alias, canonical_alias, source, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                self.aliases,
            )


def build(
    size: int, n_questions: int, embedder: Embedder, seed: int = 7, path: Path | None = None
) -> World:
    """Build a graph of about ``size`` entities and the questions about it.

    ``path``: an encrypted database file to build it in (default: in memory, unencrypted).
    """
    rng = random.Random(seed)
    clock = ManualClock(START + 400 * DAY)
    if path is None:
        db = mangostore.open(":memory:", encrypted=False, clock=clock)
    else:
        db = mangostore.create(path, passphrase=PASSPHRASE, clock=clock).db
    db.kg.set_embedder(embedder)
    db.kg.access.flush_every = 10**9  # searches must not change later rankings
    db.kg.access.flush_after_ms = 10**15
    user = db.users.create(username="me").id
    started = time.perf_counter()
    b = Builder(db, user)
    questions: list[Question] = []
    me = b.entity("person", "me", "the user of this terminal", START)
    db.kg.declare_predicate("preferred_shell")
    for predicate, _, _ in PREFERENCES:
        db.kg.declare_predicate(predicate)
    # Preferences that changed over time: the last value holds, earlier ones were closed.
    for predicate, noun, values in PREFERENCES:
        ids = [b.entity("concept", v, f"a {noun}", START) for v in values]
        changes = sorted(rng.sample(range(10, 390), len(values) - 1))
        times = [START + d * DAY for d in [0, *changes]]
        for i, vid in enumerate(ids):
            until = times[i + 1] if i + 1 < len(ids) else None
            b.relate(me, predicate, vid, times[i], until)
            b.observe(vid, f"I switched my {noun} to {values[i]}", times[i])
        for phrase in (
            f"which {noun} do I use now",
            f"my current {noun}",
            f"what {noun} do I prefer",
        ):
            questions.append(Question(phrase, ids[-1], "preference", set(ids[:-1])))
    # Projects with people, files and commands; names unique.
    names = [f"{a}-{n}" for a in ADJ for n in NOUN]
    rng.shuffle(names)
    people = [f"{f} {l}" for f in FIRST for l in LAST]  # noqa: E741
    rng.shuffle(people)
    n_projects = max(8, min(len(names), size // 12))
    target_projects = min(n_projects, 40)
    person_ids: list[str] = []
    for i in range(n_projects):
        domain, paraphrase = DOMAINS[i % len(DOMAINS)]
        at = START + rng.randrange(0, 380) * DAY
        pid = b.entity("project", names[i], domain, at)
        person = people[i % len(people)]
        if i < len(people):
            person_ids.append(b.entity("person", person, "a colleague", at))
        owner = person_ids[i % len(person_ids)]
        b.relate(owner, "works_on", pid, at)
        b.relate(me, "contributes_to", pid, at)
        files = []
        for m in rng.sample(MODULES, 3):
            ext = rng.choice(["py", "ts", "go"])
            fid = b.entity(
                "file", f"/home/me/{names[i]}/src/{m}.{ext}", f"{m} module of {names[i]}", at
            )
            b.relate(pid, "contains", fid, at)
            files.append((m, fid))
        b.observe(
            pid, f"{names[i]} is deployed every {rng.choice(['monday', 'friday', 'night'])}", at
        )
        if i < target_projects:
            alias = names[i].split("-")[0] + " " + names[i].split("-")[1]
            b.alias(pid, alias.upper(), at)
            if i < len(DOMAINS):  # paraphrases only for the projects whose domain is unique
                questions.append(Question(paraphrase, pid, "paraphrase"))
            questions.append(
                Question(f"open the {misspell(rng, names[i])} project", pid, "misspelt")
            )
            if i < len(people):
                questions.append(
                    Question(f"who works on {names[i].replace('-', ' ')}", owner, "relation")
                )
            m, fid = files[0]
            questions.append(Question(f"the {m} file in {names[i]}", fid, "file"))
    for text, description, paraphrase in COMMANDS:
        cid = b.entity("command", text, description, START + rng.randrange(0, 380) * DAY)
        questions.append(Question(paraphrase, cid, "paraphrase"))
        questions.append(Question(misspell(rng, text), cid, "misspelt"))
    # Distractors up to the size: commands, files and concepts with plausible text.
    words = [w for d, _ in DOMAINS for w in d.split() if len(w) > 3]
    while len(b.entities) < size:
        i = len(b.entities)
        kind = ("file", "command", "concept")[i % 3]
        domain = DOMAINS[rng.randrange(len(DOMAINS))][0]
        if kind == "file":
            name = f"/srv/{rng.choice(ADJ)}{i}/{rng.choice(MODULES)}_{rng.choice(words)}.txt"
        elif kind == "command":
            name = f"{rng.choice(['make', 'cargo', 'go', 'npm', 'just'])} {rng.choice(words)}-{i}"
        else:
            name = f"{rng.choice(words)} {rng.choice(words)} {i}"
        b.entity(kind, name, f"notes on how it {domain}", START + rng.randrange(0, 400) * DAY)
    b.flush()
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    vectors = embed_all(db, user, embedder, b)
    embed_s = time.perf_counter() - started
    rng.shuffle(questions)
    return World(db, user, questions[:n_questions], len(b.entities), build_s, embed_s, vectors)


def embed_all(db: mangostore.Database, user: str, embedder: Embedder, b: Builder) -> int:
    """Store a vector for every entity and observation; return how many."""
    model = embedder.model_version
    rows: list[tuple[str, str, str, str]] = []  # (source, entity, kind, text)
    for e in b.entities:
        rows.append((e[0], e[0], "entity", embedding_text(e[3], e[4])))
    for o in b.observations:
        rows.append((o[0], o[1], "observation", o[4]))
    texts = list(dict.fromkeys(t for *_, t in rows))
    vectors = {}
    for start in range(0, len(texts), 512):
        chunk = texts[start : start + 512]
        for text, vector in zip(chunk, embedder.embed(chunk), strict=True):
            vectors[text] = to_blob(vector)
    inserts, sources = [], []
    for source, entity, kind, text in rows:
        eid = new_id()
        inserts.append(
            (
                eid,
                entity,
                user,
                "semantic" if kind == "entity" else "contextual",
                vectors[text],
                embedder.dimensions,
                model,
                START,
            )
        )
        sources.append((eid, source, model, content_hash(text)))
    with db.transaction():
        conn = db.store.writer._conn  # type: ignore[attr-defined]
        conn.executemany(
            "INSERT INTO kg_embeddings (id, entity_id, user_id, embedding_type, vector_data, "
            "dimensions, model_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            inserts,
        )
        conn.executemany(
            "INSERT INTO kg_embedding_sources (embedding_id, source_id, model_version, "
            "content_hash) VALUES (?, ?, ?, ?)",
            sources,
        )
        conn.execute("DELETE FROM kg_embedding_queue")
    return len(rows)


MODES = {
    "fts": ["fts", "trigram"],
    "vector": ["vector"],
    "fts+graph": ["fts", "trigram", "graph"],
    "hybrid": ["fts", "trigram", "vector", "graph"],
}


def evaluate(world: World) -> tuple[dict[str, dict[str, float]], dict[str, list[int]]]:
    """Ask every question in every mode; return quality per mode and latencies (ns)."""
    kg = world.db.kg
    quality: dict[str, dict[str, float]] = {}
    latency: dict[str, list[int]] = {}
    raw: list[int] = []
    with world.db.store.reading() as conn:
        for q in world.questions:
            match = fts_query(q.text)
            start = time.perf_counter_ns()
            if match is not None:
                conn.execute(
                    "SELECT entity_id FROM kg_search_index WHERE kg_search_index MATCH ? "
                    "ORDER BY rank LIMIT 10",
                    (match,),
                ).fetchall()
            raw.append(time.perf_counter_ns() - start)
    latency["sqlite FTS5 MATCH (baseline)"] = raw
    for mode, retrievers in MODES.items():
        kg.search(world.user, world.questions[0].text, retrievers=retrievers)  # warm caches
        ranks: list[int | None] = []
        stale = 0
        stale_questions = 0
        times: list[int] = []
        for q in world.questions:
            start = time.perf_counter_ns()
            hits = kg.search(world.user, q.text, k=10, retrievers=retrievers)
            times.append(time.perf_counter_ns() - start)
            ids = [h.entity.id for h in hits]
            ranks.append(ids.index(q.answer) + 1 if q.answer in ids else None)
            if q.stale:
                stale_questions += 1
                stale += sum(1 for i in ids[:5] if i in q.stale)
        n = len(ranks)
        quality[mode] = {
            "recall@1": sum(1 for r in ranks if r is not None and r <= 1) / n,
            "recall@5": sum(1 for r in ranks if r is not None and r <= 5) / n,
            "recall@10": sum(1 for r in ranks if r is not None) / n,
            "mrr": sum(1 / r for r in ranks if r is not None) / n,
            "stale_per_question": stale / stale_questions if stale_questions else 0.0,
            "p50_ms": statistics.median(times) / 1e6,
            "p95_ms": sorted(times)[max(0, round(0.95 * len(times)) - 1)] / 1e6,
        }
        latency[mode] = times
    return quality, latency


def vector_leg(world: World) -> dict[str, float]:
    """Time the question embedding; measure the default and forced binary-code index
    against exact search (the share of the exact top k found), for k = 10 and 150."""
    kg = world.db.kg
    embedder = kg.embedder
    if embedder is None:
        return {}
    model = embedder.model_version
    times = []
    vectors = []
    for q in world.questions:
        start = time.perf_counter_ns()
        vectors.append(embedder.embed([q.text])[0])
        times.append(time.perf_counter_ns() - start)
    exact = NumpyIndex(world.db, quantize_from=10**12)
    indexes = {"default": kg.vector_index, "codes": NumpyIndex(world.db, quantize_from=0)}
    found: dict[str, list[float]] = {f"{n}@{k}": [] for n in indexes for k in (10, 150)}
    for vector in vectors:
        for k in (10, 150):
            truth = {h.embedding_id for h in exact.search(world.user, model, vector, k)}
            for name, index in indexes.items():
                got = {h.embedding_id for h in index.search(world.user, model, vector, k)}
                found[f"{name}@{k}"].append(len(truth & got) / len(truth) if truth else 1.0)
    result = {"embed_query_p50_ms": statistics.median(times) / 1e6}
    for key, shares in found.items():
        result[f"index_recall_{key}"] = statistics.fmean(shares)
    return result


def sizes_for(config: Config) -> tuple[tuple[int, ...], int]:
    if config.scale <= 0.01:
        return (300,), 30
    if config.scale < 1:
        return (1_000,), 200
    return (1_000, 10_000, 100_000), 300


def run(config: Config) -> list[Measurement]:
    """Build each size, ask the questions in every mode, print quality, return latencies."""
    sizes, n_questions = sizes_for(config)
    smoke = config.scale <= 0.01
    model = None if smoke else default_embedder()
    embedder: Embedder = model if model is not None else HashingEmbedder(256)
    results: list[Measurement] = []
    report: dict[str, Any] = {"embedder": embedder.model_version, "sizes": {}}
    table = Table(title=f"kg retrieval quality (embedder {embedder.model_version})")
    for heading in ("entities", "mode", "R@1", "R@5", "R@10", "MRR", "stale/q", "p50 ms", "p95 ms"):
        table.add_column(heading, justify="right")
    legs: dict[int, dict[str, float]] = {}
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as directory:
            world = build(size, n_questions, embedder, path=Path(directory) / "kg.db")
            try:
                quality, latency = evaluate(world)
                legs[world.entities] = vector_leg(world)
            finally:
                world.db.close()
        report["sizes"][str(size)] = {
            "entities": world.entities,
            "questions": len(world.questions),
            "build_s": round(world.build_s, 1),
            "embed_s": round(world.embed_s, 1),
            "vectors": world.vectors,
            "modes": quality,
            "vector_leg": legs[world.entities],
        }
        for mode, q in quality.items():
            table.add_row(
                f"{world.entities:,}",
                mode,
                *(f"{q[m]:.3f}" for m in ("recall@1", "recall@5", "recall@10", "mrr")),
                f"{q['stale_per_question']:.2f}",
                f"{q['p50_ms']:.1f}",
                f"{q['p95_ms']:.1f}",
            )
        baseline = "sqlite FTS5 MATCH (baseline)"
        base_median = statistics.median(latency[baseline]) / 1000
        for name, samples in latency.items():
            median = statistics.median(samples) / 1000
            results.append(
                Measurement(
                    group=f"kg search {world.entities:,}",
                    name=name if name == baseline else f"db.kg.search {name}",
                    median_us=median,
                    p95_us=sorted(samples)[max(0, round(0.95 * len(samples)) - 1)] / 1000,
                    min_us=min(samples) / 1000,
                    calls=len(samples),
                    baseline=None if name == baseline else baseline,
                    ratio=1.0 if name == baseline else median / base_median,
                )
            )
    if not smoke:
        Console(width=150).print(table)
        for size, data in report["sizes"].items():
            Console(width=150).print(
                f"{size}: built in {data['build_s']} s, embedded in {data['embed_s']} s "
                f"({data['vectors']} vectors)"
            )
            leg = data["vector_leg"]
            if leg:
                Console(width=150).print(
                    f"{size}: embedding a question p50 {leg['embed_query_p50_ms']:.1f} ms; "
                    "index recall against exact search, default "
                    f"{leg['index_recall_default@10']:.3f} (top 10) "
                    f"{leg['index_recall_default@150']:.3f} (top 150), binary codes forced "
                    f"{leg['index_recall_codes@10']:.3f} / {leg['index_recall_codes@150']:.3f}"
                )
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return results
