//! Storage for the platform: the constituency, accounts, sessions and API tokens, marked
//! objects with their recipients and shares, and the hash-chained audit log.
//!
//! One interface, [`Store`], with two real back ends: SQLite (embedded default: a file in the
//! data directory, WAL, one writer connection and a pool of readers) and PostgreSQL
//! (scale-out). Each has its own migrations (`migrations/sqlite`, `migrations/postgres`),
//! applied when the store opens. The SQL is shared where the two dialects agree (`$1`
//! placeholders work in both) and split where they do not.
//!
//! Every change takes an [`Actor`] and appends to the audit log in the same transaction, so a
//! change without its audit entry cannot be committed.
//!
//! **Invariant:** this is the only crate that knows SQL. **Invariant:** lists of marked objects
//! are filtered in the database by the policy's [`nigehban_policy::ReadScope`] and every row is
//! re-checked with [`nigehban_policy::can`] before it leaves the store.

mod audit;
mod auth;
mod auth_cache;
mod monitoring;
mod notify;
mod objects;
mod orgs;
mod retrohunt;
mod scaleout;
#[doc(hidden)]
pub mod testing;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use uuid::Uuid;

pub use audit::{AuditEntry, AuditQuery, AuditRecord, VerifyReport, chain_hash};
pub use auth::{ApiToken, NewToken, Session};
pub use auth_cache::DEFAULT_AUTH_CACHE_TTL;
pub use monitoring::{
    Alert, AlertDetails, AlertHit, AlertStatus, CursorUpdate, EventPage, EventQuery, Evidence, MAX_EVIDENCE, NewEvent,
    StoredEvent, TIME_SPAN_MICROS,
};
pub use notify::{ClaimedNotification, FailOutcome, Finished, NotificationRecord, NotificationState, NotifyRetry};
pub use objects::{Body, NewObject, Object, ObjectFilter, ObjectUpdate};
pub use orgs::{NewOrg, Org, OrgProfile, OrgUpdate};
pub use retrohunt::{
    NewRetroHunt, RetroHunt, RetroHuntProgress, RetroHuntRead, RetroHuntRelation, RetroHuntStatus, retrohunt_cursor,
};
pub use scaleout::{CERT_CURSOR, CERT_LANE, Fence, Lease, SLOTS, slot_cursor, slot_of};
pub use users::{NewUser, User, UserUpdate};

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("the lease on detection slot {0} was taken by another node")]
    LeaseLost(i16),
}

impl StoreError {
    /// Turns a unique-constraint violation into a [`StoreError::Conflict`] with the message.
    fn unique(e: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(message()),
            _ => StoreError::from(e),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    /// Text PostgreSQL cannot hold (a NUL character: SQLSTATE 22021, 22P05) is the caller's
    /// mistake, not a database failure.
    fn from(e: sqlx::Error) -> StoreError {
        if let sqlx::Error::Database(d) = &e
            && matches!(d.code().as_deref(), Some("22021" | "22P05"))
        {
            return StoreError::Invalid("text must not contain NUL characters (U+0000)".into());
        }
        StoreError::Database(e)
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who makes a change, for the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// The user, if a person acted.
    pub user: Option<Uuid>,
    /// The API token, if a machine acted.
    pub token: Option<Uuid>,
    /// The organisation acted for.
    pub org: Option<Uuid>,
    /// The client address.
    pub ip: Option<String>,
}

impl Actor {
    /// The platform itself (first start, the demo's seeding, migrations).
    pub fn system() -> Actor {
        Actor::default()
    }
}

/// A page of results with the cursor of the next page.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Pass as `before` to get the next page; `None` on the last page.
    pub next: Option<Uuid>,
}

#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite { read: SqlitePool, write: SqlitePool },
    Postgres(PgPool),
}

/// The few places where the two SQL dialects differ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Reads the audit chain's head, locking it against concurrent appends (SQLite serializes
    /// writers on its single writer connection).
    pub(crate) fn head_sql(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
            Dialect::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
        }
    }
}

/// Runs `$body` with `$pool` bound to a pool for reading (and `$d` to the dialect).
macro_rules! on_read {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite { read: $pool, .. } => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
    ($store:expr, $pool:ident, $d:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite { read: $pool, .. } => {
                let $d = $crate::Dialect::Sqlite;
                $body
            }
            $crate::Backend::Postgres($pool) => {
                let $d = $crate::Dialect::Postgres;
                $body
            }
        }
    };
}

/// Runs `$body` with `$pool` bound to the pool for writing and `$d` to the dialect.
macro_rules! on_write {
    ($store:expr, $pool:ident, $d:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite { write: $pool, .. } => {
                #[allow(unused_variables)]
                let $d = $crate::Dialect::Sqlite;
                $body
            }
            $crate::Backend::Postgres($pool) => {
                #[allow(unused_variables)]
                let $d = $crate::Dialect::Postgres;
                $body
            }
        }
    };
}
pub(crate) use {on_read, on_write};

