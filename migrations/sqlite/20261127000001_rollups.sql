-- Per-minute roll-ups of every series: the HdrHistogram (V2 compressed encoding) and the
-- outcome counters. One row per (series, minute, node, part): `part` 0 is the node's main row
-- for that minute, rewritten while the minute is still in memory; later parts hold data that
-- arrived after the minute left memory. Readers merge all rows of a minute, which is also how
-- several nodes sharing one database combine their data.
CREATE TABLE rollups (
    dependency  TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('dependency', 'instance', 'zone')),
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

CREATE INDEX rollups_by_minute ON rollups (minute_ms);
