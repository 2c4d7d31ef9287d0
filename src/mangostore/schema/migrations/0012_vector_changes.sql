-- 0012_vector_changes: one change counter per user for kg_embeddings, so a vector index
-- held in memory learns with one primary-key lookup whether it is still current and,
-- when it is not, whether rows were only added (read just those) or also changed or
-- removed (read them all again).
--
-- kg_vector_changes.appended   bumped by every insert into the user's kg_embeddings;
-- kg_vector_changes.rewritten  bumped by every update or delete of one of them
--                              (re-pointed by a merge, removed with their entity).
--
-- Triggers keep it in step in the same transaction as the change, whatever path or
-- process makes it. `rewritten` starts at random, so a row made again after its user
-- was erased and re-created does not repeat values a running process may still hold.
-- The row goes with its user (ON DELETE CASCADE).

-- migrate:up
CREATE TABLE kg_vector_changes (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    appended INTEGER NOT NULL,
    rewritten INTEGER NOT NULL
);

INSERT INTO kg_vector_changes (user_id, appended, rewritten)
    SELECT user_id, 0, abs(random() % 4503599627370496)
    FROM (SELECT DISTINCT user_id FROM kg_embeddings);

CREATE TRIGGER kg_embeddings_count_insert AFTER INSERT ON kg_embeddings BEGIN
    INSERT INTO kg_vector_changes (user_id, appended, rewritten)
        VALUES (new.user_id, 1, abs(random() % 4503599627370496))
        ON CONFLICT (user_id) DO UPDATE SET appended = appended + 1;
END;

CREATE TRIGGER kg_embeddings_count_update AFTER UPDATE ON kg_embeddings BEGIN
    UPDATE kg_vector_changes SET rewritten = rewritten + 1
        WHERE user_id IN (old.user_id, new.user_id);
END;

CREATE TRIGGER kg_embeddings_count_delete AFTER DELETE ON kg_embeddings BEGIN
    UPDATE kg_vector_changes SET rewritten = rewritten + 1 WHERE user_id = old.user_id;
END;

-- migrate:down
DROP TRIGGER kg_embeddings_count_delete;
DROP TRIGGER kg_embeddings_count_update;
DROP TRIGGER kg_embeddings_count_insert;
DROP TABLE kg_vector_changes;
