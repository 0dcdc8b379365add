//! `/healthz` and `/metrics` (Prometheus text format).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    requests: [AtomicU64; 5],
    pub(crate) logins_ok: AtomicU64,
    pub(crate) logins_failed: AtomicU64,
    pub(crate) logins_throttled: AtomicU64,
}

/// Counts responses by status class.
pub(crate) async fn count(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let class = (resp.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    state.metrics.requests[class].fetch_add(1, Ordering::Relaxed);
    resp
}

/// Answers 404 for what this node's roles do not serve (see [`crate::ServerConfig::serve_api`]).
pub(crate) async fn roles(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let served = match path {
        "/healthz" | "/metrics" => true,
        "/api/v1/ingest" => state.config.serve_ingest,
        _ => state.config.serve_api,
    };
    if served {
        return next.run(req).await;
    }
    crate::error::ApiError::new(
        StatusCode::NOT_FOUND,
        "not_on_this_node",
        "this node does not serve this path (see its roles)",
    )
    .into_response()
}

pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!(message = "Health check: the database does not answer.", error = %e);
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.metrics;
    let mut out = String::new();
    out.push_str("# HELP nigehban_http_responses_total HTTP responses by status class.\n");
    out.push_str("# TYPE nigehban_http_responses_total counter\n");
    for (i, c) in m.requests.iter().enumerate() {
        out.push_str(&format!(
            "nigehban_http_responses_total{{class=\"{}xx\"}} {}\n",
            i + 1,
            c.load(Ordering::Relaxed)
        ));
    }
    out.push_str("# HELP nigehban_logins_total Sign-in attempts by outcome.\n");
    out.push_str("# TYPE nigehban_logins_total counter\n");
    for (outcome, c) in [("ok", &m.logins_ok), ("failed", &m.logins_failed), ("throttled", &m.logins_throttled)] {
        out.push_str(&format!("nigehban_logins_total{{outcome=\"{outcome}\"}} {}\n", c.load(Ordering::Relaxed)));
    }
    if let Some(monitor) = state.monitor() {
        monitor.render_metrics(&mut out);
    }
    out.push_str("# HELP nigehban_info The running server.\n# TYPE nigehban_info gauge\n");
    out.push_str(&format!(
        "nigehban_info{{version=\"{}\",store=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        state.store.backend_name()
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
