//! Syslog over TCP (RFC 6587). Each connection is read a chunk at a time; the chunk's
//! messages go to the server as one batch with an ack, and the next chunk is read only once
//! the ack says the batch is stored. A sender faster than the server therefore fills its own
//! socket buffers and TCP flow control slows it down; nothing is read that is not going to
//! be stored. A refused batch closes the connection: the sender sees the close and can
//! resend what was not stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::config::syslog_format_hint;
use crate::framing::{FrameOutcome, Framer};
use crate::{
    IngestError, IngestMetrics, OrgMap, Origin, RawBatch, Shutdown, SourceKind, Spawned, SyslogTcpConfig, stopped,
};

/// How much is read from a connection at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A batch takes what a connection has ready, up to this many bytes (plus one message held by
/// the framer): a sender that waited for the last batch's ack has its next messages in the
/// socket's buffer, and one batch of them is one transaction instead of many (measured: 1 MiB
/// batches kept a 4-connection load at 43k events/s, 4 MiB ones at 60k; BENCHMARKS.md).
const GATHER_BYTES: usize = 4 * 1024 * 1024;

/// Bytes all connections of one listener may hold gathered beyond their first read, until
/// their batches are acknowledged: with many busy senders, each gathers less, so that memory
/// stays bounded (a connection always takes one read, `READ_CHUNK`, and one message).
const GATHER_BUDGET: usize = 64 * 1024 * 1024;

/// The gathered bytes a connection holds against its listener's [`GATHER_BUDGET`], given back
/// when dropped (the batch acknowledged, or the connection gone).
struct Gathered<'a> {
    shared: &'a AtomicUsize,
    held: usize,
}

impl<'a> Gathered<'a> {
    fn new(shared: &'a AtomicUsize) -> Self {
        Gathered { shared, held: 0 }
    }

    /// Takes `n` bytes from the budget if it has them.
    fn take(&mut self, n: usize) -> bool {
        let taken = self
            .shared
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= GATHER_BUDGET)
            })
            .is_ok();
        if taken {
            self.held += n;
        }
        taken
    }
}

impl Drop for Gathered<'_> {
    fn drop(&mut self) {
        self.shared.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// What a connection handler needs besides the stream.
pub(crate) struct Connection {
    pub origin: Origin,
    pub kind: SourceKind,
    pub format: Option<String>,
    pub max_message: usize,
    pub idle_timeout: Duration,
    pub tx: mpsc::Sender<RawBatch>,
    pub metrics: Arc<IngestMetrics>,
    pub shutdown: Shutdown,
    /// Bytes the listener's connections hold gathered (see [`GATHER_BUDGET`]).
    pub gathering: Arc<AtomicUsize>,
}

/// Binds `config.listen` and starts accepting. Senders are mapped to organisations by
/// `orgs`; a connection from an unmapped sender is closed at once and counted.
pub async fn spawn_syslog_tcp(
    config: &SyslogTcpConfig,
    orgs: Arc<OrgMap>,
    tx: mpsc::Sender<RawBatch>,
    metrics: Arc<IngestMetrics>,
    mut shutdown: Shutdown,
) -> Result<Spawned, IngestError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| IngestError::Bind { addr: config.listen.to_string(), source })?;
    let local_addr = listener.local_addr().ok();
    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let format = syslog_format_hint(&config.format);
    let max_message = config.max_message_bytes;
    let idle_timeout = Duration::from_secs(config.idle_timeout_secs.max(1));
    let gathering = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                () = stopped(&mut shutdown) => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(message = "Syslog TCP accept failed.", error = %e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                metrics.add_over_limit(SourceKind::SyslogTcp);
                tracing::warn!(message = "Syslog TCP connection refused: too many connections.", sender = %peer);
                continue;
            };
            let ip = peer.ip().to_canonical();
            let Some(org) = orgs.org_for(ip) else {
                metrics.add_unmapped(SourceKind::SyslogTcp, 1);
                tracing::warn!(message = "Syslog TCP connection from an unmapped sender refused.", sender = %ip);
                continue;
            };
            let conn = Connection {
                origin: Origin { org: org.to_owned(), source: format!("syslog-tcp {ip}") },
                kind: SourceKind::SyslogTcp,
                format: format.clone(),
                max_message,
                idle_timeout,
                tx: tx.clone(),
                metrics: metrics.clone(),
                shutdown: shutdown.clone(),
                gathering: gathering.clone(),
            };
            tokio::spawn(async move {
                serve_connection(stream, conn).await;
                drop(permit);
            });
        }
    });
    Ok(Spawned { local_addr, task })
}

