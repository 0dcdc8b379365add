//! Live monitoring's storage: the event store, stream cursors, alerts and their evidence.
//!
//! **Events.** Each event is stored once, as the normalized event in `nigehban_event::codec`'s
//! encoding (which keeps the raw record for evidence) plus the columns searches filter on. In
//! the embedded mode the `events` table is also the durable log: ingest acknowledges a batch
//! once [`Store::append_events`] has committed it, and detection follows the table by id with
//! a cursor ([`Store::events_after`], [`Store::save_cursor`]). A batch that arrives through
//! the bus carries a key, so a redelivered message is stored once.
//!
//! **Alerts** are marked objects of kind `alert` (the policy, lists, shares and exports treat
//! them as any object) with monitoring details beside them. They are deduplicated by a key the
//! caller builds (owner, rule, entity, time bucket): the first detection creates the alert
//! (audited as `object.create` by the platform), later ones add to its count and time span and,
//! up to [`MAX_EVIDENCE`] per alert, to its evidence. An alert's TLP is the strictest of its
//! events' (raising it is audited).

use std::collections::HashMap;

use nigehban_policy::{Action, Kind, Marking, Principal, Tlp, Tree, can, read_scope};
use serde::Serialize;
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::audit::{AuditEntry, append_audit};
use crate::objects::{like_pattern, push_id};
use crate::{Actor, Page, Result, Store, StoreError, new_id, now_micros, on_read, on_write};
use crate::{Object, ObjectFilter};

/// The most evidence rows kept per alert (the count goes on).
pub const MAX_EVIDENCE: i64 = 50;

/// The width of the time spans events are indexed by (2^28 µs, about 4.5 minutes): the index
/// `events_org_span` is on (organisation, `ts / TIME_SPAN_MICROS`), so that events arriving
/// out of time order do not rewrite the index all over (migration 0006).
pub const TIME_SPAN_MICROS: i64 = 1 << 28;

/// The indexed expression, written exactly as in the index (the planners match it as written).
pub(crate) const SPAN_OF_TS: &str = "e.ts / 268435456";

/// The span an event time falls in (division truncates toward zero, as in SQLite and
/// PostgreSQL; the spans are in the order of the times either way).
pub(crate) fn span_of(ts: i64) -> i64 {
    ts / TIME_SPAN_MICROS
}

/// Bounds `e.ts` to `from..to` (µs; either open), through the span index first.
pub(crate) fn push_time_window<DB: sqlx::Database>(qb: &mut QueryBuilder<DB>, from: Option<i64>, to: Option<i64>)
where
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    if let Some(from) = from {
        qb.push(format_args!(" AND {SPAN_OF_TS} >= ")).push_bind(span_of(from));
        qb.push(" AND e.ts >= ").push_bind(from);
    }
    if let Some(to) = to {
        // ts < to, so ts <= to - 1 and its span is at most that of to - 1.
        qb.push(format_args!(" AND {SPAN_OF_TS} <= ")).push_bind(span_of(to.saturating_sub(1)));
        qb.push(" AND e.ts < ").push_bind(to);
    }
}

/// An event to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub org: Uuid,
    pub tlp: Tlp,
    /// Event time, µs since the epoch.
    pub ts: Option<i64>,
    pub source: String,
    pub dataset: Option<String>,
    pub host: Option<String>,
    /// The encoded normalized event.
    pub record: Vec<u8>,
}

/// A stored event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    pub id: i64,
    pub org_id: Uuid,
    pub tlp: String,
    pub received_at: i64,
    pub ts: Option<i64>,
    pub source: String,
    pub dataset: Option<String>,
    pub host: Option<String>,
    pub record: Vec<u8>,
}

impl StoredEvent {
    /// The event's TLP.
    pub fn tlp(&self) -> Result<Tlp> {
        self.tlp.parse().map_err(|e: nigehban_policy::TlpError| StoreError::Corrupt(e.to_string()))
    }

