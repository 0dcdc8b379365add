//! The triage queue of live monitoring: alerts newest first with their level, rule, entity,
//! counts and status; one alert with its evidence; acknowledging, closing and reopening.
//!
//! Lists come from [`nigehban_store::Store::list_alerts`] (the policy applied in the store);
//! one alert through [`crate::api::load`], so an alert the viewer may not see is not found.
//! Triage needs [`Action::Write`] on the alert, checked again when the form is posted.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use nigehban_policy::admin::visible_orgs;
use nigehban_policy::{Action, Kind, Tlp, can};
use nigehban_store::{Alert, AlertDetails, AlertStatus, ObjectFilter};
use serde::Deserialize;
use uuid::Uuid;

use super::view::{self, Choice, Link, OrgNames, TlpBadge, When};
use super::{Chrome, UiError, Viewer, render};
use crate::AppState;
use crate::api::{decode_cursor, encode_cursor, load};

const PAGE_SIZE: u32 = 25;

/// New alerts are counted up to this many (a count costs a listing).
const NEW_COUNT_CAP: u64 = 1_000;

/// The levels, lowest first; the index is the level's rank.
const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// A detection level as a badge: the level's name in words (the colour only repeats it).
pub(crate) struct LevelBadge {
    pub label: String,
    pub class: &'static str,
}

fn level_badge(d: Option<&AlertDetails>) -> LevelBadge {
    let Some(d) = d else { return LevelBadge { label: "Not set".to_owned(), class: "level-none" } };
    let class = match d.level_rank {
        r if r >= 4 => "level-critical",
        3 => "level-high",
        2 => "level-medium",
        1 => "level-low",
        _ => "level-informational",
    };
    LevelBadge { label: view::field_label(&d.level), class }
}

fn status_label(s: AlertStatus) -> &'static str {
    match s {
        AlertStatus::New => "New",
        AlertStatus::Acknowledged => "Acknowledged",
        AlertStatus::Closed => "Closed",
    }
}

/// One alert in a list.
pub(crate) struct AlertRow {
    pub href: String,
    pub title: String,
    pub level: LevelBadge,
    pub entity: String,
    pub org: Link,
    pub count: String,
    pub first_seen: Option<When>,
    pub last_seen: Option<When>,
    pub status: &'static str,
    pub tlp: TlpBadge,
}

pub(crate) fn alert_row(a: &Alert, names: &OrgNames) -> AlertRow {
    let d = a.details.as_ref();
    AlertRow {
        href: format!("/alerts/{}", a.object.id),
        title: d.map_or_else(|| a.object.title.clone(), |d| d.rule_title.clone()),
        level: level_badge(d),
        entity: d.map_or_else(String::new, |d| d.entity.clone()),
        org: names.link(a.object.owner),
        count: d.map_or_else(|| "—".to_owned(), |d| d.count.to_string()),
        first_seen: d.map(|d| view::when(d.first_seen)),
        last_seen: d.map(|d| view::when(d.last_seen)),
        status: d.map_or("No triage status", |d| status_label(d.status)),
        tlp: view::tlp_badge(a.object.tlp),
    }
}

/// The newest new alerts the viewer may list (the dashboard's panel).
pub(crate) async fn latest_new(
    state: &AppState,
    v: &Viewer,
    names: &OrgNames,
    n: u32,
) -> Result<Vec<AlertRow>, UiError> {
    let filter = ObjectFilter { alert_status: Some(AlertStatus::New), ..ObjectFilter::default() };
    let page = state.store.list_alerts(&v.auth.principal, &v.tree, &filter, None, n).await.map_err(|e| v.fail(e))?;
    Ok(page.items.iter().map(|a| alert_row(a, names)).collect())
}

