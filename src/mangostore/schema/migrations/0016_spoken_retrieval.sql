-- 0016_spoken_retrieval: what the knowledge graph's search needs to answer spoken questions.
--
-- kg_name_index holds every entity name and alias as words (no stemming), so that
-- kg_name_vocab can say in how many names a word occurs: a word found in many names
-- ("service", "api") says little about which entity a question means, a rare one says
-- much. Its rows use the rowid of kg_search_rows, like the other two indexes.
--
-- kg_entity_names.sound and kg_aliases.sound are the Metaphone code of a name without
-- its separators, for names a voice transcription misheard ("pie test" for pytest).
-- Only Python computes them, so they are filled in with the canonical names: setting
-- canonical_name to NULL here makes every name pending once.
--
-- kg_observation_validity.slot names what a single-valued observation is about
-- ("editor"): a newer observation of the same entity and slot closes the older one.
--
-- kg_merge_suggestions keeps the near-duplicate pairs that were not merged on
-- similarity alone, for the user to merge or dismiss.
--
-- kg_speakers says which person entity is the user themself, so that "I" and "my" in
-- a question mean that entity.

-- migrate:up
CREATE VIRTUAL TABLE kg_name_index USING fts5(
    entity_id UNINDEXED, name, tokenize = 'unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE kg_name_vocab USING fts5vocab(kg_name_index, 'row');

INSERT INTO kg_name_index (rowid, entity_id, name)
    SELECT r.id, e.id, e.name FROM kg_entities e JOIN kg_search_rows r ON r.source_id = e.id;
INSERT INTO kg_name_index (rowid, entity_id, name)
    SELECT r.id, a.entity_id, a.alias FROM kg_aliases a JOIN kg_search_rows r ON r.source_id = a.id;

-- The six triggers of 0008 that keep the indexes of names in step, with kg_name_index added.
DROP TRIGGER kg_entities_after_insert;
DROP TRIGGER kg_entities_after_update_text;
DROP TRIGGER kg_entities_after_delete;
DROP TRIGGER kg_aliases_after_insert;
DROP TRIGGER kg_aliases_after_update;
DROP TRIGGER kg_aliases_after_delete;

CREATE TRIGGER kg_entities_after_insert AFTER INSERT ON kg_entities BEGIN
    INSERT INTO kg_entity_names (entity_id, user_id, entity_type, canonical_name)
        VALUES (new.id, new.user_id, new.entity_type, NULL);
    INSERT INTO kg_search_rows (source_id, kind) VALUES (new.id, 'entity');
    INSERT INTO kg_search_index (rowid, entity_id, content)
        VALUES ((SELECT id FROM kg_search_rows WHERE source_id = new.id), new.id,
                new.name || ' ' || coalesce(new.description, ''));
    INSERT INTO kg_trigram_index (rowid, entity_id, name)
        VALUES ((SELECT id FROM kg_search_rows WHERE source_id = new.id), new.id, new.name);
    INSERT INTO kg_name_index (rowid, entity_id, name)
        VALUES ((SELECT id FROM kg_search_rows WHERE source_id = new.id), new.id, new.name);
    INSERT OR REPLACE INTO kg_embedding_queue (source_id, entity_id, user_id, kind)
        VALUES (new.id, new.id, new.user_id, 'entity');
END;

CREATE TRIGGER kg_entities_after_update_text
AFTER UPDATE OF name, description, entity_type, user_id ON kg_entities BEGIN
    UPDATE kg_entity_names
        SET user_id = new.user_id,
            entity_type = new.entity_type,
            canonical_name = CASE WHEN new.name IS old.name THEN canonical_name END
        WHERE entity_id = new.id;
    UPDATE kg_search_index SET content = new.name || ' ' || coalesce(new.description, '')
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = new.id);
    UPDATE kg_trigram_index SET name = new.name
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = new.id);
    UPDATE kg_name_index SET name = new.name
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = new.id);
    INSERT OR REPLACE INTO kg_embedding_queue (source_id, entity_id, user_id, kind)
        VALUES (new.id, new.id, new.user_id, 'entity');
