//! Live monitoring's API: `POST /api/v1/ingest` (records in), `GET /api/v1/events/search` and
//! `GET /api/v1/events/log/{number}` (the event store), and the alert workflow
//! (`GET /api/v1/alerts/{id}/evidence`, `POST /api/v1/alerts/{id}/status`). Alerts themselves
//! are listed and read at `/api/v1/alerts` like every marked object, with their monitoring
//! details under `alert`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nigehban_event::{Source, codec};
use nigehban_policy::{Action, Kind, Tlp, can_create};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::objects::load;
use super::{JsonBody, PathId, QueryParams};
use crate::auth::Auth;
use crate::monitor::parse::{self, ParseError, RecordError, Target};
use crate::monitor::{IngestRefusal, Monitor};
use crate::{ApiError, AppState};

pub(crate) fn routes(max_request_bytes: usize) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/ingest", post(ingest).layer(DefaultBodyLimit::max(max_request_bytes)))
        .route("/api/v1/events/search", get(search_events))
        .route("/api/v1/events/log/{number}", get(stored_event))
        .route("/api/v1/alerts/{id}/evidence", get(alert_evidence))
        .route("/api/v1/alerts/{id}/status", post(alert_status))
}

pub(super) fn monitor(state: &AppState) -> Result<&Arc<Monitor>, ApiError> {
    // Not a 5xx: sending again to this node will never work (a client must not retry here).
    state.monitor().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "monitoring_off",
            "live monitoring does not run on this node: send events to a node that ingests",
        )
    })
}

/// Query parameters of `POST /api/v1/ingest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestParams {
    /// A name for where the records come from (a host, a file); shown with events and alerts.
    pub source: Option<String>,
    /// The records' format (`json`, `syslog`, `zeek`, `access`, `squid`, `zimbra`, `eml`,
    /// `evtx`); recognised by content when absent.
    pub format: Option<String>,
    /// The events' TLP (`CLEAR` … `AMBER+STRICT`; default `AMBER+STRICT`). RED is refused:
    /// monitoring data is for the organisation's chain.
    pub tlp: Option<String>,
}

/// What ingest stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestOut {
    /// Events stored (durably, before this answer was sent).
    pub accepted: u64,
    /// Records that could not be read.
    pub rejected: u64,
    /// The first [`parse::MAX_ERRORS`] of them, by line (text) or byte offset (binary).
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<RecordError>,
    /// The format the records were read as.
    pub format: Option<&'static str>,
}

/// Stores records from the organisation the caller acts for. The answer is sent once the
/// events are durable; 429 with `Retry-After` when the server is behind.
pub(crate) async fn ingest(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    QueryParams(p): QueryParams<IngestParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let org = auth.principal.org;
    match can_create(&auth.principal, Kind::Event, org) {
        nigehban_policy::Decision::Allow => {}
        nigehban_policy::Decision::Forbidden(r) => return Err(ApiError::refused(r)),
        nigehban_policy::Decision::Hidden => return Err(ApiError::not_found("organisation")),
    }
    let monitor = monitor(&state)?.clone();
    let tlp = match p.tlp.as_deref() {
        None => monitor.config.default_tlp,
        Some(t) => {
            let tlp: Tlp =
                t.parse().map_err(|e: nigehban_policy::TlpError| ApiError::bad_request(format!("tlp: {e}")))?;
            if tlp == Tlp::Red {
                return Err(ApiError::bad_request("tlp: RED is for named people; monitoring data goes to the chain"));
            }
            tlp
        }
    };
    let source = match p.source.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if s.len() <= 256 => s.to_owned(),
        Some(_) => return Err(ApiError::bad_request("source: at most 256 bytes")),
        None => auth.token.as_ref().map_or_else(|| "upload".to_owned(), |t| format!("token {}", t.name)),
    };
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let format = p.format.clone();
    let limit = monitor.config.max_decompressed_bytes;
    let parsed = tokio::task::spawn_blocking(move || {
        let owned;
        let bytes: &[u8] = if gzip {
            owned = parse::gunzip(&body, limit)?;
            &owned
        } else {
            &body
        };
        let target = Target { org, tlp, source: &source };
        parse::parse(bytes, format.as_deref(), &target)
    })
    .await
    .map_err(|e| {
        tracing::error!(message = "Parsing an ingest request failed.", error = %e);
        ApiError::internal()
    })?
    .map_err(|e| match e {
        ParseError::TooLarge(_) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", e.to_string()),
        other => ApiError::bad_request(other.to_string()),
    })?;
    if parsed.rejected > 0 {
        monitor.metrics.records_rejected.fetch_add(parsed.rejected, std::sync::atomic::Ordering::Relaxed);
    }
    let mut parsed = parsed;
    match monitor.store_parsed(&parsed.events, &mut parsed.parsed).await {
        Ok(_) => {}
        Err(IngestRefusal::Busy(why)) => {
            let mut resp =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", format!("{why}; nothing was stored, send again"))
                    .into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return Ok(resp);
        }
        Err(IngestRefusal::Rejected(why)) => {
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "event_too_large", why));
        }
        Err(IngestRefusal::Store(e)) => return Err(e.into()),
    }
    Ok(axum::Json(IngestOut {
        accepted: parsed.events.len() as u64,
        rejected: parsed.rejected,
        errors: parsed.errors,
        format: parsed.format,
    })
    .into_response())
}

