-- Every list endpoint reads its rows in the order it answers them, from an index, and stops
-- at its LIMIT: no sort of a whole table on each request, however long the history.
-- GET /v1/alerts: ORDER BY started_at_ms DESC, id DESC (the index is read backwards).
CREATE INDEX alerts_by_start ON alerts (started_at_ms, id);
-- GET /v1/notifications: ORDER BY created_ms DESC, id.
CREATE INDEX notifications_by_creation ON notifications (created_ms DESC, id);
-- GET /v1/silences and the delivery workers: ORDER BY starts_ms, id.
CREATE INDEX silences_by_start ON silences (starts_ms, id);
-- Overrides in force at start-up: ORDER BY created_ms.
CREATE INDEX overrides_by_creation ON breaker_overrides (created_ms);

-- Retention finds old rows without reading the live ones.
CREATE INDEX alerts_by_resolution ON alerts (state, resolved_at_ms);
CREATE INDEX notifications_by_update ON notifications (updated_ms);

-- A delivery worker's due rows: ORDER BY next_attempt_ms, created_ms within one notifier's
-- pending rows; the old index left the last term to a sort.
DROP INDEX notifications_due;
CREATE INDEX notifications_due ON notifications (notifier, status, next_attempt_ms, created_ms);
