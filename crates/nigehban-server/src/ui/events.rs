//! The event store: searching the stored events the viewer may see, and one event with its
//! normalized fields and original record.
//!
//! Searches go through [`nigehban_store::Store::search_events`] and one event through
//! [`nigehban_store::Store::event`], both with the policy applied in the store: an event the
//! viewer may not see is not found.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use nigehban_event::{Event, Source, codec};
use nigehban_policy::Kind;
use nigehban_policy::admin::visible_orgs;
use nigehban_store::{EventQuery, StoredEvent};
use serde::Deserialize;
use uuid::Uuid;

use super::view::{self, Choice, Link, OrgNames, TlpBadge, When};
use super::{Chrome, UiError, Viewer, render};
use crate::AppState;

const PAGE_SIZE: u32 = 50;

/// How much of the original record a search result shows.
const SUMMARY_CHARS: usize = 200;

/// The stored record as an event (the name of its source is the stored one).
fn decode(e: &StoredEvent) -> Result<Event, String> {
    let source = Arc::new(Source { name: e.source.clone(), organisation: None });
    codec::decode(&e.record, source).map_err(|err| err.to_string())
}

/// The first [`SUMMARY_CHARS`] characters of a record on one line.
fn summary(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(SUMMARY_CHARS * 4));
    let mut chars = raw.trim().chars();
    for c in chars.by_ref().take(SUMMARY_CHARS) {
        out.push(if c.is_control() { ' ' } else { c });
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// A `datetime-local` value (taken as UTC) or an RFC 3339 time, as µs since the epoch.
fn parse_time(what: &str, s: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(Some(t.as_microsecond()));
    }
    s.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| Some(z.timestamp().as_microsecond()))
        .ok_or_else(|| format!("{what}: {s:?} is not a time (expected YYYY-MM-DDTHH:MM, in UTC)"))
}

