//! Retro-hunts: a rule or an indicator list run over a stored window of events, raising alerts
//! for past matches (a new C2 indicator from a peer CERT shows at once who already talked to it).
//!
//! **The hunt** is a row of `retrohunts` with its definition, window, status and progress, so
//! the list survives a restart. The server reads the window's events through
//! [`Store::retrohunt_events`], one organisation at a time in event-time order (to within a
//! 4.5-minute span, see there) and a page at a time, scoped by the requester's read scope like [`Store::search_events`] (and re-checked with
//! [`can`]), detects them and folds what it finds into alerts with
//! [`Store::commit_detections`].
//!
//! **Counting once.** Retro-hunt alerts have dedup keys of their own (the server prefixes them),
//! so a retro-hunt never adds to a live alert. Within retro-hunts, a detection (an alert's dedup
//! key, the event, the matched values: the *match key*) is counted at most once, whichever
//! hunt finds it and however often: before a page's hits are committed, the hunt claims their
//! match keys in `retrohunt_matches` ([`Store::claim_retrohunt_matches`]); only hits it newly
//! claimed are committed. The claim and the commit are two transactions, so the commit also
//! moves the hunt's cursor (`stream_cursors`, named by [`retrohunt_cursor`]) to the page
//! number: claims of pages after the cursor belong to a commit that did not happen, and are
//! released (at once when the commit fails, at the next start when the process died in
//! between: [`Store::recover_retrohunts`]). A crash can thus lose a page's count for a hunt
//! that another hunt skipped meanwhile, never count a detection twice.

use std::collections::HashSet;

use nigehban_policy::{Action, Kind, Marking, Principal, Tlp, Tree, can, read_scope};
use serde::Serialize;
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::audit::{AuditEntry, append_audit};
use crate::monitoring::{Alert, SPAN_OF_TS, StoredEvent, push_time_window, span_of};
use crate::objects::push_id;
use crate::{Actor, Page, Result, Store, StoreError, new_id, now_micros, on_read, on_write};

/// Settles a hunt inside a transaction: releases its claims of the pages after its committed
/// cursor, drops the cursor and marks the hunt settled (its claims are then final):
/// `settle!(tx, id)`.
macro_rules! settle {
    ($tx:expr, $id:expr) => {{
        let cursor = retrohunt_cursor($id);
        let committed: Option<(i64,)> = sqlx::query_as("SELECT position FROM stream_cursors WHERE name = $1")
            .bind(&cursor)
            .fetch_optional(&mut *$tx)
            .await?;
        sqlx::query("DELETE FROM retrohunt_matches WHERE hunt_id = $1 AND page > $2")
            .bind($id)
            .bind(committed.map_or(0, |(p,)| p))
            .execute(&mut *$tx)
            .await?;
        sqlx::query("DELETE FROM stream_cursors WHERE name = $1").bind(&cursor).execute(&mut *$tx).await?;
        sqlx::query("UPDATE retrohunts SET settled = 1 WHERE id = $1").bind($id).execute(&mut *$tx).await?;
    }};
}

/// The name of a retro-hunt's cursor in `stream_cursors`: its position is the last page whose
/// alerts were committed.
pub fn retrohunt_cursor(id: Uuid) -> String {
    format!("retrohunt/{id}")
}

/// Where a retro-hunt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetroHuntStatus {
    /// Waiting for a free slot (hunts run a few at a time).
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl RetroHuntStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RetroHuntStatus::Queued => "queued",
            RetroHuntStatus::Running => "running",
            RetroHuntStatus::Done => "done",
            RetroHuntStatus::Failed => "failed",
            RetroHuntStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the hunt has ended (done, failed or cancelled).
    pub fn is_final(self) -> bool {
        matches!(self, RetroHuntStatus::Done | RetroHuntStatus::Failed | RetroHuntStatus::Cancelled)
    }
}

