"""Regressions of the redirects of folded rows and snapshots.

Two devices that make rows clashing on a unique key (two projects of one user at one
path) settle it by folding the later row into the earlier and recording the redirect,
which later children of the folded row follow to the survivor. Snapshots did not carry
the redirects: on a device that joined from one taken after the fold, a child made
before the fold and pushed after the snapshot lost its reference (an optional one was
cleared, a required one went as an orphan), while the other devices pointed it at the
survivor; a device that still had the folded row and applied such a snapshot did the
same to its own child of that row.

The devices sync through the sync server in process: it keeps snapshots (a
``MemoryRelay`` does not).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.conftest import PASSPHRASE, SteppingClock
from tests.sync.server.api_helpers import URL, Server
from tests.sync.test_convergence import logical_content

import mangostore
from mangostore import Settings
from mangostore.errors import SyncError
from mangostore.sync.settle import record_redirect
from mangostore.sync.snapshots import merge_redirects, read_snapshot


@pytest.fixture
def three(sqlite_server: Server, fast_settings: Settings) -> Iterator[list[mangostore.Database]]:
    """Three in-memory devices of one vault on ``sqlite_server``, on one clock a millisecond
    further at each reading (so which row was made first is certain)."""
    clock = SteppingClock()
    first, _ = mangostore.create(
        ":memory:", passphrase=PASSPHRASE, settings=fast_settings, clock=clock
    )
    first.sync.attach(URL, client=sqlite_server.client)
    made = [first]
    for _ in range(2):
        other, _ = first.sync.new_device(
            ":memory:", PASSPHRASE, settings=fast_settings, clock=clock
        )
        other.sync.connect(sqlite_server.transport(other))
        made.append(other)
    yield made
    for db in made:
        db.close()


@dataclass(frozen=True)
class Clash:
    """A table whose rows fold on a unique key, and a child table referring to it."""

    parent: str
    child: str
    column: str
    #: Make a parent row (the same unique key on every call) of a user with an id.
    make_parent: Callable[[mangostore.Database, str, str], object]
    #: Make a child of a parent row of a user; return its id.
    make_child: Callable[[mangostore.Database, str, str], str]


CLASHES = {
    # An optional reference: cleared where the redirect was missing.
    "project": Clash(
        "projects",
        "terminal_sessions",
        "project_id",
        lambda db, user, pk: db.projects.create(id=pk, user_id=user, name="x", path="/src/x"),
        lambda db, user, parent: db.terminal_sessions.open(user, project_id=parent).id,
    ),
    # A required one: the child went as an orphan where the redirect was missing.
    "notification type": Clash(
        "notification_types",
        "notifications",
        "notification_type_id",
        lambda db, _user, pk: db.notification_types.create(
            id=pk, name="build", category="system", template="done"
        ),
        lambda db, user, parent: (
            db.notifications.create(
                user_id=user, notification_type_id=parent, title="t", message="m", priority="low"
            ).id
        ),
    ),
}
#: The ids of the two clashing rows: the folded one (made second) sorts first, so a
#: snapshot's states bring its deletion before the survivor.
SURVIVOR, FOLDED = "p-survivor", "p-folded"


def _redirects(db: mangostore.Database) -> set[tuple[Any, ...]]:
    """The device's redirects of folded rows: (table, from pk, to pk)."""
    return {
        tuple(r)
        for r in db.query("SELECT tbl, from_pk, to_pk FROM sync_redirects", use_cache=False)
    }


def _fold_then_snapshot(three: list[mangostore.Database], clash: Clash) -> str:
    """Make two clashing parent rows on the first two devices, fold them on the first
    and upload its snapshot; a child of the folded row, made on the second before it
    saw the fold, is not sent yet. Return the child's id."""
    first, second, _ = three
    user = first.users.create(username="ann").id
    first.sync.sync()
    second.sync.sync()
    clash.make_parent(first, user, SURVIVOR)
    clash.make_parent(second, user, FOLDED)
    second.sync.push()  # the relay has the later parent, not its child below
    child = clash.make_child(second, user, FOLDED)
    first.sync.sync()  # the first folds the later parent into its own
    assert _redirects(first) == {(clash.parent, FOLDED, SURVIVOR)}
    first.sync.upload_snapshot()
    return child


def _converged_on_survivor(three: list[mangostore.Database], clash: Clash, child: str) -> None:
    """Sync every device until all is exchanged; each has the child on the survivor."""
    for _round in range(3):
        for db in three:
            db.sync.sync()
    contents = [logical_content(db) for db in three]
    assert contents[1] == contents[0]
    assert contents[2] == contents[0]
    for db in three:
        rows = db.query(
            f"SELECT {clash.column} FROM {clash.child} WHERE id = ?", (child,), use_cache=False
        )
        assert [tuple(r) for r in rows] == [(SURVIVOR,)]
        assert (clash.parent, FOLDED, SURVIVOR) in _redirects(db)
        assert not [c for c in db.sync.conflicts() if c.kind == "orphan"]


@pytest.mark.parametrize("clash", CLASHES.values(), ids=CLASHES.keys())
def test_a_device_joined_from_a_snapshot_redirects_a_late_child_of_a_folded_row(
    three: list[mangostore.Database], clash: Clash
) -> None:
    second, third = three[1], three[2]
    child = _fold_then_snapshot(three, clash)
    second.sync.push()  # the child reaches the relay after the snapshot
    third.sync.sync()  # starts from the snapshot, then pulls the child
    assert (clash.parent, FOLDED, SURVIVOR) in _redirects(third)
    _converged_on_survivor(three, clash, child)


