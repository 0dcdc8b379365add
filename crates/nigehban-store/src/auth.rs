//! Server-side sessions and API tokens. Both are stored only as SHA-256 hashes of the secret
//! the client holds; the secret itself is shown once and never stored.

use nigehban_policy::{Role, Scope};
use serde::Serialize;
use uuid::Uuid;

use crate::audit::{AuditEntry, append_audit};
use crate::auth_cache::Cached;
use crate::{Actor, Result, Store, StoreError, User, new_id, now_micros, on_read, on_write};

/// A signed-in browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 (hex) of the cookie's secret.
    pub token_hash: String,
    pub user: Uuid,
    /// The CSRF token forms must carry.
    pub csrf_token: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// An API token: a machine acting for one organisation, with a role and scopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: Uuid,
    pub org: Uuid,
    pub created_by: Option<Uuid>,
    pub name: String,
    pub role: Role,
    pub scopes: Vec<Scope>,
    /// The first characters of the secret, to recognise it in lists.
    pub prefix: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

impl ApiToken {
    /// Whether it may be used at `now`.
    pub fn usable(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

/// A new API token.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub org: Uuid,
    pub created_by: Option<Uuid>,
    pub name: String,
    pub role: Role,
    pub scopes: Vec<Scope>,
    pub token_hash: String,
    pub prefix: String,
    pub expires_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    org_id: Uuid,
    created_by: Option<Uuid>,
    name: String,
    role: String,
    scopes: String,
    prefix: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<ApiToken> {
        Ok(ApiToken {
            id: r.id,
            org: r.org_id,
            created_by: r.created_by,
            name: r.name,
            role: r.role.parse().map_err(StoreError::Corrupt)?,
            scopes: serde_json::from_str(&r.scopes)
                .map_err(|e| StoreError::Corrupt(format!("scopes of token {}: {e}", r.id)))?,
            prefix: r.prefix,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
        })
    }
}

/// A token's "last used" time is written at most this often (microseconds).
const TOUCH_EVERY: i64 = 60_000_000;

const TOKEN_COLUMNS: &str =
    "id, org_id, created_by, name, role, scopes, prefix, created_at, expires_at, revoked_at, last_used_at";

impl Store {
    /// Opens a session (the sign-in itself is audited by [`Store::record_login_success`]).
    pub async fn create_session(&self, s: &Session, ip: Option<&str>) -> Result<()> {
        on_write!(self, pool, _d => {
            sqlx::query(
                "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at, ip) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&s.token_hash)
            .bind(s.user)
            .bind(&s.csrf_token)
            .bind(s.created_at)
            .bind(s.expires_at)
            .bind(ip)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The live session with this hash and its user (disabled users have none).
    /// Read through the in-process cache (see [`Store::set_auth_cache_ttl`]).
    pub async fn session(&self, token_hash: &str) -> Result<Option<(Session, User)>> {
        let now = now_micros();
        if let Some(Cached::Session(s, u)) = self.auth_cache.get(token_hash)
            && s.expires_at > now
            && !u.disabled
        {
            return Ok(Some((s, u)));
        }
        let ticket = self.auth_cache.ticket();
        let row: Option<(String, Uuid, String, i64, i64)> = on_read!(self, pool => {
            sqlx::query_as(
                "SELECT token_hash, user_id, csrf_token, created_at, expires_at FROM sessions \
                 WHERE token_hash = $1 AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        let Some((token_hash, user, csrf_token, created_at, expires_at)) = row else { return Ok(None) };
        let Some(user) = self.user(user).await? else { return Ok(None) };
        if user.disabled {
            return Ok(None);
        }
        let session = Session { token_hash, user: user.id, csrf_token, created_at, expires_at };
        self.auth_cache.put(ticket, &session.token_hash, Cached::Session(session.clone(), user.clone()));
        Ok(Some((session, user)))
    }

    /// Ends a session.
    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        on_write!(self, pool, _d => {
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(pool).await?;
        });
        self.auth_cache.invalidate_session(token_hash);
        Ok(())
    }

    /// Removes expired sessions; returns how many.
    pub async fn purge_sessions(&self) -> Result<u64> {
        let now = now_micros();
        let done = on_write!(self, pool, _d => {
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(now).execute(pool).await?.rows_affected()
        });
        Ok(done)
    }

    /// Issues an API token.
    pub async fn create_token(&self, actor: &Actor, new: NewToken) -> Result<ApiToken> {
        if new.name.trim().is_empty() {
            return Err(StoreError::Invalid("name: a token needs a name".into()));
        }
        let id = new_id();
        let now = now_micros();
        let scopes = serde_json::to_string(&new.scopes).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let detail = serde_json::json!({
            "name": new.name, "org": new.org, "role": new.role.as_str(), "scopes": new.scopes, "prefix": new.prefix,
            "expires_at": new.expires_at,
        });
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO api_tokens (id, org_id, created_by, name, role, scopes, token_hash, prefix, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(id)
            .bind(new.org)
            .bind(new.created_by)
            .bind(&new.name)
            .bind(new.role.as_str())
            .bind(&scopes)
            .bind(&new.token_hash)
            .bind(&new.prefix)
            .bind(now)
            .bind(new.expires_at)
            .execute(&mut *tx)
            .await?;
            append_audit!(tx, d, actor, AuditEntry::new("token.create", "token", id, detail));
            tx.commit().await?;
        });
        self.token(id).await?.ok_or(StoreError::NotFound("token"))
    }

    /// One token.
    pub async fn token(&self, id: Uuid) -> Result<Option<ApiToken>> {
        let row: Option<TokenRow> = on_read!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"))).bind(id).fetch_optional(pool).await?
        });
        row.map(ApiToken::try_from).transpose()
    }

    /// The token with this secret hash, if any (usable or not: the caller checks with
    /// [`ApiToken::usable`] and the clock). Read through the in-process cache (see
    /// [`Store::set_auth_cache_ttl`]).
    pub async fn token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        if let Some(Cached::Token(t)) = self.auth_cache.get(token_hash) {
            return Ok(Some(t));
        }
        let ticket = self.auth_cache.ticket();
        let row: Option<TokenRow> = on_read!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1")))
                .bind(token_hash)
                .fetch_optional(pool)
                .await?
        });
        let Some(token) = row.map(ApiToken::try_from).transpose()? else { return Ok(None) };
        self.auth_cache.put(ticket, token_hash, Cached::Token(token.clone()));
        Ok(Some(token))
    }

