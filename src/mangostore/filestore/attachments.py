"""Files an AI conversation refers to: ``db.files.attachments``.

An attachment ties a stored file to a conversation (and, optionally, to one of its
messages). The file belongs to the attachment from then on: removing the attachment,
or deleting its conversation or message, deletes the file once no other row refers to
it (a voice profile's training file, a command's recording, another attachment), and
the next sweep frees its chunks. The schema does this (migration 20), so it holds
for rows deleted by any path, sync included. A conversation may attach only files of
its own user.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mangostore.engine.connection import driver_errors
from mangostore.engine.store import Store
from mangostore.errors import NotFoundError, ValidationError
from mangostore.ids import new_id

__all__ = ["Attachment", "Attachments"]

_COLUMNS = "id, conversation_id, message_id, user_id, file_id, created_at"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A stored file attached to a conversation (or to one of its messages)."""

    id: str
    conversation_id: str
    message_id: str | None
    user_id: str
    file_id: str
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        """The attachment as a JSON-ready dict."""
        return dataclasses.asdict(self)


class Attachments:
    """Attachments of stored files to AI conversations. Reached as
    ``db.files.attachments``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"<Attachments {self._store.path!r}>"

    def add(
        self, conversation_id: str, file_id: str, *, message_id: str | None = None
    ) -> Attachment:
        """Attach stored file ``file_id`` to a conversation (and to ``message_id`` of
        it); attaching a file twice returns the first attachment.

        Raises:
            NotFoundError: no such conversation, file or message.
            ValidationError: the file is another user's, or the message is of another
                conversation.
        """
        self._store.check_open()
        with self._store.transaction() as conn, driver_errors("attaching a stored file"):
            conversation = conn.execute(
                "SELECT user_id FROM ai_conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if conversation is None:
                raise NotFoundError(f"no AI conversation with id {conversation_id!r}")
            stored = conn.execute("SELECT user_id FROM files WHERE id = ?", (file_id,)).fetchone()
            if stored is None:
                raise NotFoundError(
                    f"no stored file with id {file_id!r}; store it with db.files.put"
                )
            if stored[0] != conversation[0]:
                raise ValidationError(
                    f"file {file_id!r} belongs to another user than conversation "
                    f"{conversation_id!r}; store a copy for the conversation's user",
                    field="file_id",
                )
            if message_id is not None:
                message = conn.execute(
                    "SELECT conversation_id FROM ai_messages WHERE id = ?", (message_id,)
                ).fetchone()
                if message is None:
                    raise NotFoundError(f"no AI message with id {message_id!r}")
                if message[0] != conversation_id:
                    raise ValidationError(
                        f"message {message_id!r} is of another conversation",
                        field="message_id",
                    )
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM ai_attachments WHERE conversation_id = ? AND file_id = ?",
                (conversation_id, file_id),
            ).fetchone()
            if row is None:
                row = conn.execute(
                    f"INSERT INTO ai_attachments ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                    f"RETURNING {_COLUMNS}",
                    (
                        new_id(),
                        conversation_id,
                        message_id,
                        conversation[0],
                        file_id,
                        self._store.clock.now_ms(),
                    ),
                ).fetchone()
        return _attachment(row)

    def list(self, conversation_id: str, *, message_id: str | None = None) -> list[Attachment]:
        """The attachments of a conversation (of one of its messages), oldest first."""
        self._store.check_open()
        sql = f"SELECT {_COLUMNS} FROM ai_attachments WHERE conversation_id = ?"
        params: list[Any] = [conversation_id]
        if message_id is not None:
            sql += " AND message_id = ?"
            params.append(message_id)
        with self._store.reading() as conn, driver_errors("listing attachments"):
            rows = conn.execute(sql + " ORDER BY created_at, id", params).fetchall()
        return [_attachment(row) for row in rows]

    def remove(self, attachment_id: str) -> None:
        """Remove an attachment; its file goes too unless another row refers to it.

        Raises:
            NotFoundError: no such attachment.
        """
        self._store.check_open()
        with self._store.transaction() as conn, driver_errors("removing an attachment"):
            gone = conn.execute(
                "DELETE FROM ai_attachments WHERE id = ?", (attachment_id,)
            ).rowcount
        if not gone:
            raise NotFoundError(f"no attachment with id {attachment_id!r}")


def _attachment(row: Sequence[Any]) -> Attachment:
    return Attachment(
        str(row[0]),
        str(row[1]),
        None if row[2] is None else str(row[2]),
        str(row[3]),
        str(row[4]),
        int(row[5]),
    )
