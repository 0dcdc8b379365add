//! Retro-hunts through the API: `POST /api/v1/retrohunts` starts one (Sigma rules and/or
//! indicators over a stored window; 202 with its id), `GET /api/v1/retrohunts` lists the
//! caller's organisation's hunts, `GET /api/v1/retrohunts/{id}` shows one with its progress and
//! the alerts it found, `POST /api/v1/retrohunts/{id}/cancel` stops it.
//!
//! Who may hunt: CERT and national analysts and managers, an organisation's security lead (over
//! its own organisation); a hunt reads only the events its requester may read, and is seen by
//! the hunters of the organisation that asked for it. Only where live monitoring runs.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::monitoring::monitor;
use super::{JsonBody, PathId, QueryParams, decode_cursor, encode_cursor, page_limit, rfc3339};
use crate::auth::Auth;
use crate::monitor::retro::{self, Definition, Request};
use crate::{ApiError, AppState};

/// The alerts a hunt's page shows at most.
const MAX_ALERTS: u32 = 200;

/// `max_request_bytes`: the largest body of `POST /api/v1/retrohunts` (ingest's limit: a peer
/// CERT's STIX bundle may be larger than the API's usual limit).
pub(crate) fn routes(max_request_bytes: usize) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/retrohunts", get(list).post(create).layer(DefaultBodyLimit::max(max_request_bytes)))
        .route("/api/v1/retrohunts/{id}", get(read))
        .route("/api/v1/retrohunts/{id}/cancel", post(cancel))
}

/// A retro-hunt to start. Give `rules`, `indicators` or `stix` (or several).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRetroHunt {
    /// What the hunt is for (shown in lists).
    pub title: String,
    /// Sigma rules: one or more YAML documents (`---` between them), correlation rules
    /// included. A rule that does not compile is refused (400 naming it) before anything runs.
    pub rules: Option<String>,
    /// Indicator values: IPv4/IPv6 addresses and networks, domains, URLs, e-mail addresses,
    /// MD5/SHA-1/SHA-256 hashes (`type:value` names the type).
    pub indicators: Option<Vec<String>>,
    /// A STIX 2.1 bundle (indicators with simple patterns; TLP from its markings).
    #[schema(value_type = Option<Object>)]
    pub stix: Option<serde_json::Value>,
    /// Whether a STIX indicator's `valid_from` bounds the past (default false: a retro-hunt
    /// looks for who talked to an indicator before it was known).
    pub respect_valid_from: Option<bool>,
    /// The window's start, over event time (RFC 3339, inclusive).
    pub from: String,
    /// The window's end (RFC 3339, exclusive).
    pub to: String,
    /// Only these organisations' events (ids); by default every organisation whose events the
    /// caller may read. Organisations outside that are not read.
    pub orgs: Option<Vec<Uuid>>,
}

/// A retro-hunt's counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetroHuntProgressOut {
    /// Events of the window the requester may read.
    pub total: i64,
    /// Events read and detected so far.
    pub scanned: i64,
    /// Detections found.
    pub matches: i64,
    /// Of those, detections a retro-hunt had already counted (not counted again).
    pub already_counted: i64,
    /// Of those, detections not raised because their marking would be TLP:RED.
    pub withheld: i64,
    pub alerts_created: i64,
    /// Alerts of earlier retro-hunts this one added detections to.
    pub alerts_updated: i64,
    /// Alerts found again with nothing new.
    pub alerts_known: i64,
}

/// An alert a retro-hunt found.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetroHuntAlertOut {
    pub id: Uuid,
    pub title: String,
    /// `created`, `updated` (an earlier retro-hunt's alert it added to) or `known`.
    pub relation: String,
    /// The organisation whose events matched (the alert's owner).
    pub owner: Uuid,
    pub tlp: String,
    pub count: Option<i64>,
}

/// A retro-hunt.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetroHuntOut {
    pub id: Uuid,
    pub title: String,
    /// `queued`, `running`, `done`, `failed` or `cancelled`.
    pub status: String,
    /// The organisation that asked for it.
    pub org: Uuid,
    pub created_by: Option<Uuid>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub from: String,
    pub to: String,
    /// The organisations asked for; absent: every one the requester may read.
    pub orgs: Option<Vec<Uuid>>,
    /// Sigma rules, correlation rules and indicators loaded.
    pub rules: i64,
    pub correlations: i64,
    pub indicators: i64,
    pub progress: RetroHuntProgressOut,
    /// Why it failed.
    pub error: Option<String>,
    /// What loading the definition noted (skipped STIX indicators, unmapped log sources).
    pub warnings: Vec<String>,
    /// What it hunts with, as it was sent (one hunt only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub definition: Option<serde_json::Value>,
    /// The alerts it found that the caller may see (one hunt only; at most 200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<RetroHuntAlertOut>>,
}

