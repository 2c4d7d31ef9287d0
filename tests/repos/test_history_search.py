"""``command_history.search`` through the trigram index returns what an ``instr`` scan does.

The scan is the reference: ``instr(command, ?) > 0`` over the person's commands, newest
first, exactly as the search was written before the index existed. Hypothesis draws
histories (ties in time, two people, text with ``%``, ``_``, ``\\``, quotes, NUL, case,
letters outside ASCII), changes and deletes some commands, and compares every way the
search can go: the newest-commands window, a phrase query, the trigrams a short term
begins, and the scan when the index cannot answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mangostore
from mangostore.errors import ConstraintError, InvalidValueError
from mangostore.privacy import RetentionPolicy

REFERENCE = (
    "SELECT id FROM command_history WHERE user_id = ? AND instr(command, ?) > 0 "
    'ORDER BY "timestamp" DESC, id DESC'
)

#: Characters that mean something to LIKE, FTS5 queries or the index, and case pairs.
CHARACTERS = list("aAbBgGiItT %_\\\"'*:-()^\x00\x01é€😀")
texts = st.text(alphabet=st.sampled_from(CHARACTERS), max_size=10)


def reference(db: mangostore.Database, user_id: str, needle: str, limit: int | None) -> list[str]:
    sql = REFERENCE + ("" if limit is None else f" LIMIT {limit}")
    return [str(r[0]) for r in db.query(sql, (user_id, needle))]


@pytest.fixture
def people(plain_db: mangostore.Database) -> tuple[str, str]:
    ann = plain_db.users.create(username="ann").id
    bob = plain_db.users.create(username="bob").id
    return ann, bob


@st.composite
def histories(draw: st.DrawFn) -> dict[str, Any]:
    commands = draw(
        st.lists(
            st.tuples(texts, st.integers(0, 4), st.booleans()),  # text, time, whose
            max_size=25,
        )
    )
    changes = draw(
        st.lists(
            st.tuples(st.integers(0, 24), st.one_of(st.none(), texts)),  # None: delete
            max_size=6,
        )
    )
    texts_seen = [c[0] for c in commands] + [c[1] for c in changes if c[1] is not None]
    pieces = [
        t[start:end]
        for t in texts_seen
        for start in range(len(t))
        for end in range(start + 1, len(t) + 1)
    ]
    needle = draw(st.one_of(texts, st.sampled_from(pieces)) if pieces else texts)
    return {
        "commands": commands,
        "changes": changes,
        "needle": needle,
        "limit": draw(st.sampled_from([None, 1, 2, 3, 50])),
        "window": draw(st.sampled_from([1, 2, 5, 20_000])),
        "prefixes": draw(st.sampled_from([0, 1, 512])),
    }


@pytest.fixture
def shared_db() -> Iterator[mangostore.Database]:
    """One database for every example of a test; each example starts by emptying it."""
    with mangostore.open(":memory:", encrypted=False) as db:
        db.users.create(username="ann")
        db.users.create(username="bob")
        yield db


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=histories())
def test_indexed_search_returns_exactly_what_an_instr_scan_returns(
    shared_db: mangostore.Database, case: dict[str, Any]
) -> None:
    db = shared_db
    db.execute("DELETE FROM command_history")
    people = tuple(str(r[0]) for r in db.query("SELECT id FROM users ORDER BY username"))
    ids = [
        db.command_history.record(people[int(whose)], text, timestamp=at).id
        for text, at, whose in case["commands"]
    ]
    live = set(ids)
    for index, text in case["changes"]:
        if index >= len(ids) or ids[index] not in live:
            continue
        if text is None:
            db.command_history.delete(ids[index])
            live.discard(ids[index])
        else:
            db.command_history.update(ids[index], command=text)
    history = db.command_history
    history.search_window = case["window"]
    history.max_prefix_trigrams = case["prefixes"]
    for person in people:
        found = history.search(person, case["needle"], limit=case["limit"], use_cache=False)
        assert [c.id for c in found] == reference(db, person, case["needle"], case["limit"])
    assert db.query("SELECT count(*) FROM command_history_fts")[0][0] == len(live)


# -- what the search promises, one case each -------------------------------------------


@pytest.fixture
def history(plain_db: mangostore.Database, people: tuple[str, str]) -> list[str]:
    ann, _ = people
    commands = [
        "git status",
        "Git Status",
        "echo 100%",
        "echo 100",
        "ls my_file",
        "ls myXfile",
        "grep 'a\\b' notes",
        "grep 'ab' notes",
        "ab",
        "printf 'a\x00b'",
    ]
    return [
        plain_db.command_history.record(ann, text, timestamp=n).command
        for n, text in enumerate(commands)
    ]


@pytest.mark.parametrize("window", [1, 20_000])
@pytest.mark.parametrize(
    ("needle", "expected"),
    [
        ("git", ["git status"]),
        ("Git", ["Git Status"]),
        ("100%", ["echo 100%"]),
        ("_", ["ls my_file"]),
        ("y_f", ["ls my_file"]),
        ("\\", ["grep 'a\\b' notes"]),
        ("a\\b", ["grep 'a\\b' notes"]),
        ("ab", ["ab", "grep 'ab' notes"]),
        ("\x00", ["printf 'a\x00b'"]),
        ("a\x00b", ["printf 'a\x00b'"]),
        ("'", ["printf 'a\x00b'", "grep 'ab' notes", "grep 'a\\b' notes"]),
        ("nothing here", []),
    ],
)
def test_terms_match_literally_and_case_sensitively(
    plain_db: mangostore.Database,
    people: tuple[str, str],
    history: list[str],
    window: int,
    needle: str,
    expected: list[str],
) -> None:
    plain_db.command_history.search_window = window
    found = plain_db.command_history.search(people[0], needle, use_cache=False)
    assert [c.command for c in found] == expected


def test_another_persons_commands_are_not_found(
    plain_db: mangostore.Database, people: tuple[str, str]
) -> None:
    ann, bob = people
    plain_db.command_history.record(bob, "deploy canary")
    plain_db.command_history.search_window = 1
    assert plain_db.command_history.search(ann, "canary") == []
    assert [c.command for c in plain_db.command_history.search(bob, "canary")] == ["deploy canary"]


def test_bad_input_is_refused(plain_db: mangostore.Database, people: tuple[str, str]) -> None:
    with pytest.raises(InvalidValueError, match="limit"):
        plain_db.command_history.search(people[0], "git", limit=-1)
    with pytest.raises(InvalidValueError, match="command"):
        plain_db.command_history.search(people[0], "\ud800")
    with pytest.raises(InvalidValueError, match="command"):
        plain_db.command_history.search(people[0], 5)  # type: ignore[arg-type]


# -- the index follows every write --------------------------------------------------------


def index_rows(db: mangostore.Database, user_id: str) -> int:
    return int(
        db.query("SELECT count(*) FROM command_history_search_rows WHERE user_id = ?", (user_id,))[
            0
        ][0]
    )


def trigrams(db: mangostore.Database) -> set[str]:
    return {str(r[0]) for r in db.query("SELECT term FROM command_history_vocab")}


def test_erasing_a_person_removes_their_commands_from_the_index(
    plain_db: mangostore.Database, people: tuple[str, str]
) -> None:
    ann, bob = people
    plain_db.command_history.record(ann, "ssh secret-host-qx")
    plain_db.command_history.record(bob, "make test")
    assert "-qx" in trigrams(plain_db)
    plain_db.privacy.erase_user(ann)
    assert index_rows(plain_db, ann) == 0
    assert "-qx" not in trigrams(plain_db)  # secure-delete: its trigrams are gone
    assert plain_db.query("SELECT count(*) FROM command_history_fts")[0][0] == 1
    plain_db.command_history.search_window = 1
    assert [c.command for c in plain_db.command_history.search(bob, "test")] == ["make test"]


def test_retention_removes_old_commands_from_the_index(
    plain_db: mangostore.Database, people: tuple[str, str], tmp_path: Any
) -> None:
    ann, _ = people
    day = 86_400_000
    plain_db.command_history.record(ann, "old-deploy", timestamp=1)
    plain_db.command_history.record(ann, "new-deploy", timestamp=100 * day)
    plain_db.privacy.apply_retention(
        now=100 * day,
        policies=[RetentionPolicy("command_history", 30)],
        archive_dir_path=tmp_path,
    )
    assert index_rows(plain_db, ann) == 1
    plain_db.command_history.search_window = 1
    assert [c.command for c in plain_db.command_history.search(ann, "deploy")] == ["new-deploy"]


def test_raw_sql_writes_are_indexed_too(
    plain_db: mangostore.Database, people: tuple[str, str]
) -> None:
    ann, bob = people
    plain_db.execute(
        "INSERT INTO command_history (id, user_id, command, timestamp) "
        "VALUES ('c1', ?, 'vim a', 5)",
        (ann,),
    )
    plain_db.execute("UPDATE command_history SET command = 'emacs a' WHERE id = 'c1'")
    plain_db.execute("UPDATE command_history SET user_id = ?, id = 'c2' WHERE id = 'c1'", (bob,))
    plain_db.command_history.search_window = 1
    assert plain_db.command_history.search(ann, "emacs") == []
    assert [c.id for c in plain_db.command_history.search(bob, "emacs")] == ["c2"]
    assert plain_db.command_history.search(bob, "vim") == []
    plain_db.execute(
        "INSERT INTO command_history (id, user_id, command, timestamp) "
        "VALUES ('c2', ?, 'nano a', 6) "
        "ON CONFLICT (id) DO UPDATE SET command = excluded.command",
        (bob,),
    )
    assert [c.id for c in plain_db.command_history.search(bob, "nano")] == ["c2"]
    assert plain_db.command_history.search(bob, "emacs") == []


def test_insert_or_replace_is_refused_and_changes_nothing(
    plain_db: mangostore.Database, people: tuple[str, str]
) -> None:
    ann, _ = people
    kept = plain_db.command_history.record(ann, "git push", timestamp=3)
    with pytest.raises(ConstraintError, match="INSERT OR REPLACE"):
        plain_db.execute(
            "INSERT OR REPLACE INTO command_history (id, user_id, command, timestamp) "
            "VALUES (?, ?, 'git pull', 4)",
            (kept.id, ann),
        )
    assert plain_db.command_history.get(kept.id) == kept
    assert [c.id for c in plain_db.command_history.search(ann, "push")] == [kept.id]
    assert plain_db.command_history.stats(ann).total == 1


def test_commands_written_before_the_migration_are_indexed(
    plain_db: mangostore.Database, people: tuple[str, str]
) -> None:
    ann, bob = people
    plain_db.migrate(to=14)
    plain_db.execute(
        "INSERT INTO command_history (id, user_id, command, timestamp, exit_code, execution_time)"
        " VALUES ('a1', ?, 'git log', 1, 0, 10), ('a2', ?, 'git log -p', 2, 1, NULL),"
        " ('b1', ?, 'git log', 3, 0, 7)",
        (ann, ann, bob),
    )
    plain_db.migrate()
    plain_db.command_history.search_window = 1
    assert [c.id for c in plain_db.command_history.search(ann, "log")] == ["a2", "a1"]
    assert [c.id for c in plain_db.command_history.search(ann, "-p")] == ["a2"]
    stats = plain_db.command_history.stats(ann)
    assert (stats.total, stats.by_exit_code, stats.mean_execution_time) == (2, {0: 1, 1: 1}, 10.0)


def test_exports_and_status_list_the_history_without_the_index_internals(
    plain_db: mangostore.Database, people: tuple[str, str], tmp_path: Any
) -> None:
    ann, _ = people
    plain_db.command_history.record(ann, "git status", exit_code=0)
    manifest = plain_db.privacy.export_user(ann, tmp_path / "export")
    names = {f.name for f in manifest.files}
    assert {"command_history.jsonl", "command_history_weekly.jsonl"} <= names
    assert not any(n.startswith(("command_history_fts", "command_history_vocab")) for n in names)
    listed = {t.name: t.rows for t in plain_db.status().tables}
    assert listed["command_history"] == 1
    assert listed["command_history_fts"] == 1  # the virtual table, counted
    assert not any(name.startswith("command_history_fts_") for name in listed)  # shadows
