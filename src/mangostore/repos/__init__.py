"""Repositories: typed access to every table, as attributes of the database."""

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
from mangostore.repos.terminal import TerminalSessionRepository
from mangostore.repos.users import UserRepository
from mangostore.repos.voice import VoiceProfileRepository

__all__ = [
    "AuditTrail",
    "CommandHistoryRepository",
    "CommandStats",
    "PermissionRepository",
    "ProjectRepository",
    "Repository",
    "RepositoryAccess",
    "RepositoryDatabase",
    "SecurityEventRepository",
    "TerminalSessionRepository",
    "UserOwnedRepository",
    "UserRepository",
    "VoiceProfileRepository",
]


class PermissionRepository(UserOwnedRepository[Permission]):
    """``db.permissions``: ``granted_at`` defaults to now."""

    now_on_create = ("granted_at",)


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
    def notification_types(self: RepositoryDatabase) -> Repository[NotificationType]:
        """The ``notification_types`` table."""
        return Repository(self, NotificationType)

    @cached_property
    def notification_preferences(
        self: RepositoryDatabase,
    ) -> UserOwnedRepository[NotificationPreference]:
        """The ``notification_preferences`` table."""
        return UserOwnedRepository(self, NotificationPreference)

    @cached_property
    def notifications(self: RepositoryDatabase) -> UserOwnedRepository[Notification]:
        """The ``notifications`` table (``metadata`` is encrypted)."""
        return UserOwnedRepository(self, Notification)

    @cached_property
    def notification_actions(self: RepositoryDatabase) -> Repository[NotificationAction]:
        """The ``notification_actions`` table."""
        return Repository(self, NotificationAction)

    @cached_property
    def ai_conversations(self: RepositoryDatabase) -> UserOwnedRepository[AIConversation]:
        """The ``ai_conversations`` table (``conversation_data`` is encrypted)."""
        return UserOwnedRepository(self, AIConversation)

    @cached_property
    def ai_memory(self: RepositoryDatabase) -> UserOwnedRepository[AIMemory]:
        """The ``ai_memory`` table."""
        return UserOwnedRepository(self, AIMemory)

    @cached_property
    def security_events(self: RepositoryDatabase) -> SecurityEventRepository:
        """The ``security_events`` table."""
        return SecurityEventRepository(self, SecurityEvent)

    @cached_property
    def permissions(self: RepositoryDatabase) -> PermissionRepository:
        """The ``permissions`` table."""
        return PermissionRepository(self, Permission)

    @cached_property
    def user_sessions(self: RepositoryDatabase) -> UserOwnedRepository[UserSession]:
        """The ``user_sessions`` table."""
        return UserOwnedRepository(self, UserSession)

    @cached_property
    def kg_entities(self: RepositoryDatabase) -> UserOwnedRepository[KGEntity]:
        """The ``kg_entities`` table."""
        return UserOwnedRepository(self, KGEntity)

    @cached_property
    def kg_relations(self: RepositoryDatabase) -> UserOwnedRepository[KGRelation]:
        """The ``kg_relations`` table."""
        return UserOwnedRepository(self, KGRelation)

    @cached_property
    def kg_observations(self: RepositoryDatabase) -> UserOwnedRepository[KGObservation]:
        """The ``kg_observations`` table."""
        return UserOwnedRepository(self, KGObservation)

    @cached_property
    def kg_embeddings(self: RepositoryDatabase) -> UserOwnedRepository[KGEmbedding]:
        """The ``kg_embeddings`` table."""
        return UserOwnedRepository(self, KGEmbedding)
