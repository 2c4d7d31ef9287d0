"""Applying many rows at once gives what applying them one by one gives.

A pull adopts consecutive new rows of one table with one statement per step, checks
the references of only those rows when nothing else was written, and applies the
batches of a page in one transaction (a savepoint each). Each test makes two devices
pull the same batches, one of them with runs of new rows turned off (every row merged
one by one), and compares what they hold; or checks that a batch that fails leaves
the ones before it applied.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from tests.sync.test_convergence import logical_content
from tests.sync_helpers import Devices, sync_all

import mangostore
from mangostore.errors import DatabaseError, DiskFullError, TamperedDataError
from mangostore.sync import Batch, MemoryRelay, Pulled, applying, merge
from mangostore.sync.writes import SchemaCache

ONE_BY_ONE = 10**9


def bookkeeping(db: mangostore.Database) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every row's life and relay position, and every cell, with devices by id (site
    numbers are local)."""
    with db.store.reading() as conn:
        rows = conn.execute(
            "SELECT r.tbl, r.pk, r.life, s.device_id, r.dead, r.pos FROM sync_rows AS r "
            "JOIN sync_sites AS s ON s.site = r.life_site ORDER BY r.tbl, r.pk"
        ).fetchall()
        cells = conn.execute(
            "SELECT c.tbl, c.pk, c.col, c.hlc, s.device_id, c.prev FROM sync_cells AS c "
            "JOIN sync_sites AS s ON s.site = c.site ORDER BY c.tbl, c.pk, c.col"
        ).fetchall()
    return [tuple(r) for r in rows], [tuple(r) for r in cells]


def conflicts(db: mangostore.Database) -> list[tuple[Any, ...]]:
    return sorted((c.kind, c.table, c.row_id, c.column) for c in db.sync.conflicts())


def pull_both_ways(
    monkeypatch: pytest.MonkeyPatch, runs: mangostore.Database, one_by_one: mangostore.Database
) -> None:
    """``runs`` pulls as it does; ``one_by_one`` pulls with every row merged alone."""
    runs.sync.pull()
    with monkeypatch.context() as patch:
        patch.setattr(merge, "_RUN_MIN", ONE_BY_ONE)
        one_by_one.sync.pull()


