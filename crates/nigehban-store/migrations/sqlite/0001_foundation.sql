-- The constituency, accounts, sessions, tokens, marked objects and the audit log.
-- Identifiers are UUIDs (16-byte BLOBs here), times are microseconds since the Unix epoch.

CREATE TABLE orgs (
    id BLOB PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    short_name TEXT NOT NULL UNIQUE,
    sector TEXT,
    province TEXT,
    profile TEXT NOT NULL DEFAULT '{}',
    security_lead BLOB,
    created_at INTEGER NOT NULL
);

CREATE TABLE org_parents (
    org_id BLOB NOT NULL REFERENCES orgs(id),
    parent_id BLOB NOT NULL REFERENCES orgs(id),
    PRIMARY KEY (org_id, parent_id)
);

CREATE TABLE users (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES orgs(id),
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    email TEXT,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER,
    created_at INTEGER NOT NULL,
    last_login INTEGER
);
CREATE INDEX users_org ON users(org_id);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id BLOB NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ip TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE api_tokens (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES orgs(id),
    created_by BLOB REFERENCES users(id),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    scopes TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    last_used_at INTEGER
);
CREATE INDEX api_tokens_org ON api_tokens(org_id);

CREATE TABLE objects (
    id BLOB PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    owner_org BLOB NOT NULL REFERENCES orgs(id),
    tlp TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '{}',
    created_by BLOB,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX objects_owner ON objects(owner_org, id);
CREATE INDEX objects_kind ON objects(kind, id);

CREATE TABLE object_recipients (
    object_id BLOB NOT NULL REFERENCES objects(id),
    user_id BLOB NOT NULL REFERENCES users(id),
    PRIMARY KEY (object_id, user_id)
);
CREATE INDEX object_recipients_user ON object_recipients(user_id);

CREATE TABLE object_assignees (
    object_id BLOB NOT NULL REFERENCES objects(id),
    user_id BLOB NOT NULL REFERENCES users(id),
    PRIMARY KEY (object_id, user_id)
);
CREATE INDEX object_assignees_user ON object_assignees(user_id);

CREATE TABLE object_shares (
    object_id BLOB NOT NULL REFERENCES objects(id),
    by_org BLOB NOT NULL REFERENCES orgs(id),
    target TEXT NOT NULL,
    target_org BLOB REFERENCES orgs(id),
    created_by BLOB,
    created_at INTEGER NOT NULL
);
CREATE INDEX object_shares_object ON object_shares(object_id);
CREATE INDEX object_shares_target ON object_shares(target_org);

CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY NOT NULL,
    at INTEGER NOT NULL,
    actor_user BLOB,
    actor_token BLOB,
    actor_org BLOB,
    ip TEXT,
    action TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

-- The last entry of the chain, updated with every append: deleting the newest entries shows.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');
