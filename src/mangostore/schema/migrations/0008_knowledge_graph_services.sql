-- 0008_knowledge_graph_services: what the knowledge graph service (db.kg) needs on top
-- of the design's tables: canonical names and aliases for de-duplication, validity
-- windows of relations and observations, single-valued predicates, a log of merges
-- that can be undone, a trigram index of names, triggers that keep both full-text
-- indexes in step with the graph, and the bookkeeping of embeddings.
--
-- The design's tables keep exactly the columns the design gives them (they are the
-- contract with the rest of AlphanumericMango): every addition lives in a companion
-- table keyed by the base row's id, removed with it (ON DELETE CASCADE or a trigger).
--
-- kg_search_rows numbers the rows of the two full-text indexes. It has an INTEGER
-- PRIMARY KEY, so its numbers survive VACUUM, and each number is the rowid of the
-- matching row in kg_search_index and kg_trigram_index:
--   kind 'entity'       kg_search_index: name and description;  kg_trigram_index: name
--   kind 'alias'        kg_search_index: the alias;             kg_trigram_index: the alias
--   kind 'observation'  kg_search_index: the observation's content (no trigram row)
-- kg_search_index.entity_id is always the id of the entity the row is about, as the
-- design has it. Triggers write, rewrite and delete these rows whenever an entity, alias or
-- observation is inserted, changed or deleted, by mangostore or by raw SQL.
--
-- Canonical names need Unicode NFKC, which SQL cannot compute: the triggers leave
-- kg_entity_names.canonical_name NULL for a new or renamed entity, and the service
-- fills it in (in the same transaction for its own writes, before its next lookup for
-- anyone else's).
--
-- kg_search_vocab and kg_trigram_vocab (fts5vocab) expose how many rows hold each term.
--
-- kg_embedding_queue lists entities and observations whose text changed since they
-- were embedded; kg_embedding_sources says which text (by SHA-256 and model version)
-- each row of kg_embeddings was made from, so unchanged text is never embedded twice.
--
-- Validity is bi-temporal: valid_from / valid_to are when the fact held in the world
-- (valid_to NULL: it still holds); invalidated_at is when mangostore was told it no
-- longer holds. Nothing is deleted to end a fact.

-- migrate:up
CREATE TABLE kg_entity_names (
    entity_id TEXT PRIMARY KEY REFERENCES kg_entities(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    canonical_name TEXT
);

CREATE INDEX idx_kg_entity_names_lookup ON kg_entity_names(user_id, canonical_name, entity_type);
CREATE INDEX idx_kg_entity_names_pending ON kg_entity_names(user_id) WHERE canonical_name IS NULL;

CREATE TABLE kg_aliases (
    id TEXT PRIMARY KEY,
    entity_id TEXT NOT NULL REFERENCES kg_entities(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    alias TEXT NOT NULL CHECK (alias <> ''),
    canonical_alias TEXT NOT NULL CHECK (canonical_alias <> ''),
    source TEXT,
    merge_id TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (entity_id, canonical_alias)
);

CREATE INDEX idx_kg_aliases_lookup ON kg_aliases(user_id, canonical_alias);

CREATE TABLE kg_relation_validity (
    relation_id TEXT PRIMARY KEY REFERENCES kg_relations(id) ON DELETE CASCADE,
    valid_from INTEGER NOT NULL,
    valid_to INTEGER,
    invalidated_at INTEGER,
    invalidation_reason TEXT,
    superseded_by TEXT,
    confirmations INTEGER NOT NULL DEFAULT 1 CHECK (confirmations >= 1),
    CHECK (valid_to IS NULL OR valid_to >= valid_from)
);

CREATE TABLE kg_observation_validity (
    observation_id TEXT PRIMARY KEY REFERENCES kg_observations(id) ON DELETE CASCADE,
    valid_from INTEGER NOT NULL,
    valid_to INTEGER,
    invalidated_at INTEGER,
    invalidation_reason TEXT,
    superseded_by TEXT,
    confirmations INTEGER NOT NULL DEFAULT 1 CHECK (confirmations >= 1),
    CHECK (valid_to IS NULL OR valid_to >= valid_from)
);

CREATE TABLE kg_predicates (
    predicate TEXT PRIMARY KEY
        CHECK (predicate <> '' AND predicate NOT GLOB '*[^a-z0-9_]*'),
    single_valued INTEGER NOT NULL DEFAULT 0 CHECK (single_valued IN (0, 1)),
    description TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE kg_merges (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    keep_id TEXT NOT NULL,
    drop_id TEXT NOT NULL,
    drop_name TEXT NOT NULL,
    snapshot TEXT NOT NULL CHECK (json_valid(snapshot)),
    created_at INTEGER NOT NULL,
    undone_at INTEGER
);

CREATE INDEX idx_kg_merges_user ON kg_merges(user_id, created_at);

CREATE TABLE kg_search_rows (
    id INTEGER PRIMARY KEY,
    source_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('entity', 'alias', 'observation'))
);

CREATE VIRTUAL TABLE kg_trigram_index USING fts5(
    entity_id UNINDEXED, name, tokenize = 'trigram'
);

-- Term statistics of both indexes (documents per term), read to leave the most common
-- words of a query out of its full-text search and to pick a name's rarest trigrams.
CREATE VIRTUAL TABLE kg_search_vocab USING fts5vocab(kg_search_index, 'row');
CREATE VIRTUAL TABLE kg_trigram_vocab USING fts5vocab(kg_trigram_index, 'row');

CREATE TABLE kg_embedding_queue (
    source_id TEXT PRIMARY KEY,
    entity_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('entity', 'observation'))
);

CREATE INDEX idx_kg_embedding_queue_user ON kg_embedding_queue(user_id);

CREATE TABLE kg_embedding_sources (
    embedding_id TEXT PRIMARY KEY REFERENCES kg_embeddings(id) ON DELETE CASCADE,
    source_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    UNIQUE (source_id, model_version)
);

CREATE INDEX idx_kg_embedding_sources_hash ON kg_embedding_sources(content_hash, model_version);
CREATE INDEX idx_kg_embeddings_user_model ON kg_embeddings(user_id, model_version, created_at);
CREATE INDEX idx_kg_relations_spo ON kg_relations(subject_id, predicate, object_id);
CREATE INDEX idx_kg_relations_object_predicate ON kg_relations(object_id, predicate);
CREATE INDEX idx_kg_observations_user_id ON kg_observations(user_id);

-- Rows written before this migration: companion rows, and both indexes rebuilt.
INSERT INTO kg_entity_names (entity_id, user_id, entity_type, canonical_name)
    SELECT id, user_id, entity_type, NULL FROM kg_entities;
INSERT INTO kg_relation_validity (relation_id, valid_from)
    SELECT id, created_at FROM kg_relations;
INSERT INTO kg_observation_validity (observation_id, valid_from)
    SELECT id, created_at FROM kg_observations;
INSERT INTO kg_search_rows (source_id, kind) SELECT id, 'entity' FROM kg_entities;
INSERT INTO kg_search_rows (source_id, kind) SELECT id, 'observation' FROM kg_observations;
DELETE FROM kg_search_index;
INSERT INTO kg_search_index (rowid, entity_id, content)
    SELECT r.id, e.id, e.name || ' ' || coalesce(e.description, '')
    FROM kg_entities e JOIN kg_search_rows r ON r.source_id = e.id;
INSERT INTO kg_search_index (rowid, entity_id, content)
    SELECT r.id, o.entity_id, o.content
    FROM kg_observations o JOIN kg_search_rows r ON r.source_id = o.id;
INSERT INTO kg_trigram_index (rowid, entity_id, name)
    SELECT r.id, e.id, e.name FROM kg_entities e JOIN kg_search_rows r ON r.source_id = e.id;
INSERT INTO kg_embedding_queue (source_id, entity_id, user_id, kind)
    SELECT id, id, user_id, 'entity' FROM kg_entities;
INSERT INTO kg_embedding_queue (source_id, entity_id, user_id, kind)
    SELECT id, entity_id, user_id, 'observation' FROM kg_observations;

-- entities ------------------------------------------------------------------------------

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

-- Embeddings are derived data: they go with their entity instead of blocking its delete.
CREATE TRIGGER kg_entities_before_delete BEFORE DELETE ON kg_entities BEGIN
    DELETE FROM kg_embeddings WHERE entity_id = old.id;
END;

CREATE TRIGGER kg_entities_after_delete AFTER DELETE ON kg_entities BEGIN
    DELETE FROM kg_search_index
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = old.id);
    DELETE FROM kg_trigram_index
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = old.id);
    DELETE FROM kg_search_rows WHERE source_id = old.id;
    DELETE FROM kg_embedding_queue WHERE entity_id = old.id;
