"""What each repository's ``create`` takes: one ``TypedDict`` per table.

``db.projects.create(**fields)`` is declared as taking ``**fields: Unpack[ProjectFields]``,
so a type checker refuses a misspelt column, a value of the wrong type, a value outside
an enumerated column's choices, and a call that leaves out a column the database needs
(``Required``). Run time checks the same and more (:mod:`mangostore.repos.spec`); a
caller that builds its fields as a ``dict[str, Any]`` is checked at run time only.

The keys are the table's columns in schema order and the value types what the
repository accepts for them: JSON and encrypted columns take any JSON value (``Any``),
``BLOB`` columns any bytes-like object, and nullable columns ``None``. ``id``,
``created_at`` and ``updated_at`` (and the columns a repository sets to now, such as
``command_history.timestamp``) may be left out. ``tests/repos/test_typed_fields.py``
compares every class with the live schema, so the two cannot drift apart.
"""

# No ``from __future__ import annotations``: on Python 3.11 a ``TypedDict`` cannot see
# ``Required`` in an annotation kept as a string, and ``__required_keys__`` would be empty.
from typing import Any, Literal, Required, TypedDict

__all__ = [
    "AIConversationFields",
    "AIMemoryFields",
    "Blob",
    "CommandHistoryFields",
    "CommandHistoryRecordFields",
    "KGEmbeddingFields",
    "KGEntityFields",
    "KGObservationFields",
    "KGRelationFields",
    "NotificationActionFields",
    "NotificationFields",
    "NotificationPreferenceFields",
    "NotificationTypeFields",
    "PermissionFields",
    "ProjectFields",
    "SecurityEventFields",
    "TerminalSessionFields",
    "TerminalSessionOpenFields",
    "UserFields",
    "UserSessionFields",
    "VoiceProfileFields",
]

#: What a ``BLOB`` column accepts.
Blob = bytes | bytearray | memoryview


class UserFields(TypedDict, total=False):
    """What ``db.users.create`` takes."""

    id: str
    username: Required[str]
    email: str | None
    created_at: int
    updated_at: int
    last_login: int | None
    preferences: Any
    security_profile: Any
    voice_profile_id: str | None


class ProjectFields(TypedDict, total=False):
    """What ``db.projects.create`` takes."""

    id: str
    user_id: Required[str]
    name: Required[str]
    display_name: str | None
    path: Required[str]
    type: str | None
    status: str | None
    created_at: int
    updated_at: int
    last_accessed: int | None
    metadata: Any
    security_config: Any
    git_config: Any


class TerminalSessionFields(TypedDict, total=False):
    """What ``db.terminal_sessions.create`` takes."""

    id: str
    project_id: str | None
    user_id: Required[str]
    name: str | None
    status: str | None
    working_directory: str | None
    environment_variables: Any
    created_at: int
    last_activity: int | None
    session_data: Any
    tmux_session_id: str | None


class TerminalSessionOpenFields(TypedDict, total=False):
    """What ``db.terminal_sessions.open(user_id, **fields)`` takes as ``fields``: the
    columns of :class:`TerminalSessionFields` but ``user_id`` and the two ``open`` sets
    (``status``, ``last_activity``)."""

    id: str
    project_id: str | None
    name: str | None
    working_directory: str | None
    environment_variables: Any
    created_at: int
    session_data: Any
    tmux_session_id: str | None


class VoiceProfileFields(TypedDict, total=False):
    """What ``db.voice_profiles.create`` takes."""

    id: str
    user_id: Required[str]
    name: Required[str]
    language: str | None
    accuracy_score: float | None
    training_data: Any
    voice_print: Any
    created_at: int
    updated_at: int
    is_active: bool | None
    training_file_id: str | None


class CommandHistoryFields(TypedDict, total=False):
    """What ``db.command_history.create`` takes."""

    id: str
    user_id: Required[str]
    project_id: str | None
    terminal_session_id: str | None
    command: Required[str]
    command_type: Literal["voice", "keyboard", "ai"] | None
    execution_time: int | None
    exit_code: int | None
    output: str | None
    working_directory: str | None
    timestamp: int
    voice_confidence: float | None
    ai_suggested: bool | None
    recording_file_id: str | None


class CommandHistoryRecordFields(TypedDict, total=False):
    """What ``db.command_history.record(user_id, command, **fields)`` takes as
    ``fields``: the columns of :class:`CommandHistoryFields` but those two."""

    id: str
    project_id: str | None
    terminal_session_id: str | None
    command_type: Literal["voice", "keyboard", "ai"] | None
    execution_time: int | None
    exit_code: int | None
    output: str | None
    working_directory: str | None
    timestamp: int
    voice_confidence: float | None
    ai_suggested: bool | None
    recording_file_id: str | None


class NotificationTypeFields(TypedDict, total=False):
    """What ``db.notification_types.create`` takes."""

    id: str
    name: Required[str]
    category: Required[Literal["system", "voice", "ai", "project"]]
    priority: Literal["low", "normal", "high", "critical"] | None
    template: Required[str]
    default_actions: Any
    retention_days: int | None
    created_at: int


