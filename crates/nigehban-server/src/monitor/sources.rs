//! The receiving end of the ingest sources (`nigehban-ingest`): resolves each batch's
//! organisation, parses its records, stores them and acknowledges the batch once durable.
//!
//! Several batches are handled at once (at most `max_concurrent_writes`), each in a task of its
//! own: parsing runs on the blocking pool, so it neither holds up the runtime's threads nor
//! waits for another batch's store round trip. Each batch is acknowledged once its own events
//! are durable, whatever happens to the others. Acknowledgements of different batches may come
//! in any order; that is safe because every source (a TCP or TLS connection, a file watcher)
//! has at most one batch in flight: it waits for that batch's acknowledgement before it reads
//! and sends the next, so a source's batches are still stored in the order it sent them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nigehban_ingest::RawBatch;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};
use uuid::Uuid;

use super::parse::{self, Target};
use super::{IngestRefusal, Monitor};

/// Organisation keys of the ingest mappings, resolved once (shared by the batches in flight).
type OrgCache = Arc<Mutex<HashMap<String, Uuid>>>;

/// Consumes batches until every sender is gone, then waits for the batches still in flight.
pub(crate) async fn run(monitor: Arc<Monitor>, mut rx: mpsc::Receiver<RawBatch>) {
    let orgs: OrgCache = Arc::default();
    let limit = monitor.config.max_concurrent_writes.max(1);
    let mut tasks = JoinSet::new();
    loop {
        while let Some(done) = tasks.try_join_next() {
            finished(done);
        }
        if tasks.len() >= limit {
            if let Some(done) = tasks.join_next().await {
                finished(done);
            }
            continue;
        }
        let Some(batch) = rx.recv().await else { break };
        tasks.spawn(handle(monitor.clone(), orgs.clone(), batch));
    }
    while let Some(done) = tasks.join_next().await {
        finished(done);
    }
}

/// A batch's task ended. It answers its source itself; a task that panicked dropped its ack,
/// which the source takes as a refusal.
fn finished(done: Result<(), JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(message = "A source batch's task failed.", error = %e);
    }
}