impl std::str::FromStr for RetroHuntStatus {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "queued" => Ok(RetroHuntStatus::Queued),
            "running" => Ok(RetroHuntStatus::Running),
            "done" => Ok(RetroHuntStatus::Done),
            "failed" => Ok(RetroHuntStatus::Failed),
            "cancelled" => Ok(RetroHuntStatus::Cancelled),
            _ => Err(format!("unknown retro-hunt status {s:?}")),
        }
    }
}

/// A retro-hunt's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetroHuntProgress {
    /// Events of the window the requester may read (counted when the hunt starts).
    pub total: i64,
    /// Of those, events read and detected so far.
    pub scanned: i64,
    /// Detections found.
    pub matches: i64,
    /// Of those, detections a retro-hunt had already counted in an alert (not counted again).
    pub already_counted: i64,
    /// Of those, detections not raised as alerts because their marking would be TLP:RED (an
    /// indicator marked RED: an alert only named people may see would reach nobody).
    pub withheld: i64,
    /// Alerts this hunt created.
    pub alerts_created: i64,
    /// Alerts of earlier retro-hunts this hunt added detections to.
    pub alerts_updated: i64,
    /// Alerts whose detections had all been counted before (found again, unchanged).
    pub alerts_known: i64,
}

/// A retro-hunt to record.
#[derive(Debug, Clone)]
pub struct NewRetroHunt {
    pub title: String,
    /// The organisation that asks (its hunters see the hunt).
    pub org: Uuid,
    pub created_by: Option<Uuid>,
    pub token: Option<Uuid>,
    /// The window over event time, µs: `from` inclusive, `to` exclusive.
    pub from: i64,
    pub to: i64,
    /// The organisations asked for; `None`: every one the requester may read.
    pub orgs: Option<Vec<Uuid>>,
    /// What it hunts with (rules text, indicator values, STIX bundle), as the caller sent it.
    pub definition: serde_json::Value,
    pub rules: i64,
    pub correlations: i64,
    pub indicators: i64,
    /// What loading the definition noted (rules with unmapped log sources, skipped STIX
    /// indicators).
    pub warnings: Vec<String>,
}

/// A recorded retro-hunt.
#[derive(Debug, Clone, Serialize)]
pub struct RetroHunt {
    pub id: Uuid,
    pub title: String,
    pub org: Uuid,
    pub created_by: Option<Uuid>,
    pub token: Option<Uuid>,
    pub status: RetroHuntStatus,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
    pub from: i64,
    pub to: i64,
    pub orgs: Option<Vec<Uuid>>,
    pub definition: serde_json::Value,
    pub rules: i64,
    pub correlations: i64,
    pub indicators: i64,
    pub progress: RetroHuntProgress,
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct HuntRow {
    id: Uuid,
    org_id: Uuid,
    created_by: Option<Uuid>,
    token_id: Option<Uuid>,
    title: String,
    status: String,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    updated_at: i64,
    window_from: i64,
    window_to: i64,
    orgs: Option<String>,
    definition: String,
    rules: i64,
    correlations: i64,
    indicators: i64,
    total: i64,
    scanned: i64,
    matches: i64,
    already_counted: i64,
    withheld: i64,
    alerts_created: i64,
    alerts_updated: i64,
    alerts_known: i64,
    error: Option<String>,
    warnings: String,
}

const HUNT_COLUMNS: &str = "id, org_id, created_by, token_id, title, status, created_at, started_at, finished_at, \
     updated_at, window_from, window_to, orgs, definition, rules, correlations, indicators, total, scanned, matches, \
     already_counted, withheld, alerts_created, alerts_updated, alerts_known, error, warnings";

impl TryFrom<HuntRow> for RetroHunt {
    type Error = StoreError;

