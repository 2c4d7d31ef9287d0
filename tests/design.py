"""Facts of the design's schema and a maker of valid rows, shared by the test folders.

``Rows`` makes a valid row of any design table, creating the parents it needs.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

import mangostore
from mangostore.testing.factories import FACTORY_METHODS

#: The tables of the design, each with a repository of the same name on the database.
DESIGN_TABLES = (
    "users",
    "projects",
    "terminal_sessions",
    "voice_profiles",
    "command_history",
    "notification_types",
    "notification_preferences",
    "notifications",
    "notification_actions",
    "ai_conversations",
    "ai_memory",
    "security_events",
    "permissions",
    "user_sessions",
    "kg_entities",
    "kg_relations",
    "kg_observations",
    "kg_embeddings",
)

#: Encrypted columns of each table (the design's "JSON, encrypted" plus notifications.metadata).
ENCRYPTED_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("security_profile",),
    "projects": ("security_config",),
    "terminal_sessions": ("environment_variables", "session_data"),
    "voice_profiles": ("training_data", "voice_print"),
    "ai_conversations": ("conversation_data",),
    "notifications": ("metadata",),
    "security_events": ("event_data", "client_info"),
}
ENCRYPTED_PAIRS = [(t, c) for t, cols in ENCRYPTED_COLUMNS.items() for c in cols]

#: JSON columns (plain, not encrypted) of the design's tables.
JSON_COLUMNS = [
    ("users", "preferences"),
    ("projects", "metadata"),
    ("projects", "git_config"),
    ("notification_types", "default_actions"),
    ("notification_preferences", "delivery_methods"),
    ("notification_preferences", "project_specific"),
    ("notifications", "delivery_methods"),
    ("notification_actions", "action_data"),
    ("ai_memory", "value_data"),
    ("permissions", "conditions"),
    ("user_sessions", "device_info"),
    ("kg_entities", "metadata"),
    ("kg_observations", "context"),
]


class Rows:
    """Makes valid rows of every design table, creating whatever parents a row needs.

    Every method takes column values as keyword arguments, which override the defaults.
    """

    def __init__(self, db: mangostore.Database) -> None:
        self.db = db
        self._seq = itertools.count(1)

    def _n(self) -> int:
        return next(self._seq)

    def _owner(self, fields: dict[str, Any]) -> str:
        if "user_id" not in fields:
            fields["user_id"] = self.user().id
        owner: str = fields["user_id"]
        return owner

    def make(self, table: str, **fields: Any) -> Any:
        """Create a row of ``table``."""
        factory: Callable[..., Any] = getattr(self, FACTORY_METHODS[table])
        return factory(**fields)

    def user(self, **fields: Any) -> Any:
        fields.setdefault("username", f"user{self._n()}")
        return self.db.users.create(**fields)

    def project(self, **fields: Any) -> Any:
        self._owner(fields)
        n = self._n()
        fields.setdefault("name", f"project{n}")
        fields.setdefault("path", f"/home/me/project{n}")
        return self.db.projects.create(**fields)

    def terminal_session(self, **fields: Any) -> Any:
        self._owner(fields)
        return self.db.terminal_sessions.create(**fields)

    def voice_profile(self, **fields: Any) -> Any:
        self._owner(fields)
        fields.setdefault("name", f"voice{self._n()}")
        return self.db.voice_profiles.create(**fields)

    def command(self, **fields: Any) -> Any:
        self._owner(fields)
        fields.setdefault("command", f"ls -la {self._n()}")
        return self.db.command_history.create(**fields)

    def notification_type(self, **fields: Any) -> Any:
        fields.setdefault("name", f"build-finished-{self._n()}")
        fields.setdefault("category", "project")
        fields.setdefault("template", "{project} built")
        return self.db.notification_types.create(**fields)

    def notification_preference(self, **fields: Any) -> Any:
        self._owner(fields)
        if "notification_type_id" not in fields:
            fields["notification_type_id"] = self.notification_type().id
        fields.setdefault("delivery_methods", ["desktop", "voice"])
        return self.db.notification_preferences.create(**fields)

    def notification(self, **fields: Any) -> Any:
        self._owner(fields)
        if "notification_type_id" not in fields:
            fields["notification_type_id"] = self.notification_type().id
        fields.setdefault("title", "Build finished")
        fields.setdefault("message", "The build passed")
        fields.setdefault("priority", "normal")
        return self.db.notifications.create(**fields)

    def notification_action(self, **fields: Any) -> Any:
        if "notification_id" not in fields:
            fields["notification_id"] = self.notification().id
        fields.setdefault("action_type", "button")
        fields.setdefault("action_label", "Open")
        return self.db.notification_actions.create(**fields)

    def ai_conversation(self, **fields: Any) -> Any:
        self._owner(fields)
        fields.setdefault("title", "Refactoring help")
        return self.db.ai_conversations.create(**fields)

    def ai_memory(self, **fields: Any) -> Any:
        self._owner(fields)
        fields.setdefault("memory_type", "preference")
        fields.setdefault("key_name", f"shell{self._n()}")
        fields.setdefault("value_data", {"shell": "zsh"})
        return self.db.ai_memory.create(**fields)

    def security_event(self, **fields: Any) -> Any:
        if "user_id" not in fields:
            fields["user_id"] = self.user().id
        fields.setdefault("event_type", "auth")
        fields.setdefault("severity", "info")
        fields.setdefault("source_component", "login")
        return self.db.security_events.create(**fields)

    def permission(self, **fields: Any) -> Any:
        self._owner(fields)
        fields.setdefault("resource_type", "project")
        fields.setdefault("permission_type", "read")
        return self.db.permissions.create(**fields)

    def user_session(self, **fields: Any) -> Any:
        self._owner(fields)
        fields.setdefault("session_token", f"token-{self._n()}-{uuid.uuid4()}")
        return self.db.user_sessions.create(**fields)

    def kg_entity(self, **fields: Any) -> Any:
        self._owner(fields)
        fields.setdefault("entity_type", "concept")
        fields.setdefault("name", f"entity{self._n()}")
        return self.db.kg_entities.create(**fields)

    def kg_relation(self, **fields: Any) -> Any:
        user_id = self._owner(fields)
        if "subject_id" not in fields:
            fields["subject_id"] = self.kg_entity(user_id=user_id).id
        if "object_id" not in fields:
            fields["object_id"] = self.kg_entity(user_id=user_id).id
        fields.setdefault("predicate", "uses")
        return self.db.kg_relations.create(**fields)

    def kg_observation(self, **fields: Any) -> Any:
        user_id = self._owner(fields)
        if "entity_id" not in fields:
            fields["entity_id"] = self.kg_entity(user_id=user_id).id
        fields.setdefault("observation_type", "fact")
        fields.setdefault("content", "uses vim")
        return self.db.kg_observations.create(**fields)

    def kg_embedding(self, **fields: Any) -> Any:
        user_id = self._owner(fields)
        if "entity_id" not in fields:
            fields["entity_id"] = self.kg_entity(user_id=user_id).id
        fields.setdefault("vector_data", bytes(range(16)))
        fields.setdefault("dimensions", 4)
        fields.setdefault("model_version", "model-1")
        return self.db.kg_embeddings.create(**fields)


def row_counts(db: mangostore.Database) -> dict[str, int]:
    """Return the number of rows of every design table (and of the field-key metadata)."""
    return {
        table: int(db.query(f'SELECT count(*) FROM "{table}"')[0][0])
        for table in (*DESIGN_TABLES, "field_keys")
    }
