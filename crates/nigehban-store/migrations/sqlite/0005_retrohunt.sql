-- Retro-hunts: a rule or an indicator list run over a stored window of events, raising alerts
-- for past matches. The stored events are read per organisation in event-time order through
-- events_org_ts (org_id, ts; SQLite keeps the rowid as its last column), so no new index on
-- events is needed (another one would slow every ingest).

-- One row per retro-hunt, with its progress (kept so the list survives a restart).
CREATE TABLE retrohunts (
    id BLOB PRIMARY KEY NOT NULL,
    -- The organisation that asked (its hunters see the hunt), and who asked.
    org_id BLOB NOT NULL REFERENCES orgs(id),
    created_by BLOB,
    token_id BLOB,
    title TEXT NOT NULL,
    -- queued, running, done, failed, cancelled
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    updated_at INTEGER NOT NULL,
    -- The window, over event time (µs): from inclusive, to exclusive.
    window_from INTEGER NOT NULL,
    window_to INTEGER NOT NULL,
    -- The organisations asked for (JSON array of ids); NULL: every one the requester may read.
    orgs TEXT,
    -- What was hunted with (JSON: rules text, indicator values, STIX bundle).
    definition TEXT NOT NULL,
    rules INTEGER NOT NULL,
    correlations INTEGER NOT NULL,
    indicators INTEGER NOT NULL,
    total INTEGER NOT NULL DEFAULT 0,
    scanned INTEGER NOT NULL DEFAULT 0,
    matches INTEGER NOT NULL DEFAULT 0,
    already_counted INTEGER NOT NULL DEFAULT 0,
    withheld INTEGER NOT NULL DEFAULT 0,
    alerts_created INTEGER NOT NULL DEFAULT 0,
    alerts_updated INTEGER NOT NULL DEFAULT 0,
    alerts_known INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    warnings TEXT NOT NULL DEFAULT '[]',
    -- 1 once its claims are final (see retrohunt_matches); hunts not settled are settled at start.
    settled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX retrohunts_org ON retrohunts(org_id, id);
CREATE INDEX retrohunts_settled ON retrohunts(settled);

-- Every retro-hunt detection already counted in an alert, by a key over the alert's dedup key,
-- the event and the matched values: a detection is counted once, whichever retro-hunt finds it
-- again. `page` is the page of its hunt that claimed it: claims of pages whose alerts were not
-- committed (the hunt's cursor in stream_cursors is behind them) are released.
CREATE TABLE retrohunt_matches (
    match_key TEXT PRIMARY KEY NOT NULL,
    hunt_id BLOB NOT NULL,
    page INTEGER NOT NULL
);
CREATE INDEX retrohunt_matches_hunt ON retrohunt_matches(hunt_id, page);

-- The alerts a retro-hunt raised (relation 2), added to (1) or found already counted (0).
CREATE TABLE retrohunt_alerts (
    hunt_id BLOB NOT NULL,
    alert_id BLOB NOT NULL,
    relation INTEGER NOT NULL,
    PRIMARY KEY (hunt_id, alert_id)
);
