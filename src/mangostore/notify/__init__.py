"""Notifications: types with safe templates, preferences, delivery, lifecycle, retention.

Reach the service as ``db.notify`` (see ``docs/notifications.md``)::

    db.notify.register_type("build.finished", category="project",
                            template="Build {name} finished in {seconds} s")
    db.notify.send(user.id, "build.finished", {"name": "api", "seconds": 42})
"""

from __future__ import annotations

from mangostore.notify.actions import ACTION_TYPES
from mangostore.notify.delivery import (
    LOGGER_NAME,
    Deliverer,
    DeliveryState,
    LogDeliverer,
    RecordingDeliverer,
    RetryPolicy,
)
from mangostore.notify.dispatch import DeliveryReport
from mangostore.notify.lifecycle import STATUSES, TRANSITIONS, check_transition
from mangostore.notify.preferences import (
    CATEGORIES,
    METHODS,
    PRIORITIES,
    EffectivePreference,
    ProjectOverride,
    QuietHours,
    Resolution,
    resolve,
)
from mangostore.notify.service import NotificationService
from mangostore.notify.templates import Template

__all__ = [
    "ACTION_TYPES",
    "CATEGORIES",
    "LOGGER_NAME",
    "METHODS",
    "PRIORITIES",
    "STATUSES",
    "TRANSITIONS",
    "Deliverer",
    "DeliveryReport",
    "DeliveryState",
    "EffectivePreference",
    "LogDeliverer",
    "NotificationService",
    "ProjectOverride",
    "QuietHours",
    "RecordingDeliverer",
    "Resolution",
    "RetryPolicy",
    "Template",
    "check_transition",
    "resolve",
]