/// How many new alerts the viewer may list, up to [`NEW_COUNT_CAP`] (through the same query as
/// the list, so the count never says more than the list shows).
async fn count_new(state: &AppState, v: &Viewer) -> Result<(u64, bool), UiError> {
    let filter =
        ObjectFilter { kind: Some(Kind::Alert), alert_status: Some(AlertStatus::New), ..ObjectFilter::default() };
    let mut n = 0u64;
    let mut before = None;
    loop {
        let page =
            state.store.list_objects(&v.auth.principal, &v.tree, &filter, before, 500).await.map_err(|e| v.fail(e))?;
        n += page.items.len() as u64;
        match page.next {
            Some(b) if n < NEW_COUNT_CAP => before = Some(b),
            Some(_) => return Ok((n, true)),
            None => return Ok((n, false)),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    min_level: String,
    /// The owner (`owner` as in the generic lists of objects).
    #[serde(default, alias = "owner")]
    org: String,
    #[serde(default)]
    tlp: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    cursor: String,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct ListPage {
    chrome: Chrome,
    alert_rows: Vec<AlertRow>,
    new_count: String,
    new_href: String,
    status_choices: Vec<Choice>,
    level_choices: Vec<Choice>,
    org_choices: Vec<Choice>,
    tlp_choices: Vec<Choice>,
    q: String,
    filtered: bool,
    paged: bool,
    next_href: Option<String>,
    first_href: String,
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", view::url_encode(v))).collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

/// `GET /alerts`: the alerts the viewer may list, newest first, filtered by status, lowest
/// level, organisation, TLP and words of the title, a page at a time, with the number of new
/// alerts.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    if !v.role().reads(Kind::Alert) {
        return Err(UiError::page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            format!("Your role ({}) does not read alerts.", v.role().label().to_lowercase()),
            Some(v.chrome("Not allowed", "")),
        ));
    }
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let bad = |m: String| UiError::page(StatusCode::BAD_REQUEST, "Cannot show this list", m, Some(v.chrome("", "")));
    let status = match q.status.as_str() {
        "" | "all" => None,
        s => Some(s.parse::<AlertStatus>().map_err(bad)?),
    };
    let min_level = match q.min_level.as_str() {
        "" => None,
        s => Some(
            LEVELS
                .iter()
                .position(|l| *l == s)
                .ok_or_else(|| bad(format!("level {s:?} is not informational, low, medium, high or critical")))?
                as i64,
        ),
    };
    let org = match q.org.as_str() {
        "" => None,
        s => Some(s.parse::<Uuid>().map_err(|_| bad(format!("{s:?} is not an organisation identifier")))?),
    };
    let tlp = match q.tlp.as_str() {
        "" => None,
        s => Some(s.parse::<Tlp>().map_err(|e| bad(e.to_string()))?),
    };
    let before = match q.cursor.as_str() {
        "" => None,
        s => Some(decode_cursor(s).map_err(|e| bad(e.message))?),
    };
    let search = q.q.trim().to_owned();
    let filter = ObjectFilter {
        tlp,
        owner: org,
        q: (!search.is_empty()).then(|| search.clone()),
        alert_status: status,
        min_level,
        ..ObjectFilter::default()
    };
    let p = &v.auth.principal;
    let page = state.store.list_alerts(p, &v.tree, &filter, before, PAGE_SIZE).await.map_err(|e| v.fail(e))?;
    let names = OrgNames::new(state.store.orgs().await.map_err(|e| v.fail(e))?, &v);
    let action = if filter.q.is_some() { Action::Search } else { Action::List };
    let alert_rows = page
        .items
        .iter()
        .filter(|a| can(p, &v.tree, &a.object.marking(), action).allowed())
        .map(|a| alert_row(a, &names))
        .collect();
    let (new, more) = count_new(&state, &v).await?;

    let status_str = status.map_or("", AlertStatus::as_str);
    let level_str = min_level.and_then(|l| LEVELS.get(l as usize).copied()).unwrap_or("");
    let tlp_str = tlp.map_or("", Tlp::as_str);
    let org_str = org.map(|o| o.to_string()).unwrap_or_default();
    let href = |cursor: Option<String>| {
        let cursor = cursor.unwrap_or_default();
        format!(
            "/alerts{}",
            query_string(&[
                ("status", status_str),
                ("min_level", level_str),
                ("org", &org_str),
                ("tlp", tlp_str),
                ("q", &search),
                ("cursor", &cursor),
            ])
        )
    };
    let mut status_choices =
        vec![Choice { value: "all".to_owned(), label: "All".to_owned(), selected: status.is_none() }];
    for s in [AlertStatus::New, AlertStatus::Acknowledged, AlertStatus::Closed] {
        status_choices.push(Choice {
            value: s.as_str().to_owned(),
            label: status_label(s).to_owned(),
            selected: status == Some(s),
        });
    }
    let mut level_choices =
        vec![Choice { value: String::new(), label: "Any level".to_owned(), selected: min_level.is_none() }];
    for (rank, l) in LEVELS.iter().enumerate() {
        level_choices.push(Choice {
            value: (*l).to_owned(),
            label: format!("{} or above", view::field_label(l)),
            selected: min_level == Some(rank as i64),
        });
    }
    let mut orgs: Vec<(Uuid, String)> = visible_orgs(p, &v.tree).into_iter().map(|o| (o, names.name(o))).collect();
    orgs.sort_by(|a, b| a.1.cmp(&b.1));
    let mut org_choices =
        vec![Choice { value: String::new(), label: "Any organisation".to_owned(), selected: org.is_none() }];
    org_choices.extend(orgs.into_iter().map(|(id, name)| Choice {
        value: id.to_string(),
        label: name,
        selected: org == Some(id),
    }));
    let page = ListPage {
        chrome: v.chrome("Alerts", "/alerts"),
        alert_rows,
        new_count: if more { format!("{new} or more") } else { new.to_string() },
        new_href: "/alerts?status=new".to_owned(),
        status_choices,
        level_choices,
        org_choices,
        tlp_choices: view::tlp_choices(tlp_str, Some("Any TLP")),
        filtered: status.is_some() || min_level.is_some() || org.is_some() || tlp.is_some() || !search.is_empty(),
        paged: before.is_some(),
        next_href: page.next.map(|n| href(Some(encode_cursor(n)))),
        first_href: href(None),
        q: search,
    };
    Ok(render(StatusCode::OK, &page))
}

/// One row of an alert's evidence.
struct EvidenceRow {
    time: Option<When>,
    source: String,
    position: String,
    fields: Vec<(String, String)>,
    event: Option<(String, String)>,
}

/// A triage button: a form posting `status`.
struct TriageButton {
    status: &'static str,
    label: &'static str,
}

#[derive(Template)]
#[template(path = "alert.html")]
struct DetailPage {
    chrome: Chrome,
    title: String,
    tlp: TlpBadge,
    org: Link,
    monitored: bool,
    level: LevelBadge,
    rule_id: String,
    engine: String,
    tags: Vec<String>,
    entity: String,
    count: i64,
    first_seen: Option<When>,
    last_seen: Option<When>,
    created: When,
    status: &'static str,
    status_by: Option<String>,
    status_at: Option<When>,
    buttons: Vec<TriageButton>,
    action: String,
    object_href: String,
    evidence: Vec<EvidenceRow>,
    evidence_capped: bool,
    notice: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DetailQuery {
    #[serde(default)]
    changed: String,
}

async fn display_name(state: &AppState, id: Uuid) -> String {
    match state.store.user(id).await {
        Ok(Some(u)) => u.display_name,
        _ => "a former user".to_owned(),
    }
}

/// The key fields of a piece of evidence (a JSON object as text) as name and value.
fn evidence_fields(text: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), view::value_text(v))).collect(),
        Ok(serde_json::Value::Null) => Vec::new(),
        Ok(other) => vec![("value".to_owned(), view::value_text(&other))],
        Err(_) => vec![("value".to_owned(), text.to_owned())],
    }
}

