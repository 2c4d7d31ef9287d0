"""``db.conversations``: messages appended one row each, encrypted, counted in tokens, read in
order; archive, expiry with a manual clock, the sweep, and the keys behind the encryption."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.clock import ManualClock
from mangostore.errors import (
    ConfigurationError,
    ForeignKeyError,
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
    TamperedDataError,
)
from mangostore.keys.envelope import parse_header
from mangostore.keys.field_cipher import field_cipher_for
from mangostore.keys.rotation import rotate_field_keys
from mangostore.kg.conversations import ConversationService, Message, estimate_tokens, open_content

HOUR_MS = 3_600_000
#: Message text that must never reach the disk in the clear.
SECRET = "ultramarine-conversation-marker-7731"


# An in-memory database with a keyring (messages encrypted), on the manual clock.
pytestmark = pytest.mark.database("clocked_memory_db")


@pytest.fixture
def ann(db: mangostore.Database) -> str:
    return db.users.create(username="ann").id


def contents(messages: list[Message]) -> list[str]:
    return [m.content for m in messages]


def rows(db: mangostore.Database, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in db.query(sql, params)]


def test_conversations_is_one_service_per_database(db: mangostore.Database) -> None:
    assert isinstance(db.conversations, ConversationService)
    assert db.conversations is db.conversations


# -- create, append, read -------------------------------------------------------------------------


def test_create_append_and_read_in_order(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    site = db.projects.create(user_id=ann, name="site", path="/srv/site").id
    chat = db.conversations.create(
        ann, title="Fix the build", project_id=site, context_type="terminal", data={"model": "m1"}
    )
    assert (chat.status, chat.token_count, chat.last_message_at) == ("active", 0, None)
    assert chat.conversation_data == {"model": "m1"}

    first = db.conversations.append(chat.id, "system", "You help with builds.")
    clock.advance(10)
    second = db.conversations.append(chat.id, "user", "Why does make fail? ✓ 🥭")
    clock.advance(10)
    third = db.conversations.append(chat.id, "assistant", "A missing header.", token_count=5)

    assert [m.seq for m in (first, second, third)] == [1, 2, 3]
    assert second.created_at == first.created_at + 10
    read = db.conversations.messages(chat.id)
    assert read == [first, second, third]
    assert [m.role for m in read] == ["system", "user", "assistant"]
    assert contents(read)[1] == "Why does make fail? ✓ 🥭"
    stored = db.ai_conversations.get(chat.id)
    assert stored.token_count == first.token_count + second.token_count + 5
    assert stored.last_message_at == third.created_at
    assert stored.conversation_data == {"model": "m1"}


def test_appending_inserts_one_row_and_never_rewrites_the_conversation_data(
    db: mangostore.Database, ann: str
) -> None:
    chat = db.conversations.create(ann, data={"summary": "long"})
    before = rows(db, "SELECT conversation_data FROM ai_conversations WHERE id = ?", (chat.id,))
    statements: list[str] = []
    db.store.writer.connection.set_trace_callback(statements.append)
    try:
        db.conversations.append(chat.id, "user", "hello")
    finally:
        db.store.writer.connection.set_trace_callback(None)

    writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert sum("INSERT INTO ai_messages" in s for s in writes) == 1
    conversation_updates = [s for s in writes if "UPDATE ai_conversations" in s]
    assert len(conversation_updates) == 1
    assert "conversation_data" not in conversation_updates[0]
    after = rows(db, "SELECT conversation_data FROM ai_conversations WHERE id = ?", (chat.id,))
    assert after == before  # the same ciphertext, byte for byte


def test_paging_through_messages(db: mangostore.Database, ann: str) -> None:
    chat = db.conversations.create(ann)
    for n in range(1, 8):
        db.conversations.append(chat.id, "user", f"message {n}")

    assert [m.seq for m in db.conversations.messages(chat.id, limit=3)] == [1, 2, 3]
    assert [m.seq for m in db.conversations.messages(chat.id, after_seq=3, limit=3)] == [4, 5, 6]
    assert [m.seq for m in db.conversations.messages(chat.id, after_seq=6)] == [7]
    assert db.conversations.messages(chat.id, after_seq=7) == []
    for bad in ({"after_seq": -1}, {"limit": 0}, {"after_seq": True}):
        with pytest.raises(InvalidValueError):
            db.conversations.messages(chat.id, **bad)


def test_window_returns_the_newest_messages_that_fit(db: mangostore.Database, ann: str) -> None:
    chat = db.conversations.create(ann)
    for tokens in (50, 10, 20, 30):
        db.conversations.append(chat.id, "user", f"{tokens} tokens", token_count=tokens)

    assert [m.token_count for m in db.conversations.window(chat.id, 60)] == [10, 20, 30]
    assert [m.token_count for m in db.conversations.window(chat.id, 59)] == [20, 30]
    assert [m.token_count for m in db.conversations.window(chat.id, 110)] == [50, 10, 20, 30]
    assert db.conversations.window(chat.id, 29) == []
    with pytest.raises(InvalidValueError):
        db.conversations.window(chat.id, -1)


def test_messages_of_different_conversations_are_numbered_apart(
    db: mangostore.Database, ann: str
) -> None:
    one = db.conversations.create(ann)
    two = db.conversations.create(ann)
    db.conversations.append(one.id, "user", "a")
    db.conversations.append(two.id, "user", "b")
    db.conversations.append(one.id, "user", "c")

    assert [(m.seq, m.content) for m in db.conversations.messages(one.id)] == [(1, "a"), (2, "c")]
    assert [(m.seq, m.content) for m in db.conversations.messages(two.id)] == [(1, "b")]


def test_message_repr_hides_the_content(db: mangostore.Database, ann: str) -> None:
    chat = db.conversations.create(ann)
    message = db.conversations.append(chat.id, "user", SECRET)

    assert SECRET not in repr(message)
    assert f"<{len(SECRET)} chars>" in repr(message)


# -- tokens ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100), ("🥭🥭🥭🥭🥭", 2)],
)
def test_token_estimate_is_a_quarter_of_the_characters(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


def test_token_count_is_estimated_unless_given(db: mangostore.Database, ann: str) -> None:
    chat = db.conversations.create(ann)
    estimated = db.conversations.append(chat.id, "user", "x" * 41)
    given = db.conversations.append(chat.id, "assistant", "x" * 41, token_count=3)
    empty = db.conversations.append(chat.id, "tool", "", token_count=0)

    assert (estimated.token_count, given.token_count, empty.token_count) == (11, 3, 0)
    assert db.ai_conversations.get(chat.id).token_count == 14


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "content", "kwargs", "field"),
    [
        pytest.param("robot", "hi", {}, "role", id="role"),
        pytest.param(None, "hi", {}, "role", id="role-none"),
        pytest.param("user", b"hi", {}, "content", id="bytes"),
        pytest.param("user", None, {}, "content", id="none"),
        pytest.param("user", "\ud800", {}, "content", id="surrogate"),
        pytest.param("user", "x" * 2000, {}, "content", id="too-large"),
        pytest.param("user", "hi", {"token_count": -1}, "token_count", id="tokens-negative"),
        pytest.param("user", "hi", {"token_count": 1.5}, "token_count", id="tokens-float"),
        pytest.param("user", "hi", {"token_count": True}, "token_count", id="tokens-bool"),
    ],
)
def test_bad_messages_are_refused_and_nothing_is_written(
    clock: ManualClock, role: Any, content: Any, kwargs: dict[str, Any], field: str
) -> None:
    settings = Settings(json_max_bytes=1024)
    with mangostore.open(":memory:", encrypted=False, settings=settings, clock=clock) as db:
        chat = db.conversations.create(db.users.create(username="ann").id)
        with pytest.raises(InvalidValueError) as caught:
            db.conversations.append(chat.id, role, content, **kwargs)
        assert caught.value.field == field
        assert rows(db, "SELECT count(*) FROM ai_messages") == [(0,)]
        assert db.ai_conversations.get(chat.id).token_count == 0


def test_unknown_conversations_and_bad_create_arguments(db: mangostore.Database, ann: str) -> None:
    with pytest.raises(NotFoundError):
        db.conversations.append("missing", "user", "hi")
    with pytest.raises(NotFoundError):
        db.conversations.messages("missing")
    with pytest.raises(NotFoundError):
        db.conversations.archive("missing")
    with pytest.raises(NotFoundError):
        db.conversations.delete("missing")
    with pytest.raises(ForeignKeyError):
        db.conversations.create("no-such-user")
    with pytest.raises(InvalidValueError):
        db.conversations.create(ann, context_type="chat")
    with pytest.raises(InvalidValueError):
        db.conversations.create(ann, ttl=0)
    assert db.ai_conversations.count() == 0


# -- encryption -----------------------------------------------------------------------------------


def test_message_content_is_an_envelope_bound_to_its_row(db: mangostore.Database, ann: str) -> None:
    chat = db.conversations.create(ann)
    first = db.conversations.append(chat.id, "user", SECRET)
    second = db.conversations.append(chat.id, "user", "another")

    (blob,) = rows(db, "SELECT content FROM ai_messages WHERE id = ?", (first.id,))[0]
    assert isinstance(blob, bytes)
    assert SECRET.encode() not in blob
    parse_header(blob)  # a well-formed envelope
    # Moved to another row, the ciphertext no longer opens.
    db.execute("UPDATE ai_messages SET content = ? WHERE id = ?", (blob, second.id))
    with pytest.raises(TamperedDataError):
        db.conversations.messages(chat.id)


def test_text_written_around_mangostore_is_refused(db: mangostore.Database, ann: str) -> None:
    chat = db.conversations.create(ann)
    message = db.conversations.append(chat.id, "user", "hello")
    db.execute("UPDATE ai_messages SET content = 'forged' WHERE id = ?", (message.id,))

    with pytest.raises(TamperedDataError):
        db.conversations.messages(chat.id)


def test_no_message_plaintext_on_disk_with_plain_pages(
    db_path: Path, fast_settings: Settings
) -> None:
    with mangostore.create(
        db_path, passphrase=PASSPHRASE, encrypted=False, settings=fast_settings
    ).db as db:
        assert not db.page_encryption
        user = db.users.create(username="ann").id
        chat = db.conversations.create(user, title="plain title")
        for n in range(30):
            db.conversations.append(chat.id, "user", f"{SECRET} number {n}")
        assert len(db.conversations.messages(chat.id)) == 30
        wal = Path(f"{db_path}-wal")
        assert wal.stat().st_size > 0
        data = db_path.read_bytes() + wal.read_bytes()
        assert b"plain title" in data  # pages really are readable: the check can see text
        assert SECRET.encode() not in data
    assert SECRET.encode() not in db_path.read_bytes()
    with mangostore.open(db_path, passphrase=PASSPHRASE, encrypted=False) as db:
        (chat_row,) = db.ai_conversations.list()
        assert contents(db.conversations.messages(chat_row.id))[0] == f"{SECRET} number 0"


def test_without_a_keyring_messages_are_stored_as_text(
    db_path: Path, fast_settings: Settings
) -> None:
    with mangostore.create(db_path, encrypted=False).db as db:
        user = db.users.create(username="ann").id
        chat = db.conversations.create(user)
        db.conversations.append(chat.id, "user", "plain words")
        assert rows(db, "SELECT content FROM ai_messages") == [("plain words",)]
        assert contents(db.conversations.messages(chat.id)) == ["plain words"]


def test_encrypted_messages_need_the_passphrase(db: mangostore.Database, ann: str) -> None:
    chat = db.conversations.create(ann)
    db.conversations.append(chat.id, "user", "hello")
    row = db.query("SELECT * FROM ai_messages")[0]
    with pytest.raises(ConfigurationError):
        open_content(None, row)


def test_erased_users_messages_are_unreadable(db: mangostore.Database, ann: str) -> None:
    chat = db.conversations.create(ann)
    db.conversations.append(chat.id, "user", SECRET)
    cipher = field_cipher_for(db)
    assert cipher is not None
    with db.store.transaction() as conn:
        cipher.destroy_user_keys(conn, ann)

    with pytest.raises(TamperedDataError):
        db.conversations.messages(chat.id)


def test_messages_stay_readable_through_a_key_rotation(db: mangostore.Database, ann: str) -> None:
    chat = db.conversations.create(ann)
    before = db.conversations.append(chat.id, "user", "before the rotation")

    rotate_field_keys(db)
    after = db.conversations.append(chat.id, "user", "after the rotation")

    assert contents(db.conversations.messages(chat.id)) == [
        "before the rotation",
        "after the rotation",
    ]
    cipher = field_cipher_for(db)
    assert cipher is not None
    with db.store.transaction() as conn:
        primary = cipher.primary_key_id(conn, ann)
    (blob,) = rows(db, "SELECT content FROM ai_messages WHERE id = ?", (after.id,))[0]
    assert parse_header(blob)[2] == primary
    assert before.id != after.id


def test_key_rotation_reencrypts_messages(db: mangostore.Database, ann: str) -> None:
    chat = db.conversations.create(ann)
    message = db.conversations.append(chat.id, "user", "old key")

    rotate_field_keys(db)

    cipher = field_cipher_for(db)
    assert cipher is not None
    with db.store.transaction() as conn:
        primary = cipher.primary_key_id(conn, ann)
    (blob,) = rows(db, "SELECT content FROM ai_messages WHERE id = ?", (message.id,))[0]
    assert parse_header(blob)[2] == primary


# -- archive, expiry, sweep, delete ---------------------------------------------------------------


def test_archived_conversations_are_read_only(db: mangostore.Database, ann: str) -> None:
    chat = db.conversations.create(ann)
    db.conversations.append(chat.id, "user", "kept")

    archived = db.conversations.archive(chat.id)
    assert archived.status == "archived"
    assert db.conversations.archive(chat.id).status == "archived"  # again: no change
    assert contents(db.conversations.messages(chat.id)) == ["kept"]
    with pytest.raises(InvalidTransitionError):
        db.conversations.append(chat.id, "user", "refused")
    assert len(db.conversations.messages(chat.id)) == 1


def test_an_expired_conversation_is_hidden_at_once_and_swept(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    short = db.conversations.create(ann, ttl=dt.timedelta(hours=1), data={"x": 1})
    lasting = db.conversations.create(ann)
    assert short.expires_at == clock.now_ms() + HOUR_MS
    db.conversations.append(short.id, "user", "soon gone")
    db.conversations.append(lasting.id, "user", "stays")

    clock.advance(HOUR_MS)
    assert db.conversations.messages(short.id) == []
    assert db.conversations.window(short.id, 100) == []
    with pytest.raises(InvalidTransitionError):
        db.conversations.append(short.id, "user", "too late")
    with pytest.raises(InvalidTransitionError):
        db.conversations.archive(short.id)
    assert rows(db, "SELECT count(*) FROM ai_messages WHERE conversation_id = ?", (short.id,)) == [
        (1,)
    ]

    assert db.conversations.sweep() == 1
    swept = db.ai_conversations.get(short.id)
    assert (swept.status, swept.conversation_data) == ("deleted", None)
    assert rows(db, "SELECT conversation_id FROM ai_messages") == [(lasting.id,)]
    assert contents(db.conversations.messages(lasting.id)) == ["stays"]
    assert db.conversations.sweep() == 0  # nothing left to do


def test_expire_sets_the_time_and_sweep_takes_one(
    db: mangostore.Database, ann: str, clock: ManualClock
) -> None:
    chat = db.conversations.create(ann)
    db.conversations.append(chat.id, "user", "x")
    later = clock.now_ms() + 5_000

    assert db.conversations.expire(chat.id, at=later).expires_at == later
    assert db.conversations.sweep(now=later - 1) == 0
    assert len(db.conversations.messages(chat.id)) == 1
    assert db.conversations.sweep(now=later) == 1
    assert db.ai_conversations.get(chat.id).status == "deleted"

    other = db.conversations.create(ann)
    assert db.conversations.expire(other.id).expires_at == clock.now_ms()
    assert db.conversations.messages(other.id) == []
    with pytest.raises(InvalidValueError):
        db.conversations.expire(other.id, at="tomorrow")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        db.conversations.expire("missing")


def test_delete_erases_messages_now(db: mangostore.Database, ann: str) -> None:
    chat = db.conversations.create(ann, data={"secret": SECRET})
    for n in range(3):
        db.conversations.append(chat.id, "user", f"m{n}")
    memory = db.memory.remember(ann, "learnt", "from this chat", conversation_id=chat.id)

    assert db.conversations.delete(chat.id) == 3
    gone = db.ai_conversations.get(chat.id)
    assert (gone.status, gone.conversation_data) == ("deleted", None)
    assert db.conversations.messages(chat.id) == []
    with pytest.raises(InvalidTransitionError):
        db.conversations.append(chat.id, "user", "again")
    # The conversation row stays, so memories that refer to it keep their reference.
    assert db.ai_memory.get(memory.id).conversation_id == chat.id


def test_deleting_the_conversation_row_deletes_its_messages(
    db: mangostore.Database, ann: str
) -> None:
    chat = db.conversations.create(ann)
    db.conversations.append(chat.id, "user", "x")

    assert db.ai_conversations.delete(chat.id)
    assert rows(db, "SELECT count(*) FROM ai_messages") == [(0,)]
