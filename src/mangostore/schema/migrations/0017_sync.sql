-- 0017_sync: the bookkeeping of multi-device sync (docs/sync.md).
--
-- sync_device is this device: its id (random, made here), whether sync was enabled
-- (the capture triggers exist only from then on), the persisted clock and cursors.
-- sync_sites maps device ids to small integers (site 0 is this device) so per-cell
-- metadata stays small.
--
-- sync_rows has one row per synced row: its life (the timestamp and site of the
-- insert that created it), whether that life ended (a tombstone), while it has
-- local changes not yet pushed their local sequence, and the relay position of its
-- latest state that went through the relay (for compaction). sync_cells has the timestamp
-- of each column's current value (JSON objects merged key by key have one cell per
-- key: "column" || char(31) || key); sync_counters the increments of counter columns
-- by site. Nothing here holds a value: values are read from the tables themselves.
--
-- sync_conflicts keeps the values that lost (manual columns, unique-key clashes,
-- rows whose parent was deleted elsewhere); sync_redirects the rows merged into
-- another on a unique-key clash, so references arriving later follow them;
-- sync_inbox the batches held until this device is migrated to their schema;
-- sync_erasures the users erased here or elsewhere; sync_peers the relay position
-- every other device has applied up to (it says so in each batch), for compaction; sync_strategies the columns set to `manual`.

-- migrate:up
CREATE TABLE sync_device (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    device_id TEXT NOT NULL,
    enabled_at INTEGER,
    clock INTEGER NOT NULL DEFAULT 0,
    pulled_cursor INTEGER NOT NULL DEFAULT 0,
    batches_made INTEGER NOT NULL DEFAULT 0,
    acked_cursor INTEGER NOT NULL DEFAULT 0,
    content_cursor INTEGER NOT NULL DEFAULT 0,
    last_push_at INTEGER,
    last_pull_at INTEGER,
    last_error TEXT,
    triggers TEXT
);

INSERT INTO sync_device (id, device_id) VALUES (1, lower(hex(randomblob(16))));

CREATE TABLE sync_sites (
    site INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL UNIQUE
);

INSERT INTO sync_sites (site, device_id) SELECT 0, device_id FROM sync_device;

CREATE TABLE sync_rows (
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    life INTEGER NOT NULL,
    life_site INTEGER NOT NULL,
    dead INTEGER NOT NULL DEFAULT 0 CHECK (dead IN (0, 1)),
    seq INTEGER,
    pos INTEGER,
    PRIMARY KEY (tbl, pk)
) WITHOUT ROWID;

CREATE INDEX idx_sync_rows_pending ON sync_rows(seq) WHERE seq IS NOT NULL;

CREATE TABLE sync_cells (
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    col TEXT NOT NULL,
    hlc INTEGER NOT NULL,
    site INTEGER NOT NULL,
    prev INTEGER,
    PRIMARY KEY (tbl, pk, col)
) WITHOUT ROWID;

CREATE TABLE sync_counters (
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    col TEXT NOT NULL,
    site INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    hlc INTEGER NOT NULL,
    PRIMARY KEY (tbl, pk, col, site)
) WITHOUT ROWID;

CREATE TABLE sync_conflicts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('manual', 'unique', 'orphan')),
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    col TEXT,
    kept TEXT,
    lost TEXT,
    lost_device TEXT,
    detected_at INTEGER NOT NULL,
    resolved_at INTEGER,
    resolution TEXT
);

CREATE INDEX idx_sync_conflicts_open ON sync_conflicts(detected_at) WHERE resolved_at IS NULL;

CREATE TABLE sync_redirects (
    tbl TEXT NOT NULL,
    from_pk TEXT NOT NULL,
    to_pk TEXT NOT NULL,
    PRIMARY KEY (tbl, from_pk)
) WITHOUT ROWID;

CREATE TABLE sync_inbox (
    cursor INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    payload BLOB NOT NULL
);

CREATE TABLE sync_erasures (
    user_id TEXT PRIMARY KEY,
    erased_at INTEGER NOT NULL,
    pushed INTEGER NOT NULL DEFAULT 0 CHECK (pushed IN (0, 1))
);

CREATE TABLE sync_peers (
    device_id TEXT PRIMARY KEY,
    acked_cursor INTEGER NOT NULL,
    seen_at INTEGER NOT NULL
);

CREATE TABLE sync_strategies (
    tbl TEXT NOT NULL,
    col TEXT NOT NULL,
    strategy TEXT NOT NULL CHECK (strategy IN ('manual')),
    PRIMARY KEY (tbl, col)
) WITHOUT ROWID;

