//! The detection worker: follows the event log with a cursor, runs the detectors, folds what
//! they find into alerts, and commits the alerts with the new cursor position.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nigehban_detect::{Detection, Detector, Engine, Findings};
use nigehban_event::{Source, codec};
use nigehban_policy::Tlp;
use nigehban_store::{AlertHit, CursorUpdate, Evidence, StoredEvent};
use rayon::prelude::*;

use super::{CURSOR, Monitor};

/// Runs until `shutdown` says stop. Errors are logged and the batch is tried again: the cursor
/// only moves with a successful commit.
pub(crate) async fn run(monitor: Arc<Monitor>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut cursor = monitor.detected.load(Ordering::Relaxed);
    tracing::info!(message = "Detection follows the event log.", position = cursor);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let batch = match monitor.store.events_after(cursor, monitor.config.detect_batch).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(message = "Detection could not read the event log; retrying.", error = %e);
                monitor.metrics.detect_errors.fetch_add(1, Ordering::Relaxed);
                pause(&mut shutdown, Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(last) = batch.last().map(|e| e.id) else {
            tokio::select! {
                _ = monitor.arrivals.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        let m = monitor.clone();
        let count = batch.len() as u64;
        let hits = match tokio::task::spawn_blocking(move || detect_batch(&m, &batch)).await {
            Ok(h) => h,
            Err(e) => {
                // A detector panicked: a bug, not bad input (readers and detectors do not panic on
                // input). Skipping the batch would lose detections silently, so stop here loudly.
                tracing::error!(message = "Detection failed on a batch; the worker stops.", error = %e, position = cursor);
                monitor.metrics.detect_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let update = CursorUpdate { name: CURSOR, position: last, state: None };
        match monitor.store.commit_detections(&hits, Some(update)).await {
            Ok(created) => {
                cursor = last;
                monitor.detected.store(last, Ordering::Relaxed);
                monitor.stored.fetch_max(last, Ordering::Relaxed);
                monitor.metrics.events_detected.fetch_add(count, Ordering::Relaxed);
                monitor.metrics.detections.fetch_add(hits.len() as u64, Ordering::Relaxed);
                monitor.metrics.alerts_created.fetch_add(created.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(message = "Detection could not commit its alerts; retrying the batch.", error = %e);
                monitor.metrics.detect_errors.fetch_add(1, Ordering::Relaxed);
                pause(&mut shutdown, Duration::from_secs(1)).await;
            }
        }
    }
    tracing::info!(message = "Detection stopped.", position = cursor);
}

async fn pause(shutdown: &mut tokio::sync::watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.changed() => {}
    }
}

/// Runs the detectors over a batch on every core; returns one hit per detection.
pub(crate) fn detect_batch(monitor: &Monitor, batch: &[StoredEvent]) -> Vec<AlertHit> {
    let window = i64::try_from(monitor.config.dedup_window.as_micros()).unwrap_or(i64::MAX).max(1);
    batch
        .par_chunks(256)
        .flat_map_iter(|chunk| {
            let mut hits = Vec::new();
            let mut findings = Findings::default();
            for stored in chunk {
                let source = Arc::new(Source { name: stored.source.clone(), organisation: Some(stored.org_id.to_string()) });
                let event = match codec::decode(&stored.record, source) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(message = "A stored event could not be decoded; it is not detected.", id = stored.id, error = %e);
                        continue;
                    }
                };
                let tlp = stored.tlp().unwrap_or(Tlp::AmberStrict);
                let name: Arc<str> = Arc::from(stored.source.as_str());
                monitor.detectors.detect(&event, &name, &mut findings);
                for d in findings.detections.drain(..) {
                    hits.push(hit(stored, tlp, &d, window));
                }
                findings.observations.clear();
            }
            hits
        })
        .collect()
}

fn engine_name(e: Engine) -> &'static str {
    match e {
        Engine::Sigma => "sigma",
        Engine::Indicator => "indicator",
        Engine::Correlation => "correlation",
        Engine::Behaviour => "behaviour",
    }
}

/// What an alert is about: the host, else the first key field, else the source.
fn entity(d: &Detection, stored: &StoredEvent) -> String {
    d.host
        .clone()
        .filter(|h| !h.is_empty())
        .or_else(|| d.fields.first().map(|(k, v)| format!("{k}={v}")))
        .unwrap_or_else(|| stored.source.clone())
}

/// A detection on a stored event, keyed for deduplication by owner, rule, entity and the
/// dedup window its event time falls in (so a replay or a retro-hunt finds the same alert).
pub(crate) fn hit(stored: &StoredEvent, tlp: Tlp, d: &Detection, window: i64) -> AlertHit {
    let entity = entity(d, stored);
    let ts = d.timestamp.map(|t| t.as_microsecond()).or(stored.ts).unwrap_or(stored.received_at);
    let engine = engine_name(d.rule.engine);
    let dedup_key =
        format!("{}|{engine}|{}|{}|{}", stored.org_id, d.rule.id, entity.to_lowercase(), ts.div_euclid(window));
    let fields: serde_json::Map<String, serde_json::Value> =
        d.fields.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    AlertHit {
        owner: stored.org_id,
        tlp,
        dedup_key,
        rule_id: d.rule.id.clone(),
        rule_title: d.rule.title.clone(),
        engine: engine.to_owned(),
        level: d.rule.level.as_str().to_owned(),
        level_rank: d.rule.level as i64,
        tags: d.rule.tags.clone(),
        entity,
        ts,
        evidence: Evidence {
            event_id: Some(stored.id),
            ts: d.timestamp.map(|t| t.as_microsecond()).or(stored.ts),
            source: stored.source.clone(),
            position: d.position.to_string(),
            fields: serde_json::Value::Object(fields).to_string(),
        },
    }
}
