"""Factories: valid records of every table, with sensible defaults and overrides.

``make = Factory(db)``; then ``make.user()``, ``make.project(user=ann)``,
``make.command(user=ann, exit_code=1)``, ... Every method takes the table's columns
as keyword overrides and returns the stored record. A parent that is not given is
made too: ``make.notification()`` makes a user and a notification type for it. A
parent is given as a record or as its id.

Values that must be unique (user names, e-mail addresses, type names, session
tokens) carry a per-factory sequence number, so any number of records can be made.
:data:`FACTORY_METHODS` maps every table with a record class to its method, and
:meth:`Factory.for_table` makes a record of a table named at run time.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from typing import Any, Final

from mangostore import Database
from mangostore.records import (
    AIConversation,
    AIMemory,
    CommandHistory,
    KGEmbedding,
    KGEntity,
    KGObservation,
    KGRelation,
    Notification,
    NotificationAction,
    NotificationPreference,
    NotificationType,
    Permission,
    Project,
    Record,
    SecurityEvent,
    TerminalSession,
    User,
    UserSession,
    VoiceProfile,
)

__all__ = ["FACTORY_METHODS", "Factory", "Parent"]

#: A parent row, given as its record or its id.
Parent = Record | str | None

#: The factory method of every table that has a record class.
FACTORY_METHODS: Final = {
    "users": "user",
    "projects": "project",
    "terminal_sessions": "terminal_session",
    "voice_profiles": "voice_profile",
    "command_history": "command",
    "notification_types": "notification_type",
    "notification_preferences": "notification_preference",
    "notifications": "notification",
    "notification_actions": "notification_action",
    "ai_conversations": "ai_conversation",
    "ai_memory": "ai_memory",
    "security_events": "security_event",
    "permissions": "permission",
    "user_sessions": "user_session",
    "kg_entities": "kg_entity",
    "kg_relations": "kg_relation",
    "kg_observations": "kg_observation",
    "kg_embeddings": "kg_embedding",
}


def _id(parent: Parent) -> str | None:
    if parent is None or isinstance(parent, str):
        return parent
    value = getattr(parent, "id", None)
    if not isinstance(value, str):
        raise TypeError(f"expected a record or an id, got {type(parent).__name__}")
    return value


class Factory:
    """Makes valid records in ``db``; one sequence of unique values per factory.

    Args:
        db: the database to write to.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._numbers = itertools.count(1)

    def __repr__(self) -> str:
        return f"<Factory {self.db.path!r}>"

    def next_number(self) -> int:
        """Return the next number of this factory's sequence (1, 2, ...)."""
        return next(self._numbers)

    def for_table(self, table: str, **overrides: Any) -> Record:
        """Make a record of ``table`` (see :data:`FACTORY_METHODS`).

        Raises:
            KeyError: ``table`` has no factory.
        """
        method: Callable[..., Record] = getattr(self, FACTORY_METHODS[table])
        return method(**overrides)

    def _owner(self, user: Parent) -> str:
        found = _id(user)
        return found if found is not None else self.user().id

    # -- 3.1 core -----------------------------------------------------------------------

    def user(self, **overrides: Any) -> User:
        """A user named ``user<n>`` with the address ``user<n>@example.org``."""
        n = self.next_number()
        fields = {"username": f"user{n}", "email": f"user{n}@example.org", **overrides}
        return self.db.users.create(**fields)

    def project(self, *, user: Parent = None, **overrides: Any) -> Project:
        """An active project ``project<n>`` of ``user`` at ``/srv/projects/project<n>``."""
        owner = self._owner(user)
        n = self.next_number()
        fields = {
            "user_id": owner,
            "name": f"project{n}",
            "path": f"/srv/projects/project{n}",
            "status": "active",
            **overrides,
        }
        return self.db.projects.create(**fields)

    def terminal_session(
        self, *, user: Parent = None, project: Parent = None, **overrides: Any
    ) -> TerminalSession:
        """An active terminal session of ``user``, in ``project`` when given."""
        fields = {
            "user_id": self._owner(user),
            "project_id": _id(project),
            "status": "active",
            **overrides,
        }
        return self.db.terminal_sessions.create(**fields)

    def voice_profile(self, *, user: Parent = None, **overrides: Any) -> VoiceProfile:
        """An English voice profile of ``user``."""
        fields = {"user_id": self._owner(user), "name": "default", "language": "en", **overrides}
        return self.db.voice_profiles.create(**fields)

    def command(
        self,
        *,
        user: Parent = None,
        project: Parent = None,
        session: Parent = None,
        **overrides: Any,
    ) -> CommandHistory:
        """A keyboard command ``git status`` of ``user`` that succeeded in 12 ms."""
        fields = {
            "user_id": self._owner(user),
            "project_id": _id(project),
            "terminal_session_id": _id(session),
            "command": "git status",
            "command_type": "keyboard",
            "exit_code": 0,
            "execution_time": 12,
            **overrides,
        }
        return self.db.command_history.create(**fields)

    # -- 3.2 notifications --------------------------------------------------------------

    def notification_type(self, **overrides: Any) -> NotificationType:
        """A ``system`` notification type ``type<n>`` with the template ``{message}``."""
        n = self.next_number()
        fields = {
            "name": f"type{n}",
            "category": "system",
            "template": "{message}",
            "priority": "normal",
            **overrides,
        }
        return self.db.notification_types.create(**fields)

    def _type(self, kind: Parent) -> str:
        found = _id(kind)
        return found if found is not None else self.notification_type().id

    def notification_preference(
        self, *, user: Parent = None, notification_type: Parent = None, **overrides: Any
    ) -> NotificationPreference:
        """``user``'s preference for a type: enabled, delivered to the desktop."""
        fields = {
            "user_id": self._owner(user),
            "notification_type_id": self._type(notification_type),
            "enabled": True,
            "delivery_methods": ["desktop"],
            **overrides,
        }
        return self.db.notification_preferences.create(**fields)

    def notification(
        self, *, user: Parent = None, notification_type: Parent = None, **overrides: Any
    ) -> Notification:
        """A pending notification of normal priority for ``user``."""
        fields = {
            "user_id": self._owner(user),
            "notification_type_id": self._type(notification_type),
            "title": "Build finished",
            "message": "The build finished.",
            "priority": "normal",
            "status": "pending",
            **overrides,
        }
        return self.db.notifications.create(**fields)

    def notification_action(
        self, *, notification: Parent = None, **overrides: Any
    ) -> NotificationAction:
        """A button ``Open`` on ``notification``."""
        parent = _id(notification)
        fields = {
            "notification_id": parent if parent is not None else self.notification().id,
            "action_type": "button",
            "action_label": "Open",
            **overrides,
        }
        return self.db.notification_actions.create(**fields)

    # -- 3.3 AI context and memory ------------------------------------------------------

    def ai_conversation(
        self, *, user: Parent = None, project: Parent = None, **overrides: Any
    ) -> AIConversation:
        """An active, general conversation of ``user``."""
        fields = {
            "user_id": self._owner(user),
            "project_id": _id(project),
            "title": "A conversation",
            "context_type": "general",
            "status": "active",
            "token_count": 0,
            **overrides,
        }
        return self.db.ai_conversations.create(**fields)

    def ai_memory(self, *, user: Parent = None, **overrides: Any) -> AIMemory:
        """A fact ``memory<n>`` the assistant remembers about ``user``."""
        n = self.next_number()
        fields = {
            "user_id": self._owner(user),
            "memory_type": "fact",
            "key_name": f"memory{n}",
            "value_data": {"value": n},
            "source": "user_input",
            **overrides,
        }
        return self.db.ai_memory.create(**fields)

    # -- 3.4 security and audit ---------------------------------------------------------

    def security_event(self, *, user: Parent = None, **overrides: Any) -> SecurityEvent:
        """An ``info`` access event about ``user`` (appended to the audit chain)."""
        fields = {
            "user_id": self._owner(user),
            "event_type": "access",
            "severity": "info",
            "source_component": "tests",
            **overrides,
        }
        return self.db.security_events.create(**fields)

    def permission(self, *, user: Parent = None, **overrides: Any) -> Permission:
        """``read`` on every project, granted to ``user``."""
        fields = {
            "user_id": self._owner(user),
            "resource_type": "project",
            "permission_type": "read",
            **overrides,
        }
        return self.db.permissions.create(**fields)

    def user_session(self, *, user: Parent = None, **overrides: Any) -> UserSession:
        """An active login session row of ``user`` with a random selector.

        The row alone, as stored: to log in for real, use ``db.auth`` and ``db.sessions``.
        """
        fields = {
            "user_id": self._owner(user),
            "session_token": secrets.token_hex(16),
            "is_active": True,
            "security_level": "standard",
            **overrides,
        }
        return self.db.user_sessions.create(**fields)

    # -- 4 knowledge graph --------------------------------------------------------------

    def kg_entity(self, *, user: Parent = None, **overrides: Any) -> KGEntity:
        """A concept ``entity<n>`` of ``user``."""
        n = self.next_number()
        fields = {
            "user_id": self._owner(user),
            "entity_type": "concept",
            "name": f"entity{n}",
            **overrides,
        }
        return self.db.kg_entities.create(**fields)

    def _entity(self, entity: Parent, user: str) -> str:
        found = _id(entity)
        return found if found is not None else self.kg_entity(user=user).id

    def kg_relation(
        self,
        *,
        user: Parent = None,
        subject: Parent = None,
        object: Parent = None,
        **overrides: Any,
    ) -> KGRelation:
        """``subject -related_to-> object``, both of ``user`` (made when not given)."""
        owner = self._owner(user)
        fields = {
            "user_id": owner,
            "subject_id": self._entity(subject, owner),
            "predicate": "related_to",
            "object_id": self._entity(object, owner),
            "source": "user",
            **overrides,
        }
        return self.db.kg_relations.create(**fields)

    def kg_observation(
        self, *, user: Parent = None, entity: Parent = None, **overrides: Any
    ) -> KGObservation:
        """A fact observed about ``entity`` (of ``user``)."""
        owner = self._owner(user)
        fields = {
            "user_id": owner,
            "entity_id": self._entity(entity, owner),
            "observation_type": "fact",
            "content": "an observation",
            **overrides,
        }
        return self.db.kg_observations.create(**fields)

    def kg_embedding(
        self, *, user: Parent = None, entity: Parent = None, **overrides: Any
    ) -> KGEmbedding:
        """A 4-dimensional float32 embedding of ``entity`` (of ``user``)."""
        owner = self._owner(user)
        dimensions = int(overrides.pop("dimensions", 4))
        fields = {
            "user_id": owner,
            "entity_id": self._entity(entity, owner),
            "embedding_type": "semantic",
            "vector_data": bytes(4 * dimensions),
            "dimensions": dimensions,
            "model_version": "test",
            **overrides,
        }
        return self.db.kg_embeddings.create(**fields)