/// Query parameters of the event search.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventSearchParams {
    /// Events at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Events before this time (RFC 3339).
    pub to: Option<String>,
    /// Only this organisation's.
    pub org: Option<Uuid>,
    /// `event.dataset`, channel or format (e.g. `linux.auth`, `Security`, `syslog`).
    pub dataset: Option<String>,
    pub host: Option<String>,
    pub source: Option<String>,
    /// Text anywhere in the event (a user, an address, a hash), case-insensitive.
    pub q: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (1–1000, default 100).
    pub limit: Option<u32>,
}

/// A stored event as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventOut {
    pub id: i64,
    pub org: Uuid,
    pub tlp: String,
    /// When the event happened (RFC 3339), if it said.
    #[schema(value_type = Option<String>)]
    pub time: Option<jiff::Timestamp>,
    #[schema(value_type = String)]
    pub received: jiff::Timestamp,
    pub source: String,
    pub dataset: Option<String>,
    pub host: Option<String>,
    /// The normalized fields.
    #[schema(value_type = Object)]
    pub fields: serde_json::Value,
    /// The original record.
    pub raw: String,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPageOut {
    pub items: Vec<EventOut>,
    pub next_cursor: Option<String>,
}

pub(crate) fn event_out(e: nigehban_store::StoredEvent) -> EventOut {
    let source = Arc::new(Source { name: e.source.clone(), organisation: None });
    let (fields, raw) = match codec::decode(&e.record, source) {
        Ok(ev) => (ev.fields_json(), ev.raw.into_string()),
        Err(err) => (serde_json::json!({ "error": err.to_string() }), String::new()),
    };
    EventOut {
        id: e.id,
        org: e.org_id,
        tlp: e.tlp,
        time: e.ts.map(nigehban_store::timestamp),
        received: nigehban_store::timestamp(e.received_at),
        source: e.source,
        dataset: e.dataset,
        host: e.host,
        fields,
        raw,
    }
}

fn parse_time(what: &str, s: Option<&str>) -> Result<Option<i64>, ApiError> {
    s.filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<jiff::Timestamp>()
                .map(|t| t.as_microsecond())
                .map_err(|e| ApiError::bad_request(format!("{what}: {s:?} is not an RFC 3339 time: {e}")))
        })
        .transpose()
}

/// Searches the stored events the caller may see, newest first.
pub(crate) async fn search_events(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    QueryParams(p): QueryParams<EventSearchParams>,
) -> Result<Response, ApiError> {
    let tree = state.tree().await?;
    let before = p
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>().map_err(|_| ApiError::bad_request(format!("cursor {c:?} is not a cursor this API issued")))
        })
        .transpose()?;
    let limit = match p.limit {
        None => 100,
        Some(n) if (1..=1000).contains(&n) => n,
        Some(n) => return Err(ApiError::bad_request(format!("limit: {n} is not between 1 and 1000"))),
    };
    let q = nigehban_store::EventQuery {
        org: p.org,
        from: parse_time("from", p.from.as_deref())?,
        to: parse_time("to", p.to.as_deref())?,
        dataset: p.dataset,
        host: p.host,
        source: p.source,
        text: p.q,
        before,
        limit,
    };
    let page = state.store.search_events(&auth.principal, &tree, &q).await?;
    let items = page.items.into_iter().map(event_out).collect();
    Ok(axum::Json(EventPageOut { items, next_cursor: page.next.map(|n| n.to_string()) }).into_response())
}

/// One stored event (404 when the caller may not see it).
pub(crate) async fn stored_event(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::bad_request(format!("{id:?} is not an event number")))?;
    let tree = state.tree().await?;
    let e = state.store.event(&auth.principal, &tree, id).await?.ok_or_else(|| ApiError::not_found("event"))?;
    Ok(axum::Json(event_out(e)).into_response())
}

/// An alert's evidence: the matching events (at most [`nigehban_store::MAX_EVIDENCE`]).
pub(crate) async fn alert_evidence(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    load(&state, &auth, Kind::Alert, id, Action::Read).await?;
    let evidence = state.store.alert_evidence(id).await?;
    let items: Vec<serde_json::Value> = evidence
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "event_id": e.event_id,
                "time": e.ts.map(nigehban_store::timestamp),
                "source": e.source,
                "position": e.position,
                "fields": serde_json::from_str::<serde_json::Value>(&e.fields).unwrap_or(serde_json::Value::Null),
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "items": items })).into_response())
}

/// A new triage status for an alert.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertStatusIn {
    /// `new`, `acknowledged` or `closed`.
    pub status: String,
}

/// Acknowledges, closes or reopens an alert (whoever may amend it: its organisation's security
/// lead, a CERT analyst of its chain).
pub(crate) async fn alert_status(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    PathId(id): PathId,
    JsonBody(req): JsonBody<AlertStatusIn>,
) -> Result<Response, ApiError> {
    let status: nigehban_store::AlertStatus =
        req.status.parse().map_err(|e: String| ApiError::bad_request(format!("status: {e}")))?;
    load(&state, &auth, Kind::Alert, id, Action::Write).await?;
    state.store.set_alert_status(&auth.actor(), id, status).await?;
    let details = state.store.alert_details(&[id]).await?.remove(&id);
    Ok(axum::Json(serde_json::json!({ "id": id, "alert": details })).into_response())
}
