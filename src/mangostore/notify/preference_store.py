"""Stored delivery preferences and time zones of users, read back as the rules expect them.

The rules themselves (validation, quiet hours, resolution) are pure functions in
:mod:`mangostore.notify.preferences`; this module reads and writes the
``notification_preferences`` rows and the ``timezone`` key of ``users.preferences``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from mangostore.errors import InvalidValueError, NotFoundError
from mangostore.notify.catalog import TypeCatalog
from mangostore.notify.delivery import LOGGER_NAME
from mangostore.notify.ports import NotifyDatabase
from mangostore.notify.preferences import (
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
from mangostore.records import NotificationPreference, NotificationType

__all__ = ["PreferenceStore", "check_bool"]

_log = logging.getLogger(LOGGER_NAME)


def check_bool(value: Any, field: str) -> bool:
    """Return ``value`` if it is ``True`` or ``False`` (not merely truthy).

    Raises:
        InvalidValueError: naming ``field``.
    """
    if not isinstance(value, bool):
        raise InvalidValueError(f"{field} must be True or False", field=field)
    return value


class PreferenceStore:
    """The users' notification preferences and zones (``db.notify`` delegates here)."""

    def __init__(self, db: NotifyDatabase, catalog: TypeCatalog) -> None:
        self._db = db
        self._catalog = catalog

    def set_timezone(self, user_id: str, zone: str) -> None:
        """Set the user's zone; see :meth:`NotificationService.set_timezone`."""
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

    def zone(self, user_id: str) -> dt.tzinfo:
        """Return the user's time zone (UTC when unset or unknown to this system).

        Raises:
            NotFoundError: no such user.
        """
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

    def set_preferences(
        self,
        user_id: str,
        type: str,
        *,
        enabled: bool,
        delivery_methods: Iterable[str] | None,
        sound: bool,
        voice: bool | None,
        urgency_threshold: str,
        quiet_hours: tuple[str, str] | None,
        project_overrides: Mapping[str, Mapping[str, Any]] | None,
    ) -> NotificationPreference:
        """Replace a preference; see :meth:`NotificationService.set_preferences`."""
        ntype = self._catalog.get(type)
        methods = (
            CATEGORY_METHODS[ntype.category]
            if delivery_methods is None
            else check_methods(delivery_methods)
        )
        fields: dict[str, Any] = {
            "enabled": check_bool(enabled, "enabled"),
            "delivery_methods": list(methods),
            "sound_enabled": check_bool(sound, "sound"),
            "voice_enabled": "voice" in methods if voice is None else check_bool(voice, "voice"),
            "urgency_threshold": check_priority(urgency_threshold, field="urgency_threshold"),
            **quiet_hours_fields(quiet_hours),
        }
        overrides = check_overrides(project_overrides or {})
        with self._db.transaction():
            self._require_user(user_id)
            self._require_projects(overrides)
            fields["project_specific"] = {p: o.to_json() for p, o in overrides.items()} or None
            return self._upsert(user_id, ntype.id, fields)

    def set_project_override(
        self,
        user_id: str,
        type: str,
        project_id: str,
        *,
        enabled: bool | None,
        delivery_methods: Iterable[str] | None,
        urgency_threshold: str | None,
    ) -> NotificationPreference:
        """Change one project's override; see :meth:`NotificationService.set_project_override`."""
        ntype = self._catalog.get(type)
        override = ProjectOverride(
            enabled=None if enabled is None else check_bool(enabled, "enabled"),
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
            row = self._row(user_id, ntype.id)
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
            return self._upsert(user_id, ntype.id, fields)

    def effective(self, user_id: str, ntype: NotificationType) -> EffectivePreference:
        """Return the preference that applies to the user's notifications of ``ntype``:
        the stored one, or the defaults of the type's category."""
        row = self._row(user_id, ntype.id)
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

    def resolve(
        self,
        user_id: str,
        type: str,
        *,
        priority: str | None,
        project_id: str | None,
        at: int | None,
    ) -> Resolution:
        """Tell where and when a notification would go; see :meth:`NotificationService.resolve`."""
        ntype = self._catalog.get(type)
        level = check_priority(priority) if priority is not None else ntype.priority or "normal"
        return resolve(
            priority=level,
            preference=self.effective(user_id, ntype),
            project_id=project_id,
            zone=self.zone(user_id),
            at_ms=self._db.clock.now_ms() if at is None else at,
        )

    def _require_user(self, user_id: str) -> None:
        if not self._db.users.exists(user_id):
            raise NotFoundError(f"no users record has id {user_id!r}")

    def _require_projects(self, overrides: Mapping[str, ProjectOverride]) -> None:
        for project_id in overrides:
            if not self._db.projects.exists(project_id):
                raise NotFoundError(f"no projects record has id {project_id!r}")

    def _row(self, user_id: str, type_id: str) -> NotificationPreference | None:
        return self._db.notification_preferences.first(
            user_id=user_id, notification_type_id=type_id
        )

    def _upsert(self, user_id: str, type_id: str, fields: dict[str, Any]) -> NotificationPreference:
        repo = self._db.notification_preferences
        row = self._row(user_id, type_id)
        if row is None:
            return repo.create(user_id=user_id, notification_type_id=type_id, **fields)
        return repo.update(row.id, **fields)
