//! Authentication: argon2id passwords, server-side sessions in cookies, CSRF tokens, bearer API
//! tokens, and the [`Auth`] extractor every protected route takes.

use std::net::SocketAddr;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nigehban_policy::Principal;
use nigehban_store::{Actor, ApiToken, Session, User};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{ApiError, AppState};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "nigehban_session";
/// Prefix of API token secrets.
pub const TOKEN_PREFIX: &str = "ngb_";

/// A random secret: 32 bytes, base64url.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 (hex) of a secret: what the store keeps of sessions and tokens.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Hashes a password with argon2id (CPU-heavy: call it off the async threads).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|_| ApiError::internal())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| {
        tracing::error!(message = "Password hashing failed.", error = %e);
        ApiError::internal()
    })
}

/// Checks a password against a stored argon2 hash (CPU-heavy).
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash no password matches, checked when the user does not exist so that the answer takes
/// as long as for a real account.
pub(crate) fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&new_secret()).unwrap_or_default())
}

/// Password rules: at least 12 characters.
pub fn check_password_strength(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 12 {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
            "passwords have at least 12 characters",
        ));
    }
    Ok(())
}

/// Who is calling, authenticated.
#[derive(Debug, Clone)]
pub struct Auth {
    /// For the policy.
    pub principal: Principal,
    /// The signed-in user (sessions).
    pub user: Option<User>,
    /// The API token (machines).
    pub token: Option<ApiToken>,
    /// The session (browser), with its CSRF token.
    pub session: Option<Session>,
    /// The client address.
    pub ip: Option<String>,
}

impl Auth {
    /// The audit log's view of the caller.
    pub fn actor(&self) -> Actor {
        Actor {
            user: self.user.as_ref().map(|u| u.id),
            token: self.token.as_ref().map(|t| t.id),
            org: Some(self.principal.org),
            ip: self.ip.clone(),
        }
    }

    /// Checks a CSRF token from a form against the session's.
    pub fn check_csrf(&self, presented: &str) -> Result<(), ApiError> {
        match &self.session {
            Some(s) if constant_time_eq(s.csrf_token.as_bytes(), presented.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::forbidden("missing or wrong CSRF token; reload the page and try again")),
            None => Ok(()),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The client address of a request.
pub(crate) fn client_ip(parts: &Parts) -> Option<String> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string())
}

/// The client address, for handlers that need it without authentication.
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// The session cookie's value, if any.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (name, value) = c.trim().split_once('=')?;
        (name == SESSION_COOKIE && !value.is_empty()).then(|| value.to_owned())
    })
}

/// The `Set-Cookie` value for a session (or to clear it, with an empty secret).
pub(crate) fn session_set_cookie(secret: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

/// Authenticates a request: a bearer API token, or a session cookie. `None` when neither is
/// presented or valid.
pub(crate) async fn authenticate(state: &AppState, parts: &Parts) -> Result<Option<Auth>, ApiError> {
    let ip = client_ip(parts);
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| ApiError::unauthenticated())?;
        let Some(secret) = value.strip_prefix("Bearer ").map(str::trim) else {
            return Err(ApiError::unauthenticated());
        };
        let Some(token) = state.store.token_by_hash(&secret_hash(secret)).await? else {
            return Err(ApiError::unauthenticated());
        };
        if !token.usable(jiff::Timestamp::now().as_microsecond()) {
            return Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "token_expired",
                "this API token is revoked or expired",
            ));
        }
        // The store notes use at most once a minute; skip the write when the row says it is
        // recent (a write per request serializes on SQLite's single writer).
        let now = jiff::Timestamp::now().as_microsecond();
        if token.last_used_at.is_none_or(|t| now - t >= 60_000_000) {
            let _ = state.store.touch_token(token.id).await;
        }
        let principal = Principal { user: None, org: token.org, role: token.role, scopes: Some(token.scopes.clone()) };
        return Ok(Some(Auth { principal, user: None, token: Some(token), session: None, ip }));
    }
    let Some(secret) = session_cookie(&parts.headers) else { return Ok(None) };
    let Some((session, user)) = state.store.session(&secret_hash(&secret)).await? else { return Ok(None) };
    let principal = Principal { user: Some(user.id), org: user.org, role: user.role, scopes: None };
    Ok(Some(Auth { principal, user: Some(user), token: None, session: Some(session), ip }))
}

fn unsafe_method(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<Arc<AppState>> for Auth {
    type Rejection = ApiError;

    /// API routes: 401 without credentials; a browser session changing something must send
    /// its CSRF token in `X-CSRF-Token` (forms check theirs in the handler).
    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let auth = authenticate(state, parts).await?.ok_or_else(ApiError::unauthenticated)?;
        if parts.uri.path().starts_with("/api/")
            && unsafe_method(&parts.method)
            && let Some(session) = &auth.session
        {
            let presented = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
            if !constant_time_eq(session.csrf_token.as_bytes(), presented.as_bytes()) {
                return Err(ApiError::forbidden(
                    "a signed-in browser must send its CSRF token in the X-CSRF-Token header",
                ));
            }
        }
        Ok(auth)
    }
}

/// A sign-in: checks the limiter, the lockout and the password; on success opens a session and
/// returns its secret.
pub(crate) async fn sign_in(
    state: &AppState,
    username: &str,
    password: &str,
    ip: Option<String>,
) -> Result<(String, Session, User), ApiError> {
    use std::sync::atomic::Ordering;
    let m = &state.metrics;
    let key = ip.clone().unwrap_or_default();
    if !state.limiter.allow(&key, state.config.login_attempts_per_minute) {
        m.logins_throttled.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many sign-in attempts from this address; wait a minute",
        ));
    }
    let wrong =
        || ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "bad_credentials", "wrong user name or password");
    let user = state.store.user_by_username(username).await?;
    let stored = user.as_ref().map_or_else(|| decoy_hash().to_owned(), |u| u.password_hash.clone());
    let pw = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &stored)).await.unwrap_or(false);
    let Some(user) = user else {
        m.logins_failed.fetch_add(1, Ordering::Relaxed);
        return Err(wrong());
    };
    let actor = Actor { user: Some(user.id), token: None, org: Some(user.org), ip: ip.clone() };
    let now = jiff::Timestamp::now().as_microsecond();
    if user.locked_until.is_some_and(|t| t > now) {
        m.logins_failed.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "locked",
            "this account is locked after repeated failed sign-ins; try again later or ask an administrator",
        ));
    }
    if !ok || user.disabled {
        m.logins_failed.fetch_add(1, Ordering::Relaxed);
        if !user.disabled {
            state
                .store
                .record_login_failure(
                    &actor,
                    user.id,
                    state.config.lockout_after,
                    state.config.lockout_for.as_micros() as i64,
                )
                .await?;
        }
        return Err(wrong());
    }
    state.store.record_login_success(&actor, user.id).await?;
    m.logins_ok.fetch_add(1, Ordering::Relaxed);
    let secret = new_secret();
    let session = Session {
        token_hash: secret_hash(&secret),
        user: user.id,
        csrf_token: new_secret(),
        created_at: now,
        expires_at: now + state.config.session_ttl.as_micros() as i64,
    };
    state.store.create_session(&session, ip.as_deref()).await?;
    Ok((secret, session, user))
}
