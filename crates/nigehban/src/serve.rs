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
    /// Sigma rule files or folders for live detection, added to the built-in pack (repeat).
    #[arg(long = "rules", short = 'r', value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Indicator files or folders (STIX 2.1 bundles, plain lists) matched against live events.
    #[arg(long = "indicators", short = 'i', value_name = "PATH")]
    pub indicators: Vec<PathBuf>,
    /// MISP warninglists: listed values are not loaded as indicators.
    #[arg(long = "warninglists", short = 'w', value_name = "PATH")]
    pub warninglists: Vec<PathBuf>,
    /// Do not run live monitoring on this node (no ingest, no detection).
    #[arg(long)]
    pub no_monitoring: bool,
    /// What this node does, comma-separated: `ingest` (HTTP ingest and the syslog and file
    /// sources), `detect` (stores what the bus carries and detects), `api` (REST API and web
    /// UI), or `all` (the default). Roles other than `all` and `api` need --bus and PostgreSQL.
    #[arg(long, env = "NIGEHBAN_ROLE", value_name = "ROLES")]
    pub role: Option<String>,
    /// The event bus between ingest and detection nodes: a NATS JetStream server,
    /// nats://host:4222 (scale-out mode, with --database).
    #[arg(long, env = "NIGEHBAN_BUS", value_name = "URL")]
    pub bus: Option<String>,
    /// Prefix of the bus's subjects and stream (default `nigehban`): deployments sharing a
    /// NATS server use different prefixes.
    #[arg(long, env = "NIGEHBAN_BUS_PREFIX", value_name = "PREFIX")]
    pub bus_prefix: Option<String>,
    /// This node's name among detection nodes (default: host, process id and a random part).
    #[arg(long, env = "NIGEHBAN_NODE_NAME")]
    pub node_name: Option<String>,
    /// A YAML file with any of: listen, data, database, tls_cert, tls_key, secure_cookies,
    /// session_hours, max_body_bytes, lockout_after, lockout_minutes, auth_cache_seconds,
    /// national_cert_name, roles, node_name, `bus` (url, prefix, max_messages, max_bytes,
    /// max_age_hours, ack_wait_seconds), and `monitoring` (rules, indicators, warninglists, default_tlp,
    /// max_backlog, dedup_minutes, retention_days, retention_by_org, lateness_seconds,
    /// detect_lease_seconds, max_retrohunts, cert_rules, `notify` (smtp, webhook, org_webhooks, min_level, public_url, parent_certs…), and `ingest`: syslog_udp, syslog_tcp, syslog_tls, watch, orgs).
    #[arg(long, env = "NIGEHBAN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The `monitoring` section of the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringFile {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    #[serde(default)]
    pub indicators: Vec<PathBuf>,
    #[serde(default)]
    pub warninglists: Vec<PathBuf>,
    /// TLP of ingested events unless a request says otherwise (default AMBER+STRICT).
    pub default_tlp: Option<String>,
    /// Events waiting for detection beyond which ingest answers 429.
    pub max_backlog: Option<i64>,
    /// Detections of one rule about one entity within this many minutes are one alert.
    pub dedup_minutes: Option<u64>,
    /// Days stored events are kept (default 30; 0: for ever).
    pub retention_days: Option<u32>,
    /// Scale-out: seconds a detection node's lease on its slots lasts without renewal (default
    /// 10): how long the slots of a node that died wait before another node takes them.
    pub detect_lease_seconds: Option<u64>,
    /// How late (in event time, behind the newest event of its organisation) an event may
    /// arrive and still count in correlation windows (default 300). In the scale-out mode it
    /// must also cover the bus's ack wait: a message a dead node took arrives that much later.
    pub lateness_seconds: Option<u64>,
    /// Retro-hunts run at once on this node (default 2); more wait, queued.
    pub max_retrohunts: Option<usize>,
    /// Per organisation (short name): days its events are kept.
    #[serde(default)]
    pub retention_by_org: std::collections::HashMap<String, u32>,
    /// Syslog listeners and watched files.
    #[serde(default)]
    pub ingest: nigehban_ingest::IngestConfig,
    /// Alert notifications by e-mail (SMTP) and webhook.
    #[serde(default)]
    pub notify: Option<nigehban_server::monitor::notify::NotifyConfig>,
    /// Rules owned by CERTs: CERT (short name or id) → Sigma rule files and folders. Each
    /// CERT's rules (without the built-in pack) run over every event of its constituency, the
    /// organisations below it and its own, with one stream per CERT: a correlation rule sees
    /// the same actor in several organisations, and its alerts are owned by the CERT.
    #[serde(default)]
    pub cert_rules: std::collections::BTreeMap<String, Vec<PathBuf>>,
}

