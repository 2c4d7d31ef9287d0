-- 0019_files: encrypted file storage (docs/files.md).
--
-- A file's bytes live in sealed chunks in the folder beside the database
-- (<db>.files/); these tables hold what is known about them. file_chunks has one row
-- per stored chunk of an owner (its name is a keyed hash of the owner and the
-- plaintext, so an owner's equal chunks are stored once); 'dead' marks a chunk no
-- file uses any more, whose file is removed by the next sweep. file_parts lists a
-- file's chunks in order, with the offset each starts at, for seeking. file_quotas
-- caps the bytes of an owner's files.

-- migrate:up
CREATE TABLE file_chunks (
    name TEXT PRIMARY KEY CHECK (length(name) = 64),
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    size INTEGER NOT NULL CHECK (size > 0),
    stored_size INTEGER NOT NULL CHECK (stored_size > 0),
    state TEXT NOT NULL DEFAULT 'live' CHECK (state IN ('live', 'dead')),
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX idx_file_chunks_user ON file_chunks(user_id);
CREATE INDEX idx_file_chunks_dead ON file_chunks(state) WHERE state = 'dead';

CREATE TABLE files (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL CHECK (size >= 0),
    digest TEXT NOT NULL CHECK (length(digest) = 64),
    metadata TEXT CHECK (metadata IS NULL OR json_valid(metadata)),
    chunk_count INTEGER NOT NULL CHECK (chunk_count >= 0),
    created_at INTEGER NOT NULL
);
CREATE INDEX idx_files_user_created ON files(user_id, created_at, id);

CREATE TABLE file_parts (
    file_id TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL CHECK (seq >= 0),
    start INTEGER NOT NULL CHECK (start >= 0),
    chunk TEXT NOT NULL REFERENCES file_chunks(name),
    PRIMARY KEY (file_id, seq)
) WITHOUT ROWID;
CREATE INDEX idx_file_parts_chunk ON file_parts(chunk);

CREATE TABLE file_quotas (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    max_bytes INTEGER NOT NULL CHECK (max_bytes >= 0)
);

-- migrate:down
DROP TABLE file_quotas;
DROP TABLE file_parts;
DROP TABLE files;
DROP TABLE file_chunks;