/// `GET /alerts/{id}`: one alert with its rule, entity, counts, status and evidence; the
/// triage buttons when the viewer may change it; not found when the viewer may not see it.
pub(crate) async fn detail(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    Path(id): Path<String>,
    q: Result<Query<DetailQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let Ok(id) = id.parse::<Uuid>() else { return Err(UiError::not_found(Some(v.chrome("Not found", "")))) };
    let (o, tree) = load(&state, &v.auth, Kind::Alert, id, Action::Read).await.map_err(|e| v.fail(e))?;
    let p = &v.auth.principal;
    let details = state.store.alert_details(&[id]).await.map_err(|e| v.fail(e))?.remove(&id);
    let evidence =
        if details.is_some() { state.store.alert_evidence(id).await.map_err(|e| v.fail(e))? } else { Vec::new() };
    let names = OrgNames::new(state.store.orgs().await.map_err(|e| v.fail(e))?, &v);
    // Who triaged it is for the owner's chain, as the envelope of any object.
    let chain = tree.relation(p.org, o.owner).in_chain();
    let may_write = can(p, &tree, &o.marking(), Action::Write).allowed();
    let mut status_by = None;
    if chain && let Some(u) = details.as_ref().and_then(|d| d.status_by) {
        status_by = Some(display_name(&state, u).await);
    }
    let buttons = match details.as_ref().map(|d| d.status) {
        Some(s) if may_write => {
            let mut b = Vec::new();
            if s == AlertStatus::New {
                b.push(TriageButton { status: "acknowledged", label: "Acknowledge" });
            }
            if s != AlertStatus::Closed {
                b.push(TriageButton { status: "closed", label: "Close" });
            }
            if s != AlertStatus::New {
                b.push(TriageButton { status: "new", label: "Reopen" });
            }
            b
        }
        _ => Vec::new(),
    };
    let evidence_capped = details.as_ref().is_some_and(|d| d.count > evidence.len() as i64);
    let evidence = evidence
        .into_iter()
        .map(|e| EvidenceRow {
            time: e.ts.map(view::when),
            fields: evidence_fields(&e.fields),
            event: e.event_id.map(|n| (format!("/events/{n}"), format!("Event {n}"))),
            source: e.source,
            position: e.position,
        })
        .collect();
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let notice = match q.changed.as_str() {
        "acknowledged" => Some("Alert acknowledged."),
        "closed" => Some("Alert closed."),
        "new" => Some("Alert reopened."),
        _ => None,
    };
    let d = details.as_ref();
    let page = DetailPage {
        chrome: v.chrome(d.map_or_else(|| o.title.clone(), |d| d.rule_title.clone()), "/alerts"),
        title: d.map_or_else(|| o.title.clone(), |d| d.rule_title.clone()),
        tlp: view::tlp_badge(o.tlp),
        org: names.link(o.owner),
        monitored: d.is_some(),
        level: level_badge(d),
        rule_id: d.map(|d| d.rule_id.clone()).unwrap_or_default(),
        engine: d.map(|d| d.engine.clone()).unwrap_or_default(),
        tags: d.map(|d| d.tags.clone()).unwrap_or_default(),
        entity: d.map(|d| d.entity.clone()).unwrap_or_default(),
        count: d.map_or(0, |d| d.count),
        first_seen: d.map(|d| view::when(d.first_seen)),
        last_seen: d.map(|d| view::when(d.last_seen)),
        created: view::when(o.created_at),
        status: d.map_or("No triage status", |d| status_label(d.status)),
        status_by,
        status_at: d.and_then(|d| d.status_at).map(view::when),
        buttons,
        action: format!("/alerts/{id}/status"),
        object_href: format!("/objects/alerts/{id}"),
        evidence,
        evidence_capped,
        notice,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StatusForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    status: String,
}

/// `POST /alerts/{id}/status`: acknowledges, closes or reopens an alert (whoever may amend it:
/// its organisation's security lead, an analyst of a CERT in its chain). The change is in the
/// audit log.
pub(crate) async fn set_status(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    Path(id): Path<String>,
    f: Result<Form<StatusForm>, FormRejection>,
) -> Result<Response, UiError> {
    let f = super::form(f, &v)?;
    v.check_csrf(&f.csrf)?;
    let Ok(id) = id.parse::<Uuid>() else { return Err(UiError::not_found(Some(v.chrome("Not found", "")))) };
    let status: AlertStatus = f.status.parse().map_err(|e: String| {
        UiError::page(StatusCode::BAD_REQUEST, "Cannot do that", e, Some(v.chrome("Cannot do that", "")))
    })?;
    load(&state, &v.auth, Kind::Alert, id, Action::Write).await.map_err(|e| v.fail(e))?;
    if state.store.alert_details(&[id]).await.map_err(|e| v.fail(e))?.is_empty() {
        return Err(UiError::page(
            StatusCode::CONFLICT,
            "Cannot do that",
            "This alert was not raised by monitoring; it has no triage status.",
            Some(v.chrome("Cannot do that", "")),
        ));
    }
    state.store.set_alert_status(&v.auth.actor(), id, status).await.map_err(|e| v.fail(e))?;
    Ok(Redirect::to(&format!("/alerts/{id}?changed={}", status.as_str())).into_response())
}
