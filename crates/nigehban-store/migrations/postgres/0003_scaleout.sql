-- Scale-out detection: the event log is cut into slots by organisation (an organisation's
-- events are all in one slot, so its detection state lives in one place), and detection nodes
-- hold leases on slots. A lease's epoch grows with every change of holder; a node commits
-- detections only while it still holds the lease with the epoch it read the slot's state at.

ALTER TABLE events ADD COLUMN slot SMALLINT NOT NULL DEFAULT 0;
UPDATE events SET slot = get_byte(uuid_send(org_id), 15) % 32;
CREATE INDEX events_slot ON events(slot, id);

CREATE TABLE detect_leases (
    slot SMALLINT PRIMARY KEY NOT NULL,
    holder TEXT,
    epoch BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE detect_nodes (
    node TEXT PRIMARY KEY NOT NULL,
    seen_at BIGINT NOT NULL
);
