-- 0013_username_key: one identity per user name, whatever its spelling, and no
-- look-alike names (see mangostore.repos.usernames and docs/authentication.md).
--
-- user_name_keys   one row per user, beside users (which keeps the design's columns):
--   name_key       NFKC + Unicode case folding of the name (RFC 8265's
--                  UsernameCaseMapped mapping): the name's identity. UNIQUE, so two
--                  users cannot have one name in two spellings, whichever process
--                  writes them and however they race (the repository checks first for
--                  a clear message; the index is what holds).
--   skeleton       the name's Unicode TS #39 confusable skeleton, case folded: what it
--                  looks like. UNIQUE, so no name can pass for another.
--
-- Both are computed in Python (SQL has no NFKC), so the triggers below, which fire for
-- every write of a user by any path, only mark a row "pending" (name_key and skeleton
-- NULL; UNIQUE lets NULLs repeat). The repository fills pending rows, oldest user
-- first, in the transaction of the next user it creates or renames; until then its
-- look-ups compare the pending names in Python, so a pending user is still found.
-- This migration makes every existing user pending in the same way.
--
-- Existing users whose names collide (``Ann`` and ``ann``, or two look-alikes) all
-- keep their accounts and their names: the oldest gets the plain key (and skeleton);
-- each later one gets it followed by a NUL and its own id (never the key of a name
-- that can be created now, since names cannot contain NUL). The later ones log in
-- with their exact stored name, and can be renamed to a free name. Find them with
-- SELECT user_id FROM user_name_keys WHERE instr(name_key, char(0)) > 0
--    OR instr(skeleton, char(0)) > 0.
--
-- Rows go with their user (ON DELETE CASCADE) and follow a change of its id.

-- migrate:up
CREATE TABLE user_name_keys (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE ON UPDATE CASCADE,
    name_key TEXT,
    skeleton TEXT
);

CREATE UNIQUE INDEX idx_user_name_keys_name_key ON user_name_keys(name_key);
CREATE UNIQUE INDEX idx_user_name_keys_skeleton ON user_name_keys(skeleton);

INSERT INTO user_name_keys (user_id) SELECT id FROM users;

CREATE TRIGGER users_name_key_insert AFTER INSERT ON users BEGIN
    INSERT INTO user_name_keys (user_id) VALUES (new.id)
        ON CONFLICT (user_id) DO UPDATE SET name_key = NULL, skeleton = NULL;
END;

CREATE TRIGGER users_name_key_rename AFTER UPDATE OF username ON users
WHEN new.username IS NOT old.username BEGIN
    INSERT INTO user_name_keys (user_id) VALUES (new.id)
        ON CONFLICT (user_id) DO UPDATE SET name_key = NULL, skeleton = NULL;
END;

-- migrate:down
DROP TRIGGER users_name_key_rename;
DROP TRIGGER users_name_key_insert;
DROP INDEX idx_user_name_keys_skeleton;
DROP INDEX idx_user_name_keys_name_key;
DROP TABLE user_name_keys;
