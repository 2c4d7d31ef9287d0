"""Sending: record a notification, queue one delivery per method, deliver what is due now.

Every write of a send runs in one transaction; the deliverers are called after it
commits (see :mod:`mangostore.notify.dispatch`), and their outcomes are recorded in
a second one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from mangostore.clock import Instant, epoch_ms
from mangostore.errors import InvalidValueError
from mangostore.notify.actions import action_fields, check_action
from mangostore.notify.catalog import TypeCatalog
from mangostore.notify.delivery import Claim, DeliveryQueue, Planned
from mangostore.notify.dispatch import EXPIRED, Dispatcher
from mangostore.notify.lifecycle import Lifecycle
from mangostore.notify.ports import NotifyDatabase
from mangostore.notify.preference_store import PreferenceStore
from mangostore.notify.preferences import Resolution, check_priority, resolve
from mangostore.notify.templates import ParamValue, compiled
from mangostore.records import Notification

__all__ = ["Sender"]


class Sender:
    """Sends the notifications of one database (``db.notify`` delegates here).

    It reads types from ``catalog`` and preferences from ``preferences``, queues
    deliveries in ``queue``, runs them through ``dispatcher`` and moves statuses
    through ``lifecycle``.
    """

    def __init__(
        self,
        db: NotifyDatabase,
        *,
        catalog: TypeCatalog,
        preferences: PreferenceStore,
        queue: DeliveryQueue,
        dispatcher: Dispatcher,
        lifecycle: Lifecycle,
    ) -> None:
        self._db = db
        self._catalog = catalog
        self._preferences = preferences
        self._queue = queue
        self._dispatcher = dispatcher
        self._lifecycle = lifecycle

    def send(
        self,
        user_id: str,
        type: str,
        params: Mapping[str, ParamValue] | None,
        *,
        project_id: str | None,
        priority: str | None,
        scheduled_at: Instant | None,
        expires_at: Instant | None,
        title: str | None,
        metadata: Any,
        actions: Sequence[Mapping[str, Any]],
        deliver: bool,
    ) -> Notification:
        """Record a notification and deliver what is due now; see
        :meth:`NotificationService.send`."""
        now = self._db.clock.now_ms()
        ntype = self._catalog.get(type)
        message = compiled(ntype.template).render(params)
        level = check_priority(priority) if priority is not None else ntype.priority or "normal"
        scheduled_at = epoch_ms(scheduled_at, "scheduled_at")
        expires_at = epoch_ms(expires_at, "expires_at")
        if title is not None and not isinstance(title, str):
            raise InvalidValueError("title must be a string", field="title")
        extra = [check_action(a, i) for i, a in enumerate(actions)]
        at = now if scheduled_at is None else max(now, scheduled_at)
        # Read before writing: these reads then use the reader pool, not the write lock.
        zone = self._preferences.zone(user_id)
        plan = resolve(
            priority=level,
            preference=self._preferences.effective(user_id, ntype),
            project_id=project_id,
            zone=zone,
            at_ms=at,
        )
        expired = expires_at is not None and expires_at <= at
        fields: dict[str, Any] = {
            "user_id": user_id,
            "project_id": project_id,
            "notification_type_id": ntype.id,
            "title": ntype.name if title is None else title,
            "message": message,
            "priority": level,
            "status": "pending",
            "delivery_methods": list(plan.methods),
            "metadata": metadata,
            "scheduled_at": plan.held_until if plan.held else scheduled_at,
            "expires_at": expires_at,
            "created_at": now,
        }
        if not plan.enabled:
            # Recorded (and kept until retention) but never delivered or shown unread.
            fields |= {"status": "dismissed", "dismissed_at": now}
        elif not plan.methods and at <= now and not expired:
            fields |= {"status": "delivered", "delivered_at": now}
        every_action = [*(ntype.default_actions or []), *extra]
        claims: list[Claim] = []
        with self._db.transaction():
            notification = self._db.notifications.create(**fields)
            if plan.enabled and plan.methods:
                claims = self._plan(notification.id, plan, at, now, expired, deliver)
            if every_action:
                self._db.notification_actions.create_many(
                    action_fields(notification.id, a, now) for a in every_action
                )
        if not claims:
            return notification
        outcomes = DeliveryQueue.run(
            self._dispatcher.deliverers(), {notification.id: notification}, claims
        )
        finished = self._db.clock.now_ms()
        with self._db.transaction():
            self._queue.record(outcomes, finished)
            everything = len(claims) == len(plan.methods) and all(o.error is None for o in outcomes)
            # The common case needs no re-reading: every method delivered just now.
            if everything and self._lifecycle.try_move(
                notification.id, "pending", "delivered", finished
            ):
                return dataclasses.replace(notification, status="delivered", delivered_at=finished)
            self._dispatcher.settle(notification.id, finished)
            return self._db.notifications.get(notification.id)

    def _plan(
        self,
        notification_id: str,
        plan: Resolution,
        at: int,
        now: int,
        expired: bool,
        deliver: bool,
    ) -> list[Claim]:
        """Queue one delivery per method; return those to run right away."""
        registered = self._dispatcher.deliverers()
        planned: list[Planned] = []
        for method in plan.methods:
            due = plan.held_until if method in plan.held and plan.held_until else at
            planned.append(
                Planned(
                    method,
                    due,
                    # Claimed at birth when it runs now: no scheduler can take it meanwhile.
                    claim=deliver and due <= now and method in registered,
                    cancelled=EXPIRED if expired else None,
                )
            )
        return self._queue.add(notification_id, planned, now)