/// The platform's storage (cheap to clone: the pools are shared).
#[derive(Clone)]
pub struct Store {
    pub(crate) backend: Backend,
    /// Recently read API tokens and sessions (shared by the clones).
    pub(crate) auth_cache: Arc<auth_cache::AuthCache>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            Backend::Sqlite { .. } => "Store(SQLite)",
            Backend::Postgres(_) => "Store(PostgreSQL)",
        })
    }
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_micros() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// A timestamp from stored microseconds.
pub fn timestamp(micros: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond(micros).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// The writer connection's settings on top of the shared ones (see BENCHMARKS.md, "Live
/// monitoring"): a page cache that holds a batch of events and the index pages it touches (the
/// default 2 MiB spilled dirty pages to the WAL in the middle of every large transaction and read
/// index pages back from the OS), statement journals in memory (a multi-row insert keeps one; on
/// disk it was a temporary file written for every batch), and checkpoints every 4,000 pages
/// instead of 1,000 (the same index pages are copied back to the database less often).
fn writer_options(shared: &SqliteConnectOptions) -> SqliteConnectOptions {
    shared
        .clone()
        .pragma("cache_size", format!("-{}", WRITER_CACHE_KIB))
        .pragma("temp_store", "memory")
        .pragma("wal_autocheckpoint", "4000")
}

/// The writer connection's page cache, in KiB.
const WRITER_CACHE_KIB: u32 = 32 * 1024;

impl Store {
    /// Opens (creating if needed) the SQLite database `nigehban.db` in `dir` and migrates it.
    pub async fn open_sqlite(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Invalid(format!("cannot create data directory {}: {e}", dir.display())))?;
        let options = SqliteConnectOptions::new()
            .filename(dir.join("nigehban.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new().max_connections(1).connect_with(writer_options(&options)).await?;
        sqlx::migrate!("migrations/sqlite").run(&write).await?;
        let readers = std::thread::available_parallelism().map_or(4, |n| n.get() * 2).max(4) as u32;
        // A page (at most 501 rows) fits the row channel, so the connection's thread never waits
        // for the request to take rows before it can finish the query.
        let read = SqlitePoolOptions::new()
            .max_connections(readers)
            .connect_with(options.read_only(true).row_buffer_size(512))
            .await?;
        let (lean,): (bool,) =
            sqlx::query_as("SELECT sqlite_compileoption_used('DEFAULT_MEMSTATUS=0')").fetch_one(&read).await?;
        if !lean {
            tracing::warn!(
                message = "This build's SQLite keeps memory statistics (SQLITE_DEFAULT_MEMSTATUS=0 was not set when \
                           it was built; see .cargo/config.toml): reads under load contend on its global lock."
            );
        }
        Ok(Store { backend: Backend::Sqlite { read, write }, auth_cache: Arc::default() })
    }

    /// Connects to PostgreSQL (`postgres://…`) and migrates the database.
    pub async fn open_postgres(url: &str) -> Result<Store> {
        // Generic plans: every statement is prepared once per connection (sqlx caches them), and
        // PostgreSQL otherwise re-plans the visibility subqueries of a list on each execution
        // (about a quarter of its time under load, BENCHMARKS.md "Platform API").
        let options = PgConnectOptions::from_str(url)?.options([("plan_cache_mode", "force_generic_plan")]);
        // A few connections per core: more only make PostgreSQL's backends take turns on the
        // same cores (measured: 8 connections on 2 cores beat 32).
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
        let pool = PgPoolOptions::new().max_connections((cores * 4).clamp(4, 32)).connect_with(options).await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Store { backend: Backend::Postgres(pool), auth_cache: Arc::default() })
    }

    /// How long API tokens and sessions read from the database are trusted without reading them
    /// again ([`DEFAULT_AUTH_CACHE_TTL`] unless set; zero disables the cache). Changes made
    /// through this store (any clone) take effect at once regardless; changes made by other
    /// processes sharing the database (other nodes) within the TTL. Expiry is always checked
    /// against the clock.
    pub fn set_auth_cache_ttl(&self, ttl: Duration) {
        self.auth_cache.set_ttl(ttl);
    }

    /// Which back end this is: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Whether the database answers (for `/healthz`).
    pub async fn ping(&self) -> Result<()> {
        on_read!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Closes the pools, waiting for running queries.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Backend::Postgres(p) => p.close().await,
        }
    }
}

/// A fresh time-ordered identifier.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workspace builds SQLite without its memory statistics (`.cargo/config.toml`): with
    /// them, every allocation inside SQLite takes a process-wide lock that reads under load
    /// contend for.
    #[tokio::test]
    async fn sqlite_is_built_without_memory_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path()).await.unwrap();
        let Backend::Sqlite { read, .. } = &store.backend else { unreachable!() };
        let (lean,): (bool,) =
            sqlx::query_as("SELECT sqlite_compileoption_used('DEFAULT_MEMSTATUS=0')").fetch_one(read).await.unwrap();
        assert!(lean, "LIBSQLITE3_FLAGS from .cargo/config.toml did not reach the SQLite build");
        store.close().await;
    }

    /// The time-span expression the queries write is the one `events_org_span` indexes (the
    /// planner matches it as written): a window is a seek in the index, in its order.
    #[tokio::test]
    async fn the_span_expression_is_the_indexed_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path()).await.unwrap();
        let Backend::Sqlite { read, .. } = &store.backend else { unreachable!() };
        assert_eq!(monitoring::SPAN_OF_TS, format!("e.ts / {}", monitoring::TIME_SPAN_MICROS));
        let span = monitoring::SPAN_OF_TS;
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN SELECT id FROM events e WHERE e.org_id = x'00' AND {span} >= 1 AND {span} <= 9 \
             AND e.ts >= 1 AND e.ts < 99 ORDER BY {span}, e.id"
        )))
        .fetch_all(read)
        .await
        .unwrap();
        let plan: Vec<&str> = plan.iter().map(|r| r.3.as_str()).collect();
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert!(plan[0].contains("USING INDEX events_org_span (org_id=? AND <expr>>? AND <expr><?)"), "{plan:?}");
        store.close().await;
    }
}
