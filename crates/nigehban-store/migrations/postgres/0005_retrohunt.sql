-- Retro-hunts: a rule or an indicator list run over a stored window of events, raising alerts
-- for past matches. The stored events are read per organisation in event-time order through
-- events_org_ts (org_id, ts; the few ties on ts are sorted by id after it), so no new index on
-- events is needed (another one would slow every ingest).

-- One row per retro-hunt, with its progress (kept so the list survives a restart).
CREATE TABLE retrohunts (
    id UUID PRIMARY KEY NOT NULL,
    -- The organisation that asked (its hunters see the hunt), and who asked.
    org_id UUID NOT NULL REFERENCES orgs(id),
    created_by UUID,
    token_id UUID,
    title TEXT NOT NULL,
    -- queued, running, done, failed, cancelled
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL,
    -- The window, over event time (µs): from inclusive, to exclusive.
    window_from BIGINT NOT NULL,
    window_to BIGINT NOT NULL,
    -- The organisations asked for (JSON array of ids); NULL: every one the requester may read.
    orgs TEXT,
    -- What was hunted with (JSON: rules text, indicator values, STIX bundle).
    definition TEXT NOT NULL,
    rules BIGINT NOT NULL,
    correlations BIGINT NOT NULL,
    indicators BIGINT NOT NULL,
    total BIGINT NOT NULL DEFAULT 0,
    scanned BIGINT NOT NULL DEFAULT 0,
    matches BIGINT NOT NULL DEFAULT 0,
    already_counted BIGINT NOT NULL DEFAULT 0,
    withheld BIGINT NOT NULL DEFAULT 0,
    alerts_created BIGINT NOT NULL DEFAULT 0,
    alerts_updated BIGINT NOT NULL DEFAULT 0,
    alerts_known BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    warnings TEXT NOT NULL DEFAULT '[]',
    -- 1 once its claims are final (see retrohunt_matches); hunts not settled are settled at start.
    settled BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX retrohunts_org ON retrohunts(org_id, id);
CREATE INDEX retrohunts_settled ON retrohunts(settled);

-- Every retro-hunt detection already counted in an alert, by a key over the alert's dedup key,
-- the event and the matched values: a detection is counted once, whichever retro-hunt finds it
-- again. `page` is the page of its hunt that claimed it: claims of pages whose alerts were not
-- committed (the hunt's cursor in stream_cursors is behind them) are released.
CREATE TABLE retrohunt_matches (
    match_key TEXT PRIMARY KEY NOT NULL,
    hunt_id UUID NOT NULL,
    page BIGINT NOT NULL
);
CREATE INDEX retrohunt_matches_hunt ON retrohunt_matches(hunt_id, page);

-- The alerts a retro-hunt raised (relation 2), added to (1) or found already counted (0).
CREATE TABLE retrohunt_alerts (
    hunt_id UUID NOT NULL,
    alert_id UUID NOT NULL,
    relation BIGINT NOT NULL,
    PRIMARY KEY (hunt_id, alert_id)
);