/// A time as a `datetime-local` value (UTC, to the second when it has seconds).
fn local_value(micros: i64) -> String {
    let t = nigehban_store::timestamp(micros);
    let text = t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    match text.strip_suffix(":00") {
        Some(minutes) => minutes.to_owned(),
        None => text,
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    dataset: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    cursor: String,
}

/// One event in the results.
struct EventRow {
    href: String,
    id: i64,
    time: Option<When>,
    received: When,
    org: Link,
    host: String,
    dataset: String,
    source: String,
    summary: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct SearchPage {
    chrome: Chrome,
    rows: Vec<EventRow>,
    from: String,
    to: String,
    org_choices: Vec<Choice>,
    dataset: String,
    host: String,
    source: String,
    q: String,
    filtered: bool,
    paged: bool,
    next_href: Option<String>,
    first_href: String,
}

fn not_allowed(v: &Viewer) -> UiError {
    UiError::page(
        StatusCode::FORBIDDEN,
        "Not allowed",
        format!("Your role ({}) does not read events.", v.role().label().to_lowercase()),
        Some(v.chrome("Not allowed", "")),
    )
}

/// `GET /events`: the stored events the viewer may see, newest first, by time range (UTC),
/// organisation, dataset, host, source and text, a page at a time.
pub(crate) async fn search(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    if !v.role().reads(Kind::Event) {
        return Err(not_allowed(&v));
    }
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let bad = |m: String| UiError::page(StatusCode::BAD_REQUEST, "Cannot search", m, Some(v.chrome("", "")));
    let from = parse_time("from", &q.from).map_err(bad)?;
    let to = parse_time("to", &q.to).map_err(bad)?;
    let org = match q.org.trim() {
        "" => None,
        s => Some(s.parse::<Uuid>().map_err(|_| bad(format!("{s:?} is not an organisation identifier")))?),
    };
    let before = match q.cursor.trim() {
        "" => None,
        s => Some(s.parse::<i64>().map_err(|_| bad(format!("cursor {s:?} is not a cursor this page issued")))?),
    };
    let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let query = EventQuery {
        org,
        from,
        to,
        dataset: text(&q.dataset),
        host: text(&q.host),
        source: text(&q.source),
        text: text(&q.q),
        before,
        limit: PAGE_SIZE,
    };
    let p = &v.auth.principal;
    let page = state.store.search_events(p, &v.tree, &query).await.map_err(|e| v.fail(e))?;
    let names = OrgNames::new(state.store.orgs().await.map_err(|e| v.fail(e))?, &v);
    let rows = page
        .items
        .iter()
        .map(|e| EventRow {
            href: format!("/events/{}", e.id),
            id: e.id,
            time: e.ts.map(view::when),
            received: view::when(e.received_at),
            org: names.link(e.org_id),
            host: e.host.clone().unwrap_or_default(),
            dataset: e.dataset.clone().unwrap_or_default(),
            source: e.source.clone(),
            summary: match decode(e) {
                Ok(ev) => summary(&ev.raw),
                Err(err) => format!("(the stored record cannot be read: {err})"),
            },
        })
        .collect();

    let from_value = from.map(local_value).unwrap_or_default();
    let to_value = to.map(local_value).unwrap_or_default();
    let org_value = org.map(|o| o.to_string()).unwrap_or_default();
    let dataset = query.dataset.unwrap_or_default();
    let host = query.host.unwrap_or_default();
    let source = query.source.unwrap_or_default();
    let words = query.text.unwrap_or_default();
    let href = |cursor: Option<i64>| {
        let cursor = cursor.map(|c| c.to_string()).unwrap_or_default();
        let pairs = [
            ("from", from_value.as_str()),
            ("to", &to_value),
            ("org", &org_value),
            ("dataset", &dataset),
            ("host", &host),
            ("source", &source),
            ("q", &words),
            ("cursor", &cursor),
        ];
        let parts: Vec<String> =
            pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", view::url_encode(v))).collect();
        if parts.is_empty() { "/events".to_owned() } else { format!("/events?{}", parts.join("&")) }
    };
    let mut orgs: Vec<(Uuid, String)> = visible_orgs(p, &v.tree).into_iter().map(|o| (o, names.name(o))).collect();
    orgs.sort_by(|a, b| a.1.cmp(&b.1));
    let mut org_choices =
        vec![Choice { value: String::new(), label: "Any organisation".to_owned(), selected: org.is_none() }];
    org_choices.extend(orgs.into_iter().map(|(id, name)| Choice {
        value: id.to_string(),
        label: name,
        selected: org == Some(id),
    }));
    let page = SearchPage {
        chrome: v.chrome("Event search", "/events"),
        rows,
        filtered: from.is_some()
            || to.is_some()
            || org.is_some()
            || !dataset.is_empty()
            || !host.is_empty()
            || !source.is_empty()
            || !words.is_empty(),
        paged: before.is_some(),
        next_href: page.next.map(|n| href(Some(n))),
        first_href: href(None),
        from: from_value.clone(),
        to: to_value.clone(),
        org_choices,
        dataset: dataset.clone(),
        host: host.clone(),
        source: source.clone(),
        q: words.clone(),
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    chrome: Chrome,
    id: i64,
    tlp: Option<TlpBadge>,
    tlp_text: String,
    org: Link,
    time: Option<When>,
    received: When,
    source: String,
    dataset: String,
    host: String,
    format: String,
    product: String,
    position: String,
    fields: Vec<(String, String)>,
    raw: String,
    error: Option<String>,
}

/// `GET /events/{id}`: one stored event: where and when it came from, its normalized fields
/// and its original record; not found when the viewer may not see it.
pub(crate) async fn event(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let not_found = || UiError::not_found(Some(v.chrome("Not found", "")));
    let Ok(id) = id.parse::<i64>() else { return Err(not_found()) };
    let e = state.store.event(&v.auth.principal, &v.tree, id).await.map_err(|e| v.fail(e))?.ok_or_else(not_found)?;
    let names = OrgNames::new(state.store.orgs().await.map_err(|e| v.fail(e))?, &v);
    let (fields, raw, format, product, position, error) = match decode(&e) {
        Ok(ev) => (
            ev.fields().iter().map(|f| (f.name.to_string(), f.value.to_string())).collect(),
            ev.raw.to_string(),
            ev.format.to_owned(),
            ev.product.as_str().to_owned(),
            ev.position.to_string(),
            None,
        ),
        Err(err) => (Vec::new(), String::new(), String::new(), String::new(), String::new(), Some(err)),
    };
    let page = EventPage {
        chrome: v.chrome(format!("Event {id}"), "/events"),
        id,
        tlp: e.tlp().ok().map(view::tlp_badge),
        tlp_text: e.tlp.clone(),
        org: names.link(e.org_id),
        time: e.ts.map(view::when),
        received: view::when(e.received_at),
        source: e.source,
        dataset: e.dataset.unwrap_or_default(),
        host: e.host.unwrap_or_default(),
        format,
        product,
        position,
        fields,
        raw,
        error,
    };
    Ok(render(StatusCode::OK, &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_local_and_rfc3339_times_as_utc() {
        let t = parse_time("from", "2026-11-28T10:05").unwrap().unwrap();
        assert_eq!(local_value(t), "2026-11-28T10:05");
        assert_eq!(parse_time("from", "2026-11-28T10:05:00Z").unwrap(), Some(t));
        assert_eq!(local_value(t + 7_000_000), "2026-11-28T10:05:07");
        assert_eq!(parse_time("from", " ").unwrap(), None);
        assert!(parse_time("to", "yesterday").unwrap_err().contains("to: \"yesterday\""));
    }

    #[test]
    fn summarises_records_on_one_line() {
        assert_eq!(summary("a\nb\tc"), "a b c");
        let long = "x".repeat(SUMMARY_CHARS + 1);
        assert_eq!(summary(&long).chars().count(), SUMMARY_CHARS + 1);
        assert!(summary(&long).ends_with('…'));
    }
}
