"""``command_history.stats`` from the weekly totals equals counting every command.

The reference is the three aggregate queries ``stats`` ran before the totals existed
(``GROUP BY command_type``, ``GROUP BY exit_code``, ``count(*)`` with ``avg``). Hypothesis
draws histories across week boundaries (negative times included), changes and deletes
commands through the repository and raw SQL, adds values the totals cannot hold exactly
(a REAL execution time, a timestamp that is text), and compares with and without
``since``: same counts, same order of keys, the same mean to the last bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mangostore
from mangostore.errors import InvalidValueError
from mangostore.repos import CommandStats

WEEK = 604_800_000


def reference(db: mangostore.Database, user_id: str, since: int | None) -> CommandStats:
    where = "WHERE user_id = ?" + (' AND "timestamp" >= ?' if since is not None else "")
    params: tuple[Any, ...] = (user_id,) if since is None else (user_id, since)
    by_type = db.query(
        f"SELECT command_type, count(*) FROM command_history {where} GROUP BY command_type",
        params,
    )
    by_exit = db.query(
        f"SELECT exit_code, count(*) FROM command_history {where} GROUP BY exit_code", params
    )
    total, mean = db.query(
        f"SELECT count(*), avg(execution_time) FROM command_history {where}", params
    )[0]
    return CommandStats(
        total=int(total),
        by_type={r[0]: int(r[1]) for r in by_type},
        by_exit_code={r[0]: int(r[1]) for r in by_exit},
        mean_execution_time=None if mean is None else float(mean),
    )


def same(found: CommandStats, expected: CommandStats) -> None:
    assert found == expected
    assert list(found.by_type.items()) == list(expected.by_type.items())
    assert list(found.by_exit_code.items()) == list(expected.by_exit_code.items())


times = st.one_of(
    st.integers(-3 * WEEK, 3 * WEEK),
    st.sampled_from([-WEEK - 1, -WEEK, -1, 0, 1, WEEK - 1, WEEK, 2**62]),
)
commands = st.fixed_dictionaries(
    {
        "timestamp": times,
        "command_type": st.sampled_from([None, "voice", "keyboard", "ai"]),
        "exit_code": st.one_of(st.none(), st.integers(-2, 2), st.just(2**40)),
        "execution_time": st.one_of(
            st.none(), st.integers(0, 10_000), st.sampled_from([2**40, 2**40 + 1, -5])
        ),
    }
)


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
@given(
    rows=st.lists(st.tuples(commands, st.booleans()), max_size=20),
    changes=st.lists(
        st.tuples(st.integers(0, 19), st.one_of(st.none(), commands, st.booleans())), max_size=6
    ),
    odd=st.sampled_from([None, "real time", "text time"]),
    since=st.one_of(st.none(), times),
)
def test_stats_equal_counting_every_command(
    shared_db: mangostore.Database,
    rows: list[tuple[dict[str, Any], bool]],
    changes: list[tuple[int, Any]],
    odd: str | None,
    since: int | None,
) -> None:
    db = shared_db
    db.execute("DELETE FROM command_history")
    people = [str(r[0]) for r in db.query("SELECT id FROM users ORDER BY username")]
    ids = [
        db.command_history.record(people[int(whose)], "cmd", **fields).id for fields, whose in rows
    ]
    live = set(ids)
    for index, change in changes:
        if index >= len(ids) or ids[index] not in live:
            continue
        if change is None:
            db.command_history.delete(ids[index])
            live.discard(ids[index])
        elif isinstance(change, bool):  # to the other person, by raw SQL
            db.execute(
                "UPDATE command_history SET user_id = ? WHERE id = ?",
                (people[int(change)], ids[index]),
            )
        else:
            db.command_history.update(ids[index], **change)
    if odd == "real time":
        db.execute(
            "INSERT INTO command_history (id, user_id, command, timestamp, execution_time) "
            "VALUES ('odd', ?, 'x', 5, 2.5)",
            (people[0],),
        )
    elif odd == "text time":
        db.execute(
            "INSERT INTO command_history (id, user_id, command, timestamp, execution_time) "
            "VALUES ('odd', ?, 'x', 'yesterday', 3)",
            (people[0],),
        )
    for person in people:
        same(db.command_history.stats(person, since=since), reference(db, person, since))
    db.execute("DELETE FROM command_history WHERE id = 'odd'")
    for person in people:
        same(db.command_history.stats(person, since=since), reference(db, person, since))


def test_the_totals_hold_one_row_per_week_type_and_exit_code(
    plain_db: mangostore.Database,
) -> None:
    ann = plain_db.users.create(username="ann").id
    for at in (0, 1, WEEK - 1, WEEK, WEEK + 5):
        plain_db.command_history.record(ann, "make", timestamp=at, exit_code=0, execution_time=7)
    rows = plain_db.query(
        "SELECT week, commands, timed, time_total FROM command_history_weekly ORDER BY week"
    )
    assert [tuple(r) for r in rows] == [(0, 3, 3, 21), (1, 2, 2, 14)]
    for record in plain_db.command_history.list(user_id=ann):
        plain_db.command_history.delete(record.id)
    assert plain_db.query("SELECT count(*) FROM command_history_weekly")[0][0] == 0


def test_erasing_a_person_removes_their_totals(plain_db: mangostore.Database) -> None:
    ann = plain_db.users.create(username="ann").id
    bob = plain_db.users.create(username="bob").id
    plain_db.command_history.record(ann, "make", exit_code=0)
    plain_db.command_history.record(bob, "make", exit_code=1)
    plain_db.privacy.erase_user(ann)
    owners = plain_db.query("SELECT DISTINCT user_id FROM command_history_weekly")
    assert [r[0] for r in owners] == [bob]
    assert plain_db.command_history.stats(bob).by_exit_code == {1: 1}


@pytest.mark.parametrize("since", [1.5, "0", True, 2**63])
def test_a_since_that_is_not_epoch_milliseconds_is_refused(
    plain_db: mangostore.Database, since: Any
) -> None:
    ann = plain_db.users.create(username="ann").id
    with pytest.raises(InvalidValueError, match="since"):
        plain_db.command_history.stats(ann, since=since)
