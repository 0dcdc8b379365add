//! Accounts, API tokens and the audit log.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use nigehban_policy::admin::{audit_scope, can_manage_user, user_directory, visible_orgs};
use nigehban_policy::{Role, Scope, Verb};
use nigehban_store::{ApiToken, AuditQuery, NewToken, NewUser};
use serde::Deserialize;
use uuid::Uuid;

use super::view::{self, Choice, OrgNames, When};
use super::{Chrome, UiError, Viewer, render};
use crate::AppState;
use crate::auth::{TOKEN_PREFIX, check_password_strength, hash_password, new_secret, secret_hash};

// ---------------------------------------------------------------- accounts

struct UserRow {
    username: String,
    display_name: String,
    email: String,
    role: &'static str,
    org: String,
    status: &'static str,
    last_login: Option<When>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserRow>,
    can_create: bool,
    orgs: Vec<Choice>,
    roles: Vec<Choice>,
    username: String,
    display_name: String,
    email: String,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct NoticeQuery {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    revoked: Option<String>,
}

async fn users_page(
    state: &AppState,
    v: &Viewer,
    form: UserForm,
    error: Option<String>,
    notice: Option<String>,
) -> Result<UsersPage, UiError> {
    let p = &v.auth.principal;
    let now = jiff::Timestamp::now().as_microsecond();
    let dir = user_directory(p, &v.tree);
    let names = OrgNames::new(state.store.orgs().await.map_err(|e| v.fail(e))?, v);
    let users = state
        .store
        .users(None)
        .await
        .map_err(|e| v.fail(e))?
        .into_iter()
        .filter(|u| dir.as_ref().is_none_or(|d| d.contains(&u.org)))
        .map(|u| UserRow {
            status: if u.disabled {
                "disabled"
            } else if u.locked_until.is_some_and(|t| t > now) {
                "locked"
            } else {
                "active"
            },
            org: names.name(u.org),
            role: u.role.label(),
            email: u.email.unwrap_or_default(),
            last_login: u.last_login.map(view::when),
            username: u.username,
            display_name: u.display_name,
        })
        .collect();
    let mut orgs: Vec<Choice> = visible_orgs(p, &v.tree)
        .into_iter()
        .filter(|o| Role::ALL.iter().any(|r| can_manage_user(p, &v.tree, *o, *r)))
        .map(|o| Choice { value: o.to_string(), label: names.name(o), selected: form.org == o.to_string() })
        .collect();
    orgs.sort_by(|a, b| a.label.cmp(&b.label));
    let roles: Vec<Choice> = Role::ALL
        .into_iter()
        .filter(|r| v.tree.nodes().any(|n| can_manage_user(p, &v.tree, n.id, *r)))
        .map(|r| Choice {
            value: r.as_str().to_owned(),
            label: r.label().to_owned(),
            selected: form.role == r.as_str(),
        })
        .collect();
    Ok(UsersPage {
        chrome: v.chrome("Accounts", "/admin/users"),
        users,
        can_create: !orgs.is_empty() && !roles.is_empty(),
        orgs,
        roles,
        username: form.username,
        display_name: form.display_name,
        email: form.email,
        error,
        notice,
    })
}

/// `GET /admin/users`: the accounts the viewer may list, and a form for the ones it may create.
pub(crate) async fn users(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    q: Result<Query<NoticeQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let notice = q.ok().and_then(|Query(q)| q.created).map(|u| format!("Account {u} created."));
    let page = users_page(&state, &v, UserForm::default(), None, notice).await?;
    Ok(render(StatusCode::OK, &page))
}

/// `POST /admin/users`: creates an account, if the viewer may create that role in that
/// organisation.
pub(crate) async fn create_user(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    f: Result<Form<UserForm>, FormRejection>,
) -> Result<Response, UiError> {
    let f = super::form(f, &v)?;
    v.check_csrf(&f.csrf)?;
    let p = &v.auth.principal;
    let org = f.org.parse::<Uuid>().ok();
    let role = f.role.parse::<Role>().ok();
    let (Some(org), Some(role)) = (org, role) else {
        let page = users_page(&state, &v, f, Some("Choose an organisation and a role.".into()), None).await?;
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    };
    if !can_manage_user(p, &v.tree, org, role) {
        return Err(UiError::page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            format!("You cannot create a {} account in that organisation.", role.label().to_lowercase()),
            Some(v.chrome("Not allowed", "/admin/users")),
        ));
    }
    let problem = if f.display_name.trim().is_empty() {
        Some("Enter the person's name.".to_owned())
    } else {
        check_password_strength(&f.password).err().map(|_| "Passwords have at least 12 characters.".to_owned())
    };
    if let Some(problem) = problem {
        let page = users_page(&state, &v, f, Some(problem), None).await?;
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let pw = f.password.clone();
    let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|_| v.fail(crate::ApiError::internal()))?
        .map_err(|e| v.fail(e))?;
    let email = f.email.trim();
    let created = state
        .store
        .create_user(
            &v.auth.actor(),
            NewUser {
                org,
                username: f.username.trim().to_owned(),
                display_name: f.display_name.trim().to_owned(),
                email: (!email.is_empty()).then(|| email.to_owned()),
                role,
                password_hash: hash,
            },
        )
        .await;
    match created {
        Ok(u) => Ok(Redirect::to(&format!("/admin/users?created={}", view::url_encode(&u.username))).into_response()),
        Err(e @ (nigehban_store::StoreError::Invalid(_) | nigehban_store::StoreError::Conflict(_))) => {
            let message = crate::ApiError::from(e).message;
            let page = users_page(&state, &v, f, Some(message), None).await?;
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
        Err(e) => Err(v.fail(e)),
    }
}

// ---------------------------------------------------------------- API tokens

struct TokenRow {
    id: Uuid,
    name: String,
    prefix: String,
    org: String,
    role: &'static str,
    scopes: String,
    created: When,
    expires: Option<When>,
    last_used: Option<When>,
    status: &'static str,
    revocable: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    days: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    chrome: Chrome,
    tokens: Vec<TokenRow>,
    secret: Option<String>,
    name: String,
    scopes: String,
    days: String,
    org_name: String,
    role_label: &'static str,
    error: Option<String>,
    notice: Option<String>,
}

/// Whose tokens the viewer manages besides its own (as the API decides).
fn manages_tokens_of(v: &Viewer, org: Uuid) -> bool {
    match v.role() {
        Role::PlatformAdmin => true,
        Role::CertManager | Role::OrgSecurityLead => org == v.auth.principal.org,
        _ => false,
    }
}

fn may_manage(v: &Viewer, t: &ApiToken) -> bool {
    manages_tokens_of(v, t.org) || t.created_by == Some(v.user.id)
}

async fn tokens_page(
    state: &AppState,
    v: &Viewer,
    form: TokenForm,
    secret: Option<String>,
    error: Option<String>,
    notice: Option<String>,
) -> Result<TokensPage, UiError> {
    let now = jiff::Timestamp::now().as_microsecond();
    let names = OrgNames::new(state.store.orgs().await.map_err(|e| v.fail(e))?, v);
    let tokens = state
        .store
        .tokens(None)
        .await
        .map_err(|e| v.fail(e))?
        .into_iter()
        .filter(|t| may_manage(v, t))
        .map(|t| TokenRow {
            id: t.id,
            status: if t.revoked_at.is_some() {
                "revoked"
            } else if t.usable(now) {
                "active"
            } else {
                "expired"
            },
            revocable: t.revoked_at.is_none(),
            org: names.name(t.org),
            role: t.role.label(),
            scopes: t.scopes.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
            created: view::when(t.created_at),
            expires: t.expires_at.map(view::when),
            last_used: t.last_used_at.map(view::when),
            name: t.name,
            prefix: t.prefix,
        })
        .collect();
    Ok(TokensPage {
        chrome: v.chrome("API tokens", "/admin/tokens"),
        tokens,
        secret,
        name: form.name,
        scopes: if form.scopes.is_empty() { "*:read".to_owned() } else { form.scopes },
        days: if form.days.is_empty() { "90".to_owned() } else { form.days },
        org_name: v.org.name.clone(),
        role_label: v.role().label(),
        error,
        notice,
    })
}

/// `GET /admin/tokens`: the viewer's tokens (and, for managers, their organisation's).
pub(crate) async fn tokens(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    q: Result<Query<NoticeQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let notice = q.ok().and_then(|Query(q)| q.revoked).map(|_| "The token is revoked.".to_owned());
    let page = tokens_page(&state, &v, TokenForm::default(), None, None, notice).await?;
    Ok(render(StatusCode::OK, &page))
}

/// `POST /admin/tokens`: creates a token acting for the viewer's organisation with the viewer's
/// role narrowed by scopes; its secret is shown once, in this answer.
pub(crate) async fn create_token(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    f: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, UiError> {
    let f = super::form(f, &v)?;
    v.check_csrf(&f.csrf)?;
    let scopes: Result<Vec<Scope>, String> =
        f.scopes.split([' ', ',', '\n', '\t']).filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse()).collect();
    let days = f.days.trim().parse::<u32>().ok().filter(|d| (1..=3650).contains(d));
    let problem = match (&scopes, days) {
        _ if f.name.trim().is_empty() => Some("Give the token a name (what it is for).".to_owned()),
        (Err(e), _) => Some(format!("Scopes: {e}.")),
        (Ok(s), _) if s.is_empty() => Some("Give at least one scope, such as events:write or *:read.".to_owned()),
        (Ok(s), _) if s.iter().any(|s| s.verb == Verb::Share) && v.role() != Role::CertManager => {
            Some("Only a CERT manager can delegate sharing.".to_owned())
        }
        (_, None) => Some("Days until it expires: between 1 and 3650.".to_owned()),
        _ => None,
    };
    let (Ok(scopes), Some(days), None) = (scopes, days, problem.clone()) else {
        let page = tokens_page(&state, &v, f, None, problem, None).await?;
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    };
    let secret = format!("{TOKEN_PREFIX}{}", new_secret());
    let now = jiff::Timestamp::now().as_microsecond();
    state
        .store
        .create_token(
            &v.auth.actor(),
            NewToken {
                org: v.user.org,
                created_by: Some(v.user.id),
                name: f.name.trim().to_owned(),
                role: v.user.role,
                scopes,
                token_hash: secret_hash(&secret),
                prefix: secret.chars().take(10).collect(),
                expires_at: Some(now + i64::from(days) * 86_400_000_000),
            },
        )
        .await
        .map_err(|e| v.fail(e))?;
    let page = tokens_page(&state, &v, TokenForm::default(), Some(secret), None, None).await?;
    Ok(render(StatusCode::CREATED, &page))
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /admin/tokens/{id}/revoke`.
pub(crate) async fn revoke_token(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    Path(id): Path<String>,
    f: Result<Form<CsrfOnly>, FormRejection>,
) -> Result<Response, UiError> {
    let f = super::form(f, &v)?;
    v.check_csrf(&f.csrf)?;
    let not_found = || UiError::not_found(Some(v.chrome("Not found", "")));
    let Ok(id) = id.parse::<Uuid>() else { return Err(not_found()) };
    let t = state.store.token(id).await.map_err(|e| v.fail(e))?.ok_or_else(not_found)?;
    if !may_manage(&v, &t) {
        return Err(not_found());
    }
    state.store.revoke_token(&v.auth.actor(), id).await.map_err(|e| v.fail(e))?;
    Ok(Redirect::to("/admin/tokens?revoked=1").into_response())
}

// ---------------------------------------------------------------- audit log

struct AuditRow {
    seq: i64,
    at: When,
    actor: String,
    org: String,
    ip: String,
    action: String,
    target: String,
    detail: String,
    hash: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQueryParams {
    #[serde(default)]
    action: String,
    #[serde(default)]
    cursor: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    scope: String,
    rows: Vec<AuditRow>,
    action: String,
    paged: bool,
    next_href: Option<String>,
}

const AUDIT_PAGE: u32 = 50;

/// `GET /audit`: the audit log as far as the viewer may read it (forbidden for roles that
/// read none of it).
pub(crate) async fn audit(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    q: Result<Query<AuditQueryParams>, QueryRejection>,
) -> Result<Response, UiError> {
    let scope = audit_scope(&v.auth.principal, &v.tree);
    if scope.as_ref().is_some_and(|s| s.is_empty()) {
        return Err(UiError::page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            format!("Your role ({}) does not read the audit log.", v.role().label().to_lowercase()),
            Some(v.chrome("Not allowed", "")),
        ));
    }
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let before = match q.cursor.as_str() {
        "" => None,
        c => Some(c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            UiError::page(
                StatusCode::BAD_REQUEST,
                "Cannot show this page",
                format!("{c:?} is not a position in the audit log."),
                Some(v.chrome("", "/audit")),
            )
        })?),
    };
    let action = q.action.trim().to_owned();
    let rows = state
        .store
        .audit_entries(&AuditQuery {
            before,
            action: (!action.is_empty()).then(|| action.clone()),
            actor_orgs: scope.clone(),
            limit: AUDIT_PAGE,
        })
        .await
        .map_err(|e| v.fail(e))?;
    let next = (rows.len() == AUDIT_PAGE as usize).then(|| rows.last().map(|r| r.seq)).flatten();
    let names = OrgNames::new(state.store.orgs().await.map_err(|e| v.fail(e))?, &v);
    let users: HashMap<Uuid, String> =
        state.store.users(None).await.map_err(|e| v.fail(e))?.into_iter().map(|u| (u.id, u.username)).collect();
    let rows = rows
        .into_iter()
        .map(|r| AuditRow {
            seq: r.seq,
            at: view::when(r.at),
            actor: match (r.actor_user, r.actor_token) {
                (Some(u), _) => users.get(&u).cloned().unwrap_or_else(|| u.to_string()),
                (None, Some(t)) => format!("API token {t}"),
                (None, None) => "system".to_owned(),
            },
            org: r
                .actor_org
                .map(|o| names.get(o).map_or_else(|| o.to_string(), |o| o.short_name.clone()))
                .unwrap_or_default(),
            ip: r.ip.unwrap_or_default(),
            action: r.action,
            target: format!("{} {}", r.target_kind, r.target_id),
            detail: r.detail,
            hash: r.hash.chars().take(12).collect(),
        })
        .collect();
    let scope_text = match &scope {
        None => "every organisation".to_owned(),
        Some(s) if s.len() == 1 => names.name(s[0]),
        Some(_) => format!("{} and its constituency", v.org.name),
    };
    let page = AuditPage {
        chrome: v.chrome("Audit log", "/audit"),
        scope: scope_text,
        rows,
        paged: before.is_some(),
        next_href: next.map(|n| {
            let mut href = format!("/audit?cursor={n}");
            if !action.is_empty() {
                href.push_str(&format!("&action={}", view::url_encode(&action)));
            }
            href
        }),
        action,
    };
    Ok(render(StatusCode::OK, &page))
}
