"""Repositories: typed access to every table, as attributes of the database.

Each table has a repository class whose ``create`` and ``update`` name the table's
columns for a type checker: the ``TypedDict`` classes of :mod:`mangostore.repos.fields`
(what ``create`` takes) and :mod:`mangostore.repos.changes` (what ``update`` takes).
"""

from __future__ import annotations

from functools import cached_property

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
    SecurityEvent,
    TerminalSession,
    User,
    UserSession,
    VoiceProfile,
)
from mangostore.repos.base import Repository, UserOwnedRepository
from mangostore.repos.commands import CommandHistoryRepository, CommandStats
from mangostore.repos.events import SecurityEventRepository
from mangostore.repos.ports import AuditTrail, RepositoryDatabase
from mangostore.repos.projects import ProjectRepository
from mangostore.repos.tables import (
    AIConversationRepository,
    AIMemoryRepository,
    KGEmbeddingRepository,
    KGEntityRepository,
    KGObservationRepository,
    KGRelationRepository,
    NotificationActionRepository,
    NotificationPreferenceRepository,
    NotificationRepository,
    NotificationTypeRepository,
    PermissionRepository,
    UserSessionRepository,
)
from mangostore.repos.terminal import TerminalSessionRepository
from mangostore.repos.users import UserRepository
from mangostore.repos.voice import VoiceProfileRepository

__all__ = [
    "AIConversationRepository",
    "AIMemoryRepository",
    "AuditTrail",
    "CommandHistoryRepository",
    "CommandStats",
    "KGEmbeddingRepository",
    "KGEntityRepository",
    "KGObservationRepository",
    "KGRelationRepository",
    "NotificationActionRepository",
    "NotificationPreferenceRepository",
    "NotificationRepository",
    "NotificationTypeRepository",
    "PermissionRepository",
    "ProjectRepository",
    "Repository",
    "RepositoryAccess",
    "RepositoryDatabase",
    "SecurityEventRepository",
    "TerminalSessionRepository",
    "UserOwnedRepository",
    "UserRepository",
    "UserSessionRepository",
    "VoiceProfileRepository",
]


class RepositoryAccess:
    """Mixed into :class:`mangostore.Database`: one repository per table, made on first use.

    The class it is mixed into must be a :class:`RepositoryDatabase` (every property
    takes ``self`` as one): the repositories are made from it.
    """

    @cached_property
    def users(self: RepositoryDatabase) -> UserRepository:
        """The ``users`` table."""
        return UserRepository(self, User)

    @cached_property
    def projects(self: RepositoryDatabase) -> ProjectRepository:
        """The ``projects`` table."""
        return ProjectRepository(self, Project)

    @cached_property
    def terminal_sessions(self: RepositoryDatabase) -> TerminalSessionRepository:
        """The ``terminal_sessions`` table."""
        return TerminalSessionRepository(self, TerminalSession)

    @cached_property
    def voice_profiles(self: RepositoryDatabase) -> VoiceProfileRepository:
        """The ``voice_profiles`` table."""
        return VoiceProfileRepository(self, VoiceProfile)

    @cached_property
    def command_history(self: RepositoryDatabase) -> CommandHistoryRepository:
        """The ``command_history`` table."""
        return CommandHistoryRepository(self, CommandHistory)

    @cached_property
    def notification_types(self: RepositoryDatabase) -> NotificationTypeRepository:
        """The ``notification_types`` table."""
        return NotificationTypeRepository(self, NotificationType)

    @cached_property
    def notification_preferences(
        self: RepositoryDatabase,
    ) -> NotificationPreferenceRepository:
        """The ``notification_preferences`` table."""
        return NotificationPreferenceRepository(self, NotificationPreference)

    @cached_property
    def notifications(self: RepositoryDatabase) -> NotificationRepository:
        """The ``notifications`` table (``metadata`` is encrypted)."""
        return NotificationRepository(self, Notification)

    @cached_property
    def notification_actions(self: RepositoryDatabase) -> NotificationActionRepository:
        """The ``notification_actions`` table."""
        return NotificationActionRepository(self, NotificationAction)

    @cached_property
    def ai_conversations(self: RepositoryDatabase) -> AIConversationRepository:
        """The ``ai_conversations`` table (``conversation_data`` is encrypted)."""
        return AIConversationRepository(self, AIConversation)

    @cached_property
    def ai_memory(self: RepositoryDatabase) -> AIMemoryRepository:
        """The ``ai_memory`` table."""
        return AIMemoryRepository(self, AIMemory)

    @cached_property
    def security_events(self: RepositoryDatabase) -> SecurityEventRepository:
        """The ``security_events`` table."""
        return SecurityEventRepository(self, SecurityEvent)

    @cached_property
    def permissions(self: RepositoryDatabase) -> PermissionRepository:
        """The ``permissions`` table."""
        return PermissionRepository(self, Permission)

    @cached_property
    def user_sessions(self: RepositoryDatabase) -> UserSessionRepository:
        """The ``user_sessions`` table."""
        return UserSessionRepository(self, UserSession)

    @cached_property
    def kg_entities(self: RepositoryDatabase) -> KGEntityRepository:
        """The ``kg_entities`` table."""
        return KGEntityRepository(self, KGEntity)

    @cached_property
    def kg_relations(self: RepositoryDatabase) -> KGRelationRepository:
        """The ``kg_relations`` table."""
        return KGRelationRepository(self, KGRelation)

    @cached_property
    def kg_observations(self: RepositoryDatabase) -> KGObservationRepository:
        """The ``kg_observations`` table."""
        return KGObservationRepository(self, KGObservation)

    @cached_property
    def kg_embeddings(self: RepositoryDatabase) -> KGEmbeddingRepository:
        """The ``kg_embeddings`` table."""
        return KGEmbeddingRepository(self, KGEmbedding)
