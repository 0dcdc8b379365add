//! Helpers for tests of this crate and the crates above it: fresh PostgreSQL databases and raw
//! SQL for tests that tamper with stored data on purpose (the audit-log tests).

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::{Backend, Result, Store, StoreError};

/// The PostgreSQL server tests use, from `NIGEHBAN_TEST_PG` (a URL such as
/// `postgres://postgres@127.0.0.1:5432/postgres`); `None` when unset.
pub fn postgres_url() -> Option<String> {
    std::env::var("NIGEHBAN_TEST_PG").ok().filter(|s| !s.is_empty())
}

/// A database created for one test run and dropped by [`FreshDatabase::drop_now`].
#[derive(Debug)]
pub struct FreshDatabase {
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl FreshDatabase {
    /// Creates `nigehban_test_<random>` on the server of `admin_url`.
    pub async fn create(admin_url: &str) -> Result<FreshDatabase> {
        let name = format!("nigehban_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
        conn.close().await?;
        let url = match admin_url.rfind('/') {
            Some(i) if admin_url[..i].contains("//") && !admin_url[..i].ends_with('/') => {
                let (base, rest) = admin_url.split_at(i);
                let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
                format!("{base}/{name}{query}")
            }
            _ => return Err(StoreError::Invalid(format!("cannot derive a database URL from {admin_url}"))),
        };
        Ok(FreshDatabase { admin_url: admin_url.to_owned(), name, url })
    }

    /// Drops the database (after the store using it is closed).
    pub async fn drop_now(self) -> Result<()> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }
}

/// Runs SQL directly, bypassing the store's rules (and its audit log). Only for tests that
/// tamper with data on purpose.
pub async fn execute_unchecked(store: &Store, sql: &str) -> Result<u64> {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    let n = match &store.backend {
        Backend::Sqlite { write, .. } => sqlx::query(sql).execute(write).await?.rows_affected(),
        Backend::Postgres(p) => sqlx::query(sql).execute(p).await?.rows_affected(),
    };
    // The change may concern tokens, sessions or accounts the store cannot tell.
    store.auth_cache.clear();
    Ok(n)
}

/// Rewrites the markings every object keeps on its row from the recipients, assignees and
/// shares tables, after [`execute_unchecked`] wrote those tables directly (the API benchmark's
/// seeding). The store's own changes keep them in step themselves.
pub async fn refresh_all_markings(store: &Store) -> Result<u64> {
    let n = match &store.backend {
        Backend::Sqlite { write, .. } => sqlx::query(crate::objects::refresh_all_markings(crate::Dialect::Sqlite))
            .execute(write)
            .await?
            .rows_affected(),
        Backend::Postgres(p) => sqlx::query(crate::objects::refresh_all_markings(crate::Dialect::Postgres))
            .execute(p)
            .await?
            .rows_affected(),
    };
    Ok(n)
}
