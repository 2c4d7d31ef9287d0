-- 0001_core: users, projects, terminal sessions, voice profiles and command history.
--
-- Tables, columns, declared types, defaults, keys and index names follow the
-- AlphanumericMango database design (sections 3.1 and 5.1). Ids are UUIDv7 text,
-- timestamps are integer epoch milliseconds.
--
-- CHECK constraints are ours: they pin enumerated columns to the values the design
-- lists, BOOLEAN columns to 0/1, scores to [0, 1] and plaintext JSON columns to
-- valid JSON. Columns encrypted at field level (users.security_profile,
-- projects.security_config, terminal_sessions.environment_variables and
-- session_data, voice_profiles.training_data and voice_print) keep the declared
-- type TEXT of the design but hold binary envelopes, so they get no JSON check.
--
-- users.voice_profile_id and voice_profiles.user_id reference each other; SQLite
-- resolves foreign keys when rows are written, so the creation order is free.

-- migrate:up
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT UNIQUE NOT NULL,
    email TEXT UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_login INTEGER,
    preferences TEXT CHECK (preferences IS NULL OR json_valid(preferences)),
    security_profile TEXT,
    voice_profile_id TEXT,
    FOREIGN KEY (voice_profile_id) REFERENCES voice_profiles(id)
);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    display_name TEXT,
    path TEXT NOT NULL,
    type TEXT DEFAULT 'generic',
    status TEXT DEFAULT 'active',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_accessed INTEGER,
    metadata TEXT CHECK (metadata IS NULL OR json_valid(metadata)),
    security_config TEXT,
    git_config TEXT CHECK (git_config IS NULL OR json_valid(git_config)),
    FOREIGN KEY (user_id) REFERENCES users(id),
    UNIQUE(user_id, path)
);

CREATE TABLE terminal_sessions (
    id TEXT PRIMARY KEY,
    project_id TEXT,
    user_id TEXT NOT NULL,
    name TEXT,
    status TEXT DEFAULT 'active',
    working_directory TEXT,
    environment_variables TEXT,
    created_at INTEGER NOT NULL,
    last_activity INTEGER,
    session_data TEXT,
    tmux_session_id TEXT,
    FOREIGN KEY (project_id) REFERENCES projects(id),
    FOREIGN KEY (user_id) REFERENCES users(id)
);

CREATE TABLE voice_profiles (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    language TEXT DEFAULT 'en-US',
    accuracy_score REAL DEFAULT 0.0
        CHECK (accuracy_score IS NULL OR (accuracy_score >= 0 AND accuracy_score <= 1)),
    training_data TEXT,
    voice_print TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    is_active BOOLEAN DEFAULT 0 CHECK (is_active IN (0, 1)),
    FOREIGN KEY (user_id) REFERENCES users(id)
);

CREATE TABLE command_history (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    project_id TEXT,
    terminal_session_id TEXT,
    command TEXT NOT NULL,
    command_type TEXT
        CHECK (command_type IS NULL OR command_type IN ('voice', 'keyboard', 'ai')),
    execution_time INTEGER,
    exit_code INTEGER,
    output TEXT,
    working_directory TEXT,
    timestamp INTEGER NOT NULL,
    voice_confidence REAL
        CHECK (voice_confidence IS NULL OR (voice_confidence >= 0 AND voice_confidence <= 1)),
    ai_suggested BOOLEAN DEFAULT 0 CHECK (ai_suggested IN (0, 1)),
    FOREIGN KEY (user_id) REFERENCES users(id),
    FOREIGN KEY (project_id) REFERENCES projects(id),
    FOREIGN KEY (terminal_session_id) REFERENCES terminal_sessions(id)
);

CREATE INDEX idx_users_email ON users(email);
CREATE INDEX idx_users_last_login ON users(last_login);

CREATE INDEX idx_projects_user_id ON projects(user_id);
CREATE INDEX idx_projects_last_accessed ON projects(last_accessed);
CREATE INDEX idx_projects_status ON projects(status);

CREATE INDEX idx_terminal_sessions_project_id ON terminal_sessions(project_id);
CREATE INDEX idx_terminal_sessions_user_id ON terminal_sessions(user_id);
CREATE INDEX idx_terminal_sessions_last_activity ON terminal_sessions(last_activity);

CREATE INDEX idx_command_history_user_id ON command_history(user_id);
CREATE INDEX idx_command_history_project_id ON command_history(project_id);
CREATE INDEX idx_command_history_timestamp ON command_history(timestamp);
CREATE INDEX idx_command_history_command_type ON command_history(command_type);
CREATE INDEX idx_command_history_user_project ON command_history(user_id, project_id);

-- migrate:down
DROP INDEX idx_command_history_user_project;
DROP INDEX idx_command_history_command_type;
DROP INDEX idx_command_history_timestamp;
DROP INDEX idx_command_history_project_id;
DROP INDEX idx_command_history_user_id;

DROP INDEX idx_terminal_sessions_last_activity;
DROP INDEX idx_terminal_sessions_user_id;
DROP INDEX idx_terminal_sessions_project_id;

DROP INDEX idx_projects_status;
DROP INDEX idx_projects_last_accessed;
DROP INDEX idx_projects_user_id;

DROP INDEX idx_users_last_login;
DROP INDEX idx_users_email;

DROP TABLE command_history;
DROP TABLE terminal_sessions;
DROP TABLE projects;
-- voice_profiles and users reference each other; with deferred foreign keys the
-- order between the two does not matter once every other child is gone.
DROP TABLE voice_profiles;
DROP TABLE users;
