//! A server on a free loopback port over a fresh store, and a client for it.

use std::net::SocketAddr;
use std::sync::Arc;

use nigehban_policy::{OrgKind, Role, Scope};
use nigehban_server::{AppState, ServerConfig};
use nigehban_store::testing::{FreshDatabase, postgres_url};
use nigehban_store::{Actor, NewOrg, NewToken, OrgProfile, Store};
use uuid::Uuid;

/// Which back end a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The back ends to test: SQLite, and PostgreSQL when `NIGEHBAN_TEST_PG` is set (required
/// under `CI=true`).
pub fn backends() -> Vec<Backend> {
    if postgres_url().is_some() {
        vec![Backend::Sqlite, Backend::Postgres]
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "NIGEHBAN_TEST_PG is not set: under CI=true the PostgreSQL tests must run"
        );
        eprintln!("notice: NIGEHBAN_TEST_PG not set; server tests run on SQLite only");
        vec![Backend::Sqlite]
    }
}

/// A running server.
pub struct TestServer {
    pub base: String,
    pub state: Arc<AppState>,
    pub backend: Backend,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    stop_detection: Option<tokio::sync::watch::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pg: Option<FreshDatabase>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server over an empty store.
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, ServerConfig::default()).await
    }

    /// Starts a server with a configuration.
    pub async fn start_with(backend: Backend, config: ServerConfig) -> TestServer {
        Self::start_full(backend, config, None).await
    }

    /// Starts a server with live monitoring over the built-in pack and the rules in
    /// `rules` (detection runs when `detect` is set; otherwise events only queue up).
    pub async fn start_monitored(
        backend: Backend,
        monitor: nigehban_server::monitor::MonitorConfig,
        rules: Vec<std::path::PathBuf>,
        detect: bool,
    ) -> TestServer {
        Self::start_full(backend, ServerConfig::default(), Some((monitor, rules, detect))).await
    }

    async fn start_full(
        backend: Backend,
        config: ServerConfig,
        monitoring: Option<(nigehban_server::monitor::MonitorConfig, Vec<std::path::PathBuf>, bool)>,
    ) -> TestServer {
        tls_provider();
        let dir = tempfile::tempdir().unwrap();
        let (store, pg) = open_store(backend, dir.path()).await;
        let state = AppState::new(store, config);
        let mut stop_detection = None;
        if let Some((mc, rules, detect)) = monitoring {
            let options = nigehban_hunt::detectors::DetectorOptions { rules, live: true, ..Default::default() };
            let (set, _) = nigehban_hunt::detectors::build(&options).unwrap();
            let monitor = nigehban_server::monitor::Monitor::new(state.store.clone(), set, mc).await.unwrap();
            assert!(state.set_monitor(monitor.clone()));
            if detect {
                let (tx, rx) = tokio::sync::watch::channel(false);
                let _ = monitor.start(rx);
                stop_detection = Some(tx);
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = state.clone();
        let task = tokio::spawn(async move {
            nigehban_server::serve(s, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            base: format!("http://{addr}"),
            state,
            backend,
            shutdown: Some(tx),
            stop_detection,
            task: Some(task),
            pg,
            _dir: dir,
        }
    }

    /// The store under the server.
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server and drops the PostgreSQL database.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        if let Some(tx) = self.stop_detection.take() {
            let _ = tx.send(true);
        }
        self.state.store.close().await;
        if let Some(db) = self.pg.take() {
            db.drop_now().await.unwrap();
        }
    }
}

/// A fresh store: SQLite in `dir`, or a new PostgreSQL database (drop it when done).
pub async fn open_store(backend: Backend, dir: &std::path::Path) -> (Store, Option<FreshDatabase>) {
    match backend {
        Backend::Sqlite => (Store::open_sqlite(dir).await.unwrap(), None),
        Backend::Postgres => {
            let url = postgres_url().expect("NIGEHBAN_TEST_PG");
            let db = FreshDatabase::create(&url).await.unwrap();
            (Store::open_postgres(&db.url).await.unwrap(), Some(db))
        }
    }
}

/// Installs rustls's ring provider for HTTP clients, once. The workspace builds reqwest with
/// `rustls-no-provider` (the `nigehban ingest` client chooses ring, as the server does); with
/// every crate's features unified, a client built before a provider is installed panics.
pub fn tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means another provider is installed already: fine for a client.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client that keeps cookies (a browser session).
pub fn browser() -> reqwest::Client {
    tls_provider();
    reqwest::Client::builder().cookie_store(true).build().unwrap()
}

/// A client without cookies (API tokens).
pub fn client() -> reqwest::Client {
    tls_provider();
    reqwest::Client::new()
}

/// The JSON answer to a GET with an API token.
pub async fn get_json(url: &str, token: &str) -> serde_json::Value {
    client().get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

/// An organisation, made through the store.
pub async fn org(s: &Store, kind: OrgKind, short: &str, parents: &[Uuid]) -> Uuid {
    s.create_org(
        &Actor::system(),
        NewOrg {
            kind,
            name: format!("The {short}"),
            short_name: short.into(),
            sector: None,
            province: None,
            parents: parents.to_vec(),
            profile: OrgProfile::default(),
        },
    )
    .await
    .unwrap()
    .id
}

/// An API token's secret, made through the store.
pub async fn token(s: &Store, org: Uuid, role: Role, scopes: &[&str]) -> String {
    let secret = nigehban_server::new_secret();
    s.create_token(
        &Actor::system(),
        NewToken {
            org,
            created_by: None,
            name: format!("{role:?} {}", &secret[..4]),
            role,
            scopes: scopes.iter().map(|s| s.parse::<Scope>().unwrap()).collect(),
            token_hash: nigehban_server::auth::secret_hash(&secret),
            prefix: secret[..8].to_owned(),
            expires_at: None,
        },
    )
    .await
    .unwrap();
    secret
}
