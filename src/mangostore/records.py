"""Typed record classes, one per table of the design.

The annotations are the single source of truth for the repository layer: the
allowed column names (the identifier allow-list), which columns hold JSON, which
are encrypted at field level, and the values an enumerated column accepts
(``Literal[...]``). A test checks that every class matches the live schema.

Records are plain slotted dataclasses: attribute access by column name, JSON
columns as Python objects, encrypted columns as plaintext. ``repr`` never shows an
encrypted column's value, nor one a record class withholds (``__withheld__``: a
session's token selector and IP address).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal


class _Marker:
    """Tags a column's annotation with how it is stored."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


JSON_MARK = _Marker("json")
ENCRYPTED_MARK = _Marker("encrypted")

#: A column holding JSON text, given and returned as Python objects.
Json = Annotated[Any, JSON_MARK]
#: A JSON column encrypted at field level (AES-256-GCM envelope under the owner's key).
EncryptedJson = Annotated[Any, ENCRYPTED_MARK]

Priority = Literal["low", "normal", "high", "critical"]


@dataclass(frozen=True, slots=True, repr=False)
class Unreadable:
    """Stands, in a listed record, for an encrypted value that could not be decrypted.

    ``get`` raises :class:`~mangostore.errors.TamperedDataError` for such a value;
    ``list`` and the other many-row reads put this in its place instead, so that one
    damaged value does not hide every other row. Falsy; ``reason`` is the error's
    message (it names the place, never the stored bytes).
    """

    reason: str

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<unreadable>"


@dataclass(slots=True, repr=False)
class Record:
    """Base of every record class."""

    __table__: ClassVar[str] = ""
    #: Columns ``repr`` shows as ``<withheld>``: plain columns that must not reach logs.
    __withheld__: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a plain ``{column: value}`` mapping (plaintext included)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __repr__(self) -> str:
        hidden = encrypted_columns(type(self))
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            shown = repr(value)
            if f.name in hidden and value is not None and not isinstance(value, Unreadable):
                shown = "<encrypted>"
            elif f.name in self.__withheld__ and value is not None:
                shown = "<withheld>"
            parts.append(f"{f.name}={shown}")
        return f"{type(self).__name__}({', '.join(parts)})"


def encrypted_columns(cls: type[Record]) -> frozenset[str]:
    """Return the names of the columns of ``cls`` that are encrypted at field level."""
    cached: frozenset[str] | None = cls.__dict__.get("_encrypted_cache")
    if cached is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        cached = frozenset(
            f.name for f in dataclasses.fields(cls) if ENCRYPTED_MARK in _metadata(hints[f.name])
        )
        type.__setattr__(cls, "_encrypted_cache", cached)
    return cached


def _metadata(hint: Any) -> tuple[Any, ...]:
    for arg in (hint, *typing.get_args(hint)):
        if typing.get_origin(arg) is Annotated:
            return tuple(arg.__metadata__)
    return ()


# -- 3.1 core ---------------------------------------------------------------------------


@dataclass(slots=True, repr=False)
class User(Record):
    """A person using the terminal (``users``)."""

    __table__: ClassVar[str] = "users"
    id: str
    username: str
    email: str | None
    created_at: int
    updated_at: int
    last_login: int | None
    preferences: Json | None
    security_profile: EncryptedJson | None
    voice_profile_id: str | None


@dataclass(slots=True, repr=False)
class Project(Record):
    """A project folder the user works in (``projects``)."""

    __table__: ClassVar[str] = "projects"
    id: str
    user_id: str
    name: str
    display_name: str | None
    path: str
    type: str | None
    status: str | None
    created_at: int
    updated_at: int
    last_accessed: int | None
    metadata: Json | None
    security_config: EncryptedJson | None
    git_config: Json | None


@dataclass(slots=True, repr=False)
class TerminalSession(Record):
    """A terminal session, possibly inside a project (``terminal_sessions``)."""

    __table__: ClassVar[str] = "terminal_sessions"
    id: str
    project_id: str | None
    user_id: str
    name: str | None
    status: str | None
    working_directory: str | None
    environment_variables: EncryptedJson | None
    created_at: int
    last_activity: int | None
    session_data: EncryptedJson | None
    tmux_session_id: str | None


