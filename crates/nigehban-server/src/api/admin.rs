//! Sign-in, the caller, the constituency, accounts, API tokens and the audit log.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use nigehban_policy::admin::{
    audit_scope, can_create_org, can_edit_org, can_manage_user, user_directory, visible_orgs,
};
use nigehban_policy::{OrgKind, Role, Scope, Verb};
use nigehban_store::{AuditQuery, NewOrg, NewToken, NewUser, Org, OrgProfile, OrgUpdate, User, UserUpdate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{JsonBody, PathId, QueryParams, rfc3339};
use crate::auth::{
    Auth, ClientIp, TOKEN_PREFIX, check_password_strength, hash_password, new_secret, secret_hash, session_cookie,
    session_set_cookie, sign_in,
};
use crate::{ApiError, AppState};

/// Sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// A signed-in session: the cookie is set; send `csrf_token` as `X-CSRF-Token` with changes.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub user: UserOut,
    pub csrf_token: String,
}

/// An account.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    pub id: Uuid,
    pub org: Uuid,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: String,
    pub disabled: bool,
    pub locked: bool,
    pub last_login: Option<String>,
}

pub(crate) fn user_out(u: &User) -> UserOut {
    let now = jiff::Timestamp::now().as_microsecond();
    UserOut {
        id: u.id,
        org: u.org,
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        email: u.email.clone(),
        role: u.role.as_str().to_owned(),
        disabled: u.disabled,
        locked: u.locked_until.is_some_and(|t| t > now),
        last_login: u.last_login.map(rfc3339),
    }
}

pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let (secret, session, user) = sign_in(&state, &req.username, &req.password, ip).await?;
    let cookie = session_set_cookie(&secret, state.config.session_ttl.as_secs(), state.config.secure_cookies);
    Ok((
        [(header::SET_COOKIE, cookie)],
        axum::Json(LoginResponse { user: user_out(&user), csrf_token: session.csrf_token }),
    )
        .into_response())
}

pub(crate) async fn logout(State(state): State<Arc<AppState>>, auth: Auth, headers: axum::http::HeaderMap) -> Response {
    if let Some(secret) = session_cookie(&headers) {
        let _ = state.store.delete_session(&secret_hash(&secret)).await;
    }
    let _ = state
        .store
        .audit(
            &auth.actor(),
            nigehban_store::AuditEntry::new("user.logout", "user", auth.principal.org, serde_json::json!({})),
        )
        .await;
    ([(header::SET_COOKIE, session_set_cookie("", 0, state.config.secure_cookies))], StatusCode::NO_CONTENT)
        .into_response()
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeOut {
    pub user: Option<UserOut>,
    /// For API tokens: the token's id, name and scopes.
    #[schema(value_type = Option<Object>)]
    pub token: Option<serde_json::Value>,
    pub org: OrgOut,
    pub role: String,
}

pub(crate) async fn me(State(state): State<Arc<AppState>>, auth: Auth) -> Result<axum::Json<MeOut>, ApiError> {
    let org = state.store.org(auth.principal.org).await?.ok_or_else(ApiError::internal)?;
    Ok(axum::Json(MeOut {
        user: auth.user.as_ref().map(user_out),
        token: auth.token.as_ref().map(|t| serde_json::json!({"id": t.id, "name": t.name, "scopes": t.scopes})),
        org: org_out(org),
        role: auth.principal.role.as_str().to_owned(),
    }))
}

/// A party of the constituency.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgOut {
    pub id: Uuid,
    /// `national`, `provincial_cert`, `sectoral_cert`, `organisation` or `audit_firm`.
    pub kind: String,
    pub name: String,
    pub short_name: String,
    pub sector: Option<String>,
    pub province: Option<String>,
    pub parents: Vec<Uuid>,
    #[schema(value_type = Object)]
    pub profile: OrgProfile,
    pub security_lead: Option<Uuid>,
}

pub(crate) fn org_out(o: Org) -> OrgOut {
    OrgOut {
        id: o.id,
        kind: o.kind.as_str().to_owned(),
        name: o.name,
        short_name: o.short_name,
        sector: o.sector,
        province: o.province,
        parents: o.parents,
        profile: o.profile,
        security_lead: o.security_lead,
    }
}

/// A list of organisations.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgList {
    pub items: Vec<OrgOut>,
}

