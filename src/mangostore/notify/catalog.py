"""Notification types: a name, a category, a checked template, default actions, retention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mangostore.errors import InvalidValueError, NotFoundError
from mangostore.notify.actions import check_action
from mangostore.notify.ports import NotifyDatabase
from mangostore.notify.preferences import CATEGORIES, check_priority
from mangostore.notify.templates import Template, compiled
from mangostore.records import NotificationType

__all__ = ["TypeCatalog"]


class TypeCatalog:
    """The ``notification_types`` of one database (``db.notify`` delegates here)."""

    def __init__(self, db: NotifyDatabase) -> None:
        self._db = db

    def register(
        self,
        name: str,
        *,
        category: str,
        template: str,
        priority: str,
        default_actions: Sequence[Mapping[str, Any]],
        retention_days: int | None,
    ) -> NotificationType:
        """Create or update a type; see :meth:`NotificationService.register_type`."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidValueError("a notification type needs a non-empty name", field="name")
        if category not in CATEGORIES:
            raise InvalidValueError(
                f"category must be one of {', '.join(CATEGORIES)}; got {category!r}",
                field="category",
            )
        check_priority(priority)
        if isinstance(template, str):
            compiled(template)
        else:
            Template.parse(template)  # raises TemplateError (not cached: it may be unhashable)
        actions = [check_action(a, i) for i, a in enumerate(default_actions)]
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

    def get(self, name: str) -> NotificationType:
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
