"""Retention: notifications are deleted once older than their type's ``retention_days``."""

from __future__ import annotations

from mangostore.notify.ports import NotifyDatabase

__all__ = ["delete_old_notifications"]

_DAY_MS = 86_400_000


def delete_old_notifications(db: NotifyDatabase, now: int | None = None) -> int:
    """Delete the notifications of ``db`` older than their type's retention (by ``created_at``).

    Their actions and delivery rows go with them, in the same transaction. Types
    whose retention is ``None`` keep their notifications for ever.

    Args:
        db: the database.
        now: the time to apply the retention as of (default: the database clock).

    Returns:
        How many notifications were deleted.
    """
    at = db.clock.now_ms() if now is None else now
    deleted = 0
    with db.transaction():
        types = db.query(
            "SELECT id, retention_days FROM notification_types WHERE retention_days IS NOT NULL"
        )
        for type_id, days in types:
            # One type at a time, so each delete reads (type, created_at) by index.
            old = "SELECT id FROM notifications WHERE notification_type_id = ? AND created_at < ?"
            params = (type_id, at - days * _DAY_MS)
            db.execute(f"DELETE FROM notification_actions WHERE notification_id IN ({old})", params)
            db.execute(
                f"DELETE FROM notification_deliveries WHERE notification_id IN ({old})", params
            )
            deleted += db.execute(
                "DELETE FROM notifications WHERE notification_type_id = ? AND created_at < ?",
                params,
            )
    return deleted