    fn marking(&self, tlp: Tlp) -> Marking<'_> {
        Marking {
            kind: Kind::Event,
            owner: self.org_id,
            tlp,
            created_by: None,
            recipients: &[],
            shares: &[],
            assignees: &[],
        }
    }
}

/// What an event search asks for. Times are µs since the epoch.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub org: Option<Uuid>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub dataset: Option<String>,
    pub host: Option<String>,
    pub source: Option<String>,
    /// Text the encoded event contains (case-insensitive), e.g. a user or an address.
    pub text: Option<String>,
    /// Events with a smaller id (the next page).
    pub before: Option<i64>,
    pub limit: u32,
}

/// A page of events with the cursor of the next one.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub items: Vec<StoredEvent>,
    pub next: Option<i64>,
}

/// A detection to fold into an alert.
#[derive(Debug, Clone)]
pub struct AlertHit {
    pub owner: Uuid,
    pub tlp: Tlp,
    /// Hits with the same key are one alert.
    pub dedup_key: String,
    pub rule_id: String,
    pub rule_title: String,
    pub engine: String,
    pub level: String,
    /// 0 informational … 4 critical.
    pub level_rank: i64,
    pub tags: Vec<String>,
    /// What the alert is about (a host, an account, a source → destination pair).
    pub entity: String,
    /// When the matching event happened (or arrived, if it did not say), µs.
    pub ts: i64,
    pub evidence: Evidence,
}

/// One matching event, as shown with an alert.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Evidence {
    /// The stored event, when the detection came from one.
    pub event_id: Option<i64>,
    pub ts: Option<i64>,
    pub source: String,
    pub position: String,
    /// The rule's key fields in this event, as a JSON object.
    pub fields: String,
}

/// An alert's workflow state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    New,
    Acknowledged,
    Closed,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::New => "new",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Closed => "closed",
        }
    }
}

impl std::str::FromStr for AlertStatus {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "new" => Ok(AlertStatus::New),
            "acknowledged" => Ok(AlertStatus::Acknowledged),
            "closed" => Ok(AlertStatus::Closed),
            _ => Err(format!("unknown alert status {s:?} (expected new, acknowledged or closed)")),
        }
    }
}

/// The monitoring details of an alert (an object of kind `alert`).
#[derive(Debug, Clone, Serialize)]
pub struct AlertDetails {
    pub rule_id: String,
    pub rule_title: String,
    pub engine: String,
    pub level: String,
    pub level_rank: i64,
    pub tags: Vec<String>,
    pub entity: String,
    pub status: AlertStatus,
    pub count: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub status_by: Option<Uuid>,
    pub status_at: Option<i64>,
}

/// An alert: the marked object and, for alerts monitoring raised, its details (an alert
/// created through the objects API has none).
#[derive(Debug, Clone)]
pub struct Alert {
    pub object: Object,
    pub details: Option<AlertDetails>,
}

#[derive(sqlx::FromRow)]
struct DetailsRow {
    object_id: Uuid,
    rule_id: String,
    rule_title: String,
    engine: String,
    level: String,
    level_rank: i64,
    tags: String,
    entity: String,
    status: String,
    count: i64,
    first_seen: i64,
    last_seen: i64,
    status_by: Option<Uuid>,
    status_at: Option<i64>,
}

const DETAILS_COLUMNS: &str = "object_id, rule_id, rule_title, engine, level, level_rank, tags, entity, status, count, \
     first_seen, last_seen, status_by, status_at";

fn row_to_details(r: DetailsRow) -> Result<(Uuid, AlertDetails)> {
    Ok((
        r.object_id,
        AlertDetails {
            tags: serde_json::from_str(&r.tags)
                .map_err(|e| StoreError::Corrupt(format!("tags of alert {}: {e}", r.object_id)))?,
            status: r.status.parse().map_err(StoreError::Corrupt)?,
            rule_id: r.rule_id,
            rule_title: r.rule_title,
            engine: r.engine,
            level: r.level,
            level_rank: r.level_rank,
            entity: r.entity,
            count: r.count,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            status_by: r.status_by,
            status_at: r.status_at,
        },
    ))
}