def test_new_rows_adopted_in_runs_match_those_adopted_one_by_one(
    devices: Devices, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = devices(3)
    user = a.users.create(username="ann", preferences={"theme": "dark"})
    projects = [
        a.projects.create(
            user_id=user.id, name=f"p{n}", path=f"/src/p{n}", metadata={"n": n, "tag": "x"}
        )
        for n in range(12)
    ]
    for n, project in enumerate(projects[:6]):
        a.projects.update(project.id, metadata={"n": n, "tag": "y"}, status="archived")
    for n in range(30):
        a.command_history.create(
            user_id=user.id, project_id=projects[n % 12].id, command=f"make {n}", timestamp=n
        )
    a.users.update(user.id, preferences={"theme": "light", "lang": "en"})
    a.sync.push()
    pull_both_ways(monkeypatch, b, c)
    assert logical_content(b) == logical_content(c) == logical_content(a)
    assert bookkeeping(b) == bookkeeping(c)
    assert b.command_history.count() == 30
    assert b.projects.get(projects[0].id).metadata == {"n": 0, "tag": "y"}


def test_a_run_of_new_commands_is_written_a_statement_for_many_rows(devices: Devices) -> None:
    """Each execution of a statement whose triggers feed a full-text table flushes the
    table's pending terms: the rows of a run go in statements of many rows, and the
    index they feed finds every one of them."""
    a, b = devices(2)
    user = a.users.create(username="ann")
    sync_all([a, b])
    a.command_history.create_many(
        [
            {"user_id": user.id, "command": f"deploy service-{n} --fast", "timestamp": n}
            for n in range(300)
        ]
    )
    a.sync.push()
    seen: list[str] = []
    conn = b.store.writer.connection
    conn.set_trace_callback(seen.append)
    try:
        _, counts = b.sync.pull()
    finally:
        conn.set_trace_callback(None)
    assert counts.applied == 300
    inserts = [s for s in seen if s.lstrip().upper().startswith('INSERT INTO "COMMAND_HISTORY"')]
    # The trace repeats a statement's text at each of its triggers' runs: count texts.
    # executemany ran one statement, with its own values, a row.
    assert 0 < len(set(inserts)) <= 300 // 16
    assert len(b.command_history.search(user.id, "service-12", limit=None)) == 11
    assert [c.command for c in b.command_history.search(user.id, "service-299 ")] == [
        "deploy service-299 --fast"
    ]
    with b.store.reading() as read:
        read.execute(
            "INSERT INTO command_history_fts (command_history_fts) VALUES ('integrity-check')"
        )
    assert logical_content(a) == logical_content(b)


def test_a_unique_key_clash_inside_a_run_is_settled_as_one_by_one(devices: Devices) -> None:
    a, b = devices(2)
    user = a.users.create(username="ann")
    sync_all([a, b])
    made = [a.projects.create(user_id=user.id, name=f"p{n}", path=f"/src/p{n}") for n in range(10)]
    # Made later on b with a path one of a's rows holds: a's row keeps the path, b's
    # is folded into it, and b's command follows it there.
    mine = b.projects.create(user_id=user.id, name="mine", path="/src/p4")
    command = b.command_history.create(user_id=user.id, project_id=mine.id, command="ls")
    a.sync.push()
    _, counts = b.sync.pull()
    assert counts.applied == 10
    held = b.query("SELECT id FROM projects WHERE path = '/src/p4'")
    assert [r[0] for r in held] == [made[4].id]
    assert b.command_history.get(command.id).project_id == made[4].id
    assert [(k, t) for k, t, _, _ in conflicts(b)] == [("unique", "projects")]
    sync_all([a, b])
    assert logical_content(a) == logical_content(b)


def test_new_rows_whose_parent_was_deleted_here_are_settled_as_one_by_one(
    devices: Devices, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = devices(3)
    user = a.users.create(username="ann")
    project = a.projects.create(user_id=user.id, name="p", path="/src/p")
    session = a.terminal_sessions.create(user_id=user.id, project_id=project.id)
    chat = "0192f000-0000-7000-8000-000000000001"
    a.execute(
        "INSERT INTO ai_conversations (id, user_id, created_at) VALUES (?, ?, 1)", (chat, user.id)
    )
    sync_all([a, b, c])
    for db in (b, c):  # deleted on both, before a's rows that need them arrive
        db.terminal_sessions.delete(session.id)
        db.projects.delete(project.id)
        db.execute("DELETE FROM ai_conversations WHERE id = ?", (chat,))
    for n in range(8):
        a.command_history.create(
            user_id=user.id, project_id=project.id, terminal_session_id=session.id, command=f"c{n}"
        )
        a.execute(
            "INSERT INTO ai_messages (id, conversation_id, user_id, seq, role, content, "
            "created_at) VALUES (?, ?, ?, ?, 'user', x'00', 1)",
            (f"0192f000-0000-7000-8000-00000000010{n}", chat, user.id, n + 1),
        )
    a.sync.push()
    pull_both_ways(monkeypatch, b, c)
    assert logical_content(b) == logical_content(c)
    assert b.command_history.count() == 8  # their references to rows gone are cleared
    assert [k for k, t, _, _ in conflicts(b) if t == "ai_messages"] == ["orphan"] * 8
    assert conflicts(b) == conflicts(c)
    broken = b.query("PRAGMA foreign_key_check", use_cache=False)
    assert broken == []


class TamperingOne:
    """A relay that serves the batch at ``cursor`` with a bit of its body flipped."""

    def __init__(self, relay: MemoryRelay, cursor: int) -> None:
        self.relay = relay
        self.cursor = cursor

    def push(self, batch: Batch) -> int:
        return self.relay.push(batch)

    def pull(self, vault_id: str, after: int, limit: int) -> list[Pulled]:
        page = self.relay.pull(vault_id, after, limit)
        # The last bit of the tag is flipped: replacing the last byte with a fixed one
        # changed nothing when the tag already ended with it (one run in 256).
        return [
            dataclasses.replace(
                p,
                batch=dataclasses.replace(
                    p.batch, body=p.batch.body[:-1] + bytes([p.batch.body[-1] ^ 1])
                ),
            )
            if p.cursor == self.cursor
            else p
            for p in page
        ]


def _rounds(a: mangostore.Database, rounds: int) -> str:
    """Push ``rounds`` batches from ``a``, three commands each; return the user."""
    user = a.users.create(username="ann").id
    for r in range(rounds):
        for n in range(3):
            a.command_history.create(user_id=user, command=f"r{r} c{n}")
        a.sync.push()
    return user


def test_a_tampered_batch_inside_a_page_leaves_the_batches_before_it_applied(
    devices: Devices, relay: MemoryRelay
) -> None:
    a, b = devices(2)
    _rounds(a, 4)  # batches 1 to 4 on the relay (after b's first pull: none)
    b.sync.connect(TamperingOne(relay, 3))
    with pytest.raises(TamperedDataError):
        b.sync.pull()
    status = b.sync.status()
    assert status.cursor == 2
    assert "failed authentication" in (status.last_error or "")
    commands = b.query("SELECT command FROM command_history ORDER BY command")
    assert [r[0] for r in commands] == [f"r{r} c{n}" for r in range(2) for n in range(3)]


def test_a_merge_that_fails_inside_a_page_leaves_the_batches_before_it_applied(
    devices: Devices, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = devices(2)
    _rounds(a, 4)
    settle = applying.fix_references
    calls = 0

    def failing_third(merger: Any, states: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise DatabaseError("sync could not settle the references of the rows it merged")
        settle(merger, states)

    monkeypatch.setattr(applying, "fix_references", failing_third)
    with pytest.raises(DatabaseError):
        b.sync.pull()
    assert b.sync.status().cursor == 2
    assert b.command_history.count() == 6
    monkeypatch.setattr(applying, "fix_references", settle)
    b.sync.pull()
    assert logical_content(a) == logical_content(b)


def test_tables_whose_new_rows_can_break_only_their_own_references(
    memory_db: mangostore.Database,
) -> None:
    inserting, updating = frozenset({"INSERT"}), frozenset({"UPDATE"})
    with memory_db.store.transaction() as conn:
        schema = SchemaCache()
        assert schema.quiet(conn, "projects", inserting | updating)
        assert schema.quiet(conn, "command_history", inserting)
        # Changing a command's recording deletes the file it had, which others use.
        assert not schema.quiet(conn, "command_history", updating)
        conn.execute(
            "CREATE TRIGGER drop_project AFTER INSERT ON terminal_sessions BEGIN "
            "DELETE FROM projects WHERE id = NEW.project_id; END"
        )
        conn.execute(
            'CREATE TRIGGER "insert on" AFTER DELETE ON notifications BEGIN '
            "INSERT INTO no_such_table VALUES (1); END"
        )
        schema = SchemaCache()
        assert not schema.quiet(conn, "terminal_sessions", inserting)
        assert schema.quiet(conn, "terminal_sessions", updating)
        assert schema.quiet(conn, "notifications", inserting | updating)
        assert not schema.quiet(conn, "notifications", frozenset({"DELETE"}))
        conn.execute("DROP TRIGGER drop_project")
        conn.execute('DROP TRIGGER "insert on"')


def test_a_run_whose_transaction_sqlite_ended_writes_nothing_outside_it(
    devices: Devices, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = devices(2)
    user = a.users.create(username="ann")
    sync_all([a, b])
    made = [a.command_history.create(user_id=user.id, command=f"c{n}") for n in range(6)]
    a.sync.push()
    cursor = b.sync.status().cursor

    def ended(merger: Any, spec: Any, rows: Any) -> None:
        merger.conn.execute("ROLLBACK")  # as SQLite does on a full disk or an I/O error
        raise DiskFullError("the disk is full")

    with monkeypatch.context() as patch:
        patch.setattr(merge, "write_rows", ended)
        with pytest.raises(DatabaseError):  # the writer says the transaction was ended
            b.sync.pull()
    assert b.sync.status().cursor == cursor
    assert b.query("SELECT count(*) AS n FROM sync_rows WHERE tbl = 'command_history'")[0]["n"] == 0
    b.sync.pull()  # nothing was half-kept: every row arrives
    assert sorted(c.id for c in b.command_history.list()) == sorted(c.id for c in made)
