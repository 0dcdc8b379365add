-- Scale-out detection: the event log is cut into slots by organisation (an organisation's
-- events are all in one slot, so its detection state lives in one place), and detection nodes
-- hold leases on slots. A lease's epoch grows with every change of holder; a node commits
-- detections only while it still holds the lease with the epoch it read the slot's state at.
-- The embedded mode has one detection worker over the whole log: the slots are kept (tests run
-- the scale-out path on SQLite too) but not indexed, which would slow every append.

ALTER TABLE events ADD COLUMN slot INTEGER NOT NULL DEFAULT 0;
-- The slot is the organisation id's last byte modulo 32 (ids are 16-byte blobs here).
UPDATE events SET slot = ((instr('0123456789ABCDEF', substr(hex(org_id), 31, 1)) - 1) * 16
    + (instr('0123456789ABCDEF', substr(hex(org_id), 32, 1)) - 1)) % 32;

CREATE TABLE detect_leases (
    slot INTEGER PRIMARY KEY NOT NULL,
    holder TEXT,
    epoch INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE detect_nodes (
    node TEXT PRIMARY KEY NOT NULL,
    seen_at INTEGER NOT NULL
);
