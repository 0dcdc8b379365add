//! The platform server: the REST API under `/api/v1` (with its OpenAPI document), the web UI,
//! `/healthz` and `/metrics`, over one [`AppState`].
//!
//! **Architecture invariant:** this is the only crate that knows HTTP. Every route that touches
//! a marked object asks [`nigehban_policy`] (through the store's scoped queries and
//! [`nigehban_policy::can`]); an object the caller may not see answers 404, never 403.
//! **Invariant:** every request is authenticated except `/login`, `/healthz`, `/metrics`, the
//! static assets and `POST /api/v1/auth/login`.

pub mod api;
pub mod auth;
pub mod demo;
mod error;
/// The bus batch codec, for the fuzz targets (`fuzz/`); not a stable interface.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::monitor::batch::{Batch, BatchError, decode, encode};
}
mod metrics;
pub mod monitor;
pub mod openapi;
mod state;
pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use auth::{hash_password, new_secret, verify_password};
pub use error::ApiError;
pub use state::{AppState, ServerConfig, TlsConfig};

/// The whole application: API, UI, health and metrics.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .merge(api::routes(state.monitor().map_or(16 << 20, |m| m.config().max_request_bytes)))
        .merge(ui::routes())
        .route("/healthz", axum::routing::get(metrics::healthz))
        .route("/metrics", axum::routing::get(metrics::metrics))
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::roles))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::count))
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    match &state.config.tls {
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
        Some(tls) => {
            let config = tls.rustls_config()?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                h.graceful_shutdown(Some(Duration::from_secs(10)));
            });
            let listener = listener.into_std()?;
            axum_server::from_tcp_rustls(listener, axum_server::tls_rustls::RustlsConfig::from_config(config))
                .handle(handle)
                .serve(app)
                .await
        }
    }
}