class NotificationPreferenceFields(TypedDict, total=False):
    """What ``db.notification_preferences.create`` takes."""

    id: str
    user_id: Required[str]
    notification_type_id: Required[str]
    enabled: bool | None
    delivery_methods: Required[Any]
    sound_enabled: bool | None
    voice_enabled: bool | None
    urgency_threshold: Literal["low", "normal", "high", "critical"] | None
    quiet_hours_start: str | None
    quiet_hours_end: str | None
    project_specific: Any
    created_at: int
    updated_at: int


class NotificationFields(TypedDict, total=False):
    """What ``db.notifications.create`` takes."""

    id: str
    user_id: Required[str]
    project_id: str | None
    notification_type_id: Required[str]
    title: Required[str]
    message: Required[str]
    priority: Required[Literal["low", "normal", "high", "critical"]]
    status: Literal["pending", "delivered", "read", "dismissed", "failed"] | None
    delivery_methods: Any
    metadata: Any
    scheduled_at: int | None
    delivered_at: int | None
    read_at: int | None
    dismissed_at: int | None
    expires_at: int | None
    created_at: int


class NotificationActionFields(TypedDict, total=False):
    """What ``db.notification_actions.create`` takes."""

    id: str
    notification_id: Required[str]
    action_type: Required[Literal["button", "voice_command", "auto"]]
    action_label: Required[str]
    action_command: str | None
    action_data: Any
    executed_at: int | None
    execution_result: str | None
    created_at: int


class AIConversationFields(TypedDict, total=False):
    """What ``db.ai_conversations.create`` takes."""

    id: str
    user_id: Required[str]
    project_id: str | None
    title: str | None
    context_type: Literal["general", "project", "terminal", "voice"] | None
    status: Literal["active", "archived", "deleted"] | None
    conversation_data: Any
    token_count: int | None
    created_at: int
    last_message_at: int | None
    expires_at: int | None


class AIMemoryFields(TypedDict, total=False):
    """What ``db.ai_memory.create`` takes."""

    id: str
    user_id: Required[str]
    project_id: str | None
    conversation_id: str | None
    memory_type: Required[Literal["fact", "preference", "skill", "context"]]
    key_name: Required[str]
    value_data: Required[Any]
    confidence_score: float | None
    source: Literal["user_input", "inference", "observation"] | None
    created_at: int
    last_accessed: int | None
    access_count: int | None
    expires_at: int | None


class SecurityEventFields(TypedDict, total=False):
    """What ``db.security_events.create`` takes: the audit log sets every other column
    (``id``, ``timestamp``, ``seq``, ``mac``, and the resolution)."""

    user_id: str | None
    event_type: Required[Literal["auth", "access", "command", "voice", "data"]]
    severity: Required[Literal["info", "warning", "error", "critical"]]
    source_component: Required[str]
    event_data: Any
    client_info: Any
    risk_score: float | None


class PermissionFields(TypedDict, total=False):
    """What ``db.permissions.create`` takes."""

    id: str
    user_id: Required[str]
    resource_type: Required[Literal["project", "terminal", "voice", "ai"]]
    resource_id: str | None
    permission_type: Required[Literal["read", "write", "execute", "admin"]]
    granted_by: str | None
    granted_at: int
    expires_at: int | None
    revoked_at: int | None
    revoked_by: str | None
    conditions: Any


class UserSessionFields(TypedDict, total=False):
    """What ``db.user_sessions.create`` takes."""

    id: str
    user_id: Required[str]
    session_token: Required[str]
    device_info: Any
    ip_address: str | None
    user_agent: str | None
    created_at: int
    last_activity: int | None
    expires_at: int | None
    revoked_at: int | None
    revoked_reason: str | None
    is_active: bool | None
    security_level: Literal["low", "standard", "high"] | None


class KGEntityFields(TypedDict, total=False):
    """What ``db.kg_entities.create`` takes."""

    id: str
    user_id: Required[str]
    project_id: str | None
    entity_type: Required[Literal["person", "project", "command", "file", "concept"]]
    name: Required[str]
    description: str | None
    metadata: Any
    confidence_score: float | None
    created_at: int
    updated_at: int
    last_accessed: int | None
    access_count: int | None


class KGRelationFields(TypedDict, total=False):
    """What ``db.kg_relations.create`` takes."""

    id: str
    user_id: Required[str]
    project_id: str | None
    subject_id: Required[str]
    predicate: Required[str]
    object_id: Required[str]
    weight: float | None
    confidence_score: float | None
    created_at: int
    last_confirmed: int | None
    source: Literal["user", "inference", "observation"] | None


class KGObservationFields(TypedDict, total=False):
    """What ``db.kg_observations.create`` takes."""

    id: str
    entity_id: Required[str]
    user_id: Required[str]
    observation_type: Required[Literal["fact", "behavior", "preference", "pattern"]]
    content: Required[str]
    context: Any
    confidence_score: float | None
    verified: bool | None
    created_at: int
    verified_at: int | None


class KGEmbeddingFields(TypedDict, total=False):
    """What ``db.kg_embeddings.create`` takes."""

    id: str
    entity_id: Required[str]
    user_id: Required[str]
    embedding_type: Literal["semantic", "syntactic", "contextual"] | None
    vector_data: Blob | None
    dimensions: Required[int]
    model_version: Required[str]
    created_at: int
