//! Marked objects: `/api/v1/{incidents,alerts,events,indicators,sightings,engagements}`.
//! One set of handlers for every kind; what differs by kind is the content of `body`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nigehban_policy::{Action, Kind, Share, ShareTarget, Tlp, can, can_create, check_share};
use nigehban_store::{NewObject, Object, ObjectFilter, ObjectUpdate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{JsonBody, PathId, QueryParams, decode_cursor, encode_cursor, page_limit};
use crate::auth::Auth;
use crate::{ApiError, AppState};

/// An object as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectOut {
    pub id: Uuid,
    pub kind: &'static str,
    /// The owning organisation.
    pub owner: Uuid,
    /// `CLEAR`, `GREEN`, `AMBER`, `AMBER+STRICT` or `RED`.
    pub tlp: &'static str,
    pub title: String,
    #[schema(value_type = Object)]
    pub body: nigehban_store::Body,
    pub created_by: Option<Uuid>,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub created_at: jiff::Timestamp,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub updated_at: jiff::Timestamp,
    pub version: i64,
    /// TLP:RED recipients (shown to the owner's chain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<Uuid>>,
    /// Assigned auditors (engagements; shown to the owner's chain and the assignees).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignees: Option<Vec<Uuid>>,
    /// Shares (shown to the owner's chain).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub shares: Option<Vec<Share>>,
    /// Alerts raised by monitoring: rule, level, entity, count, first and last seen, status.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub alert: Option<nigehban_store::AlertDetails>,
}

/// `informational` … `critical` as 0 … 4.
pub(crate) fn parse_level(s: &str) -> Result<i64, ApiError> {
    ["informational", "low", "medium", "high", "critical"]
        .iter()
        .position(|l| l.eq_ignore_ascii_case(s))
        .map(|i| i as i64)
        .ok_or_else(|| {
            ApiError::bad_request(format!("min_level: {s:?} is not informational, low, medium, high or critical"))
        })
}

/// Adds the monitoring details to alerts that have them.
pub(crate) async fn attach_alert_details(state: &AppState, items: &mut [ObjectOut]) -> Result<(), ApiError> {
    let ids: Vec<Uuid> = items.iter().map(|o| o.id).collect();
    let mut details = state.store.alert_details(&ids).await?;
    for o in items {
        o.alert = details.remove(&o.id);
    }
    Ok(())
}

/// A page of objects.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectPage {
    pub items: Vec<ObjectOut>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

pub(crate) fn object_out(o: Object, auth: &Auth, tree: &nigehban_policy::Tree) -> ObjectOut {
    let chain = tree.relation(auth.principal.org, o.owner).in_chain();
    let assigned = auth.principal.user.is_some_and(|u| o.assignees.contains(&u));
    ObjectOut {
        id: o.id,
        kind: o.kind.as_str(),
        owner: o.owner,
        tlp: o.tlp.as_str(),
        title: o.title,
        body: o.body,
        created_by: o.created_by,
        created_at: nigehban_store::timestamp(o.created_at),
        updated_at: nigehban_store::timestamp(o.updated_at),
        version: o.version,
        recipients: chain.then_some(o.recipients),
        assignees: (chain || assigned).then_some(o.assignees),
        shares: chain.then_some(o.shares),
        alert: None,
    }
}

/// List and search parameters.
#[derive(Debug, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this TLP level.
    pub tlp: Option<String>,
    /// Only objects of this organisation.
    pub owner: Option<Uuid>,
    /// Words in the title (case-insensitive).
    pub q: Option<String>,
    /// Alerts only: `new`, `acknowledged` or `closed`.
    pub status: Option<String>,
    /// Alerts only: this level and above (`informational`, `low`, `medium`, `high`, `critical`).
    pub min_level: Option<String>,
    /// From `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (1–500, default 50).
    pub limit: Option<u32>,
}

/// A new object.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateObject {
    pub title: String,
    /// `CLEAR`, `GREEN`, `AMBER`, `AMBER+STRICT` or `RED`.
    pub tlp: String,
    /// The kind's content (a JSON object).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub body: Option<serde_json::Value>,
    /// TLP:RED: the named recipients (users of the owner or its CERTs; on an engagement, also
    /// auditors assigned to it).
    #[serde(default)]
    pub recipients: Vec<Uuid>,
    /// Engagements: the assigned auditors.
    #[serde(default)]
    pub assignees: Vec<Uuid>,
}

