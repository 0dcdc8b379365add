//! Counters every source updates, rendered in the Prometheus text format for the server's
//! `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The kinds of source, the `source` label of the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    SyslogUdp,
    SyslogTcp,
    SyslogTls,
    File,
}

impl SourceKind {
    /// Every kind, in the order the metrics list them.
    pub const ALL: [SourceKind; 4] =
        [SourceKind::SyslogUdp, SourceKind::SyslogTcp, SourceKind::SyslogTls, SourceKind::File];

    /// The label value (`syslog_udp`, `syslog_tcp`, `syslog_tls`, `file`).
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::SyslogUdp => "syslog_udp",
            SourceKind::SyslogTcp => "syslog_tcp",
            SourceKind::SyslogTls => "syslog_tls",
            SourceKind::File => "file",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One counter per source kind.
#[derive(Debug, Default)]
struct PerKind([AtomicU64; 4]);

impl PerKind {
    fn add(&self, kind: SourceKind, n: u64) {
        self.0[kind.index()].fetch_add(n, Ordering::Relaxed);
    }
    fn sub(&self, kind: SourceKind, n: u64) {
        self.0[kind.index()].fetch_sub(n, Ordering::Relaxed);
    }
    fn get(&self, kind: SourceKind) -> u64 {
        self.0[kind.index()].load(Ordering::Relaxed)
    }
}

/// What the sources have received, dropped and refused since start. Shared by every source
/// (`Arc<IngestMetrics>`); updates are relaxed atomic additions.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    records: PerKind,
    bytes: PerKind,
    udp_dropped: AtomicU64,
    connections_open: PerKind,
    connections_over_limit: PerKind,
    framing_errors: PerKind,
    truncated: PerKind,
    tls_handshake_failures: AtomicU64,
    unmapped_refused: PerKind,
    batches_refused: PerKind,
    evtx_record_errors: AtomicU64,
}