/// Parses, stores and acknowledges one batch.
async fn handle(monitor: Arc<Monitor>, orgs: OrgCache, batch: RawBatch) {
    let RawBatch { origin, format, records, ack } = batch;
    let result = async {
        let org = resolve(&monitor, &orgs, &origin.org).await?;
        let tlp = monitor.config.default_tlp;
        let source = origin.source.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            let mut body = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
            for r in &records {
                // A record is one message: a line break inside it (octet-counted syslog) must not
                // split it into two. Most records have none and are copied as they are.
                if memchr::memchr2(b'\n', b'\r', r).is_none() {
                    body.extend_from_slice(r);
                } else {
                    body.extend(r.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
                }
                body.push(b'\n');
            }
            drop(records);
            let target = Target { org, tlp, source: &source };
            parse::parse(&body, format.as_deref(), &target).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("the batch could not be parsed: {e}"))??;
        if parsed.rejected > 0 {
            monitor.metrics.records_rejected.fetch_add(parsed.rejected, Ordering::Relaxed);
            if let Some(first) = parsed.errors.first() {
                tracing::warn!(
                    message = "Records from a source could not be read.",
                    source = %origin.source, rejected = parsed.rejected, first = %first.message
                );
            }
        }
        // Sources wait for their acknowledgement; a busy store makes them wait longer
        // (their senders are pushed back), it never makes them drop.
        let mut parsed = parsed;
        loop {
            match monitor.store_parsed(&parsed.events, &mut parsed.parsed).await {
                Ok(_) => return Ok(()),
                Err(IngestRefusal::Busy(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(IngestRefusal::Rejected(why)) => return Err(why),
                Err(IngestRefusal::Store(e)) => return Err(e.to_string()),
            }
        }
    }
    .await;
    if let Err(reason) = &result {
        monitor.metrics.batches_refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(message = "A source batch was refused.", source = %origin.source, reason = %reason);
    }
    if let Some(ack) = ack {
        // The source may have gone (connection closed): nothing to tell it then.
        let _ = ack.send(result);
    }
}

/// The organisation a mapping names, by id or short name.
async fn resolve(monitor: &Monitor, cache: &OrgCache, key: &str) -> Result<Uuid, String> {
    // A poisoned cache only means another batch's task panicked while holding it: the map
    // itself is still sound.
    let cached = cache.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied();
    if let Some(id) = cached {
        return Ok(id);
    }
    let org = match Uuid::try_parse(key) {
        Ok(id) => monitor.store.org(id).await,
        Err(_) => monitor.store.org_by_short_name(key).await,
    }
    .map_err(|e| e.to_string())?
    .ok_or_else(|| format!("no organisation {key:?} (the ingest mapping names it)"))?;
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_owned(), org.id);
    Ok(org.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nigehban_detect::DetectorSet;
    use nigehban_ingest::Origin;
    use nigehban_policy::OrgKind;
    use nigehban_store::{Actor, NewOrg, OrgProfile, Store};
    use tokio::sync::oneshot;

    use crate::monitor::MonitorConfig;

    /// Sends one batch the way a TCP connection or the file watcher does, and waits for its
    /// acknowledgement.
    async fn send(
        tx: &mpsc::Sender<RawBatch>,
        org: &str,
        source: &str,
        format: Option<&str>,
        records: Vec<String>,
    ) -> Result<(), String> {
        let (ack, acked) = oneshot::channel();
        let batch = RawBatch {
            origin: Origin { org: org.to_owned(), source: source.to_owned() },
            format: format.map(str::to_owned),
            records: records.into_iter().map(bytes::Bytes::from).collect(),
            ack: Some(ack),
        };
        tx.send(batch).await.map_err(|_| "the receiver is gone".to_owned())?;
        acked.await.map_err(|_| "no answer".to_owned())?
    }

    fn lines(source: usize, batch: usize) -> Vec<String> {
        (0..20)
            .map(|i| format!("<13>1 2026-11-28T10:00:{i:02}Z host{source} app - - - batch {batch} line {i}"))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_of_several_sources_are_stored_at_once_and_acknowledged_once_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path()).await.unwrap();
        let org = NewOrg {
            kind: OrgKind::National,
            name: "The nCERT".into(),
            short_name: "ncert".into(),
            sector: None,
            province: None,
            parents: vec![],
            profile: OrgProfile::default(),
        };
        store.create_org(&Actor::system(), org).await.unwrap();
        let config = MonitorConfig { max_concurrent_writes: 3, ..Default::default() };
        let monitor = Monitor::new(store.clone(), DetectorSet::new(), config).await.unwrap();
        let (tx, rx) = mpsc::channel(4);
        let receiver = tokio::spawn(run(monitor.clone(), rx));

        let mut sources = JoinSet::new();
        for s in 0..6 {
            let (tx, store) = (tx.clone(), store.clone());
            sources.spawn(async move {
                for b in 0..5 {
                    let name = format!("test {s} {b}");
                    send(&tx, "ncert", &name, Some("syslog"), lines(s, b)).await.unwrap();
                    // Acknowledged means stored: the whole batch is in the log already.
                    let stored = store.events_after(0, 10_000).await.unwrap();
                    assert_eq!(stored.iter().filter(|e| e.source == name).count(), 20, "{name}");
                }
            });
        }
        while let Some(done) = sources.join_next().await {
            done.unwrap();
        }

        // Refusals reach the batch's own source, and the others go on.
        let refused = send(&tx, "nobody", "test x", Some("syslog"), lines(9, 0)).await.unwrap_err();
        assert!(refused.contains("no organisation"), "{refused}");
        let refused = send(&tx, "ncert", "test y", Some("no-such-format"), lines(9, 1)).await.unwrap_err();
        assert!(refused.contains("no-such-format"), "{refused}");
        send(&tx, "ncert", "test z", Some("syslog"), vec![]).await.unwrap();

        // The receiver ends once every sender is gone.
        drop(tx);
        receiver.await.unwrap();
        let stored = store.events_after(0, 10_000).await.unwrap();
        assert_eq!(stored.len(), 6 * 5 * 20);
        assert_eq!(monitor.metrics.events_stored.load(Ordering::Relaxed), 6 * 5 * 20);
        assert_eq!(monitor.metrics.batches_refused.load(Ordering::Relaxed), 2);
        // A source's batches are stored in the order it sent them (each waits for its ack).
        for s in 0..6 {
            let batches: Vec<&str> = stored
                .iter()
                .filter_map(|e| e.source.strip_prefix(&format!("test {s} ")))
                .collect::<Vec<_>>()
                .chunk_by(|a, b| a == b)
                .map(|run| run[0])
                .collect();
            assert_eq!(batches, ["0", "1", "2", "3", "4"], "source {s}");
        }
        store.close().await;
    }
}