/// A change to an object.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateObject {
    pub title: Option<String>,
    pub tlp: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub body: Option<serde_json::Value>,
    pub recipients: Option<Vec<Uuid>>,
    pub assignees: Option<Vec<Uuid>>,
    /// Refuse the change unless the object is still at this version (409 otherwise).
    pub version: Option<i64>,
}

/// A share.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    /// `org`, `community` or `public`.
    pub to: String,
    /// With `to: org`: the organisation.
    pub org: Option<Uuid>,
}

fn parse_tlp(s: &str) -> Result<Tlp, ApiError> {
    s.parse().map_err(|e: nigehban_policy::TlpError| ApiError::bad_request(format!("tlp: {e}")))
}

fn check_body(body: &serde_json::Value) -> Result<(), ApiError> {
    if body.is_object() { Ok(()) } else { Err(ApiError::bad_request("body: expected a JSON object")) }
}

pub(crate) fn routes(kind: Kind) -> Router<Arc<AppState>> {
    let base = format!("/api/v1/{}", kind.plural());
    Router::new()
        .route(&base, get(move |s, a, q| list(kind, s, a, q)).post(move |s, a, b| create(kind, s, a, b)))
        .route(
            &format!("{base}/{{id}}"),
            get(move |s, a, id| read(kind, s, a, id)).patch(move |s, a, id, b| update(kind, s, a, id, b)),
        )
        .route(&format!("{base}/{{id}}/export"), get(move |s, a, id| export(kind, s, a, id)))
        .route(&format!("{base}/{{id}}/shares"), post(move |s, a, id, b| share(kind, s, a, id, b)))
}