/// What live monitoring runs with on this node.
#[derive(Debug)]
pub struct MonitoringSetup {
    pub detectors: nigehban_hunt::detectors::DetectorOptions,
    pub config: nigehban_server::monitor::MonitorConfig,
    pub ingest: nigehban_ingest::IngestConfig,
    /// Rules owned by CERTs (`monitoring.cert_rules`): the CERT as the file names it, its rules.
    pub cert_rules: Vec<(String, Vec<PathBuf>)>,
}

impl Default for MonitoringSetup {
    /// The built-in pack only, default settings, no sources but HTTP.
    fn default() -> Self {
        MonitoringSetup {
            detectors: nigehban_hunt::detectors::DetectorOptions { live: true, ..Default::default() },
            config: nigehban_server::monitor::MonitorConfig::default(),
            ingest: nigehban_ingest::IngestConfig::default(),
            cert_rules: Vec::new(),
        }
    }
}

impl MonitoringSetup {
    fn from_parts(flags: &ServeArgs, file: MonitoringFile) -> anyhow::Result<MonitoringSetup> {
        let mut config = nigehban_server::monitor::MonitorConfig::default();
        if let Some(t) = &file.default_tlp {
            config.default_tlp = t.parse().map_err(|e| anyhow::anyhow!("monitoring.default_tlp: {e}"))?;
            if config.default_tlp == nigehban_policy::Tlp::Red {
                bail!("monitoring.default_tlp: RED is for named people; monitoring data goes to the chain");
            }
        }
        if let Some(b) = file.max_backlog {
            config.max_backlog = b;
        }
        if let Some(m) = file.dedup_minutes {
            config.dedup_window = Duration::from_secs(m.max(1) * 60);
        }
        if let Some(d) = file.retention_days {
            config.retention_days = d;
        }
        if let Some(n) = file.max_retrohunts {
            config.max_retrohunts = n.max(1);
        }
        if let Some(s) = file.lateness_seconds {
            config.lateness = Duration::from_secs(s);
        }
        if let Some(s) = file.detect_lease_seconds {
            config.lease_ttl = Duration::from_secs(s.max(1));
        }
        config.retention_by_org = file.retention_by_org;
        if let Some(mut notify) = file.notify {
            // Secrets come from the environment; a setting that cannot work stops the start.
            notify.prepare(|var| std::env::var(var).ok())?;
            config.notify = Some(notify);
        }
        let detectors = nigehban_hunt::detectors::DetectorOptions {
            rules: flags.rules.iter().cloned().chain(file.rules).collect(),
            indicators: flags.indicators.iter().cloned().chain(file.indicators).collect(),
            warninglists: flags.warninglists.iter().cloned().chain(file.warninglists).collect(),
            live: true,
            ..Default::default()
        };
        for (key, paths) in &file.cert_rules {
            if paths.is_empty() {
                bail!("monitoring.cert_rules.{key}: give at least one rule file or folder");
            }
        }
        let cert_rules = file.cert_rules.into_iter().collect();
        Ok(MonitoringSetup { detectors, config, ingest: file.ingest, cert_rules })
    }
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
    /// What this node does (see `--role`).
    roles: Option<Vec<String>>,
    node_name: Option<String>,
    bus: Option<BusFile>,
    monitoring: Option<MonitoringFile>,
}

