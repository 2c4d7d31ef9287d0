"""``db.conversations``: conversations with the assistant, one encrypted row per message.

A conversation is a row of ``ai_conversations``; its messages are rows of
``ai_messages``, numbered 1, 2, 3... within the conversation. Appending a message
inserts one row and updates the conversation's ``token_count`` and
``last_message_at``; ``conversation_data`` (the caller's own metadata, encrypted) is
never rewritten by it, so the cost of an append does not grow with the conversation.

Message text is encrypted at field level (AES-256-GCM under the owning user's data key,
bound to the message's row) when the database has a keyring, so it is unreadable in a
copy of the file even when pages are not encrypted. Erasing a user's keys makes their
messages unreadable everywhere.

Token counts are an estimate unless the caller gives one: :func:`estimate_tokens`,
``ceil(characters / 4)``, the usual rule of thumb for English text and BPE tokenizers.

Lifecycle: ``active`` -> ``archived`` (read-only) or ``deleted``. A conversation past
``expires_at`` is hidden at once (no messages are returned, none can be added);
:meth:`ConversationService.sweep` then marks it ``deleted``, deletes its messages and
clears ``conversation_data``. The row itself stays, because memories may refer to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mangostore.clock import Duration, Instant, epoch_ms
from mangostore.errors import (
    ConfigurationError,
    InvalidTransitionError,
    InvalidValueError,
    TamperedDataError,
)
from mangostore.ids import new_id
from mangostore.keys.field_cipher import FieldCipher, field_cipher_for
from mangostore.kg.memory_checks import ttl_ms
from mangostore.records import AIConversation
from mangostore.sql import batches, placeholders

if TYPE_CHECKING:
    from mangostore.kg.ports import ConversationDatabase

__all__ = [
    "CONTEXT_TYPES",
    "ROLES",
    "ConversationService",
    "Message",
    "estimate_tokens",
    "open_content",
]

#: Who a message is from.
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
#: What a conversation is about.
CONTEXT_TYPES: tuple[str, ...] = ("general", "project", "terminal", "voice")
_TABLE = "ai_messages"
_COLUMN = "content"


def estimate_tokens(text: str) -> int:
    """Estimate the tokens of ``text``: ``ceil(len(text) / 4)`` (0 for empty text).

    Four characters a token is the common rule of thumb for English and BPE tokenizers;
    pass ``token_count=`` to :meth:`ConversationService.append` when the model's own
    tokenizer has counted.
    """
    return math.ceil(len(text) / 4)


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation; ``repr`` never shows its content."""

    id: str
    conversation_id: str
    user_id: str
    seq: int
    role: str
    content: str
    token_count: int
    created_at: int

    def __repr__(self) -> str:
        return (
            f"Message(id={self.id!r}, conversation_id={self.conversation_id!r}, "
            f"seq={self.seq}, role={self.role!r}, content=<{len(self.content)} chars>, "
            f"token_count={self.token_count})"
        )


