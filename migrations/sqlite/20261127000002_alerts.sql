-- One row per alert occurrence: created when it fires, updated when it resolves.
-- `fingerprint` names the condition (dependency, scope, detector, severity); together with
-- `started_at_ms` it identifies one occurrence, so writing a transition twice is harmless.
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint     TEXT    NOT NULL,
    dependency      TEXT    NOT NULL,
    instance        TEXT,
    zone            TEXT,
    detector        TEXT    NOT NULL,
    severity        TEXT    NOT NULL CHECK (severity IN ('degraded', 'failing')),
    state           TEXT    NOT NULL CHECK (state IN ('firing', 'resolved')),
    started_at_ms   BIGINT  NOT NULL,
    resolved_at_ms  BIGINT,
    summary         TEXT    NOT NULL,
    evidence        TEXT    NOT NULL,
    updated_at_ms   BIGINT  NOT NULL,
    UNIQUE (fingerprint, started_at_ms)
);

CREATE INDEX alerts_by_state ON alerts (state, dependency);
CREATE INDEX alerts_by_dependency ON alerts (dependency, started_at_ms);
