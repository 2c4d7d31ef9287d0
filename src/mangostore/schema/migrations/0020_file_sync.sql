-- 0020_file_sync: stored files sync between devices, and rows refer to files by id.
--
-- A file's chunk list becomes part of its row (files.parts, a JSON array of
-- [start, size, chunk name]), so a file arrives on another device whole, in one synced
-- row; file_parts is now derived from it by a trigger (for seeking and for finding the
-- files a chunk serves). file_chunks stays this device's catalogue of the chunk files
-- in its own folder: a synced file whose chunks were never fetched here has parts but
-- no file_chunks rows, so file_parts no longer references file_chunks.
-- file_chunks.remote records that the relay holds the chunk (uploaded or fetched from
-- there). file_relay_forget lists the owners (by their keyed folder name) whose chunks
-- the relay must drop after an erasure, until it has.
--
-- Rows that refer to files: voice_profiles.training_file_id (voice samples),
-- command_history.recording_file_id (the recording of a spoken command) and
-- ai_attachments (files an AI conversation or message refers to). A file attached to
-- such a row belongs to it: deleting the row, or pointing it at another file, deletes
-- the file once no other row refers to it, and the next sweep frees its chunks. A row
-- may refer only to a file of its own user.

-- migrate:up
CREATE TABLE file_parts_previous AS
    SELECT p.file_id, p.seq, p.start, c.size, p.chunk
    FROM file_parts p JOIN file_chunks c ON c.name = p.chunk;
DROP TABLE file_parts;
CREATE TABLE file_parts (
    file_id TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL CHECK (seq >= 0),
    start INTEGER NOT NULL CHECK (start >= 0),
    size INTEGER NOT NULL CHECK (size > 0),
    chunk TEXT NOT NULL CHECK (length(chunk) = 64),
    PRIMARY KEY (file_id, seq)
) WITHOUT ROWID;
CREATE INDEX idx_file_parts_chunk ON file_parts(chunk);
INSERT INTO file_parts (file_id, seq, start, size, chunk)
    SELECT file_id, seq, start, size, chunk FROM file_parts_previous;
DROP TABLE file_parts_previous;

ALTER TABLE files ADD COLUMN parts TEXT CHECK (parts IS NULL OR json_valid(parts));
UPDATE files SET parts = (
    SELECT json_group_array(json_array(start, size, chunk))
    FROM (SELECT start, size, chunk FROM file_parts WHERE file_id = files.id ORDER BY seq)
);

CREATE TRIGGER files_parts_insert AFTER INSERT ON files WHEN NEW.parts IS NOT NULL
BEGIN
    INSERT INTO file_parts (file_id, seq, start, size, chunk)
        SELECT NEW.id, CAST(key AS INTEGER), json_extract(value, '$[0]'), json_extract(value, '$[1]'),
            json_extract(value, '$[2]')
        FROM json_each(NEW.parts);
END;
CREATE TRIGGER files_parts_update AFTER UPDATE OF parts ON files
WHEN NEW.parts IS NOT OLD.parts
BEGIN
    DELETE FROM file_parts WHERE file_id = NEW.id;
    INSERT INTO file_parts (file_id, seq, start, size, chunk)
        SELECT NEW.id, CAST(key AS INTEGER), json_extract(value, '$[0]'), json_extract(value, '$[1]'),
            json_extract(value, '$[2]')
        FROM json_each(NEW.parts) WHERE NEW.parts IS NOT NULL;
END;

ALTER TABLE file_chunks ADD COLUMN remote INTEGER NOT NULL DEFAULT 0 CHECK (remote IN (0, 1));
CREATE INDEX idx_file_chunks_unsent ON file_chunks(name) WHERE remote = 0;

CREATE TABLE file_relay_forget (
    owner_tag TEXT PRIMARY KEY CHECK (length(owner_tag) = 32),
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

ALTER TABLE voice_profiles ADD COLUMN training_file_id TEXT
    REFERENCES files(id) ON DELETE SET NULL;
CREATE INDEX idx_voice_profiles_training_file ON voice_profiles(training_file_id)
    WHERE training_file_id IS NOT NULL;
ALTER TABLE command_history ADD COLUMN recording_file_id TEXT
    REFERENCES files(id) ON DELETE SET NULL;
CREATE INDEX idx_command_history_recording_file ON command_history(recording_file_id)
    WHERE recording_file_id IS NOT NULL;

CREATE TABLE ai_attachments (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES ai_conversations(id) ON DELETE CASCADE,
    message_id TEXT REFERENCES ai_messages(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    file_id TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    UNIQUE (conversation_id, file_id)
);
CREATE INDEX idx_ai_attachments_file ON ai_attachments(file_id);
CREATE INDEX idx_ai_attachments_message ON ai_attachments(message_id)
    WHERE message_id IS NOT NULL;
CREATE INDEX idx_ai_attachments_user ON ai_attachments(user_id);

CREATE VIEW file_references (file_id) AS
    SELECT training_file_id FROM voice_profiles WHERE training_file_id IS NOT NULL
    UNION ALL
    SELECT recording_file_id FROM command_history WHERE recording_file_id IS NOT NULL
    UNION ALL
    SELECT file_id FROM ai_attachments;

CREATE TRIGGER voice_profiles_file_owner BEFORE INSERT ON voice_profiles
WHEN NEW.training_file_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM files WHERE id = NEW.training_file_id AND user_id IS NOT NEW.user_id)
BEGIN
    SELECT RAISE(ABORT, 'training_file_id names a stored file of another user');
END;
CREATE TRIGGER voice_profiles_file_owner_update
BEFORE UPDATE OF training_file_id, user_id ON voice_profiles
WHEN NEW.training_file_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM files WHERE id = NEW.training_file_id AND user_id IS NOT NEW.user_id)
BEGIN
    SELECT RAISE(ABORT, 'training_file_id names a stored file of another user');
