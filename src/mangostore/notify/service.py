"""``db.notify``: notification types, preferences, sending, delivery, lifecycle, retention.

Every write of one operation runs in one transaction; deliverers are called outside
it, after the notification is committed, so a slow desktop or voice engine never
holds the write lock and a crash during delivery loses nothing: the delivery is
still recorded as due and the next :meth:`NotificationService.deliver_due` runs it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mangostore.errors import (
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
)
from mangostore.notify.delivery import (
    LOGGER_NAME,
    Claim,
    Deliverer,
    DeliveryQueue,
    DeliveryState,
    LogDeliverer,
    Outcome,
    Planned,
    RetryPolicy,
)
from mangostore.notify.preferences import (
    CATEGORIES,
    CATEGORY_METHODS,
    DEFAULT_ZONE,
    EffectivePreference,
    ProjectOverride,
    QuietHours,
    Resolution,
    check_methods,
    check_overrides,
    check_priority,
    load_zone,
    quiet_hours_fields,
    resolve,
)
from mangostore.notify.templates import ParamValue, Template
from mangostore.records import (
    Notification,
    NotificationAction,
    NotificationPreference,
    NotificationType,
)
from mangostore.sql import batches, placeholders

if TYPE_CHECKING:
    from mangostore.db import Database

__all__ = [
    "ACTION_TYPES",
    "STATUSES",
    "TRANSITIONS",
    "DeliveryReport",
    "NotificationService",
    "check_transition",
]

_log = logging.getLogger(LOGGER_NAME)

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
ACTION_TYPES: tuple[str, ...] = ("button", "voice_command", "auto")
_ACTION_KEYS = frozenset({"type", "label", "command", "data"})
_DAY_MS = 86_400_000
_RESULT_MAX_CHARS = 1_000
_EXPIRED = "expired before delivery"
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


@functools.lru_cache(maxsize=256)
def _compiled(text: str) -> Template:
    return Template.parse(text)


class NotificationService:
    """Notifications of one database: reach it as ``db.notify``."""

    def __init__(self, db: Database, *, retry: RetryPolicy | None = None) -> None:
        self._db = db
        self._queue = DeliveryQueue(db, retry or RetryPolicy())
        self._deliverers: dict[str, Deliverer] = {"log": LogDeliverer()}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<NotificationService of {self._db!r}>"

    @property
    def retry(self) -> RetryPolicy:
        """When failed deliveries are tried again; assign a :class:`RetryPolicy` to change it."""
        return self._queue.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        if not isinstance(policy, RetryPolicy):
            raise InvalidValueError("retry must be a RetryPolicy", field="retry")
        self._queue.retry = policy

    # -- deliverers --------------------------------------------------------------------

    def register_deliverer(self, deliverer: Deliverer) -> None:
        """Deliver the notifications of ``deliverer.method`` through ``deliverer``.

        It replaces the deliverer registered for that method before (the log method
        starts with :class:`LogDeliverer`). Deliveries of a method with no deliverer
        stay pending until one is registered.

        Raises:
            InvalidValueError: not a deliverer, or an unknown method.
        """
        if not isinstance(deliverer, Deliverer):
            raise InvalidValueError(
                "a deliverer needs a method attribute and a deliver(notification) method",
                field="deliverer",
            )
        check_methods([deliverer.method], field="method")
        with self._lock:
            self._deliverers[deliverer.method] = deliverer

    def unregister_deliverer(self, method: str) -> Deliverer | None:
        """Stop delivering by ``method``; return the deliverer that was registered."""
        with self._lock:
            return self._deliverers.pop(method, None)

    def deliverers(self) -> dict[str, Deliverer]:
        """Return the registered deliverers by method."""
        with self._lock:
            return dict(self._deliverers)

    # -- types -------------------------------------------------------------------------

    def register_type(
        self,
        name: str,
        *,
        category: str,
        template: str,
        priority: str = "normal",
        default_actions: Sequence[Mapping[str, Any]] = (),
        retention_days: int | None = 30,
    ) -> NotificationType:
        """Create the notification type ``name``, or update it if it exists.

        Registering at every start of an application is therefore safe.

        Args:
            name: unique name (``"build.finished"``).
            category: ``system``, ``voice``, ``ai`` or ``project``.
            template: message with bare ``{name}`` placeholders (``{{`` for a brace).
            priority: default priority of its notifications.
            default_actions: actions attached to every notification of the type, each
                ``{"type": "button" | "voice_command" | "auto", "label": ...,
                "command": ... (optional), "data": {...} (optional)}``.
            retention_days: days its notifications are kept (``None``: for ever).

        Raises:
            TemplateError: the template is malformed or uses more than bare names.
            InvalidValueError: a bad category, priority, action or retention.
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidValueError("a notification type needs a non-empty name", field="name")
        if category not in CATEGORIES:
            raise InvalidValueError(
                f"category must be one of {', '.join(CATEGORIES)}; got {category!r}",
                field="category",
            )
        check_priority(priority)
        if isinstance(template, str):
            _compiled(template)
        else:
            Template.parse(template)  # raises TemplateError
        actions = [_check_action(a, i) for i, a in enumerate(default_actions)]
        if retention_days is not None and (
            not isinstance(retention_days, int) or isinstance(retention_days, bool)
        ):
            raise InvalidValueError("retention_days must be an integer", field="retention_days")
        if retention_days is not None and retention_days < 0:
            raise InvalidValueError("retention_days must not be negative", field="retention_days")
        fields = {
            "category": category,
            "priority": priority,
            "template": template,
            "default_actions": actions,
            "retention_days": retention_days,
        }
        repo = self._db.notification_types
        with self._db.transaction():
            existing = repo.first(name=name)
            if existing is not None:
                return repo.update(existing.id, **fields)
            return repo.create(name=name, **fields)

    def get_type(self, name: str) -> NotificationType:
        """Return the type called ``name`` (an id is accepted too).

        Raises:
            NotFoundError: no such type.
        """
        repo = self._db.notification_types
        found = repo.first(name=name) if isinstance(name, str) else None
        if found is None and isinstance(name, str):
            found = repo.first(id=name)
        if found is None:
            raise NotFoundError(
                f"no notification type is called {name!r}; register it with db.notify.register_type"
            )
        return found

    # -- preferences -------------------------------------------------------------------

    def set_timezone(self, user_id: str, zone: str) -> None:
        """Set the IANA time zone quiet hours are read in (``users.preferences``).

        Raises:
            InvalidValueError: an unknown zone (``field="timezone"``).
            NotFoundError: no such user.
        """
        load_zone(zone)
        with self._db.transaction():
            user = self._db.users.get(user_id)
            prefs = user.preferences if user.preferences is not None else {}
            if not isinstance(prefs, dict):
                raise InvalidValueError(
                    "users.preferences must be a JSON object to hold a timezone",
                    field="preferences",
                )
            self._db.users.update(user_id, preferences={**prefs, "timezone": zone})

    def timezone(self, user_id: str) -> dt.tzinfo:
        """Return the user's time zone (``datetime.UTC`` unless set with :meth:`set_timezone`).

        Raises:
            NotFoundError: no such user.
        """
        return self._zone_of(user_id)

    def set_preferences(
        self,
        user_id: str,
        type: str,
        *,
        enabled: bool = True,
        delivery_methods: Iterable[str] | None = None,
        sound: bool = True,
        voice: bool | None = None,
        urgency_threshold: str = "normal",
        quiet_hours: tuple[str, str] | None = None,
        project_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> NotificationPreference:
        """Set (replacing) the user's preference for notifications of ``type``.

        Args:
            user_id: the user.
            type: the type's name.
            enabled: ``False`` records the type's notifications without delivering them.
            delivery_methods: among ``desktop``, ``voice``, ``log``; default: the
                type's category defaults.
            sound: play a sound with desktop notifications (a hint to the desktop
                deliverer).
            voice: allow the voice method; default: whether ``voice`` is among the
                methods.
            urgency_threshold: notifications below this priority go to the log only.
            quiet_hours: ``("22:00", "07:00")``, local time in the user's zone.
            project_overrides: ``{project_id: {"enabled": ..., "delivery_methods":
                [...], "urgency_threshold": ...}}``, each key optional.

        Raises:
            InvalidValueError: a bad method, priority, time or override (``field``
                names it).
            NotFoundError: no such user, type or project.
        """
        ntype = self.get_type(type)
        methods = (
            CATEGORY_METHODS[ntype.category]
            if delivery_methods is None
            else check_methods(delivery_methods)
        )
        fields: dict[str, Any] = {
            "enabled": _check_bool(enabled, "enabled"),
            "delivery_methods": list(methods),
            "sound_enabled": _check_bool(sound, "sound"),
            "voice_enabled": "voice" in methods if voice is None else _check_bool(voice, "voice"),
            "urgency_threshold": check_priority(urgency_threshold, field="urgency_threshold"),
            **quiet_hours_fields(quiet_hours),
        }
        overrides = check_overrides(project_overrides or {})
        with self._db.transaction():
            self._require_user(user_id)
            self._require_projects(overrides)
            fields["project_specific"] = {p: o.to_json() for p, o in overrides.items()} or None
            return self._upsert_preference(user_id, ntype.id, fields)

    def set_project_override(
        self,
        user_id: str,
        type: str,
        project_id: str,
        *,
        enabled: bool | None = None,
        delivery_methods: Iterable[str] | None = None,
        urgency_threshold: str | None = None,
    ) -> NotificationPreference:
        """Change how ``type`` is delivered for one project; ``None`` keeps the general value.

        Leaving all three ``None`` removes the project's override. The rest of the
        preference is kept (or made from the type's defaults if there is none).

        Raises:
            InvalidValueError: a bad method or priority.
            NotFoundError: no such user, type or project.
        """
        ntype = self.get_type(type)
        override = ProjectOverride(
            enabled=None if enabled is None else _check_bool(enabled, "enabled"),
            delivery_methods=None if delivery_methods is None else check_methods(delivery_methods),
            urgency_threshold=(
                None
                if urgency_threshold is None
                else check_priority(urgency_threshold, field="urgency_threshold")
            ),
        )
        with self._db.transaction():
            self._require_user(user_id)
            self._require_projects({project_id: override})
            row = self._preference_row(user_id, ntype.id)
            projects = dict(row.project_specific or {}) if row is not None else {}
            if override.to_json():
                projects[project_id] = override.to_json()
            else:
                projects.pop(project_id, None)
            fields: dict[str, Any] = {"project_specific": projects or None}
            if row is None:
                base = EffectivePreference.for_category(ntype.category)
                fields |= {
                    "delivery_methods": list(base.delivery_methods),
                    "voice_enabled": base.voice_enabled,
                }
            return self._upsert_preference(user_id, ntype.id, fields)

    def preference(self, user_id: str, type: str) -> EffectivePreference:
        """Return the preference that applies to the user's notifications of ``type``.

        Raises:
            NotFoundError: no such type.
        """
        ntype = self.get_type(type)
        return self._effective(self._preference_row(user_id, ntype.id), ntype)

    def resolve(
        self,
        user_id: str,
        type: str,
        *,
        priority: str | None = None,
        project_id: str | None = None,
        at: int | None = None,
    ) -> Resolution:
        """Tell where and when a notification would be delivered, without sending it.

        Raises:
            NotFoundError: no such user or type.
            InvalidValueError: an unknown priority.
        """
        ntype = self.get_type(type)
        level = check_priority(priority) if priority is not None else ntype.priority or "normal"
        return resolve(
            priority=level,
            preference=self._effective(self._preference_row(user_id, ntype.id), ntype),
            project_id=project_id,
            zone=self._zone_of(user_id),
            at_ms=self._db.clock.now_ms() if at is None else at,
        )

    # -- sending -----------------------------------------------------------------------

    def send(
        self,
        user_id: str,
        type: str,
        params: Mapping[str, ParamValue] | None = None,
        *,
        project_id: str | None = None,
        priority: str | None = None,
        scheduled_at: int | None = None,
        expires_at: int | None = None,
        title: str | None = None,
        metadata: Any = None,
        actions: Sequence[Mapping[str, Any]] = (),
        deliver: bool = True,
    ) -> Notification:
        """Record a notification and deliver what is due now.

        The message is the type's template filled with ``params``. Delivery methods
        are resolved from the type, the user's preference, the project's override,
        the urgency threshold and quiet hours (see ``docs/notifications.md``) and
        recorded in ``delivery_methods``.

        Args:
            user_id: the recipient.
            type: the type's name.
            params: one value per placeholder of the template (text or numbers).
            project_id: the project it is about (its override applies).
            priority: overrides the type's default priority.
            scheduled_at: deliver at this time (epoch ms) rather than now.
            expires_at: never deliver at or after this time (epoch ms).
            title: default: the type's name.
            metadata: JSON context for the application, encrypted at rest.
            actions: actions to attach besides the type's default ones (same shape).
            deliver: ``False`` only records; :meth:`deliver_due` delivers later.

        Returns:
            The notification as it stands after the deliveries made now.

        Raises:
            TemplateError: ``params`` do not match the template; nothing was written.
            InvalidValueError: a bad priority, time, title or action.
            NotFoundError: no such user or type.
            ForeignKeyError: no such project.
        """
        now = self._db.clock.now_ms()
        ntype = self.get_type(type)
        message = _compiled(ntype.template).render(params)
        level = check_priority(priority) if priority is not None else ntype.priority or "normal"
        _check_time(scheduled_at, "scheduled_at")
        _check_time(expires_at, "expires_at")
        if title is not None and not isinstance(title, str):
            raise InvalidValueError("title must be a string", field="title")
        extra = [_check_action(a, i) for i, a in enumerate(actions)]
        at = now if scheduled_at is None else max(now, scheduled_at)
        # Read before writing: these reads then use the reader pool, not the write lock.
        zone = self._zone_of(user_id)
        plan = resolve(
            priority=level,
            preference=self._effective(self._preference_row(user_id, ntype.id), ntype),
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
        actions = [*(ntype.default_actions or []), *extra]
        claims: list[Claim] = []
        with self._db.transaction():
            notification = self._db.notifications.create(**fields)
            if plan.enabled and plan.methods:
                claims = self._plan_deliveries(notification.id, plan, at, now, expired, deliver)
            if actions:
                self._db.notification_actions.create_many(
                    _action_fields(notification.id, a, now) for a in actions
                )
        if not claims:
            return notification
        outcomes = DeliveryQueue.run(self.deliverers(), {notification.id: notification}, claims)
        finished = self._db.clock.now_ms()
        with self._db.transaction():
            self._queue.record(outcomes, finished)
            everything = len(claims) == len(plan.methods) and all(o.error is None for o in outcomes)
            # The common case needs no re-reading: every method delivered just now.
            if everything and self._try_move(notification.id, "pending", "delivered", finished):
                return dataclasses.replace(notification, status="delivered", delivered_at=finished)
            self._settle(notification.id, finished)
            return self._db.notifications.get(notification.id)

    def _plan_deliveries(
        self,
        notification_id: str,
        plan: Resolution,
        at: int,
        now: int,
        expired: bool,
        deliver: bool,
    ) -> list[Claim]:
        """Queue one delivery per method; return those to run right away."""
        registered = self.deliverers()
        planned: list[Planned] = []
        for method in plan.methods:
            due = plan.held_until if method in plan.held and plan.held_until else at
            planned.append(
                Planned(
                    method,
                    due,
                    # Claimed at birth when it runs now: no scheduler can take it meanwhile.
                    claim=deliver and due <= now and method in registered,
                    cancelled=_EXPIRED if expired else None,
                )
            )
        return self._queue.add(notification_id, planned, now)

    # -- delivering --------------------------------------------------------------------

    def due(self, now: int | None = None, *, limit: int | None = None) -> list[Notification]:
        """Return pending notifications whose time has come and that have not expired.

        Those never scheduled come first (oldest first), then the scheduled ones by
        scheduled time.
        """
        at = self._db.clock.now_ms() if now is None else now
        count = None if limit is None else _check_count(limit, "limit")
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
        return self._records(ids)

    def deliver_due(self, now: int | None = None, *, limit: int = 1_000) -> DeliveryReport:
        """Run every delivery whose time has come (first tries and retries).

        Deliveries of an expired notification are cancelled instead; those of a
        method without a registered deliverer wait. Safe to call from several threads
        or processes at once: each delivery is claimed before it runs.

        Args:
            now: the time to deliver as of (default: the database clock).
            limit: most deliveries run in this call.

        Returns:
            A :class:`DeliveryReport` of what happened.
        """
        at = self._db.clock.now_ms() if now is None else now
        limit = _check_count(limit, "limit")
        registered = self.deliverers()
        with self._db.transaction():
            expired = self._queue.cancel_expired(at, _EXPIRED)
            claims = self._queue.claim_due(at, sorted(registered), limit)
            settled = self._settle_inbox_only(at)
            notifications = {n.id: n for n in self._records([c.notification_id for c in claims])}
        outcomes = DeliveryQueue.run(registered, notifications, claims)
        with self._db.transaction():
            self._record(outcomes, self._db.clock.now_ms() if now is None else now)
        last = self.retry.max_attempts
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

    def _record(self, outcomes: list[Outcome], now: int) -> None:
        """Store the outcomes of deliveries and settle their notifications' statuses."""
        for notification_id in self._queue.record(outcomes, now):
            self._settle(notification_id, now)

    def _settle(self, notification_id: str, now: int) -> None:
        """Bring a notification's status in line with its deliveries."""
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
            self._move(notification_id, current, target, now)

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
            self._move(notification_id, "pending", "delivered", at)
        return len(rows)

    # -- lifecycle ---------------------------------------------------------------------

    def transition(self, ids: str | Iterable[str], status: str) -> list[Notification]:
        """Move notifications to ``status``, all or none, enforcing :data:`TRANSITIONS`.

        Entering ``delivered``, ``read`` or ``dismissed`` stamps ``delivered_at``,
        ``read_at`` or ``dismissed_at``; dismissing cancels deliveries not yet made.

        Raises:
            InvalidTransitionError: one of them cannot make that change; none changed.
            NotFoundError: one of them does not exist; none changed.
            InvalidValueError: an unknown status.
        """
        if status not in STATUSES:
            raise InvalidValueError(
                f"status must be one of {', '.join(STATUSES)}; got {status!r}", field="status"
            )
        wanted = _ids(ids)
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
            for notification_id in wanted:
                try:
                    check_transition(current[notification_id], status)
                except InvalidTransitionError as exc:
                    raise InvalidTransitionError(
                        f"notification {notification_id}: {exc}; nothing was changed"
                    ) from None
            for notification_id in wanted:
                self._move(notification_id, current[notification_id], status, now, cancel=True)
            return self._records(wanted)

    def mark_read(self, ids: str | Iterable[str]) -> list[Notification]:
        """Mark delivered notifications read (all or none; see :meth:`transition`)."""
        return self.transition(ids, "read")

    def dismiss(self, ids: str | Iterable[str]) -> list[Notification]:
        """Dismiss notifications (all or none; see :meth:`transition`)."""
        return self.transition(ids, "dismissed")

    def unread(
        self, user_id: str, *, project_id: str | None = None, limit: int | None = None
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
            params.append(_check_count(limit, "limit"))
        return self._records([r[0] for r in self._db.query(sql, params)])

    def history(
        self,
        user_id: str,
        *,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Notification]:
        """Return the user's notifications in any (or one) status, newest first."""
        filters: dict[str, Any] = {"user_id": user_id}
        if status is not None:
            filters["status"] = status
        return self._db.notifications.list(
            order_by=["-created_at", "-id"], limit=limit, offset=offset, **filters
        )

    def _move(
        self, notification_id: str, current: str, target: str, now: int, *, cancel: bool = False
    ) -> None:
        """Change one status inside the caller's transaction; refuse it if it changed.

        With ``cancel``, entering ``delivered`` or ``dismissed`` also cancels the
        deliveries not made yet.
        """
        if not self._try_move(notification_id, current, target, now):
            raise InvalidTransitionError(
                f"notification {notification_id} changed status while being updated; "
                "nothing was changed"
            )
        if cancel and target in _CANCELS:
            # Nothing is delivered after the notification left the delivery states.
            self._queue.cancel(notification_id, _CANCELS[target])

    def _try_move(self, notification_id: str, current: str, target: str, now: int) -> bool:
        """Change one status if it is still ``current``; return whether it changed."""
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

    # -- actions -----------------------------------------------------------------------

    def attach_action(
        self,
        notification_id: str,
        action_type: str,
        label: str,
        *,
        command: str | None = None,
        data: Any = None,
    ) -> NotificationAction:
        """Attach a button, voice command or automatic action to a notification.

        Raises:
            NotFoundError: no such notification.
            InvalidValueError: an unknown action type or a bad label or command.
        """
        action = _check_action(
            {"type": action_type, "label": label, "command": command, "data": data}, 0
        )
        with self._db.transaction():
            if not self._db.notifications.exists(notification_id):
                raise NotFoundError(f"no notification has id {notification_id!r}")
            return self._create_action(notification_id, action, self._db.clock.now_ms())

    def actions(self, notification_id: str) -> list[NotificationAction]:
        """Return the actions attached to a notification, oldest first."""
        return self._db.notification_actions.list(
            notification_id=notification_id, order_by=["created_at", "id"]
        )

    def execute_action(
        self,
        action_id: str,
        run: Callable[[NotificationAction], str | None] | None = None,
        *,
        result: str | None = None,
    ) -> NotificationAction:
        """Execute an action once: record ``executed_at`` and its result.

        The action is claimed first (a conditional update), so of two concurrent
        calls exactly one runs it. With ``run``, its return value is the result;
        if it raises, the failure is recorded as the result and the exception
        propagates (the action still counts as executed). Without ``run``, the
        caller executed it and passes ``result``.

        Raises:
            InvalidTransitionError: the action was already executed.
            NotFoundError: no such action.
            InvalidValueError: both ``run`` and ``result`` were given.
        """
        if run is not None and result is not None:
            raise InvalidValueError("pass run or result, not both", field="result")
        if result is not None and not isinstance(result, str):
            raise InvalidValueError("result must be a string", field="result")
        now = self._db.clock.now_ms()
        with self._db.transaction():
            claimed = self._db.execute(
                "UPDATE notification_actions SET executed_at = ? "
                "WHERE id = ? AND executed_at IS NULL",
                (now, action_id),
            )
            if not claimed:
                action = self._db.notification_actions.get(action_id)  # NotFoundError
                raise InvalidTransitionError(
                    f"action {action_id} was already executed at {action.executed_at}; "
                    "an action runs only once"
                )
            action = self._db.notification_actions.get(action_id)
        if run is None:
            outcome = result
        else:
            try:
                returned = run(action)
            except Exception as exc:
                self._db.execute(
                    "UPDATE notification_actions SET execution_result = ? WHERE id = ?",
                    (f"{type(exc).__name__}: {exc}"[:_RESULT_MAX_CHARS], action_id),
                )
                raise
            outcome = None if returned is None else str(returned)
        if outcome is not None:
            self._db.execute(
                "UPDATE notification_actions SET execution_result = ? WHERE id = ?",
                (outcome, action_id),
            )
        return self._db.notification_actions.get(action_id)

    def _create_action(
        self, notification_id: str, action: Mapping[str, Any], now: int
    ) -> NotificationAction:
        return self._db.notification_actions.create(**_action_fields(notification_id, action, now))

    # -- retention ---------------------------------------------------------------------

    def apply_retention(self, now: int | None = None) -> int:
        """Delete notifications older than their type's ``retention_days`` (by ``created_at``).

        Their actions and delivery rows go with them, in the same transaction.
        Types whose retention is ``None`` keep their notifications for ever.

        Returns:
            How many notifications were deleted.
        """
        at = self._db.clock.now_ms() if now is None else now
        deleted = 0
        with self._db.transaction():
            types = self._db.query(
                "SELECT id, retention_days FROM notification_types WHERE retention_days IS NOT NULL"
            )
            for type_id, days in types:
                # One type at a time, so each delete reads (type, created_at) by index.
                old = (
                    "SELECT id FROM notifications WHERE notification_type_id = ? AND created_at < ?"
                )
                params = (type_id, at - days * _DAY_MS)
                self._db.execute(
                    f"DELETE FROM notification_actions WHERE notification_id IN ({old})", params
                )
                self._db.execute(
                    f"DELETE FROM notification_deliveries WHERE notification_id IN ({old})", params
                )
                deleted += self._db.execute(
                    "DELETE FROM notifications WHERE notification_type_id = ? AND created_at < ?",
                    params,
                )
        return deleted

    # -- helpers -----------------------------------------------------------------------

    def _records(self, ids: list[str]) -> list[Notification]:
        """Return the notifications with these ids, in this order."""
        found: dict[str, Notification] = {}
        for chunk in batches(ids):
            for record in self._db.notifications.list(id=chunk):
                found[record.id] = record
        return [found[i] for i in ids if i in found]

    def _zone_of(self, user_id: str) -> dt.tzinfo:
        rows = self._db.query("SELECT preferences FROM users WHERE id = ?", (user_id,))
        if not rows:
            raise NotFoundError(f"no users record has id {user_id!r}")
        text = rows[0][0]
        prefs = json.loads(text) if text is not None else None
        name = prefs.get("timezone") if isinstance(prefs, dict) else None
        if name is None or name == DEFAULT_ZONE:
            # Not ZoneInfo("UTC"): UTC must work without a time zone database.
            return dt.UTC
        try:
            return load_zone(name)
        except InvalidValueError:
            # A zone this system does not know must not lose the notification.
            _log.warning("user %s has an unknown time zone %r; using UTC", user_id, name)
            return dt.UTC

    def _require_user(self, user_id: str) -> None:
        if not self._db.users.exists(user_id):
            raise NotFoundError(f"no users record has id {user_id!r}")

    def _require_projects(self, overrides: Mapping[str, ProjectOverride]) -> None:
        for project_id in overrides:
            if not self._db.projects.exists(project_id):
                raise NotFoundError(f"no projects record has id {project_id!r}")

    def _preference_row(self, user_id: str, type_id: str) -> NotificationPreference | None:
        return self._db.notification_preferences.first(
            user_id=user_id, notification_type_id=type_id
        )

    def _upsert_preference(
        self, user_id: str, type_id: str, fields: dict[str, Any]
    ) -> NotificationPreference:
        repo = self._db.notification_preferences
        row = self._preference_row(user_id, type_id)
        if row is None:
            return repo.create(user_id=user_id, notification_type_id=type_id, **fields)
        return repo.update(row.id, **fields)

    @staticmethod
    def _effective(
        row: NotificationPreference | None, ntype: NotificationType
    ) -> EffectivePreference:
        if row is None:
            return EffectivePreference.for_category(ntype.category)
        methods = check_methods(row.delivery_methods)
        quiet = None
        if row.quiet_hours_start is not None and row.quiet_hours_end is not None:
            quiet = QuietHours.parse(row.quiet_hours_start, row.quiet_hours_end)
        projects = check_overrides(row.project_specific or {})
        return EffectivePreference(
            enabled=row.enabled is not False,
            delivery_methods=methods,
            voice_enabled=bool(row.voice_enabled),
            urgency_threshold=row.urgency_threshold or "normal",
            quiet_hours=quiet,
            projects=projects,
        )


# -- validation helpers --------------------------------------------------------------------


def _check_action(value: Any, index: int) -> dict[str, Any]:
    where = f"action {index}"
    if not isinstance(value, Mapping):
        raise InvalidValueError(f"{where} must be an object", field="actions")
    unknown = sorted(set(map(str, value)) - _ACTION_KEYS)
    if unknown:
        raise InvalidValueError(
            f"{where} has unknown key(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(_ACTION_KEYS))}",
            field="actions",
        )
    kind = value.get("type")
    if kind not in ACTION_TYPES:
        raise InvalidValueError(
            f"{where}: type must be one of {', '.join(ACTION_TYPES)}; got {kind!r}",
            field="action_type",
        )
    label = value.get("label")
    if not isinstance(label, str) or not label.strip():
        raise InvalidValueError(f"{where} needs a non-empty label", field="action_label")
    command = value.get("command")
    if command is not None and not isinstance(command, str):
        raise InvalidValueError(f"{where}: command must be a string", field="action_command")
    out: dict[str, Any] = {"type": kind, "label": label}
    if command is not None:
        out["command"] = command
    if value.get("data") is not None:
        out["data"] = value["data"]
    return out


def _action_fields(notification_id: str, action: Mapping[str, Any], now: int) -> dict[str, Any]:
    """Return the ``notification_actions`` columns of a checked action."""
    return {
        "notification_id": notification_id,
        "action_type": action["type"],
        "action_label": action["label"],
        "action_command": action.get("command"),
        "action_data": action.get("data"),
        "created_at": now,
    }


def _check_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidValueError(f"{field} must be True or False", field=field)
    return value


def _check_time(value: Any, field: str) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise InvalidValueError(f"{field} must be epoch milliseconds (an integer)", field=field)


def _check_count(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidValueError(f"{field} must be a non-negative integer", field=field)
    return value


def _ids(ids: str | Iterable[str]) -> list[str]:
    items = [ids] if isinstance(ids, str) else list(ids)
    for item in items:
        if not isinstance(item, str):
            raise InvalidValueError("notification ids must be strings", field="ids")
    return list(dict.fromkeys(items))
