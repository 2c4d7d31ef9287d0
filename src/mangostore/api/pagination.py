"""Cursor pagination: pages of a user's rows, newest first, by keyset.

A page is ``{"items": [...], "next_cursor": "..." | null}``. The cursor is opaque
to clients (base64url of the last id seen); a page continues after it, so rows
added meanwhile never shift a page the way an offset would. Ids are UUIDv7, so
their order is the order rows were made in.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from mangostore import Database
from mangostore.api.problems import ApiProblem

__all__ = ["PAGED_TABLES", "decode_cursor", "encode_cursor", "in_order", "page_ids"]

#: The tables pages are read from, and the column naming the owner of a row.
PAGED_TABLES = {
    "projects": "user_id",
    "terminal_sessions": "user_id",
    "command_history": "user_id",
    "notifications": "user_id",
    "ai_conversations": "user_id",
}
#: Columns a page may be filtered by, per table (equality only).
_FILTERS = {
    "projects": frozenset({"status"}),
    "terminal_sessions": frozenset({"status", "project_id"}),
    "command_history": frozenset({"project_id", "terminal_session_id"}),
    "notifications": frozenset({"status", "project_id"}),
    "ai_conversations": frozenset({"status", "project_id"}),
}


def encode_cursor(last_id: str) -> str:
    """The cursor of the page after ``last_id``."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The id a cursor continues after (``None`` for the first page).

    Raises:
        ApiProblem: the cursor is not one this API made (422).
    """
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text or not text.isprintable() or len(text) > 64:
        raise ApiProblem(
            422,
            "invalid-cursor",
            "The cursor is not valid",
            "the cursor is not one this API gave: pass next_cursor from the previous page, "
            "or leave it out for the first page",
            field="cursor",
        )
    return text


def page_ids(
    db: Database,
    table: str,
    owner: str,
    cursor: str | None,
    limit: int,
    filters: dict[str, Any] | None = None,
) -> tuple[list[str], str | None]:
    """The ids of one page of ``owner``'s rows of ``table``, newest first, and the
    cursor of the next page (``None`` on the last one).

    ``table`` and the filter names come from the allow-lists above, never from input.
    """
    owner_column = PAGED_TABLES[table]
    sql = f'SELECT id FROM "{table}" WHERE "{owner_column}" = ?'
    params: list[Any] = [owner]
    after = decode_cursor(cursor)
    if after is not None:
        sql += " AND id < ?"
        params.append(after)
    for name, value in sorted((filters or {}).items()):
        if value is None:
            continue
        if name not in _FILTERS[table]:
            raise ValueError(f"{table} pages cannot be filtered by {name}")
        sql += f' AND "{name}" = ?'
        params.append(value)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit + 1)
    ids = [str(row[0]) for row in db.query(sql, params)]
    more = len(ids) > limit
    ids = ids[:limit]
    return ids, encode_cursor(ids[-1]) if more and ids else None


def in_order(records: Sequence[Any], ids: Sequence[str]) -> list[Any]:
    """``records`` in the order of ``ids`` (a repository's ``list(id=ids)`` has its own)."""
    by_id = {record.id: record for record in records}
    return [by_id[i] for i in ids if i in by_id]