/// Reads one connection until it ends, is idle too long, a batch is refused, or shutdown.
pub(crate) async fn serve_connection<S: AsyncRead + Unpin>(mut stream: S, mut conn: Connection) {
    conn.metrics.connection_opened(conn.kind);
    let mut framer = Framer::new(conn.max_message);
    let mut chunk = vec![0u8; READ_CHUNK];
    let gathering = conn.gathering.clone();
    loop {
        let read = tokio::select! {
            biased;
            () = stopped(&mut conn.shutdown) => break,
            read = tokio::time::timeout(conn.idle_timeout, stream.read(&mut chunk)) => read,
        };
        let n = match read {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::debug!(message = "Syslog connection read failed.", source = %conn.origin.source, error = %e);
                0
            }
            Err(_) => {
                tracing::debug!(message = "Idle syslog connection closed.", source = %conn.origin.source);
                0
            }
        };
        let mut records = Vec::new();
        let outcome = if n == 0 { framer.finish(&mut records) } else { framer.push(&chunk[..n], &mut records) };
        count(&conn, outcome);
        // What else is ready now, without waiting (a read that is not ready is dropped
        // unstarted: nothing is lost), while the listener's budget allows.
        let mut ended = n == 0;
        let mut gathered = n;
        let mut budget = Gathered::new(&gathering);
        while !ended && gathered < GATHER_BYTES && budget.take(READ_CHUNK) {
            match tokio::time::timeout(Duration::ZERO, stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    ended = true;
                    count(&conn, framer.finish(&mut records));
                }
                Ok(Ok(m)) => {
                    gathered += m;
                    count(&conn, framer.push(&chunk[..m], &mut records));
                }
                Err(_) => break,
            }
        }
        if !records.is_empty() && !send_and_wait(&mut conn, records).await {
            break;
        }
        drop(budget);
        if ended {
            break;
        }
    }
    conn.metrics.connection_closed(conn.kind);
}

fn count(conn: &Connection, outcome: FrameOutcome) {
    if outcome.truncated > 0 {
        conn.metrics.add_truncated(conn.kind, outcome.truncated);
    }
    if outcome.framing_errors > 0 {
        conn.metrics.add_framing_errors(conn.kind, outcome.framing_errors);
    }
}

/// Hands a batch over and waits until the server has stored it. False when the connection
/// should close (refused, server gone, shutdown).
async fn send_and_wait(conn: &mut Connection, records: Vec<bytes::Bytes>) -> bool {
    let (count, bytes) = (records.len(), records.iter().map(|r| r.len()).sum());
    let (ack, acked) = oneshot::channel();
    let batch = RawBatch { origin: conn.origin.clone(), format: conn.format.clone(), records, ack: Some(ack) };
    tokio::select! {
        biased;
        () = stopped(&mut conn.shutdown) => return false,
        sent = conn.tx.send(batch) => if sent.is_err() {
            return false;
        },
    }
    conn.metrics.received(conn.kind, count, bytes);
    let answer = tokio::select! {
        biased;
        () = stopped(&mut conn.shutdown) => return false,
        answer = acked => answer,
    };
    match answer {
        Ok(Ok(())) => true,
        Ok(Err(reason)) => {
            conn.metrics.add_batch_refused(conn.kind);
            tracing::warn!(message = "Batch refused by the server; closing the connection.", source = %conn.origin.source, %reason);
            false
        }
        Err(_) => {
            conn.metrics.add_batch_refused(conn.kind);
            tracing::warn!(message = "Batch dropped by the server without an answer; closing the connection.", source = %conn.origin.source);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_share_the_gather_budget_and_give_it_back() {
        let shared = AtomicUsize::new(0);
        let mut a = Gathered::new(&shared);
        let mut b = Gathered::new(&shared);
        let mut taken = 0;
        while a.take(READ_CHUNK) {
            taken += READ_CHUNK;
        }
        assert_eq!(taken, GATHER_BUDGET, "one connection may take the whole budget");
        assert!(!b.take(1), "none is left for another");
        drop(a);
        assert_eq!(shared.load(Ordering::Acquire), 0);
        assert!(b.take(READ_CHUNK), "given back when the batch is acknowledged");
        drop(b);
        assert_eq!(shared.load(Ordering::Acquire), 0);
    }
}
