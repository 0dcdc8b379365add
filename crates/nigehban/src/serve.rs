//! `nigehban serve`: the platform server, on SQLite in a data directory (default) or on
//! PostgreSQL. Settings come from flags, then environment variables, then a YAML file
//! (`--config`), then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use nigehban_policy::{OrgKind, Role};
use nigehban_server::{AppState, ServerConfig, TlsConfig};
use nigehban_store::{Actor, NewOrg, NewUser, OrgProfile, Store};
use serde::Deserialize;

/// Where the data lives.
#[derive(Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// Data directory for the embedded SQLite store.
    #[arg(long, env = "NIGEHBAN_DATA")]
    pub data: Option<PathBuf>,
    /// PostgreSQL instead of SQLite: postgres://user@host:5432/database
    #[arg(long, env = "NIGEHBAN_DATABASE", conflicts_with = "data")]
    pub database: Option<String>,
}

impl StoreArgs {
    /// Opens the store (creating and migrating it).
    pub async fn open(&self, default_data: &Path) -> anyhow::Result<Store> {
        match (&self.database, &self.data) {
            (Some(url), _) => Store::open_postgres(url).await.context("opening the PostgreSQL database"),
            (None, data) => {
                let dir = data.clone().unwrap_or_else(|| default_data.to_path_buf());
                Store::open_sqlite(&dir).await.with_context(|| format!("opening the SQLite store in {}", dir.display()))
            }
        }
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "NIGEHBAN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM); with --tls-key, serves HTTPS.
    #[arg(long, env = "NIGEHBAN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "NIGEHBAN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mark cookies Secure (implied by TLS; set it behind a TLS-terminating proxy).
    #[arg(long, env = "NIGEHBAN_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// A YAML file with any of: listen, data, database, tls_cert, tls_key, secure_cookies,
    /// session_hours, max_body_bytes, lockout_after, lockout_minutes, auth_cache_seconds,
    /// national_cert_name.
    #[arg(long, env = "NIGEHBAN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data: Option<PathBuf>,
    database: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    secure_cookies: Option<bool>,
    session_hours: Option<u64>,
    max_body_bytes: Option<usize>,
    lockout_after: Option<i64>,
    lockout_minutes: Option<u64>,
    /// How long API tokens and sessions are cached in the process (0: not at all). On several
    /// nodes, a revocation made on one takes effect on the others within this time.
    auth_cache_seconds: Option<u64>,
    national_cert_name: Option<String>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Logs to standard error (RUST_LOG filters; `info` by default).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!(message = "Stopping: finishing the requests in flight.");
}

/// First start: an empty store gets its national CERT and an administrator, whose password
/// comes from `NIGEHBAN_ADMIN_PASSWORD` or is generated and printed once.
async fn first_start(store: &Store, national_name: &str) -> anyhow::Result<()> {
    if !store.orgs().await?.is_empty() {
        return Ok(());
    }
    let system = Actor::system();
    let ncert = store
        .create_org(
            &system,
            NewOrg {
                kind: OrgKind::National,
                name: national_name.to_owned(),
                short_name: "ncert".into(),
                sector: None,
                province: None,
                parents: Vec::new(),
                profile: OrgProfile::default(),
            },
        )
        .await?;
    let (password, generated) = match std::env::var("NIGEHBAN_ADMIN_PASSWORD") {
        Ok(p) if p.chars().count() >= 12 => (p, false),
        Ok(_) => bail!("NIGEHBAN_ADMIN_PASSWORD must have at least 12 characters"),
        Err(_) => (nigehban_server::new_secret()[..20].to_owned(), true),
    };
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || nigehban_server::hash_password(&pw))
        .await?
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    store
        .create_user(
            &system,
            NewUser {
                org: ncert.id,
                username: "admin".into(),
                display_name: "Platform Administrator".into(),
                email: None,
                role: Role::PlatformAdmin,
                password_hash: hash,
            },
        )
        .await?;
    if generated {
        // Printed once, to the terminal that started the server; never logged.
        eprintln!("First start: created the national CERT and the account `admin`.");
        eprintln!("  admin password (shown once; change it after signing in): {password}");
    } else {
        eprintln!(
            "First start: created the national CERT and the account `admin` (password from NIGEHBAN_ADMIN_PASSWORD)."
        );
    }
    Ok(())
}

/// Runs a server over an opened store until Ctrl-C / SIGTERM.
pub async fn run_server(store: Store, config: ServerConfig, listen: SocketAddr) -> anyhow::Result<()> {
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let state: Arc<AppState> = AppState::new(store.clone(), config);
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(message = "Serving.", url = %format!("{scheme}://{listen}"), store = store.backend_name());
    let purge = store.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(600)).await;
            if let Err(e) = purge.purge_sessions().await {
                tracing::warn!(message = "Purging expired sessions failed.", error = %e);
            }
        }
    });
    nigehban_server::serve(state, listener, shutdown_signal()).await.context("serving")?;
    store.close().await;
    Ok(())
}

pub fn run(args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    init_logging();
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let store_args = StoreArgs { data: args.store.data.or(file.data), database: args.store.database.or(file.database) };
    if store_args.data.is_some() && store_args.database.is_some() {
        bail!("choose either a data directory (SQLite) or a PostgreSQL database, not both");
    }
    let listen = match args.listen.or(file.listen) {
        Some(l) => l,
        None => DEFAULT_LISTEN.parse()?,
    };
    let tls = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
        (Some(cert), Some(key)) => Some(TlsConfig { cert, key }),
        (None, None) => None,
        _ => bail!("TLS needs both a certificate (tls_cert) and a key (tls_key)"),
    };
    let defaults = ServerConfig::default();
    let config = ServerConfig {
        secure_cookies: args.secure_cookies || file.secure_cookies.unwrap_or(false) || tls.is_some(),
        tls,
        session_ttl: file.session_hours.map_or(defaults.session_ttl, |h| Duration::from_secs(h * 3600)),
        max_body_bytes: file.max_body_bytes.unwrap_or(defaults.max_body_bytes),
        lockout_after: file.lockout_after.unwrap_or(defaults.lockout_after),
        lockout_for: file.lockout_minutes.map_or(defaults.lockout_for, |m| Duration::from_secs(m * 60)),
        auth_cache_ttl: file.auth_cache_seconds.map_or(defaults.auth_cache_ttl, Duration::from_secs),
        ..defaults
    };
    if let Some(tls) = &config.tls {
        tls.rustls_config().context("loading TLS")?;
    }
    let national = file.national_cert_name.unwrap_or_else(|| "National CERT".into());
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store = store_args.open(Path::new("nigehban-data")).await?;
        first_start(&store, &national).await?;
        run_server(store, config, listen).await
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}
