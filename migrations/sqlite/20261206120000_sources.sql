-- Sources (callers) become a third peer family beside instances and zones.

-- An alert localized to one caller names it; at most one of instance, zone and source is set.
ALTER TABLE alerts ADD COLUMN source TEXT;

-- A silence may match on the caller too (unset matches any, as the other matchers).
ALTER TABLE silences ADD COLUMN source TEXT;

-- Roll-ups of source series. SQLite cannot change a CHECK constraint, so the table is rebuilt
-- with the new kind allowed (a one-off copy of the stored roll-ups at upgrade).
CREATE TABLE rollups_new (
    dependency  TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('dependency', 'instance', 'zone', 'source')),
    label       TEXT    NOT NULL,
    minute_ms   BIGINT  NOT NULL,
    node        TEXT    NOT NULL,
    part        BIGINT  NOT NULL,
    ok          BIGINT  NOT NULL,
    error       BIGINT  NOT NULL,
    timeout     BIGINT  NOT NULL,
    clamped     BIGINT  NOT NULL,
    histogram   BLOB    NOT NULL,
    PRIMARY KEY (dependency, kind, label, minute_ms, node, part)
);
INSERT INTO rollups_new (dependency, kind, label, minute_ms, node, part, ok, error, timeout,
    clamped, histogram)
    SELECT dependency, kind, label, minute_ms, node, part, ok, error, timeout, clamped, histogram
    FROM rollups;
DROP TABLE rollups;
ALTER TABLE rollups_new RENAME TO rollups;
CREATE INDEX rollups_by_minute ON rollups (minute_ms);
