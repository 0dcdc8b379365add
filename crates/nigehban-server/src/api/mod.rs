//! The REST API under `/api/v1`.
//!
//! Conventions: JSON in and out; unknown fields refused; errors as
//! `{"error": {"code", "message"}}` with a 4xx status that names the field; lists as
//! `{"items": [...], "next_cursor": ...}` (pass `cursor` to get the next page); times in RFC 3339.

mod admin;
mod monitoring;
mod objects;
mod retrohunt;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use uuid::Uuid;

pub use admin::*;
pub use monitoring::{AlertStatusIn, EventOut, EventPageOut, IngestOut};
pub use objects::*;
pub use retrohunt::{CreateRetroHunt, RetroHuntAlertOut, RetroHuntList, RetroHuntOut, RetroHuntProgressOut};

use crate::{ApiError, AppState};

/// Every API route.
/// `max_ingest_bytes`: the largest ingest request (other routes keep the server's body limit).
pub fn routes(max_ingest_bytes: usize) -> Router<Arc<AppState>> {
    let mut r = Router::new()
        .merge(monitoring::routes(max_ingest_bytes))
        .merge(retrohunt::routes(max_ingest_bytes))
        .route("/api/v1/openapi.json", get(crate::openapi::openapi_json))
        .route("/api/v1/auth/login", post(admin::login))
        .route("/api/v1/auth/logout", post(admin::logout))
        .route("/api/v1/me", get(admin::me))
        .route("/api/v1/orgs", get(admin::list_orgs).post(admin::create_org))
        .route("/api/v1/orgs/{id}", get(admin::get_org).patch(admin::update_org))
        .route("/api/v1/users", get(admin::list_users).post(admin::create_user))
        .route("/api/v1/users/{id}", get(admin::get_user).patch(admin::update_user))
        .route("/api/v1/tokens", get(admin::list_tokens).post(admin::create_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(admin::revoke_token))
        .route("/api/v1/audit", get(admin::audit_log))
        .route("/api/v1/audit/verify", get(admin::verify_audit));
    for kind in nigehban_policy::Kind::ALL {
        r = r.merge(objects::routes(kind));
    }
    r
}

/// A JSON body; a body that is not JSON, has unknown fields or wrong types is a 400/415/413
/// naming what is wrong.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    use axum::http::StatusCode;
    match e {
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("request body: {}", std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string())),
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!(
                "request body is not valid JSON: {}",
                std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string())
            ),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body is larger than the server accepts",
        ),
        other => ApiError::new(other.status(), "invalid_body", other.body_text()),
    }
}

/// Query parameters; unknown or malformed parameters are a 400 naming them.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryParams(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_query",
                format!(
                    "query string: {}",
                    std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string())
                ),
            )),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// An identifier from the path; one that is not a UUID is a 400.
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        Uuid::parse_str(&raw)
            .map(PathId)
            .map_err(|_| ApiError::bad_request(format!("{raw:?} is not an identifier (a UUID)")))
    }
}

/// An opaque page cursor.
pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Reads a cursor this API issued.
pub fn decode_cursor(s: &str) -> Result<Uuid, ApiError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| Uuid::from_slice(&b).ok())
        .ok_or_else(|| ApiError::bad_request(format!("cursor {s:?} is not a cursor this API issued")))
}

/// Page size: 50 by default, at most 500.
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!("limit {n}: between 1 and 500"))),
    }
}

/// RFC 3339 from stored microseconds.
pub fn rfc3339(micros: i64) -> String {
    nigehban_store::timestamp(micros).to_string()
}