/// Events retention deletes per statement.
const DELETE_CHUNK: i64 = 5_000;

/// How a cursor moves with a commit of detections.
#[derive(Debug, Clone)]
pub struct CursorUpdate<'a> {
    pub name: &'a str,
    pub position: i64,
    /// The consumer's saved state (detection windows), if it has any to keep.
    pub state: Option<&'a [u8]>,
    /// Scale-out detection: the slot lease the commit depends on (checked and extended in the
    /// same transaction).
    pub fence: Option<crate::scaleout::Fence<'a>>,
}

/// The id SQLite gave the last row an INSERT wrote (none on PostgreSQL, whose inserts of events
/// say their ids with `RETURNING`).
trait LastInsertId {
    fn last_insert_id(&self) -> Option<i64>;
}

impl LastInsertId for sqlx::sqlite::SqliteQueryResult {
    fn last_insert_id(&self) -> Option<i64> {
        Some(self.last_insert_rowid())
    }
}

impl LastInsertId for sqlx::postgres::PgQueryResult {
    fn last_insert_id(&self) -> Option<i64> {
        None
    }
}

fn sqlite_last_id(done: &impl LastInsertId) -> Option<i64> {
    done.last_insert_id()
}

/// Rows per INSERT statement (9 values each: within SQLite's and PostgreSQL's bind limits).
const EVENT_ROWS_PER_INSERT: usize = 2_000;

impl Store {
    /// Stores a batch of events in one transaction and returns the ids given to the first and
    /// last. With a `batch_key` (the bus message that carried them), a batch already stored is
    /// not stored again: `Ok(None)`.
    pub async fn append_events(&self, events: &[NewEvent], batch_key: Option<&str>) -> Result<Option<(i64, i64)>> {
        self.append_events_at(events, batch_key, now_micros()).await
    }