END;

-- aliases -------------------------------------------------------------------------------

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

-- relations -----------------------------------------------------------------------------

CREATE TRIGGER kg_relations_after_insert AFTER INSERT ON kg_relations BEGIN
    INSERT OR IGNORE INTO kg_relation_validity (relation_id, valid_from)
        VALUES (new.id, new.created_at);
END;

-- observations --------------------------------------------------------------------------

CREATE TRIGGER kg_observations_after_insert AFTER INSERT ON kg_observations BEGIN
    INSERT OR IGNORE INTO kg_observation_validity (observation_id, valid_from)
        VALUES (new.id, new.created_at);
    INSERT INTO kg_search_rows (source_id, kind) VALUES (new.id, 'observation');
    INSERT INTO kg_search_index (rowid, entity_id, content)
        VALUES ((SELECT id FROM kg_search_rows WHERE source_id = new.id), new.entity_id,
                new.content);
    INSERT OR REPLACE INTO kg_embedding_queue (source_id, entity_id, user_id, kind)
        VALUES (new.id, new.entity_id, new.user_id, 'observation');
END;

CREATE TRIGGER kg_observations_after_update
AFTER UPDATE OF entity_id, content, user_id ON kg_observations BEGIN
    UPDATE kg_search_index SET entity_id = new.entity_id, content = new.content
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = new.id);
    UPDATE kg_embeddings SET entity_id = new.entity_id, user_id = new.user_id
        WHERE id IN (SELECT embedding_id FROM kg_embedding_sources WHERE source_id = new.id);
    INSERT OR REPLACE INTO kg_embedding_queue (source_id, entity_id, user_id, kind)
        SELECT new.id, new.entity_id, new.user_id, 'observation'
        WHERE new.content IS NOT old.content
           OR EXISTS (SELECT 1 FROM kg_embedding_queue WHERE source_id = new.id);
