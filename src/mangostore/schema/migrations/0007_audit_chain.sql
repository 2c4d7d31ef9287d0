-- 0007_audit_chain: make security_events a tamper-evident, append-only log.
--
-- Every event gets a gap-free sequence number (seq) and a MAC: HMAC-SHA256 under the
-- keyring's audit sub-key over the previous event's MAC and the canonical encoding of
-- this event (see mangostore.security.audit). Rows that existed before this
-- migration are numbered in (timestamp, id) order and carry no MAC ("unsealed").
--
-- The table is rebuilt because two of its columns change meaning:
-- * event_data and client_info hold AES-256-GCM envelopes sealed under the data key
--   of the event's subject (its user_id), so they lose their json_valid checks. The
--   MAC covers the ciphertext, so destroying a subject's key (erasure) leaves the
--   chain verifiable.
-- * user_id no longer references users: the audit record outlives the user it is
--   about (erasure deletes the user, never their events).
--
-- Triggers make the log append-only:
-- * INSERT must carry the next sequence number (max(seq) + 1).
-- * UPDATE may only record a resolution (resolved 0 -> 1 with resolved_at and
--   resolved_by); those three columns are outside the MAC, and the resolution is
--   also appended to the chain as an event of its own, which verify() checks.
--   The one other UPDATE is erasure in a database without a keyring, whose events
--   carry no MAC and whose data is plaintext: with audit_control.redact_user_id set
--   (in the erasure's transaction), that user's event_data and client_info may be
--   set to NULL. Events with a MAC never change.
-- * DELETE is refused, except for rows at the head of the chain while
--   audit_control.retention_through_seq allows it: the retention path sets it in
--   its own transaction, after appending an anchor event that carries the MAC of
--   the last removed event, and clears it before committing.

-- migrate:up
CREATE TABLE audit_control (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    retention_through_seq INTEGER,
    redact_user_id TEXT
);

INSERT INTO audit_control (id, retention_through_seq, redact_user_id) VALUES (1, NULL, NULL);

CREATE TABLE security_events_chained (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    event_type TEXT NOT NULL
        CHECK (event_type IN ('auth', 'access', 'command', 'voice', 'data')),
    severity TEXT NOT NULL
        CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    source_component TEXT NOT NULL,
    event_data TEXT,
    client_info TEXT,
    risk_score REAL DEFAULT 0.0
        CHECK (risk_score IS NULL OR risk_score >= 0),
    resolved BOOLEAN DEFAULT 0 CHECK (resolved IN (0, 1)),
    resolved_at INTEGER,
    resolved_by TEXT,
    timestamp INTEGER NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    mac BLOB
);

INSERT INTO security_events_chained (
    id, user_id, event_type, severity, source_component, event_data, client_info,
    risk_score, resolved, resolved_at, resolved_by, timestamp, seq, mac
)
SELECT id, user_id, event_type, severity, source_component, event_data, client_info,
       risk_score, resolved, resolved_at, resolved_by, timestamp,
       row_number() OVER (ORDER BY timestamp, id), NULL
FROM security_events;

DROP TABLE security_events;

ALTER TABLE security_events_chained RENAME TO security_events;

CREATE INDEX idx_security_events_user_id ON security_events(user_id);
CREATE INDEX idx_security_events_timestamp ON security_events(timestamp);
CREATE INDEX idx_security_events_severity ON security_events(severity);
CREATE INDEX idx_security_events_resolved ON security_events(resolved);

CREATE TRIGGER security_events_append_only_insert
BEFORE INSERT ON security_events
WHEN new.seq IS NOT NULL
    AND new.seq IS NOT coalesce((SELECT max(seq) FROM security_events), 0) + 1
BEGIN
    SELECT RAISE(ABORT, 'security_events is append-only: a new event must carry the next sequence number; write events with db.audit.append()');
END;

CREATE TRIGGER security_events_append_only_update
BEFORE UPDATE ON security_events
WHEN NOT (
    new.id IS old.id AND new.user_id IS old.user_id
    AND new.event_type IS old.event_type AND new.severity IS old.severity
    AND new.source_component IS old.source_component
    AND new.risk_score IS old.risk_score AND new.timestamp IS old.timestamp
    AND new.seq IS old.seq AND new.mac IS old.mac
    AND (
        (old.resolved = 0 AND new.resolved = 1
         AND new.resolved_at IS NOT NULL AND new.resolved_by IS NOT NULL
         AND new.event_data IS old.event_data AND new.client_info IS old.client_info)
        OR
        (old.mac IS NULL AND old.user_id IS NOT NULL
         AND old.user_id = (SELECT redact_user_id FROM audit_control WHERE id = 1)
         AND new.event_data IS NULL AND new.client_info IS NULL
         AND new.resolved IS old.resolved AND new.resolved_at IS old.resolved_at
         AND new.resolved_by IS old.resolved_by)
    )
)
BEGIN
    SELECT RAISE(ABORT, 'security_events is append-only: events cannot be changed; resolve one with db.audit.resolve()');
END;

CREATE TRIGGER security_events_append_only_delete
BEFORE DELETE ON security_events
WHEN old.seq > coalesce((SELECT retention_through_seq FROM audit_control WHERE id = 1), 0)
BEGIN
    SELECT RAISE(ABORT, 'security_events is append-only: events are removed only by the retention policy (db.privacy.apply_retention())');
END;

CREATE TRIGGER audit_control_no_delete
BEFORE DELETE ON audit_control
BEGIN
    SELECT RAISE(ABORT, 'audit_control keeps exactly one row');
END;

-- migrate:down
DROP TRIGGER audit_control_no_delete;
DROP TRIGGER security_events_append_only_delete;
DROP TRIGGER security_events_append_only_update;
DROP TRIGGER security_events_append_only_insert;

DROP INDEX idx_security_events_resolved;
DROP INDEX idx_security_events_severity;
DROP INDEX idx_security_events_timestamp;
DROP INDEX idx_security_events_user_id;

-- Envelopes cannot go back into JSON-checked columns without the keys: the design's
-- table comes back with the events whose data is plain JSON (or absent), and with
-- the references to users that still exist.
CREATE TABLE security_events_v4 (
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

INSERT INTO security_events_v4 (
    id, user_id, event_type, severity, source_component, event_data, client_info,
    risk_score, resolved, resolved_at, resolved_by, timestamp
)
SELECT id,
       CASE WHEN user_id IN (SELECT id FROM users) THEN user_id END,
       event_type, severity, source_component,
       CASE WHEN typeof(event_data) = 'text' AND json_valid(event_data) THEN event_data END,
       CASE WHEN typeof(client_info) = 'text' AND json_valid(client_info) THEN client_info END,
       risk_score, resolved, resolved_at, resolved_by, timestamp
FROM security_events;

DROP TABLE security_events;

ALTER TABLE security_events_v4 RENAME TO security_events;

CREATE INDEX idx_security_events_user_id ON security_events(user_id);
CREATE INDEX idx_security_events_timestamp ON security_events(timestamp);
CREATE INDEX idx_security_events_severity ON security_events(severity);
CREATE INDEX idx_security_events_resolved ON security_events(resolved);

DROP TABLE audit_control;
