//! The web UI: server-rendered pages (askama templates), no JavaScript build step, no CDN.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};

use crate::AppState;

/// Every UI route.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
}

/// The page for unknown paths.
pub(crate) fn not_found_page() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, Html("<!doctype html><title>Not found</title><h1>Not found</h1>"))
}
