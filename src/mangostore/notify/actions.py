"""Notification actions: buttons, voice commands and automatic actions, each run once.

An action is checked when it is declared (as a type's default or attached to one
notification) and stored in ``notification_actions``; executing it claims it
first, so two concurrent executions run it exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mangostore.errors import InvalidTransitionError, InvalidValueError, NotFoundError
from mangostore.notify.ports import NotifyDatabase
from mangostore.records import NotificationAction

__all__ = ["ACTION_TYPES", "Actions", "action_fields", "check_action"]

ACTION_TYPES: tuple[str, ...] = ("button", "voice_command", "auto")
_ACTION_KEYS = frozenset({"type", "label", "command", "data"})
#: Longest text kept of a failed run's exception.
_RESULT_MAX_CHARS = 1_000


def check_action(value: Any, index: int) -> dict[str, Any]:
    """Return action number ``index`` of a declaration, checked and without empty keys.

    Args:
        value: ``{"type": ..., "label": ..., "command": ... (optional),
            "data": ... (optional)}``.
        index: its position, named in errors.

    Raises:
        InvalidValueError: not an object, an unknown key or type, an empty label or a
            command that is not a string (``field`` names the culprit).
    """
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


def action_fields(notification_id: str, action: Mapping[str, Any], now: int) -> dict[str, Any]:
    """Return the ``notification_actions`` columns of an action checked by :func:`check_action`."""
    return {
        "notification_id": notification_id,
        "action_type": action["type"],
        "action_label": action["label"],
        "action_command": action.get("command"),
        "action_data": action.get("data"),
        "created_at": now,
    }


class Actions:
    """The ``notification_actions`` of one database (``db.notify`` delegates here)."""

    def __init__(self, db: NotifyDatabase) -> None:
        self._db = db

    def attach(
        self, notification_id: str, action_type: str, label: str, command: str | None, data: Any
    ) -> NotificationAction:
        """Attach an action; see :meth:`NotificationService.attach_action`."""
        action = check_action(
            {"type": action_type, "label": label, "command": command, "data": data}, 0
        )
        with self._db.transaction():
            if not self._db.notifications.exists(notification_id):
                raise NotFoundError(f"no notification has id {notification_id!r}")
            fields = action_fields(notification_id, action, self._db.clock.now_ms())
            return self._db.notification_actions.create(**fields)

    def of(self, notification_id: str) -> list[NotificationAction]:
        """Return the actions attached to a notification, oldest first."""
        return self._db.notification_actions.list(
            notification_id=notification_id, order_by=["created_at", "id"]
        )

    def execute(
        self,
        action_id: str,
        run: Callable[[NotificationAction], str | None] | None,
        result: str | None,
    ) -> NotificationAction:
        """Execute an action once; see :meth:`NotificationService.execute_action`."""
        if run is not None and result is not None:
            raise InvalidValueError("pass run or result, not both", field="result")
        if result is not None and not isinstance(result, str):
            raise InvalidValueError("result must be a string", field="result")
        now = self._db.clock.now_ms()
        with self._db.transaction():
            # The conditional update is the claim: of two concurrent calls, one wins.
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