/// A page of retro-hunts, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetroHuntList {
    pub items: Vec<RetroHuntOut>,
    pub next_cursor: Option<String>,
}

/// Query parameters of the list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    cursor: Option<String>,
    limit: Option<u32>,
}

pub(crate) fn hunt_out(h: nigehban_store::RetroHunt) -> RetroHuntOut {
    let p = h.progress;
    RetroHuntOut {
        id: h.id,
        title: h.title,
        status: h.status.as_str().to_owned(),
        org: h.org,
        created_by: h.created_by,
        created_at: rfc3339(h.created_at),
        started_at: h.started_at.map(rfc3339),
        finished_at: h.finished_at.map(rfc3339),
        from: rfc3339(h.from),
        to: rfc3339(h.to),
        orgs: h.orgs,
        rules: h.rules,
        correlations: h.correlations,
        indicators: h.indicators,
        progress: RetroHuntProgressOut {
            total: p.total,
            scanned: p.scanned,
            matches: p.matches,
            already_counted: p.already_counted,
            withheld: p.withheld,
            alerts_created: p.alerts_created,
            alerts_updated: p.alerts_updated,
            alerts_known: p.alerts_known,
        },
        error: h.error,
        warnings: h.warnings,
        definition: None,
        alerts: None,
    }
}

/// An RFC 3339 time of the request, as µs.
pub(crate) fn parse_time(what: &str, s: &str) -> Result<i64, ApiError> {
    s.trim()
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_microsecond())
        .map_err(|e| ApiError::bad_request(format!("{what}: {s:?} is not an RFC 3339 time: {e}")))
}

/// Starts a retro-hunt (202 with the hunt; `Location` names it).
async fn create(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    JsonBody(req): JsonBody<CreateRetroHunt>,
) -> Result<Response, ApiError> {
    retro::may_hunt(&auth.principal).map_err(ApiError::refused)?;
    let monitor = monitor(&state)?.clone();
    let request = Request {
        title: req.title,
        definition: Definition {
            rules: req.rules,
            indicators: req.indicators.unwrap_or_default(),
            stix: req.stix,
            respect_valid_from: req.respect_valid_from.unwrap_or(false),
        },
        from: parse_time("from", &req.from)?,
        to: parse_time("to", &req.to)?,
        orgs: req.orgs,
    };
    let tree = state.tree().await?;
    let hunt = retro::submit(&monitor, &auth, tree, request).await?;
    let location = format!("/api/v1/retrohunts/{}", hunt.id);
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], axum::Json(hunt_out(hunt))).into_response())
}

/// The retro-hunts of the caller's organisation, newest first.
async fn list(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    QueryParams(p): QueryParams<ListParams>,
) -> Result<Response, ApiError> {
    retro::may_hunt(&auth.principal).map_err(ApiError::refused)?;
    let monitor = monitor(&state)?;
    let before = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let limit = page_limit(p.limit)?;
    let page = monitor.store.list_retrohunts(auth.principal.org, before, limit).await?;
    let items = page.items.into_iter().map(hunt_out).collect();
    Ok(axum::Json(RetroHuntList { items, next_cursor: page.next.map(encode_cursor) }).into_response())
}

/// One retro-hunt with its definition and the alerts it found that the caller may see.
async fn read(State(state): State<Arc<AppState>>, auth: Auth, PathId(id): PathId) -> Result<Response, ApiError> {
    retro::may_hunt(&auth.principal).map_err(ApiError::refused)?;
    let monitor = monitor(&state)?;
    let hunt = monitor
        .store
        .retrohunt(id)
        .await?
        .filter(|h| retro::sees(&auth.principal, h))
        .ok_or_else(|| ApiError::not_found("retro-hunt"))?;
    let tree = state.tree().await?;
    let alerts = monitor.store.retrohunt_alerts(&auth.principal, &tree, id, MAX_ALERTS).await?;
    let definition = hunt.definition.clone();
    let mut out = hunt_out(hunt);
    out.definition = Some(definition);
    out.alerts = Some(
        alerts
            .into_iter()
            .map(|(a, relation)| RetroHuntAlertOut {
                id: a.object.id,
                title: a.object.title,
                relation: relation.as_str().to_owned(),
                owner: a.object.owner,
                tlp: a.object.tlp.as_str().to_owned(),
                count: a.details.map(|d| d.count),
            })
            .collect(),
    );
    Ok(axum::Json(out).into_response())
}

/// Cancels a queued or running retro-hunt (409 when it has ended). Alerts it raised stay.
async fn cancel(State(state): State<Arc<AppState>>, auth: Auth, PathId(id): PathId) -> Result<Response, ApiError> {
    retro::may_hunt(&auth.principal).map_err(ApiError::refused)?;
    let monitor = monitor(&state)?;
    let hunt = retro::cancel(monitor, &auth, id).await?;
    Ok(axum::Json(hunt_out(hunt)).into_response())
}
