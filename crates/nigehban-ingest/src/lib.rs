//! Live-monitoring input sources: syslog over UDP, TCP (RFC 6587) and TLS (RFC 5425), and a
//! file and folder watcher. Each source is a tokio task that turns what it receives into
//! [`RawBatch`]es of records (one log line or one syslog message each, framing removed) and
//! sends them into a bounded channel whose receiver the server owns. The server parses,
//! stores and detects; this crate knows nothing of events' meaning, SQL or HTTP.
//!
//! Back-pressure: sources that can push back on their sender (TCP, TLS, the file watcher)
//! attach an `ack` to each batch and wait for it before reading more, so nothing is read that
//! is not going to be stored. UDP cannot push back: a batch that does not fit in the channel
//! is dropped and counted ([`IngestMetrics`]).
//!
//! Every `spawn_*` function binds or opens what it needs before it returns, so a bad address,
//! certificate or state file is an error at start, and takes a shutdown signal
//! ([`Shutdown`]): the task ends once the value becomes `true` (or its sender is dropped).

mod cert;
mod config;
mod framing;
mod mapping;
mod metrics;
mod state;
mod syslog_tcp;
mod syslog_tls;
mod syslog_udp;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use config::{ClientCertOrg, IngestConfig, SyslogTcpConfig, SyslogTlsConfig, SyslogUdpConfig, WatchConfig};
pub use framing::{FrameOutcome, Framer};
pub use mapping::{NetworkOrg, OrgMap, OrgMapping};
pub use metrics::{IngestMetrics, SourceKind};
pub use syslog_tcp::spawn_syslog_tcp;
pub use syslog_tls::spawn_syslog_tls;
pub use syslog_udp::spawn_syslog_udp;
pub use watch::spawn_watch;

/// Where records came from: the organisation key the mapping gave (an organisation's UUID or
/// short name, resolved by the server) and a source name shown with events (e.g.
/// "syslog-tcp 10.1.2.3", "file /var/log/auth.log").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The organisation key: an organisation's UUID or short name.
    pub org: String,
    /// Where the records came from, as shown with the events.
    pub source: String,
}

/// A batch of records from one origin: each record is one log line / one syslog message
/// (framing removed, no trailing newline).
#[derive(Debug)]
pub struct RawBatch {
    pub origin: Origin,
    /// A format name hint (nigehban_event::read::Format::name values, e.g. "syslog", "json",
    /// "zeek"), or None to detect by content.
    pub format: Option<String>,
    pub records: Vec<bytes::Bytes>,
    /// Set by sources that must know when the batch is durable (TCP, TLS, file watcher): the
    /// server sends Ok(()) once every record is stored durably, or Err(reason) if it refused
    /// the batch.
    pub ack: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

/// The shutdown signal every source takes: the task ends once the value is `true` or the
/// sender is dropped. Make one with `tokio::sync::watch::channel(false)`.
pub type Shutdown = tokio::sync::watch::Receiver<bool>;

/// A running source: its task, and for listeners the address actually bound (useful with
/// port 0).
#[derive(Debug)]
pub struct Spawned {
    /// The address the listener is bound to; None for the file watcher.
    pub local_addr: Option<SocketAddr>,
    /// The source's task; it ends after the shutdown signal (connections in progress end
    /// on the same signal, in their own tasks).
    pub task: tokio::task::JoinHandle<()>,
}

/// Why a source could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The listen address could not be bound (in use, not permitted).
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    /// A certificate, key or CA file could not be read or used.
    #[error("TLS: {path}: {message}")]
    Tls { path: PathBuf, message: String },
    /// The TLS settings could not be put together.
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    /// The watcher's state file could not be read or is not what the watcher writes.
    #[error("watch state file {path}: {message}")]
    State { path: PathBuf, message: String },
    /// A setting that cannot work (e.g. a watcher without paths).
    #[error("ingest configuration: {0}")]
    Config(String),
}

/// Starts every source of `config`, sharing one organisation mapping, channel, metrics and
/// shutdown signal. Stops at the first source that cannot start (the ones already started
/// keep running until the shutdown signal).
pub async fn spawn_all(
    config: &IngestConfig,
    tx: tokio::sync::mpsc::Sender<RawBatch>,
    metrics: Arc<IngestMetrics>,
    shutdown: Shutdown,
) -> Result<Vec<Spawned>, IngestError> {
    let orgs = Arc::new(OrgMap::new(&config.orgs));
    let mut out = Vec::new();
    for c in &config.syslog_udp {
        out.push(spawn_syslog_udp(c, orgs.clone(), tx.clone(), metrics.clone(), shutdown.clone()).await?);
    }
    for c in &config.syslog_tcp {
        out.push(spawn_syslog_tcp(c, orgs.clone(), tx.clone(), metrics.clone(), shutdown.clone()).await?);
    }
    for c in &config.syslog_tls {
        out.push(spawn_syslog_tls(c, orgs.clone(), tx.clone(), metrics.clone(), shutdown.clone()).await?);
    }
    for c in &config.watch {
        out.push(spawn_watch(c, tx.clone(), metrics.clone(), shutdown.clone()).await?);
    }
    Ok(out)
}

/// Resolves once the shutdown signal says stop (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut Shutdown) {
    // An error means the sender was dropped: nobody can tell us to run on, so stop.
    let _ = shutdown.wait_for(|stop| *stop).await;
}