impl IngestMetrics {
    /// Fresh counters, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records handed to the channel.
    pub fn records(&self, kind: SourceKind) -> u64 {
        self.records.get(kind)
    }
    /// Bytes of the records handed to the channel.
    pub fn bytes(&self, kind: SourceKind) -> u64 {
        self.bytes.get(kind)
    }
    /// UDP messages dropped because the channel was full.
    pub fn udp_dropped(&self) -> u64 {
        self.udp_dropped.load(Ordering::Relaxed)
    }
    /// Connections open now (TCP, TLS).
    pub fn connections_open(&self, kind: SourceKind) -> u64 {
        self.connections_open.get(kind)
    }
    /// Connections closed at once because the listener had its maximum.
    pub fn connections_over_limit(&self, kind: SourceKind) -> u64 {
        self.connections_over_limit.get(kind)
    }
    /// Framing problems: a connection that ended inside an octet-counted message.
    pub fn framing_errors(&self, kind: SourceKind) -> u64 {
        self.framing_errors.get(kind)
    }
    /// Messages or lines longer than the limit, truncated to it.
    pub fn truncated(&self, kind: SourceKind) -> u64 {
        self.truncated.get(kind)
    }
    /// TLS handshakes that failed or timed out.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.tls_handshake_failures.load(Ordering::Relaxed)
    }
    /// Senders refused because no organisation mapping matched them (UDP: datagrams;
    /// TCP, TLS: connections).
    pub fn unmapped_refused(&self, kind: SourceKind) -> u64 {
        self.unmapped_refused.get(kind)
    }
    /// Batches the server refused (answered with an error) or dropped without an answer
    /// (`nigehban_ingest_batch_failures_total`).
    pub fn batches_refused(&self, kind: SourceKind) -> u64 {
        self.batches_refused.get(kind)
    }
    /// EVTX records (or chunks) that could not be read from watched files.
    pub fn evtx_record_errors(&self) -> u64 {
        self.evtx_record_errors.load(Ordering::Relaxed)
    }

    pub(crate) fn received(&self, kind: SourceKind, records: usize, bytes: usize) {
        self.records.add(kind, records as u64);
        self.bytes.add(kind, bytes as u64);
    }
    pub(crate) fn add_udp_dropped(&self, n: usize) {
        self.udp_dropped.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn connection_opened(&self, kind: SourceKind) {
        self.connections_open.add(kind, 1);
    }
    pub(crate) fn connection_closed(&self, kind: SourceKind) {
        self.connections_open.sub(kind, 1);
    }
    pub(crate) fn add_over_limit(&self, kind: SourceKind) {
        self.connections_over_limit.add(kind, 1);
    }
    pub(crate) fn add_framing_errors(&self, kind: SourceKind, n: usize) {
        self.framing_errors.add(kind, n as u64);
    }
    pub(crate) fn add_truncated(&self, kind: SourceKind, n: usize) {
        self.truncated.add(kind, n as u64);
    }
    pub(crate) fn add_tls_handshake_failure(&self) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_unmapped(&self, kind: SourceKind, n: usize) {
        self.unmapped_refused.add(kind, n as u64);
    }
    pub(crate) fn add_batch_refused(&self, kind: SourceKind) {
        self.batches_refused.add(kind, 1);
    }
    pub(crate) fn add_evtx_record_errors(&self, n: usize) {
        self.evtx_record_errors.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The counters in the Prometheus text exposition format (`nigehban_ingest_*`, with HELP
    /// and TYPE lines), ready to append to `/metrics`.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let per_kind: [(&str, &str, &str, &PerKind, &[SourceKind]); 8] = [
            ("records_total", "counter", "Records received and handed to the server.", &self.records, &SourceKind::ALL),
            ("bytes_total", "counter", "Bytes of the records received.", &self.bytes, &SourceKind::ALL),
            ("connections_open", "gauge", "Connections open now.", &self.connections_open, &STREAMS),
            (
                "connections_over_limit_total",
                "counter",
                "Connections closed at once because the listener had its maximum.",
                &self.connections_over_limit,
                &STREAMS,
            ),
            (
                "framing_errors_total",
                "counter",
                "Connections that ended inside an octet-counted message.",
                &self.framing_errors,
                &STREAMS,
            ),
            (
                "truncated_total",
                "counter",
                "Messages or lines longer than the limit, truncated to it.",
                &self.truncated,
                &SourceKind::ALL,
            ),
            (
                "unmapped_refused_total",
                "counter",
                "Senders refused because no organisation mapping matched (UDP: messages; TCP, TLS: connections).",
                &self.unmapped_refused,
                &[SourceKind::SyslogUdp, SourceKind::SyslogTcp, SourceKind::SyslogTls],
            ),
            (
                // Not `batches_refused_total`: the server's receiver counts its refusals under
                // that name, and one exposition cannot hold a family twice.
                "batch_failures_total",
                "counter",
                "Batches a source saw refused by the server or dropped without an answer.",
                &self.batches_refused,
                &[SourceKind::SyslogTcp, SourceKind::SyslogTls, SourceKind::File],
            ),
        ];
        for (name, kind, help, counter, sources) in per_kind {
            let _ = writeln!(out, "# HELP nigehban_ingest_{name} {help}");
            let _ = writeln!(out, "# TYPE nigehban_ingest_{name} {kind}");
            for source in sources {
                let _ =
                    writeln!(out, "nigehban_ingest_{name}{{source=\"{}\"}} {}", source.label(), counter.get(*source));
            }
        }
        let single = [
            ("udp_dropped_total", "UDP messages dropped because the server's queue was full.", self.udp_dropped()),
            ("tls_handshake_failures_total", "TLS handshakes that failed or timed out.", self.tls_handshake_failures()),
            (
                "evtx_record_errors_total",
                "EVTX records or chunks of watched files that could not be read.",
                self.evtx_record_errors(),
            ),
        ];
        for (name, help, value) in single {
            let _ = writeln!(out, "# HELP nigehban_ingest_{name} {help}");
            let _ = writeln!(out, "# TYPE nigehban_ingest_{name} counter");
            let _ = writeln!(out, "nigehban_ingest_{name} {value}");
        }
        out
    }
}

const STREAMS: [SourceKind; 2] = [SourceKind::SyslogTcp, SourceKind::SyslogTls];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_labelled_samples() {
        let m = IngestMetrics::new();
        m.received(SourceKind::SyslogTcp, 3, 120);
        m.add_udp_dropped(2);
        m.connection_opened(SourceKind::SyslogTls);
        let text = m.render_prometheus();
        assert!(text.contains("# TYPE nigehban_ingest_records_total counter\n"), "{text}");
        assert!(text.contains("nigehban_ingest_records_total{source=\"syslog_tcp\"} 3\n"), "{text}");
        assert!(text.contains("nigehban_ingest_bytes_total{source=\"syslog_tcp\"} 120\n"), "{text}");
        assert!(text.contains("nigehban_ingest_udp_dropped_total 2\n"), "{text}");
        assert!(text.contains("# TYPE nigehban_ingest_connections_open gauge\n"), "{text}");
        // The server's receiver has its own `nigehban_ingest_batches_refused_total`.
        assert!(!text.contains("batches_refused"), "{text}");
        assert!(text.contains("nigehban_ingest_connections_open{source=\"syslog_tls\"} 1\n"), "{text}");
        // Every sample line follows its HELP and TYPE lines.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(text.contains(&format!("# TYPE {name} ")), "no TYPE for {name}");
        }
    }
}
