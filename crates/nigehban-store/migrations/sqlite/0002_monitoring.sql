-- Live monitoring: the event store (which is also the embedded mode's durable log), the
-- positions and saved state of stream consumers, and alerts with their evidence.

-- One row per event, in arrival order: `id` is the log position a detection cursor follows
-- (SQLite has one writer, so ids are committed in order).
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id BLOB NOT NULL REFERENCES orgs(id),
    tlp TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    ts INTEGER,
    source TEXT NOT NULL,
    dataset TEXT,
    host TEXT,
    record BLOB NOT NULL
);
CREATE INDEX events_org_ts ON events(org_id, ts);
CREATE INDEX events_received ON events(received_at);

-- Batches already stored, by the key of the message that carried them (a redelivered bus
-- message is stored once).
CREATE TABLE ingested_batches (
    batch_key TEXT PRIMARY KEY NOT NULL,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    stored_at INTEGER NOT NULL
);

CREATE TABLE stream_cursors (
    name TEXT PRIMARY KEY NOT NULL,
    position INTEGER NOT NULL,
    state BLOB,
    updated_at INTEGER NOT NULL
);

-- A detection alert is a marked object of kind 'alert' (so the policy, lists, shares and exports
-- treat it as every other object); these are its monitoring details: the key detections are
-- folded by, the rule, the count and time span, and the triage status.
CREATE TABLE alert_details (
    object_id BLOB PRIMARY KEY NOT NULL REFERENCES objects(id),
    dedup_key TEXT NOT NULL UNIQUE,
    rule_id TEXT NOT NULL,
    rule_title TEXT NOT NULL,
    engine TEXT NOT NULL,
    level TEXT NOT NULL,
    level_rank INTEGER NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    entity TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'new',
    count INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    status_by BLOB,
    status_at INTEGER
);
CREATE INDEX alert_details_status ON alert_details(status, level_rank);

CREATE TABLE alert_evidence (
    object_id BLOB NOT NULL REFERENCES objects(id),
    seq INTEGER NOT NULL,
    event_id INTEGER,
    ts INTEGER,
    source TEXT NOT NULL,
    position TEXT NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (object_id, seq)
);
