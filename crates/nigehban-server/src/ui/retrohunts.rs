//! Retro-hunts in the UI: the organisation's hunts with their status and progress and a form to
//! start one (Sigma rules and/or indicators over a window of stored events), one hunt with its
//! progress and the alerts it raised, and cancelling.
//!
//! The same checks as the API ([`crate::monitor::retro`]): who may hunt, only events the viewer
//! may read, a rule that does not compile named before anything runs.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use nigehban_policy::read_scope;
use nigehban_store::{RetroHunt, RetroHuntStatus};
use serde::Deserialize;
use uuid::Uuid;

use super::view::{self, Choice, Link, OrgNames, TlpBadge, When};
use super::{Chrome, UiError, Viewer, render};
use crate::AppState;
use crate::monitor::retro::{self, Definition, DefinitionError, Request, SubmitError};

/// Hunts listed on the page.
const PAGE_SIZE: u32 = 50;

/// Alerts shown on a hunt's page.
const MAX_ALERTS: u32 = 200;

fn status_label(s: RetroHuntStatus) -> &'static str {
    match s {
        RetroHuntStatus::Queued => "Queued",
        RetroHuntStatus::Running => "Running",
        RetroHuntStatus::Done => "Done",
        RetroHuntStatus::Failed => "Failed",
        RetroHuntStatus::Cancelled => "Cancelled",
    }
}

/// A `datetime-local` value (taken as UTC) or an RFC 3339 time, as µs since the epoch.
fn parse_time(what: &str, s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("Give the window's {what} time."));
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_microsecond());
    }
    s.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp().as_microsecond())
        .ok_or_else(|| format!("The {what} time {s:?} is not a time (expected YYYY-MM-DDTHH:MM, in UTC)."))
}

/// One hunt in the list.
struct HuntRow {
    href: String,
    title: String,
    status: &'static str,
    window: String,
    scanned: i64,
    total: i64,
    matches: i64,
    alerts: i64,
    created: When,
}

fn window_text(h: &RetroHunt) -> String {
    format!("{} – {}", view::when(h.from).text, view::when(h.to).text)
}

fn hunt_row(h: &RetroHunt) -> HuntRow {
    HuntRow {
        href: format!("/retrohunts/{}", h.id),
        title: h.title.clone(),
        status: status_label(h.status),
        window: window_text(h),
        scanned: h.progress.scanned,
        total: h.progress.total,
        matches: h.progress.matches,
        alerts: h.progress.alerts_created + h.progress.alerts_updated + h.progress.alerts_known,
        created: view::when(h.created_at),
    }
}

/// The start form's fields.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    rules: String,
    #[serde(default)]
    indicators: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    org: String,
}

#[derive(Template)]
#[template(path = "retrohunts.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<HuntRow>,
    monitoring: bool,
    next_href: Option<String>,
    paged: bool,
    org_choices: Vec<Choice>,
    form_title: String,
    form_rules: String,
    form_indicators: String,
    form_from: String,
    form_to: String,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    cursor: String,
}

fn not_allowed(v: &Viewer) -> UiError {
    UiError::page(
        StatusCode::FORBIDDEN,
        "Not allowed",
        format!("Your role ({}) does not run retro-hunts.", v.role().label().to_lowercase()),
        Some(v.chrome("Not allowed", "")),
    )
}

async fn list_page(
    state: &AppState,
    v: &Viewer,
    cursor: &str,
    form: StartForm,
    error: Option<String>,
) -> Result<ListPage, UiError> {
    let before = match cursor.trim() {
        "" => None,
        c => Some(crate::api::decode_cursor(c).map_err(|e| v.fail(e))?),
    };
    let page = state.store.list_retrohunts(v.auth.principal.org, before, PAGE_SIZE).await.map_err(|e| v.fail(e))?;
    let names = OrgNames::new(state.store.orgs().await.map_err(|e| v.fail(e))?, v);
    let mut orgs: Vec<(Uuid, String)> =
        read_scope(&v.auth.principal, &v.tree).chain_owners.into_iter().map(|o| (o, names.name(o))).collect();
    orgs.sort_by(|a, b| a.1.cmp(&b.1));
    let mut org_choices = vec![Choice {
        value: String::new(),
        label: "Every organisation whose events I may read".to_owned(),
        selected: form.org.is_empty(),
    }];
    org_choices.extend(orgs.into_iter().map(|(id, name)| Choice {
        selected: form.org == id.to_string(),
        value: id.to_string(),
        label: name,
    }));
    Ok(ListPage {
        chrome: v.chrome("Retro-hunts", "/retrohunts"),
        rows: page.items.iter().map(hunt_row).collect(),
        monitoring: state.monitor().is_some(),
        next_href: page.next.map(|n| format!("/retrohunts?cursor={}", crate::api::encode_cursor(n))),
        paged: before.is_some(),
        org_choices,
        form_title: form.title,
        form_rules: form.rules,
        form_indicators: form.indicators,
        form_from: form.from,
        form_to: form.to,
        error,
    })
}