END;

CREATE TRIGGER kg_entities_after_delete AFTER DELETE ON kg_entities BEGIN
    DELETE FROM kg_search_index
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = old.id);
    DELETE FROM kg_trigram_index
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = old.id);
    DELETE FROM kg_name_index
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = old.id);
    DELETE FROM kg_search_rows WHERE source_id = old.id;
    DELETE FROM kg_embedding_queue WHERE entity_id = old.id;
END;

CREATE TRIGGER kg_aliases_after_insert AFTER INSERT ON kg_aliases BEGIN
    INSERT INTO kg_search_rows (source_id, kind) VALUES (new.id, 'alias');
    INSERT INTO kg_search_index (rowid, entity_id, content)
        VALUES ((SELECT id FROM kg_search_rows WHERE source_id = new.id), new.entity_id,
                new.alias);
    INSERT INTO kg_trigram_index (rowid, entity_id, name)
        VALUES ((SELECT id FROM kg_search_rows WHERE source_id = new.id), new.entity_id,
                new.alias);
    INSERT INTO kg_name_index (rowid, entity_id, name)
        VALUES ((SELECT id FROM kg_search_rows WHERE source_id = new.id), new.entity_id,
                new.alias);
END;

CREATE TRIGGER kg_aliases_after_update AFTER UPDATE OF entity_id, alias ON kg_aliases BEGIN
    UPDATE kg_search_index SET entity_id = new.entity_id, content = new.alias
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = new.id);
    UPDATE kg_trigram_index SET entity_id = new.entity_id, name = new.alias
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = new.id);
    UPDATE kg_name_index SET entity_id = new.entity_id, name = new.alias
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = new.id);
END;

CREATE TRIGGER kg_aliases_after_delete AFTER DELETE ON kg_aliases BEGIN
    DELETE FROM kg_search_index
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = old.id);
    DELETE FROM kg_trigram_index
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = old.id);
    DELETE FROM kg_name_index
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = old.id);
    DELETE FROM kg_search_rows WHERE source_id = old.id;
END;

ALTER TABLE kg_entity_names ADD COLUMN sound TEXT;
ALTER TABLE kg_aliases ADD COLUMN sound TEXT;
UPDATE kg_entity_names SET canonical_name = NULL;
CREATE INDEX idx_kg_entity_names_sound ON kg_entity_names(user_id, sound);
CREATE INDEX idx_kg_aliases_sound ON kg_aliases(user_id, sound);
CREATE INDEX idx_kg_aliases_pending ON kg_aliases(user_id) WHERE sound IS NULL;

ALTER TABLE kg_observation_validity ADD COLUMN slot TEXT;
CREATE INDEX idx_kg_observation_validity_slot
    ON kg_observation_validity(slot) WHERE slot IS NOT NULL;

CREATE TABLE kg_merge_suggestions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    entity_id TEXT NOT NULL REFERENCES kg_entities(id) ON DELETE CASCADE,
    candidate_id TEXT NOT NULL REFERENCES kg_entities(id) ON DELETE CASCADE,
    similarity REAL NOT NULL,
    reason TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    dismissed_at INTEGER,
    UNIQUE (entity_id, candidate_id)
);
CREATE INDEX idx_kg_merge_suggestions_user ON kg_merge_suggestions(user_id, created_at);
CREATE INDEX idx_kg_merge_suggestions_candidate ON kg_merge_suggestions(candidate_id);

CREATE TABLE kg_speakers (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    entity_id TEXT NOT NULL REFERENCES kg_entities(id) ON DELETE CASCADE,
    set_at INTEGER NOT NULL
);
CREATE INDEX idx_kg_speakers_entity ON kg_speakers(entity_id);

