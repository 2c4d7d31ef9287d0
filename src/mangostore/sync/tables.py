"""Which tables sync, by which key, and how each resolves what two devices did at once.

Synced: every table that holds a fact the person made or the application recorded
for them. Not synced:

* derived tables, rebuilt on every device by the schema's own triggers or by the
  services from the synced facts: full-text indexes and their search rows, vocabulary
  tables, weekly statistics, embeddings and their queue, canonical names and name
  keys, vector change marks, merge suggestions, stored files' part lists (made from
  the synced ``files.parts``);
* device-local tables: login sessions and their verifiers, login attempts, delivery
  leases, key rotation progress, the permission cache generation, the migration
  ledger and sync's own bookkeeping;
* ``security_events``: the audit log is a per-device hash chain of what happened on
  that device (including every batch sync applied there), so every device's chain
  verifies on its own; no device can rewrite another's.

The order of :data:`SYNCED` puts parents before children: upserts are applied in it,
deletions in reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = ["LOCAL_TABLES", "SYNCED", "SYNCED_BY_NAME", "TableSpec", "UniqueRule"]

#: What happens when two devices made rows that share a unique key (see docs/sync.md):
#: ``merge`` keeps the row created first and points the other's references at it,
#: ``rename`` keeps both and suffixes the later one's unique text, ``renumber`` moves
#: the later one past the highest number, ``retire`` keeps both and takes the later one
#: out of a partial unique index (two primary data keys, two active voice profiles of
#: one user), ``none``: the table has no such key.
UniqueRule = Literal["merge", "rename", "renumber", "retire", "none"]


@dataclass(frozen=True, slots=True)
class TableSpec:
    """How one table syncs."""

    name: str
    #: The column that names a row on every device (a UUID, or a natural key).
    key: str = "id"
    #: Columns that stay on the device (a local rowid).
    local_columns: tuple[str, ...] = ()
    #: JSON object columns merged key by key.
    json_merge: tuple[str, ...] = ()
    #: Integer columns several devices increment: their increments add up.
    counters: tuple[str, ...] = ()
    unique_rule: UniqueRule = "none"
    #: For ``rename``: the text columns suffixed, and the ones cleared instead.
    renamed: tuple[str, ...] = ()
    cleared: tuple[str, ...] = ()
    #: For ``renumber``: the number column.
    numbered: str = ""
    #: For a unique index with a WHERE clause: that clause (SQL from this module,
    #: never from input), so the clashing row can be found.
    partial_unique: str = ""
    #: For ``retire``: the values that take the later row out of the partial index
    #: (a string ``"=col"`` copies the row's own ``col``, the same on every device).
    retired: tuple[tuple[str, Any], ...] = ()


SYNCED: Final[tuple[TableSpec, ...]] = (
    TableSpec(
        "users",
        json_merge=("preferences",),
        unique_rule="rename",
        renamed=("username",),
        cleared=("email",),
    ),
    # A stored file's row carries its chunk list; its chunks travel through the
    # relay's blob store (mangostore.filestore.remote).
    TableSpec("files", json_merge=("metadata",)),
    TableSpec("file_quotas", key="user_id"),
    TableSpec(
        "voice_profiles",
        unique_rule="retire",
        partial_unique="is_active = 1",
        retired=(("is_active", 0),),
    ),
    TableSpec("user_credentials", key="user_id"),
    TableSpec("projects", json_merge=("metadata", "git_config"), unique_rule="merge"),
    TableSpec("terminal_sessions"),
    TableSpec("command_history"),
    TableSpec("notification_types", unique_rule="merge"),
    TableSpec("notification_preferences", unique_rule="merge"),
    TableSpec("notifications"),
    TableSpec("notification_actions"),
    TableSpec("ai_conversations"),
    TableSpec("ai_messages", unique_rule="renumber", numbered="seq"),
    TableSpec("ai_attachments", unique_rule="merge"),
    TableSpec("ai_memory", counters=("access_count",)),
    TableSpec("ai_memory_state", key="memory_id", local_columns=("seq",)),
    TableSpec("kg_predicates", key="predicate"),
    TableSpec("kg_entities", counters=("access_count",)),
    TableSpec("kg_aliases", unique_rule="merge"),
    TableSpec("kg_relations"),
    TableSpec("kg_relation_validity", key="relation_id", counters=("confirmations",)),
    TableSpec("kg_observations"),
    TableSpec("kg_observation_validity", key="observation_id", counters=("confirmations",)),
    TableSpec("kg_merges"),
    TableSpec("kg_speakers", key="user_id"),
    TableSpec("permissions"),
    TableSpec("permission_effects", key="permission_id"),
    TableSpec(
        "field_keys",
        counters=("encryption_count",),
        unique_rule="retire",
        partial_unique="status = 'primary'",
        retired=(("status", "retired"), ("retired_at", "=created_at")),
    ),
)

SYNCED_BY_NAME: Final[dict[str, TableSpec]] = {spec.name: spec for spec in SYNCED}

#: Tables that hold data but stay on each device, with the reason (docs/sync.md).
LOCAL_TABLES: Final[dict[str, str]] = {
    "security_events": "a per-device audit chain; each device's verifies on its own",
    "user_sessions": "a login belongs to the device it was made on",
    "session_verifiers": "a login belongs to the device it was made on",
    "login_attempts": "lock-out counts the attempts made on this device",
    "notification_deliveries": "delivery leases belong to the process delivering",
    "field_key_rotations": "progress of a rotation running on this device",
    "access_generation": "the permission cache generation of this file",
    "audit_control": "the head of this device's audit chain",
    "kg_merge_suggestions": "suggestions are recomputed from the synced graph",
    "file_chunks": "the chunk files in this device's folder; chunks travel as blobs",
    "file_relay_forget": "erased owners whose chunks this device has the relay drop",
    "backup_log": "what changed on this device since its backups (docs/backup.md)",
    "backup_log_counts": "rows this device's writes added and removed, per backup",
    "backup_log_state": "this device's change log: its id and epoch",
    "backup_log_probe": "a row whose rowid shows whether VACUUM renumbered rowids",
}