/// `GET /retrohunts`: the viewer's organisation's retro-hunts, newest first, and the form.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    if retro::may_hunt(&v.auth.principal).is_err() {
        return Err(not_allowed(&v));
    }
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let page = list_page(&state, &v, &q.cursor, StartForm::default(), None).await?;
    Ok(render(StatusCode::OK, &page))
}

/// The definition of the form: Sigma rules, and indicator values one per line or a STIX
/// bundle.
fn definition(f: &StartForm) -> Result<Definition, String> {
    let rules = Some(f.rules.clone()).filter(|r| !r.trim().is_empty());
    let text = f.indicators.trim();
    if text.starts_with('{') {
        let stix: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("The indicators look like a STIX bundle but are not JSON: {e}."))?;
        return Ok(Definition { rules, stix: Some(stix), ..Definition::default() });
    }
    // Every line, blank and comment lines included, so that a problem names the line.
    let indicators = if text.is_empty() { Vec::new() } else { f.indicators.lines().map(str::to_owned).collect() };
    Ok(Definition { rules, indicators, ..Definition::default() })
}

/// What the form says when the hunt was refused.
fn problem(e: &SubmitError) -> Option<String> {
    match e {
        SubmitError::Definition(DefinitionError::Indicator { index, value, reason }) => {
            Some(format!("Indicators, line {}: {value:?}: {reason}.", index + 1))
        }
        SubmitError::Definition(d) => Some(format!("{d}.")),
        SubmitError::Api(a) if a.status == StatusCode::BAD_REQUEST => Some(a.message.clone()),
        SubmitError::Api(_) => None,
    }
}

/// `POST /retrohunts`: starts a retro-hunt, then shows it.
pub(crate) async fn start(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    f: Result<Form<StartForm>, FormRejection>,
) -> Result<Response, UiError> {
    let f = super::form(f, &v)?;
    v.check_csrf(&f.csrf)?;
    if retro::may_hunt(&v.auth.principal).is_err() {
        return Err(not_allowed(&v));
    }
    let Some(monitor) = state.monitor().cloned() else {
        return Err(UiError::page(
            StatusCode::NOT_FOUND,
            "Not available here",
            "Retro-hunts run where live monitoring runs, and this node does not run it.",
            Some(v.chrome("Not available here", "")),
        ));
    };
    let checked = (|| {
        let org = match f.org.trim() {
            "" => None,
            s => Some(vec![s.parse::<Uuid>().map_err(|_| format!("{s:?} is not an organisation identifier."))?]),
        };
        Ok::<_, String>((parse_time("start", &f.from)?, parse_time("end", &f.to)?, org, definition(&f)?))
    })();
    let request = match checked {
        Ok((from, to, orgs, definition)) => Request { title: f.title.clone(), definition, from, to, orgs },
        Err(message) => {
            let page = list_page(&state, &v, "", f, Some(message)).await?;
            return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
        }
    };
    match retro::submit(&monitor, &v.auth, v.tree.clone(), request).await {
        Ok(hunt) => Ok(Redirect::to(&format!("/retrohunts/{}", hunt.id)).into_response()),
        Err(e) => match problem(&e) {
            Some(message) => {
                let page = list_page(&state, &v, "", f, Some(message)).await?;
                Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
            }
            None => Err(v.fail(crate::ApiError::from(e))),
        },
    }
}

/// An alert a hunt found.
struct AlertRow {
    href: String,
    title: String,
    relation: &'static str,
    org: Link,
    count: String,
    tlp: TlpBadge,
}

