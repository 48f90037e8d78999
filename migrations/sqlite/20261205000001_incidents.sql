-- One alert per incident: an alert now gathers every detector that sees the problem, and
-- changes severity in place. `detectors` lists them (JSON array, the naming one first);
-- `detector` stays the naming one. Fingerprints of new alerts name the subject only.
ALTER TABLE alerts ADD COLUMN detectors TEXT NOT NULL DEFAULT '[]';
UPDATE alerts SET detectors = json_array(detector);

-- A severity change of an open alert is notified as kind 'updated'. SQLite cannot change a
-- CHECK constraint, so the outbox table is rebuilt with the new kind allowed.
CREATE TABLE notifications_new (
    id               TEXT    PRIMARY KEY,
    alert_id         BIGINT  REFERENCES alerts (id),
    notifier         TEXT    NOT NULL,
    kind             TEXT    NOT NULL CHECK (kind IN ('firing', 'updated', 'resolved', 'renotify', 'breaker', 'test')),
    payload          TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'dead', 'suppressed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT  NOT NULL,
    horizon_start_ms BIGINT,
    last_error       TEXT,
    created_ms       BIGINT  NOT NULL,
    updated_ms       BIGINT  NOT NULL,
    delivered_ms     BIGINT
);
INSERT INTO notifications_new SELECT id, alert_id, notifier, kind, payload, status, attempts,
    next_attempt_ms, horizon_start_ms, last_error, created_ms, updated_ms, delivered_ms
    FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;
CREATE INDEX notifications_due ON notifications (notifier, status, next_attempt_ms);
CREATE INDEX notifications_by_alert ON notifications (alert_id, notifier);
