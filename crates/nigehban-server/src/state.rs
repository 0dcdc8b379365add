//! What every request shares: the store, the cached constituency tree, the configuration, the
//! sign-in limiter and the metrics.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use nigehban_policy::Tree;
use nigehban_store::Store;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// TLS from PEM files.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

impl TlsConfig {
    /// A rustls server configuration (ring provider) from the files.
    pub fn rustls_config(&self) -> std::io::Result<Arc<rustls::ServerConfig>> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |what: &str, path: &PathBuf, e: &dyn std::fmt::Display| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what} {}: {e}", path.display()))
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| invalid("TLS certificate", &self.cert, &e))?
            .collect::<Result<_, _>>()
            .map_err(|e| invalid("TLS certificate", &self.cert, &e))?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| invalid("TLS key", &self.key, &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("TLS", &self.cert, &e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| invalid("TLS certificate/key", &self.cert, &e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Server settings (from file, environment and flags, merged by the binary).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TLS; `None` serves plain HTTP (behind a TLS-terminating proxy, or on loopback).
    pub tls: Option<TlsConfig>,
    /// Mark cookies `Secure` (on with TLS; set it too behind a TLS proxy).
    pub secure_cookies: bool,
    /// How long a session lasts.
    pub session_ttl: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Consecutive failed sign-ins that lock an account…
    pub lockout_after: i64,
    /// …for this long.
    pub lockout_for: Duration,
    /// Sign-in attempts allowed per client address per minute.
    pub login_attempts_per_minute: u32,
    /// How long an API token or session read from the database is trusted without reading it
    /// again (zero: read it for every request). Revocations, sign-outs and account changes made
    /// through this process take effect at once; made on another node, within this time.
    pub auth_cache_ttl: Duration,
    /// This node serves the API and the web UI (role `api`). Without it, only what its other
    /// roles need answers: `/api/v1/ingest` on an ingest node, `/healthz` and `/metrics`.
    pub serve_api: bool,
    /// This node takes events over HTTP (role `ingest`).
    pub serve_ingest: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tls: None,
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
            max_body_bytes: 1024 * 1024,
            lockout_after: 5,
            lockout_for: Duration::from_secs(15 * 60),
            login_attempts_per_minute: 20,
            auth_cache_ttl: nigehban_store::DEFAULT_AUTH_CACHE_TTL,
            serve_api: true,
            serve_ingest: true,
        }
    }
}

/// Sign-in attempts per client address in the current minute.
#[derive(Debug, Default)]
pub(crate) struct LoginLimiter {
    window: Mutex<(Option<Instant>, HashMap<String, u32>)>,
}

impl LoginLimiter {
    /// Counts an attempt; `false` when the address is over its limit this minute.
    pub(crate) fn allow(&self, ip: &str, per_minute: u32) -> bool {
        let Ok(mut w) = self.window.lock() else { return false };
        let now = Instant::now();
        if w.0.is_none_or(|start| now.duration_since(start) >= Duration::from_secs(60)) {
            *w = (Some(now), HashMap::new());
        }
        let n = w.1.entry(ip.to_owned()).or_insert(0);
        *n += 1;
        *n <= per_minute
    }
}

/// Shared by every request.
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Settings.
    pub config: ServerConfig,
    tree: RwLock<Option<(Instant, Arc<Tree>)>>,
    pub(crate) limiter: LoginLimiter,
    pub(crate) metrics: Metrics,
    monitor: OnceLock<Arc<crate::monitor::Monitor>>,
}

/// How long a cached tree is trusted before it is read again (other nodes may change it).
const TREE_TTL: Duration = Duration::from_secs(5);

impl AppState {
    /// State over a store.
    pub fn new(store: Store, config: ServerConfig) -> Arc<AppState> {
        store.set_auth_cache_ttl(config.auth_cache_ttl);
        Arc::new(AppState {
            store,
            config,
            tree: RwLock::new(None),
            limiter: LoginLimiter::default(),
            metrics: Metrics::default(),
            monitor: OnceLock::new(),
        })
    }

    /// The constituency tree (cached for a few seconds; changed here, refreshed at once).
    pub async fn tree(&self) -> Result<Arc<Tree>, ApiError> {
        if let Ok(guard) = self.tree.read()
            && let Some((at, tree)) = guard.as_ref()
            && at.elapsed() < TREE_TTL
        {
            return Ok(tree.clone());
        }
        let tree = Arc::new(self.store.tree().await?);
        if let Ok(mut guard) = self.tree.write() {
            *guard = Some((Instant::now(), tree.clone()));
        }
        Ok(tree)
    }

    /// Live monitoring, when this node runs it (set once, before serving).
    pub fn monitor(&self) -> Option<&Arc<crate::monitor::Monitor>> {
        self.monitor.get()
    }

    /// Attaches live monitoring; `false` if it was attached already.
    pub fn set_monitor(&self, monitor: Arc<crate::monitor::Monitor>) -> bool {
        self.monitor.set(monitor).is_ok()
    }

    /// Forgets the cached tree (after a change to the constituency).
    pub fn invalidate_tree(&self) {
        if let Ok(mut guard) = self.tree.write() {
            *guard = None;
        }
    }
}
