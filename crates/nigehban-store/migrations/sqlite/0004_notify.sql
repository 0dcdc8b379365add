-- Alert notifications: a durable outbox. `commit_detections` adds a row in the transaction
-- that creates an alert, so no alert is created without its notification and a retried batch
-- (which finds its alerts created) adds none. Senders claim due rows for a lease, record each
-- target reached (so a retry does not reach it twice), then mark the row sent, or failed
-- with its next try, or given up after the last attempt (the row stays with its last error).
CREATE TABLE notify_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id BLOB NOT NULL UNIQUE REFERENCES objects(id),
    created_at INTEGER NOT NULL,
    -- pending, sent, skipped (nothing to send, with the reason in last_error), gave_up
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    claim_id BLOB,
    claimed_until INTEGER,
    -- The targets already reached, as a JSON array (`mail:addr`, `webhook:name`).
    delivered TEXT NOT NULL DEFAULT '[]',
    last_error TEXT,
    updated_at INTEGER NOT NULL
);
CREATE INDEX notify_outbox_due ON notify_outbox(state, next_at);
