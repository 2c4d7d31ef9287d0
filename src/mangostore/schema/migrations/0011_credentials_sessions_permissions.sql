-- 0011_credentials_sessions_permissions: passwords, login throttling, session
-- verifiers, explicit deny records and the permission cache's generation counter.
--
-- The base tables keep exactly the columns of the design; what authentication and
-- access control need lives beside them (see mangostore.security and
-- docs/authentication.md):
--
-- user_credentials    one Argon2id password hash per user (the PHC string carries its
--                     own parameters and salt).
-- login_attempts      failed logins counted per attempted user name, whether or not
--                     such a user exists, so a lock-out tells nothing about which
--                     names are taken. username_key is HMAC-SHA256 of the name under
--                     the blind-index sub-key (SHA-256 without a keyring); user_id is
--                     set when the name belongs to a user, so erasure finds the row.
-- session_verifiers   the hash of a session token's verifier. user_sessions.session_token
--                     holds only the token's selector; the verifier itself is never
--                     stored.
-- permission_effects  'deny' for explicit deny records; a permission without a row
--                     here is an 'allow'.
-- access_generation   one counter, bumped by triggers in the same transaction as any
--                     write to permissions or permission_effects, by whatever path and
--                     process; the permission cache compares it to know it is stale.
--
-- Rows go with their owner: ON DELETE CASCADE from users, user_sessions and
-- permissions, so erasing a user by any path removes them.

-- migrate:up
CREATE TABLE user_credentials (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL CHECK (substr(password_hash, 1, 10) = '$argon2id$'),
    password_changed_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
);

CREATE TABLE login_attempts (
    username_key BLOB PRIMARY KEY CHECK (length(username_key) = 32),
    user_id TEXT,
    failed_attempts INTEGER NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    last_failed_at INTEGER,
    locked_until INTEGER,
    updated_at INTEGER NOT NULL,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
);

CREATE INDEX idx_login_attempts_user_id ON login_attempts(user_id) WHERE user_id IS NOT NULL;
CREATE INDEX idx_login_attempts_updated_at ON login_attempts(updated_at);

CREATE TABLE session_verifiers (
    session_id TEXT PRIMARY KEY,
    verifier_hash BLOB NOT NULL CHECK (length(verifier_hash) = 32),
    FOREIGN KEY (session_id) REFERENCES user_sessions(id) ON DELETE CASCADE
);

CREATE TABLE permission_effects (
    permission_id TEXT PRIMARY KEY,
    effect TEXT NOT NULL CHECK (effect IN ('allow', 'deny')),
    FOREIGN KEY (permission_id) REFERENCES permissions(id) ON DELETE CASCADE
);

CREATE TABLE access_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);

-- A random start: a counter re-created by a later down and up migration does not
-- repeat values a running process may still hold.
INSERT INTO access_generation (id, generation) VALUES (1, abs(random() % 4503599627370496));

CREATE TRIGGER access_generation_keep_row
BEFORE DELETE ON access_generation
BEGIN
    SELECT RAISE(ABORT, 'access_generation keeps exactly one row');
END;

CREATE TRIGGER permissions_bump_generation_insert
AFTER INSERT ON permissions
BEGIN
    UPDATE access_generation SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER permissions_bump_generation_update
AFTER UPDATE ON permissions
BEGIN
    UPDATE access_generation SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER permissions_bump_generation_delete
AFTER DELETE ON permissions
BEGIN
    UPDATE access_generation SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER permission_effects_bump_generation_insert
AFTER INSERT ON permission_effects
BEGIN
    UPDATE access_generation SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER permission_effects_bump_generation_update
AFTER UPDATE ON permission_effects
BEGIN
    UPDATE access_generation SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER permission_effects_bump_generation_delete
AFTER DELETE ON permission_effects
BEGIN
    UPDATE access_generation SET generation = generation + 1 WHERE id = 1;
END;

-- migrate:down
DROP TRIGGER permission_effects_bump_generation_delete;
DROP TRIGGER permission_effects_bump_generation_update;
DROP TRIGGER permission_effects_bump_generation_insert;
DROP TRIGGER permissions_bump_generation_delete;
DROP TRIGGER permissions_bump_generation_update;
DROP TRIGGER permissions_bump_generation_insert;
DROP TRIGGER access_generation_keep_row;
DROP TABLE access_generation;
DROP TABLE permission_effects;
DROP TABLE session_verifiers;
DROP INDEX idx_login_attempts_updated_at;
DROP INDEX idx_login_attempts_user_id;
DROP TABLE login_attempts;
DROP TABLE user_credentials;
