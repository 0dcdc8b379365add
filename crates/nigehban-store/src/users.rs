//! User accounts. Passwords arrive already hashed (argon2id, by the server); the store never
//! sees a password.

use nigehban_policy::Role;
use serde::Serialize;
use uuid::Uuid;

use crate::audit::{AuditEntry, append_audit};
use crate::{Actor, Result, Store, StoreError, new_id, now_micros, on_read, on_write};

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: Uuid,
    /// The organisation it belongs to.
    pub org: Uuid,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub disabled: bool,
    /// Consecutive failed logins.
    pub failed_logins: i64,
    /// Locked out until (microseconds since the epoch).
    pub locked_until: Option<i64>,
    pub created_at: i64,
    pub last_login: Option<i64>,
    /// The argon2id hash (PHC string).
    #[serde(skip)]
    pub password_hash: String,
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub org: Uuid,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub password_hash: String,
}

/// A change to an account (`None` keeps the current value).
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub display_name: Option<String>,
    pub email: Option<Option<String>>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    org_id: Uuid,
    username: String,
    display_name: String,
    email: Option<String>,
    role: String,
    password_hash: String,
    disabled: bool,
    failed_logins: i64,
    locked_until: Option<i64>,
    created_at: i64,
    last_login: Option<i64>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<User> {
        Ok(User {
            id: r.id,
            org: r.org_id,
            username: r.username,
            display_name: r.display_name,
            email: r.email,
            role: r.role.parse().map_err(StoreError::Corrupt)?,
            disabled: r.disabled,
            failed_logins: r.failed_logins,
            locked_until: r.locked_until,
            created_at: r.created_at,
            last_login: r.last_login,
            password_hash: r.password_hash,
        })
    }
}

pub(crate) const USER_COLUMNS: &str = "id, org_id, username, display_name, email, role, password_hash, disabled, \
                                       failed_logins, locked_until, created_at, last_login";

fn valid_username(u: &str) -> bool {
    (2..=64).contains(&u.len()) && u.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
}

impl Store {
    /// One account.
    pub async fn user(&self, id: Uuid) -> Result<Option<User>> {
        let row: Option<UserRow> = on_read!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))).bind(id).fetch_optional(pool).await?
        });
        row.map(User::try_from).transpose()
    }

    /// One account by user name (for signing in: read from the writer, so a lockout just
    /// recorded is seen).
    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = on_write!(self, pool, _d => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1")))
                .bind(username)
                .fetch_optional(pool)
                .await?
        });
        row.map(User::try_from).transpose()
    }

    /// Accounts, optionally of one organisation, by user name.
    pub async fn users(&self, org: Option<Uuid>) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = on_read!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE ($1 IS NULL OR org_id = $1) ORDER BY username"
            )))
            .bind(org)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(User::try_from).collect()
    }

    /// Creates an account; the role must fit the organisation's kind.
    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<User> {
        if !valid_username(&new.username) {
            return Err(StoreError::Invalid(format!(
                "username {:?}: 2 to 64 characters among letters, digits and . - _ @",
                new.username
            )));
        }
        let org = self.org(new.org).await?.ok_or(StoreError::Invalid("organisation: no such organisation".into()))?;
        if !new.role.fits(org.kind) {
            return Err(StoreError::Invalid(format!("role {} does not fit {} ({})", new.role, org.name, org.kind)));
        }
        let id = new_id();
        let now = now_micros();
        let detail = serde_json::json!({"username": new.username, "org": new.org, "role": new.role.as_str()});
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO users (id, org_id, username, display_name, email, role, password_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(new.org)
            .bind(&new.username)
            .bind(&new.display_name)
            .bind(&new.email)
            .bind(new.role.as_str())
            .bind(&new.password_hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::unique(e, || format!("the username {:?} is taken", new.username)))?;
            append_audit!(tx, d, actor, AuditEntry::new("user.create", "user", id, detail));
            tx.commit().await?;
        });
        self.user(id).await?.ok_or(StoreError::NotFound("user"))
    }

    /// Changes an account. A new password hash clears the lockout.
    pub async fn update_user(&self, actor: &Actor, id: Uuid, update: UserUpdate) -> Result<User> {
        let mut user = self.user(id).await?.ok_or(StoreError::NotFound("user"))?;
        let mut changed = serde_json::Map::new();
        if let Some(v) = update.display_name {
            changed.insert("display_name".into(), v.clone().into());
            user.display_name = v;
        }
        if let Some(v) = update.email {
            changed.insert("email".into(), serde_json::json!(v));
            user.email = v;
        }
        if let Some(role) = update.role {
            let org = self.org(user.org).await?.ok_or(StoreError::NotFound("organisation"))?;
            if !role.fits(org.kind) {
                return Err(StoreError::Invalid(format!("role {role} does not fit {} ({})", org.name, org.kind)));
            }
            changed.insert("role".into(), role.as_str().into());
            user.role = role;
        }
        if let Some(v) = update.disabled {
            changed.insert("disabled".into(), v.into());
            user.disabled = v;
        }
        if let Some(h) = update.password_hash {
            changed.insert("password".into(), "changed".into());
            user.password_hash = h;
            user.failed_logins = 0;
            user.locked_until = None;
        }
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE users SET display_name = $1, email = $2, role = $3, disabled = $4, password_hash = $5, \
                 failed_logins = $6, locked_until = $7 WHERE id = $8",
            )
            .bind(&user.display_name)
            .bind(&user.email)
            .bind(user.role.as_str())
            .bind(user.disabled)
            .bind(&user.password_hash)
            .bind(user.failed_logins)
            .bind(user.locked_until)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if user.disabled {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
            }
            append_audit!(tx, d, actor, AuditEntry::new("user.update", "user", id, serde_json::Value::Object(changed)));
            tx.commit().await?;
        });
        // Sessions carry the account (role, disabled): a cached copy must not outlive the change.
        self.auth_cache.invalidate_user(id);
        Ok(user)
    }

    /// Records a failed sign-in; after `lock_after` consecutive failures the account is locked
    /// for `lock_micros`. Returns whether it is now locked.
    pub async fn record_login_failure(
        &self,
        actor: &Actor,
        id: Uuid,
        lock_after: i64,
        lock_micros: i64,
    ) -> Result<bool> {
        let now = now_micros();
        let locked = on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            let (failed,): (i64,) =
                sqlx::query_as("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            let locked = failed >= lock_after;
            if locked {
                sqlx::query("UPDATE users SET locked_until = $1, failed_logins = 0 WHERE id = $2")
                    .bind(now + lock_micros)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            let action = if locked { "user.locked" } else { "user.login_failed" };
            append_audit!(tx, d, actor, AuditEntry::new(action, "user", id, serde_json::json!({"failed_logins": failed})));
            tx.commit().await?;
            locked
        });
        self.auth_cache.invalidate_user(id);
        Ok(locked)
    }

    /// Records a successful sign-in (clears the failure count).
    pub async fn record_login_success(&self, actor: &Actor, id: Uuid) -> Result<()> {
        let now = now_micros();
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL, last_login = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            append_audit!(tx, d, actor, AuditEntry::new("user.login", "user", id, serde_json::json!({})));
            tx.commit().await?;
        });
        self.auth_cache.invalidate_user(id);
        Ok(())
    }
}
