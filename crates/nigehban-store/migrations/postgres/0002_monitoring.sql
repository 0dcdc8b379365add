-- Live monitoring: the event store, the positions and saved state of stream consumers, and
-- alerts with their evidence. In the scale-out mode the durable log is NATS JetStream; event
-- ids are unique but, with several writers, not committed in id order.

CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id UUID NOT NULL REFERENCES orgs(id),
    tlp TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    ts BIGINT,
    source TEXT NOT NULL,
    dataset TEXT,
    host TEXT,
    record BYTEA NOT NULL
);
CREATE INDEX events_org_ts ON events(org_id, ts);
CREATE INDEX events_received ON events(received_at);

CREATE TABLE ingested_batches (
    batch_key TEXT PRIMARY KEY NOT NULL,
    first_id BIGINT NOT NULL,
    last_id BIGINT NOT NULL,
    stored_at BIGINT NOT NULL
);

CREATE TABLE stream_cursors (
    name TEXT PRIMARY KEY NOT NULL,
    position BIGINT NOT NULL,
    state BYTEA,
    updated_at BIGINT NOT NULL
);

-- A detection alert is a marked object of kind 'alert' (so the policy, lists, shares and exports
-- treat it as every other object); these are its monitoring details: the key detections are
-- folded by, the rule, the count and time span, and the triage status.
CREATE TABLE alert_details (
    object_id UUID PRIMARY KEY NOT NULL REFERENCES objects(id),
    dedup_key TEXT NOT NULL UNIQUE,
    rule_id TEXT NOT NULL,
    rule_title TEXT NOT NULL,
    engine TEXT NOT NULL,
    level TEXT NOT NULL,
    level_rank BIGINT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    entity TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'new',
    count BIGINT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    status_by UUID,
    status_at BIGINT
);
CREATE INDEX alert_details_status ON alert_details(status, level_rank);

CREATE TABLE alert_evidence (
    object_id UUID NOT NULL REFERENCES objects(id),
    seq BIGINT NOT NULL,
    event_id BIGINT,
    ts BIGINT,
    source TEXT NOT NULL,
    position TEXT NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (object_id, seq)
);
