-- 0003_knowledge_graph: entities, relations (subject, predicate, object) and
-- observations of the knowledge graph, its full-text index and its vector embeddings.
--
-- Tables, columns, declared types, defaults, keys and index names follow the
-- AlphanumericMango database design (sections 4.1, 4.2 and 5.1). Ids are UUIDv7
-- text, timestamps are integer epoch milliseconds.
--
-- CHECK constraints pin enumerated columns to the values the design lists, BOOLEAN
-- columns to 0/1, confidence scores to [0, 1], counts to non-negative values and
-- plaintext JSON columns to valid JSON. Predicates are open-ended (the design names
-- 'uses', 'creates', 'depends_on', 'similar_to' as examples), so they are only held
-- to lowercase identifiers, which keeps graph queries free of spelling variants.
--
-- kg_search_index is an ordinary (not external-content) FTS5 table: it stores its
-- own copy of the indexed text in rows tagged with entity_id and has no foreign key, so
-- whatever writes entities must also write and delete their index rows.

-- migrate:up
CREATE TABLE kg_entities (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    project_id TEXT,
    entity_type TEXT NOT NULL
        CHECK (entity_type IN ('person', 'project', 'command', 'file', 'concept')),
    name TEXT NOT NULL,
    description TEXT,
    metadata TEXT CHECK (metadata IS NULL OR json_valid(metadata)),
    confidence_score REAL DEFAULT 1.0
        CHECK (confidence_score IS NULL OR (confidence_score >= 0 AND confidence_score <= 1)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_accessed INTEGER,
    access_count INTEGER DEFAULT 0
        CHECK (access_count IS NULL OR access_count >= 0),
    FOREIGN KEY (user_id) REFERENCES users(id),
    FOREIGN KEY (project_id) REFERENCES projects(id)
);

CREATE TABLE kg_relations (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    project_id TEXT,
    subject_id TEXT NOT NULL,
    predicate TEXT NOT NULL
        CHECK (predicate <> '' AND predicate NOT GLOB '*[^a-z0-9_]*'),
    object_id TEXT NOT NULL,
    weight REAL DEFAULT 1.0,
    confidence_score REAL DEFAULT 1.0
        CHECK (confidence_score IS NULL OR (confidence_score >= 0 AND confidence_score <= 1)),
    created_at INTEGER NOT NULL,
    last_confirmed INTEGER,
    source TEXT
        CHECK (source IS NULL OR source IN ('user', 'inference', 'observation')),
    FOREIGN KEY (user_id) REFERENCES users(id),
    FOREIGN KEY (project_id) REFERENCES projects(id),
    FOREIGN KEY (subject_id) REFERENCES kg_entities(id),
    FOREIGN KEY (object_id) REFERENCES kg_entities(id)
);

CREATE TABLE kg_observations (
    id TEXT PRIMARY KEY,
    entity_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    observation_type TEXT NOT NULL
        CHECK (observation_type IN ('fact', 'behavior', 'preference', 'pattern')),
    content TEXT NOT NULL,
    context TEXT CHECK (context IS NULL OR json_valid(context)),
    confidence_score REAL DEFAULT 1.0
        CHECK (confidence_score IS NULL OR (confidence_score >= 0 AND confidence_score <= 1)),
    verified BOOLEAN DEFAULT 0 CHECK (verified IN (0, 1)),
    created_at INTEGER NOT NULL,
    verified_at INTEGER,
    FOREIGN KEY (entity_id) REFERENCES kg_entities(id),
    FOREIGN KEY (user_id) REFERENCES users(id)
);

CREATE VIRTUAL TABLE kg_search_index USING fts5(entity_id, content, tokenize='porter unicode61');

CREATE TABLE kg_embeddings (
    id TEXT PRIMARY KEY,
    entity_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    embedding_type TEXT DEFAULT 'semantic'
        CHECK (embedding_type IS NULL
               OR embedding_type IN ('semantic', 'syntactic', 'contextual')),
    vector_data BLOB,
    dimensions INTEGER NOT NULL CHECK (dimensions > 0),
    model_version TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    FOREIGN KEY (entity_id) REFERENCES kg_entities(id),
    FOREIGN KEY (user_id) REFERENCES users(id)
);

CREATE INDEX idx_kg_entities_user_id ON kg_entities(user_id);
CREATE INDEX idx_kg_entities_project_id ON kg_entities(project_id);
CREATE INDEX idx_kg_entities_entity_type ON kg_entities(entity_type);
CREATE INDEX idx_kg_entities_last_accessed ON kg_entities(last_accessed);
CREATE INDEX idx_kg_entities_user_type ON kg_entities(user_id, entity_type);

CREATE INDEX idx_kg_relations_subject_id ON kg_relations(subject_id);
CREATE INDEX idx_kg_relations_object_id ON kg_relations(object_id);
CREATE INDEX idx_kg_relations_predicate ON kg_relations(predicate);
CREATE INDEX idx_kg_relations_user_id ON kg_relations(user_id);

-- migrate:down
DROP INDEX idx_kg_relations_user_id;
DROP INDEX idx_kg_relations_predicate;
DROP INDEX idx_kg_relations_object_id;
DROP INDEX idx_kg_relations_subject_id;

DROP INDEX idx_kg_entities_user_type;
DROP INDEX idx_kg_entities_last_accessed;
DROP INDEX idx_kg_entities_entity_type;
DROP INDEX idx_kg_entities_project_id;
DROP INDEX idx_kg_entities_user_id;

DROP TABLE kg_embeddings;
DROP TABLE kg_search_index;
DROP TABLE kg_observations;
DROP TABLE kg_relations;
DROP TABLE kg_entities;
