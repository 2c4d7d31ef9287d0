-- 0009_notification_delivery: one row per notification and delivery method, with
-- the attempts made, the last error and when to try next; and the indexes the
-- delivery scheduler and the retention sweep read.
--
-- status: 'pending' (not delivered yet, next_attempt_at says when), 'delivered',
-- 'failed' (the last attempt failed; next_attempt_at is the retry, or NULL once
-- the attempts are used up) or 'cancelled' (the notification was dismissed or
-- expired first). Rows go with their notification (ON DELETE CASCADE).

-- migrate:up
CREATE TABLE notification_deliveries (
    id TEXT PRIMARY KEY,
    notification_id TEXT NOT NULL,
    method TEXT NOT NULL CHECK (method IN ('desktop', 'voice', 'log')),
    attempt INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    error TEXT,
    attempted_at INTEGER,
    next_attempt_at INTEGER,
    created_at INTEGER NOT NULL,
    FOREIGN KEY (notification_id) REFERENCES notifications(id) ON DELETE CASCADE,
    UNIQUE (notification_id, method)
);

CREATE INDEX idx_notification_deliveries_next_attempt
    ON notification_deliveries(next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX idx_notifications_pending_scheduled
    ON notifications(scheduled_at) WHERE status = 'pending';
CREATE INDEX idx_notifications_type_created
    ON notifications(notification_type_id, created_at);

-- migrate:down
DROP INDEX idx_notifications_type_created;
DROP INDEX idx_notifications_pending_scheduled;
DROP INDEX idx_notification_deliveries_next_attempt;
DROP TABLE notification_deliveries;
