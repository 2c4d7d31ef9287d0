"""Each merge rule of docs/sync.md, with the example the documentation gives."""

from __future__ import annotations

from tests.conftest import PASSPHRASE
from tests.sync_helpers import Devices, sync_all

import mangostore
from mangostore.clock import ManualClock
from mangostore.sync import MemoryRelay


def test_edits_of_different_columns_both_survive(devices: Devices) -> None:
    a, b = devices(2)
    user = a.users.create(username="alice", email="a@example.org")
    sync_all([a, b])
    a.users.update(user.id, email="alice@example.org")
    b.users.update(user.id, security_profile="strict")
    sync_all([a, b])
    for db in (a, b):
        got = db.users.get(user.id)
        assert (got.email, got.security_profile) == ("alice@example.org", "strict")


def test_the_later_edit_of_one_column_wins_on_every_device(
    fast_settings: mangostore.Settings,
) -> None:
    relay = MemoryRelay()
    wall = ManualClock(1_700_000_000_000)
    a, _ = mangostore.create(":memory:", passphrase=PASSPHRASE, settings=fast_settings, clock=wall)
    a.sync.enable(relay)
    b, _ = a.sync.new_device(":memory:", PASSPHRASE, settings=fast_settings, clock=wall)
    b.sync.connect(relay)
    try:
        user = a.users.create(username="alice")
        sync_all([a, b])
        wall.advance(10)
        a.users.update(user.id, email="first@example.org")
        wall.advance(10)
        b.users.update(user.id, email="second@example.org")  # later, though not seen by a
        sync_all([a, b])
        assert a.users.get(user.id).email == b.users.get(user.id).email == "second@example.org"
    finally:
        a.close()
        b.close()


def test_json_objects_merge_key_by_key(devices: Devices) -> None:
    a, b = devices(2)
    user = a.users.create(username="alice", preferences={"theme": "dark", "voice": "on"})
    sync_all([a, b])
    a.users.update(user.id, preferences={"theme": "light", "voice": "on"})
    b.users.update(user.id, preferences={"theme": "dark", "lang": "fr"})  # voice removed
    sync_all([a, b])
    expected = {"theme": "light", "lang": "fr"}
    assert a.users.get(user.id).preferences == b.users.get(user.id).preferences == expected


def test_a_delete_wins_over_a_concurrent_update(devices: Devices) -> None:
    a, b = devices(2)
    user = a.users.create(username="alice")
    project = a.projects.create(user_id=user.id, name="mango", path="/src/mango")
    sync_all([a, b])
    a.projects.delete(project.id)
    b.projects.update(project.id, display_name="Mango")
    sync_all([a, b])
    assert a.projects.count() == b.projects.count() == 0


def test_a_re_creation_after_the_delete_brings_the_row_back_afresh(devices: Devices) -> None:
    a, b = devices(2)
    user = a.users.create(username="alice")
    sync_all([a, b])
    a.projects.create(id="p1", user_id=user.id, name="old", path="/p", display_name="Old")
    sync_all([a, b])
    b.projects.delete("p1")
    sync_all([a, b])
    a.projects.create(id="p1", user_id=user.id, name="new", path="/p")
    sync_all([a, b])
    for db in (a, b):
        got = db.projects.get("p1")
        assert (got.name, got.display_name) == ("new", None)


def test_counters_add_up_the_increments_of_every_device(devices: Devices) -> None:
    a, b = devices(2)
    user = a.users.create(username="alice")
    memory = a.ai_memory.create(
        user_id=user.id, memory_type="fact", key_name="editor", value_data={"v": "vim"}
    )
    sync_all([a, b])
    a.execute("UPDATE ai_memory SET access_count = access_count + 2 WHERE id = ?", (memory.id,))
    b.execute("UPDATE ai_memory SET access_count = access_count + 3 WHERE id = ?", (memory.id,))
    sync_all([a, b])
    assert a.ai_memory.get(memory.id).access_count == 5
    assert b.ai_memory.get(memory.id).access_count == 5


def test_a_manual_column_keeps_the_value_that_lost(devices: Devices) -> None:
    a, b = devices(2)
    for db in (a, b):
        db.sync.set_strategy("projects", "display_name", "manual")
    user = a.users.create(username="alice")
    project = a.projects.create(user_id=user.id, name="m", path="/m", display_name="Start")
    sync_all([a, b])
    a.projects.update(project.id, display_name="From A")
    b.projects.update(project.id, display_name="From B")
    sync_all([a, b])
    assert a.projects.get(project.id).display_name == "From B"
    conflicts = a.sync.conflicts()
    assert [(c.kind, c.column, c.kept, c.lost) for c in conflicts] == [
        ("manual", "display_name", "From B", "From A")
    ]
    a.sync.resolve(conflicts[0].id, choose="lost")
    sync_all([a, b])
    assert b.projects.get(project.id).display_name == "From A"
    assert a.sync.conflicts() == []