@pytest.mark.parametrize("clash", CLASHES.values(), ids=CLASHES.keys())
def test_a_device_with_the_folded_row_applying_a_snapshot_moves_its_child(
    three: list[mangostore.Database], clash: Clash
) -> None:
    second = three[1]
    child = _fold_then_snapshot(three, clash)
    # The snapshot deletes the folded row before it brings the survivor: the
    # redirect, there first, leads the child to the survivor.
    assert second.sync.bootstrap() == 1
    rows = second.query(
        f"SELECT {clash.column} FROM {clash.child} WHERE id = ?", (child,), use_cache=False
    )
    assert [tuple(r) for r in rows] == [(SURVIVOR,)]
    _converged_on_survivor(three, clash, child)


def test_a_snapshot_carries_the_redirects_of_its_device(
    three: list[mangostore.Database],
) -> None:
    first = three[0]
    _fold_then_snapshot(three, CLASHES["project"])
    made = read_snapshot(first.store, first.sync.vault_id, first.schema_version, [])
    assert made is not None
    snapshot, docs = made
    assert docs[0]["r"] == [["projects", FOLDED, SURVIVOR]]
    key = first.store.keyring.subkey("sync")  # type: ignore[union-attr]
    sealed = snapshot.seal_parts(key, docs)
    opened = snapshot.open_part(key, 0, len(sealed) == 1, sealed[0])
    assert opened.redirects == [("projects", FOLDED, SURVIVOR)]


def _first_part_docs(three: list[mangostore.Database]) -> tuple[Any, list[Any], bytes]:
    """A snapshot of the first device (after a user and a sync), its parts' documents
    and the sync key, to seal them again changed."""
    first = three[0]
    first.users.create(username="ann")
    first.sync.sync()
    made = read_snapshot(first.store, first.sync.vault_id, first.schema_version, [])
    assert made is not None
    snapshot, docs = made
    key = first.store.keyring.subkey("sync")  # type: ignore[union-attr]
    return snapshot, docs, key


def test_a_snapshot_part_without_redirects_carries_none(
    three: list[mangostore.Database],
) -> None:
    snapshot, docs, key = _first_part_docs(three)
    del docs[0]["r"]  # as a snapshot sealed without redirects holds them
    opened = snapshot.open_part(key, 0, True, snapshot.seal_parts(key, docs)[0])
    assert opened.redirects == []
    assert [s.table for s in opened.body.states] == ["users"]


def test_merging_redirects_keeps_the_device_own_and_follows_chains(
    plain_db: mangostore.Database,
) -> None:
    with plain_db.store.transaction() as conn:
        conn.execute(
            "INSERT INTO sync_redirects (tbl, from_pk, to_pk) VALUES "
            "('projects', 'x', 'y'), ('projects', 'v', 'w')"
        )
        merge_redirects(
            conn,
            [
                ("projects", "x", "z"),  # this device folded x into y: that stays
                ("projects", "y", "z"),  # y was folded into z: x follows to z
                ("projects", "u", "v"),  # v was folded into w here: u follows to w
                ("notification_types", "x", "t"),
            ],
        )
    assert _redirects(plain_db) == {
        ("projects", "x", "z"),
        ("projects", "y", "z"),
        ("projects", "v", "w"),
        ("projects", "u", "w"),
        ("notification_types", "x", "t"),
    }
    # A device's own redirect that no incoming one leads on from stays as it is.
    with plain_db.store.transaction() as conn:
        conn.execute("INSERT INTO sync_redirects (tbl, from_pk, to_pk) VALUES ('kg', 'a', 'b')")
        merge_redirects(conn, [("kg", "a", "c")])
    assert ("kg", "a", "b") in _redirects(plain_db)
    assert ("kg", "a", "c") not in _redirects(plain_db)


def test_merging_a_long_chain_of_redirects_leads_each_to_the_last_survivor(
    plain_db: mangostore.Database,
) -> None:
    # Each row folded into the next, listed from the first fold: every redirect must
    # end at the last row, however long the chain.
    chain = [("projects", f"p{i:02}", f"p{i + 1:02}") for i in range(40)]
    with plain_db.store.transaction() as conn:
        merge_redirects(conn, chain)
    assert _redirects(plain_db) == {("projects", f"p{i:02}", "p40") for i in range(40)}


def test_a_fold_leads_its_redirect_and_those_to_it_to_the_last_survivor(
    plain_db: mangostore.Database,
) -> None:
    with plain_db.store.transaction() as conn:
        conn.execute(
            "INSERT INTO sync_redirects (tbl, from_pk, to_pk) VALUES "
            "('projects', 'b', 'c'), ('projects', 'x', 'a'), ('kg', 'a', 'z')"
        )
        # a folds into b, itself folded into c: a and x (folded into a) lead to c.
        assert record_redirect(conn, "projects", "a", "b")
        # c folding into a would lead c back to itself: nothing is recorded.
        assert not record_redirect(conn, "projects", "c", "a")
        # With keep, a redirect held for the row stays; without, it is replaced.
        assert not record_redirect(conn, "kg", "a", "y", keep=True)
        assert record_redirect(conn, "kg", "a", "w")
    assert _redirects(plain_db) == {
        ("projects", "b", "c"),
        ("projects", "a", "c"),
        ("projects", "x", "c"),
        ("kg", "a", "w"),
    }


def test_a_snapshot_part_with_malformed_redirects_is_refused(
    three: list[mangostore.Database],
) -> None:
    snapshot, docs, key = _first_part_docs(three)
    docs[0]["r"] = [["projects", "only two"]]  # sealed by a device of another format
    with pytest.raises(SyncError, match="cannot be read"):
        snapshot.open_part(key, 0, True, snapshot.seal_parts(key, docs)[0])