pub(crate) async fn list_orgs(State(state): State<Arc<AppState>>, auth: Auth) -> Result<axum::Json<OrgList>, ApiError> {
    let tree = state.tree().await?;
    let visible = visible_orgs(&auth.principal, &tree);
    let items = state.store.orgs().await?.into_iter().filter(|o| visible.contains(&o.id)).map(org_out).collect();
    Ok(axum::Json(OrgList { items }))
}

pub(crate) async fn get_org(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    PathId(id): PathId,
) -> Result<axum::Json<OrgOut>, ApiError> {
    let tree = state.tree().await?;
    if !visible_orgs(&auth.principal, &tree).contains(&id) {
        return Err(ApiError::not_found("organisation"));
    }
    let org = state.store.org(id).await?.ok_or_else(|| ApiError::not_found("organisation"))?;
    Ok(axum::Json(org_out(org)))
}

/// A new organisation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    pub kind: String,
    pub name: String,
    pub short_name: String,
    pub sector: Option<String>,
    pub province: Option<String>,
    #[serde(default)]
    pub parents: Vec<Uuid>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub profile: OrgProfile,
}

pub(crate) async fn create_org(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    JsonBody(req): JsonBody<CreateOrg>,
) -> Result<Response, ApiError> {
    if !can_create_org(&auth.principal) {
        return Err(ApiError::forbidden("only a platform administrator adds organisations"));
    }
    let kind: OrgKind = req.kind.parse().map_err(|e: String| ApiError::bad_request(format!("kind: {e}")))?;
    let org = state
        .store
        .create_org(
            &auth.actor(),
            NewOrg {
                kind,
                name: req.name,
                short_name: req.short_name,
                sector: req.sector,
                province: req.province,
                parents: req.parents,
                profile: req.profile,
            },
        )
        .await?;
    state.invalidate_tree();
    Ok((StatusCode::CREATED, axum::Json(org_out(org))).into_response())
}

/// A change to an organisation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    pub name: Option<String>,
    pub sector: Option<String>,
    pub province: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub profile: Option<OrgProfile>,
    pub security_lead: Option<Uuid>,
}

pub(crate) async fn update_org(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    PathId(id): PathId,
    JsonBody(req): JsonBody<UpdateOrg>,
) -> Result<axum::Json<OrgOut>, ApiError> {
    let tree = state.tree().await?;
    if !visible_orgs(&auth.principal, &tree).contains(&id) {
        return Err(ApiError::not_found("organisation"));
    }
    if !can_edit_org(&auth.principal, &tree, id) {
        return Err(ApiError::forbidden("you cannot edit this organisation"));
    }
    let update = OrgUpdate {
        name: req.name,
        sector: req.sector.map(Some),
        province: req.province.map(Some),
        profile: req.profile,
        security_lead: req.security_lead.map(Some),
    };
    let org = state.store.update_org(&auth.actor(), id, update).await?;
    state.invalidate_tree();
    Ok(axum::Json(org_out(org)))
}

/// A list of accounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<UserOut>,
}

/// Account list filter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UserParams {
    /// Only this organisation.
    pub org: Option<Uuid>,
}

pub(crate) async fn list_users(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    QueryParams(p): QueryParams<UserParams>,
) -> Result<axum::Json<UserList>, ApiError> {
    if auth.token.is_some() {
        return Err(ApiError::forbidden("API tokens do not manage accounts"));
    }
    let tree = state.tree().await?;
    let dir = user_directory(&auth.principal, &tree);
    let users = state.store.users(p.org).await?;
    let items = users.iter().filter(|u| dir.as_ref().is_none_or(|d| d.contains(&u.org))).map(user_out).collect();
    Ok(axum::Json(UserList { items }))
}

pub(crate) async fn get_user(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    PathId(id): PathId,
) -> Result<axum::Json<UserOut>, ApiError> {
    let tree = state.tree().await?;
    let dir = user_directory(&auth.principal, &tree);
    let u = state
        .store
        .user(id)
        .await?
        .filter(|u| {
            auth.token.is_none()
                && (dir.as_ref().is_none_or(|d| d.contains(&u.org)) || Some(u.id) == auth.principal.user)
        })
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(axum::Json(user_out(&u)))
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub org: Uuid,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: String,
    /// At least 12 characters.
    pub password: String,
}

fn parse_role(s: &str) -> Result<Role, ApiError> {
    s.parse().map_err(|e: String| ApiError::bad_request(format!("role: {e}")))
}