    fn try_from(r: HuntRow) -> Result<RetroHunt> {
        let corrupt =
            |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("retro-hunt {}: {what}: {e}", r.id));
        let orgs = match &r.orgs {
            None => None,
            Some(t) => Some(serde_json::from_str(t).map_err(|e| corrupt("orgs", &e))?),
        };
        let definition = serde_json::from_str(&r.definition).map_err(|e| corrupt("definition", &e))?;
        let warnings = serde_json::from_str(&r.warnings).map_err(|e| corrupt("warnings", &e))?;
        let status = r.status.parse().map_err(|e: String| corrupt("status", &e))?;
        Ok(RetroHunt {
            id: r.id,
            title: r.title,
            org: r.org_id,
            created_by: r.created_by,
            token: r.token_id,
            status,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            updated_at: r.updated_at,
            from: r.window_from,
            to: r.window_to,
            orgs,
            definition,
            rules: r.rules,
            correlations: r.correlations,
            indicators: r.indicators,
            progress: RetroHuntProgress {
                total: r.total,
                scanned: r.scanned,
                matches: r.matches,
                already_counted: r.already_counted,
                withheld: r.withheld,
                alerts_created: r.alerts_created,
                alerts_updated: r.alerts_updated,
                alerts_known: r.alerts_known,
            },
            error: r.error,
            warnings,
        })
    }
}

/// One page of a retro-hunt's read of one organisation's events, in event-time order (by
/// time span, then within the page; see [`Store::retrohunt_events`]).
#[derive(Debug, Clone)]
pub struct RetroHuntRead {
    pub org: Uuid,
    /// Event time, µs: `from` inclusive, `to` exclusive.
    pub from: i64,
    pub to: i64,
    /// The (event time, id) of the last event the previous page read (as that page returned it).
    pub after: Option<(i64, i64)>,
    pub limit: u32,
}

/// Which spans a page of [`Store::retrohunt_events`] reads.
#[derive(Clone, Copy)]
enum Spans {
    /// The rest of a span, after an id.
    RestOf(i64, i64),
    /// The spans after one (all, when none).
    After(Option<i64>),
}

/// How a retro-hunt relates to an alert it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetroHuntRelation {
    /// Its detections had all been counted before.
    Known = 0,
    /// It added detections to an alert an earlier retro-hunt created.
    Updated = 1,
    /// It created the alert.
    Created = 2,
}

impl RetroHuntRelation {
    pub fn as_str(self) -> &'static str {
        match self {
            RetroHuntRelation::Known => "known",
            RetroHuntRelation::Updated => "updated",
            RetroHuntRelation::Created => "created",
        }
    }
}

/// Why a hunt ended without finishing, when the process stopped under it.
const INTERRUPTED: &str = "the server stopped while the retro-hunt was running; start it again (detections already \
     counted are not counted twice)";
const INTERRUPTED_QUEUED: &str = "the server stopped before the retro-hunt started; start it again";

