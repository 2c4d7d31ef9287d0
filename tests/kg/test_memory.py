"""``db.memory``: versions and history, recall by key and by query with its ranking, hostile
queries, access counting, expiry and forgetting with a manual clock, and the full-text
index staying in step with the table whatever writes or deletes memories."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

import mangostore
from mangostore.clock import ManualClock
from mangostore.errors import (
    ForeignKeyError,
    InvalidValueError,
    JSONValueError,
    NotFoundError,
)
from mangostore.kg.memory import (
    DAY_MS,
    KEY_WEIGHT,
    MemoryPolicy,
    MemoryService,
    MemorySweep,
    fts_query,
)

HOUR_MS = 3_600_000


# An unencrypted in-memory database on the manual clock.
pytestmark = pytest.mark.database("clocked_db")


@pytest.fixture
def ann(db: mangostore.Database) -> str:
    return db.users.create(username="ann").id


@pytest.fixture
def bob(db: mangostore.Database) -> str:
    return db.users.create(username="bob").id


def keys(results: list[Any]) -> list[str]:
    return [r.key for r in results]


def rows(db: mangostore.Database, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in db.query(sql, params)]


def fts_rows(db: mangostore.Database) -> int:
    return int(db.query("SELECT count(*) FROM ai_memory_fts")[0][0])


def fts_matches(db: mangostore.Database, word: str) -> int:
    return int(
        db.query("SELECT count(*) FROM ai_memory_fts WHERE ai_memory_fts MATCH ?", (word,))[0][0]
    )


# -- the service on the database ------------------------------------------------------------------


def test_memory_is_one_service_per_database(db: mangostore.Database) -> None:
    assert isinstance(db.memory, MemoryService)
    assert db.memory is db.memory


# -- remember, supersede, history -----------------------------------------------------------------


def test_a_new_value_supersedes_the_old_and_keeps_history(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    first = db.memory.remember(ann, "preferred_shell", "bash", memory_type="preference")
    clock.advance(1_000)
    second = db.memory.remember(ann, "preferred_shell", "zsh", memory_type="preference")
    clock.advance(1_000)
    third = db.memory.remember(ann, "preferred_shell", "fish", memory_type="preference")

    (current,) = db.memory.recall(ann, "preferred_shell")
    assert current.memory.id == third.id
    assert current.value == "fish"
    assert [m.value_data for m in db.memory.history(ann, "preferred_shell")] == ["zsh", "bash"]
    assert [m.id for m in db.memory.history(ann, "preferred_shell", limit=1)] == [second.id]
    state = {
        r["memory_id"]: (r["superseded_by"], r["superseded_at"])
        for r in db.query("SELECT * FROM ai_memory_state")
    }
    assert state[first.id] == (second.id, second.created_at)
    assert state[second.id] == (third.id, third.created_at)
    assert state[third.id] == (None, None)
    assert [m.key_name for m in db.memory.list(ann)] == ["preferred_shell"]


def test_the_same_value_again_reinforces_instead_of_adding_a_version(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    first = db.memory.remember(ann, "editor", {"name": "vim", "tabs": 4}, confidence=0.6)
    clock.advance(5_000)
    again = db.memory.remember(ann, "editor", {"tabs": 4, "name": "vim"}, confidence=0.4, ttl=60)

    assert again.id == first.id
    assert again.confidence_score == 0.6  # the higher of the two
    assert again.expires_at == clock.now_ms() + 60
    assert again.last_accessed == clock.now_ms()
    assert db.memory.history(ann, "editor") == []
    assert db.ai_memory.count(user_id=ann) == 1
    assert db.ai_memory.get(first.id).expires_at == again.expires_at


def test_a_new_type_for_the_same_value_is_a_new_version(db: mangostore.Database, ann: str) -> None:
    db.memory.remember(ann, "rust", "beginner", memory_type="fact")
    db.memory.remember(ann, "rust", "beginner", memory_type="skill")

    assert [m.memory_type for m in db.memory.list(ann)] == ["skill"]
    assert [m.memory_type for m in db.memory.history(ann, "rust")] == ["fact"]


def test_versions_are_per_user_and_project(
    db: mangostore.Database, ann: str, bob: str, clock: ManualClock
) -> None:
    site = db.projects.create(user_id=ann, name="site", path="/srv/site").id
    db.memory.remember(ann, "test_command", "make test")
    db.memory.remember(ann, "test_command", "npm test", project_id=site)
    db.memory.remember(bob, "test_command", "pytest")
    clock.advance(10)
    db.memory.remember(ann, "test_command", "npm run test", project_id=site)

    assert db.memory.history(ann, "test_command") == []
    assert [m.value_data for m in db.memory.history(ann, "test_command", project_id=site)] == [
        "npm test"
    ]
    assert [m.value_data for m in db.memory.list(ann)] == ["make test", "npm run test"]
    assert [m.value_data for m in db.memory.list(bob)] == ["pytest"]


def test_remember_stores_every_argument(db: mangostore.Database, ann: str) -> None:
    site = db.projects.create(user_id=ann, name="site", path="/srv/site").id
    chat = db.conversations.create(ann).id
    memory = db.memory.remember(
        ann,
        "deploy",
        {"steps": ["build", "ship"]},
        memory_type="skill",
        confidence=0.75,
        ttl=dt.timedelta(hours=2),
        project_id=site,
        conversation_id=chat,
        source="observation",
    )

    stored = db.ai_memory.get(memory.id)
    assert stored == memory
    assert stored.value_data == {"steps": ["build", "ship"]}
    assert (stored.memory_type, stored.confidence_score, stored.source) == (
        "skill",
        0.75,
        "observation",
    )
    assert stored.expires_at == stored.created_at + 2 * HOUR_MS
    assert (stored.project_id, stored.conversation_id) == (site, chat)
    assert stored.access_count == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"key": ""}, "key", id="empty-key"),
        pytest.param({"key": "   "}, "key", id="blank-key"),
        pytest.param({"key": 7}, "key", id="int-key"),
        pytest.param({"key": "k" * 513}, "key", id="long-key"),
        pytest.param({"memory_type": "opinion"}, "memory_type", id="type"),
        pytest.param({"source": "rumour"}, "source", id="source"),
        pytest.param({"confidence": 1.5}, "confidence", id="confidence-high"),
        pytest.param({"confidence": -0.1}, "confidence", id="confidence-low"),
        pytest.param({"confidence": float("nan")}, "confidence", id="confidence-nan"),
        pytest.param({"confidence": True}, "confidence", id="confidence-bool"),
        pytest.param({"ttl": 0}, "ttl", id="ttl-zero"),
        pytest.param({"ttl": -5}, "ttl", id="ttl-negative"),
        pytest.param({"ttl": 1.5}, "ttl", id="ttl-float"),
        pytest.param({"ttl": dt.timedelta(0)}, "ttl", id="ttl-timedelta-zero"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    db: mangostore.Database, ann: str, kwargs: dict[str, Any], field: str
) -> None:
    args = {"key": "k", "value": "v", **kwargs}
    with pytest.raises(InvalidValueError) as caught:
        db.memory.remember(ann, args.pop("key"), args.pop("value"), **args)
    assert caught.value.field == field
    assert db.ai_memory.count() == 0


def test_values_are_validated_by_the_repository(clock: ManualClock) -> None:
    settings = mangostore.Settings(json_max_bytes=64)
    with mangostore.open(":memory:", encrypted=False, settings=settings, clock=clock) as db:
        user = db.users.create(username="ann").id
        with pytest.raises(JSONValueError):
            db.memory.remember(user, "k", {1, 2})
        with pytest.raises(JSONValueError):
            db.memory.remember(user, "k", "x" * 100)
        with pytest.raises(ForeignKeyError):
            db.memory.remember("no-such-user", "k", "v")
        with pytest.raises(ForeignKeyError):
            db.memory.remember(user, "k", "v", project_id="no-such-project")
        assert db.ai_memory.count() == 0


def test_a_failed_remember_keeps_the_current_version(db: mangostore.Database, ann: str) -> None:
    db.memory.remember(ann, "k", "old")
    with pytest.raises(ForeignKeyError):
        db.memory.remember(ann, "k", "new", conversation_id="missing")

    assert [r.value for r in db.memory.recall(ann, "k")] == ["old"]
    assert db.memory.history(ann, "k") == []


# -- recall by key --------------------------------------------------------------------------------


def test_recall_by_key_prefers_the_project_memory(
    db: mangostore.Database, ann: str, bob: str
) -> None:
    site = db.projects.create(user_id=ann, name="site", path="/srv/site").id
    api = db.projects.create(user_id=ann, name="api", path="/srv/api").id
    db.memory.remember(ann, "shell", "bash")
    db.memory.remember(ann, "shell", "zsh", project_id=site)
    db.memory.remember(ann, "shell", "fish", project_id=api)
    db.memory.remember(bob, "shell", "tcsh")

    in_site = db.memory.recall(ann, "shell", project_id=site)
    assert [r.value for r in in_site] == ["zsh", "bash"]
    assert [r.scope for r in in_site] == [1.0, 0.8]
    assert {r.value for r in db.memory.recall(ann, "shell")} == {"bash", "zsh", "fish"}
    assert db.memory.recall(ann, "Shell") == []
    assert [r.value for r in db.memory.recall(bob, "shell")] == ["tcsh"]


def test_recall_by_key_ranks_by_confidence(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    site = db.projects.create(user_id=ann, name="site", path="/srv/site").id
    db.memory.remember(ann, "lang", "python", confidence=0.9)
    db.memory.remember(ann, "lang", "go", project_id=site, confidence=0.5)

    assert [r.value for r in db.memory.recall(ann, "lang")] == ["python", "go"]


def test_recall_filters_by_memory_type(db: mangostore.Database, ann: str) -> None:
    site = db.projects.create(user_id=ann, name="site", path="/srv/site").id
    db.memory.remember(ann, "x", 1, memory_type="fact")
    db.memory.remember(ann, "x", 2, memory_type="context", project_id=site)

    assert [r.value for r in db.memory.recall(ann, "x", memory_type="context")] == [2]
    assert [r.value for r in db.memory.recall(ann, query="x", memory_type="fact")] == [1]


def test_recall_counts_access_in_one_update(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    for n in range(3):
        db.memory.remember(ann, f"alias_{n}", f"git alias number {n}")
    clock.advance(1_234)
    statements: list[str] = []
    db.store.writer.connection.set_trace_callback(statements.append)
    try:
        results = db.memory.recall(ann, query="git alias", k=3)
    finally:
        db.store.writer.connection.set_trace_callback(None)

    assert len(results) == 3
    assert sum(s.lstrip().upper().startswith("UPDATE") for s in statements) == 1
    for result in results:
        assert result.memory.access_count == 1
        assert result.memory.last_accessed == clock.now_ms()
        stored = db.ai_memory.get(result.memory.id)
        assert (stored.access_count, stored.last_accessed) == (1, clock.now_ms())
    db.memory.recall(ann, "alias_0")
    assert db.ai_memory.first(key_name="alias_0").access_count == 2  # type: ignore[union-attr]
    db.memory.list(ann)
    db.memory.history(ann, "alias_0")
    assert db.ai_memory.first(key_name="alias_0").access_count == 2  # type: ignore[union-attr]


def test_recall_takes_a_key_or_a_query(db: mangostore.Database, ann: str) -> None:
    with pytest.raises(InvalidValueError):
        db.memory.recall(ann)
    with pytest.raises(InvalidValueError):
        db.memory.recall(ann, "k", query="q")
    for k in (0, -1, 1001, True, 2.0):
        with pytest.raises(InvalidValueError):
            db.memory.recall(ann, "k", k=k)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError):
        db.memory.recall(ann, "k", memory_type="opinion")


# -- recall by query and its ranking --------------------------------------------------------------


def test_recall_by_query_ranks_by_relevance(db: mangostore.Database, ann: str) -> None:
    db.memory.remember(ann, "preferred_shell", "zsh with oh-my-zsh")
    db.memory.remember(ann, "editor", "neovim, configured in lua")
    db.memory.remember(ann, "terminal_theme", "a dark theme; the shell prompt is minimal")
    db.memory.remember(ann, "favourite_food", "mango")

    results = db.memory.recall(ann, query="which shell?")
    # The word in the key counts more than the same word in the value.
    assert keys(results) == ["preferred_shell", "terminal_theme"]
    assert results[0].relevance == 1.0
    assert 0 < results[1].relevance < 1
    assert results[0].score > results[1].score
    assert keys(db.memory.recall(ann, query="MANGO")) == ["favourite_food"]
    assert keys(db.memory.recall(ann, query="configuring")) == ["editor"]  # stemmed
    assert db.memory.recall(ann, query="python") == []


def test_query_finds_words_inside_json_values(db: mangostore.Database, ann: str) -> None:
    db.memory.remember(ann, "tools", {"formatter": "black", "lines": ["first\nsecond", 88]})

    for query in ("formatter", "black", "second", "88"):
        assert keys(db.memory.recall(ann, query=query)) == ["tools"], query


def test_ranking_combines_confidence_and_recency(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    db.memory.remember(ann, "old_fact", "deploy target is staging")
    clock.advance(60 * DAY_MS)
    db.memory.remember(ann, "new_fact", "deploy target is production")
    db.memory.remember(ann, "unsure_fact", "deploy target is canary", confidence=0.5)

    results = db.memory.recall(ann, query="deploy target")
    assert keys(results) == ["new_fact", "old_fact", "unsure_fact"]
    by_key = {r.key: r for r in results}
    # Two half-lives: the decaying half of recency is down to a quarter.
    assert by_key["old_fact"].recency == pytest.approx(0.5 + 0.5 * 0.25)
    assert by_key["new_fact"].recency == 1.0
    assert by_key["unsure_fact"].confidence == 0.5
    for r in results:
        assert r.score == pytest.approx(r.relevance * r.confidence * r.recency * r.scope)


def test_recall_refreshes_recency(db: mangostore.Database, ann: str, clock: ManualClock) -> None:
    db.memory.remember(ann, "a", "same words here")
    db.memory.remember(ann, "b", "same words here")
    clock.advance(30 * DAY_MS)
    db.memory.recall(ann, "b")  # a use: b is fresh again
    clock.advance(1)

    results = db.memory.recall(ann, query="same words")
    assert keys(results) == ["b", "a"]
    assert results[1].recency == pytest.approx(0.75, rel=1e-6)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(MemoryPolicy(), ["old", "new"], id="default"),
        pytest.param(
            MemoryPolicy(half_life_ms=HOUR_MS, recency_floor=0.0), ["new", "old"], id="fast-decay"
        ),
    ],
)
def test_policy_changes_the_ranking(
    db: mangostore.Database, ann: str, clock: ManualClock, policy: MemoryPolicy, expected: list[str]
) -> None:
    db.memory.policy = policy
    db.memory.remember(ann, "old", "word")
    clock.advance(DAY_MS)
    db.memory.remember(ann, "new", "word", confidence=0.9)

    assert keys(db.memory.recall(ann, query="word")) == expected


def test_k_limits_the_results(db: mangostore.Database, ann: str) -> None:
    for n in range(5):
        db.memory.remember(ann, f"note_{n}", "common")

    assert len(db.memory.recall(ann, query="common", k=2)) == 2
    assert len(db.memory.recall(ann, query="common")) == 5


def test_a_query_never_returns_another_users_memories(
    db: mangostore.Database, ann: str, bob: str
) -> None:
    db.memory.remember(ann, "secret", "ann's launch codes")
    db.memory.remember(bob, "note", "bob's launch plan")

    assert keys(db.memory.recall(bob, query="launch codes")) == ["note"]


# A lone surrogate is not text: it is refused (tests/regressions/test_lone_surrogate_*).
HOSTILE = [
    '"',
    '""',
    '"unterminated',
    "'; DROP TABLE ai_memory; --",
    "shell*",
    "*",
    "NEAR(shell zsh, 2)",
    "shell AND OR NOT",
    "AND",
    "OR OR OR",
    "NOT shell",
    "key_name:shell",
    "value_text : zsh",
    "{key_name value_text}: shell",
    "^shell",
    "-shell",
    "+",
    "(shell",
    "shell)",
    "shell\x00zsh",
    "💥 shell 💥",
    "rank MATCH 'x'",
    "ai_memory_fts",
    "a" * 10_000,
    " ".join(["shell"] * 500),
    "\\",
    "%_%",
    "",
    "   \t\n",
]


@pytest.fixture(scope="module")
def remembered() -> Iterator[tuple[mangostore.Database, str]]:
    """A database where ann remembers two things, shared by the hostile searches (each
    checks that it wrote nothing)."""
    with mangostore.open(":memory:", encrypted=False, clock=ManualClock()) as db:
        ann = db.users.create(username="ann").id
        db.memory.remember(ann, "preferred_shell", "zsh")
        db.memory.remember(ann, "other", "nothing to see")
        yield db, ann


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_query_strings_are_searched_literally(
    remembered: tuple[mangostore.Database, str], query: str
) -> None:
    db, ann = remembered
    before = db.query("SELECT name, sql FROM sqlite_master ORDER BY name")

    results = db.memory.recall(ann, query=query)

    assert set(keys(results)) <= {"preferred_shell"}
    assert db.query("SELECT name, sql FROM sqlite_master ORDER BY name") == before
    assert db.ai_memory.count() == 2


def test_fts_query_quotes_every_word() -> None:
    # "or" and "a" are stopwords: left out while other words remain.
    assert fts_query('shell" OR "x') == '"shell" OR "x"'
    assert fts_query("NEAR(a b)") == '"near" OR "b"'
    assert fts_query("col:val^2 -z") == '"col" OR "val" OR "2" OR "z"'
    assert fts_query("**") is None
    assert fts_query("a a a") == '"a"'
    with pytest.raises(InvalidValueError):
        fts_query(b"bytes")  # type: ignore[arg-type]


def test_key_matches_weigh_more() -> None:
    assert KEY_WEIGHT > 1


# -- expiry and forgetting, with the manual clock -------------------------------------------------


def test_an_expired_memory_is_hidden_at_once_and_purged_after_the_grace_period(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    short = db.memory.remember(ann, "standup", "at ten", ttl=HOUR_MS)
    db.memory.remember(ann, "lasting", "at ten too")
    assert keys(db.memory.recall(ann, query="ten")) == ["standup", "lasting"]

    clock.advance(HOUR_MS)  # expires_at == now: expired
    assert keys(db.memory.recall(ann, query="ten")) == ["lasting"]
    assert db.memory.recall(ann, "standup") == []
    assert [m.key_name for m in db.memory.list(ann)] == ["lasting"]
    assert db.memory.sweep() == MemorySweep(expired=0, forgotten=0)  # within the grace period
    assert db.ai_memory.exists(short.id)

    clock.advance(7 * DAY_MS - 1)
    assert db.memory.sweep() == MemorySweep()
    clock.advance(1)
    assert db.memory.sweep() == MemorySweep(expired=1, forgotten=0)
    assert not db.ai_memory.exists(short.id)
    assert fts_matches(db, "standup") == 0
    assert rows(db, "SELECT count(*) FROM ai_memory_state WHERE memory_id = ?", (short.id,)) == [
        (0,)
    ]


def test_expired_versions_leave_history(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    db.memory.remember(ann, "branch", "main", ttl=HOUR_MS)
    db.memory.remember(ann, "branch", "develop")
    assert [m.value_data for m in db.memory.history(ann, "branch")] == ["main"]

    clock.advance(HOUR_MS)
    assert db.memory.history(ann, "branch") == []
    assert [r.value for r in db.memory.recall(ann, "branch")] == ["develop"]


def test_remembering_after_expiry_starts_a_new_current_version(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    old = db.memory.remember(ann, "focus", "tests", ttl=HOUR_MS)
    clock.advance(2 * HOUR_MS)
    new = db.memory.remember(ann, "focus", "tests")

    assert new.id != old.id
    assert [r.memory.id for r in db.memory.recall(ann, "focus")] == [new.id]


def test_sweep_takes_the_time_and_the_grace_period_from_the_policy(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    memory = db.memory.remember(ann, "k", "v", ttl=1)
    db.memory.policy = MemoryPolicy(purge_grace_ms=0)
    assert db.memory.sweep(now=clock.now_ms()) == MemorySweep()
    assert db.memory.sweep(now=clock.now_ms() + 1) == MemorySweep(expired=1)
    assert not db.ai_memory.exists(memory.id)


def test_forget_by_key_hides_every_version_then_purges(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    db.memory.remember(ann, "address", "1 Old Road")
    db.memory.remember(ann, "address", "2 New Street")
    db.memory.remember(ann, "city", "Lisbon")

    assert db.memory.forget(ann, "address") == 2
    assert db.memory.recall(ann, "address") == []
    assert db.memory.history(ann, "address") == []
    assert keys(db.memory.recall(ann, query="street road lisbon")) == ["city"]
    assert db.memory.forget(ann, "address") == 0  # already forgotten
    assert db.ai_memory.count() == 3

    clock.advance(7 * DAY_MS)
    assert db.memory.sweep() == MemorySweep(expired=0, forgotten=2)
    assert db.ai_memory.count() == 1
    assert fts_matches(db, "street") == 0
    assert fts_matches(db, "road") == 0


def test_forget_by_id_forgets_one_version_only(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    db.memory.remember(ann, "shell", "bash")
    clock.advance(1)
    middle = db.memory.remember(ann, "shell", "zsh")
    clock.advance(1)
    current = db.memory.remember(ann, "shell", "fish")

    assert db.memory.forget(ann, id=middle.id) == 1
    assert [m.value_data for m in db.memory.history(ann, "shell")] == ["bash"]
    assert db.memory.forget(ann, id=current.id) == 1
    # Forgetting the current value does not bring an older one back.
    assert db.memory.recall(ann, "shell") == []
    assert [m.value_data for m in db.memory.history(ann, "shell")] == ["bash"]


def test_forget_with_purge_deletes_at_once(db: mangostore.Database, ann: str) -> None:
    db.memory.remember(ann, "token", "hunter2")
    db.memory.remember(ann, "token", "correct-horse")

    assert db.memory.forget(ann, "token", purge=True) == 2
    assert db.ai_memory.count() == 0
    assert fts_rows(db) == 0
    assert fts_matches(db, "hunter2") == 0


def test_forget_checks_its_arguments(db: mangostore.Database, ann: str, bob: str) -> None:
    memory = db.memory.remember(ann, "k", "v")
    with pytest.raises(InvalidValueError):
        db.memory.forget(ann)
    with pytest.raises(InvalidValueError):
        db.memory.forget(ann, "k", id=memory.id)
    with pytest.raises(NotFoundError):
        db.memory.forget(bob, id=memory.id)  # not bob's
    with pytest.raises(NotFoundError):
        db.memory.forget(ann, id="missing")
    assert db.memory.forget(ann, "missing-key") == 0
    assert [r.value for r in db.memory.recall(ann, "k")] == ["v"]


# -- the full-text index stays in step ------------------------------------------------------------


def test_index_follows_repository_writes(db: mangostore.Database, ann: str) -> None:
    memory = db.ai_memory.create(
        user_id=ann, memory_type="fact", key_name="colour", value_data="turquoise"
    )
    assert keys(db.memory.recall(ann, query="turquoise")) == ["colour"]

    db.ai_memory.update(memory.id, value_data={"shade": "crimson"}, key_name="hue")
    assert db.memory.recall(ann, query="turquoise") == []
    assert keys(db.memory.recall(ann, query="crimson shade")) == ["hue"]
    assert db.memory.recall(ann, query="colour") == []

    db.ai_memory.update(memory.id, confidence_score=0.5)  # not indexed: index unchanged
    assert fts_rows(db) == 1

    db.ai_memory.delete(memory.id)
    assert fts_rows(db) == 0
    assert rows(db, "SELECT count(*) FROM ai_memory_state") == [(0,)]


def test_deleting_a_users_rows_with_raw_sql_erases_their_index_entries(
    db: mangostore.Database, ann: str, bob: str
) -> None:
    """What an erasure of the user does: delete the rows, and nothing of them is left."""
    for n in range(20):
        db.memory.remember(ann, f"private_{n}", f"ann secret number {n} zanzibar")
    db.memory.remember(bob, "public", "bob zanzibar")
    db.memory.forget(ann, "private_3")

    with db.transaction():
        db.execute("DELETE FROM ai_memory WHERE user_id = ?", (ann,))
        db.users.delete(ann)

    assert fts_rows(db) == 1
    assert fts_matches(db, "secret") == 0
    assert fts_matches(db, "zanzibar") == 1
    assert rows(db, "SELECT count(*) FROM ai_memory_state") == [(1,)]
    assert keys(db.memory.recall(bob, query="zanzibar")) == ["public"]


def test_deleting_a_newer_version_keeps_the_older_one_history(
    db: mangostore.Database, ann: str
) -> None:
    db.memory.remember(ann, "k", "one")
    newer = db.memory.remember(ann, "k", "two")

    db.ai_memory.delete(newer.id)

    assert [m.value_data for m in db.memory.history(ann, "k")] == ["one"]
    assert rows(db, "SELECT superseded_by FROM ai_memory_state") == [(None,)]


def test_index_secure_delete_is_on(db: mangostore.Database) -> None:
    assert rows(db, "SELECT v FROM ai_memory_fts_config WHERE k = 'secure-delete'") == [(1,)]


def test_purged_words_leave_the_index_at_once(db: mangostore.Database, ann: str) -> None:
    def index_bytes() -> bytes:
        blocks = db.query("SELECT block FROM ai_memory_fts_data WHERE block IS NOT NULL")
        return b"".join(bytes(r[0]) for r in blocks)

    for n in range(50):
        db.memory.remember(ann, f"k{n}", f"filler words number {n}")
    db.memory.remember(ann, "secret", "xylophonezebra")
    assert b"xylophonezebra" in index_bytes()

    db.memory.forget(ann, "secret", purge=True)
    assert b"xylophone" not in index_bytes()


def test_migration_indexes_existing_memories_and_reverts(clock: ManualClock) -> None:
    with mangostore.open(":memory:", encrypted=False, clock=clock, migrate=False) as db:
        db.migrate(to=9)
        user = db.users.create(username="ann").id
        old = db.ai_memory.create(
            user_id=user, memory_type="fact", key_name="legacy", value_data={"tool": "make"}
        )
        db.migrate()

        assert rows(db, "SELECT memory_id FROM ai_memory_state") == [(old.id,)]
        assert keys(db.memory.recall(user, query="make")) == ["legacy"]

        db.migrate(to=9)
        tables = {r[0] for r in db.query("SELECT name FROM sqlite_master")}
        assert not {"ai_memory_state", "ai_memory_fts", "ai_messages"} & tables
        assert db.ai_memory.get(old.id).value_data == {"tool": "make"}


# -- list and policy ------------------------------------------------------------------------------


def test_list_filters_and_limits(db: mangostore.Database, ann: str) -> None:
    site = db.projects.create(user_id=ann, name="site", path="/srv/site").id
    api = db.projects.create(user_id=ann, name="api", path="/srv/api").id
    db.memory.remember(ann, "b", 1, memory_type="skill")
    db.memory.remember(ann, "a", 2, project_id=site)
    db.memory.remember(ann, "a", 3)
    db.memory.remember(ann, "c", 4, project_id=api)

    assert [m.value_data for m in db.memory.list(ann)] == [3, 2, 1, 4]
    assert [m.value_data for m in db.memory.list(ann, project_id=site)] == [3, 2, 1]
    assert [m.value_data for m in db.memory.list(ann, memory_type="skill")] == [1]
    assert [m.value_data for m in db.memory.list(ann, limit=2)] == [3, 2]
    with pytest.raises(InvalidValueError):
        db.memory.list(ann, limit=0)
    with pytest.raises(InvalidValueError):
        db.memory.list(ann, memory_type="nope")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"half_life_ms": 0},
        {"half_life_ms": 1.5},
        {"recency_floor": 1.5},
        {"global_weight": -0.1},
        {"purge_grace_ms": -1},
        {"candidates": 0},
        {"recency_floor": True},
    ],
)
def test_policy_refuses_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidValueError):
        MemoryPolicy(**kwargs)
