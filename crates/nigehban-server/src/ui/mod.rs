//! The web UI: server-rendered pages (askama templates), no JavaScript, no CDN.
//!
//! Every page asks the same policy as the API: lists come from the store's scoped queries,
//! objects through [`crate::api::load`] (hidden means not found), administration through
//! [`nigehban_policy::admin`]. Pages need a browser session (a signed-in user); without one they
//! redirect to `/login`. Every form that changes something carries the session's CSRF token.
//! Every answer carries a Content-Security-Policy without external sources and the other
//! security headers ([`security_headers`]).

mod admin;
mod alerts;
mod assets;
mod events;
mod home;
mod login;
mod objects;
mod orgs;
mod retrohunts;
mod view;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use nigehban_policy::admin::{audit_scope, can_manage_user};
use nigehban_policy::{Kind, Role, Tree};
use nigehban_store::{Org, User};

use crate::auth::{Auth, authenticate};
use crate::{ApiError, AppState};

/// Every UI route.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(home::dashboard))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/alerts", get(alerts::list))
        .route("/alerts/{id}", get(alerts::detail))
        .route("/alerts/{id}/status", post(alerts::set_status))
        .route("/events", get(events::search))
        .route("/events/{id}", get(events::event))
        .route("/retrohunts", get(retrohunts::list).post(retrohunts::start))
        .route("/retrohunts/{id}", get(retrohunts::detail))
        .route("/retrohunts/{id}/cancel", post(retrohunts::cancel))
        .route("/tree", get(orgs::tree))
        .route("/orgs/{id}", get(orgs::org))
        .route("/objects/{kind}", get(objects::list).post(objects::create))
        .route("/objects/{kind}/{id}", get(objects::detail))
        .route("/objects/{kind}/{id}/shares", post(objects::share))
        .route("/admin/users", get(admin::users).post(admin::create_user))
        .route("/admin/tokens", get(admin::tokens).post(admin::create_token))
        .route("/admin/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/audit", get(admin::audit))
        .route("/assets/{name}", get(assets::asset))
        .layer(axum::middleware::from_fn(security_headers))
}

/// The page for unknown paths.
pub(crate) fn not_found_page() -> impl IntoResponse {
    let mut r = UiError::not_found(None).into_response();
    secure(r.headers_mut());
    r
}

/// The Content-Security-Policy of every UI answer: nothing from elsewhere, no scripts, no
/// framing, forms only to this server.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn secure(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Adds the security headers to every UI answer (pages are `no-store`: they show marked
/// material).
async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    secure(r.headers_mut());
    r
}

/// Renders a template, or the internal-error page if it cannot be rendered.
pub(crate) fn render<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(message = "A page could not be rendered.", error = %e);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><html lang=\"en\"><title>Internal error</title><h1>Internal error</h1>"),
            )
                .into_response()
        }
    }
}

/// A link of the main navigation.
pub(crate) struct NavItem {
    pub href: String,
    pub label: &'static str,
    pub current: bool,
}

/// What every page shows around its content: the title, the signed-in user, the navigation,
/// the CSRF token for the sign-out form.
pub(crate) struct Chrome {
    pub title: String,
    pub signed_in: bool,
    pub user_name: String,
    pub role_label: &'static str,
    pub org_name: String,
    pub csrf: String,
    pub nav: Vec<NavItem>,
}

impl Chrome {
    /// Chrome for pages seen without a session (sign-in, unknown paths).
    pub(crate) fn anonymous(title: impl Into<String>) -> Chrome {
        Chrome {
            title: title.into(),
            signed_in: false,
            user_name: String::new(),
            role_label: "",
            org_name: String::new(),
            csrf: String::new(),
            nav: Vec::new(),
        }
    }
}

/// A signed-in browser user, with what most pages need.
pub(crate) struct Viewer {
    pub auth: Auth,
    pub user: User,
    pub org: Org,
    pub csrf: String,
    pub tree: Arc<Tree>,
}

impl Viewer {
    pub(crate) fn role(&self) -> Role {
        self.auth.principal.role
    }

    /// Whether the role may create or change any account (the accounts page's form).
    pub(crate) fn manages_users(&self) -> bool {
        self.tree.nodes().any(|n| Role::ALL.iter().any(|r| can_manage_user(&self.auth.principal, &self.tree, n.id, *r)))
    }

    /// Whether the role reads any part of the audit log.
    pub(crate) fn reads_audit(&self) -> bool {
        audit_scope(&self.auth.principal, &self.tree).is_none_or(|s| !s.is_empty())
    }

    /// The chrome of a page; `section` is the navigation entry to mark current.
    pub(crate) fn chrome(&self, title: impl Into<String>, section: &str) -> Chrome {
        let mut nav = vec![("/".to_owned(), "Dashboard")];
        // Live monitoring first: the triage queue is where analysts work.
        if self.role().reads(Kind::Alert) {
            nav.push(("/alerts".to_owned(), "Alerts"));
        }
        if self.role().reads(Kind::Event) {
            nav.push(("/events".to_owned(), "Event search"));
        }
        if crate::monitor::retro::may_hunt(&self.auth.principal).is_ok() {
            nav.push(("/retrohunts".to_owned(), "Retro-hunts"));
        }
        nav.push(("/tree".to_owned(), "Constituency"));
        for kind in Kind::ALL {
            if kind != Kind::Alert && self.role().reads(kind) {
                nav.push((format!("/objects/{}", kind.plural()), view::kind_plural_label(kind)));
            }
        }
        if self.manages_users() {
            nav.push(("/admin/users".to_owned(), "Accounts"));
        }
        nav.push(("/admin/tokens".to_owned(), "API tokens"));
        if self.reads_audit() {
            nav.push(("/audit".to_owned(), "Audit log"));
        }
        Chrome {
            title: title.into(),
            signed_in: true,
            user_name: self.user.display_name.clone(),
            role_label: self.role().label(),
            org_name: self.org.name.clone(),
            csrf: self.csrf.clone(),
            nav: nav.into_iter().map(|(href, label)| NavItem { current: href == section, href, label }).collect(),
        }
    }