END;

CREATE TRIGGER kg_observations_after_delete AFTER DELETE ON kg_observations BEGIN
    DELETE FROM kg_search_index
        WHERE rowid = (SELECT id FROM kg_search_rows WHERE source_id = old.id);
    DELETE FROM kg_search_rows WHERE source_id = old.id;
    DELETE FROM kg_embeddings
        WHERE id IN (SELECT embedding_id FROM kg_embedding_sources WHERE source_id = old.id);
    DELETE FROM kg_embedding_queue WHERE source_id = old.id;
END;

-- migrate:down
DROP TRIGGER kg_observations_after_delete;
DROP TRIGGER kg_observations_after_update;
DROP TRIGGER kg_observations_after_insert;
DROP TRIGGER kg_relations_after_insert;
DROP TRIGGER kg_aliases_after_delete;
DROP TRIGGER kg_aliases_after_update;
DROP TRIGGER kg_aliases_after_insert;
DROP TRIGGER kg_entities_after_delete;
DROP TRIGGER kg_entities_before_delete;
DROP TRIGGER kg_entities_after_update_text;
DROP TRIGGER kg_entities_after_insert;

DROP INDEX idx_kg_observations_user_id;
DROP INDEX idx_kg_relations_object_predicate;
DROP INDEX idx_kg_relations_spo;
DROP INDEX idx_kg_embeddings_user_model;
DROP INDEX idx_kg_embedding_sources_hash;
DROP TABLE kg_embedding_sources;
DROP INDEX idx_kg_embedding_queue_user;
DROP TABLE kg_embedding_queue;
DROP TABLE kg_trigram_vocab;
DROP TABLE kg_search_vocab;
DROP TABLE kg_trigram_index;
DROP TABLE kg_search_rows;
DROP INDEX idx_kg_merges_user;
DROP TABLE kg_merges;
DROP TABLE kg_predicates;
DROP TABLE kg_observation_validity;
DROP TABLE kg_relation_validity;
DROP INDEX idx_kg_aliases_lookup;
DROP TABLE kg_aliases;
DROP INDEX idx_kg_entity_names_pending;
DROP INDEX idx_kg_entity_names_lookup;
DROP TABLE kg_entity_names;
