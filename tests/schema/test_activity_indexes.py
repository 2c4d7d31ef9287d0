"""The queries the library runs on the tables a person's activity grows read an index.

Each case calls the library as an application would, then reads the plans of the
statements it ran (``db.performance_report()``): the statement reaches its rows
through the index migration 15 made for it, and neither sorts them in a temporary
B-tree for its ORDER BY nor scans the table (statistics group a few rows per week in
one). Checked with and without planner statistics (``ANALYZE``),
which change how SQLite weighs indexes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import mangostore

#: (index, table, columns): what migration 15 adds.
ACTIVITY_INDEXES = {
    "idx_command_history_user_time": ("command_history", ("user_id", "timestamp", "id")),
    "idx_command_history_user_project_time": (
        "command_history",
        ("user_id", "project_id", "timestamp", "id"),
    ),
    "idx_notifications_user_created": ("notifications", ("user_id", "created_at", "id")),
    "idx_notifications_user_status_created": (
        "notifications",
        ("user_id", "status", "created_at", "id"),
    ),
    "idx_terminal_sessions_user_status_activity": (
        "terminal_sessions",
        ("user_id", "status", "last_activity"),
    ),
    "idx_ai_conversations_user_last_message": (
        "ai_conversations",
        ("user_id", "last_message_at"),
    ),
    "idx_security_events_user_seq": ("security_events", ("user_id", "seq")),
    "idx_security_events_component_seq": ("security_events", ("source_component", "seq")),
    "idx_kg_observations_entity_type": ("kg_observations", ("entity_id", "observation_type")),
    "idx_kg_observations_user_created": ("kg_observations", ("user_id", "created_at")),
    "idx_command_history_weekly_key": (
        "command_history_weekly",
        ("user_id", "week", "command_type", "exit_code"),
    ),
}


@dataclass(frozen=True)
class Seeded:
    db: mangostore.Database
    ann: str
    project: str
    entity: str


@pytest.fixture(params=["no statistics", "ANALYZE"])
def seeded(request: pytest.FixtureRequest) -> Iterator[Seeded]:
    """A database with some activity of two people; planner statistics or none."""
    with mangostore.open(":memory:", encrypted=False) as db:
        ann = db.users.create(username="ann").id
        bob = db.users.create(username="bob").id
        project = db.projects.create(user_id=ann, name="site", path="/src/site").id
        kind = db.notify.register_type("build", category="project", template="{title}").id
        for n in range(60):
            owner = ann if n % 4 else bob
            db.command_history.record(
                owner, f"git status {n}", project_id=project if n % 2 else None, exit_code=n % 3
            )
            db.notifications.create(
                user_id=owner,
                notification_type_id=kind,
                title=f"build {n}",
                message="done",
                priority="normal",
                status=("read", "delivered", "dismissed")[n % 3],
            )
            db.audit.append("auth", "info", "auth.login", user_id=owner)
            db.terminal_sessions.open(owner, name=f"shell {n}")
            db.ai_conversations.create(user_id=owner, title=f"chat {n}", last_message_at=n)
        entity = db.kg.upsert_entity(ann, "project", "site").entity.id
        for n in range(20):
            db.kg.observe(entity, "fact", f"uses tool {n}")
        if request.param == "ANALYZE":
            db.execute("ANALYZE")
        yield Seeded(db, ann, project, entity)


def plans_of(db: mangostore.Database, call: Callable[[], Any]) -> list[list[str]]:
    """Run ``call`` alone and return the plans of the statements it ran."""
    monitor = db.monitor
    assert monitor is not None
    monitor.reset()
    call()
    statements = db.performance_report().query_performance.statements
    return [s.plan for s in statements if s.plan]


CASES: dict[str, tuple[str, Callable[[Seeded], Any]]] = {
    "recent commands": (
        "idx_command_history_user_time",
        lambda s: s.db.command_history.recent(s.ann, limit=20),
    ),
    "list commands newest first": (
        "idx_command_history_user_time",
        lambda s: s.db.command_history.list(user_id=s.ann, order_by="-timestamp", limit=20),
    ),
    "recent commands of a project": (
        "idx_command_history_user_project_time",
        lambda s: s.db.command_history.recent(s.ann, s.project, limit=20),
    ),
    "search the history": (
        "idx_command_history_user_time",
        lambda s: s.db.command_history.search(s.ann, "status 1"),
    ),
    "command statistics": (
        "idx_command_history_weekly_key",
        lambda s: s.db.command_history.stats(s.ann),
    ),
    "command statistics since": (
        "idx_command_history_weekly_key",
        lambda s: s.db.command_history.stats(s.ann, since=0),
    ),
    "unread notifications": (
        "idx_notifications_user_status_created",
        lambda s: s.db.notify.unread(s.ann, limit=20),
    ),
    "notification history": (
        "idx_notifications_user_created",
        lambda s: s.db.notify.history(s.ann, limit=20),
    ),
    "notification history in one status": (
        "idx_notifications_user_status_created",
        lambda s: s.db.notify.history(s.ann, status="read", limit=20),
    ),
    "open terminal sessions": (
        "idx_terminal_sessions_user_status_activity",
        lambda s: s.db.terminal_sessions.active(s.ann),
    ),
    "recent conversations": (
        "idx_ai_conversations_user_last_message",
        lambda s: s.db.ai_conversations.list(user_id=s.ann, order_by="-last_message_at", limit=20),
    ),
    "a person's audit events": (
        "idx_security_events_user_seq",
        lambda s: s.db.audit.events(user_id=s.ann, limit=50),
    ),
    "a person's security events": (
        "idx_security_events_user_seq",
        lambda s: s.db.security_events.find_by_user(s.ann),
    ),
    "an observation confirmed": (
        "idx_kg_observations_entity_type",
        lambda s: s.db.kg.observe(s.entity, "fact", "uses tool 3"),
    ),
    "a person's latest observations": (
        "idx_kg_observations_user_created",
        lambda s: s.db.kg_observations.list(user_id=s.ann, order_by="-created_at", limit=20),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_query_reads_its_index_without_sorting(seeded: Seeded, case: str) -> None:
    index, call = CASES[case]
    plans = plans_of(seeded.db, lambda: call(seeded))
    using = [plan for plan in plans if any(f"INDEX {index} " in line for line in plan)]
    assert using, (index, plans)
    for plan in using:
        assert not any("TEMP B-TREE FOR" in line and "ORDER BY" in line for line in plan), plan
    table = ACTIVITY_INDEXES[index][0]
    for plan in plans:
        assert not any(line.strip() == f"SCAN {table}" for line in plan), plan


def test_the_search_index_is_only_read_for_what_the_window_missed(seeded: Seeded) -> None:
    history = seeded.db.command_history
    history.search_window = 5
    assert any("command_history_fts" in shape for shape in shapes_of(seeded, "status 1"))
    assert not any("command_history_fts" in shape for shape in shapes_of(seeded, "git", 3))


def shapes_of(seeded: Seeded, term: str, limit: int = 50) -> list[str]:
    monitor = seeded.db.monitor
    assert monitor is not None
    monitor.reset()
    seeded.db.command_history.search(seeded.ann, term, limit=limit)
    return [s.shape for s in monitor.statements()]


@pytest.mark.parametrize("name", list(ACTIVITY_INDEXES))
def test_each_activity_index_exists_with_its_columns(name: str) -> None:
    table, columns = ACTIVITY_INDEXES[name]
    with mangostore.open(":memory:", encrypted=False) as db:
        rows = db.query(
            "SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND name = ?", [name]
        )
        assert [r[0] for r in rows] == [table]
        info = db.query("SELECT name FROM pragma_index_info(?) ORDER BY seqno", [name])
        assert tuple(r[0] for r in info) == columns