class ConversationService:
    """Conversations of one database: reach it as ``db.conversations``."""

    def __init__(self, db: ConversationDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<ConversationService of {self._db!r}>"

    # -- conversations ---------------------------------------------------------------------

    def create(
        self,
        user_id: str,
        *,
        title: str | None = None,
        project_id: str | None = None,
        context_type: str = "general",
        data: Any = None,
        ttl: Duration | None = None,
    ) -> AIConversation:
        """Start a conversation.

        Args:
            user_id: whose conversation.
            title: a title to show.
            project_id: the project it is about.
            context_type: one of :data:`CONTEXT_TYPES`.
            data: any JSON metadata, stored encrypted in ``conversation_data``.
            ttl: how long until it expires (milliseconds, or a ``timedelta``).

        Returns:
            The conversation, ``active``, with ``token_count`` 0.

        Raises:
            InvalidValueError, JSONValueError: bad input.
            ForeignKeyError: the user or project does not exist.
        """
        lifetime = ttl_ms(ttl)
        now = self._db.clock.now_ms()
        return self._db.ai_conversations.create(
            user_id=user_id,
            project_id=project_id,
            title=title,
            context_type=context_type,
            status="active",
            conversation_data=data,
            token_count=0,
            created_at=now,
            expires_at=None if lifetime is None else now + lifetime,
        )

    def archive(self, conversation_id: str) -> AIConversation:
        """Archive a conversation: it stays readable and takes no new messages.

        Archiving an archived conversation changes nothing.

        Raises:
            NotFoundError: no such conversation.
            InvalidTransitionError: it was deleted or has expired.
        """
        with self._db.transaction():
            conversation = self._live(conversation_id, "archived")
            if conversation.status == "archived":
                return conversation
            return self._db.ai_conversations.update(conversation_id, status="archived")

    def expire(self, conversation_id: str, *, at: Instant | None = None) -> AIConversation:
        """Set when a conversation expires (epoch ms or an aware datetime; default now).

        From that time it is hidden; :meth:`sweep` deletes its messages.

        Raises:
            NotFoundError: no such conversation.
            InvalidValueError: ``at`` is not a time.
        """
        when = self._db.clock.now_ms() if at is None else epoch_ms(at, "at")
        return self._db.ai_conversations.update(conversation_id, expires_at=when)

    def delete(self, conversation_id: str) -> int:
        """Delete a conversation's messages and data now and mark it ``deleted``.

        Returns:
            How many messages were deleted.

        Raises:
            NotFoundError: no such conversation.
        """
        with self._db.transaction():
            self._db.ai_conversations.get(conversation_id)
            return self._erase([conversation_id])

    def sweep(self, now: Instant | None = None) -> int:
        """Delete the messages and data of every conversation past ``expires_at``.

        Args:
            now: the time to sweep as of (epoch ms or an aware datetime); default
                the database's clock.

        Returns:
            How many conversations were marked ``deleted``.

        Raises:
            InvalidValueError: ``now`` is not a time.
        """
        moment = epoch_ms(now, "now")
        with self._db.transaction():
            at = self._db.clock.now_ms() if moment is None else moment
            ids = [
                str(r[0])
                for r in self._db.query(
                    "SELECT id FROM ai_conversations WHERE expires_at <= ? "
                    "AND (status IS NULL OR status != 'deleted')",
                    (at,),
                )
            ]
            for chunk in batches(ids):
                self._erase(chunk)
            return len(ids)

    # -- messages --------------------------------------------------------------------------

    def append(
        self,
        conversation_id: str,
        role: str,
        content: str,
        *,
        token_count: int | None = None,
    ) -> Message:
        """Add a message at the end of an active conversation.

        Inserts one row (content encrypted when the database has a keyring) and adds
        its tokens to the conversation's ``token_count``; nothing else is rewritten.

        Args:
            conversation_id: the conversation.
            role: one of :data:`ROLES`.
            content: the text (at most ``Settings.json_max_bytes`` bytes of UTF-8).
            token_count: the message's tokens; default :func:`estimate_tokens`.

        Returns:
            The message, with its number ``seq`` in the conversation.

        Raises:
            NotFoundError: no such conversation.
            InvalidTransitionError: it is archived, deleted or expired.
            InvalidValueError: a bad role, content or token count.
        """
        if role not in ROLES or not isinstance(role, str):
            raise InvalidValueError(
                f"role must be one of {', '.join(ROLES)}; got {role!r}", field="role"
            )
        data = self._encode(content)
        if token_count is None:
            tokens = estimate_tokens(content)
        elif (
            isinstance(token_count, int) and not isinstance(token_count, bool) and token_count >= 0
        ):
            tokens = token_count
        else:
            raise InvalidValueError(
                "token_count must be a non-negative integer", field="token_count"
            )
        cipher = field_cipher_for(self._db)
        with self._db.store.transaction() as conn:
            conversation = self._live(conversation_id, "given a message")
            if conversation.status == "archived":
                raise InvalidTransitionError(
                    f"conversation {conversation_id!r} is archived and takes no new messages"
                )
            now = self._db.clock.now_ms()
            message_id = new_id()
            owner = conversation.user_id
            stored: bytes | str = content
            if cipher is not None:
                stored = cipher.encrypt(conn, _TABLE, _COLUMN, message_id, owner, data)
            (seq,) = self._db.query(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM ai_messages WHERE conversation_id = ?",
                (conversation_id,),
            )[0]
            self._db.execute(
                "INSERT INTO ai_messages (id, conversation_id, user_id, seq, role, content, "
                "token_count, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (message_id, conversation_id, owner, seq, role, stored, tokens, now),
            )
            self._db.execute(
                "UPDATE ai_conversations SET token_count = COALESCE(token_count, 0) + ?, "
                "last_message_at = ? WHERE id = ?",
                (tokens, now, conversation_id),
            )
        return Message(message_id, conversation_id, owner, int(seq), role, content, tokens, now)

    def messages(
        self,
        conversation_id: str,
        *,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[Message]:
        """Return a conversation's messages in order, decrypted.

        An expired or deleted conversation has none.

        Args:
            conversation_id: the conversation.
            after_seq: only messages numbered above this (to page through, or to fetch
                what arrived since).
            limit: at most this many.

        Raises:
            NotFoundError: no such conversation.
            TamperedDataError: a message was altered or moved outside mangostore.
            InvalidValueError: a bad ``after_seq`` or ``limit``.
        """
        _check_count("after_seq", after_seq, minimum=0)
        if limit is not None:
            _check_count("limit", limit, minimum=1)
        conversation = self._db.ai_conversations.get(conversation_id)
        if self._hidden(conversation):
            return []
        rows = self._db.query(
            "SELECT id, conversation_id, user_id, seq, role, content, token_count, created_at "
            "FROM ai_messages WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (conversation_id, after_seq, -1 if limit is None else limit),
        )
        return self._decode(rows)

    def window(self, conversation_id: str, max_tokens: int) -> list[Message]:
        """Return the newest messages whose tokens add up to at most ``max_tokens``, in order.

        What to hand a model with a limited context: the latest turns that fit.

        Raises:
            NotFoundError: no such conversation.
            InvalidValueError: ``max_tokens`` is not a non-negative integer.
        """
        _check_count("max_tokens", max_tokens, minimum=0)
        conversation = self._db.ai_conversations.get(conversation_id)
        if self._hidden(conversation):
            return []
        # SQLite sums the tokens from the newest message back; the sum only grows, so
        # the rows within the budget are exactly the newest ones that fit, without gaps,
        # and only they are read and decrypted.
        rows = self._db.query(
            "SELECT id, conversation_id, user_id, seq, role, content, token_count, created_at "
            "FROM (SELECT *, SUM(token_count) OVER (ORDER BY seq DESC) AS total "
            "FROM ai_messages WHERE conversation_id = ?) "
            "WHERE total <= ? ORDER BY seq",
            (conversation_id, max_tokens),
        )
        return self._decode(rows)

    # -- internals -------------------------------------------------------------------------

    def _live(self, conversation_id: str, what: str) -> AIConversation:
        """Return the conversation if it can still change; refuse a deleted or expired one."""
        conversation = self._db.ai_conversations.get(conversation_id)
        if conversation.status == "deleted" or self._hidden(conversation):
            state = "deleted" if conversation.status == "deleted" else "expired"
            raise InvalidTransitionError(
                f"conversation {conversation_id!r} is {state} and cannot be {what}"
            )
        return conversation

    def _hidden(self, conversation: AIConversation) -> bool:
        expires_at = conversation.expires_at
        return conversation.status == "deleted" or (
            expires_at is not None and expires_at <= self._db.clock.now_ms()
        )

    def _erase(self, ids: Sequence[str]) -> int:
        marks = placeholders(len(ids))
        deleted = self._db.execute(
            f"DELETE FROM ai_messages WHERE conversation_id IN ({marks})", tuple(ids)
        )
        self._db.execute(
            "UPDATE ai_conversations SET status = 'deleted', conversation_data = NULL "
            f"WHERE id IN ({marks})",
            tuple(ids),
        )
        return deleted

    def _encode(self, content: Any) -> bytes:
        if not isinstance(content, str):
            raise InvalidValueError("content must be a string", field="content")
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidValueError(
                "content contains characters that are not valid Unicode (an unpaired surrogate)",
                field="content",
            ) from None
        limit = self._db.settings.json_max_bytes
        if len(data) > limit:
            raise InvalidValueError(
                f"content is larger than the {limit}-byte limit (Settings.json_max_bytes)",
                field="content",
            )
        return data

    def _decode(self, rows: Sequence[Any]) -> list[Message]:
        cipher: FieldCipher | None = field_cipher_for(self._db)
        return [
            Message(
                id=str(row[0]),
                conversation_id=str(row[1]),
                user_id=str(row[2]),
                seq=int(row[3]),
                role=str(row[4]),
                content=open_content(cipher, row),
                token_count=int(row[6]),
                created_at=int(row[7]),
            )
            for row in rows
        ]


def open_content(cipher: FieldCipher | None, row: Any) -> str:
    """Return the text of one ``ai_messages`` row, decrypted when it is an envelope.

    Args:
        cipher: the database's field cipher
            (:func:`~mangostore.keys.field_cipher.field_cipher_for`), ``None`` when it
            has no keyring.
        row: the message's columns in table order: ``id``, ``conversation_id``,
            ``user_id``, ``seq``, ``role``, ``content``, ...

    Returns:
        The message's text.

    Raises:
        TamperedDataError: the database has a keyring but the content is plain text, or
            the envelope is not genuine for this message and owner, or its key was
            destroyed.
        ConfigurationError: the content is encrypted but there is no cipher to open it.
    """
    message_id, owner, stored = str(row[0]), str(row[2]), row[5]
    if isinstance(stored, str):
        if cipher is not None:
            # With a keyring every message is an envelope: text here was written
            # around mangostore and must not be trusted.
            raise TamperedDataError(
                f"ai_messages.content of message {message_id!r} is not an encrypted envelope: "
                "it was modified outside mangostore"
            )
        return stored
    if cipher is None:
        raise ConfigurationError(
            "conversation messages are encrypted; open the database with its passphrase "
            "to read them"
        )
    return cipher.decrypt(_TABLE, _COLUMN, message_id, owner, bytes(stored)).decode("utf-8")


def _check_count(name: str, value: Any, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidValueError(f"{name} must be an integer of at least {minimum}", field=name)