pub(crate) async fn create_user(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    JsonBody(req): JsonBody<CreateUser>,
) -> Result<Response, ApiError> {
    let role = parse_role(&req.role)?;
    let tree = state.tree().await?;
    if !can_manage_user(&auth.principal, &tree, req.org, role) {
        return Err(ApiError::forbidden("you cannot create this account"));
    }
    check_password_strength(&req.password)?;
    let pw = req.password;
    let hash = tokio::task::spawn_blocking(move || hash_password(&pw)).await.map_err(|_| ApiError::internal())??;
    let user = state
        .store
        .create_user(
            &auth.actor(),
            NewUser {
                org: req.org,
                username: req.username,
                display_name: req.display_name,
                email: req.email,
                role,
                password_hash: hash,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(user_out(&user))).into_response())
}

/// A change to an account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub role: Option<String>,
    pub disabled: Option<bool>,
    /// A new password (at least 12 characters); also unlocks the account.
    pub password: Option<String>,
}

pub(crate) async fn update_user(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    PathId(id): PathId,
    JsonBody(req): JsonBody<UpdateUser>,
) -> Result<axum::Json<UserOut>, ApiError> {
    let tree = state.tree().await?;
    let target = state.store.user(id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    let role = req.role.as_deref().map(parse_role).transpose()?;
    let own_password_only =
        Some(id) == auth.principal.user && auth.token.is_none() && req.role.is_none() && req.disabled.is_none();
    let manages = can_manage_user(&auth.principal, &tree, target.org, target.role)
        && role.is_none_or(|r| can_manage_user(&auth.principal, &tree, target.org, r));
    if !manages && !own_password_only {
        let dir = user_directory(&auth.principal, &tree);
        if dir.is_some_and(|d| !d.contains(&target.org)) {
            return Err(ApiError::not_found("user"));
        }
        return Err(ApiError::forbidden("you cannot change this account"));
    }
    let password_hash = match req.password {
        Some(pw) => {
            check_password_strength(&pw)?;
            Some(tokio::task::spawn_blocking(move || hash_password(&pw)).await.map_err(|_| ApiError::internal())??)
        }
        None => None,
    };
    let update = UserUpdate {
        display_name: req.display_name,
        email: req.email.map(Some),
        role,
        disabled: req.disabled,
        password_hash,
    };
    let u = state.store.update_user(&auth.actor(), id, update).await?;
    Ok(axum::Json(user_out(&u)))
}

/// An API token (its secret is shown only when it is created).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOut {
    pub id: Uuid,
    pub org: Uuid,
    pub name: String,
    pub role: String,
    pub scopes: Vec<String>,
    pub prefix: String,
    pub created_by: Option<Uuid>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked: bool,
    pub last_used_at: Option<String>,
    /// Only in the answer to its creation: the secret to send as `Authorization: Bearer …`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn token_out(t: nigehban_store::ApiToken, secret: Option<String>) -> TokenOut {
    TokenOut {
        id: t.id,
        org: t.org,
        name: t.name,
        role: t.role.as_str().to_owned(),
        scopes: t.scopes.iter().map(ToString::to_string).collect(),
        prefix: t.prefix,
        created_by: t.created_by,
        created_at: rfc3339(t.created_at),
        expires_at: t.expires_at.map(rfc3339),
        revoked: t.revoked_at.is_some(),
        last_used_at: t.last_used_at.map(rfc3339),
        secret,
    }
}

/// A list of tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub items: Vec<TokenOut>,
}

fn manages_tokens_of(auth: &Auth, org: Uuid) -> bool {
    match auth.principal.role {
        Role::PlatformAdmin => true,
        Role::CertManager | Role::OrgSecurityLead => org == auth.principal.org,
        _ => false,
    }
}

pub(crate) async fn list_tokens(
    State(state): State<Arc<AppState>>,
    auth: Auth,
) -> Result<axum::Json<TokenList>, ApiError> {
    let Some(user) = &auth.user else { return Err(ApiError::forbidden("API tokens do not manage tokens")) };
    let items = state
        .store
        .tokens(None)
        .await?
        .into_iter()
        .filter(|t| manages_tokens_of(&auth, t.org) || t.created_by == Some(user.id))
        .map(|t| token_out(t, None))
        .collect();
    Ok(axum::Json(TokenList { items }))
}

/// A new token for the caller's organisation, with the caller's role narrowed by scopes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// Such as `events:write` (a log shipper) or `indicators:read`; `*` for every kind.
    pub scopes: Vec<String>,
    /// Days until it expires (default 365; at most 3650).
    pub expires_in_days: Option<u32>,
}

