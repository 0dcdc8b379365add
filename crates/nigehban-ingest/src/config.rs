//! The sources' settings, as the server's YAML configuration file (`--config`) holds them
//! under `monitoring.ingest`:
//!
//! ```yaml
//! monitoring:
//!   ingest:
//!     orgs:
//!       default_org: unassigned               # optional: senders no network matches
//!       networks:
//!         - {cidr: 10.1.0.0/16, org: org-a}
//!         - {cidr: 10.1.2.0/24, org: org-b}   # the most specific prefix wins
//!     syslog_udp:
//!       - listen: 0.0.0.0:514
//!     syslog_tcp:
//!       - {listen: 0.0.0.0:601, max_message_bytes: 65536}
//!     syslog_tls:
//!       - listen: 0.0.0.0:6514
//!         cert: /etc/nigehban/syslog.crt
//!         key: /etc/nigehban/syslog.key
//!         client_ca: /etc/nigehban/devices-ca.crt   # optional: require client certificates
//!         client_orgs:
//!           - {name: fw1.org-a.example, org: org-a}  # subject CN or DNS SAN
//!           - {sha256: "3f:a1:…", org: org-b}        # certificate fingerprint
//!     watch:
//!       - paths: [/var/log/auth.log, /data/zeek/current]
//!         org: org-a
//!         suffix: .log
//!         state_file: /var/lib/nigehban/watch-auth.json
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::mapping::OrgMapping;

/// Everything under `[ingest]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Sender address → organisation, for the UDP and TCP listeners (and TLS without client
    /// certificates).
    #[serde(default)]
    pub orgs: OrgMapping,
    #[serde(default)]
    pub syslog_udp: Vec<SyslogUdpConfig>,
    #[serde(default)]
    pub syslog_tcp: Vec<SyslogTcpConfig>,
    #[serde(default)]
    pub syslog_tls: Vec<SyslogTlsConfig>,
    #[serde(default)]
    pub watch: Vec<WatchConfig>,
}

/// A syslog listener on UDP: one datagram is one message.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogUdpConfig {
    pub listen: SocketAddr,
    /// A batch is sent once it holds this many messages…
    #[serde(default = "default_udp_batch_records")]
    pub batch_records: usize,
    /// …or this long after its first message arrived.
    #[serde(default = "default_udp_batch_wait_ms")]
    pub batch_wait_ms: u64,
    /// Format hint sent with the batches: "syslog" when absent, "auto" to detect by content.
    #[serde(default)]
    pub format: Option<String>,
}

/// A syslog listener on TCP (RFC 6587: octet counting or newline framing, per message).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogTcpConfig {
    pub listen: SocketAddr,
    /// Longer messages are truncated to this size and counted.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Connections beyond this many are closed at once and counted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// Format hint sent with the batches: "syslog" when absent, "auto" to detect by content.
    #[serde(default)]
    pub format: Option<String>,
}

/// A syslog listener on TLS (RFC 5425: octet counting; newline framing is accepted too).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogTlsConfig {
    pub listen: SocketAddr,
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate issued by one of these CAs (PEM), and the
    /// organisation comes from the certificate through `client_orgs` instead of the sender's
    /// address.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Client certificate → organisation; the first entry that matches wins.
    #[serde(default)]
    pub client_orgs: Vec<ClientCertOrg>,
    /// The organisation of a valid client certificate that no `client_orgs` entry names;
    /// without it such a client is refused.
    #[serde(default)]
    pub client_default_org: Option<String>,
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// A client that has not finished the TLS handshake after this long is dropped.
    #[serde(default = "default_handshake_timeout_secs")]
    pub handshake_timeout_secs: u64,
    #[serde(default)]
    pub format: Option<String>,
}

/// One client certificate → organisation entry: by SHA-256 fingerprint of the certificate
/// (hex, colons and case ignored) or by name (the subject CN or a DNS subject alternative
/// name, compared without regard to case). An entry with both needs both to match.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertOrg {
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub org: String,
}

/// A file and folder watcher: tails text files (following rotation and truncation) and reads
/// EVTX files once they stop growing.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// Files, or folders whose files are watched (not recursively). Compressed files
    /// (`.gz`, `.bz2`, `.xz`, `.zst`, `.zip`) in folders are left alone: they are rotated
    /// archives of files already read.
    pub paths: Vec<PathBuf>,
    /// The organisation every record of this watcher belongs to.
    pub org: String,
    /// Format hint for text files; None to detect by content.
    #[serde(default)]
    pub format: Option<String>,
    /// In folders, only files whose name ends with this (e.g. ".log"); `.evtx` files are
    /// always taken.
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// On the very first run (no state file yet), read files that already exist from their
    /// start instead of from their end.
    #[serde(default)]
    pub from_start: bool,
    /// Where the acknowledged offsets are kept (JSON, replaced atomically). Without it a
    /// restart tails every file from its end again.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// At most this many bytes of a text file per batch.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Longer lines are truncated to this size and counted.
    #[serde(default = "default_max_message_bytes")]
    pub max_line_bytes: usize,
    /// At most this many EVTX records per batch.
    #[serde(default = "default_evtx_batch_records")]
    pub evtx_batch_records: usize,
}

