-- 0015_activity_indexes: the queries a terminal runs most stay index-bound as a person's
-- activity grows (command history, notifications, terminal sessions, conversations,
-- audit events, knowledge-graph observations), history search goes through a trigram
-- index, and command statistics are kept up to date instead of recomputed.
--
-- Composite indexes, one per access path the library uses: the equality columns of the
-- query, then the column it orders by (and id where it breaks ties), so SQLite reads
-- the newest rows first and stops at the LIMIT instead of sorting every row of the
-- person in a temporary B-tree. The design's single-column indexes stay.
--
-- command_history_search_rows numbers the commands for the trigram index: seq (an
-- INTEGER PRIMARY KEY, so it survives VACUUM, unlike command_history's implicit rowid)
-- is the rowid of the command's row in command_history_fts. It also keeps the
-- command's user_id and timestamp, so a search filters and orders its candidates
-- without reading command_history, and reads only the rows it returns.
--
-- command_history_fts is a contentless FTS5 table (it stores no copy of the text)
-- with the trigram tokenizer, case-sensitive like the search. Each command is indexed
-- followed by two U+0001 characters, so that every occurrence of a one- or
-- two-character term begins a trigram: a phrase query finds the commands containing a
-- term of three or more characters, and the trigrams that begin with a shorter term
-- (listed by command_history_vocab) find the commands containing it. What the index
-- finds is checked against the text with instr(), as before. Secure-delete is on, so a
-- deleted command's trigrams leave the index at once.
--
-- command_history_weekly holds, per user, week (floor(timestamp / 604,800,000): seven
-- days counted from the epoch), command_type and exit_code: how many commands, how
-- many have an execution_time, their sum, and how many rows the sums cannot represent
-- exactly (an execution_time that is not an integer from 0 to 2^40, or a timestamp
-- that is not an integer; such a row's week is NULL). command_history.stats() adds up
-- these rows instead of reading every command, and recomputes from the commands when
-- that last count is not zero.
--
-- Triggers keep all three in step with command_history in the same transaction,
-- whatever writes it (the repositories, raw SQL, erasure, retention). A row replaced
-- by INSERT OR REPLACE is deleted without its delete triggers firing (SQLite fires
-- them only with recursive_triggers on), which would leave stale entries behind, so
-- such an insert is refused; INSERT ... ON CONFLICT (id) DO UPDATE works.

-- migrate:up
CREATE INDEX idx_command_history_user_time ON command_history(user_id, timestamp, id);
CREATE INDEX idx_command_history_user_project_time
    ON command_history(user_id, project_id, timestamp, id);
CREATE INDEX idx_notifications_user_created ON notifications(user_id, created_at, id);
CREATE INDEX idx_notifications_user_status_created
    ON notifications(user_id, status, created_at, id);
CREATE INDEX idx_terminal_sessions_user_status_activity
    ON terminal_sessions(user_id, status, last_activity);
CREATE INDEX idx_ai_conversations_user_last_message
    ON ai_conversations(user_id, last_message_at);
CREATE INDEX idx_security_events_user_seq ON security_events(user_id, seq);
CREATE INDEX idx_security_events_component_seq ON security_events(source_component, seq);
CREATE INDEX idx_kg_observations_entity_type ON kg_observations(entity_id, observation_type);
CREATE INDEX idx_kg_observations_user_created ON kg_observations(user_id, created_at);

CREATE TABLE command_history_search_rows (
    seq INTEGER PRIMARY KEY,
    command_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    timestamp INTEGER NOT NULL
);

CREATE VIRTUAL TABLE command_history_fts USING fts5(
    command, content = '', contentless_delete = 1, tokenize = 'trigram case_sensitive 1'
);
INSERT INTO command_history_fts (command_history_fts, rank) VALUES ('secure-delete', 1);
CREATE VIRTUAL TABLE command_history_vocab USING fts5vocab(command_history_fts, 'row');

CREATE TABLE command_history_weekly (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    week INTEGER,
    command_type TEXT,
    exit_code INTEGER,
    commands INTEGER NOT NULL,
    timed INTEGER NOT NULL,
    time_total INTEGER NOT NULL,
    inexact INTEGER NOT NULL
);

CREATE INDEX idx_command_history_weekly_key
    ON command_history_weekly(user_id, week, command_type, exit_code);

-- Rows written before this migration, oldest first (so seq follows time).
INSERT INTO command_history_search_rows (command_id, user_id, timestamp)
    SELECT id, user_id, timestamp FROM command_history ORDER BY timestamp, id;
INSERT INTO command_history_fts (rowid, command)
    SELECT s.seq, c.command || char(1, 1) FROM command_history AS c
    JOIN command_history_search_rows AS s ON s.command_id = c.id;
INSERT INTO command_history_weekly
    (user_id, week, command_type, exit_code, commands, timed, time_total, inexact)
    SELECT user_id,
           CASE WHEN typeof(timestamp) = 'integer'
                THEN timestamp / 604800000 - (timestamp % 604800000 < 0) END,
           command_type, exit_code, count(*), count(execution_time),
           sum(CASE WHEN typeof(execution_time) = 'integer'
                     AND execution_time BETWEEN 0 AND 1099511627776
                    THEN execution_time ELSE 0 END),
           sum(typeof(timestamp) <> 'integer'
               OR (execution_time IS NOT NULL
                   AND NOT (typeof(execution_time) = 'integer'
                            AND execution_time BETWEEN 0 AND 1099511627776)))
    FROM command_history
    GROUP BY 1, 2, 3, 4;

-- The search index ---------------------------------------------------------------------

CREATE TRIGGER command_history_search_insert AFTER INSERT ON command_history BEGIN
    SELECT RAISE(ABORT, 'command_history rows cannot be replaced by INSERT OR REPLACE; use UPDATE, or INSERT ... ON CONFLICT (id) DO UPDATE')
        WHERE EXISTS (SELECT 1 FROM command_history_search_rows WHERE command_id = new.id);
    INSERT INTO command_history_search_rows (command_id, user_id, timestamp)
        VALUES (new.id, new.user_id, new.timestamp);
    INSERT INTO command_history_fts (rowid, command)
        VALUES (last_insert_rowid(), new.command || char(1, 1));
END;

CREATE TRIGGER command_history_search_update
AFTER UPDATE OF id, user_id, timestamp, command ON command_history BEGIN
    UPDATE command_history_search_rows
        SET command_id = new.id, user_id = new.user_id, timestamp = new.timestamp
        WHERE command_id = old.id
          AND (new.id IS NOT old.id OR new.user_id IS NOT old.user_id
               OR new.timestamp IS NOT old.timestamp);
    UPDATE command_history_fts SET command = new.command || char(1, 1)
        WHERE rowid = (SELECT seq FROM command_history_search_rows WHERE command_id = new.id)
          AND new.command IS NOT old.command;
END;

CREATE TRIGGER command_history_search_delete AFTER DELETE ON command_history BEGIN
    DELETE FROM command_history_search_rows WHERE command_id = old.id;
END;

-- Whatever removes a numbering row (the trigger above, or erasure reading the table
-- directly) removes its row of the index.
CREATE TRIGGER command_history_search_rows_delete AFTER DELETE ON command_history_search_rows
BEGIN
    DELETE FROM command_history_fts WHERE rowid = old.seq;
END;

-- The statistics -----------------------------------------------------------------------

CREATE TRIGGER command_history_weekly_insert AFTER INSERT ON command_history BEGIN
    INSERT INTO command_history_weekly
        (user_id, week, command_type, exit_code, commands, timed, time_total, inexact)
        SELECT new.user_id,
               CASE WHEN typeof(new.timestamp) = 'integer'
                    THEN new.timestamp / 604800000 - (new.timestamp % 604800000 < 0) END,
               new.command_type, new.exit_code, 0, 0, 0, 0
        WHERE NOT EXISTS (
            SELECT 1 FROM command_history_weekly
            WHERE user_id = new.user_id
              AND week IS CASE WHEN typeof(new.timestamp) = 'integer'
                              THEN new.timestamp / 604800000 - (new.timestamp % 604800000 < 0) END
              AND command_type IS new.command_type AND exit_code IS new.exit_code);
    UPDATE command_history_weekly SET
        commands = commands + 1,
        timed = timed + (new.execution_time IS NOT NULL),
        time_total = time_total
            + CASE WHEN typeof(new.execution_time) = 'integer'
                    AND new.execution_time BETWEEN 0 AND 1099511627776
                   THEN new.execution_time ELSE 0 END,
        inexact = inexact
            + (typeof(new.timestamp) <> 'integer'
               OR (new.execution_time IS NOT NULL
                   AND NOT (typeof(new.execution_time) = 'integer'
                            AND new.execution_time BETWEEN 0 AND 1099511627776)))
    WHERE user_id = new.user_id
      AND week IS CASE WHEN typeof(new.timestamp) = 'integer'
                      THEN new.timestamp / 604800000 - (new.timestamp % 604800000 < 0) END
      AND command_type IS new.command_type AND exit_code IS new.exit_code;
END;

CREATE TRIGGER command_history_weekly_delete AFTER DELETE ON command_history BEGIN
    UPDATE command_history_weekly SET
        commands = commands - 1,
        timed = timed - (old.execution_time IS NOT NULL),
        time_total = time_total
            - CASE WHEN typeof(old.execution_time) = 'integer'
                    AND old.execution_time BETWEEN 0 AND 1099511627776
                   THEN old.execution_time ELSE 0 END,
        inexact = inexact
            - (typeof(old.timestamp) <> 'integer'
               OR (old.execution_time IS NOT NULL
                   AND NOT (typeof(old.execution_time) = 'integer'
                            AND old.execution_time BETWEEN 0 AND 1099511627776)))
    WHERE user_id = old.user_id
      AND week IS CASE WHEN typeof(old.timestamp) = 'integer'
                      THEN old.timestamp / 604800000 - (old.timestamp % 604800000 < 0) END
      AND command_type IS old.command_type AND exit_code IS old.exit_code;
    DELETE FROM command_history_weekly
        WHERE user_id = old.user_id
          AND week IS CASE WHEN typeof(old.timestamp) = 'integer'
                          THEN old.timestamp / 604800000 - (old.timestamp % 604800000 < 0) END
          AND command_type IS old.command_type AND exit_code IS old.exit_code
          AND commands <= 0;
END;

-- An update moves the row out of its old group and into its new one: the delete
-- trigger's work, then the insert trigger's.
CREATE TRIGGER command_history_weekly_update
AFTER UPDATE OF user_id, timestamp, command_type, exit_code, execution_time ON command_history
WHEN new.user_id IS NOT old.user_id OR new.timestamp IS NOT old.timestamp
    OR new.command_type IS NOT old.command_type OR new.exit_code IS NOT old.exit_code
    OR new.execution_time IS NOT old.execution_time
BEGIN
    UPDATE command_history_weekly SET
        commands = commands - 1,
        timed = timed - (old.execution_time IS NOT NULL),
        time_total = time_total
            - CASE WHEN typeof(old.execution_time) = 'integer'
                    AND old.execution_time BETWEEN 0 AND 1099511627776
                   THEN old.execution_time ELSE 0 END,
        inexact = inexact
            - (typeof(old.timestamp) <> 'integer'
               OR (old.execution_time IS NOT NULL
                   AND NOT (typeof(old.execution_time) = 'integer'
                            AND old.execution_time BETWEEN 0 AND 1099511627776)))
    WHERE user_id = old.user_id
      AND week IS CASE WHEN typeof(old.timestamp) = 'integer'
                      THEN old.timestamp / 604800000 - (old.timestamp % 604800000 < 0) END
      AND command_type IS old.command_type AND exit_code IS old.exit_code;
    DELETE FROM command_history_weekly
        WHERE user_id = old.user_id
          AND week IS CASE WHEN typeof(old.timestamp) = 'integer'
                          THEN old.timestamp / 604800000 - (old.timestamp % 604800000 < 0) END
          AND command_type IS old.command_type AND exit_code IS old.exit_code
          AND commands <= 0;
    INSERT INTO command_history_weekly
        (user_id, week, command_type, exit_code, commands, timed, time_total, inexact)
        SELECT new.user_id,
               CASE WHEN typeof(new.timestamp) = 'integer'
                    THEN new.timestamp / 604800000 - (new.timestamp % 604800000 < 0) END,
               new.command_type, new.exit_code, 0, 0, 0, 0
        WHERE NOT EXISTS (
            SELECT 1 FROM command_history_weekly
            WHERE user_id = new.user_id
              AND week IS CASE WHEN typeof(new.timestamp) = 'integer'
                              THEN new.timestamp / 604800000 - (new.timestamp % 604800000 < 0) END
              AND command_type IS new.command_type AND exit_code IS new.exit_code);
    UPDATE command_history_weekly SET
        commands = commands + 1,
        timed = timed + (new.execution_time IS NOT NULL),
        time_total = time_total
            + CASE WHEN typeof(new.execution_time) = 'integer'
                    AND new.execution_time BETWEEN 0 AND 1099511627776
                   THEN new.execution_time ELSE 0 END,
        inexact = inexact
            + (typeof(new.timestamp) <> 'integer'
               OR (new.execution_time IS NOT NULL
                   AND NOT (typeof(new.execution_time) = 'integer'
                            AND new.execution_time BETWEEN 0 AND 1099511627776)))
    WHERE user_id = new.user_id
      AND week IS CASE WHEN typeof(new.timestamp) = 'integer'
                      THEN new.timestamp / 604800000 - (new.timestamp % 604800000 < 0) END
      AND command_type IS new.command_type AND exit_code IS new.exit_code;
END;

-- migrate:down
DROP TRIGGER command_history_weekly_update;
DROP TRIGGER command_history_weekly_delete;
DROP TRIGGER command_history_weekly_insert;
DROP TRIGGER command_history_search_rows_delete;
DROP TRIGGER command_history_search_delete;
DROP TRIGGER command_history_search_update;
DROP TRIGGER command_history_search_insert;

DROP INDEX idx_command_history_weekly_key;
DROP TABLE command_history_weekly;
DROP TABLE command_history_vocab;
DROP TABLE command_history_fts;
DROP TABLE command_history_search_rows;

DROP INDEX idx_kg_observations_user_created;
DROP INDEX idx_kg_observations_entity_type;
DROP INDEX idx_security_events_component_seq;
DROP INDEX idx_security_events_user_seq;
DROP INDEX idx_ai_conversations_user_last_message;
DROP INDEX idx_terminal_sessions_user_status_activity;
DROP INDEX idx_notifications_user_status_created;
DROP INDEX idx_notifications_user_created;
DROP INDEX idx_command_history_user_project_time;
DROP INDEX idx_command_history_user_time;
