//! Signing in and out.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Chrome, UiError, Viewer, render};
use crate::AppState;
use crate::auth::{ClientIp, authenticate, secret_hash, session_cookie, session_set_cookie, sign_in};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    username: String,
    next: String,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    signed_out: Option<String>,
}

/// Whether `next` is a path on this server (never another site).
pub(crate) fn safe_next(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\')
}

fn page(status: StatusCode, username: String, next: String, error: Option<String>, notice: Option<String>) -> Response {
    render(status, &LoginPage { chrome: Chrome::anonymous("Sign in"), username, next, error, notice })
}

/// `GET /login`: the form (or, when already signed in, on to the dashboard).
pub(crate) async fn form(
    State(state): State<Arc<AppState>>,
    parts: Parts,
    q: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let next = q.next.filter(|n| safe_next(n)).unwrap_or_default();
    if let Ok(Some(auth)) = authenticate(&state, &parts).await
        && auth.session.is_some()
    {
        return Redirect::to(if next.is_empty() { "/" } else { &next }).into_response();
    }
    let notice = q.signed_out.map(|_| "You have signed out.".to_owned());
    page(StatusCode::OK, String::new(), next, None, notice)
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// Whether a cross-site page posted the form: browsers send `Origin` with form posts; when it
/// names another host than the one addressed, the sign-in is refused (login CSRF).
fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return false };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else { return false };
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    origin != "null" && !origin_host.eq_ignore_ascii_case(host)
}

/// `POST /login`: checks the password (rate limit and lockout in [`sign_in`]); on success sets
/// the session cookie and goes on.
pub(crate) async fn submit(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    f: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = f else {
        return page(
            StatusCode::BAD_REQUEST,
            String::new(),
            String::new(),
            Some("The form could not be read; try again.".into()),
            None,
        );
    };
    let next = if safe_next(&f.next) { f.next.clone() } else { String::new() };
    if cross_site(&headers) {
        return page(
            StatusCode::FORBIDDEN,
            f.username,
            next,
            Some("This sign-in came from another site and was refused.".into()),
            None,
        );
    }
    if f.username.trim().is_empty() || f.password.is_empty() {
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            f.username,
            next,
            Some("Enter your user name and password.".into()),
            None,
        );
    }
    match sign_in(&state, f.username.trim(), &f.password, ip).await {
        Ok((secret, _, _)) => {
            if let Some(old) = session_cookie(&headers) {
                let _ = state.store.delete_session(&secret_hash(&old)).await;
            }
            let cookie = session_set_cookie(&secret, state.config.session_ttl.as_secs(), state.config.secure_cookies);
            let to = if next.is_empty() { "/".to_owned() } else { next };
            ([(header::SET_COOKIE, cookie)], Redirect::to(&to)).into_response()
        }
        Err(e) if e.status.is_server_error() => UiError::from_api(e, None).into_response(),
        Err(e) => {
            let message = match e.code {
                "bad_credentials" => "Wrong user name or password.".to_owned(),
                _ => upper_first(&e.message),
            };
            page(e.status, f.username, next, Some(message), None)
        }
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /logout`: ends the session.
pub(crate) async fn logout(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    headers: HeaderMap,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, UiError> {
    let f = super::form(f, &v)?;
    v.check_csrf(&f.csrf)?;
    if let Some(secret) = session_cookie(&headers) {
        state.store.delete_session(&secret_hash(&secret)).await.map_err(|e| v.fail(e))?;
    }
    let _ = state
        .store
        .audit(
            &v.auth.actor(),
            nigehban_store::AuditEntry::new("user.logout", "user", v.user.id, serde_json::json!({})),
        )
        .await;
    let cookie = session_set_cookie("", 0, state.config.secure_cookies);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login?signed_out=1")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        assert!(safe_next("/objects/incidents?tlp=RED"));
        assert!(!safe_next("//evil.example/"));
        assert!(!safe_next("/\\evil.example"));
        assert!(!safe_next("https://evil.example/"));
        assert!(!safe_next(""));
    }

    #[test]
    fn origin_must_match_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(!cross_site(&h));
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(!cross_site(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(cross_site(&h));
    }
}
