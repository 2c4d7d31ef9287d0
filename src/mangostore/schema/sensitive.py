"""The columns that are encrypted at field level, and the column naming each row's owner.

The list is the design's ``getSensitiveFields`` (section 8.1), which matches the
columns its schema marks ``-- JSON, encrypted`` plus ``notifications.metadata``, and
the personal data of audit events (``security_events.event_data`` and ``client_info``).
These columns keep their declared type ``TEXT`` but hold binary envelopes (see
:mod:`mangostore.keys.envelope`), sealed under the owning user's data key.

Both mappings are read-only and are the allow-list that the field cipher and key
rotation take table and column names from; nothing here comes from input.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

#: Encrypted columns of each table, in schema order.
SENSITIVE_FIELDS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "users": ("security_profile",),
        "projects": ("security_config",),
        "terminal_sessions": ("environment_variables", "session_data"),
        "voice_profiles": ("training_data", "voice_print"),
        "ai_conversations": ("conversation_data",),
        "notifications": ("metadata",),
        "security_events": ("event_data", "client_info"),
    }
)

#: Tables whose rows never change once written (the audit chain's MACs cover their
#: ciphertext): key rotation leaves their values under the key that sealed them,
#: which stays in the keyring as a retired key.
APPEND_ONLY_TABLES: Final[frozenset[str]] = frozenset({"security_events"})

#: The owner bound into the envelopes of rows whose owner column is NULL (audit events
#: about no user): their values are sealed under this pseudo-user's data key, which
#: no erasure destroys. It is not a UUID, so it never names a real user.
SYSTEM_OWNER: Final = "mangostore:system"

#: Encrypted columns of tables that have no record class: the services that own these
#: tables seal and open the values through the field cipher themselves.
SERVICE_SENSITIVE_FIELDS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "ai_messages": ("content",),
    }
)

#: For each table of :data:`SENSITIVE_FIELDS` and :data:`SERVICE_SENSITIVE_FIELDS`, the
#: column holding the id of the user whose data key encrypts the row's sensitive values
#: (a user owns their own row).
OWNER_COLUMN: Final[Mapping[str, str]] = MappingProxyType(
    {
        "users": "id",
        "projects": "user_id",
        "terminal_sessions": "user_id",
        "voice_profiles": "user_id",
        "ai_conversations": "user_id",
        "notifications": "user_id",
        "security_events": "user_id",
        "ai_messages": "user_id",
    }
)


#: Every encrypted column: the record tables' and the services' together. Key rotation
#: and anything else that must reach every sealed value walks this one.
ALL_SENSITIVE_FIELDS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {**SENSITIVE_FIELDS, **SERVICE_SENSITIVE_FIELDS}
)


def is_sensitive(table: str, column: str) -> bool:
    """Tell whether ``table.column`` is encrypted at field level."""
    return column in ALL_SENSITIVE_FIELDS.get(table, ())