    /// [`Store::append_events`] with the time of receipt (µs) given by the caller, who hands
    /// the stored batch on as it was stored.
    pub async fn append_events_at(
        &self,
        events: &[NewEvent],
        batch_key: Option<&str>,
        now: i64,
    ) -> Result<Option<(i64, i64)>> {
        if events.is_empty() {
            return Ok(Some((0, 0)));
        }
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            if d == crate::Dialect::Postgres {
                // Ids come from a sequence: two writers could commit them out of order, and a
                // cursor that follows the log by id would pass an id committed later. One writer
                // at a time keeps the log in order (SQLite has one writer anyway).
                sqlx::query("SELECT pg_advisory_xact_lock(7340033)").execute(&mut *tx).await?;
            }
            if let Some(key) = batch_key {
                let seen: Option<(i64,)> = sqlx::query_as("SELECT first_id FROM ingested_batches WHERE batch_key = $1")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                if seen.is_some() {
                    return Ok(None);
                }
            }
            let mut first = None;
            let mut last = 0;
            for chunk in events.chunks(EVENT_ROWS_PER_INSERT) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO events (org_id, slot, tlp, received_at, ts, source, dataset, host, record) ",
                );
                qb.push_values(chunk, |mut b, e| {
                    b.push_bind(e.org)
                        .push_bind(crate::scaleout::slot_of(e.org))
                        .push_bind(e.tlp.as_str())
                        .push_bind(now)
                        .push_bind(e.ts)
                        .push_bind(&e.source)
                        .push_bind(&e.dataset)
                        .push_bind(&e.host)
                        .push_bind(&e.record);
                });
                if d == crate::Dialect::Sqlite {
                    // The only writer, one statement: SQLite gives the rows consecutive ids
                    // ending at the last one inserted (no id per row to hand back).
                    let done = qb.build().execute(&mut *tx).await?;
                    let (Some(rows), Some(id)) = (i64::try_from(chunk.len()).ok(), sqlite_last_id(&done)) else {
                        return Err(StoreError::Corrupt("an insert of events returned no ids".into()));
                    };
                    first.get_or_insert(id - rows + 1);
                    last = last.max(id);
                    continue;
                }
                qb.push(" RETURNING id");
                let ids: Vec<(i64,)> = qb.build_query_as().fetch_all(&mut *tx).await?;
                for (id,) in ids {
                    first.get_or_insert(id);
                    last = last.max(id);
                }
            }
            let first = first.ok_or_else(|| StoreError::Corrupt("an insert of events returned no ids".into()))?;
            if let Some(key) = batch_key {
                sqlx::query("INSERT INTO ingested_batches (batch_key, first_id, last_id, stored_at) VALUES ($1, $2, $3, $4)")
                    .bind(key)
                    .bind(first)
                    .bind(last)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Some((first, last)))
        })
    }

    /// Events after `after` in log order (the detection cursor's read; no visibility applies:
    /// the platform reads its own log).
    pub async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>> {
        let limit = i64::from(limit.clamp(1, 100_000));
        Ok(on_read!(self, pool => {
            sqlx::query_as(
                "SELECT id, org_id, tlp, received_at, ts, source, dataset, host, record FROM events \
                 WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Events with ids in `first..=last` (a batch stored by [`Store::append_events`]).
    pub async fn events_between(&self, first: i64, last: i64) -> Result<Vec<StoredEvent>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as(
                "SELECT id, org_id, tlp, received_at, ts, source, dataset, host, record FROM events \
                 WHERE id >= $1 AND id <= $2 ORDER BY id",
            )
            .bind(first)
            .bind(last)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The id of the newest event (0 when there is none).
    pub async fn last_event_id(&self) -> Result<i64> {
        let (id,): (Option<i64>,) = on_read!(self, pool => {
            sqlx::query_as("SELECT max(id) FROM events").fetch_one(pool).await?
        });
        Ok(id.unwrap_or(0))
    }

    /// How many events are stored.
    pub async fn count_events(&self) -> Result<i64> {
        let (n,): (i64,) = on_read!(self, pool => {
            sqlx::query_as("SELECT count(*) FROM events").fetch_one(pool).await?
        });
        Ok(n)
    }

    /// One event, with the policy applied: `None` if it does not exist or `who` may not read it.
    pub async fn event(&self, who: &Principal, tree: &Tree, id: i64) -> Result<Option<StoredEvent>> {
        let row: Option<StoredEvent> = on_read!(self, pool => {
            sqlx::query_as(
                "SELECT id, org_id, tlp, received_at, ts, source, dataset, host, record FROM events WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        let Some(row) = row else { return Ok(None) };
        let tlp = row.tlp()?;
        Ok(can(who, tree, &row.marking(tlp), Action::Read).allowed().then_some(row))
    }

    /// Searches the events `who` may see, newest first.
    pub async fn search_events(&self, who: &Principal, tree: &Tree, q: &EventQuery) -> Result<EventPage> {
        let scope = read_scope(who, tree);
        if !scope.kinds.contains(&Kind::Event) || scope.chain_owners.is_empty() {
            return Ok(EventPage { items: Vec::new(), next: None });
        }
        let limit = q.limit.clamp(1, 1_000);
        let rows: Vec<StoredEvent> = on_read!(self, pool, d => {
            let mut qb = QueryBuilder::new(
                "SELECT id, org_id, tlp, received_at, ts, source, dataset, host, record FROM events e \
                 WHERE e.tlp <> 'RED' AND e.org_id IN (",
            );
            for (i, o) in scope.chain_owners.iter().enumerate() {
                qb.push(if i == 0 { "" } else { ", " });
                push_id(&mut qb, d, Some(*o));
            }
            qb.push(")");
            if let Some(org) = q.org {
                qb.push(" AND e.org_id = ");
                push_id(&mut qb, d, Some(org));
            }
            push_time_window(&mut qb, q.from, q.to);
            if let Some(v) = q.dataset.as_deref().filter(|v| !v.is_empty()) {
                qb.push(" AND e.dataset = ").push_bind(v.to_owned());
            }
            if let Some(v) = q.host.as_deref().filter(|v| !v.is_empty()) {
                qb.push(" AND lower(e.host) = ").push_bind(v.to_lowercase());
            }
            if let Some(v) = q.source.as_deref().filter(|v| !v.is_empty()) {
                qb.push(" AND e.source = ").push_bind(v.to_owned());
            }
            if let Some(v) = q.text.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                // The record is the encoded event: its field values and raw record, as JSON text.
                match d {
                    crate::Dialect::Sqlite => qb.push(" AND lower(CAST(e.record AS TEXT)) LIKE "),
                    crate::Dialect::Postgres => qb.push(" AND lower(convert_from(e.record, 'UTF8')) LIKE "),
                };
                qb.push_bind(like_pattern(v)).push(" ESCAPE '\\'");
            }
            if let Some(b) = q.before {
                qb.push(" AND e.id < ").push_bind(b);
            }
            qb.push(format_args!(" ORDER BY e.id DESC LIMIT {}", i64::from(limit) + 1));
            qb.build_query_as().fetch_all(pool).await?
        });
        let more = rows.len() > limit as usize;
        let mut items: Vec<StoredEvent> = rows.into_iter().take(limit as usize).collect();
        let next = if more { items.last().map(|e| e.id) } else { None };
        items.retain(|e| e.tlp().is_ok_and(|t| can(who, tree, &e.marking(t), Action::Search).allowed()));
        Ok(EventPage { items, next })
    }

    /// Deletes the events of `org` received before `before` (µs), never one at or after
    /// `keep_from` (the oldest position a consumer has not passed yet). Returns how many.
    ///
    /// The events are found by the time they were stored (what has expired since the last
    /// sweep), never by scanning the organisation's events, and deleted `DELETE_CHUNK` at a
    /// time, each chunk its own statement, so that ingest and detection write in between
    /// however much has expired.
    pub async fn delete_events(&self, org: Uuid, before: i64, keep_from: i64) -> Result<u64> {
        let mut deleted = 0;
        loop {
            let n = on_write!(self, pool, d => {
                let sql = if d == crate::Dialect::Sqlite {
                    // Without statistics SQLite would take the (org, time span) index for `org_id = ?`
                    // and read every event of the organisation.
                    "DELETE FROM events WHERE id IN (SELECT id FROM events INDEXED BY events_received \
                     WHERE received_at < $2 AND org_id = $1 AND id < $3 LIMIT $4)"
                } else {
                    "DELETE FROM events WHERE id IN (SELECT id FROM events \
                     WHERE received_at < $2 AND org_id = $1 AND id < $3 LIMIT $4)"
                };
                let done = sqlx::query(sql)
                    .bind(org)
                    .bind(before)
                    .bind(keep_from)
                    .bind(DELETE_CHUNK)
                    .execute(pool)
                    .await?;
                Ok::<u64, StoreError>(done.rows_affected())
            })?;
            deleted += n;
            if n < DELETE_CHUNK as u64 {
                return Ok(deleted);
            }
        }
    }

    /// A consumer's position and saved state.
    pub async fn cursor(&self, name: &str) -> Result<Option<(i64, Option<Vec<u8>>)>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as("SELECT position, state FROM stream_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Folds detections into alerts and moves the consumer's cursor, in one transaction, so
    /// that after a crash the events after the cursor are detected again and nothing is counted
    /// twice. Returns the alerts created.
    pub async fn commit_detections(&self, hits: &[AlertHit], cursor: Option<CursorUpdate<'_>>) -> Result<Vec<Uuid>> {
        // Hits of one alert are folded here first: one statement per alert, not per detection.
        struct Group<'h> {
            hit: &'h AlertHit,
            count: i64,
            first: i64,
            last: i64,
            tlp: Tlp,
            evidence: Vec<&'h Evidence>,
        }
        let mut groups: Vec<Group<'_>> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for h in hits {
            match index.get(h.dedup_key.as_str()) {
                Some(&i) => {
                    let g = &mut groups[i];
                    g.count += 1;
                    g.first = g.first.min(h.ts);
                    g.last = g.last.max(h.ts);
                    g.tlp = g.tlp.max(h.tlp);
                    if (g.evidence.len() as i64) < MAX_EVIDENCE {
                        g.evidence.push(&h.evidence);
                    }
                }
                None => {
                    index.insert(&h.dedup_key, groups.len());
                    groups.push(Group {
                        hit: h,
                        count: 1,
                        first: h.ts,
                        last: h.ts,
                        tlp: h.tlp,
                        evidence: vec![&h.evidence],
                    });
                }
            }
        }
        let now = now_micros();
        let mut created = Vec::new();
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            for Group { hit: h, count, first, last, tlp, evidence } in &groups {
                let existing: Option<(Uuid,)> = sqlx::query_as("SELECT object_id FROM alert_details WHERE dedup_key = $1")
                    .bind(&h.dedup_key)
                    .fetch_optional(&mut *tx)
                    .await?;
                let alert_id = match existing {
                    None => {
                        let id = new_id();
                        let title = format!("{} — {}", h.rule_title, h.entity);
                        let body = serde_json::json!({ "rule": h.rule_id, "entity": h.entity, "level": h.level });
                        sqlx::query(
                            "INSERT INTO objects (id, kind, owner_org, tlp, title, body, created_by, created_at, \
                             updated_at, version) VALUES ($1, 'alert', $2, $3, $4, $5, NULL, $6, $6, 1)",
                        )
                        .bind(id)
                        .bind(h.owner)
                        .bind(tlp.as_str())
                        .bind(&title)
                        .bind(body.to_string())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query(
                            "INSERT INTO alert_details (object_id, dedup_key, rule_id, rule_title, engine, level, \
                             level_rank, tags, entity, status, count, first_seen, last_seen) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'new', $10, $11, $12)",
                        )
                        .bind(id)
                        .bind(&h.dedup_key)
                        .bind(&h.rule_id)
                        .bind(&h.rule_title)
                        .bind(&h.engine)
                        .bind(&h.level)
                        .bind(h.level_rank)
                        .bind(serde_json::to_string(&h.tags).unwrap_or_else(|_| "[]".into()))
                        .bind(&h.entity)
                        .bind(count)
                        .bind(first)
                        .bind(last)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| StoreError::unique(e, || format!("alert {} was created concurrently", h.dedup_key)))?;
                        let detail = serde_json::json!({
                            "kind": "alert", "owner": h.owner, "tlp": tlp.as_str(), "rule": h.rule_id,
                            "entity": h.entity, "level": h.level,
                        });
                        append_audit!(tx, d, &Actor::system(), AuditEntry::new("object.create", "alert", id, detail));
                        // Its notification, in the same transaction (the outbox of `notify.rs`).
                        sqlx::query(crate::notify::ENQUEUE_SQL).bind(id).bind(now).execute(&mut *tx).await?;
                        created.push(id);
                        id
                    }
                    Some((id,)) => {
                        sqlx::query(
                            "UPDATE alert_details SET count = count + $1, \
                             first_seen = CASE WHEN $2 < first_seen THEN $2 ELSE first_seen END, \
                             last_seen = CASE WHEN $3 > last_seen THEN $3 ELSE last_seen END WHERE object_id = $4",
                        )
                        .bind(count)
                        .bind(first)
                        .bind(last)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        // Derived data keeps the strictest marking of its sources.
                        let (current,): (String,) = sqlx::query_as("SELECT tlp FROM objects WHERE id = $1")
                            .bind(id)
                            .fetch_one(&mut *tx)
                            .await?;
                        let current: Tlp = current
                            .parse()
                            .map_err(|e: nigehban_policy::TlpError| StoreError::Corrupt(e.to_string()))?;
                        if *tlp > current {
                            sqlx::query("UPDATE objects SET tlp = $1, updated_at = $2 WHERE id = $3")
                                .bind(tlp.as_str())
                                .bind(now)
                                .bind(id)
                                .execute(&mut *tx)
                                .await?;
                            let detail = serde_json::json!({ "tlp": tlp.as_str() });
                            append_audit!(tx, d, &Actor::system(), AuditEntry::new("object.update", "alert", id, detail));
                        }
                        id
                    }
                };
                let (kept,): (i64,) = sqlx::query_as("SELECT count(*) FROM alert_evidence WHERE object_id = $1")
                    .bind(alert_id)
                    .fetch_one(&mut *tx)
                    .await?;
                for (seq, e) in (kept..MAX_EVIDENCE).zip(evidence.iter()) {
                    sqlx::query(
                        "INSERT INTO alert_evidence (object_id, seq, event_id, ts, source, position, fields) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(alert_id)
                    .bind(seq)
                    .bind(e.event_id)
                    .bind(e.ts)
                    .bind(&e.source)
                    .bind(&e.position)
                    .bind(&e.fields)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            if let Some(f) = cursor.as_ref().and_then(|c| c.fence) {
                // Checked last, so the lease row stays locked only for the end of the commit; a
                // node that lost the slot meanwhile commits nothing (the new holder detects
                // these events again from the slot's cursor).
                let kept = sqlx::query(
                    "UPDATE detect_leases SET expires_at = $1 WHERE slot = $2 AND holder = $3 AND epoch = $4",
                )
                .bind(now.saturating_add(f.ttl_micros))
                .bind(f.lease.slot)
                .bind(f.holder)
                .bind(f.lease.epoch)
                .execute(&mut *tx)
                .await?;
                if kept.rows_affected() == 0 {
                    return Err(StoreError::LeaseLost(f.lease.slot));
                }
            }
            if let Some(c) = cursor {
                sqlx::query(
                    "INSERT INTO stream_cursors (name, position, state, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET position = excluded.position, state = excluded.state, \
                     updated_at = excluded.updated_at",
                )
                .bind(c.name)
                .bind(c.position)
                .bind(c.state)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(created)
    }

    /// The monitoring details of these alerts (those that have any).
    pub async fn alert_details(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, AlertDetails>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(500) {
            let rows: Vec<DetailsRow> = on_read!(self, pool => {
                let mut qb =
                    QueryBuilder::new(format!("SELECT {DETAILS_COLUMNS} FROM alert_details WHERE object_id IN ("));
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                qb.push(")");
                qb.build_query_as().fetch_all(pool).await?
            });
            for r in rows {
                let (id, d) = row_to_details(r)?;
                out.insert(id, d);
            }
        }
        Ok(out)
    }

    /// An alert's evidence, oldest first.
    pub async fn alert_evidence(&self, id: Uuid) -> Result<Vec<Evidence>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as(
                "SELECT event_id, ts, source, position, fields FROM alert_evidence WHERE object_id = $1 ORDER BY seq",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The alerts `who` may list, newest first: the objects of kind `alert` that the filter
    /// selects, with their monitoring details.
    pub async fn list_alerts(
        &self,
        who: &Principal,
        tree: &Tree,
        filter: &ObjectFilter,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<Alert>> {
        let filter = ObjectFilter { kind: Some(Kind::Alert), ..filter.clone() };
        let page = self.list_objects(who, tree, &filter, before, limit).await?;
        let ids: Vec<Uuid> = page.items.iter().map(|o| o.id).collect();
        let mut details = self.alert_details(&ids).await?;
        let items = page.items.into_iter().map(|o| Alert { details: details.remove(&o.id), object: o }).collect();
        Ok(Page { items, next: page.next })
    }

    /// Sets an alert's triage status. The caller has checked the policy (write).
    pub async fn set_alert_status(&self, actor: &Actor, id: Uuid, status: AlertStatus) -> Result<()> {
        let now = now_micros();
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            let done =
                sqlx::query("UPDATE alert_details SET status = $1, status_by = $2, status_at = $3 WHERE object_id = $4")
                    .bind(status.as_str())
                    .bind(actor.user)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("alert"));
            }
            sqlx::query("UPDATE objects SET updated_at = $1 WHERE id = $2").bind(now).bind(id).execute(&mut *tx).await?;
            let detail = serde_json::json!({ "status": status.as_str() });
            append_audit!(tx, d, actor, AuditEntry::new("alert.status", "alert", id, detail));
            tx.commit().await?;
        });
        Ok(())
    }
}
