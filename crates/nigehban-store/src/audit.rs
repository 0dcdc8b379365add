//! The append-only, hash-chained audit log.
//!
//! Each entry's hash is SHA-256 over the previous entry's hash and every field of the entry, so
//! editing an entry breaks its own hash, deleting or reordering entries breaks the chain, and
//! deleting the newest entries no longer matches the stored head. (Someone who can rewrite the
//! whole database can rewrite the chain too: `nigehban admin verify-audit` prints the head hash
//! so it can be kept elsewhere and compared.)

use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Actor, Result, Store, on_read};

/// A change to record.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// What happened: `org.create`, `user.login`, `object.share`…
    pub action: String,
    /// The kind of thing it happened to: `org`, `user`, `incident`…
    pub target_kind: String,
    /// Its identifier.
    pub target_id: String,
    /// Details (never secrets).
    pub detail: serde_json::Value,
}

impl AuditEntry {
    /// An entry.
    pub fn new(action: &str, target_kind: &str, target_id: impl ToString, detail: serde_json::Value) -> AuditEntry {
        AuditEntry {
            action: action.to_owned(),
            target_kind: target_kind.to_owned(),
            target_id: target_id.to_string(),
            detail,
        }
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When (microseconds since the epoch).
    pub at: i64,
    /// The acting user.
    pub actor_user: Option<Uuid>,
    /// The acting API token.
    pub actor_token: Option<Uuid>,
    /// The organisation acted for.
    pub actor_org: Option<Uuid>,
    /// The client address.
    pub ip: Option<String>,
    /// What happened.
    pub action: String,
    /// The kind of target.
    pub target_kind: String,
    /// The target.
    pub target_id: String,
    /// Details, as JSON text.
    pub detail: String,
    /// The previous entry's hash (empty for the first).
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn opt_uuid(h: &mut Sha256, u: Option<Uuid>) {
    match u {
        Some(u) => field(h, u.as_bytes()),
        None => field(h, b""),
    }
}

/// The hash of an entry: SHA-256 over the previous hash and every field, each length-prefixed.
pub fn chain_hash(r: &AuditRecord) -> String {
    let mut h = Sha256::new();
    field(&mut h, r.prev_hash.as_bytes());
    field(&mut h, &r.seq.to_be_bytes());
    field(&mut h, &r.at.to_be_bytes());
    opt_uuid(&mut h, r.actor_user);
    opt_uuid(&mut h, r.actor_token);
    opt_uuid(&mut h, r.actor_org);
    field(&mut h, r.ip.as_deref().unwrap_or("").as_bytes());
    field(&mut h, r.action.as_bytes());
    field(&mut h, r.target_kind.as_bytes());
    field(&mut h, r.target_id.as_bytes());
    field(&mut h, r.detail.as_bytes());
    hex::encode(h.finalize())
}

/// Builds the record that follows `(seq, hash)`.
pub(crate) fn seal(actor: &Actor, entry: AuditEntry, head: (i64, String), at: i64) -> AuditRecord {
    let mut r = AuditRecord {
        seq: head.0 + 1,
        at,
        actor_user: actor.user,
        actor_token: actor.token,
        actor_org: actor.org,
        ip: actor.ip.clone(),
        action: entry.action,
        target_kind: entry.target_kind,
        target_id: entry.target_id,
        detail: entry.detail.to_string(),
        prev_hash: head.1,
        hash: String::new(),
    };
    r.hash = chain_hash(&r);
    r
}

/// Appends an entry inside the caller's transaction: `append_audit!(tx, dialect, &actor, entry)`.
macro_rules! append_audit {
    ($tx:expr, $d:expr, $actor:expr, $entry:expr) => {{
        let head: (i64, String) = sqlx::query_as($d.head_sql()).fetch_one(&mut *$tx).await?;
        let r = $crate::audit::seal($actor, $entry, head, $crate::now_micros());
        sqlx::query(
            "INSERT INTO audit_log (seq, at, actor_user, actor_token, actor_org, ip, action, target_kind, target_id, \
             detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(r.seq)
        .bind(r.at)
        .bind(r.actor_user)
        .bind(r.actor_token)
        .bind(r.actor_org)
        .bind(&r.ip)
        .bind(&r.action)
        .bind(&r.target_kind)
        .bind(&r.target_id)
        .bind(&r.detail)
        .bind(&r.prev_hash)
        .bind(&r.hash)
        .execute(&mut *$tx)
        .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(r.seq)
            .bind(&r.hash)
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(crate) use append_audit;

/// What `verify-audit` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Entries read.
    pub entries: u64,
    /// The head as stored (sequence number and hash).
    pub head_seq: i64,
    /// The head hash as stored.
    pub head_hash: String,
    /// Every problem found, each naming the entry.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether the chain is intact.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Filters for reading the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Entries before this sequence number (the cursor).
    pub before: Option<i64>,
    /// Only this action.
    pub action: Option<String>,
    /// Only changes by these organisations (`None`: all).
    pub actor_orgs: Option<Vec<Uuid>>,
    /// At most this many (0: 100; at most 1,000).
    pub limit: u32,
}

impl Store {
    /// Appends an entry on its own (for events that change nothing else, such as a failed login).
    pub async fn audit(&self, actor: &Actor, entry: AuditEntry) -> Result<()> {
        crate::on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            append_audit!(tx, d, actor, entry);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Reads entries, newest first.
    pub async fn audit_entries(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let limit = if q.limit == 0 { 100 } else { i64::from(q.limit.min(1000)) };
        if q.actor_orgs.as_ref().is_some_and(|o| o.is_empty()) {
            return Ok(Vec::new());
        }
        let rows = on_read!(self, pool => {
            let mut qb = sqlx::QueryBuilder::new(
                "SELECT seq, at, actor_user, actor_token, actor_org, ip, action, target_kind, target_id, detail, \
                 prev_hash, hash FROM audit_log WHERE TRUE",
            );
            if let Some(b) = q.before {
                qb.push(" AND seq < ");
                qb.push_bind(b);
            }
            if let Some(a) = &q.action {
                qb.push(" AND action = ");
                qb.push_bind(a.clone());
            }
            if let Some(orgs) = &q.actor_orgs {
                qb.push(" AND actor_org IN (");
                let mut sep = qb.separated(", ");
                for o in orgs {
                    sep.push_bind(*o);
                }
                qb.push(")");
            }
            qb.push(" ORDER BY seq DESC LIMIT ");
            qb.push_bind(limit);
            qb.build_query_as::<AuditRecord>().fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// Walks the whole chain and reports every broken link.
    pub async fn verify_audit(&self) -> Result<VerifyReport> {
        let (head_seq, head_hash): (i64, String) = on_read!(self, pool => sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(pool).await?);
        let rows: Vec<AuditRecord> = on_read!(self, pool => {
            sqlx::query_as::<_, AuditRecord>(
                "SELECT seq, at, actor_user, actor_token, actor_org, ip, action, target_kind, target_id, detail, \
                 prev_hash, hash FROM audit_log ORDER BY seq",
            )
            .fetch_all(pool)
            .await?
        });
        let mut problems = Vec::new();
        let mut prev_hash = String::new();
        let mut expected_seq = 1;
        for r in &rows {
            if r.seq != expected_seq {
                problems.push(format!(
                    "entry {}: expected sequence number {expected_seq} (entries missing or reordered)",
                    r.seq
                ));
            }
            if r.prev_hash != prev_hash {
                problems.push(format!("entry {}: does not link to the entry before it (deleted or reordered)", r.seq));
            }
            if chain_hash(r) != r.hash {
                problems.push(format!("entry {} ({}): content does not match its hash (edited)", r.seq, r.action));
            }
            prev_hash = r.hash.clone();
            expected_seq = r.seq + 1;
        }
        let last = rows.last().map(|r| (r.seq, r.hash.clone())).unwrap_or((0, String::new()));
        if last != (head_seq, head_hash.clone()) {
            problems.push(format!(
                "the newest entry is {} but the stored head says {head_seq}: entries were deleted or added outside the store",
                last.0
            ));
        }
        if problems.len() > 100 {
            let more = problems.len() - 100;
            problems.truncate(100);
            problems.push(format!("… and {more} more problems"));
        }
        Ok(VerifyReport { entries: rows.len() as u64, head_seq, head_hash, problems })
    }
}
