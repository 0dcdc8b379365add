//! Scale-out detection nodes, second stage: detect over the slots of the event log this node
//! holds leases on (see `nigehban_store`'s `scaleout` module).
//!
//! Every few seconds the node says it is alive, counts the live detection nodes and renews
//! its leases, claiming free or expired slots up to its share (or giving back what is beyond
//! it, when a node joins). For each slot it holds, it reads the events after the slot's cursor,
//! detects them as the embedded worker does (`detect::detect_batch`, with the slot's streams:
//! each organisation is in one slot) and commits alerts, cursor and saved streams in one
//! transaction fenced by the lease. A slot taken over from a node that died goes on from its
//! last commit, with the streams saved there: every event is counted once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nigehban_store::{CursorUpdate, Fence, Lease, SLOTS, StoreError, slot_cursor};

use super::detect::{Streams, detect_batch};
use super::{Monitor, pause};

struct Held {
    lease: Lease,
    name: String,
    cursor: i64,
    streams: Streams,
    /// The streams' state as last committed: what a failed commit goes back to.
    committed: Option<Vec<u8>>,
}

/// A duration in µs (saturating), as leases and fences count time.
pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Runs until `shutdown` says stop; then gives the slots back so other nodes take them at once.
pub(crate) async fn run(monitor: Arc<Monitor>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let node = monitor.node.name.clone();
    let mut held: BTreeMap<i16, Held> = BTreeMap::new();
    let mut renewed: Option<Instant> = None;
    // Leases are renewed (and shares recomputed) every fifth of their life.
    let renew_every = monitor.config.lease_ttl / 5;
    tracing::info!(message = "Detection over leased slots starts.", node = %node, slots = SLOTS);
    loop {
        if *shutdown.borrow() {
            break;
        }
        if renewed.is_none_or(|t| t.elapsed() >= renew_every) {
            match renew(&monitor, &node, &mut held).await {
                Ok(()) => renewed = Some(Instant::now()),
                Err(e) => {
                    tracing::error!(message = "Detection leases could not be renewed; retrying.", error = %e);
                    monitor.metrics.detect_errors.fetch_add(1, Ordering::Relaxed);
                    if pause(&mut shutdown, Duration::from_secs(1)).await {
                        break;
                    }
                    continue;
                }
            }
        }
        let mut worked = false;
        let slots: Vec<i16> = held.keys().copied().collect();
        for slot in slots {
            if *shutdown.borrow() || renewed.is_none_or(|t| t.elapsed() >= renew_every) {
                break;
            }
            match detect_slot(&monitor, &node, &mut held, slot).await {
                Ok(did) => worked |= did,
                Err(e) => {
                    tracing::error!(message = "Detection failed on a slot; retrying.", slot, error = %e);
                    monitor.metrics.detect_errors.fetch_add(1, Ordering::Relaxed);
                    if pause(&mut shutdown, Duration::from_secs(1)).await {
                        break;
                    }
                }
            }
        }
        if !worked {
            tokio::select! {
                _ = monitor.arrivals.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    if let Err(e) = monitor.store.release_detect_leases(&node).await {
        tracing::warn!(message = "Detection leases could not be given back; they expire on their own.", error = %e);
    }
    tracing::info!(message = "Detection over leased slots stopped.", node = %node);
}

/// Heartbeat, share, leases; loads the state of newly held slots and drops the lost ones.
async fn renew(monitor: &Monitor, node: &str, held: &mut BTreeMap<i16, Held>) -> Result<(), StoreError> {
    let ttl = micros(monitor.config.lease_ttl);
    let live = monitor.store.detect_heartbeat(node, ttl).await?;
    let share = usize::try_from(SLOTS).unwrap_or(1).div_ceil(live.max(1));
    let leases = monitor.store.detect_leases(node, share, ttl).await?;
    let before = held.len();
    held.retain(|slot, h| {
        let kept = leases.iter().any(|l| l.slot == *slot && l.epoch == h.lease.epoch);
        if !kept {
            tracing::info!(message = "A detection slot moved to another node.", slot = *slot);
        }
        kept
    });
    let lost = before - held.len();
    for lease in leases {
        if held.contains_key(&lease.slot) {
            continue;
        }
        let name = slot_cursor(lease.slot);
        let saved = monitor.store.cursor(&name).await?;
        let cursor = saved.as_ref().map_or(0, |(p, _)| *p);
        let committed = saved.and_then(|(_, s)| s);
        let streams = Streams::restore(&monitor.detectors, committed.as_deref());
        tracing::info!(
            message = "This node detects a slot.",
            slot = lease.slot,
            epoch = lease.epoch,
            position = cursor
        );
        held.insert(lease.slot, Held { lease, name, cursor, streams, committed });
    }
    monitor.metrics.slots_held.store(held.len() as u64, Ordering::Relaxed);
    monitor.metrics.leases_lost.fetch_add(lost as u64, Ordering::Relaxed);
    match monitor.store.slot_backlog().await {
        Ok(n) => monitor.backlog_estimate.store(n, Ordering::Relaxed),
        Err(e) => tracing::warn!(message = "The detection backlog could not be estimated.", error = %e),
    }
    Ok(())
}

/// One batch of one slot; `Ok(true)` when there was something to detect.
async fn detect_slot(
    monitor: &Arc<Monitor>,
    node: &str,
    held: &mut BTreeMap<i16, Held>,
    slot: i16,
) -> Result<bool, StoreError> {
    let Some(h) = held.get_mut(&slot) else { return Ok(false) };
    let mut batch = monitor.store.events_after_in_slot(slot, h.cursor, monitor.config.detect_batch).await?;
    let Some(last) = batch.last().map(|e| e.id) else { return Ok(false) };
    let count = batch.len() as u64;
    let mut streams = std::mem::replace(&mut h.streams, Streams::new());
    let m = monitor.clone();
    let result = tokio::task::spawn_blocking(move || {
        let hits = detect_batch(&m.detectors, &m.config, &mut batch, &mut streams);
        let saved = streams.save();
        (hits, saved, streams)
    })
    .await;
    let (hits, saved, streams) = match result {
        Ok(r) => r,
        Err(e) => {
            // A detector panicked: a bug, not bad input. Give the slot back with its state as
            // last committed; the error is loud in the log and the metrics.
            h.streams = Streams::restore(&monitor.detectors, h.committed.as_deref());
            return Err(StoreError::Invalid(format!("detection failed on slot {slot}: {e}")));
        }
    };
    h.streams = streams;
    let update = CursorUpdate {
        name: &h.name,
        position: last,
        state: saved.as_deref(),
        fence: Some(Fence { holder: node, lease: h.lease, ttl_micros: micros(monitor.config.lease_ttl) }),
    };
    match monitor.store.commit_detections(&hits, Some(update)).await {
        Ok(created) => {
            h.cursor = last;
            h.committed = saved;
            monitor.metrics.events_detected.fetch_add(count, Ordering::Relaxed);
            monitor.metrics.detections.fetch_add(hits.len() as u64, Ordering::Relaxed);
            monitor.metrics.alerts_created.fetch_add(created.len() as u64, Ordering::Relaxed);
            Ok(true)
        }
        Err(StoreError::LeaseLost(_)) => {
            tracing::warn!(message = "Another node took this slot; its batch is left to that node.", slot);
            monitor.metrics.leases_lost.fetch_add(1, Ordering::Relaxed);
            held.remove(&slot);
            Ok(true)
        }
        Err(e) => {
            h.streams = Streams::restore(&monitor.detectors, h.committed.as_deref());
            Err(e)
        }
    }
}