-- migrate:down
-- The capture triggers, made by db.sync.enable() from the tables' columns.
DROP TRIGGER IF EXISTS sync_capture_users_insert;
DROP TRIGGER IF EXISTS sync_capture_users_update;
DROP TRIGGER IF EXISTS sync_capture_users_delete;
DROP TRIGGER IF EXISTS sync_capture_voice_profiles_insert;
DROP TRIGGER IF EXISTS sync_capture_voice_profiles_update;
DROP TRIGGER IF EXISTS sync_capture_voice_profiles_delete;
DROP TRIGGER IF EXISTS sync_capture_user_credentials_insert;
DROP TRIGGER IF EXISTS sync_capture_user_credentials_update;
DROP TRIGGER IF EXISTS sync_capture_user_credentials_delete;
DROP TRIGGER IF EXISTS sync_capture_projects_insert;
DROP TRIGGER IF EXISTS sync_capture_projects_update;
DROP TRIGGER IF EXISTS sync_capture_projects_delete;
DROP TRIGGER IF EXISTS sync_capture_terminal_sessions_insert;
DROP TRIGGER IF EXISTS sync_capture_terminal_sessions_update;
DROP TRIGGER IF EXISTS sync_capture_terminal_sessions_delete;
DROP TRIGGER IF EXISTS sync_capture_command_history_insert;
DROP TRIGGER IF EXISTS sync_capture_command_history_update;
DROP TRIGGER IF EXISTS sync_capture_command_history_delete;
DROP TRIGGER IF EXISTS sync_capture_notification_types_insert;
DROP TRIGGER IF EXISTS sync_capture_notification_types_update;
DROP TRIGGER IF EXISTS sync_capture_notification_types_delete;
DROP TRIGGER IF EXISTS sync_capture_notification_preferences_insert;
DROP TRIGGER IF EXISTS sync_capture_notification_preferences_update;
DROP TRIGGER IF EXISTS sync_capture_notification_preferences_delete;
DROP TRIGGER IF EXISTS sync_capture_notifications_insert;
DROP TRIGGER IF EXISTS sync_capture_notifications_update;
DROP TRIGGER IF EXISTS sync_capture_notifications_delete;
DROP TRIGGER IF EXISTS sync_capture_notification_actions_insert;
DROP TRIGGER IF EXISTS sync_capture_notification_actions_update;
DROP TRIGGER IF EXISTS sync_capture_notification_actions_delete;
DROP TRIGGER IF EXISTS sync_capture_ai_conversations_insert;
DROP TRIGGER IF EXISTS sync_capture_ai_conversations_update;
DROP TRIGGER IF EXISTS sync_capture_ai_conversations_delete;
DROP TRIGGER IF EXISTS sync_capture_ai_messages_insert;
DROP TRIGGER IF EXISTS sync_capture_ai_messages_update;
DROP TRIGGER IF EXISTS sync_capture_ai_messages_delete;
DROP TRIGGER IF EXISTS sync_capture_ai_memory_insert;
DROP TRIGGER IF EXISTS sync_capture_ai_memory_update;
DROP TRIGGER IF EXISTS sync_capture_ai_memory_delete;
DROP TRIGGER IF EXISTS sync_capture_ai_memory_state_insert;
DROP TRIGGER IF EXISTS sync_capture_ai_memory_state_update;
DROP TRIGGER IF EXISTS sync_capture_ai_memory_state_delete;
DROP TRIGGER IF EXISTS sync_capture_kg_predicates_insert;
DROP TRIGGER IF EXISTS sync_capture_kg_predicates_update;
DROP TRIGGER IF EXISTS sync_capture_kg_predicates_delete;
DROP TRIGGER IF EXISTS sync_capture_kg_entities_insert;
DROP TRIGGER IF EXISTS sync_capture_kg_entities_update;
DROP TRIGGER IF EXISTS sync_capture_kg_entities_delete;
DROP TRIGGER IF EXISTS sync_capture_kg_aliases_insert;
DROP TRIGGER IF EXISTS sync_capture_kg_aliases_update;
DROP TRIGGER IF EXISTS sync_capture_kg_aliases_delete;
DROP TRIGGER IF EXISTS sync_capture_kg_relations_insert;
DROP TRIGGER IF EXISTS sync_capture_kg_relations_update;
DROP TRIGGER IF EXISTS sync_capture_kg_relations_delete;
DROP TRIGGER IF EXISTS sync_capture_kg_relation_validity_insert;
DROP TRIGGER IF EXISTS sync_capture_kg_relation_validity_update;
DROP TRIGGER IF EXISTS sync_capture_kg_relation_validity_delete;
DROP TRIGGER IF EXISTS sync_capture_kg_observations_insert;
DROP TRIGGER IF EXISTS sync_capture_kg_observations_update;
DROP TRIGGER IF EXISTS sync_capture_kg_observations_delete;
DROP TRIGGER IF EXISTS sync_capture_kg_observation_validity_insert;
DROP TRIGGER IF EXISTS sync_capture_kg_observation_validity_update;
DROP TRIGGER IF EXISTS sync_capture_kg_observation_validity_delete;
DROP TRIGGER IF EXISTS sync_capture_kg_merges_insert;
DROP TRIGGER IF EXISTS sync_capture_kg_merges_update;
DROP TRIGGER IF EXISTS sync_capture_kg_merges_delete;
DROP TRIGGER IF EXISTS sync_capture_kg_speakers_insert;
DROP TRIGGER IF EXISTS sync_capture_kg_speakers_update;
DROP TRIGGER IF EXISTS sync_capture_kg_speakers_delete;
DROP TRIGGER IF EXISTS sync_capture_permissions_insert;
DROP TRIGGER IF EXISTS sync_capture_permissions_update;
DROP TRIGGER IF EXISTS sync_capture_permissions_delete;
DROP TRIGGER IF EXISTS sync_capture_permission_effects_insert;
DROP TRIGGER IF EXISTS sync_capture_permission_effects_update;
DROP TRIGGER IF EXISTS sync_capture_permission_effects_delete;
DROP TRIGGER IF EXISTS sync_capture_field_keys_insert;
DROP TRIGGER IF EXISTS sync_capture_field_keys_update;
DROP TRIGGER IF EXISTS sync_capture_field_keys_delete;
DROP TABLE sync_strategies;
DROP TABLE sync_peers;
DROP TABLE sync_erasures;
DROP TABLE sync_inbox;
DROP TABLE sync_redirects;
DROP INDEX idx_sync_conflicts_open;
DROP TABLE sync_conflicts;
DROP TABLE sync_counters;
DROP TABLE sync_cells;
DROP INDEX idx_sync_rows_pending;
DROP TABLE sync_rows;
DROP TABLE sync_sites;
DROP TABLE sync_device;