async fn list(
    kind: Kind,
    State(state): State<Arc<AppState>>,
    auth: Auth,
    QueryParams(p): QueryParams<ListParams>,
) -> Result<Response, ApiError> {
    let tree = state.tree().await?;
    let filter = ObjectFilter {
        kind: Some(kind),
        tlp: p.tlp.as_deref().map(parse_tlp).transpose()?,
        owner: p.owner,
        q: p.q.clone(),
        alert_status: None,
        min_level: None,
    };
    let mut filter = filter;
    if p.status.is_some() || p.min_level.is_some() {
        if kind != Kind::Alert {
            return Err(ApiError::bad_request("status and min_level filter alerts only"));
        }
        filter.alert_status = p
            .status
            .as_deref()
            .map(|s| {
                s.parse::<nigehban_store::AlertStatus>().map_err(|e| ApiError::bad_request(format!("status: {e}")))
            })
            .transpose()?;
        filter.min_level = p.min_level.as_deref().map(parse_level).transpose()?;
    }
    let before = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let page = state.store.list_objects(&auth.principal, &tree, &filter, before, page_limit(p.limit)?).await?;
    // The store re-checked every row for listing; a search is checked for searching too.
    let search = p.q.is_some();
    let items: Vec<ObjectOut> = page
        .items
        .into_iter()
        .filter(|o| !search || can(&auth.principal, &tree, &o.marking(), Action::Search).allowed())
        .map(|o| object_out(o, &auth, &tree))
        .collect();
    let mut items = items;
    if kind == Kind::Alert {
        attach_alert_details(&state, &mut items).await?;
    }
    let page = ObjectPage { items, next_cursor: page.next.map(encode_cursor) };
    // Written into a buffer of about the page's size (growing one from empty costs a
    // reallocation per doubling on a path every client polls).
    let mut body = Vec::with_capacity(64 + page.items.len() * 512);
    serde_json::to_writer(&mut body, &page).map_err(|e| {
        tracing::error!(message = "A page of objects could not be written as JSON.", error = %e);
        ApiError::internal()
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Loads an object of this kind and applies the policy; hidden objects are 404.
pub(crate) async fn load(
    state: &AppState,
    auth: &Auth,
    kind: Kind,
    id: Uuid,
    action: Action,
) -> Result<(Object, Arc<nigehban_policy::Tree>), ApiError> {
    let tree = state.tree().await?;
    let what = kind.as_str();
    let o = state.store.object(id).await?.filter(|o| o.kind == kind).ok_or_else(|| ApiError::not_found(what))?;
    ApiError::from_decision(can(&auth.principal, &tree, &o.marking(), action), what)?;
    Ok((o, tree))
}

async fn read(
    kind: Kind,
    State(state): State<Arc<AppState>>,
    auth: Auth,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let (o, tree) = load(&state, &auth, kind, id, Action::Read).await?;
    let mut out = vec![object_out(o, &auth, &tree)];
    if kind == Kind::Alert {
        attach_alert_details(&state, &mut out).await?;
    }
    Ok(axum::Json(out.pop()).into_response())
}

async fn export(
    kind: Kind,
    State(state): State<Arc<AppState>>,
    auth: Auth,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let (o, tree) = load(&state, &auth, kind, id, Action::Export).await?;
    let tlp = o.tlp;
    let name = format!("attachment; filename=\"{}-{}.json\"", kind.as_str(), o.id);
    let body = serde_json::json!({ "marking": format!("{tlp}"), "object": object_out(o, &auth, &tree) });
    let _ = state
        .store
        .audit(
            &auth.actor(),
            nigehban_store::AuditEntry::new("object.export", kind.as_str(), id, serde_json::json!({})),
        )
        .await;
    Ok((
        [(header::CONTENT_DISPOSITION, name), (header::HeaderName::from_static("x-tlp"), tlp.as_str().to_owned())],
        axum::Json(body),
    )
        .into_response())
}

async fn create(
    kind: Kind,
    State(state): State<Arc<AppState>>,
    auth: Auth,
    JsonBody(req): JsonBody<CreateObject>,
) -> Result<Response, ApiError> {
    let tlp = parse_tlp(&req.tlp)?;
    let body = req.body.unwrap_or_else(|| serde_json::json!({}));
    check_body(&body)?;
    match can_create(&auth.principal, kind, auth.principal.org) {
        nigehban_policy::Decision::Allow => {}
        nigehban_policy::Decision::Forbidden(r) => return Err(ApiError::refused(r)),
        nigehban_policy::Decision::Hidden => return Err(ApiError::not_found(kind.as_str())),
    }
    let tree = state.tree().await?;
    let new = NewObject {
        kind,
        owner: auth.principal.org,
        tlp,
        title: req.title,
        body,
        created_by: auth.principal.user,
        recipients: req.recipients,
        assignees: req.assignees,
    };
    let o = state.store.create_object(&auth.actor(), &tree, new).await?;
    Ok((StatusCode::CREATED, axum::Json(object_out(o, &auth, &tree))).into_response())
}

async fn update(
    kind: Kind,
    State(state): State<Arc<AppState>>,
    auth: Auth,
    PathId(id): PathId,
    JsonBody(req): JsonBody<UpdateObject>,
) -> Result<Response, ApiError> {
    let tlp = req.tlp.as_deref().map(parse_tlp).transpose()?;
    if let Some(b) = &req.body {
        check_body(b)?;
    }
    let (_, tree) = load(&state, &auth, kind, id, Action::Write).await?;
    let update = ObjectUpdate {
        title: req.title,
        body: req.body,
        tlp,
        recipients: req.recipients,
        assignees: req.assignees,
        expected_version: req.version,
    };
    let o = state.store.update_object(&auth.actor(), &tree, id, update).await?;
    Ok(axum::Json(object_out(o, &auth, &tree)).into_response())
}

async fn share(
    kind: Kind,
    State(state): State<Arc<AppState>>,
    auth: Auth,
    PathId(id): PathId,
    JsonBody(req): JsonBody<ShareRequest>,
) -> Result<Response, ApiError> {
    let target = match (req.to.as_str(), req.org) {
        ("org", Some(o)) => ShareTarget::Org(o),
        ("org", None) => return Err(ApiError::bad_request("org: required with to: org")),
        ("community", None) => ShareTarget::Community,
        ("public", None) => ShareTarget::Public,
        ("community" | "public", Some(_)) => return Err(ApiError::bad_request("org: only with to: org")),
        (other, _) => return Err(ApiError::bad_request(format!("to: {other:?} is not org, community or public"))),
    };
    let (o, tree) = load(&state, &auth, kind, id, Action::Share).await?;
    if let ShareTarget::Org(org) = target
        && tree.get(org).is_none()
    {
        return Err(ApiError::bad_request("org: no such organisation"));
    }
    ApiError::from_decision(check_share(&auth.principal, &tree, &o.marking(), target), kind.as_str())?;
    let o = state.store.share_object(&auth.actor(), id, Share { by: auth.principal.org, target }).await?;
    Ok((StatusCode::CREATED, axum::Json(object_out(o, &auth, &tree))).into_response())
}