@dataclass(slots=True, repr=False)
class VoiceProfile(Record):
    """A trained voice-recognition profile (``voice_profiles``)."""

    __table__: ClassVar[str] = "voice_profiles"
    id: str
    user_id: str
    name: str
    language: str | None
    accuracy_score: float | None
    training_data: EncryptedJson | None
    voice_print: EncryptedJson | None
    created_at: int
    updated_at: int
    is_active: bool | None
    #: A stored file of the same user holding the voice samples (``db.files``).
    training_file_id: str | None = None


@dataclass(slots=True, repr=False)
class CommandHistory(Record):
    """One command run in the terminal (``command_history``)."""

    __table__: ClassVar[str] = "command_history"
    id: str
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
    #: A stored file of the same user holding the spoken command's recording.
    recording_file_id: str | None = None


# -- 3.2 notifications ------------------------------------------------------------------


@dataclass(slots=True, repr=False)
class NotificationType(Record):
    """A kind of notification and its message template (``notification_types``)."""

    __table__: ClassVar[str] = "notification_types"
    id: str
    name: str
    category: Literal["system", "voice", "ai", "project"]
    priority: Priority | None
    template: str
    default_actions: Json | None
    retention_days: int | None
    created_at: int


@dataclass(slots=True, repr=False)
class NotificationPreference(Record):
    """A user's delivery preferences for one notification type."""

    __table__: ClassVar[str] = "notification_preferences"
    id: str
    user_id: str
    notification_type_id: str
    enabled: bool | None
    delivery_methods: Json
    sound_enabled: bool | None
    voice_enabled: bool | None
    urgency_threshold: Priority | None
    quiet_hours_start: str | None
    quiet_hours_end: str | None
    project_specific: Json | None
    created_at: int
    updated_at: int


@dataclass(slots=True, repr=False)
class Notification(Record):
    """A notification in the queue or history (``notifications``)."""

    __table__: ClassVar[str] = "notifications"
    id: str
    user_id: str
    project_id: str | None
    notification_type_id: str
    title: str
    message: str
    priority: Priority
    status: Literal["pending", "delivered", "read", "dismissed", "failed"] | None
    delivery_methods: Json | None
    metadata: EncryptedJson | None
    scheduled_at: int | None
    delivered_at: int | None
    read_at: int | None
    dismissed_at: int | None
    expires_at: int | None
    created_at: int


@dataclass(slots=True, repr=False)
class NotificationAction(Record):
    """A button, voice command or automatic action attached to a notification."""

    __table__: ClassVar[str] = "notification_actions"
    id: str
    notification_id: str
    action_type: Literal["button", "voice_command", "auto"]
    action_label: str
    action_command: str | None
    action_data: Json | None
    executed_at: int | None
    execution_result: str | None
    created_at: int


# -- 3.3 AI context and memory ----------------------------------------------------------


@dataclass(slots=True, repr=False)
class AIConversation(Record):
    """A conversation with the assistant (``ai_conversations``)."""

    __table__: ClassVar[str] = "ai_conversations"
    id: str
    user_id: str
    project_id: str | None
    title: str | None
    context_type: Literal["general", "project", "terminal", "voice"] | None
    status: Literal["active", "archived", "deleted"] | None
    conversation_data: EncryptedJson | None
    token_count: int | None
    created_at: int
    last_message_at: int | None
    expires_at: int | None


@dataclass(slots=True, repr=False)
class AIMemory(Record):
    """Something the assistant remembers about the user (``ai_memory``)."""

    __table__: ClassVar[str] = "ai_memory"
    id: str
    user_id: str
    project_id: str | None
    conversation_id: str | None
    memory_type: Literal["fact", "preference", "skill", "context"]
    key_name: str
    value_data: Json
    confidence_score: float | None
    source: Literal["user_input", "inference", "observation"] | None
    created_at: int
    last_accessed: int | None
    access_count: int | None
    expires_at: int | None


# -- 3.4 security and audit -------------------------------------------------------------