/// The `bus` section of the configuration file (scale-out mode).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BusFile {
    /// nats://host:4222 (credentials in the URL are never logged).
    url: Option<String>,
    prefix: Option<String>,
    /// The most messages (batches) the bus holds before ingest pushes back.
    max_messages: Option<usize>,
    /// The most bytes the bus holds before ingest pushes back.
    max_bytes: Option<u64>,
    /// Hours after which the bus drops a message nobody took (default a week).
    max_age_hours: Option<u64>,
    /// Seconds a message taken by a detection node may stay unacknowledged before another
    /// gets it (default 30).
    ack_wait_seconds: Option<u64>,
}

/// The roles of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub ingest: bool,
    pub detect: bool,
    pub api: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { ingest: true, detect: true, api: true };

    /// Reads `ingest,detect,api` or `all`.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> anyhow::Result<Roles> {
        let mut roles = Roles { ingest: false, detect: false, api: false };
        for name in names {
            match name.trim().to_ascii_lowercase().as_str() {
                "all" => roles = Roles::ALL,
                "ingest" => roles.ingest = true,
                "detect" => roles.detect = true,
                "api" => roles.api = true,
                "" => {}
                other => bail!("unknown role {other:?}: the roles are ingest, detect, api and all"),
            }
        }
        if roles == (Roles { ingest: false, detect: false, api: false }) {
            bail!("no role given: the roles are ingest, detect, api and all");
        }
        Ok(roles)
    }
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
    let created = store
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
        .await;
    let ncert = match created {
        Ok(org) => org,
        // Several nodes started at once on a new database: another one did the first start.
        Err(nigehban_store::StoreError::Conflict(_)) if !store.orgs().await?.is_empty() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
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

/// Loads the detectors and starts live monitoring (detection, the ingest sources) on `state`.
pub async fn start_monitoring(
    state: &Arc<AppState>,
    setup: MonitoringSetup,
    node: nigehban_server::monitor::Node,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let set = if node.detect {
        let options = setup.detectors.clone();
        let (set, loaded) = tokio::task::spawn_blocking(move || nigehban_hunt::detectors::build(&options))
            .await?
            .context("loading the detectors")?;
        for (path, why) in &loaded.unreadable {
            tracing::warn!(message = "A rule path could not be read.", path = %path.display(), reason = %why);
        }
        tracing::info!(
            message = "Detectors loaded.",
            rules = loaded.rules.loaded,
            rules_failed = loaded.rules.failed.len(),
            indicators = loaded.intel.as_ref().map_or(0, |i| i.loaded),
        );
        set
    } else {
        // An ingest node parses and publishes; detection nodes detect.
        nigehban_detect::DetectorSet::new()
    };
    let mut config = setup.config;
    if node.detect {
        // Embedded: with the organisations' rules, in the one worker. Scale-out: in the CERT
        // lane, which one detection node runs at a time over the whole log.
        config.cert_rules = load_cert_rules(&state.store, &setup.cert_rules).await?;
    }
    let ingest = node.ingest;
    let monitor = nigehban_server::monitor::Monitor::new_node(state.store.clone(), set, config, node).await?;
    state.set_monitor(monitor.clone());
    let (tx, mut tasks) = monitor.start(shutdown.clone());
    let no_sources = nigehban_ingest::IngestConfig::default();
    let sources = nigehban_ingest::spawn_all(
        if ingest { &setup.ingest } else { &no_sources },
        tx,
        monitor.ingest_metrics(),
        shutdown,
    )
    .await
    .context("starting the ingest sources")?;
    for s in sources {
        if let Some(addr) = s.local_addr {
            tracing::info!(message = "Ingest source listening.", address = %addr);
        }
        tasks.push(s.task);
    }
    Ok(tasks)
}

/// Checks that each key of `monitoring.cert_rules` names a CERT of the tree and loads its rules
/// (without the built-in pack, which every organisation's stream runs already).
pub async fn load_cert_rules(
    store: &Store,
    cert_rules: &[(String, Vec<PathBuf>)],
) -> anyhow::Result<nigehban_server::monitor::certs::CertRules> {
    use nigehban_server::monitor::certs::{CertRules, CertSet, resolve_cert};
    if cert_rules.is_empty() {
        return Ok(CertRules::default());
    }
    let orgs = store.orgs().await.context("reading the organisations for monitoring.cert_rules")?;
    let mut sets = Vec::new();
    for (key, paths) in cert_rules {
        let (cert, name) = resolve_cert(&orgs, key).map_err(|e| anyhow::anyhow!("monitoring.cert_rules.{key}: {e}"))?;
        if sets.iter().any(|s: &CertSet| s.cert == cert) {
            bail!("monitoring.cert_rules.{key}: the CERT {name} is given twice (by short name and by id)");
        }
        let options = nigehban_hunt::detectors::DetectorOptions {
            rules: paths.clone(),
            no_builtin: true,
            live: true,
            ..Default::default()
        };
        let (detectors, loaded) = tokio::task::spawn_blocking(move || nigehban_hunt::detectors::build(&options))
            .await?
            .with_context(|| format!("monitoring.cert_rules.{key}: loading the rules"))?;
        for (path, why) in &loaded.unreadable {
            tracing::warn!(message = "A CERT rule path could not be read.", cert = %name, path = %path.display(), reason = %why);
        }
        for failed in &loaded.rules.failed {
            tracing::warn!(message = "A CERT rule could not be loaded.", cert = %name, path = %failed.path, error = %failed.error);
        }
        tracing::info!(
            message = "CERT rules loaded: they run over the CERT's whole constituency.",
            cert = %name,
            rules = loaded.rules.loaded,
            rules_failed = loaded.rules.failed.len(),
        );
        sets.push(CertSet { cert, name, detectors });
    }
    Ok(CertRules::new(sets))
}

/// Runs a server over an opened store until Ctrl-C / SIGTERM.
pub async fn run_server(
    store: Store,
    config: ServerConfig,
    listen: SocketAddr,
    monitoring: Option<(MonitoringSetup, nigehban_server::monitor::Node)>,
) -> anyhow::Result<()> {
    run_server_with(store, config, listen, monitoring, |_, _| Vec::new()).await
}

/// [`run_server`], with `also` called once monitoring has started and the listener is bound:
/// the tasks it returns get the server's stop signal and are awaited like monitoring's own.
pub async fn run_server_with(
    store: Store,
    config: ServerConfig,
    listen: SocketAddr,
    monitoring: Option<(MonitoringSetup, nigehban_server::monitor::Node)>,
    also: impl FnOnce(&Arc<AppState>, tokio::sync::watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let state: Arc<AppState> = AppState::new(store.clone(), config);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    if let Some((setup, node)) = monitoring {
        tasks = start_monitoring(&state, setup, node, stop_rx.clone()).await?;
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(message = "Serving.", url = %format!("{scheme}://{listen}"), store = store.backend_name());
    tasks.extend(also(&state, stop_rx));
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
    let _ = stop_tx.send(true);
    for t in tasks {
        // Detection finishes its batch and commits; sources close their listeners.
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    store.close().await;
    Ok(())
}

pub fn run(args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    init_logging();
    let mut file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let monitoring_file = file.monitoring.take().unwrap_or_default();
    let store_args = StoreArgs {
        data: args.store.data.clone().or(file.data.take()),
        database: args.store.database.clone().or(file.database.take()),
    };
    if store_args.data.is_some() && store_args.database.is_some() {
        bail!("choose either a data directory (SQLite) or a PostgreSQL database, not both");
    }
    let roles = match (&args.role, &file.roles) {
        (Some(r), _) => Roles::parse(r.split(','))?,
        (None, Some(r)) => Roles::parse(r.iter().map(String::as_str))?,
        (None, None) => Roles::ALL,
    };
    let bus_file = file.bus.take().unwrap_or_default();
    let bus_url = args.bus.clone().or(bus_file.url.clone());
    if bus_url.is_some() && store_args.database.is_none() {
        bail!("the scale-out mode (--bus) needs PostgreSQL (--database postgres://…), shared by its nodes");
    }
    if bus_url.is_none() && roles != Roles::ALL && roles != (Roles { ingest: false, detect: false, api: true }) {
        bail!(
            "roles other than `all` and `api` need the event bus (--bus nats://…): without it one node \
             stores and detects what it receives"
        );
    }
    // An API node of a scale-out deployment runs monitoring without ingest or detection: its
    // retro-hunts (and alert notifications) run there. An API-only node without a bus (over a
    // database another node monitors) does not.
    let monitors = roles.ingest || roles.detect || (roles.api && bus_url.is_some());
    let monitoring = if args.no_monitoring || monitoring_file.enabled == Some(false) || !monitors {
        None
    } else {
        Some(MonitoringSetup::from_parts(&args, monitoring_file)?)
    };
    let node_name =
        args.node_name.clone().or(file.node_name.take()).unwrap_or_else(nigehban_server::monitor::default_node_name);
    let bus_config = {
        let d = nigehban_bus::BusConfig::default();
        nigehban_bus::BusConfig {
            prefix: args.bus_prefix.clone().or(bus_file.prefix).unwrap_or(d.prefix.clone()),
            max_messages: bus_file.max_messages.unwrap_or(d.max_messages),
            max_bytes: bus_file.max_bytes.unwrap_or(d.max_bytes),
            max_age: bus_file.max_age_hours.map_or(d.max_age, |h| Duration::from_secs(h.max(1) * 3600)),
            ack_wait: bus_file.ack_wait_seconds.map_or(d.ack_wait, |s| Duration::from_secs(s.max(1))),
            ..d
        }
    };
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
        serve_api: roles.api,
        serve_ingest: roles.ingest,
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
        let bus = match &bus_url {
            Some(url) => Some(nigehban_bus::Bus::JetStream(
                nigehban_bus::JetStreamBus::connect(url, bus_config).await.context("connecting to the event bus")?,
            )),
            None => None,
        };
        tracing::info!(
            message = "Node roles.",
            node = %node_name, ingest = roles.ingest, detect = roles.detect, api = roles.api,
            mode = if bus.is_some() { "scale-out" } else { "embedded" },
        );
        let node = nigehban_server::monitor::Node { bus, ingest: roles.ingest, detect: roles.detect, name: node_name };
        run_server(store, config, listen, monitoring.map(|m| (m, node))).await
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sources' settings as `nigehban-ingest`'s documentation shows them are what this
    /// file's reader accepts.
    #[test]
    fn the_documented_ingest_settings_are_read() {
        let source = include_str!("../../nigehban-ingest/src/config.rs");
        let yaml: String = source
            .lines()
            .map_while(|l| l.strip_prefix("//!"))
            .skip_while(|l| l.trim() != "```yaml")
            .skip(1)
            .take_while(|l| l.trim() != "```")
            .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
            .collect();
        assert!(yaml.contains("syslog_tls"), "{yaml}");
        let file: FileConfig = serde_saphyr::from_str(&yaml).unwrap();
        let ingest = file.monitoring.unwrap_or_default().ingest;
        assert_eq!(
            (ingest.syslog_udp.len(), ingest.syslog_tcp.len(), ingest.syslog_tls.len(), ingest.watch.len()),
            (1, 1, 1, 1)
        );
        assert_eq!(ingest.syslog_tls[0].client_orgs.len(), 2);
        assert_eq!(ingest.watch[0].paths.len(), 2);
    }
}
