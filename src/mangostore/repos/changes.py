"""What each repository's ``update`` takes: one ``TypedDict`` per table.

Every column but ``id`` (which cannot be changed) may be given, none must: see
:mod:`mangostore.repos.fields` for the value types, which are the same, and for the
test that keeps both modules equal to the live schema.
"""

# Evaluated annotations, as in mangostore.repos.fields.
from typing import Any, Literal, TypedDict

from mangostore.repos.fields import Blob

__all__ = [
    "AIConversationChanges",
    "AIMemoryChanges",
    "CommandHistoryChanges",
    "KGEmbeddingChanges",
    "KGEntityChanges",
    "KGObservationChanges",
    "KGRelationChanges",
    "NotificationActionChanges",
    "NotificationChanges",
    "NotificationPreferenceChanges",
    "NotificationTypeChanges",
    "PermissionChanges",
    "ProjectChanges",
    "SecurityEventChanges",
    "TerminalSessionActivityChanges",
    "TerminalSessionChanges",
    "UserChanges",
    "UserSessionChanges",
    "VoiceProfileChanges",
]


class UserChanges(TypedDict, total=False):
    """What ``db.users.update`` takes."""

    username: str
    email: str | None
    created_at: int
    updated_at: int
    last_login: int | None
    preferences: Any
    security_profile: Any
    voice_profile_id: str | None


class ProjectChanges(TypedDict, total=False):
    """What ``db.projects.update`` takes."""

    user_id: str
    name: str
    display_name: str | None
    path: str
    type: str | None
    status: str | None
    created_at: int
    updated_at: int
    last_accessed: int | None
    metadata: Any
    security_config: Any
    git_config: Any


class TerminalSessionChanges(TypedDict, total=False):
    """What ``db.terminal_sessions.update`` takes."""

    project_id: str | None
    user_id: str
    name: str | None
    status: str | None
    working_directory: str | None
    environment_variables: Any
    created_at: int
    last_activity: int | None
    session_data: Any
    tmux_session_id: str | None


class TerminalSessionActivityChanges(TypedDict, total=False):
    """What ``db.terminal_sessions.record_activity(id, **fields)`` takes as ``fields``:
    the columns of :class:`TerminalSessionChanges` but ``last_activity``, which it sets."""

    project_id: str | None
    user_id: str
    name: str | None
    status: str | None
    working_directory: str | None
    environment_variables: Any
    created_at: int
    session_data: Any
    tmux_session_id: str | None


class VoiceProfileChanges(TypedDict, total=False):
    """What ``db.voice_profiles.update`` takes."""

    user_id: str
    name: str
    language: str | None
    accuracy_score: float | None
    training_data: Any
    voice_print: Any
    created_at: int
    updated_at: int
    is_active: bool | None
    training_file_id: str | None


class CommandHistoryChanges(TypedDict, total=False):
    """What ``db.command_history.update`` takes."""

    user_id: str
    project_id: str | None
    terminal_session_id: str | None
    command: str
    command_type: Literal["voice", "keyboard", "ai"] | None
    execution_time: int | None
    exit_code: int | None
    output: str | None
    working_directory: str | None
    timestamp: int
    voice_confidence: float | None
    ai_suggested: bool | None
    recording_file_id: str | None


class NotificationTypeChanges(TypedDict, total=False):
    """What ``db.notification_types.update`` takes."""

    name: str
    category: Literal["system", "voice", "ai", "project"]
    priority: Literal["low", "normal", "high", "critical"] | None
    template: str
    default_actions: Any
    retention_days: int | None
    created_at: int


class NotificationPreferenceChanges(TypedDict, total=False):
    """What ``db.notification_preferences.update`` takes."""

    user_id: str
    notification_type_id: str
    enabled: bool | None
    delivery_methods: Any
    sound_enabled: bool | None
    voice_enabled: bool | None
    urgency_threshold: Literal["low", "normal", "high", "critical"] | None
    quiet_hours_start: str | None
    quiet_hours_end: str | None
    project_specific: Any
    created_at: int
    updated_at: int