pub(crate) async fn create_token(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    JsonBody(req): JsonBody<CreateToken>,
) -> Result<Response, ApiError> {
    let Some(user) = &auth.user else { return Err(ApiError::forbidden("API tokens cannot create tokens")) };
    if req.scopes.is_empty() {
        return Err(ApiError::bad_request("scopes: at least one (e.g. events:write)"));
    }
    let scopes: Vec<Scope> = req
        .scopes
        .iter()
        .map(|s| s.parse().map_err(|e: String| ApiError::bad_request(format!("scopes: {e}"))))
        .collect::<Result<_, _>>()?;
    if scopes.iter().any(|s| s.verb == Verb::Share) && user.role != Role::CertManager {
        return Err(ApiError::forbidden("scopes: only a CERT manager can delegate sharing"));
    }
    let days = req.expires_in_days.unwrap_or(365);
    if !(1..=3650).contains(&days) {
        return Err(ApiError::bad_request("expires_in_days: between 1 and 3650"));
    }
    let secret = format!("{TOKEN_PREFIX}{}", new_secret());
    let now = jiff::Timestamp::now().as_microsecond();
    let token = state
        .store
        .create_token(
            &auth.actor(),
            NewToken {
                org: user.org,
                created_by: Some(user.id),
                name: req.name,
                role: user.role,
                scopes,
                token_hash: secret_hash(&secret),
                prefix: secret.chars().take(10).collect(),
                expires_at: Some(now + i64::from(days) * 86_400_000_000),
            },
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(token_out(token, Some(secret)))).into_response())
}

pub(crate) async fn revoke_token(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    let Some(user) = &auth.user else { return Err(ApiError::forbidden("API tokens cannot revoke tokens")) };
    let t = state.store.token(id).await?.ok_or_else(|| ApiError::not_found("token"))?;
    if !(manages_tokens_of(&auth, t.org) || t.created_by == Some(user.id)) {
        return Err(ApiError::not_found("token"));
    }
    state.store.revoke_token(&auth.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Audit log filter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Entries before this sequence number (from `next_cursor`).
    pub cursor: Option<String>,
    /// Only this action (`user.login`, `object.share`…).
    pub action: Option<String>,
    /// Page size (1–500, default 50).
    pub limit: Option<u32>,
}

/// An audit log entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditOut {
    pub seq: i64,
    pub at: String,
    pub actor_user: Option<Uuid>,
    pub actor_token: Option<Uuid>,
    pub actor_org: Option<Uuid>,
    pub ip: Option<String>,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub hash: String,
}

/// A page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditOut>,
    pub next_cursor: Option<String>,
}

pub(crate) async fn audit_log(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    QueryParams(p): QueryParams<AuditParams>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let tree = state.tree().await?;
    let scope = audit_scope(&auth.principal, &tree);
    if scope.as_ref().is_some_and(|s| s.is_empty()) {
        return Err(ApiError::forbidden("your role does not read the audit log"));
    }
    let before = match p.cursor.as_deref() {
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::bad_request(format!("cursor {c:?} is not a cursor this API issued")))?,
        ),
        None => None,
    };
    let limit = super::page_limit(p.limit)?;
    let rows = state.store.audit_entries(&AuditQuery { before, action: p.action, actor_orgs: scope, limit }).await?;
    let next_cursor = (rows.len() == limit as usize).then(|| rows.last().map(|r| r.seq.to_string())).flatten();
    let items = rows
        .into_iter()
        .map(|r| AuditOut {
            seq: r.seq,
            at: rfc3339(r.at),
            actor_user: r.actor_user,
            actor_token: r.actor_token,
            actor_org: r.actor_org,
            ip: r.ip,
            action: r.action,
            target_kind: r.target_kind,
            target_id: r.target_id,
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
            hash: r.hash,
        })
        .collect();
    Ok(axum::Json(AuditPage { items, next_cursor }))
}

pub(crate) async fn verify_audit(
    State(state): State<Arc<AppState>>,
    auth: Auth,
) -> Result<axum::Json<nigehban_store::VerifyReport>, ApiError> {
    if auth.principal.role != Role::PlatformAdmin || auth.token.is_some() {
        return Err(ApiError::forbidden("only a platform administrator verifies the audit log"));
    }
    Ok(axum::Json(state.store.verify_audit().await?))
}
