//! The dashboard: what the viewer's role sees and can do. A platform administrator sees the
//! accounts, tokens and audit log, and no incident or intelligence content.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use nigehban_policy::admin::audit_scope;
use nigehban_policy::{Kind, Role, can_create};
use nigehban_store::{AuditQuery, ObjectFilter};

use super::alerts::{self, AlertRow};
use super::view::{self, ObjectRow, OrgNames, When};
use super::{Chrome, UiError, Viewer, render};
use crate::AppState;

struct Count {
    label: &'static str,
    href: String,
    n: u64,
    key: &'static str,
}

pub(crate) struct AuditLine {
    pub seq: i64,
    pub at: When,
    pub actor: String,
    pub action: String,
    pub target: String,
}

struct AdminSummary {
    users: usize,
    locked: usize,
    disabled: usize,
    orgs: usize,
    tokens_active: usize,
    tokens_inactive: usize,
    audit: Vec<AuditLine>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    greeting: String,
    role_label: &'static str,
    org_name: String,
    admin: Option<AdminSummary>,
    counts: Vec<Count>,
    rows: Vec<ObjectRow>,
    /// The newest new alerts, for roles that read alerts.
    new_alerts: Option<Vec<AlertRow>>,
    abilities: Vec<String>,
}

/// What the role can do, in sentences.
fn abilities(v: &Viewer) -> Vec<String> {
    let p = &v.auth.principal;
    let org = &v.org.name;
    let mut out = Vec::new();
    if p.role == Role::PlatformAdmin {
        out.push(
            "Manage accounts, API tokens and the constituency, and read the whole audit log. Administrators do \
             not read incident or intelligence content."
                .to_owned(),
        );
        return out;
    }
    let kinds: Vec<&str> =
        Kind::ALL.into_iter().filter(|k| p.role.reads(*k)).map(|k| view::kind_plural_label(k)).collect();
    if p.role == Role::Auditor {
        out.push("Read the audit engagements assigned to you, and nothing else.".to_owned());
    } else if p.role.is_cert_role() {
        out.push(format!(
            "Read and triage the {} reported by {org} and the organisations it serves, within their TLP markings.",
            kinds.join(", ").to_lowercase()
        ));
    } else {
        out.push(format!(
            "Read {org}'s {} and what CERTs shared with it, within their TLP markings.",
            kinds.join(", ").to_lowercase()
        ));
    }
    if can_create(p, Kind::Incident, p.org).allowed() {
        out.push(format!("Report incidents for {org}."));
    }
    if p.role == Role::CertManager {
        out.push(format!(
            "Share AMBER material with organisations in {org}'s constituency, and GREEN or CLEAR material with the \
             community."
        ));
    }
    if v.manages_users() {
        out.push(format!(
            "Manage the accounts of {org}{}.",
            if p.role == Role::CertManager { " and its constituency" } else { "" }
        ));
    }
    if audit_scope(p, &v.tree).is_some_and(|s| !s.is_empty()) {
        out.push(format!(
            "Read the audit log of {org}{}.",
            if p.role == Role::CertManager { " and its constituency" } else { "" }
        ));
    }
    out.push(format!("Create API tokens that act for {org} with at most your role's permissions."));
    out
}

/// `GET /`.
pub(crate) async fn dashboard(State(state): State<Arc<AppState>>, v: Viewer) -> Result<Response, UiError> {
    let p = &v.auth.principal;
    let mut admin = None;
    let mut counts = Vec::new();
    let mut recent = Vec::new();
    let mut new_alerts = None;
    if p.role == Role::PlatformAdmin {
        let now = jiff::Timestamp::now().as_microsecond();
        let users = state.store.users(None).await.map_err(|e| v.fail(e))?;
        let tokens = state.store.tokens(None).await.map_err(|e| v.fail(e))?;
        let orgs = state.store.orgs().await.map_err(|e| v.fail(e))?;
        let names: HashMap<_, _> = users.iter().map(|u| (u.id, u.username.clone())).collect();
        let entries = state
            .store
            .audit_entries(&AuditQuery { before: None, action: None, actor_orgs: None, limit: 8 })
            .await
            .map_err(|e| v.fail(e))?;
        admin = Some(AdminSummary {
            users: users.len(),
            locked: users.iter().filter(|u| u.locked_until.is_some_and(|t| t > now)).count(),
            disabled: users.iter().filter(|u| u.disabled).count(),
            orgs: orgs.len(),
            tokens_active: tokens.iter().filter(|t| t.usable(now)).count(),
            tokens_inactive: tokens.iter().filter(|t| !t.usable(now)).count(),
            audit: entries
                .into_iter()
                .map(|r| AuditLine {
                    seq: r.seq,
                    at: view::when(r.at),
                    actor: r
                        .actor_user
                        .and_then(|u| names.get(&u).cloned())
                        .or_else(|| r.actor_token.map(|_| "an API token".to_owned()))
                        .unwrap_or_else(|| "the system".to_owned()),
                    action: r.action,
                    target: r.target_kind,
                })
                .collect(),
        });
    } else {
        for (kind, n) in state.store.count_objects(p, &v.tree).await.map_err(|e| v.fail(e))? {
            counts.push(Count {
                label: view::kind_plural_label(kind),
                href: format!("/objects/{}", kind.plural()),
                n,
                key: kind.plural(),
            });
        }
        let page =
            state.store.list_objects(p, &v.tree, &ObjectFilter::default(), None, 10).await.map_err(|e| v.fail(e))?;
        let names = OrgNames::new(state.store.orgs().await.map_err(|e| v.fail(e))?, &v);
        recent = page.items.iter().map(|o| view::object_row(o, &names)).collect();
        if p.role.reads(Kind::Alert) {
            new_alerts = Some(alerts::latest_new(&state, &v, &names, 5).await?);
        }
    }
    let page = DashboardPage {
        chrome: v.chrome("Dashboard", "/"),
        greeting: v.user.display_name.clone(),
        role_label: v.role().label(),
        org_name: v.org.name.clone(),
        admin,
        counts,
        rows: recent,
        new_alerts,
        abilities: abilities(&v),
    };
    Ok(render(StatusCode::OK, &page))
}
