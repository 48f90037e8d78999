-- Who set a breaker override: the name of the API token that did, or `anonymous` when
-- authentication is off (and for overrides set before this column existed).
ALTER TABLE breaker_overrides ADD COLUMN created_by TEXT NOT NULL DEFAULT 'anonymous';
