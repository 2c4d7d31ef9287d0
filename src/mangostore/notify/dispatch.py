"""Delivering: the registered deliverers, due deliveries and retries, settling statuses.

Deliverers are called outside any transaction, after the claims that reserve
their deliveries are committed: a slow desktop or voice engine never holds the
write lock, and a crash during delivery leaves the delivery due for the next run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from mangostore.errors import InvalidValueError
from mangostore.notify.delivery import (
    Deliverer,
    DeliveryQueue,
    DeliveryState,
    LogDeliverer,
    Outcome,
)
from mangostore.notify.lifecycle import Lifecycle, check_count
from mangostore.notify.ports import NotifyDatabase
from mangostore.notify.preferences import check_methods
from mangostore.records import Notification

__all__ = ["EXPIRED", "DeliveryReport", "Dispatcher"]

#: Why a delivery is cancelled when its notification expired before it was made.
EXPIRED = "expired before delivery"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one :meth:`NotificationService.deliver_due` run did.

    Attributes:
        attempted: deliveries handed to a deliverer.
        delivered: of those, the ones that succeeded.
        failed: the ones that failed and will be retried.
        gave_up: the ones that failed their last allowed attempt.
        expired: deliveries cancelled because their notification expired first.
        settled: notifications with nothing to deliver that reached their time.
    """

    attempted: int = 0
    delivered: int = 0
    failed: int = 0
    gave_up: int = 0
    expired: int = 0
    settled: int = 0


class Dispatcher:
    """Runs the deliveries of one database (``db.notify`` delegates here).

    Deliveries are queued in ``queue``; statuses follow them through ``lifecycle``.
    """

    def __init__(self, db: NotifyDatabase, queue: DeliveryQueue, lifecycle: Lifecycle) -> None:
        self._db = db
        self._queue = queue
        self._lifecycle = lifecycle
        self._deliverers: dict[str, Deliverer] = {"log": LogDeliverer()}
        # Deliverers may be registered while another thread delivers.
        self._lock = threading.Lock()

    # -- deliverers --------------------------------------------------------------------

    def register(self, deliverer: Deliverer) -> None:
        """Deliver by ``deliverer.method`` through it; see
        :meth:`NotificationService.register_deliverer`."""
        if not isinstance(deliverer, Deliverer):
            raise InvalidValueError(
                "a deliverer needs a method attribute and a deliver(notification) method",
                field="deliverer",
            )
        check_methods([deliverer.method], field="method")
        with self._lock:
            self._deliverers[deliverer.method] = deliverer

    def unregister(self, method: str) -> Deliverer | None:
        """Stop delivering by ``method``; return the deliverer that was registered."""
        with self._lock:
            return self._deliverers.pop(method, None)

    def deliverers(self) -> dict[str, Deliverer]:
        """Return the registered deliverers by method."""
        with self._lock:
            return dict(self._deliverers)

    # -- due deliveries ----------------------------------------------------------------

    def due(self, now: int | None, limit: int | None) -> list[Notification]:
        """Return pending notifications whose time has come; see
        :meth:`NotificationService.due`."""
        at = self._db.clock.now_ms() if now is None else now
        count = None if limit is None else check_count(limit, "limit")
        # INDEXED BY: without statistics SQLite prefers the design's index on status
        # alone, which reads every pending row and sorts them.
        base = (
            "SELECT id FROM notifications INDEXED BY idx_notifications_pending_scheduled "
            "WHERE status = 'pending' AND (expires_at IS NULL OR expires_at > ?) "
        )
        ids = [
            r[0]
            for r in self._db.query(
                base + "AND scheduled_at IS NULL ORDER BY created_at, id LIMIT ?",
                (at, -1 if count is None else count),
            )
        ]
        if count is None or len(ids) < count:
            ids += [
                r[0]
                for r in self._db.query(
                    base + "AND scheduled_at <= ? ORDER BY scheduled_at, created_at, id LIMIT ?",
                    (at, at, -1 if count is None else count - len(ids)),
                )
            ]
        return self._lifecycle.records(ids)

    def deliver_due(self, now: int | None, limit: int) -> DeliveryReport:
        """Run every delivery whose time has come; see :meth:`NotificationService.deliver_due`."""
        at = self._db.clock.now_ms() if now is None else now
        limit = check_count(limit, "limit")
        registered = self.deliverers()
        with self._db.transaction():
            expired = self._queue.cancel_expired(at, EXPIRED)
            claims = self._queue.claim_due(at, sorted(registered), limit)
            settled = self._settle_inbox_only(at)
            ids = [c.notification_id for c in claims]
            notifications = {n.id: n for n in self._lifecycle.records(ids)}
        outcomes = DeliveryQueue.run(registered, notifications, claims)
        with self._db.transaction():
            self.record(outcomes, self._db.clock.now_ms() if now is None else now)
        last = self._queue.retry.max_attempts
        return DeliveryReport(
            attempted=len(outcomes),
            delivered=sum(o.error is None for o in outcomes),
            failed=sum(o.error is not None and o.claim.attempt < last for o in outcomes),
            gave_up=sum(o.error is not None and o.claim.attempt >= last for o in outcomes),
            expired=expired,
            settled=settled,
        )

    def deliveries(self, notification_id: str) -> list[DeliveryState]:
        """Return where each method's delivery of a notification stands (attempts, errors)."""
        return self._queue.states(notification_id)

    # -- settling ----------------------------------------------------------------------

    def record(self, outcomes: list[Outcome], now: int) -> None:
        """Store the outcomes of deliveries and settle their notifications' statuses.

        Call inside a transaction.
        """
        for notification_id in self._queue.record(outcomes, now):
            self.settle(notification_id, now)

    def settle(self, notification_id: str, now: int) -> None:
        """Bring a notification's status in line with its deliveries (inside a transaction)."""
        rows = self._db.query(
            "SELECT n.status, n.scheduled_at, d.status FROM notifications n "
            "LEFT JOIN notification_deliveries d ON d.notification_id = n.id WHERE n.id = ?",
            (notification_id,),
        )
        if not rows:
            return
        current, scheduled_at = rows[0][0] or "pending", rows[0][1]
        if current not in ("pending", "failed"):
            return  # read or dismissed meanwhile: the person's choice stands
        states = {r[2] for r in rows if r[2] is not None}
        # A cancelled (expired) method was never delivered, so neither was the whole;
        # with no method at all, the notification reaches the inbox at its time.
        waiting = bool(states & {"pending", "cancelled"}) or (
            not states and scheduled_at is not None and scheduled_at > now
        )
        target = "failed" if "failed" in states else "pending" if waiting else "delivered"
        if target != current:
            self._lifecycle.move(notification_id, current, target, now)

    def _settle_inbox_only(self, at: int) -> int:
        """Mark delivered the due notifications that have no delivery left to make."""
        rows = self._db.query(
            "SELECT id FROM notifications n INDEXED BY idx_notifications_pending_scheduled "
            "WHERE status = 'pending' AND scheduled_at <= ? "
            "AND (expires_at IS NULL OR expires_at > ?) AND NOT EXISTS (SELECT 1 FROM "
            "notification_deliveries d WHERE d.notification_id = n.id "
            "AND d.status <> 'delivered')",
            (at, at),
        )
        for (notification_id,) in rows:
            self._lifecycle.move(notification_id, "pending", "delivered", at)
        return len(rows)