impl Store {
    /// Records a retro-hunt (queued), audited as `retrohunt.create`.
    pub async fn create_retrohunt(&self, actor: &Actor, new: NewRetroHunt) -> Result<RetroHunt> {
        if new.title.trim().is_empty() {
            return Err(StoreError::Invalid("title must not be empty".into()));
        }
        if new.to <= new.from {
            return Err(StoreError::Invalid("the window must end after it starts".into()));
        }
        let id = new_id();
        let now = now_micros();
        let orgs = new.orgs.as_ref().map(|o| serde_json::to_string(o).unwrap_or_else(|_| "[]".into()));
        let warnings = serde_json::to_string(&new.warnings).unwrap_or_else(|_| "[]".into());
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO retrohunts (id, org_id, created_by, token_id, title, status, created_at, updated_at, \
                 window_from, window_to, orgs, definition, rules, correlations, indicators, warnings) \
                 VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(id)
            .bind(new.org)
            .bind(new.created_by)
            .bind(new.token)
            .bind(new.title.trim())
            .bind(now)
            .bind(new.from)
            .bind(new.to)
            .bind(&orgs)
            .bind(new.definition.to_string())
            .bind(new.rules)
            .bind(new.correlations)
            .bind(new.indicators)
            .bind(&warnings)
            .execute(&mut *tx)
            .await?;
            // The audit entry names the hunt and its scope, not its content (indicators may be
            // marked).
            let detail = serde_json::json!({
                "title": new.title.trim(), "from": new.from, "to": new.to, "orgs": new.orgs,
                "rules": new.rules, "correlations": new.correlations, "indicators": new.indicators,
            });
            append_audit!(tx, d, actor, AuditEntry::new("retrohunt.create", "retrohunt", id, detail));
            tx.commit().await?;
        });
        self.retrohunt(id).await?.ok_or(StoreError::NotFound("retro-hunt"))
    }

    /// One retro-hunt (the caller decides who may see it).
    pub async fn retrohunt(&self, id: Uuid) -> Result<Option<RetroHunt>> {
        let row: Option<HuntRow> = on_read!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {HUNT_COLUMNS} FROM retrohunts WHERE id = $1")))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(RetroHunt::try_from).transpose()
    }

    /// The retro-hunts of an organisation, newest first.
    pub async fn list_retrohunts(&self, org: Uuid, before: Option<Uuid>, limit: u32) -> Result<Page<RetroHunt>> {
        let limit = limit.clamp(1, 500);
        let rows: Vec<HuntRow> = on_read!(self, pool => {
            let mut qb = QueryBuilder::new(format!("SELECT {HUNT_COLUMNS} FROM retrohunts WHERE org_id = "));
            qb.push_bind(org);
            if let Some(b) = before {
                qb.push(" AND id < ").push_bind(b);
            }
            qb.push(format_args!(" ORDER BY id DESC LIMIT {}", i64::from(limit) + 1));
            qb.build_query_as().fetch_all(pool).await?
        });
        let more = rows.len() > limit as usize;
        let items: Vec<RetroHunt> =
            rows.into_iter().take(limit as usize).map(RetroHunt::try_from).collect::<Result<_>>()?;
        let next = if more { items.last().map(|h| h.id) } else { None };
        Ok(Page { items, next })
    }

    /// A queued hunt starts running with the window's event count. `false` if it is no longer
    /// queued (cancelled meanwhile).
    pub async fn start_retrohunt(&self, id: Uuid, total: i64) -> Result<bool> {
        let now = now_micros();
        on_write!(self, pool, _d => {
            let done = sqlx::query(
                "UPDATE retrohunts SET status = 'running', started_at = $1, updated_at = $1, total = $2 \
                 WHERE id = $3 AND status = 'queued'",
            )
            .bind(now)
            .bind(total)
            .bind(id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Saves a running hunt's counters (the alert counters come from its links). `false` if it
    /// is no longer running (cancelled, here or on another node): the hunt should stop.
    pub async fn retrohunt_progress(&self, id: Uuid, p: &RetroHuntProgress) -> Result<bool> {
        on_write!(self, pool, _d => {
            let done = sqlx::query(
                "UPDATE retrohunts SET scanned = $1, matches = $2, already_counted = $3, withheld = $4, \
                 alerts_created = (SELECT count(*) FROM retrohunt_alerts WHERE hunt_id = $5 AND relation = 2), \
                 alerts_updated = (SELECT count(*) FROM retrohunt_alerts WHERE hunt_id = $5 AND relation = 1), \
                 alerts_known = (SELECT count(*) FROM retrohunt_alerts WHERE hunt_id = $5 AND relation = 0), \
                 updated_at = $6 WHERE id = $5 AND status = 'running'",
            )
            .bind(p.scanned)
            .bind(p.matches)
            .bind(p.already_counted)
            .bind(p.withheld)
            .bind(id)
            .bind(now_micros())
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Ends a queued or running hunt: `Done`, or `Failed` with the reason, and settles it (claims
    /// of pages it did not commit are released). Leaves the status of a hunt already ended
    /// (cancelled) as it is: returns `false` then.
    pub async fn finish_retrohunt(&self, id: Uuid, status: RetroHuntStatus, error: Option<&str>) -> Result<bool> {
        if !matches!(status, RetroHuntStatus::Done | RetroHuntStatus::Failed) {
            return Err(StoreError::Invalid(format!("a retro-hunt cannot finish as {}", status.as_str())));
        }
        let now = now_micros();
        on_write!(self, pool, _d => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(
                "UPDATE retrohunts SET status = $1, error = $2, finished_at = $3, updated_at = $3 \
                 WHERE id = $4 AND status IN ('queued', 'running')",
            )
            .bind(status.as_str())
            .bind(error)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            settle!(tx, id);
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Cancels a queued or running hunt (audited as `retrohunt.cancel`). Returns the status it
    /// had; a hunt already ended is a conflict. The running hunt notices at its next page.
    pub async fn cancel_retrohunt(&self, actor: &Actor, id: Uuid) -> Result<RetroHuntStatus> {
        let now = now_micros();
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            let row: Option<(String,)> = sqlx::query_as("SELECT status FROM retrohunts WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((status,)) = row else { return Err(StoreError::NotFound("retro-hunt")) };
            let status: RetroHuntStatus = status.parse().map_err(StoreError::Corrupt)?;
            if status.is_final() {
                return Err(StoreError::Conflict(format!("the retro-hunt has already ended ({})", status.as_str())));
            }
            sqlx::query(
                "UPDATE retrohunts SET status = 'cancelled', finished_at = $1, updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let detail = serde_json::json!({ "was": status.as_str() });
            append_audit!(tx, d, actor, AuditEntry::new("retrohunt.cancel", "retrohunt", id, detail));
            tx.commit().await?;
            Ok(status)
        })
    }

    /// Settles a hunt that ended without [`Store::finish_retrohunt`] (cancelled): releases its
    /// claims of pages it did not commit.
    pub async fn settle_retrohunt(&self, id: Uuid) -> Result<()> {
        on_write!(self, pool, _d => {
            let mut tx = pool.begin().await?;
            settle!(tx, id);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Every hunt not settled is recovered (see [`Store::recover_stale_retrohunts`]): for a
    /// single process at its start, when no hunt of the database can be running.
    pub async fn recover_retrohunts(&self) -> Result<u64> {
        self.recover_stale_retrohunts(i64::MAX).await
    }

    /// Keeps the hunts a process holds (queued or running) alive: their `updated_at` is now.
    /// Each process does so every few seconds, so that other nodes tell its hunts from those of
    /// a process that died.
    pub async fn retrohunts_keepalive(&self, ids: &[Uuid]) -> Result<()> {
        let now = now_micros();
        for id in ids {
            on_write!(self, pool, _d => {
                sqlx::query(
                    "UPDATE retrohunts SET updated_at = $1 WHERE id = $2 AND status IN ('queued', 'running')",
                )
                .bind(now)
                .bind(*id)
                .execute(pool)
                .await?;
            });
        }
        Ok(())
    }

    /// Hunts not settled and not kept alive since `stale_before` (µs) belong to a process that
    /// stopped: those that were queued or running are marked failed, and each has its claims
    /// of pages it did not commit released. Returns how many hunts were marked failed. Every
    /// node runs this now and then (several nodes may run hunts on one database; a live
    /// process keeps its hunts fresh with [`Store::retrohunts_keepalive`]).
    pub async fn recover_stale_retrohunts(&self, stale_before: i64) -> Result<u64> {
        let now = now_micros();
        let open: Vec<(Uuid, String)> = on_read!(self, pool => {
            sqlx::query_as("SELECT id, status FROM retrohunts WHERE settled = 0 AND updated_at < $1")
                .bind(stale_before)
                .fetch_all(pool)
                .await?
        });
        let mut failed = 0;
        for (id, status) in &open {
            let why = match status.as_str() {
                "queued" => INTERRUPTED_QUEUED,
                "running" => INTERRUPTED,
                _ => "",
            };
            let recovered = on_write!(self, pool, _d => {
                let mut tx = pool.begin().await?;
                // Checked again as it is written: its process may have kept it alive since.
                let stale: Option<(Uuid,)> =
                    sqlx::query_as("SELECT id FROM retrohunts WHERE id = $1 AND settled = 0 AND updated_at < $2")
                        .bind(*id)
                        .bind(stale_before)
                        .fetch_optional(&mut *tx)
                        .await?;
                if stale.is_some() {
                    if !why.is_empty() {
                        sqlx::query(
                            "UPDATE retrohunts SET status = 'failed', error = $1, finished_at = $2, updated_at = $2 \
                             WHERE id = $3 AND status IN ('queued', 'running')",
                        )
                        .bind(why)
                        .bind(now)
                        .bind(*id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    settle!(tx, *id);
                }
                tx.commit().await?;
                stale.is_some()
            });
            if recovered && !why.is_empty() {
                failed += 1;
                tracing::warn!(
                    message = "A retro-hunt was interrupted when the server stopped; it is marked failed.",
                    id = %id
                );
            }
        }
        Ok(failed)
    }

    /// How many events of `orgs` in the window `who` may read (the scope applies as in
    /// [`Store::retrohunt_events`]).
    pub async fn count_retrohunt_events(
        &self,
        who: &Principal,
        tree: &Tree,
        orgs: &[Uuid],
        from: i64,
        to: i64,
    ) -> Result<i64> {
        let readable = readable_orgs(who, tree, orgs);
        if readable.is_empty() {
            return Ok(0);
        }
        let (n,): (i64,) = on_read!(self, pool, d => {
            let mut qb = QueryBuilder::new("SELECT count(*) FROM events e WHERE e.tlp <> 'RED' AND e.org_id IN (");
            for (i, o) in readable.iter().enumerate() {
                qb.push(if i == 0 { "" } else { ", " });
                push_id(&mut qb, d, Some(*o));
            }
            qb.push(")");
            push_time_window(&mut qb, Some(from), Some(to));
            qb.build_query_as().fetch_one(pool).await?
        });
        Ok(n)
    }

    /// A page of one organisation's events in the window, in event-time order, that `who` may
    /// read: the read scope's chain owners, below TLP:RED (as [`Store::search_events`]), each
    /// re-checked with [`can`]. Nothing when the organisation is outside the scope. Events
    /// without an event time are not in any window.
    ///
    /// Pages follow the index (`events_org_span`): by time span (2^28 µs, about 4.5 minutes),
    /// within a span by id; each page is then put in (time, id) order. Returns the events `who`
    /// may read and the (time, id) of the last row read in the index's order (the next page's
    /// `after`), `None` at the end.
    pub async fn retrohunt_events(
        &self,
        who: &Principal,
        tree: &Tree,
        q: &RetroHuntRead,
    ) -> Result<(Vec<StoredEvent>, Option<(i64, i64)>)> {
        if readable_orgs(who, tree, &[q.org]).is_empty() {
            return Ok((Vec::new(), None));
        }
        let limit = i64::from(q.limit.clamp(1, 20_000));
        // In the index's order, (span, id): the rest of the last page's span, then the spans
        // after it. Each of the two reads is a seek in `events_org_span`; neither sorts.
        let after = q.after.map(|(ts, id)| (span_of(ts), id));
        let mut rows: Vec<StoredEvent> = on_read!(self, pool, d => {
            let page = |spans: Spans, limit: i64| {
                let mut qb = QueryBuilder::new(
                    "SELECT id, org_id, tlp, received_at, ts, source, dataset, host, record FROM events e \
                     WHERE e.org_id = ",
                );
                push_id(&mut qb, d, Some(q.org));
                qb.push(" AND e.tlp <> 'RED'");
                match spans {
                    Spans::RestOf(span, id) => {
                        qb.push(format_args!(" AND {SPAN_OF_TS} = ")).push_bind(span);
                        qb.push(" AND e.id > ").push_bind(id);
                        qb.push(" AND e.ts >= ").push_bind(q.from).push(" AND e.ts < ").push_bind(q.to);
                        qb.push(format_args!(" ORDER BY e.id LIMIT {limit}"));
                    }
                    Spans::After(span) => {
                        if let Some(span) = span {
                            qb.push(format_args!(" AND {SPAN_OF_TS} > ")).push_bind(span);
                        }
                        push_time_window(&mut qb, Some(q.from), Some(q.to));
                        qb.push(format_args!(" ORDER BY {SPAN_OF_TS}, e.id LIMIT {limit}"));
                    }
                }
                qb
            };
            let mut tx = pool.begin().await?;
            if d == crate::Dialect::Postgres {
                // A plan for these values: the generic plan (the pool's setting) guesses a few
                // rows and may sort the whole rest of the window for every page; with the
                // values, PostgreSQL walks events_org_span in its order.
                sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan").execute(&mut *tx).await?;
            }
            let mut rows: Vec<StoredEvent> = Vec::new();
            if let Some((span, id)) = after {
                rows = page(Spans::RestOf(span, id), limit).build_query_as().fetch_all(&mut *tx).await?;
            }
            let rest = limit - rows.len() as i64;
            if rest > 0 {
                let more: Vec<StoredEvent> =
                    page(Spans::After(after.map(|(s, _)| s)), rest).build_query_as().fetch_all(&mut *tx).await?;
                rows.extend(more);
            }
            tx.commit().await?;
            rows
        });
        let last = if rows.len() as i64 == limit { rows.last().and_then(|e| e.ts.map(|t| (t, e.id))) } else { None };
        // Within the page, in time order (ties by id): across pages the order is that of the
        // spans, so events of one span split over two pages are out of order by less than a
        // span (about 4.5 minutes), inside detection's default lateness (5 minutes).
        rows.sort_by_key(|e| (e.ts, e.id));
        let items = rows
            .into_iter()
            .filter(|e| {
                e.tlp.parse::<Tlp>().is_ok_and(|tlp| {
                    let m = Marking {
                        kind: Kind::Event,
                        owner: e.org_id,
                        tlp,
                        created_by: None,
                        recipients: &[],
                        shares: &[],
                        assignees: &[],
                    };
                    can(who, tree, &m, Action::Search).allowed()
                })
            })
            .collect();
        Ok((items, last))
    }

    /// Claims the match keys of a page of hits for a hunt; returns those it claimed now (the
    /// others were counted by an earlier claim).
    pub async fn claim_retrohunt_matches(&self, hunt: Uuid, page: i64, keys: &[String]) -> Result<HashSet<String>> {
        let mut claimed = HashSet::new();
        if keys.is_empty() {
            return Ok(claimed);
        }
        on_write!(self, pool, _d => {
            let mut tx = pool.begin().await?;
            for chunk in keys.chunks(500) {
                let mut qb = QueryBuilder::new("INSERT INTO retrohunt_matches (match_key, hunt_id, page) ");
                qb.push_values(chunk, |mut b, k| {
                    b.push_bind(k).push_bind(hunt).push_bind(page);
                });
                qb.push(" ON CONFLICT (match_key) DO NOTHING RETURNING match_key");
                let rows: Vec<(String,)> = qb.build_query_as().fetch_all(&mut *tx).await?;
                claimed.extend(rows.into_iter().map(|(k,)| k));
            }
            tx.commit().await?;
        });
        Ok(claimed)
    }

    /// Releases a hunt's claims of pages after `page` (whose alerts were not committed).
    pub async fn release_retrohunt_matches(&self, hunt: Uuid, after_page: i64) -> Result<u64> {
        on_write!(self, pool, _d => {
            let done = sqlx::query("DELETE FROM retrohunt_matches WHERE hunt_id = $1 AND page > $2")
                .bind(hunt)
                .bind(after_page)
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    /// Links a hunt to the alerts of these dedup keys: `created` are the alerts it created,
    /// `counted` the keys it added detections to; the other keys' alerts it found again. A link
    /// only ever strengthens (found → updated → created).
    pub async fn link_retrohunt_alerts(
        &self,
        hunt: Uuid,
        keys: &[String],
        counted: &HashSet<String>,
        created: &[Uuid],
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let created: HashSet<Uuid> = created.iter().copied().collect();
        on_write!(self, pool, _d => {
            let mut tx = pool.begin().await?;
            for chunk in keys.chunks(500) {
                let mut qb = QueryBuilder::new("SELECT dedup_key, object_id FROM alert_details WHERE dedup_key IN (");
                let mut sep = qb.separated(", ");
                for k in chunk {
                    sep.push_bind(k);
                }
                qb.push(")");
                let found: Vec<(String, Uuid)> = qb.build_query_as().fetch_all(&mut *tx).await?;
                if found.is_empty() {
                    continue;
                }
                let mut qb = QueryBuilder::new("INSERT INTO retrohunt_alerts (hunt_id, alert_id, relation) ");
                qb.push_values(&found, |mut b, (key, alert)| {
                    let relation = if created.contains(alert) {
                        RetroHuntRelation::Created
                    } else if counted.contains(key) {
                        RetroHuntRelation::Updated
                    } else {
                        RetroHuntRelation::Known
                    };
                    b.push_bind(hunt).push_bind(*alert).push_bind(relation as i64);
                });
                qb.push(
                    " ON CONFLICT (hunt_id, alert_id) DO UPDATE SET relation = CASE WHEN excluded.relation > \
                     retrohunt_alerts.relation THEN excluded.relation ELSE retrohunt_alerts.relation END",
                );
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The alerts a hunt found that `who` may read (most significant first: created, updated,
    /// found again), at most `limit`, each re-checked with [`can`].
    pub async fn retrohunt_alerts(
        &self,
        who: &Principal,
        tree: &Tree,
        hunt: Uuid,
        limit: u32,
    ) -> Result<Vec<(Alert, RetroHuntRelation)>> {
        let links: Vec<(Uuid, i64)> = on_read!(self, pool => {
            sqlx::query_as(
                "SELECT alert_id, relation FROM retrohunt_alerts WHERE hunt_id = $1 \
                 ORDER BY relation DESC, alert_id LIMIT $2",
            )
            .bind(hunt)
            .bind(i64::from(limit.clamp(1, 1_000)))
            .fetch_all(pool)
            .await?
        });
        let ids: Vec<Uuid> = links.iter().map(|(id, _)| *id).collect();
        let mut details = self.alert_details(&ids).await?;
        let mut out = Vec::with_capacity(links.len());
        for (id, relation) in links {
            let Some(object) = self.object(id).await? else { continue };
            if object.kind != Kind::Alert || !can(who, tree, &object.marking(), Action::Read).allowed() {
                continue;
            }
            let relation = match relation {
                2 => RetroHuntRelation::Created,
                1 => RetroHuntRelation::Updated,
                _ => RetroHuntRelation::Known,
            };
            out.push((Alert { details: details.remove(&id), object }, relation));
        }
        Ok(out)
    }
}

/// The organisations among `orgs` whose events `who` may read (chain owners of its read scope).
fn readable_orgs(who: &Principal, tree: &Tree, orgs: &[Uuid]) -> Vec<Uuid> {
    let scope = read_scope(who, tree);
    if !scope.kinds.contains(&Kind::Event) {
        return Vec::new();
    }
    let mut seen = HashSet::new();
    orgs.iter().filter(|o| scope.chain_owners.contains(o) && seen.insert(**o)).copied().collect()
}
