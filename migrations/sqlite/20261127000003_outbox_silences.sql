-- The durable outbox: a notification row is written in the same transaction as the alert
-- transition that causes it, and delivery workers work through it. `id` is the delivery id
-- sent to receivers; it never changes across retries, so receivers can deduplicate.
CREATE TABLE notifications (
    id               TEXT    PRIMARY KEY,
    alert_id         BIGINT  REFERENCES alerts (id),
    notifier         TEXT    NOT NULL,
    kind             TEXT    NOT NULL CHECK (kind IN ('firing', 'resolved', 'renotify', 'breaker', 'test')),
    payload          TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'dead', 'suppressed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT  NOT NULL,
    -- When the retry horizon started: the first real attempt (time spent silenced excluded).
    horizon_start_ms BIGINT,
    last_error       TEXT,
    created_ms       BIGINT  NOT NULL,
    updated_ms       BIGINT  NOT NULL,
    delivered_ms     BIGINT
);

CREATE INDEX notifications_due ON notifications (notifier, status, next_attempt_ms);
CREATE INDEX notifications_by_alert ON notifications (alert_id, notifier);

-- Silences: matching alerts are recorded but not notified while the silence is active.
CREATE TABLE silences (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dependency  TEXT,
    instance    TEXT,
    zone        TEXT,
    detector    TEXT,
    starts_ms   BIGINT  NOT NULL,
    ends_ms     BIGINT  NOT NULL,
    comment     TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_ms  BIGINT  NOT NULL,
    deleted_ms  BIGINT
);

-- Manual breaker overrides, kept as a record even after they are removed or expire.
CREATE TABLE breaker_overrides (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dependency  TEXT    NOT NULL,
    instance    TEXT,
    state       TEXT    NOT NULL CHECK (state IN ('open', 'closed')),
    reason      TEXT    NOT NULL,
    created_ms  BIGINT  NOT NULL,
    expires_ms  BIGINT  NOT NULL,
    removed_ms  BIGINT
);