def test_an_edit_made_after_seeing_the_other_is_no_conflict(devices: Devices) -> None:
    a, b = devices(2)
    for db in (a, b):
        db.sync.set_strategy("projects", "display_name", "manual")
    user = a.users.create(username="alice")
    project = a.projects.create(user_id=user.id, name="m", path="/m")
    sync_all([a, b])
    a.projects.update(project.id, display_name="one")
    sync_all([a, b])
    b.projects.update(project.id, display_name="two")
    sync_all([a, b])
    assert a.sync.conflicts() == b.sync.conflicts() == []


def test_two_users_with_one_name_keep_both_the_later_renamed(devices: Devices) -> None:
    a, b = devices(2)
    first = a.users.create(username="sam", email="sam@example.org")
    second = b.users.create(username="sam", email="sam@example.org")
    sync_all([a, b])
    for db in (a, b):
        names = {u.id: (u.username, u.email) for u in db.users.list()}
        assert names[first.id] == ("sam", "sam@example.org")
        assert names[second.id][0].startswith("sam~")
        assert names[second.id][1] is None
    assert [c.kind for c in a.sync.conflicts()] == ["unique"]


def test_two_projects_with_one_path_become_one_and_keep_their_children(
    devices: Devices,
) -> None:
    a, b = devices(2)
    user = a.users.create(username="alice")
    sync_all([a, b])
    kept = a.projects.create(user_id=user.id, name="mango", path="/src/mango")
    folded = b.projects.create(user_id=user.id, name="mango", path="/src/mango")
    command = b.command_history.create(
        user_id=user.id, project_id=folded.id, command="make test", timestamp=1
    )
    sync_all([a, b], rounds=3)
    for db in (a, b):
        assert [p.id for p in db.projects.list()] == [kept.id]
        assert db.command_history.get(command.id).project_id == kept.id


def test_a_child_of_a_row_deleted_elsewhere_goes_with_it(devices: Devices) -> None:
    a, b = devices(2)
    user = a.users.create(username="alice")
    conversation = a.conversations.create(user.id, title="chat")
    sync_all([a, b])
    a.ai_conversations.delete(conversation.id)  # the row itself, not the soft delete
    b.conversations.append(conversation.id, "user", "hello")
    sync_all([a, b])
    for db in (a, b):
        assert db.query("SELECT count(*) FROM ai_messages")[0][0] == 0
        assert db.query("PRAGMA foreign_key_check") == []


def test_encrypted_fields_travel_as_ciphertext_and_open_on_the_other_device(
    devices: Devices, relay: MemoryRelay
) -> None:
    a, b = devices(2)
    user = a.users.create(username="alice")
    conversation = a.conversations.create(user.id, title="chat")
    a.conversations.append(conversation.id, "user", "the launch code is mango-42")
    sync_all([a, b])
    messages = b.conversations.messages(conversation.id)
    assert [m.content for m in messages] == ["the launch code is mango-42"]
    assert b"mango-42" not in relay.stored_bytes()


def test_an_erasure_reaches_every_device_and_an_offline_one_cannot_undo_it(
    devices: Devices,
) -> None:
    a, b, c = devices(3)
    user = a.users.create(username="alice")
    a.conversations.append(a.conversations.create(user.id).id, "user", "secret")
    sync_all([a, b, c])
    c.users.update(user.id, email="offline@example.org")  # c edits while offline
    a.privacy.erase_user(user.id)
    sync_all([a, b])
    sync_all([c, a, b])
    for db in (a, b, c):
        assert db.query("SELECT count(*) FROM users WHERE id = ?", (user.id,))[0][0] == 0
        assert db.query("SELECT count(*) FROM ai_messages")[0][0] == 0


def test_a_skewed_clock_an_hour_ahead_does_not_make_later_edits_lose(
    fast_settings: mangostore.Settings,
) -> None:
    relay = MemoryRelay()
    fast = ManualClock(1_700_000_000_000 + 3_600_000)
    slow = ManualClock(1_700_000_000_000)
    a, _ = mangostore.create(":memory:", passphrase=PASSPHRASE, settings=fast_settings, clock=fast)
    a.sync.enable(relay)
    b, _ = a.sync.new_device(":memory:", PASSPHRASE, settings=fast_settings, clock=slow)
    b.sync.connect(relay)
    try:
        user = a.users.create(username="alice", email="fast@example.org")
        sync_all([a, b])
        assert b.sync.status().clock_ahead_ms >= 3_500_000
        b.users.update(user.id, email="later@example.org")  # made after seeing a's edit
        sync_all([a, b])
        assert a.users.get(user.id).email == b.users.get(user.id).email == "later@example.org"
    finally:
        a.close()
        b.close()
