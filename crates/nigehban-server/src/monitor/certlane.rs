//! Scale-out detection nodes, the CERT lane: rules owned by CERTs (`certs`) over the whole log.
//!
//! An organisation's events are all in one slot, but a CERT's constituency spans many slots,
//! so the CERTs' rules cannot run with the slots' detection. They run in a lane of their own:
//! one lease ([`nigehban_store::CERT_LANE`]) that one detection node holds at a time. The
//! holder reads the whole log after the lane's cursor ([`nigehban_store::CERT_CURSOR`]), runs
//! only the CERTs' rule sets over it (the organisations' own rules are the slots' work), and
//! commits the CERTs' alerts, the cursor and the CERTs' saved streams in one transaction fenced
//! by the lease. A node that dies loses the lane when its lease expires; another node claims it
//! (a new epoch), restores the streams saved with the cursor and goes on from its position, so
//! a CERT's detection counts every event once, as in the embedded mode.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nigehban_detect::DetectorSet;
use nigehban_store::{CERT_CURSOR, CursorUpdate, Fence, Lease, StoreError};

use super::certs::Members;
use super::detect::{Streams, detect_batch_with};
use super::slots::micros;
use super::{Monitor, pause};

/// The lane as this node holds it.
struct Held {
    lease: Lease,
    cursor: i64,
    streams: Streams,
    /// The streams' state as last committed: what a failed commit goes back to.
    committed: Option<Vec<u8>>,
}

/// Runs until `shutdown` says stop (nothing to do without CERT rules); then gives the lane
/// back with the node's other leases (`slots::run` releases them all).
pub(crate) async fn run(monitor: Arc<Monitor>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let certs = monitor.config.cert_rules.clone();
    if certs.is_empty() {
        return;
    }
    let node = monitor.node.name.clone();
    // The organisations' own detectors are the slots' work: the lane runs none of them.
    let none = Arc::new(DetectorSet::new());
    let mut held: Option<Held> = None;
    let mut members = Members::default();
    let mut renewed: Option<Instant> = None;
    let renew_every = monitor.config.lease_ttl / 5;
    let ttl = micros(monitor.config.lease_ttl);
    tracing::info!(message = "This node may run the CERT lane.", node = %node, cert_rule_sets = certs.sets().len());
    loop {
        if *shutdown.borrow() {
            break;
        }
        if renewed.is_none_or(|t| t.elapsed() >= renew_every) {
            match monitor.store.cert_lane_lease(&node, ttl).await {
                Ok(Some(lease)) => {
                    renewed = Some(Instant::now());
                    if held.as_ref().is_none_or(|h| h.lease != lease) {
                        match monitor.store.cursor(CERT_CURSOR).await {
                            Ok(saved) => {
                                let cursor = saved.as_ref().map_or(0, |(p, _)| *p);
                                let committed = saved.and_then(|(_, s)| s);
                                let streams = Streams::restore_with_certs(&none, &certs, committed.as_deref());
                                tracing::info!(
                                    message = "This node runs the CERT lane.",
                                    epoch = lease.epoch,
                                    position = cursor
                                );
                                held = Some(Held { lease, cursor, streams, committed });
                            }
                            Err(e) => {
                                tracing::error!(message = "The CERT lane's cursor could not be read; retrying.", error = %e);
                                held = None;
                                renewed = None;
                            }
                        }
                    }
                }
                Ok(None) => {
                    if held.take().is_some() {
                        tracing::info!(message = "The CERT lane moved to another node.");
                    }
                    renewed = Some(Instant::now());
                }
                Err(e) => {
                    tracing::error!(message = "The CERT lane's lease could not be renewed; retrying.", error = %e);
                    monitor.metrics.detect_errors.fetch_add(1, Ordering::Relaxed);
                    if pause(&mut shutdown, Duration::from_secs(1)).await {
                        break;
                    }
                    continue;
                }
            }
        }
        let worked = match held.as_mut() {
            None => false,
            Some(h) => match detect(&monitor, &node, &none, h, &mut members).await {
                Ok(did) => did,
                Err(StoreError::LeaseLost(_)) => {
                    tracing::warn!(message = "Another node took the CERT lane; its batch is left to that node.");
                    monitor.metrics.leases_lost.fetch_add(1, Ordering::Relaxed);
                    held = None;
                    true
                }
                Err(e) => {
                    tracing::error!(message = "The CERT lane failed on a batch; retrying.", error = %e);
                    monitor.metrics.detect_errors.fetch_add(1, Ordering::Relaxed);
                    if pause(&mut shutdown, Duration::from_secs(1)).await {
                        break;
                    }
                    true
                }
            },
        };
        if !worked {
            let wait = if held.is_some() { Duration::from_millis(500) } else { renew_every };
            tokio::select! {
                _ = monitor.arrivals.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    tracing::info!(message = "The CERT lane stopped on this node.", node = %node);
}

/// One batch of the log through the CERTs' rules; `Ok(true)` when there was one.
async fn detect(
    monitor: &Arc<Monitor>,
    node: &str,
    none: &Arc<DetectorSet>,
    h: &mut Held,
    members: &mut Members,
) -> Result<bool, StoreError> {
    let mut batch = monitor.store.events_after(h.cursor, monitor.config.detect_batch).await?;
    let Some(last) = batch.last().map(|e| e.id) else { return Ok(false) };
    let orgs: BTreeSet<uuid::Uuid> = batch.iter().map(|e| e.org_id).collect();
    members.refresh(&monitor.config.cert_rules, &monitor.store, orgs.into_iter()).await;
    let mut streams = std::mem::replace(&mut h.streams, Streams::new());
    let lane_members = std::mem::take(members);
    let m = monitor.clone();
    let none_set = none.clone();
    let result = tokio::task::spawn_blocking(move || {
        let with = Some((&m.config.cert_rules, &lane_members));
        let hits = detect_batch_with(&none_set, &m.config, &mut batch, &mut streams, with);
        let saved = streams.save();
        (hits, saved, streams, lane_members)
    })
    .await;
    let (hits, saved, streams, back) = match result {
        Ok(r) => r,
        Err(e) => {
            // A detector panicked: a bug, not bad input. Back to the state last committed.
            h.streams = Streams::restore_with_certs(none, &monitor.config.cert_rules, h.committed.as_deref());
            return Err(StoreError::Invalid(format!("detection failed in the CERT lane: {e}")));
        }
    };
    *members = back;
    h.streams = streams;
    let update = CursorUpdate {
        name: CERT_CURSOR,
        position: last,
        state: saved.as_deref(),
        fence: Some(Fence { holder: node, lease: h.lease, ttl_micros: micros(monitor.config.lease_ttl) }),
    };
    match monitor.store.commit_detections(&hits, Some(update)).await {
        Ok(created) => {
            h.cursor = last;
            h.committed = saved;
            monitor.metrics.detections.fetch_add(hits.len() as u64, Ordering::Relaxed);
            monitor.metrics.alerts_created.fetch_add(created.len() as u64, Ordering::Relaxed);
            Ok(true)
        }
        Err(e) => {
            h.streams = Streams::restore_with_certs(none, &monitor.config.cert_rules, h.committed.as_deref());
            Err(e)
        }
    }
}