-- migrate:down
DROP TABLE kg_speakers;
DROP TABLE kg_merge_suggestions;
DROP INDEX idx_kg_observation_validity_slot;
ALTER TABLE kg_observation_validity DROP COLUMN slot;
DROP INDEX idx_kg_aliases_pending;
DROP INDEX idx_kg_aliases_sound;
DROP INDEX idx_kg_entity_names_sound;
ALTER TABLE kg_aliases DROP COLUMN sound;
ALTER TABLE kg_entity_names DROP COLUMN sound;
DROP TRIGGER kg_entities_after_insert;
DROP TRIGGER kg_entities_after_update_text;
DROP TRIGGER kg_entities_after_delete;
DROP TRIGGER kg_aliases_after_insert;
DROP TRIGGER kg_aliases_after_update;
DROP TRIGGER kg_aliases_after_delete;

CREATE TRIGGER kg_entities_after_insert AFTER INSERT ON kg_entities BEGIN
    INSERT INTO kg_entity_names (entity_id, user_id, entity_type, canonical_name)
        VALUES (new.id, new.user_id, new.entity_type, NULL);
    INSERT INTO kg_search_rows (source_id, kind) VALUES (new.id, 'entity');
    INSERT INTO kg_search_index (rowid, entity_id, content)
        VALUES ((SELECT id FROM kg_search_rows WHERE source_id = new.id), new.id,
                new.name || ' ' || coalesce(new.description, ''));
    INSERT INTO kg_trigram_index (rowid, entity_id, name)
        VALUES ((SELECT id FROM kg_search_rows WHERE source_id = new.id), new.id, new.name);
    INSERT OR REPLACE INTO kg_embedding_queue (source_id, entity_id, user_id, kind)
        VALUES (new.id, new.id, new.user_id, 'entity');
END;

CREATE TRIGGER kg_entities_after_update_text
AFTER UPDATE OF name, description, entity_type, user_id ON kg_entities BEGIN
    UPDATE kg_entity_names
        SET user_id = new.user_id,
            entity_type = new.entity_type,
            canonical_name = CASE WHEN new.name IS old.name THEN canonical_name END
        WHERE entity_id = new.id;
    UPDATE kg_search_index SET content = new.name || ' ' || coalesce(new.description, '')
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = new.id);
    UPDATE kg_trigram_index SET name = new.name
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = new.id);
    INSERT OR REPLACE INTO kg_embedding_queue (source_id, entity_id, user_id, kind)
        VALUES (new.id, new.id, new.user_id, 'entity');
END;

CREATE TRIGGER kg_entities_after_delete AFTER DELETE ON kg_entities BEGIN
    DELETE FROM kg_search_index
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = old.id);
    DELETE FROM kg_trigram_index
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = old.id);
    DELETE FROM kg_search_rows WHERE source_id = old.id;
    DELETE FROM kg_embedding_queue WHERE entity_id = old.id;
END;

CREATE TRIGGER kg_aliases_after_insert AFTER INSERT ON kg_aliases BEGIN
    INSERT INTO kg_search_rows (source_id, kind) VALUES (new.id, 'alias');
    INSERT INTO kg_search_index (rowid, entity_id, content)
        VALUES ((SELECT id FROM kg_search_rows WHERE source_id = new.id), new.entity_id,
                new.alias);
    INSERT INTO kg_trigram_index (rowid, entity_id, name)
        VALUES ((SELECT id FROM kg_search_rows WHERE source_id = new.id), new.entity_id,
                new.alias);
END;

CREATE TRIGGER kg_aliases_after_update AFTER UPDATE OF entity_id, alias ON kg_aliases BEGIN
    UPDATE kg_search_index SET entity_id = new.entity_id, content = new.alias
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = new.id);
    UPDATE kg_trigram_index SET entity_id = new.entity_id, name = new.alias
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = new.id);
END;

CREATE TRIGGER kg_aliases_after_delete AFTER DELETE ON kg_aliases BEGIN
    DELETE FROM kg_search_index
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = old.id);
    DELETE FROM kg_trigram_index
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = old.id);
    DELETE FROM kg_search_rows WHERE source_id = old.id;
END;

DROP TABLE kg_name_vocab;
DROP TABLE kg_name_index;
