//! Alert notifications: a durable outbox.
//!
//! [`Store::commit_detections`] adds a row for every alert it creates, in the transaction that
//! creates it: a crash between the alert and its notification loses nothing, and a batch
//! detected again after a crash (whose alerts exist already) adds no second row. Only the
//! creation of an alert notifies; later hits only raise its count.
//!
//! A sender claims due rows for a lease ([`Store::claim_notifications`]; on PostgreSQL with
//! `FOR UPDATE SKIP LOCKED`, so several nodes never claim one row), records each target it
//! reaches ([`Store::notification_delivered`], so a retry does not reach it twice), then
//! finishes the row ([`Store::finish_notification`]: sent, or skipped with the reason) or
//! records the failure ([`Store::fail_notification`]: the next try after a back-off that doubles,
//! or, after the last attempt, gave up; the row stays with its last error). Every change names
//! the claim, so a sender whose lease ran out (and whose row another sender claimed) changes
//! nothing.
//!
//! Delivery is at least once: a sender that stops after reaching a target and before recording
//! it reaches that target again after the lease.

use std::time::Duration;

use nigehban_policy::Tlp;
use uuid::Uuid;

use crate::monitoring::AlertDetails;
use crate::{Dialect, Result, Store, StoreError, now_micros, on_read, on_write};

/// Adds an alert's notification (bound: alert id, now). Used by `commit_detections`.
pub(crate) const ENQUEUE_SQL: &str = "INSERT INTO notify_outbox (alert_id, created_at, next_at, updated_at) \
                                      VALUES ($1, $2, $2, $2) ON CONFLICT (alert_id) DO NOTHING";

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    /// Waiting to be sent (first time or again).
    Pending,
    /// Every target was reached.
    Sent,
    /// Nothing was to be sent (below the level, no target, TLP:RED…): the reason is the error.
    Skipped,
    /// Failed at every attempt; the last error is kept.
    GaveUp,
}

impl NotificationState {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Sent => "sent",
            NotificationState::Skipped => "skipped",
            NotificationState::GaveUp => "gave_up",
        }
    }
}

impl std::str::FromStr for NotificationState {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(NotificationState::Pending),
            "sent" => Ok(NotificationState::Sent),
            "skipped" => Ok(NotificationState::Skipped),
            "gave_up" => Ok(NotificationState::GaveUp),
            _ => Err(StoreError::Corrupt(format!("unknown notification state {s:?}"))),
        }
    }
}

/// How failed notifications are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyRetry {
    /// Attempts in all; after the last failure the notification is given up.
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles with each failure.
    pub first_delay: Duration,
    /// The longest wait between attempts.
    pub max_delay: Duration,
}

impl Default for NotifyRetry {
    /// 8 attempts over about two hours: 1, 2, 4, 8, 16, 32, 60 minutes apart.
    fn default() -> Self {
        NotifyRetry { max_attempts: 8, first_delay: Duration::from_secs(60), max_delay: Duration::from_secs(3600) }
    }
}

impl NotifyRetry {
    /// The wait after `failures` failed attempts (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first_delay.saturating_mul(1 << doublings).min(self.max_delay)
    }
}

/// What [`Store::fail_notification`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Tried again at this time (µs since the epoch).
    RetryAt(i64),
    /// That was the last attempt.
    GaveUp,
}

/// How a claimed notification ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Every target was reached.
    Sent,
    /// Nothing was to be sent, for this reason.
    Skipped(String),
}

/// A notification claimed for sending, with what the message needs of its alert.
#[derive(Debug, Clone)]
pub struct ClaimedNotification {
    /// The outbox row.
    pub id: i64,
    /// Names this claim in the changes that follow.
    pub claim: Uuid,
    pub alert_id: Uuid,
    /// When the alert was created (µs).
    pub created_at: i64,
    /// Failed attempts so far.
    pub attempts: i64,
    /// Targets already reached by an earlier attempt.
    pub delivered: Vec<String>,
    /// The alert's owner, TLP (as it is now: later events may have raised it) and title.
    pub owner: Uuid,
    pub tlp: Tlp,
    pub title: String,
    /// Its monitoring details (rule, level, entity, count…).
    pub details: Option<AlertDetails>,
}

