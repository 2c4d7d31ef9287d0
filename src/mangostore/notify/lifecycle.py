"""The notification lifecycle: the statuses, the moves allowed between them, the inbox.

Every status change goes through :meth:`Lifecycle.try_move`, a conditional update
that refuses a move the lifecycle does not allow and one from a status that
changed meanwhile, so concurrent writers never skip a step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mangostore.errors import InvalidTransitionError, InvalidValueError, NotFoundError
from mangostore.notify.delivery import DeliveryQueue
from mangostore.notify.ports import NotifyDatabase
from mangostore.records import Notification
from mangostore.sql import batches, placeholders

__all__ = [
    "STATUSES",
    "TRANSITIONS",
    "Lifecycle",
    "check_count",
    "check_ids",
    "check_transition",
]

#: Every status a notification can have.
STATUSES: tuple[str, ...] = ("pending", "delivered", "read", "dismissed", "failed")
#: The lifecycle: the statuses each status may move to. Anything else is refused.
TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"delivered", "failed", "dismissed"}),
    "failed": frozenset({"pending", "delivered", "dismissed"}),
    "delivered": frozenset({"read", "dismissed"}),
    "read": frozenset({"dismissed"}),
    "dismissed": frozenset(),
}
#: The timestamp column each status sets when a notification enters it.
_STAMPS = {"delivered": "delivered_at", "read": "read_at", "dismissed": "dismissed_at"}
#: Why outstanding deliveries are cancelled when a notification enters these statuses.
_CANCELS = {
    "delivered": "marked delivered before this method delivered it",
    "dismissed": "dismissed before delivery",
}


def check_transition(current: str | None, target: str) -> None:
    """Refuse a status change the lifecycle does not allow.

    Raises:
        InvalidTransitionError: ``current -> target`` is not in :data:`TRANSITIONS`.
    """
    state = current or "pending"
    if target not in TRANSITIONS.get(state, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS.get(state, ()))) or "nothing"
        raise InvalidTransitionError(
            f"a {state} notification cannot become {target} (it can become: {allowed})"
        )


def check_count(value: Any, field: str) -> int:
    """Return ``value`` if it is a non-negative integer (a limit, a count).

    Raises:
        InvalidValueError: naming ``field``.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidValueError(f"{field} must be a non-negative integer", field=field)
    return value


def check_ids(ids: str | Iterable[str]) -> list[str]:
    """Return one id, or many, as a list without repeats, in order.

    Raises:
        InvalidValueError: an id is not a string.
    """
    items = [ids] if isinstance(ids, str) else list(ids)
    for item in items:
        if not isinstance(item, str):
            raise InvalidValueError("notification ids must be strings", field="ids")
    return list(dict.fromkeys(items))


class Lifecycle:
    """Status changes and the inbox of one database (``db.notify`` delegates here).

    It cancels deliveries through ``queue`` when a notification leaves the
    delivery states.
    """

    def __init__(self, db: NotifyDatabase, queue: DeliveryQueue) -> None:
        self._db = db
        self._queue = queue

    def transition(self, ids: str | Iterable[str], status: str) -> list[Notification]:
        """Move notifications, all or none; see :meth:`NotificationService.transition`."""
        if status not in STATUSES:
            raise InvalidValueError(
                f"status must be one of {', '.join(STATUSES)}; got {status!r}", field="status"
            )
        wanted = check_ids(ids)
        now = self._db.clock.now_ms()
        with self._db.transaction():
            current: dict[str, str] = {}
            for chunk in batches(wanted):
                marks = placeholders(len(chunk))
                for row in self._db.query(
                    f"SELECT id, status FROM notifications WHERE id IN ({marks})", chunk
                ):
                    current[row[0]] = row[1] or "pending"
            missing = [i for i in wanted if i not in current]
            if missing:
                raise NotFoundError(f"no notification has id {missing[0]!r}; nothing was changed")
            # Every move is checked before any is made: all or none.
            for notification_id in wanted:
                try:
                    check_transition(current[notification_id], status)
                except InvalidTransitionError as exc:
                    raise InvalidTransitionError(
                        f"notification {notification_id}: {exc}; nothing was changed"
                    ) from None
            for notification_id in wanted:
                self.move(notification_id, current[notification_id], status, now, cancel=True)
            return self.records(wanted)

    def unread(
        self, user_id: str, *, project_id: str | None, limit: int | None
    ) -> list[Notification]:
        """Return the user's delivered, unread, unexpired notifications, newest first."""
        now = self._db.clock.now_ms()
        sql = (
            "SELECT id FROM notifications WHERE user_id = ? AND status = 'delivered' "
            "AND (expires_at IS NULL OR expires_at > ?)"
        )
        params: list[Any] = [user_id, now]
        if project_id is not None:
            sql += " AND project_id = ?"
            params.append(project_id)
        sql += " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(check_count(limit, "limit"))
        return self.records([r[0] for r in self._db.query(sql, params)])

    def history(
        self, user_id: str, *, status: str | None, limit: int | None, offset: int | None
    ) -> list[Notification]:
        """Return the user's notifications in any (or one) status, newest first."""
        filters: dict[str, Any] = {"user_id": user_id}
        if status is not None:
            filters["status"] = status
        return self._db.notifications.list(
            order_by=["-created_at", "-id"], limit=limit, offset=offset, **filters
        )

    def move(
        self, notification_id: str, current: str, target: str, now: int, *, cancel: bool = False
    ) -> None:
        """Change one status inside the caller's transaction; refuse it if it changed.

        With ``cancel``, entering ``delivered`` or ``dismissed`` also cancels the
        deliveries not made yet.

        Raises:
            InvalidTransitionError: the move is not allowed, or the status is no longer
                ``current``.
        """
        if not self.try_move(notification_id, current, target, now):
            raise InvalidTransitionError(
                f"notification {notification_id} changed status while being updated; "
                "nothing was changed"
            )
        if cancel and target in _CANCELS:
            # Nothing is delivered after the notification left the delivery states.
            self._queue.cancel(notification_id, _CANCELS[target])

    def try_move(self, notification_id: str, current: str, target: str, now: int) -> bool:
        """Change one status if it is still ``current``; return whether it changed.

        Raises:
            InvalidTransitionError: the lifecycle does not allow ``current -> target``.
        """
        check_transition(current, target)
        stamp = _STAMPS.get(target)
        assignments = "status = ?" + (f", {stamp} = ?" if stamp else "")
        params: list[Any] = [target, *([now] if stamp else []), notification_id, current]
        changed = self._db.execute(
            f"UPDATE notifications SET {assignments} WHERE id = ? "
            "AND coalesce(status, 'pending') = ?",
            params,
        )
        return bool(changed)

    def records(self, ids: list[str]) -> list[Notification]:
        """Return the notifications with these ids, in this order (missing ones left out)."""
        found: dict[str, Notification] = {}
        for chunk in batches(ids):
            for record in self._db.notifications.list(id=chunk):
                found[record.id] = record
        return [found[i] for i in ids if i in found]
