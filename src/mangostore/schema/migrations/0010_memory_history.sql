-- 0010_memory_history: versions, forgetting and full-text recall for ai_memory, and
-- conversation messages stored one row each.
--
-- ai_memory keeps exactly the columns of the design. What a memory's lifecycle needs
-- lives beside it, in ai_memory_state, one row per memory made by a trigger whatever
-- inserts the memory:
--   seq            a stable integer (an INTEGER PRIMARY KEY survives VACUUM, unlike
--                  the implicit rowid of ai_memory); it is the rowid of the memory's
--                  full-text row;
--   superseded_by  the memory that replaced this one (NULL once that one is purged);
--   superseded_at  when it was replaced: it is then history, no longer current;
--   forgotten_at   when it was forgotten: it is hidden, and purged after a grace period.
-- Deleting a memory deletes its state row (ON DELETE CASCADE), whose trigger deletes
-- its full-text row, so erasing memories by any path erases their index entries.
--
-- ai_memory_fts indexes the key and the text of the value (object keys and scalar
-- values of the JSON, unescaped). FTS5 secure-delete is on, so a deleted row's
-- tokens are removed from the index at once rather than at the next merge.
--
-- ai_messages holds one row per message of a conversation: appending a message
-- inserts one row and never rewrites ai_conversations.conversation_data. content is
-- encrypted at field level under the owner's data key (binary envelope) when the
-- database has a keyring. Messages go with their conversation (ON DELETE CASCADE).

-- migrate:up
CREATE TABLE ai_memory_state (
    seq INTEGER PRIMARY KEY,
    memory_id TEXT NOT NULL UNIQUE,
    superseded_by TEXT,
    superseded_at INTEGER,
    forgotten_at INTEGER,
    FOREIGN KEY (memory_id) REFERENCES ai_memory(id) ON DELETE CASCADE ON UPDATE CASCADE,
    FOREIGN KEY (superseded_by) REFERENCES ai_memory(id) ON DELETE SET NULL ON UPDATE CASCADE
);

CREATE INDEX idx_ai_memory_state_superseded_by
    ON ai_memory_state(superseded_by) WHERE superseded_by IS NOT NULL;
CREATE INDEX idx_ai_memory_state_forgotten_at
    ON ai_memory_state(forgotten_at) WHERE forgotten_at IS NOT NULL;
CREATE INDEX idx_ai_memory_expires_at ON ai_memory(expires_at) WHERE expires_at IS NOT NULL;

CREATE VIRTUAL TABLE ai_memory_fts USING fts5(
    key_name, value_text, tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT INTO ai_memory_fts (ai_memory_fts, rank) VALUES ('secure-delete', 1);

INSERT INTO ai_memory_state (memory_id) SELECT id FROM ai_memory ORDER BY created_at, id;
INSERT INTO ai_memory_fts (rowid, key_name, value_text)
    SELECT s.seq, m.key_name,
           (SELECT group_concat(concat_ws(' ',
                       CASE WHEN typeof(t.key) = 'text' THEN t.key END,
                       CASE WHEN t.type IN ('text', 'integer', 'real') THEN t.atom END), ' ')
            FROM json_tree(m.value_data) AS t)
    FROM ai_memory AS m JOIN ai_memory_state AS s ON s.memory_id = m.id;

CREATE TRIGGER ai_memory_after_insert AFTER INSERT ON ai_memory BEGIN
    INSERT INTO ai_memory_state (memory_id) VALUES (new.id);
    INSERT INTO ai_memory_fts (rowid, key_name, value_text) VALUES (
        (SELECT seq FROM ai_memory_state WHERE memory_id = new.id),
        new.key_name,
        (SELECT group_concat(concat_ws(' ',
                    CASE WHEN typeof(t.key) = 'text' THEN t.key END,
                    CASE WHEN t.type IN ('text', 'integer', 'real') THEN t.atom END), ' ')
         FROM json_tree(new.value_data) AS t)
    );
END;

CREATE TRIGGER ai_memory_after_update AFTER UPDATE OF key_name, value_data ON ai_memory BEGIN
    UPDATE ai_memory_fts SET
        key_name = new.key_name,
        value_text = (
            SELECT group_concat(concat_ws(' ',
                       CASE WHEN typeof(t.key) = 'text' THEN t.key END,
                       CASE WHEN t.type IN ('text', 'integer', 'real') THEN t.atom END), ' ')
            FROM json_tree(new.value_data) AS t)
    WHERE rowid = (SELECT seq FROM ai_memory_state WHERE memory_id = new.id);
END;

CREATE TRIGGER ai_memory_state_after_delete AFTER DELETE ON ai_memory_state BEGIN
    DELETE FROM ai_memory_fts WHERE rowid = old.seq;
END;

CREATE TABLE ai_messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 1),
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content BLOB NOT NULL,
    token_count INTEGER NOT NULL DEFAULT 0 CHECK (token_count >= 0),
    created_at INTEGER NOT NULL,
    FOREIGN KEY (conversation_id) REFERENCES ai_conversations(id) ON DELETE CASCADE,
    FOREIGN KEY (user_id) REFERENCES users(id),
    UNIQUE (conversation_id, seq)
);

CREATE INDEX idx_ai_messages_user_id ON ai_messages(user_id);
CREATE INDEX idx_ai_conversations_expires_at
    ON ai_conversations(expires_at) WHERE expires_at IS NOT NULL;

-- migrate:down
DROP INDEX idx_ai_conversations_expires_at;
DROP INDEX idx_ai_messages_user_id;
DROP TABLE ai_messages;

DROP TRIGGER ai_memory_state_after_delete;
DROP TRIGGER ai_memory_after_update;
DROP TRIGGER ai_memory_after_insert;
DROP TABLE ai_memory_fts;
DROP INDEX idx_ai_memory_expires_at;
DROP INDEX idx_ai_memory_state_forgotten_at;
DROP INDEX idx_ai_memory_state_superseded_by;
DROP TABLE ai_memory_state;
