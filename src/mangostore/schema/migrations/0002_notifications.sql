-- 0002_notifications: notification types, per-user preferences, the notification
-- queue and history, and the actions offered with each notification.
--
-- Tables, columns, declared types, defaults, keys and index names follow the
-- AlphanumericMango database design (sections 3.2 and 5.1). Ids are UUIDv7 text,
-- timestamps are integer epoch milliseconds.
--
-- CHECK constraints pin enumerated columns to the values the design lists, BOOLEAN
-- columns to 0/1, quiet hours to 'HH:MM' (00:00 to 23:59) and plaintext JSON columns
-- to valid JSON. notifications.metadata is encrypted at field level (declared TEXT,
-- holds a binary envelope), so it gets no JSON check.

-- migrate:up
CREATE TABLE notification_types (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    category TEXT NOT NULL
        CHECK (category IN ('system', 'voice', 'ai', 'project')),
    priority TEXT DEFAULT 'normal'
        CHECK (priority IS NULL OR priority IN ('low', 'normal', 'high', 'critical')),
    template TEXT NOT NULL,
    default_actions TEXT CHECK (default_actions IS NULL OR json_valid(default_actions)),
    retention_days INTEGER DEFAULT 30
        CHECK (retention_days IS NULL OR retention_days >= 0),
    created_at INTEGER NOT NULL
);

CREATE TABLE notification_preferences (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    notification_type_id TEXT NOT NULL,
    enabled BOOLEAN DEFAULT 1 CHECK (enabled IN (0, 1)),
    delivery_methods TEXT NOT NULL CHECK (json_valid(delivery_methods)),
    sound_enabled BOOLEAN DEFAULT 1 CHECK (sound_enabled IN (0, 1)),
    voice_enabled BOOLEAN DEFAULT 0 CHECK (voice_enabled IN (0, 1)),
    urgency_threshold TEXT DEFAULT 'normal'
        CHECK (urgency_threshold IS NULL
               OR urgency_threshold IN ('low', 'normal', 'high', 'critical')),
    quiet_hours_start TEXT
        CHECK (quiet_hours_start IS NULL
               OR (quiet_hours_start GLOB '[0-2][0-9]:[0-5][0-9]'
                   AND quiet_hours_start < '24:00')),
    quiet_hours_end TEXT
        CHECK (quiet_hours_end IS NULL
               OR (quiet_hours_end GLOB '[0-2][0-9]:[0-5][0-9]'
                   AND quiet_hours_end < '24:00')),
    project_specific TEXT CHECK (project_specific IS NULL OR json_valid(project_specific)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    FOREIGN KEY (user_id) REFERENCES users(id),
    FOREIGN KEY (notification_type_id) REFERENCES notification_types(id),
    UNIQUE(user_id, notification_type_id)
);

CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    project_id TEXT,
    notification_type_id TEXT NOT NULL,
    title TEXT NOT NULL,
    message TEXT NOT NULL,
    priority TEXT NOT NULL
        CHECK (priority IN ('low', 'normal', 'high', 'critical')),
    status TEXT DEFAULT 'pending'
        CHECK (status IS NULL
               OR status IN ('pending', 'delivered', 'read', 'dismissed', 'failed')),
    delivery_methods TEXT CHECK (delivery_methods IS NULL OR json_valid(delivery_methods)),
    metadata TEXT,
    scheduled_at INTEGER,
    delivered_at INTEGER,
    read_at INTEGER,
    dismissed_at INTEGER,
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    FOREIGN KEY (user_id) REFERENCES users(id),
    FOREIGN KEY (project_id) REFERENCES projects(id),
    FOREIGN KEY (notification_type_id) REFERENCES notification_types(id)
);

CREATE TABLE notification_actions (
    id TEXT PRIMARY KEY,
    notification_id TEXT NOT NULL,
    action_type TEXT NOT NULL
        CHECK (action_type IN ('button', 'voice_command', 'auto')),
    action_label TEXT NOT NULL,
    action_command TEXT,
    action_data TEXT CHECK (action_data IS NULL OR json_valid(action_data)),
    executed_at INTEGER,
    execution_result TEXT,
    created_at INTEGER NOT NULL,
    FOREIGN KEY (notification_id) REFERENCES notifications(id)
);

CREATE INDEX idx_notifications_user_id ON notifications(user_id);
CREATE INDEX idx_notifications_status ON notifications(status);
CREATE INDEX idx_notifications_created_at ON notifications(created_at);
CREATE INDEX idx_notifications_priority ON notifications(priority);
CREATE INDEX idx_notifications_user_status ON notifications(user_id, status);

-- migrate:down
DROP INDEX idx_notifications_user_status;
DROP INDEX idx_notifications_priority;
DROP INDEX idx_notifications_created_at;
DROP INDEX idx_notifications_status;
DROP INDEX idx_notifications_user_id;

DROP TABLE notification_actions;
DROP TABLE notifications;
DROP TABLE notification_preferences;
DROP TABLE notification_types;