#[derive(Template)]
#[template(path = "retrohunt.html")]
struct DetailPage {
    chrome: Chrome,
    id: Uuid,
    title: String,
    status: &'static str,
    ended: bool,
    notice: Option<&'static str>,
    created: When,
    started: Option<When>,
    finished: Option<When>,
    window: String,
    orgs: Vec<Link>,
    rules: i64,
    correlations: i64,
    indicators: i64,
    total: i64,
    scanned: i64,
    matches: i64,
    already_counted: i64,
    withheld: i64,
    alerts_created: i64,
    alerts_updated: i64,
    alerts_known: i64,
    error: Option<String>,
    warnings: Vec<String>,
    alert_rows: Vec<AlertRow>,
    rules_text: String,
    indicators_text: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DetailQuery {
    #[serde(default)]
    cancelled: String,
}

/// `GET /retrohunts/{id}`: one hunt with its progress and the alerts it found.
pub(crate) async fn detail(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    Path(id): Path<String>,
    q: Result<Query<DetailQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let not_found = || UiError::not_found(Some(v.chrome("Not found", "")));
    let Ok(id) = id.parse::<Uuid>() else { return Err(not_found()) };
    let p = &v.auth.principal;
    let h = state.store.retrohunt(id).await.map_err(|e| v.fail(e))?;
    let Some(h) = h.filter(|h| retro::sees(p, h)) else { return Err(not_found()) };
    let names = OrgNames::new(state.store.orgs().await.map_err(|e| v.fail(e))?, &v);
    let alerts = state.store.retrohunt_alerts(p, &v.tree, id, MAX_ALERTS).await.map_err(|e| v.fail(e))?;
    let alert_rows = alerts
        .iter()
        .map(|(a, relation)| AlertRow {
            href: format!("/alerts/{}", a.object.id),
            title: a.object.title.clone(),
            relation: match relation {
                nigehban_store::RetroHuntRelation::Created => "Raised",
                nigehban_store::RetroHuntRelation::Updated => "Added to",
                nigehban_store::RetroHuntRelation::Known => "Found again",
            },
            org: names.link(a.object.owner),
            count: a.details.as_ref().map_or_else(|| "—".to_owned(), |d| d.count.to_string()),
            tlp: view::tlp_badge(a.object.tlp),
        })
        .collect();
    let def: Definition = serde_json::from_value(h.definition.clone()).unwrap_or_default();
    let indicators_text = match &def.stix {
        Some(b) => serde_json::to_string_pretty(b).unwrap_or_default(),
        None => def.indicators.join("\n"),
    };
    let cancelled = q.map(|Query(q)| q).unwrap_or_default().cancelled == "1";
    let page = DetailPage {
        chrome: v.chrome(h.title.clone(), "/retrohunts"),
        id: h.id,
        status: status_label(h.status),
        ended: h.status.is_final(),
        notice: cancelled.then_some("The retro-hunt was cancelled. Alerts it raised stay."),
        created: view::when(h.created_at),
        started: h.started_at.map(view::when),
        finished: h.finished_at.map(view::when),
        window: window_text(&h),
        orgs: h.orgs.as_ref().map_or_else(Vec::new, |o| o.iter().map(|o| names.link(*o)).collect()),
        rules: h.rules,
        correlations: h.correlations,
        indicators: h.indicators,
        total: h.progress.total,
        scanned: h.progress.scanned,
        matches: h.progress.matches,
        already_counted: h.progress.already_counted,
        withheld: h.progress.withheld,
        alerts_created: h.progress.alerts_created,
        alerts_updated: h.progress.alerts_updated,
        alerts_known: h.progress.alerts_known,
        error: h.error.clone(),
        warnings: h.warnings.clone(),
        alert_rows,
        rules_text: def.rules.unwrap_or_default(),
        indicators_text,
        title: h.title,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CancelForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /retrohunts/{id}/cancel`: stops a queued or running hunt.
pub(crate) async fn cancel(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    Path(id): Path<String>,
    f: Result<Form<CancelForm>, FormRejection>,
) -> Result<Response, UiError> {
    let f = super::form(f, &v)?;
    v.check_csrf(&f.csrf)?;
    let Ok(id) = id.parse::<Uuid>() else { return Err(UiError::not_found(Some(v.chrome("Not found", "")))) };
    if retro::may_hunt(&v.auth.principal).is_err() {
        return Err(not_allowed(&v));
    }
    let Some(monitor) = state.monitor() else { return Err(UiError::not_found(Some(v.chrome("Not found", "")))) };
    retro::cancel(monitor, &v.auth, id).await.map_err(|e| v.fail(e))?;
    Ok(Redirect::to(&format!("/retrohunts/{id}?cancelled=1")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_reads_lists_bundles_and_times() {
        let f = StartForm { indicators: "203.0.113.9\n\nevil.example".into(), ..StartForm::default() };
        assert_eq!(definition(&f).map(|d| d.indicators.len()), Ok(3));
        let f = StartForm { indicators: " {\"type\": \"bundle\"}".into(), ..StartForm::default() };
        assert!(definition(&f).is_ok_and(|d| d.stix.is_some() && d.indicators.is_empty()));
        let f = StartForm { indicators: "{not json".into(), ..StartForm::default() };
        assert!(definition(&f).is_err());
        assert_eq!(parse_time("start", "2026-11-28T10:05"), parse_time("start", "2026-11-28T10:05:00Z"));
        assert!(parse_time("start", "").is_err());
    }
}