    /// Checks a form's CSRF token.
    pub(crate) fn check_csrf(&self, presented: &str) -> Result<(), UiError> {
        self.auth.check_csrf(presented).map_err(|_| {
            UiError::page(
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form's security token is missing or wrong. Reload the page and try again.",
                Some(self.chrome("Form expired", "")),
            )
        })
    }

    /// An error page with this viewer's navigation.
    pub(crate) fn fail(&self, e: impl Into<ApiError>) -> UiError {
        UiError::from_api(e.into(), Some(self.chrome("", "")))
    }
}

impl FromRequestParts<Arc<AppState>> for Viewer {
    type Rejection = UiError;

    /// Pages take a browser session only (API tokens are for the API); without one, the
    /// browser goes to the sign-in page and comes back afterwards.
    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let back = (parts.method == Method::GET).then(|| parts.uri.path_and_query().map(|p| p.as_str().to_owned()));
        let sign_in = || UiError::SignIn(back.clone().flatten());
        let auth = match authenticate(state, parts).await {
            Ok(Some(a)) => a,
            Ok(None) => return Err(sign_in()),
            Err(e) if e.status.is_server_error() => return Err(UiError::from_api(e, None)),
            Err(_) => return Err(sign_in()),
        };
        let (Some(user), Some(session)) = (auth.user.clone(), auth.session.as_ref()) else { return Err(sign_in()) };
        let csrf = session.csrf_token.clone();
        let tree = state.tree().await.map_err(|e| UiError::from_api(e, None))?;
        let org = state
            .store
            .org(user.org)
            .await
            .map_err(|e| UiError::from_api(e.into(), None))?
            .ok_or_else(|| UiError::from_api(ApiError::internal(), None))?;
        Ok(Viewer { auth, user, org, csrf, tree })
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    heading: String,
    message: String,
    status: u16,
}

/// What a page answers when it cannot show what was asked.
pub(crate) enum UiError {
    /// No session: to the sign-in page (then back to this path).
    SignIn(Option<String>),
    /// An error page.
    Page(Box<ErrorInfo>),
}

/// What an error page says.
pub(crate) struct ErrorInfo {
    status: StatusCode,
    heading: String,
    message: String,
    chrome: Option<Chrome>,
}

impl UiError {
    pub(crate) fn page(
        status: StatusCode,
        heading: impl Into<String>,
        message: impl Into<String>,
        chrome: Option<Chrome>,
    ) -> UiError {
        UiError::Page(Box::new(ErrorInfo { status, heading: heading.into(), message: message.into(), chrome }))
    }

    /// The not-found page (also for what the viewer may not see).
    pub(crate) fn not_found(chrome: Option<Chrome>) -> UiError {
        UiError::page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing here, or you do not have access to it. Check the address, or go back to the \
             dashboard.",
            chrome,
        )
    }

    /// A page for an API error: hidden is not found; refusals are forbidden; the rest by status.
    pub(crate) fn from_api(e: ApiError, chrome: Option<Chrome>) -> UiError {
        match e.status {
            StatusCode::NOT_FOUND => UiError::not_found(chrome),
            StatusCode::FORBIDDEN => UiError::page(StatusCode::FORBIDDEN, "Not allowed", e.message, chrome),
            s if s.is_server_error() => UiError::page(
                s,
                "Something went wrong",
                "The server could not answer this request. The server log has details; try again later.",
                chrome,
            ),
            s => UiError::page(s, "Cannot do that", e.message, chrome),
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::SignIn(back) => {
                let to = match back.filter(|b| b != "/" && login::safe_next(b)) {
                    Some(b) => format!("/login?next={}", view::url_encode(&b)),
                    None => "/login".to_owned(),
                };
                Redirect::to(&to).into_response()
            }
            UiError::Page(e) => {
                let ErrorInfo { status, heading, message, chrome } = *e;
                let mut chrome = chrome.unwrap_or_else(|| Chrome::anonymous(""));
                chrome.title = heading.clone();
                render(status, &ErrorPage { chrome, heading, message, status: status.as_u16() })
            }
        }
    }
}

/// Reads a form body; a body that cannot be read is a 400 page.
pub(crate) fn form<T>(
    f: Result<axum::extract::Form<T>, axum::extract::rejection::FormRejection>,
    v: &Viewer,
) -> Result<T, UiError> {
    f.map(|axum::extract::Form(t)| t).map_err(|e| {
        UiError::page(StatusCode::BAD_REQUEST, "Cannot read the form", e.body_text(), Some(v.chrome("", "")))
    })
}