END;
CREATE TRIGGER command_history_file_owner BEFORE INSERT ON command_history
WHEN NEW.recording_file_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM files WHERE id = NEW.recording_file_id AND user_id IS NOT NEW.user_id)
BEGIN
    SELECT RAISE(ABORT, 'recording_file_id names a stored file of another user');
END;
CREATE TRIGGER command_history_file_owner_update
BEFORE UPDATE OF recording_file_id, user_id ON command_history
WHEN NEW.recording_file_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM files WHERE id = NEW.recording_file_id AND user_id IS NOT NEW.user_id)
BEGIN
    SELECT RAISE(ABORT, 'recording_file_id names a stored file of another user');
END;
CREATE TRIGGER ai_attachments_file_owner BEFORE INSERT ON ai_attachments
WHEN EXISTS (SELECT 1 FROM files WHERE id = NEW.file_id AND user_id IS NOT NEW.user_id)
BEGIN
    SELECT RAISE(ABORT, 'file_id names a stored file of another user');
END;

CREATE TRIGGER voice_profiles_release_file AFTER DELETE ON voice_profiles
WHEN OLD.training_file_id IS NOT NULL
BEGIN
    DELETE FROM files WHERE id = OLD.training_file_id
        AND NOT EXISTS (SELECT 1 FROM file_references WHERE file_id = OLD.training_file_id);
END;
CREATE TRIGGER voice_profiles_replace_file AFTER UPDATE OF training_file_id ON voice_profiles
WHEN OLD.training_file_id IS NOT NULL AND OLD.training_file_id IS NOT NEW.training_file_id
BEGIN
    DELETE FROM files WHERE id = OLD.training_file_id
        AND NOT EXISTS (SELECT 1 FROM file_references WHERE file_id = OLD.training_file_id);
END;
CREATE TRIGGER command_history_release_file AFTER DELETE ON command_history
WHEN OLD.recording_file_id IS NOT NULL
BEGIN
    DELETE FROM files WHERE id = OLD.recording_file_id
        AND NOT EXISTS (SELECT 1 FROM file_references WHERE file_id = OLD.recording_file_id);
END;
CREATE TRIGGER command_history_replace_file AFTER UPDATE OF recording_file_id ON command_history
WHEN OLD.recording_file_id IS NOT NULL AND OLD.recording_file_id IS NOT NEW.recording_file_id
BEGIN
    DELETE FROM files WHERE id = OLD.recording_file_id
        AND NOT EXISTS (SELECT 1 FROM file_references WHERE file_id = OLD.recording_file_id);
END;
CREATE TRIGGER ai_attachments_release_file AFTER DELETE ON ai_attachments
BEGIN
    DELETE FROM files WHERE id = OLD.file_id
        AND NOT EXISTS (SELECT 1 FROM file_references WHERE file_id = OLD.file_id);
END;

-- migrate:down
DROP TRIGGER ai_attachments_release_file;
DROP TRIGGER command_history_replace_file;
DROP TRIGGER command_history_release_file;
DROP TRIGGER voice_profiles_replace_file;
DROP TRIGGER voice_profiles_release_file;
DROP TRIGGER ai_attachments_file_owner;
DROP TRIGGER command_history_file_owner_update;
DROP TRIGGER command_history_file_owner;
DROP TRIGGER voice_profiles_file_owner_update;
DROP TRIGGER voice_profiles_file_owner;
DROP VIEW file_references;
DROP TABLE ai_attachments;
DROP INDEX idx_command_history_recording_file;
ALTER TABLE command_history DROP COLUMN recording_file_id;
DROP INDEX idx_voice_profiles_training_file;
ALTER TABLE voice_profiles DROP COLUMN training_file_id;
DROP TABLE file_relay_forget;
DROP INDEX idx_file_chunks_unsent;
ALTER TABLE file_chunks DROP COLUMN remote;
DROP TRIGGER files_parts_update;
DROP TRIGGER files_parts_insert;
ALTER TABLE files DROP COLUMN parts;
CREATE TABLE file_parts_previous AS SELECT file_id, seq, start, chunk FROM file_parts;
DROP TABLE file_parts;
CREATE TABLE file_parts (
    file_id TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL CHECK (seq >= 0),
    start INTEGER NOT NULL CHECK (start >= 0),
    chunk TEXT NOT NULL REFERENCES file_chunks(name),
    PRIMARY KEY (file_id, seq)
) WITHOUT ROWID;
CREATE INDEX idx_file_parts_chunk ON file_parts(chunk);
INSERT INTO file_parts (file_id, seq, start, chunk)
    SELECT file_id, seq, start, chunk FROM file_parts_previous
    WHERE chunk IN (SELECT name FROM file_chunks);
DROP TABLE file_parts_previous;