@dataclass(slots=True, repr=False)
class SecurityEvent(Record):
    """An entry of the security audit log (``security_events``)."""

    __table__: ClassVar[str] = "security_events"
    id: str
    user_id: str | None
    event_type: Literal["auth", "access", "command", "voice", "data"]
    severity: Literal["info", "warning", "error", "critical"]
    source_component: str
    event_data: EncryptedJson | None
    client_info: EncryptedJson | None
    risk_score: float | None
    resolved: bool | None
    resolved_at: int | None
    resolved_by: str | None
    timestamp: int
    #: Position in the audit chain: gap-free, assigned by :meth:`AuditLog.append`.
    seq: int
    #: HMAC-SHA256 chaining this event to the previous one (``None`` without a keyring).
    mac: bytes | None


@dataclass(slots=True, repr=False)
class Permission(Record):
    """A grant of access to a resource (``permissions``)."""

    __table__: ClassVar[str] = "permissions"
    id: str
    user_id: str
    resource_type: Literal["project", "terminal", "voice", "ai"]
    resource_id: str | None
    permission_type: Literal["read", "write", "execute", "admin"]
    granted_by: str | None
    granted_at: int
    expires_at: int | None
    revoked_at: int | None
    revoked_by: str | None
    conditions: Json | None


@dataclass(slots=True, repr=False)
class UserSession(Record):
    """A login session (``user_sessions``)."""

    __table__: ClassVar[str] = "user_sessions"
    # The selector is half of the session's token (it finds the row); an IP address
    # is personal data. Neither belongs in a log line or a traceback.
    __withheld__: ClassVar[frozenset[str]] = frozenset({"session_token", "ip_address"})
    id: str
    user_id: str
    session_token: str
    device_info: Json | None
    ip_address: str | None
    user_agent: str | None
    created_at: int
    last_activity: int | None
    expires_at: int | None
    revoked_at: int | None
    revoked_reason: str | None
    is_active: bool | None
    security_level: Literal["low", "standard", "high"] | None


# -- 4 knowledge graph ------------------------------------------------------------------


@dataclass(slots=True, repr=False)
class KGEntity(Record):
    """A node of the knowledge graph (``kg_entities``)."""

    __table__: ClassVar[str] = "kg_entities"
    id: str
    user_id: str
    project_id: str | None
    entity_type: Literal["person", "project", "command", "file", "concept"]
    name: str
    description: str | None
    metadata: Json | None
    confidence_score: float | None
    created_at: int
    updated_at: int
    last_accessed: int | None
    access_count: int | None


@dataclass(slots=True, repr=False)
class KGRelation(Record):
    """A directed edge ``subject -predicate-> object`` (``kg_relations``)."""

    __table__: ClassVar[str] = "kg_relations"
    id: str
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


@dataclass(slots=True, repr=False)
class KGObservation(Record):
    """A fact observed about an entity (``kg_observations``)."""

    __table__: ClassVar[str] = "kg_observations"
    id: str
    entity_id: str
    user_id: str
    observation_type: Literal["fact", "behavior", "preference", "pattern"]
    content: str
    context: Json | None
    confidence_score: float | None
    verified: bool | None
    created_at: int
    verified_at: int | None


@dataclass(slots=True, repr=False)
class KGEmbedding(Record):
    """A vector embedding of an entity (``kg_embeddings``)."""

    __table__: ClassVar[str] = "kg_embeddings"
    id: str
    entity_id: str
    user_id: str
    embedding_type: Literal["semantic", "syntactic", "contextual"] | None
    vector_data: bytes | None
    dimensions: int
    model_version: str
    created_at: int


#: Every record class, in the order of the design.
RECORD_CLASSES: tuple[type[Record], ...] = (
    User,
    Project,
    TerminalSession,
    VoiceProfile,
    CommandHistory,
    NotificationType,
    NotificationPreference,
    Notification,
    NotificationAction,
    AIConversation,
    AIMemory,
    SecurityEvent,
    Permission,
    UserSession,
    KGEntity,
    KGRelation,
    KGObservation,
    KGEmbedding,
)
