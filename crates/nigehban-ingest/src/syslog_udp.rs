//! Syslog over UDP: one datagram is one message. Datagrams are batched per sender (up to
//! `batch_records` or `batch_wait_ms`) and handed over with `try_send`: UDP has no way to
//! push back, so when the server's queue is full the batch is dropped and counted rather
//! than stalling the socket (which would only move the loss into the kernel's buffer).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::Instant;

use crate::config::syslog_format_hint;
use crate::{
    IngestError, IngestMetrics, OrgMap, Origin, RawBatch, Shutdown, SourceKind, Spawned, SyslogUdpConfig, stopped,
};

struct Pending {
    org: String,
    records: Vec<Bytes>,
    bytes: usize,
}

/// Binds `config.listen` and starts receiving. Senders are mapped to organisations by
/// `orgs`; datagrams from unmapped senders are dropped and counted.
pub async fn spawn_syslog_udp(
    config: &SyslogUdpConfig,
    orgs: Arc<OrgMap>,
    tx: mpsc::Sender<RawBatch>,
    metrics: Arc<IngestMetrics>,
    mut shutdown: Shutdown,
) -> Result<Spawned, IngestError> {
    let socket = UdpSocket::bind(config.listen)
        .await
        .map_err(|source| IngestError::Bind { addr: config.listen.to_string(), source })?;
    let local_addr = socket.local_addr().ok();
    let batch_records = config.batch_records.max(1);
    let wait = Duration::from_millis(config.batch_wait_ms);
    let format = syslog_format_hint(&config.format);
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        let mut pending: HashMap<IpAddr, Pending> = HashMap::new();
        let mut deadline: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                () = stopped(&mut shutdown) => break,
                () = sleep_until(deadline), if deadline.is_some() => {
                    deadline = None;
                    for (ip, p) in pending.drain() {
                        if !hand_over(&tx, &metrics, ip, p, &format) {
                            return;
                        }
                    }
                }
                received = socket.recv_from(&mut buf) => {
                    let (n, peer) = match received {
                        Ok(r) => r,
                        Err(e) => {
                            // ICMP errors surface here on some systems; the socket goes on.
                            tracing::debug!(message = "UDP receive error.", error = %e);
                            continue;
                        }
                    };
                    let message = trim_message(&buf[..n]);
                    if message.is_empty() {
                        continue;
                    }
                    let ip = peer.ip().to_canonical();
                    let entry = match pending.get_mut(&ip) {
                        Some(p) => p,
                        None => {
                            let Some(org) = orgs.org_for(ip) else {
                                metrics.add_unmapped(SourceKind::SyslogUdp, 1);
                                tracing::debug!(message = "Datagram from an unmapped sender dropped.", sender = %ip);
                                continue;
                            };
                            pending.entry(ip).or_insert(Pending { org: org.to_owned(), records: Vec::new(), bytes: 0 })
                        }
                    };
                    entry.bytes += message.len();
                    entry.records.push(Bytes::copy_from_slice(message));
                    if entry.records.len() >= batch_records {
                        if let Some(p) = pending.remove(&ip)
                            && !hand_over(&tx, &metrics, ip, p, &format)
                        {
                            return;
                        }
                    } else if deadline.is_none() {
                        deadline = Some(Instant::now() + wait);
                    }
                }
            }
        }
        for (ip, p) in pending.drain() {
            hand_over(&tx, &metrics, ip, p, &format);
        }
    });
    Ok(Spawned { local_addr, task })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Sends one sender's batch without waiting. False when the receiver is gone.
fn hand_over(
    tx: &mpsc::Sender<RawBatch>,
    metrics: &IngestMetrics,
    ip: IpAddr,
    p: Pending,
    format: &Option<String>,
) -> bool {
    let (count, bytes) = (p.records.len(), p.bytes);
    let batch = RawBatch {
        origin: Origin { org: p.org, source: format!("syslog-udp {ip}") },
        format: format.clone(),
        records: p.records,
        ack: None,
    };
    match tx.try_send(batch) {
        Ok(()) => {
            metrics.received(SourceKind::SyslogUdp, count, bytes);
            true
        }
        Err(TrySendError::Full(_)) => {
            metrics.add_udp_dropped(count);
            true
        }
        Err(TrySendError::Closed(_)) => false,
    }
}

/// A datagram without the line feeds, carriage returns and NULs some senders append.
fn trim_message(datagram: &[u8]) -> &[u8] {
    let mut end = datagram.len();
    while end > 0 && matches!(datagram[end - 1], b'\n' | b'\r' | 0) {
        end -= 1;
    }
    &datagram[..end]
}
