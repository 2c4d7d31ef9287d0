"""Routes of notifications: list, unread, read, dismiss, actions, and a stream of new
ones as server-sent events.

Notifications are shown by the terminal, so each route needs a permission on the
resource type ``terminal`` for the caller's own user id: ``read`` to look, ``write``
to mark read or dismiss, ``execute`` to record an action's execution.
"""

# Annotations are evaluated at once (no ``from __future__ import annotations``): FastAPI
# reads the route signatures, whose dependencies are local to the factory.
import functools
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from mangostore.api.pagination import in_order, page_ids
from mangostore.api.security import ApiContext, Caller
from mangostore.api.shapes import as_json, page
from mangostore.errors import AuthenticationError, NotFoundError

__all__ = ["notify_routes"]

Id = Annotated[str, Path(min_length=1, max_length=64)]
Status = Literal["pending", "delivered", "read", "dismissed", "failed"]
#: Notifications one poll of the stream sends at most; the rest follow at the next.
_STREAM_BATCH = 100
#: A comment line is sent after this many seconds without an event, so proxies and
#: clients see the connection is alive.
_KEEPALIVE_S = 15.0


class IdsBody(BaseModel):
    ids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]],
        Field(min_length=1, max_length=500),
    ]


class ActionResult(BaseModel):
    result: Annotated[str, Field(max_length=65536)] | None = None


def notify_routes(ctx: ApiContext) -> APIRouter:
    """The routes of notifications."""
    db = ctx.db
    router = APIRouter()
    CallerDep = Annotated[Caller, Depends(ctx.caller)]
    Limit = Annotated[int, Query(ge=1, le=ctx.settings.max_page_size)]
    Cursor = Annotated[str | None, Query(max_length=128)]
    default_limit = ctx.settings.page_size

    def owned(caller: Caller, ids: list[str]) -> list[str]:
        found = {n.id: n for n in db.notifications.list(id=list(set(ids)))}
        for i in ids:
            record = found.get(i)
            if record is None or record.user_id != caller.user_id:
                raise NotFoundError(f"no notifications record has id {i!r}")
        return ids

    @router.get("/v1/notifications", tags=["notifications"])
    def list_notifications(
        caller: CallerDep,
        cursor: Cursor = None,
        limit: Limit = default_limit,
        status: Status | None = None,
    ) -> dict[str, Any]:
        """The caller's notifications in any (or one) status, newest first."""
        ctx.allow(caller, "terminal", caller.user_id, "read")
        ids, after = page_ids(
            db, "notifications", caller.user_id, cursor, limit, {"status": status}
        )
        return page(in_order(db.notifications.list(id=ids), ids), after)

    @router.get("/v1/notifications/unread", tags=["notifications"])
    def unread(
        caller: CallerDep,
        limit: Limit = default_limit,
        project_id: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        """Delivered notifications not read, dismissed or expired, newest first."""
        ctx.allow(caller, "terminal", caller.user_id, "read")
        found = db.notify.unread(caller.user_id, project_id=project_id, limit=limit)
        return {"items": as_json(found)}

    @router.post("/v1/notifications/read", tags=["notifications"])
    def mark_read(caller: CallerDep, body: IdsBody) -> dict[str, Any]:
        """Mark notifications read: all of them, or none when one cannot be."""
        ctx.allow(caller, "terminal", caller.user_id, "write")
        return {"items": as_json(db.notify.mark_read(owned(caller, body.ids)))}

    @router.post("/v1/notifications/dismiss", tags=["notifications"])
    def dismiss(caller: CallerDep, body: IdsBody) -> dict[str, Any]:
        """Dismiss notifications (cancels deliveries not made yet): all or none."""
        ctx.allow(caller, "terminal", caller.user_id, "write")
        return {"items": as_json(db.notify.dismiss(owned(caller, body.ids)))}

    @router.get("/v1/notifications/{notification_id}/actions", tags=["notifications"])
    def actions(caller: CallerDep, notification_id: Id) -> dict[str, Any]:
        """A notification's actions."""
        ctx.allow(caller, "terminal", caller.user_id, "read")
        owned(caller, [notification_id])
        return {"items": as_json(db.notify.actions(notification_id))}

    @router.post(
        "/v1/notifications/{notification_id}/actions/{action_id}/execute", tags=["notifications"]
    )
    def execute(
        caller: CallerDep, notification_id: Id, action_id: Id, body: ActionResult
    ) -> dict[str, Any]:
        """Record that the caller ran an action, with its result: once only (a second
        time is 409). mangostore never runs the action's command itself."""
        ctx.allow(caller, "terminal", caller.user_id, "execute")
        owned(caller, [notification_id])
        if action_id not in {a.id for a in db.notify.actions(notification_id)}:
            raise NotFoundError(f"notification {notification_id!r} has no action {action_id!r}")
        return as_json(db.notify.execute_action(action_id, result=body.result))  # type: ignore[no-any-return]

    @router.get(
        "/v1/notifications/stream",
        tags=["notifications"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    def stream(
        caller: CallerDep,
        after: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        last_event_id: Annotated[str | None, Header(min_length=1, max_length=64)] = None,
        timeout_s: Annotated[int | None, Query(ge=1, le=ctx.settings.stream_max_s)] = None,
    ) -> StreamingResponse:
        """New notifications of the caller as server-sent events (``event: notification``,
        ``id`` the notification's id, ``data`` the notification as JSON), from those made
        after ``after`` (or ``Last-Event-ID``; by default, from now on). The stream ends
        after ``timeout_s`` seconds or when the session ends; reconnect with
        ``Last-Event-ID`` to continue without a gap."""
        ctx.allow(caller, "terminal", caller.user_id, "read")
        start = last_event_id or after
        if start is None:
            newest = db.query(
                "SELECT max(id) FROM notifications WHERE user_id = ?", [caller.user_id]
            )
            start = str(newest[0][0]) if newest and newest[0][0] is not None else ""
        lasting = float(timeout_s or ctx.settings.stream_max_s)
        return StreamingResponse(
            _events(ctx, caller, start, lasting),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router


async def _events(
    ctx: ApiContext, caller: Caller, start: str, lasting_s: float
) -> AsyncIterator[str]:
    """Poll for the caller's notifications after ``start`` until ``lasting_s`` is spent
    or the session stops being valid."""
    db = ctx.db
    poll_s = ctx.settings.stream_poll_ms / 1000
    ends = time.monotonic() + lasting_s
    last = start
    quiet_since = time.monotonic()
    yield "retry: 1000\n\n"
    while time.monotonic() < ends:
        try:
            # Checked without counting activity: a stream left open must not keep
            # an idle session alive.
            await anyio.to_thread.run_sync(db.sessions.peek, caller.token)
        except AuthenticationError:
            yield 'event: end\ndata: {"reason": "session ended"}\n\n'
            return
        rows = await anyio.to_thread.run_sync(
            db.query,
            "SELECT id FROM notifications WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?",
            [caller.user_id, last, _STREAM_BATCH],
        )
        ids = [str(row[0]) for row in rows]
        if ids:
            found = await anyio.to_thread.run_sync(functools.partial(db.notifications.list, id=ids))
            for record in in_order(found, ids):
                data = json.dumps(as_json(record), separators=(",", ":"))
                yield f"id: {record.id}\nevent: notification\ndata: {data}\n\n"
            last = ids[-1]
            quiet_since = time.monotonic()
            continue
        if time.monotonic() - quiet_since >= _KEEPALIVE_S:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        await anyio.sleep(min(poll_s, max(ends - time.monotonic(), 0)))
    yield 'event: end\ndata: {"reason": "timeout"}\n\n'
