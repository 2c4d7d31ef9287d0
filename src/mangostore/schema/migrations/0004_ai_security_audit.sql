-- 0004_ai_security_audit: AI conversations and memory, the security event log,
-- permissions and login sessions.
--
-- Tables, columns, declared types, defaults, keys and index names follow the
-- AlphanumericMango database design (sections 3.3, 3.4 and 5.1). Ids are UUIDv7
-- text, timestamps are integer epoch milliseconds.
--
-- CHECK constraints pin enumerated columns to the values the design lists, BOOLEAN
-- columns to 0/1, confidence scores to [0, 1], counts and risk scores to
-- non-negative values and plaintext JSON columns to valid JSON.
-- ai_conversations.conversation_data is encrypted at field level (declared TEXT,
-- holds a binary envelope), so it gets no JSON check.

-- migrate:up
CREATE TABLE ai_conversations (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    project_id TEXT,
    title TEXT,
    context_type TEXT DEFAULT 'general'
        CHECK (context_type IS NULL
               OR context_type IN ('general', 'project', 'terminal', 'voice')),
    status TEXT DEFAULT 'active'
        CHECK (status IS NULL OR status IN ('active', 'archived', 'deleted')),
    conversation_data TEXT,
    token_count INTEGER DEFAULT 0
        CHECK (token_count IS NULL OR token_count >= 0),
    created_at INTEGER NOT NULL,
    last_message_at INTEGER,
    expires_at INTEGER,
    FOREIGN KEY (user_id) REFERENCES users(id),
    FOREIGN KEY (project_id) REFERENCES projects(id)
);

CREATE TABLE ai_memory (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    project_id TEXT,
    conversation_id TEXT,
    memory_type TEXT NOT NULL
        CHECK (memory_type IN ('fact', 'preference', 'skill', 'context')),
    key_name TEXT NOT NULL,
    value_data TEXT NOT NULL CHECK (json_valid(value_data)),
    confidence_score REAL DEFAULT 1.0
        CHECK (confidence_score IS NULL OR (confidence_score >= 0 AND confidence_score <= 1)),
    source TEXT
        CHECK (source IS NULL OR source IN ('user_input', 'inference', 'observation')),
    created_at INTEGER NOT NULL,
    last_accessed INTEGER,
    access_count INTEGER DEFAULT 0
        CHECK (access_count IS NULL OR access_count >= 0),
    expires_at INTEGER,
    FOREIGN KEY (user_id) REFERENCES users(id),
    FOREIGN KEY (project_id) REFERENCES projects(id),
    FOREIGN KEY (conversation_id) REFERENCES ai_conversations(id)
);

CREATE TABLE security_events (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    event_type TEXT NOT NULL
        CHECK (event_type IN ('auth', 'access', 'command', 'voice', 'data')),
    severity TEXT NOT NULL
        CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    source_component TEXT NOT NULL,
    event_data TEXT CHECK (event_data IS NULL OR json_valid(event_data)),
    client_info TEXT CHECK (client_info IS NULL OR json_valid(client_info)),
    risk_score REAL DEFAULT 0.0
        CHECK (risk_score IS NULL OR risk_score >= 0),
    resolved BOOLEAN DEFAULT 0 CHECK (resolved IN (0, 1)),
    resolved_at INTEGER,
    resolved_by TEXT,
    timestamp INTEGER NOT NULL,
    FOREIGN KEY (user_id) REFERENCES users(id)
);

CREATE TABLE permissions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    resource_type TEXT NOT NULL
        CHECK (resource_type IN ('project', 'terminal', 'voice', 'ai')),
    resource_id TEXT,
    permission_type TEXT NOT NULL
        CHECK (permission_type IN ('read', 'write', 'execute', 'admin')),
    granted_by TEXT,
    granted_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    revoked_by TEXT,
    conditions TEXT CHECK (conditions IS NULL OR json_valid(conditions)),
    FOREIGN KEY (user_id) REFERENCES users(id)
);

CREATE TABLE user_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    session_token TEXT UNIQUE NOT NULL,
    device_info TEXT CHECK (device_info IS NULL OR json_valid(device_info)),
    ip_address TEXT,
    user_agent TEXT,
    created_at INTEGER NOT NULL,
    last_activity INTEGER,
    expires_at INTEGER,
    revoked_at INTEGER,
    revoked_reason TEXT,
    is_active BOOLEAN DEFAULT 1 CHECK (is_active IN (0, 1)),
    security_level TEXT DEFAULT 'standard'
        CHECK (security_level IS NULL OR security_level IN ('low', 'standard', 'high')),
    FOREIGN KEY (user_id) REFERENCES users(id)
);

CREATE INDEX idx_security_events_user_id ON security_events(user_id);
CREATE INDEX idx_security_events_timestamp ON security_events(timestamp);
CREATE INDEX idx_security_events_severity ON security_events(severity);
CREATE INDEX idx_security_events_resolved ON security_events(resolved);

-- migrate:down
DROP INDEX idx_security_events_resolved;
DROP INDEX idx_security_events_severity;
DROP INDEX idx_security_events_timestamp;
DROP INDEX idx_security_events_user_id;

DROP TABLE user_sessions;
DROP TABLE permissions;
DROP TABLE security_events;
DROP TABLE ai_memory;
DROP TABLE ai_conversations;