    /// Tokens, optionally of one organisation, newest first.
    pub async fn tokens(&self, org: Option<Uuid>) -> Result<Vec<ApiToken>> {
        let rows: Vec<TokenRow> = on_read!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE ($1 IS NULL OR org_id = $1) ORDER BY id DESC"
            )))
            .bind(org)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(ApiToken::try_from).collect()
    }

    /// Revokes a token (it stays listed, marked revoked).
    pub async fn revoke_token(&self, actor: &Actor, id: Uuid) -> Result<()> {
        let now = now_micros();
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done == 0 {
                return Err(StoreError::NotFound("token"));
            }
            append_audit!(tx, d, actor, AuditEntry::new("token.revoke", "token", id, serde_json::json!({})));
            tx.commit().await?;
        });
        self.auth_cache.invalidate_token(id);
        Ok(())
    }

    /// Notes that a token was used (at most once a minute per token; concurrent requests with a
    /// cached copy of the token write it once).
    pub async fn touch_token(&self, id: Uuid) -> Result<()> {
        let now = now_micros();
        if !self.auth_cache.claim_touch(id, now, TOUCH_EVERY) {
            return Ok(());
        }
        on_write!(self, pool, _d => {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)")
                .bind(now)
                .bind(id)
                .bind(now - TOUCH_EVERY)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
