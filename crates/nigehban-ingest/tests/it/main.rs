//! The sources on real sockets and files: what arrives in the channel, acks and
//! back-pressure, refusals, rotation and restarts.

mod tcp;
mod tls;
mod udp;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use nigehban_ingest::{IngestMetrics, NetworkOrg, OrgMap, OrgMapping, RawBatch, Shutdown};
use tokio::sync::mpsc;

/// The channel, metrics and shutdown signal a source is started with.
pub struct Harness {
    pub tx: mpsc::Sender<RawBatch>,
    pub rx: mpsc::Receiver<RawBatch>,
    pub metrics: Arc<IngestMetrics>,
    pub stop: tokio::sync::watch::Sender<bool>,
    pub shutdown: Shutdown,
}

pub fn harness(capacity: usize) -> Harness {
    let (tx, rx) = mpsc::channel(capacity);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    Harness { tx, rx, metrics: Arc::new(IngestMetrics::new()), stop, shutdown }
}

/// Loopback senders belong to `org`.
pub fn loopback_is(org: &str) -> Arc<OrgMap> {
    Arc::new(OrgMap::new(&OrgMapping {
        networks: vec![NetworkOrg { cidr: "127.0.0.0/8".parse().expect("cidr"), org: org.to_owned() }],
        default_org: None,
    }))
}

/// A mapping that holds no loopback address.
pub fn nobody() -> Arc<OrgMap> {
    Arc::new(OrgMap::new(&OrgMapping {
        networks: vec![NetworkOrg { cidr: "10.0.0.0/8".parse().expect("cidr"), org: "elsewhere".to_owned() }],
        default_org: None,
    }))
}

/// The next batch, failing the test after 10 s.
pub async fn next_batch(rx: &mut mpsc::Receiver<RawBatch>) -> RawBatch {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a batch within 10 s")
        .expect("the channel is open")
}

/// Acknowledges a batch as stored and returns its records as text.
pub fn ack(batch: RawBatch) -> Vec<String> {
    let records = texts(&batch);
    if let Some(ack) = batch.ack {
        let _ = ack.send(Ok(()));
    }
    records
}

pub fn texts(batch: &RawBatch) -> Vec<String> {
    batch.records.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect()
}

/// Receives and acknowledges batches until `n` records have arrived.
pub async fn collect(rx: &mut mpsc::Receiver<RawBatch>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        out.extend(ack(next_batch(rx).await));
    }
    out
}

/// Waits until `cond` holds, failing the test after 10 s.
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
