-- 0005_field_keys: metadata of the per-user data keys that encrypt sensitive fields,
-- and the record of key rotations.
--
-- The keys themselves are not here: each is wrapped under the keyring's field
-- sub-key and kept in the keyring sidecar, so destroying a key (erasure) also makes
-- every copy of this file unreadable for that user. This table only says which key
-- is a user's primary (the one new values are sealed with), how often it was used,
-- and which keys were retired or destroyed.
--
-- field_keys.user_id has no foreign key to users: the record of a destroyed key
-- outlives the user it belonged to. A partial unique index allows at most one
-- primary key per user.
--
-- field_key_rotations lets an interrupted rotation resume with the keys it already
-- made; the expression index allows at most one unfinished rotation.

-- migrate:up
CREATE TABLE field_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('primary', 'retired', 'destroyed')),
    encryption_count INTEGER NOT NULL DEFAULT 0 CHECK (encryption_count >= 0),
    created_at INTEGER NOT NULL,
    retired_at INTEGER,
    destroyed_at INTEGER
);

CREATE UNIQUE INDEX idx_field_keys_one_primary ON field_keys(user_id) WHERE status = 'primary';
CREATE INDEX idx_field_keys_user_id ON field_keys(user_id);

CREATE TABLE field_key_rotations (
    id TEXT PRIMARY KEY,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    keys_created INTEGER NOT NULL DEFAULT 0 CHECK (keys_created >= 0),
    values_reencrypted INTEGER NOT NULL DEFAULT 0 CHECK (values_reencrypted >= 0)
);

CREATE UNIQUE INDEX idx_field_key_rotations_running
    ON field_key_rotations((finished_at IS NULL)) WHERE finished_at IS NULL;

-- migrate:down
DROP INDEX idx_field_key_rotations_running;
DROP TABLE field_key_rotations;

DROP INDEX idx_field_keys_user_id;
DROP INDEX idx_field_keys_one_primary;
DROP TABLE field_keys;