impl WatchConfig {
    /// A watcher of `paths` for `org` with every other setting at its default.
    pub fn new(paths: Vec<PathBuf>, org: impl Into<String>) -> Self {
        WatchConfig {
            paths,
            org: org.into(),
            format: None,
            suffix: None,
            poll_interval_ms: default_poll_interval_ms(),
            from_start: false,
            state_file: None,
            batch_bytes: default_batch_bytes(),
            max_line_bytes: default_max_message_bytes(),
            evtx_batch_records: default_evtx_batch_records(),
        }
    }
}

impl SyslogUdpConfig {
    /// A listener on `listen` with every other setting at its default.
    pub fn new(listen: SocketAddr) -> Self {
        SyslogUdpConfig {
            listen,
            batch_records: default_udp_batch_records(),
            batch_wait_ms: default_udp_batch_wait_ms(),
            format: None,
        }
    }
}

impl SyslogTcpConfig {
    /// A listener on `listen` with every other setting at its default.
    pub fn new(listen: SocketAddr) -> Self {
        SyslogTcpConfig {
            listen,
            max_message_bytes: default_max_message_bytes(),
            max_connections: default_max_connections(),
            idle_timeout_secs: default_idle_timeout_secs(),
            format: None,
        }
    }
}

impl SyslogTlsConfig {
    /// A listener on `listen` with this certificate and key, no client authentication, and
    /// every other setting at its default.
    pub fn new(listen: SocketAddr, cert: PathBuf, key: PathBuf) -> Self {
        SyslogTlsConfig {
            listen,
            cert,
            key,
            client_ca: None,
            client_orgs: Vec::new(),
            client_default_org: None,
            max_message_bytes: default_max_message_bytes(),
            max_connections: default_max_connections(),
            idle_timeout_secs: default_idle_timeout_secs(),
            handshake_timeout_secs: default_handshake_timeout_secs(),
            format: None,
        }
    }
}

/// The hint sent with syslog batches: "syslog" unless configured; "auto" means none.
pub(crate) fn syslog_format_hint(configured: &Option<String>) -> Option<String> {
    match configured.as_deref() {
        None => Some("syslog".to_owned()),
        Some("auto") => None,
        Some(f) => Some(f.to_owned()),
    }
}

fn default_udp_batch_records() -> usize {
    256
}
fn default_udp_batch_wait_ms() -> u64 {
    5
}
fn default_max_message_bytes() -> usize {
    64 * 1024
}
fn default_max_connections() -> usize {
    1024
}
fn default_idle_timeout_secs() -> u64 {
    300
}
fn default_handshake_timeout_secs() -> u64 {
    10
}
fn default_poll_interval_ms() -> u64 {
    1000
}
fn default_batch_bytes() -> usize {
    1024 * 1024
}
fn default_evtx_batch_records() -> usize {
    1000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape the server's TOML holds under `[ingest]`, here as the equivalent JSON.
    #[test]
    fn reads_the_documented_shape_with_defaults() {
        let json = r#"{
            "orgs": {"default_org": "unassigned", "networks": [{"cidr": "10.1.0.0/16", "org": "org-a"}]},
            "syslog_udp": [{"listen": "0.0.0.0:514"}],
            "syslog_tcp": [{"listen": "[::]:601", "max_message_bytes": 8192, "format": "auto"}],
            "syslog_tls": [{"listen": "0.0.0.0:6514", "cert": "s.crt", "key": "s.key", "client_ca": "ca.crt",
                            "client_orgs": [{"name": "fw1.org-a.example", "org": "org-a"}, {"sha256": "3f:a1", "org": "org-b"}]}],
            "watch": [{"paths": ["/var/log/auth.log"], "org": "org-a", "state_file": "/var/lib/w.json"}]
        }"#;
        let c: IngestConfig = serde_json::from_str(json).expect("config");
        assert_eq!(c.orgs.networks[0].org, "org-a");
        assert_eq!(c.syslog_udp[0].batch_records, 256);
        assert_eq!(c.syslog_tcp[0].max_message_bytes, 8192);
        assert_eq!(c.syslog_tcp[0].max_connections, 1024);
        assert_eq!(syslog_format_hint(&c.syslog_tcp[0].format), None);
        assert_eq!(syslog_format_hint(&c.syslog_udp[0].format).as_deref(), Some("syslog"));
        assert_eq!(c.syslog_tls[0].client_orgs.len(), 2);
        assert_eq!(c.syslog_tls[0].handshake_timeout_secs, 10);
        assert_eq!(c.watch[0].poll_interval_ms, 1000);
        assert!(!c.watch[0].from_start);
        let unknown = r#"{"syslog_udp": [{"listen": "0.0.0.0:514", "port": 1}]}"#;
        assert!(serde_json::from_str::<IngestConfig>(unknown).is_err(), "unknown fields are refused");
    }
}