/// An alert's notification as stored (for operators and tests).
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotificationRecord {
    pub id: i64,
    pub alert_id: Uuid,
    pub state: NotificationState,
    /// Failed attempts.
    pub attempts: i64,
    /// When it is due (pending) or was last due (µs).
    pub next_at: i64,
    pub delivered: Vec<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct RecordRow {
    id: i64,
    alert_id: Uuid,
    state: String,
    attempts: i64,
    next_at: i64,
    delivered: String,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl RecordRow {
    fn into_record(self) -> Result<NotificationRecord> {
        Ok(NotificationRecord {
            state: self.state.parse()?,
            delivered: parse_delivered(self.id, &self.delivered)?,
            id: self.id,
            alert_id: self.alert_id,
            attempts: self.attempts,
            next_at: self.next_at,
            last_error: self.last_error,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: i64,
    alert_id: Uuid,
    created_at: i64,
    attempts: i64,
    delivered: String,
    owner_org: Uuid,
    tlp: String,
    title: String,
}

fn parse_delivered(id: i64, text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("delivered targets of notification {id}: {e}")))
}

/// The longest error text kept (a remote server's answer can be long).
const MAX_ERROR_CHARS: usize = 2_000;

const RECORD_COLUMNS: &str = "id, alert_id, state, attempts, next_at, delivered, last_error, created_at, updated_at";

fn claim_sql(d: Dialect) -> &'static str {
    match d {
        // One writer connection: the statement is atomic.
        Dialect::Sqlite => {
            "UPDATE notify_outbox SET claim_id = $1, claimed_until = $2, updated_at = $3 WHERE id IN \
             (SELECT id FROM notify_outbox WHERE state = 'pending' AND next_at <= $3 \
              AND (claimed_until IS NULL OR claimed_until <= $3) ORDER BY id LIMIT $4) RETURNING id"
        }
        // Rows another node is claiming are skipped, not waited for; a row it has claimed no
        // longer matches once its claim commits (the condition is checked again on the new row).
        Dialect::Postgres => {
            "UPDATE notify_outbox SET claim_id = $1, claimed_until = $2, updated_at = $3 WHERE id IN \
             (SELECT id FROM notify_outbox WHERE state = 'pending' AND next_at <= $3 \
              AND (claimed_until IS NULL OR claimed_until <= $3) ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING id"
        }
    }
}

impl Store {
    /// Claims up to `limit` notifications that are due, for `lease` (after which another sender
    /// may claim them again), oldest first.
    pub async fn claim_notifications(&self, limit: u32, lease: Duration) -> Result<Vec<ClaimedNotification>> {
        let now = now_micros();
        let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let claim = crate::new_id();
        let limit = i64::from(limit.clamp(1, 1_000));
        let rows: Vec<ClaimedRow> = on_write!(self, pool, d => {
            let claimed: Vec<(i64,)> = sqlx::query_as(claim_sql(d))
                .bind(claim)
                .bind(until)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            if claimed.is_empty() {
                return Ok(Vec::new());
            }
            sqlx::query_as(
                "SELECT n.id, n.alert_id, n.created_at, n.attempts, n.delivered, o.owner_org, o.tlp, o.title \
                 FROM notify_outbox n JOIN objects o ON o.id = n.alert_id WHERE n.claim_id = $1 ORDER BY n.id",
            )
            .bind(claim)
            .fetch_all(pool)
            .await?
        });
        let ids: Vec<Uuid> = rows.iter().map(|r| r.alert_id).collect();
        let mut details = self.alert_details(&ids).await?;
        rows.into_iter()
            .map(|r| {
                Ok(ClaimedNotification {
                    delivered: parse_delivered(r.id, &r.delivered)?,
                    tlp: r.tlp.parse().map_err(|e: nigehban_policy::TlpError| StoreError::Corrupt(e.to_string()))?,
                    details: details.remove(&r.alert_id),
                    id: r.id,
                    claim,
                    alert_id: r.alert_id,
                    created_at: r.created_at,
                    attempts: r.attempts,
                    owner: r.owner_org,
                    title: r.title,
                })
            })
            .collect()
    }

    /// Records that a claimed notification reached `target`. `false`: the claim was lost.
    pub async fn notification_delivered(&self, id: i64, claim: Uuid, target: &str) -> Result<bool> {
        let now = now_micros();
        on_write!(self, pool, _d => {
            let mut tx = pool.begin().await?;
            let row: Option<(String,)> =
                sqlx::query_as("SELECT delivered FROM notify_outbox WHERE id = $1 AND claim_id = $2")
                    .bind(id)
                    .bind(claim)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((delivered,)) = row else { return Ok(false) };
            let mut delivered = parse_delivered(id, &delivered)?;
            if !delivered.iter().any(|t| t == target) {
                delivered.push(target.to_owned());
            }
            let text = serde_json::to_string(&delivered).map_err(|e| StoreError::Invalid(e.to_string()))?;
            sqlx::query("UPDATE notify_outbox SET delivered = $1, updated_at = $2 WHERE id = $3 AND claim_id = $4")
                .bind(text)
                .bind(now)
                .bind(id)
                .bind(claim)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Ends a claimed notification: sent, or skipped with the reason. `false`: the claim was lost.
    pub async fn finish_notification(&self, id: i64, claim: Uuid, how: Finished) -> Result<bool> {
        let now = now_micros();
        let (state, reason) = match how {
            Finished::Sent => (NotificationState::Sent, None),
            Finished::Skipped(why) => (NotificationState::Skipped, Some(truncate(&why))),
        };
        let done = on_write!(self, pool, _d => {
            sqlx::query(
                "UPDATE notify_outbox SET state = $1, last_error = coalesce($2, last_error), claim_id = NULL, \
                 claimed_until = NULL, updated_at = $3 WHERE id = $4 AND claim_id = $5",
            )
            .bind(state.as_str())
            .bind(reason)
            .bind(now)
            .bind(id)
            .bind(claim)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Records a failed attempt of a claimed notification: due again after the back-off of
    /// `retry`, or given up after its last attempt. `None`: the claim was lost.
    pub async fn fail_notification(
        &self,
        id: i64,
        claim: Uuid,
        error: &str,
        retry: &NotifyRetry,
    ) -> Result<Option<FailOutcome>> {
        let now = now_micros();
        let error = truncate(error);
        on_write!(self, pool, _d => {
            let mut tx = pool.begin().await?;
            let row: Option<(i64,)> = sqlx::query_as("SELECT attempts FROM notify_outbox WHERE id = $1 AND claim_id = $2")
                .bind(id)
                .bind(claim)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((attempts,)) = row else { return Ok(None) };
            let failures = attempts.saturating_add(1);
            let (state, next_at, outcome) = if failures >= i64::from(retry.max_attempts.max(1)) {
                (NotificationState::GaveUp, now, FailOutcome::GaveUp)
            } else {
                let wait = retry.delay(u32::try_from(failures).unwrap_or(u32::MAX));
                let at = now.saturating_add(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX));
                (NotificationState::Pending, at, FailOutcome::RetryAt(at))
            };
            sqlx::query(
                "UPDATE notify_outbox SET state = $1, attempts = $2, next_at = $3, last_error = $4, claim_id = NULL, \
                 claimed_until = NULL, updated_at = $5 WHERE id = $6 AND claim_id = $7",
            )
            .bind(state.as_str())
            .bind(failures)
            .bind(next_at)
            .bind(&error)
            .bind(now)
            .bind(id)
            .bind(claim)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(outcome))
        })
    }

    /// The notification of an alert, if it has one.
    pub async fn notification_of(&self, alert_id: Uuid) -> Result<Option<NotificationRecord>> {
        let row: Option<RecordRow> = on_read!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {RECORD_COLUMNS} FROM notify_outbox WHERE alert_id = $1"
            )))
            .bind(alert_id)
            .fetch_optional(pool)
            .await?
        });
        row.map(RecordRow::into_record).transpose()
    }

    /// Notifications in one state, oldest first (at most `limit`).
    pub async fn notifications(&self, state: NotificationState, limit: u32) -> Result<Vec<NotificationRecord>> {
        let rows: Vec<RecordRow> = on_read!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {RECORD_COLUMNS} FROM notify_outbox WHERE state = $1 ORDER BY id LIMIT $2"
            )))
            .bind(state.as_str())
            .bind(i64::from(limit.clamp(1, 10_000)))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(RecordRow::into_record).collect()
    }
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_the_longest() {
        let r = NotifyRetry {
            max_attempts: 10,
            first_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(3600),
        };
        let waits: Vec<u64> = (1..=8).map(|n| r.delay(n).as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(r.delay(u32::MAX), Duration::from_secs(3600), "no overflow");
    }

    #[test]
    fn long_errors_are_cut() {
        let long = "é".repeat(MAX_ERROR_CHARS + 10);
        let cut = truncate(&long);
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS + 1);
        assert_eq!(truncate("short"), "short");
    }
}
