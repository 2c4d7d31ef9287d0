"""The migrated schema matches the design, and its CHECK constraints hold.

The expected tables, columns, foreign keys, unique constraints and indexes below are
copied from the AlphanumericMango database design (sections 3.1 to 4.2 and 5.1), with
the design's BOOLEAN defaults FALSE/TRUE written as 0/1. They are compared with what
SQLite reports for a freshly opened database, so any drift from the design fails here.

The CHECK constraints are mangostore's own additions: every enumerated column accepts
exactly the values the design lists, BOOLEAN columns accept 0 and 1, scores stay in
range, plaintext JSON columns hold valid JSON and quiet hours are 'HH:MM'.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

import mangostore
from design import JSON_COLUMNS
from mangostore import errors

# (name, declared type, notnull, default as SQLite reports it, pk)
Column = tuple[str, str, int, str | None, int]

COLUMNS: dict[str, list[Column]] = {
    "users": [
        ("id", "TEXT", 0, None, 1),
        ("username", "TEXT", 1, None, 0),
        ("email", "TEXT", 0, None, 0),
        ("created_at", "INTEGER", 1, None, 0),
        ("updated_at", "INTEGER", 1, None, 0),
        ("last_login", "INTEGER", 0, None, 0),
        ("preferences", "TEXT", 0, None, 0),
        ("security_profile", "TEXT", 0, None, 0),
        ("voice_profile_id", "TEXT", 0, None, 0),
    ],
    "projects": [
        ("id", "TEXT", 0, None, 1),
        ("user_id", "TEXT", 1, None, 0),
        ("name", "TEXT", 1, None, 0),
        ("display_name", "TEXT", 0, None, 0),
        ("path", "TEXT", 1, None, 0),
        ("type", "TEXT", 0, "'generic'", 0),
        ("status", "TEXT", 0, "'active'", 0),
        ("created_at", "INTEGER", 1, None, 0),
        ("updated_at", "INTEGER", 1, None, 0),
        ("last_accessed", "INTEGER", 0, None, 0),
        ("metadata", "TEXT", 0, None, 0),
        ("security_config", "TEXT", 0, None, 0),
        ("git_config", "TEXT", 0, None, 0),
    ],
    "terminal_sessions": [
        ("id", "TEXT", 0, None, 1),
        ("project_id", "TEXT", 0, None, 0),
        ("user_id", "TEXT", 1, None, 0),
        ("name", "TEXT", 0, None, 0),
        ("status", "TEXT", 0, "'active'", 0),
        ("working_directory", "TEXT", 0, None, 0),
        ("environment_variables", "TEXT", 0, None, 0),
        ("created_at", "INTEGER", 1, None, 0),
        ("last_activity", "INTEGER", 0, None, 0),
        ("session_data", "TEXT", 0, None, 0),
        ("tmux_session_id", "TEXT", 0, None, 0),
    ],
    "voice_profiles": [
        ("id", "TEXT", 0, None, 1),
        ("user_id", "TEXT", 1, None, 0),
        ("name", "TEXT", 1, None, 0),
        ("language", "TEXT", 0, "'en-US'", 0),
        ("accuracy_score", "REAL", 0, "0.0", 0),
        ("training_data", "TEXT", 0, None, 0),
        ("voice_print", "TEXT", 0, None, 0),
        ("created_at", "INTEGER", 1, None, 0),
        ("updated_at", "INTEGER", 1, None, 0),
        ("is_active", "BOOLEAN", 0, "0", 0),
        ("training_file_id", "TEXT", 0, None, 0),
    ],
    "command_history": [
        ("id", "TEXT", 0, None, 1),
        ("user_id", "TEXT", 1, None, 0),
        ("project_id", "TEXT", 0, None, 0),
        ("terminal_session_id", "TEXT", 0, None, 0),
        ("command", "TEXT", 1, None, 0),
        ("command_type", "TEXT", 0, None, 0),
        ("execution_time", "INTEGER", 0, None, 0),
        ("exit_code", "INTEGER", 0, None, 0),
        ("output", "TEXT", 0, None, 0),
        ("working_directory", "TEXT", 0, None, 0),
        ("timestamp", "INTEGER", 1, None, 0),
        ("voice_confidence", "REAL", 0, None, 0),
        ("ai_suggested", "BOOLEAN", 0, "0", 0),
        ("recording_file_id", "TEXT", 0, None, 0),
    ],
    "notification_types": [
        ("id", "TEXT", 0, None, 1),
        ("name", "TEXT", 1, None, 0),
        ("category", "TEXT", 1, None, 0),
        ("priority", "TEXT", 0, "'normal'", 0),
        ("template", "TEXT", 1, None, 0),
        ("default_actions", "TEXT", 0, None, 0),
        ("retention_days", "INTEGER", 0, "30", 0),
        ("created_at", "INTEGER", 1, None, 0),
    ],
    "notification_preferences": [
        ("id", "TEXT", 0, None, 1),
        ("user_id", "TEXT", 1, None, 0),
        ("notification_type_id", "TEXT", 1, None, 0),
        ("enabled", "BOOLEAN", 0, "1", 0),
        ("delivery_methods", "TEXT", 1, None, 0),
        ("sound_enabled", "BOOLEAN", 0, "1", 0),
        ("voice_enabled", "BOOLEAN", 0, "0", 0),
        ("urgency_threshold", "TEXT", 0, "'normal'", 0),
        ("quiet_hours_start", "TEXT", 0, None, 0),
        ("quiet_hours_end", "TEXT", 0, None, 0),
        ("project_specific", "TEXT", 0, None, 0),
        ("created_at", "INTEGER", 1, None, 0),
        ("updated_at", "INTEGER", 1, None, 0),
    ],
    "notifications": [
        ("id", "TEXT", 0, None, 1),
        ("user_id", "TEXT", 1, None, 0),
        ("project_id", "TEXT", 0, None, 0),
        ("notification_type_id", "TEXT", 1, None, 0),
        ("title", "TEXT", 1, None, 0),
        ("message", "TEXT", 1, None, 0),
        ("priority", "TEXT", 1, None, 0),
        ("status", "TEXT", 0, "'pending'", 0),
        ("delivery_methods", "TEXT", 0, None, 0),
        ("metadata", "TEXT", 0, None, 0),
        ("scheduled_at", "INTEGER", 0, None, 0),
        ("delivered_at", "INTEGER", 0, None, 0),
        ("read_at", "INTEGER", 0, None, 0),
        ("dismissed_at", "INTEGER", 0, None, 0),
        ("expires_at", "INTEGER", 0, None, 0),
        ("created_at", "INTEGER", 1, None, 0),
    ],
    "notification_actions": [
        ("id", "TEXT", 0, None, 1),
        ("notification_id", "TEXT", 1, None, 0),
        ("action_type", "TEXT", 1, None, 0),
        ("action_label", "TEXT", 1, None, 0),
        ("action_command", "TEXT", 0, None, 0),
        ("action_data", "TEXT", 0, None, 0),
        ("executed_at", "INTEGER", 0, None, 0),
        ("execution_result", "TEXT", 0, None, 0),
        ("created_at", "INTEGER", 1, None, 0),
    ],
    "ai_conversations": [
        ("id", "TEXT", 0, None, 1),
        ("user_id", "TEXT", 1, None, 0),
        ("project_id", "TEXT", 0, None, 0),
        ("title", "TEXT", 0, None, 0),
        ("context_type", "TEXT", 0, "'general'", 0),
        ("status", "TEXT", 0, "'active'", 0),
        ("conversation_data", "TEXT", 0, None, 0),
        ("token_count", "INTEGER", 0, "0", 0),
        ("created_at", "INTEGER", 1, None, 0),
        ("last_message_at", "INTEGER", 0, None, 0),
        ("expires_at", "INTEGER", 0, None, 0),
    ],
    "ai_memory": [
        ("id", "TEXT", 0, None, 1),
        ("user_id", "TEXT", 1, None, 0),
        ("project_id", "TEXT", 0, None, 0),
        ("conversation_id", "TEXT", 0, None, 0),
        ("memory_type", "TEXT", 1, None, 0),
        ("key_name", "TEXT", 1, None, 0),
        ("value_data", "TEXT", 1, None, 0),
        ("confidence_score", "REAL", 0, "1.0", 0),
        ("source", "TEXT", 0, None, 0),
        ("created_at", "INTEGER", 1, None, 0),
        ("last_accessed", "INTEGER", 0, None, 0),
        ("access_count", "INTEGER", 0, "0", 0),
        ("expires_at", "INTEGER", 0, None, 0),
    ],
    "security_events": [
        ("id", "TEXT", 0, None, 1),
        ("user_id", "TEXT", 0, None, 0),
        ("event_type", "TEXT", 1, None, 0),
        ("severity", "TEXT", 1, None, 0),
        ("source_component", "TEXT", 1, None, 0),
        ("event_data", "TEXT", 0, None, 0),
        ("client_info", "TEXT", 0, None, 0),
        ("risk_score", "REAL", 0, "0.0", 0),
        ("resolved", "BOOLEAN", 0, "0", 0),
        ("resolved_at", "INTEGER", 0, None, 0),
        ("resolved_by", "TEXT", 0, None, 0),
        ("timestamp", "INTEGER", 1, None, 0),
        # mangostore's audit chain (migration 0007): sequence number and MAC.
        ("seq", "INTEGER", 1, None, 0),
        ("mac", "BLOB", 0, None, 0),
    ],
    "permissions": [
        ("id", "TEXT", 0, None, 1),
        ("user_id", "TEXT", 1, None, 0),
        ("resource_type", "TEXT", 1, None, 0),
        ("resource_id", "TEXT", 0, None, 0),
        ("permission_type", "TEXT", 1, None, 0),
        ("granted_by", "TEXT", 0, None, 0),
        ("granted_at", "INTEGER", 1, None, 0),
        ("expires_at", "INTEGER", 0, None, 0),
        ("revoked_at", "INTEGER", 0, None, 0),
        ("revoked_by", "TEXT", 0, None, 0),
        ("conditions", "TEXT", 0, None, 0),
    ],
    "user_sessions": [
        ("id", "TEXT", 0, None, 1),
        ("user_id", "TEXT", 1, None, 0),
        ("session_token", "TEXT", 1, None, 0),
        ("device_info", "TEXT", 0, None, 0),
        ("ip_address", "TEXT", 0, None, 0),
        ("user_agent", "TEXT", 0, None, 0),
        ("created_at", "INTEGER", 1, None, 0),
        ("last_activity", "INTEGER", 0, None, 0),
        ("expires_at", "INTEGER", 0, None, 0),
        ("revoked_at", "INTEGER", 0, None, 0),
        ("revoked_reason", "TEXT", 0, None, 0),
        ("is_active", "BOOLEAN", 0, "1", 0),
        ("security_level", "TEXT", 0, "'standard'", 0),
    ],
    "kg_entities": [
        ("id", "TEXT", 0, None, 1),
        ("user_id", "TEXT", 1, None, 0),
        ("project_id", "TEXT", 0, None, 0),
        ("entity_type", "TEXT", 1, None, 0),
        ("name", "TEXT", 1, None, 0),
        ("description", "TEXT", 0, None, 0),
        ("metadata", "TEXT", 0, None, 0),
        ("confidence_score", "REAL", 0, "1.0", 0),
        ("created_at", "INTEGER", 1, None, 0),
        ("updated_at", "INTEGER", 1, None, 0),
        ("last_accessed", "INTEGER", 0, None, 0),
        ("access_count", "INTEGER", 0, "0", 0),
    ],
    "kg_relations": [
        ("id", "TEXT", 0, None, 1),
        ("user_id", "TEXT", 1, None, 0),
        ("project_id", "TEXT", 0, None, 0),
        ("subject_id", "TEXT", 1, None, 0),
        ("predicate", "TEXT", 1, None, 0),
        ("object_id", "TEXT", 1, None, 0),
        ("weight", "REAL", 0, "1.0", 0),
        ("confidence_score", "REAL", 0, "1.0", 0),
        ("created_at", "INTEGER", 1, None, 0),
        ("last_confirmed", "INTEGER", 0, None, 0),
        ("source", "TEXT", 0, None, 0),
    ],
    "kg_observations": [
        ("id", "TEXT", 0, None, 1),
        ("entity_id", "TEXT", 1, None, 0),
        ("user_id", "TEXT", 1, None, 0),
        ("observation_type", "TEXT", 1, None, 0),
        ("content", "TEXT", 1, None, 0),
        ("context", "TEXT", 0, None, 0),
        ("confidence_score", "REAL", 0, "1.0", 0),
        ("verified", "BOOLEAN", 0, "0", 0),
        ("created_at", "INTEGER", 1, None, 0),
        ("verified_at", "INTEGER", 0, None, 0),
    ],
    "kg_embeddings": [
        ("id", "TEXT", 0, None, 1),
        ("entity_id", "TEXT", 1, None, 0),
        ("user_id", "TEXT", 1, None, 0),
        ("embedding_type", "TEXT", 0, "'semantic'", 0),
        ("vector_data", "BLOB", 0, None, 0),
        ("dimensions", "INTEGER", 1, None, 0),
        ("model_version", "TEXT", 1, None, 0),
        ("created_at", "INTEGER", 1, None, 0),
    ],
}

FOREIGN_KEYS: dict[str, set[tuple[str, str, str]]] = {
    "users": {
        ("voice_profile_id", "voice_profiles", "id"),
    },
    "projects": {
        ("user_id", "users", "id"),
    },
    "terminal_sessions": {
        ("project_id", "projects", "id"),
        ("user_id", "users", "id"),
    },
    "voice_profiles": {
        ("user_id", "users", "id"),
        ("training_file_id", "files", "id"),
    },
    "command_history": {
        ("recording_file_id", "files", "id"),
        ("project_id", "projects", "id"),
        ("terminal_session_id", "terminal_sessions", "id"),
        ("user_id", "users", "id"),
    },
    "notification_types": set(),
    "notification_preferences": {
        ("notification_type_id", "notification_types", "id"),
        ("user_id", "users", "id"),
    },
    "notifications": {
        ("notification_type_id", "notification_types", "id"),
        ("project_id", "projects", "id"),
        ("user_id", "users", "id"),
    },
    "notification_actions": {
        ("notification_id", "notifications", "id"),
    },
    "ai_conversations": {
        ("project_id", "projects", "id"),
        ("user_id", "users", "id"),
    },
    "ai_memory": {
        ("conversation_id", "ai_conversations", "id"),
        ("project_id", "projects", "id"),
        ("user_id", "users", "id"),
    },
    # No reference to users: an audit event outlives the user it is about (erasure
    # deletes the user, never the events of the chain).
    "security_events": set(),
    "permissions": {
        ("user_id", "users", "id"),
    },
    "user_sessions": {
        ("user_id", "users", "id"),
    },
    "kg_entities": {
        ("project_id", "projects", "id"),
        ("user_id", "users", "id"),
    },
    "kg_relations": {
        ("object_id", "kg_entities", "id"),
        ("project_id", "projects", "id"),
        ("subject_id", "kg_entities", "id"),
        ("user_id", "users", "id"),
    },
    "kg_observations": {
        ("entity_id", "kg_entities", "id"),
        ("user_id", "users", "id"),
    },
    "kg_embeddings": {
        ("entity_id", "kg_entities", "id"),
        ("user_id", "users", "id"),
    },
}

UNIQUE: dict[str, set[tuple[str, ...]]] = {
    "users": {("email",), ("username",)},
    "projects": {("user_id", "path")},
    "notification_types": {("name",)},
    "notification_preferences": {("user_id", "notification_type_id")},
    "user_sessions": {("session_token",)},
    "security_events": {("seq",)},
}

INDEXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "idx_users_email": ("users", ("email",)),
    "idx_users_last_login": ("users", ("last_login",)),
    "idx_projects_user_id": ("projects", ("user_id",)),
    "idx_projects_last_accessed": ("projects", ("last_accessed",)),
    "idx_projects_status": ("projects", ("status",)),
    "idx_terminal_sessions_project_id": ("terminal_sessions", ("project_id",)),
    "idx_terminal_sessions_user_id": ("terminal_sessions", ("user_id",)),
    "idx_terminal_sessions_last_activity": ("terminal_sessions", ("last_activity",)),
    "idx_command_history_user_id": ("command_history", ("user_id",)),
    "idx_command_history_project_id": ("command_history", ("project_id",)),
    "idx_command_history_timestamp": ("command_history", ("timestamp",)),
    "idx_command_history_command_type": ("command_history", ("command_type",)),
    "idx_notifications_user_id": ("notifications", ("user_id",)),
    "idx_notifications_status": ("notifications", ("status",)),
    "idx_notifications_created_at": ("notifications", ("created_at",)),
    "idx_notifications_priority": ("notifications", ("priority",)),
    "idx_security_events_user_id": ("security_events", ("user_id",)),
    "idx_security_events_timestamp": ("security_events", ("timestamp",)),
    "idx_security_events_severity": ("security_events", ("severity",)),
    "idx_security_events_resolved": ("security_events", ("resolved",)),
    "idx_kg_entities_user_id": ("kg_entities", ("user_id",)),
    "idx_kg_entities_project_id": ("kg_entities", ("project_id",)),
    "idx_kg_entities_entity_type": ("kg_entities", ("entity_type",)),
    "idx_kg_entities_last_accessed": ("kg_entities", ("last_accessed",)),
    "idx_kg_relations_subject_id": ("kg_relations", ("subject_id",)),
    "idx_kg_relations_object_id": ("kg_relations", ("object_id",)),
    "idx_kg_relations_predicate": ("kg_relations", ("predicate",)),
    "idx_kg_relations_user_id": ("kg_relations", ("user_id",)),
    "idx_command_history_user_project": ("command_history", ("user_id", "project_id")),
    "idx_notifications_user_status": ("notifications", ("user_id", "status")),
    "idx_kg_entities_user_type": ("kg_entities", ("user_id", "entity_type")),
}

# Columns encrypted at field level: declared TEXT as in the design, they hold binary
# envelopes (see docs/security.md), so they carry no JSON check.
ENCRYPTED_COLUMNS = [
    ("users", "security_profile"),
    ("projects", "security_config"),
    ("terminal_sessions", "environment_variables"),
    ("terminal_sessions", "session_data"),
    ("voice_profiles", "training_data"),
    ("voice_profiles", "voice_print"),
    ("ai_conversations", "conversation_data"),
    ("notifications", "metadata"),
    ("security_events", "event_data"),
    ("security_events", "client_info"),
]


BOOLEAN_COLUMNS = [
    (table, spec[0]) for table, specs in COLUMNS.items() for spec in specs if spec[1] == "BOOLEAN"
]

# Every enumerated column with all the values the design lists for it.
ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("command_history", "command_type"): ("voice", "keyboard", "ai"),
    ("notification_types", "category"): ("system", "voice", "ai", "project"),
    ("notification_types", "priority"): ("low", "normal", "high", "critical"),
    ("notification_preferences", "urgency_threshold"): ("low", "normal", "high", "critical"),
    ("notifications", "priority"): ("low", "normal", "high", "critical"),
    ("notifications", "status"): ("pending", "delivered", "read", "dismissed", "failed"),
    ("notification_actions", "action_type"): ("button", "voice_command", "auto"),
    ("ai_conversations", "context_type"): ("general", "project", "terminal", "voice"),
    ("ai_conversations", "status"): ("active", "archived", "deleted"),
    ("ai_memory", "memory_type"): ("fact", "preference", "skill", "context"),
    ("ai_memory", "source"): ("user_input", "inference", "observation"),
    ("security_events", "event_type"): ("auth", "access", "command", "voice", "data"),
    ("security_events", "severity"): ("info", "warning", "error", "critical"),
    ("permissions", "resource_type"): ("project", "terminal", "voice", "ai"),
    ("permissions", "permission_type"): ("read", "write", "execute", "admin"),
    ("user_sessions", "security_level"): ("low", "standard", "high"),
    ("kg_entities", "entity_type"): ("person", "project", "command", "file", "concept"),
    ("kg_relations", "source"): ("user", "inference", "observation"),
    ("kg_observations", "observation_type"): ("fact", "behavior", "preference", "pattern"),
    ("kg_embeddings", "embedding_type"): ("semantic", "syntactic", "contextual"),
}

# Other checked columns: (table, column, accepted values, refused values).
RANGES: list[tuple[str, str, tuple[Any, ...], tuple[Any, ...]]] = [
    ("voice_profiles", "accuracy_score", (0, 0.5, 1), (-0.1, 1.5)),
    ("command_history", "voice_confidence", (0.0, 1.0), (-0.01, 1.5)),
    ("ai_memory", "confidence_score", (0.0, 0.75, 1.0), (-1, 1.5)),
    ("kg_entities", "confidence_score", (0.0, 1.0), (-0.5, 1.5)),
    ("kg_relations", "confidence_score", (0.0, 1.0), (-0.5, 1.5)),
    ("kg_observations", "confidence_score", (0.0, 1.0), (-0.5, 1.5)),
    ("security_events", "risk_score", (0, 0.0, 97.5), (-0.1, -1)),
    ("ai_conversations", "token_count", (0, 128_000), (-1,)),
    ("ai_memory", "access_count", (0, 7), (-1,)),
    ("kg_entities", "access_count", (0, 7), (-1,)),
    ("notification_types", "retention_days", (0, 30, 3650), (-1,)),
    ("kg_embeddings", "dimensions", (1, 384, 1536), (0, -3)),
    (
        "kg_relations",
        "predicate",
        ("uses", "creates", "depends_on", "similar_to", "v2_of"),
        ("", "Uses", "depends-on", "similar to", "uses\n", "déjà"),
    ),
    (
        "notification_preferences",
        "quiet_hours_start",
        ("00:00", "07:30", "23:59"),
        ("24:00", "25:00", "7:30", "12:60", "07:30:00", "noon", ""),
    ),
    (
        "notification_preferences",
        "quiet_hours_end",
        ("00:00", "22:15", "23:59"),
        ("29:00", "9:00", "12:5", " 12:00", "12h00"),
    ),
]

NOW = 1_700_000_000_000  # epoch milliseconds

# The smallest valid row of each table, pointing at the rows of PARENTS.
MINIMAL: dict[str, dict[str, Any]] = {
    "users": {"username": "someone", "created_at": NOW, "updated_at": NOW},
    "projects": {
        "user_id": "u1",
        "name": "work",
        "path": "/home/someone/work",
        "created_at": NOW,
        "updated_at": NOW,
    },
    "terminal_sessions": {"user_id": "u1", "created_at": NOW},
    "voice_profiles": {"user_id": "u1", "name": "default", "created_at": NOW, "updated_at": NOW},
    "command_history": {"user_id": "u1", "command": "ls -la", "timestamp": NOW},
    "notification_types": {
        "name": "build_failed",
        "category": "project",
        "template": "Build failed: {reason}",
        "created_at": NOW,
    },
    "notification_preferences": {
        "user_id": "u1",
        "notification_type_id": "nt1",
        "delivery_methods": '["desktop"]',
        "created_at": NOW,
        "updated_at": NOW,
    },
    "notifications": {
        "user_id": "u1",
        "notification_type_id": "nt1",
        "title": "Build",
        "message": "Build finished",
        "priority": "normal",
        "created_at": NOW,
    },
    "notification_actions": {
        "notification_id": "n1",
        "action_type": "button",
        "action_label": "Open log",
        "created_at": NOW,
    },
    "ai_conversations": {"user_id": "u1", "created_at": NOW},
    "ai_memory": {
        "user_id": "u1",
        "memory_type": "fact",
        "key_name": "editor",
        "value_data": '"vim"',
        "created_at": NOW,
    },
    "security_events": {
        "event_type": "auth",
        "severity": "info",
        "source_component": "auth",
        "timestamp": NOW,
        "seq": 1,
    },
    "permissions": {
        "user_id": "u1",
        "resource_type": "project",
        "permission_type": "read",
        "granted_at": NOW,
    },
    "user_sessions": {"user_id": "u1", "session_token": "token-x", "created_at": NOW},
    "kg_entities": {
        "user_id": "u1",
        "entity_type": "concept",
        "name": "testing",
        "created_at": NOW,
        "updated_at": NOW,
    },
    "kg_relations": {
        "user_id": "u1",
        "subject_id": "e1",
        "predicate": "uses",
        "object_id": "e1",
        "created_at": NOW,
    },
    "kg_observations": {
        "entity_id": "e1",
        "user_id": "u1",
        "observation_type": "fact",
        "content": "runs tests before committing",
        "created_at": NOW,
    },
    "kg_embeddings": {
        "entity_id": "e1",
        "user_id": "u1",
        "dimensions": 3,
        "model_version": "test-model",
        "created_at": NOW,
    },
}

# Parent rows every check test can point at, in insertion order.
PARENTS: list[tuple[str, str, dict[str, Any]]] = [
    ("users", "u1", {"username": "parent"}),
    ("projects", "p1", {"path": "/home/parent/project"}),
    ("terminal_sessions", "t1", {"project_id": "p1"}),
    ("notification_types", "nt1", {"name": "parent_type"}),
    ("notifications", "n1", {"project_id": "p1"}),
    ("ai_conversations", "c1", {"project_id": "p1"}),
    ("kg_entities", "e1", {"project_id": "p1"}),
]


def _column(table: str, column: str) -> Column:
    for spec in COLUMNS[table]:
        if spec[0] == column:
            return spec
    raise AssertionError(f"{table}.{column} is not in the expected schema")


def _cases() -> tuple[list[Any], list[Any], list[Any]]:
    """Build the (accepted, refused, nullable) parameter lists from the tables above."""
    accepted: list[Any] = []
    refused: list[Any] = []
    checked: set[tuple[str, str]] = set()
    for (table, column), values in ENUMS.items():
        checked.add((table, column))
        for value in values:
            accepted.append(pytest.param(table, column, value, id=f"{table}.{column}={value}"))
        for value in ("unknown", values[0].upper(), f" {values[0]}", ""):
            refused.append(pytest.param(table, column, value, id=f"{table}.{column}={value!r}"))
    for table, column in BOOLEAN_COLUMNS:
        checked.add((table, column))
        for value in (0, 1, True, False):
            accepted.append(pytest.param(table, column, value, id=f"{table}.{column}={value!r}"))
        for value in (2, -1, "yes", "true"):
            refused.append(pytest.param(table, column, value, id=f"{table}.{column}={value!r}"))
    for table, column in JSON_COLUMNS:
        checked.add((table, column))
        for value in ('{"a": 1}', '["desktop", "voice"]', "[]", '"text"', "3"):
            accepted.append(pytest.param(table, column, value, id=f"{table}.{column}={value}"))
        for value in ("{not json", "['single']", "", '{"a": 1', "{'a': 1}"):
            refused.append(pytest.param(table, column, value, id=f"{table}.{column}={value!r}"))
    for table, column, good, bad in RANGES:
        checked.add((table, column))
        for value in good:
            accepted.append(pytest.param(table, column, value, id=f"{table}.{column}={value!r}"))
        for value in bad:
            refused.append(pytest.param(table, column, value, id=f"{table}.{column}={value!r}"))
    nullable = [
        pytest.param(table, column, id=f"{table}.{column}")
        for table, column in sorted(checked)
        if _column(table, column)[2] == 0
    ]
    return accepted, refused, nullable


ACCEPTED, REFUSED, NULLABLE_CHECKED = _cases()
# security_events is append-only: its trigger refuses every UPDATE before a CHECK runs.
REFUSED_ON_UPDATE = [case for case in REFUSED if case.values[0] != "security_events"]


def _insert(db: Any, table: str, row_id: str, **values: Any) -> None:
    """Insert MINIMAL[table] with ``values`` on top; names come from the spec only."""
    row = {"id": row_id, **MINIMAL[table], **values}
    known = {spec[0] for spec in COLUMNS[table]}
    assert set(row) <= known, set(row) - known
    names = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(row.values()))


def _value(db: Any, table: str, column: str, row_id: str) -> Any:
    assert column in {spec[0] for spec in COLUMNS[table]}
    rows = db.query(f"SELECT {column} FROM {table} WHERE id = ?", [row_id])
    assert len(rows) == 1
    return rows[0][0]


def _count(db: Any, table: str, row_id: str) -> int:
    assert table in COLUMNS
    return int(db.query(f"SELECT count(*) AS n FROM {table} WHERE id = ?", [row_id])[0]["n"])


class _Undo(Exception):
    """Raised when a test ends, to roll back everything it wrote."""


@pytest.fixture(scope="module")
def schema_db() -> Iterator[mangostore.Database]:
    """One freshly migrated in-memory database for the module, holding one row of each
    parent table (see PARENTS); no test commits to it (see ``db``)."""
    with mangostore.open(":memory:", encrypted=False) as database:
        for table, row_id, values in PARENTS:
            _insert(database, table, row_id, **values)
        yield database


@pytest.fixture
def db(schema_db: mangostore.Database) -> Iterator[mangostore.Database]:
    """The module's database inside a transaction rolled back when the test ends: each
    test sees the migrated schema and PARENTS, and nothing another test wrote.

    Every constraint of the schema is checked when its statement runs (none is
    deferred to the commit), so a test inside the transaction sees each refusal as it
    would outside one; a refused statement is rolled back alone.
    """
    with contextlib.suppress(_Undo), schema_db.transaction():
        yield schema_db
        raise _Undo


@pytest.fixture
def parented(db: mangostore.Database) -> mangostore.Database:
    """A database holding one row of each parent table (see PARENTS)."""
    assert _count(db, "users", "u1") == 1
    return db


# --- structure -------------------------------------------------------------------


def test_every_design_table_exists(db: Any) -> None:
    rows = db.query("SELECT name FROM sqlite_master WHERE type = 'table'", [])
    tables = {row["name"] for row in rows}
    assert set(COLUMNS) | {"kg_search_index"} <= tables


@pytest.mark.parametrize("table", list(COLUMNS))
def test_columns_match_the_design(db: Any, table: str) -> None:
    rows = db.query(
        'SELECT name, type, "notnull", dflt_value, pk, hidden FROM pragma_table_xinfo(?)',
        [table],
    )
    actual = [(r["name"], r["type"], r["notnull"], r["dflt_value"], r["pk"]) for r in rows]
    assert actual == COLUMNS[table]
    assert all(r["hidden"] == 0 for r in rows)


@pytest.mark.parametrize("table", list(COLUMNS))
def test_foreign_keys_match_the_design(db: Any, table: str) -> None:
    rows = db.query('SELECT "from", "table", "to" FROM pragma_foreign_key_list(?)', [table])
    assert {(r[0], r[1], r[2]) for r in rows} == FOREIGN_KEYS[table]


@pytest.mark.parametrize("table", list(COLUMNS))
def test_unique_constraints_match_the_design(db: Any, table: str) -> None:
    indexes = db.query(
        "SELECT name FROM pragma_index_list(?) WHERE origin = 'u' AND \"unique\" = 1", [table]
    )
    actual: set[tuple[str, ...]] = set()
    for index in indexes:
        info = db.query("SELECT name FROM pragma_index_info(?) ORDER BY seqno", [index["name"]])
        actual.add(tuple(r["name"] for r in info))
    assert actual == UNIQUE.get(table, set())


@pytest.mark.parametrize("name", list(INDEXES))
def test_index_matches_the_design(db: Any, name: str) -> None:
    table, columns = INDEXES[name]
    rows = db.query("SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND name = ?", [name])
    assert [r["tbl_name"] for r in rows] == [table]
    info = db.query("SELECT name FROM pragma_index_info(?) ORDER BY seqno", [name])
    assert tuple(r["name"] for r in info) == columns
    listed = db.query(
        'SELECT "unique", origin, partial FROM pragma_index_list(?) WHERE name = ?', [table, name]
    )
    assert [(r[0], r[1], r[2]) for r in listed] == [(0, "c", 0)]


def test_kg_search_index_is_fts5_with_porter_unicode61(db: Any) -> None:
    rows = db.query("SELECT sql FROM sqlite_master WHERE name = 'kg_search_index'", [])
    assert len(rows) == 1
    sql = " ".join(rows[0]["sql"].split())
    assert sql.startswith("CREATE VIRTUAL TABLE kg_search_index")
    assert sql.endswith("USING fts5(entity_id, content, tokenize='porter unicode61')")


def test_kg_search_index_stems_and_folds_diacritics(db: Any) -> None:
    db.execute(
        "INSERT INTO kg_search_index (entity_id, content) VALUES (?, ?)",
        ["e1", "Running the Café deployment scripts"],
    )
    db.execute(
        "INSERT INTO kg_search_index (entity_id, content) VALUES (?, ?)",
        ["e2", "unrelated note"],
    )
    for term in ("run", "runs", "cafe", "CAFÉ", "script"):
        rows = db.query(
            "SELECT entity_id FROM kg_search_index WHERE kg_search_index MATCH ?", [term]
        )
        assert [r["entity_id"] for r in rows] == ["e1"], term


# --- CHECK constraints -------------------------------------------------------------


@pytest.mark.parametrize(("table", "column", "value"), ACCEPTED)
def test_check_accepts_documented_values(
    parented: Any, table: str, column: str, value: Any
) -> None:
    _insert(parented, table, "x", **{column: value})
    assert _value(parented, table, column, "x") == value


@pytest.mark.parametrize(("table", "column", "value"), REFUSED)
def test_check_refuses_other_values(parented: Any, table: str, column: str, value: Any) -> None:
    with pytest.raises(errors.CheckConstraintError):
        _insert(parented, table, "x", **{column: value})
    assert _count(parented, table, "x") == 0


@pytest.mark.parametrize(("table", "column", "value"), REFUSED_ON_UPDATE)
def test_check_refuses_other_values_on_update(
    parented: Any, table: str, column: str, value: Any
) -> None:
    _insert(parented, table, "x")
    assert column in {spec[0] for spec in COLUMNS[table]}
    with pytest.raises(errors.CheckConstraintError):
        parented.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?", [value, "x"])


@pytest.mark.parametrize(("table", "column"), NULLABLE_CHECKED)
def test_checked_nullable_columns_accept_null(parented: Any, table: str, column: str) -> None:
    _insert(parented, table, "x", **{column: None})
    assert _value(parented, table, column, "x") is None


@pytest.mark.parametrize(("table", "column"), ENCRYPTED_COLUMNS)
def test_encrypted_columns_hold_binary_envelopes(parented: Any, table: str, column: str) -> None:
    envelope = b"\x01\x01\x00\x00\x00\x07\xff\x00 not json {"
    _insert(parented, table, "x", **{column: envelope})
    assert _value(parented, table, column, "x") == envelope
    assert column in {spec[0] for spec in COLUMNS[table]}
    rows = parented.query(f"SELECT typeof({column}) FROM {table} WHERE id = ?", ["x"])
    assert rows[0][0] == "blob"


# --- defaults and the other constraints ----------------------------------------------


def test_defaults_apply(parented: Any) -> None:
    _insert(parented, "user_sessions", "s")
    row = parented.query("SELECT is_active, security_level FROM user_sessions WHERE id = 's'", [])
    assert (row[0]["is_active"], row[0]["security_level"]) == (1, "standard")
    _insert(parented, "notification_preferences", "np")
    row = parented.query(
        "SELECT enabled, sound_enabled, voice_enabled, urgency_threshold"
        " FROM notification_preferences WHERE id = 'np'",
        [],
    )
    assert tuple(row[0][i] for i in range(4)) == (1, 1, 0, "normal")
    _insert(parented, "voice_profiles", "v")
    row = parented.query(
        "SELECT is_active, language, accuracy_score FROM voice_profiles WHERE id = 'v'", []
    )
    assert tuple(row[0][i] for i in range(3)) == (0, "en-US", 0.0)
    row = parented.query("SELECT type, status FROM projects WHERE id = 'p1'", [])
    assert (row[0]["type"], row[0]["status"]) == ("generic", "active")
    row = parented.query("SELECT status, priority FROM notifications WHERE id = 'n1'", [])
    assert (row[0]["status"], row[0]["priority"]) == ("pending", "normal")


def test_users_and_voice_profiles_reference_each_other(parented: Any) -> None:
    _insert(parented, "voice_profiles", "v1")
    parented.execute("UPDATE users SET voice_profile_id = ? WHERE id = ?", ["v1", "u1"])
    assert _value(parented, "users", "voice_profile_id", "u1") == "v1"
    with pytest.raises(errors.ForeignKeyError):
        parented.execute("UPDATE users SET voice_profile_id = ? WHERE id = ?", ["nope", "u1"])


@pytest.mark.parametrize(
    ("table", "column"),
    [(t, f[0]) for t, fks in FOREIGN_KEYS.items() for f in sorted(fks)],
)
def test_foreign_keys_are_enforced(parented: Any, table: str, column: str) -> None:
    with pytest.raises(errors.ForeignKeyError):
        _insert(parented, table, "x", **{column: "missing"})
    assert _count(parented, table, "x") == 0


@pytest.mark.parametrize(
    ("table", "column"),
    [(t, spec[0]) for t, specs in COLUMNS.items() for spec in specs if spec[2] == 1],
)
def test_not_null_is_enforced(parented: Any, table: str, column: str) -> None:
    with pytest.raises(errors.NotNullError):
        _insert(parented, table, "x", **{column: None})


def test_unique_constraints_are_enforced(parented: Any) -> None:
    with pytest.raises(errors.UniqueConstraintError):
        _insert(parented, "users", "x", username="parent")
    _insert(parented, "users", "u2", email="a@example.com")
    with pytest.raises(errors.UniqueConstraintError):
        _insert(parented, "users", "u3", username="other", email="a@example.com")
    with pytest.raises(errors.UniqueConstraintError):
        _insert(parented, "projects", "x", path="/home/parent/project")
    _insert(parented, "projects", "p2", user_id="u2", path="/home/parent/project")
    with pytest.raises(errors.UniqueConstraintError):
        _insert(parented, "notification_types", "x", name="parent_type")
    _insert(parented, "notification_preferences", "np1")
    with pytest.raises(errors.UniqueConstraintError):
        _insert(parented, "notification_preferences", "np2")
    _insert(parented, "user_sessions", "s1")
    with pytest.raises(errors.UniqueConstraintError):
        _insert(parented, "user_sessions", "s2")
    with pytest.raises(errors.UniqueConstraintError):
        _insert(parented, "kg_entities", "e1")
