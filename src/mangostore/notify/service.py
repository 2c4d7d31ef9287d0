"""``db.notify``: notification types, preferences, sending, delivery, lifecycle, retention.

:class:`NotificationService` is the public face; it wires one part per
responsibility, each given the database and the parts it uses:

- :class:`~mangostore.notify.catalog.TypeCatalog`: types and their templates;
- :class:`~mangostore.notify.preference_store.PreferenceStore`: users' preferences
  and time zones;
- :class:`~mangostore.notify.sending.Sender`: recording a notification and its
  deliveries;
- :class:`~mangostore.notify.dispatch.Dispatcher`: deliverers, due deliveries,
  retries, settling statuses;
- :class:`~mangostore.notify.lifecycle.Lifecycle`: status changes and the inbox;
- :class:`~mangostore.notify.actions.Actions`: actions, each run once;
- :func:`~mangostore.notify.retention.delete_old_notifications`: retention.

Every write of one operation runs in one transaction; deliverers are called outside
it, after the notification is committed, so a slow desktop or voice engine never
holds the write lock and a crash during delivery loses nothing: the delivery is
still recorded as due and the next :meth:`NotificationService.deliver_due` runs it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from mangostore.clock import Instant, epoch_ms
from mangostore.errors import InvalidValueError
from mangostore.notify.actions import ACTION_TYPES, Actions
from mangostore.notify.catalog import TypeCatalog
from mangostore.notify.delivery import Deliverer, DeliveryQueue, DeliveryState, RetryPolicy
from mangostore.notify.dispatch import DeliveryReport, Dispatcher
from mangostore.notify.lifecycle import STATUSES, TRANSITIONS, Lifecycle, check_transition
from mangostore.notify.ports import NotifyDatabase
from mangostore.notify.preference_store import PreferenceStore
from mangostore.notify.preferences import EffectivePreference, Resolution
from mangostore.notify.retention import delete_old_notifications
from mangostore.notify.sending import Sender
from mangostore.notify.templates import ParamValue
from mangostore.records import (
    Notification,
    NotificationAction,
    NotificationPreference,
    NotificationType,
)

# The constants and the report live with the part they belong to; they stay
# importable from here, where they were first defined.
__all__ = [
    "ACTION_TYPES",
    "STATUSES",
    "TRANSITIONS",
    "DeliveryReport",
    "NotificationService",
    "check_transition",
]


class NotificationService:
    """Notifications of one database: reach it as ``db.notify``."""

    def __init__(self, db: NotifyDatabase, *, retry: RetryPolicy | None = None) -> None:
        self._db = db
        self._queue = DeliveryQueue(db, retry or RetryPolicy())
        self._catalog = TypeCatalog(db)
        self._preferences = PreferenceStore(db, self._catalog)
        self._lifecycle = Lifecycle(db, self._queue)
        self._dispatcher = Dispatcher(db, self._queue, self._lifecycle)
        self._sender = Sender(
            db,
            catalog=self._catalog,
            preferences=self._preferences,
            queue=self._queue,
            dispatcher=self._dispatcher,
            lifecycle=self._lifecycle,
        )
        self._actions = Actions(db)

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
        self._dispatcher.register(deliverer)

    def unregister_deliverer(self, method: str) -> Deliverer | None:
        """Stop delivering by ``method``; return the deliverer that was registered."""
        return self._dispatcher.unregister(method)

    def deliverers(self) -> dict[str, Deliverer]:
        """Return the registered deliverers by method."""
        return self._dispatcher.deliverers()

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
        return self._catalog.register(
            name,
            category=category,
            template=template,
            priority=priority,
            default_actions=default_actions,
            retention_days=retention_days,
        )

    def get_type(self, name: str) -> NotificationType:
        """Return the type called ``name`` (an id is accepted too).

        Raises:
            NotFoundError: no such type.
        """
        return self._catalog.get(name)

    # -- preferences -------------------------------------------------------------------

    def set_timezone(self, user_id: str, zone: str) -> None:
        """Set the IANA time zone quiet hours are read in (``users.preferences``).

        Raises:
            InvalidValueError: an unknown zone (``field="timezone"``).
            NotFoundError: no such user.
        """
        self._preferences.set_timezone(user_id, zone)

    def timezone(self, user_id: str) -> dt.tzinfo:
        """Return the user's time zone (``datetime.UTC`` unless set with :meth:`set_timezone`).

        Raises:
            NotFoundError: no such user.
        """
        return self._preferences.zone(user_id)

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
        return self._preferences.set_preferences(
            user_id,
            type,
            enabled=enabled,
            delivery_methods=delivery_methods,
            sound=sound,
            voice=voice,
            urgency_threshold=urgency_threshold,
            quiet_hours=quiet_hours,
            project_overrides=project_overrides,
        )

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
        return self._preferences.set_project_override(
            user_id,
            type,
            project_id,
            enabled=enabled,
            delivery_methods=delivery_methods,
            urgency_threshold=urgency_threshold,
        )

    def preference(self, user_id: str, type: str) -> EffectivePreference:
        """Return the preference that applies to the user's notifications of ``type``.

        Raises:
            NotFoundError: no such type.
        """
        return self._preferences.effective(user_id, self._catalog.get(type))

    def resolve(
        self,
        user_id: str,
        type: str,
        *,
        priority: str | None = None,
        project_id: str | None = None,
        at: Instant | None = None,
    ) -> Resolution:
        """Tell where and when a notification would be delivered at ``at`` (epoch ms or
        an aware datetime; default now), without sending it.

        Raises:
            NotFoundError: no such user or type.
            InvalidValueError: an unknown priority, or ``at`` is not a time.
        """
        return self._preferences.resolve(
            user_id, type, priority=priority, project_id=project_id, at=epoch_ms(at, "at")
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
        scheduled_at: Instant | None = None,
        expires_at: Instant | None = None,
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
            scheduled_at: deliver at this time (epoch ms or an aware datetime) rather
                than now.
            expires_at: never deliver at or after this time (epoch ms or an aware
                datetime).
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
        return self._sender.send(
            user_id,
            type,
            params,
            project_id=project_id,
            priority=priority,
            scheduled_at=scheduled_at,
            expires_at=expires_at,
            title=title,
            metadata=metadata,
            actions=actions,
            deliver=deliver,
        )

    # -- delivering --------------------------------------------------------------------

    def due(self, now: Instant | None = None, *, limit: int | None = None) -> list[Notification]:
        """Return pending notifications whose time has come at ``now`` (epoch ms or an
        aware datetime; default the database clock) and that have not expired.

        Those never scheduled come first (oldest first), then the scheduled ones by
        scheduled time.

        Raises:
            InvalidValueError: ``now`` is not a time, or a bad ``limit``.
        """
        return self._dispatcher.due(epoch_ms(now, "now"), limit)

    def deliver_due(self, now: Instant | None = None, *, limit: int = 1_000) -> DeliveryReport:
        """Run every delivery whose time has come (first tries and retries).

        Deliveries of an expired notification are cancelled instead; those of a
        method without a registered deliverer wait. Safe to call from several threads
        or processes at once: each delivery is claimed before it runs.

        Args:
            now: the time to deliver as of (epoch ms or an aware datetime; default:
                the database clock).
            limit: most deliveries run in this call.

        Returns:
            A :class:`DeliveryReport` of what happened.

        Raises:
            InvalidValueError: ``now`` is not a time, or a bad ``limit``.
        """
        return self._dispatcher.deliver_due(epoch_ms(now, "now"), limit)

    def deliveries(self, notification_id: str) -> list[DeliveryState]:
        """Return where each method's delivery of a notification stands (attempts, errors)."""
        return self._dispatcher.deliveries(notification_id)

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
        return self._lifecycle.transition(ids, status)

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
        return self._lifecycle.unread(user_id, project_id=project_id, limit=limit)

    def history(
        self,
        user_id: str,
        *,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Notification]:
        """Return the user's notifications in any (or one) status, newest first."""
        return self._lifecycle.history(user_id, status=status, limit=limit, offset=offset)

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
        return self._actions.attach(notification_id, action_type, label, command, data)

    def actions(self, notification_id: str) -> list[NotificationAction]:
        """Return the actions attached to a notification, oldest first."""
        return self._actions.of(notification_id)

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
        return self._actions.execute(action_id, run, result)

    # -- retention ---------------------------------------------------------------------

    def apply_retention(self, now: Instant | None = None) -> int:
        """Delete notifications older than their type's ``retention_days`` (by ``created_at``)
        at ``now`` (epoch ms or an aware datetime; default the database clock).

        Their actions and delivery rows go with them, in the same transaction.
        Types whose retention is ``None`` keep their notifications for ever.

        Returns:
            How many notifications were deleted.

        Raises:
            InvalidValueError: ``now`` is not a time.
        """
        return delete_old_notifications(self._db, epoch_ms(now, "now"))