class NotificationChanges(TypedDict, total=False):
    """What ``db.notifications.update`` takes."""

    user_id: str
    project_id: str | None
    notification_type_id: str
    title: str
    message: str
    priority: Literal["low", "normal", "high", "critical"]
    status: Literal["pending", "delivered", "read", "dismissed", "failed"] | None
    delivery_methods: Any
    metadata: Any
    scheduled_at: int | None
    delivered_at: int | None
    read_at: int | None
    dismissed_at: int | None
    expires_at: int | None
    created_at: int


class NotificationActionChanges(TypedDict, total=False):
    """What ``db.notification_actions.update`` takes."""

    notification_id: str
    action_type: Literal["button", "voice_command", "auto"]
    action_label: str
    action_command: str | None
    action_data: Any
    executed_at: int | None
    execution_result: str | None
    created_at: int


class AIConversationChanges(TypedDict, total=False):
    """What ``db.ai_conversations.update`` takes."""

    user_id: str
    project_id: str | None
    title: str | None
    context_type: Literal["general", "project", "terminal", "voice"] | None
    status: Literal["active", "archived", "deleted"] | None
    conversation_data: Any
    token_count: int | None
    created_at: int
    last_message_at: int | None
    expires_at: int | None


class AIMemoryChanges(TypedDict, total=False):
    """What ``db.ai_memory.update`` takes."""

    user_id: str
    project_id: str | None
    conversation_id: str | None
    memory_type: Literal["fact", "preference", "skill", "context"]
    key_name: str
    value_data: Any
    confidence_score: float | None
    source: Literal["user_input", "inference", "observation"] | None
    created_at: int
    last_accessed: int | None
    access_count: int | None
    expires_at: int | None


class SecurityEventChanges(TypedDict):
    """What ``db.security_events.update`` takes: events are append-only, so an update
    only records who resolved one."""

    resolved: Literal[True]
    resolved_by: str


class PermissionChanges(TypedDict, total=False):
    """What ``db.permissions.update`` takes."""

    user_id: str
    resource_type: Literal["project", "terminal", "voice", "ai"]
    resource_id: str | None
    permission_type: Literal["read", "write", "execute", "admin"]
    granted_by: str | None
    granted_at: int
    expires_at: int | None
    revoked_at: int | None
    revoked_by: str | None
    conditions: Any


class UserSessionChanges(TypedDict, total=False):
    """What ``db.user_sessions.update`` takes."""

    user_id: str
    session_token: str
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


class KGEntityChanges(TypedDict, total=False):
    """What ``db.kg_entities.update`` takes."""

    user_id: str
    project_id: str | None
    entity_type: Literal["person", "project", "command", "file", "concept"]
    name: str
    description: str | None
    metadata: Any
    confidence_score: float | None
    created_at: int
    updated_at: int
    last_accessed: int | None
    access_count: int | None


class KGRelationChanges(TypedDict, total=False):
    """What ``db.kg_relations.update`` takes."""

    user_id: str
    project_id: str | None
    subject_id: str
    predicate: str
    object_id: str
    weight: float | None
    confidence_score: float | None
    created_at: int
    last_confirmed: int | None
    source: Literal["user", "inference", "observation"] | None


class KGObservationChanges(TypedDict, total=False):
    """What ``db.kg_observations.update`` takes."""

    entity_id: str
    user_id: str
    observation_type: Literal["fact", "behavior", "preference", "pattern"]
    content: str
    context: Any
    confidence_score: float | None
    verified: bool | None
    created_at: int
    verified_at: int | None


class KGEmbeddingChanges(TypedDict, total=False):
    """What ``db.kg_embeddings.update`` takes."""

    entity_id: str
    user_id: str
    embedding_type: Literal["semantic", "syntactic", "contextual"] | None
    vector_data: Blob | None
    dimensions: int
    model_version: str
    created_at: int
