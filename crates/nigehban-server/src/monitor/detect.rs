//! The detection worker: follows the event log with a cursor, runs the detectors, folds what
//! they find into alerts, and commits the alerts with the new cursor position.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use nigehban_detect::{Detection, Detector, DetectorSet, Engine, Findings, Observation, StreamState};
use nigehban_event::{Position, Source, codec};
use nigehban_policy::Tlp;
use nigehban_store::{AlertHit, CursorUpdate, Evidence, StoredEvent};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CURSOR, Monitor, MonitorConfig, pause};

/// The stateful part of detection: one stream per organisation (correlation windows,
/// beaconing, first seen), with the newest event time seen, which sets its watermark.
pub(crate) struct Streams {
    states: HashMap<Uuid, (StreamState, i64)>,
}

/// The saved form of [`Streams`], kept with the detection cursor.
#[derive(Serialize, Deserialize)]
struct SavedStreams {
    v: u32,
    /// Organisation → (the stream's saved state, base64; the newest event time seen, µs).
    orgs: BTreeMap<Uuid, (String, i64)>,
}

impl Streams {
    /// Restores the streams saved with the cursor; a stream that cannot be restored (another
    /// rule set, another version) starts afresh, and says so in the log.
    pub(crate) fn restore(detectors: &DetectorSet, saved: Option<&[u8]>) -> Streams {
        let mut states = HashMap::new();
        let Some(bytes) = saved.filter(|b| !b.is_empty()) else { return Streams { states } };
        let saved: SavedStreams = match serde_json::from_slice(bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(message = "The saved detection state could not be read; detection windows start afresh.", error = %e);
                return Streams { states };
            }
        };
        if saved.v != 1 {
            tracing::warn!(
                message = "The saved detection state has another version; detection windows start afresh.",
                version = saved.v
            );
            return Streams { states };
        }
        for (org, (b64, newest)) in saved.orgs {
            let restored = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| e.to_string())
                .and_then(|b| detectors.restore_stream(&b).map_err(|e| e.to_string()));
            match restored {
                Ok(state) => {
                    for note in state.restore_notes() {
                        tracing::warn!(message = "Part of a saved detection state started afresh.", org = %org, note = %note);
                    }
                    states.insert(org, (state, newest));
                }
                Err(e) => {
                    tracing::warn!(message = "A saved detection stream could not be restored; it starts afresh.", org = %org, error = %e)
                }
            }
        }
        Streams { states }
    }

    /// No state yet (a first start, or a retro-hunt).
    pub(crate) fn new() -> Streams {
        Streams { states: HashMap::new() }
    }

    pub(crate) fn save(&self) -> Option<Vec<u8>> {
        let mut orgs = BTreeMap::new();
        for (org, (state, newest)) in &self.states {
            match state.to_bytes() {
                Ok(b) => {
                    orgs.insert(*org, (base64::engine::general_purpose::STANDARD.encode(b), *newest));
                }
                Err(e) => tracing::error!(message = "A detection stream could not be saved.", org = %org, error = %e),
            }
        }
        serde_json::to_vec(&SavedStreams { v: 1, orgs }).ok()
    }
}

/// Runs until `shutdown` says stop. Errors are logged and the batch is tried again: the cursor
/// only moves with a successful commit, and the streams' state is saved with it.
pub(crate) async fn run(monitor: Arc<Monitor>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let saved = match monitor.store.cursor(CURSOR).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(message = "Detection could not read its cursor; it does not run.", error = %e);
            return;
        }
    };
    let mut cursor = saved.as_ref().map_or(0, |(p, _)| *p);
    // The state as last committed: what a failed commit goes back to.
    let mut committed: Option<Vec<u8>> = saved.as_ref().and_then(|(_, s)| s.clone());
    let mut streams = Streams::restore(&monitor.detectors, committed.as_deref());
    monitor.detected.store(cursor, Ordering::Relaxed);
    tracing::info!(message = "Detection follows the event log.", position = cursor, streams = streams.states.len());
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
        // The streams go to the blocking thread and come back with the result; should the
        // commit fail, the batch is detected again from the state saved with the last commit.
        let result = tokio::task::spawn_blocking(move || {
            let hits = detect_batch(&m.detectors, &m.config, &batch, &mut streams);
            let saved = streams.save();
            (hits, saved, streams)
        })
        .await;
        let (hits, saved, back) = match result {
            Ok(r) => r,
            Err(e) => {
                // A detector panicked: a bug, not bad input (readers and detectors do not panic
                // on input). Skipping the batch would lose detections silently: stop loudly.
                tracing::error!(message = "Detection failed on a batch; the worker stops.", error = %e, position = cursor);
                monitor.metrics.detect_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        streams = back;
        let update = CursorUpdate { name: CURSOR, position: last, state: saved.as_deref(), fence: None };
        match monitor.store.commit_detections(&hits, Some(update)).await {
            Ok(created) => {
                cursor = last;
                committed = saved;
                monitor.detected.store(last, Ordering::Relaxed);
                monitor.stored.fetch_max(last, Ordering::Relaxed);
                monitor.metrics.events_detected.fetch_add(count, Ordering::Relaxed);
                monitor.metrics.detections.fetch_add(hits.len() as u64, Ordering::Relaxed);
                monitor.metrics.alerts_created.fetch_add(created.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(message = "Detection could not commit its alerts; retrying the batch.", error = %e);
                monitor.metrics.detect_errors.fetch_add(1, Ordering::Relaxed);
                streams = Streams::restore(&monitor.detectors, committed.as_deref());
                pause(&mut shutdown, Duration::from_secs(1)).await;
            }
        }
    }
    tracing::info!(message = "Detection stopped.", position = cursor);
}

/// What one chunk of a batch gives: its per-event hits, and the observations for the streams
/// with the organisation they belong to.
type ChunkFindings = (Vec<AlertHit>, Vec<(Uuid, Observation)>);

/// Where a detection came from, for its alert.
pub(crate) struct Origin<'a> {
    pub(crate) org: Uuid,
    pub(crate) event_id: Option<i64>,
    pub(crate) source: &'a str,
    pub(crate) ts: Option<i64>,
    pub(crate) received_at: i64,
    /// Where the event was in what was sent (line, offset, record).
    pub(crate) position: String,
}

/// Runs the detectors over a batch: per-event detection on every core, then each
/// organisation's stream in event-time order. Returns one hit per detection.
pub(crate) fn detect_batch(
    detectors: &DetectorSet,
    config: &MonitorConfig,
    batch: &[StoredEvent],
    streams: &mut Streams,
) -> Vec<AlertHit> {
    let window = dedup_micros(config);
    let lateness = i64::try_from(config.lateness.as_micros()).unwrap_or(i64::MAX);
    let default_tlp = config.default_tlp;
    let parts: Vec<ChunkFindings> = batch
        .par_chunks(256)
        .map(|chunk| {
            let mut hits = Vec::new();
            let mut observations = Vec::new();
            let mut findings = Findings::default();
            // Events of a batch mostly come in runs from one source: share its names along a run.
            let mut current: Option<(Uuid, Arc<Source>, Arc<str>)> = None;
            for stored in chunk {
                let (source, name) = match &current {
                    Some((org, s, n)) if *org == stored.org_id && s.name == stored.source => (s.clone(), n.clone()),
                    _ => {
                        let s = Arc::new(Source { name: stored.source.clone(), organisation: Some(stored.org_id.to_string()) });
                        let n: Arc<str> = Arc::from(stored.source.as_str());
                        current = Some((stored.org_id, s.clone(), n.clone()));
                        (s, n)
                    }
                };
                let mut event = match codec::decode(&stored.record, source) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(message = "A stored event could not be decoded; it is not detected.", id = stored.id, error = %e);
                        continue;
                    }
                };
                let position = event.position.to_string();
                // Streams take events with the same source, position and time for one event: the
                // log position tells every stored event apart.
                event.position = Position::Offset(u64::try_from(stored.id).unwrap_or_default());
                let tlp = stored.tlp().unwrap_or(default_tlp);
                detectors.detect(&event, &name, &mut findings);
                let origin = Origin {
                    org: stored.org_id,
                    event_id: Some(stored.id),
                    source: &stored.source,
                    ts: stored.ts,
                    received_at: stored.received_at,
                    position,
                };
                for d in findings.detections.drain(..) {
                    hits.push(hit(&origin, tlp, &d, window));
                }
                observations.extend(findings.observations.drain(..).map(|o| (stored.org_id, o)));
            }
            (hits, observations)
        })
        .collect();
    let mut hits = Vec::new();
    let mut per_org: BTreeMap<Uuid, Vec<Observation>> = BTreeMap::new();
    for (h, obs) in parts {
        hits.extend(h);
        for (org, o) in obs {
            per_org.entry(org).or_default().push(o);
        }
    }
    // Each organisation's newest event time and strictest marking in this batch.
    let mut newest: HashMap<Uuid, (i64, Tlp)> = HashMap::new();
    for e in batch {
        let entry = newest.entry(e.org_id).or_insert((i64::MIN, default_tlp));
        entry.0 = entry.0.max(e.ts.unwrap_or(e.received_at));
        entry.1 = entry.1.max(e.tlp().unwrap_or(default_tlp));
    }
    for (org, (time, tlp)) in newest {
        let observations = per_org.remove(&org).unwrap_or_default();
        let (state, seen) = streams.states.entry(org).or_insert_with(|| (detectors.stream_state(), i64::MIN));
        *seen = (*seen).max(time);
        let stats = if observations.is_empty() { Some(state.stats()) } else { None };
        if stats.is_some_and(|st| st.buffered == 0 && st.state_entries == 0) {
            continue;
        }
        let watermark =
            jiff::Timestamp::from_microsecond(seen.saturating_sub(lateness)).unwrap_or(jiff::Timestamp::MIN);
        let mut out = Vec::new();
        detectors.stream(state, observations, watermark, &mut out);
        stream_hits(org, tlp, out, window, &mut hits);
    }
    hits
}

fn dedup_micros(config: &MonitorConfig) -> i64 {
    i64::try_from(config.dedup_window.as_micros()).unwrap_or(i64::MAX).max(1)
}

/// Closes every window of every stream (watermark at the end of time), as at the end of a
/// retro-hunt over a stored window: what the streams still hold is reported now. `tlp` marks
/// the hits (the strictest marking of what was read).
pub(crate) fn finish(
    detectors: &DetectorSet,
    config: &MonitorConfig,
    streams: &mut Streams,
    tlp: Tlp,
) -> Vec<AlertHit> {
    let window = dedup_micros(config);
    let mut hits = Vec::new();
    for (org, (state, _)) in &mut streams.states {
        let mut out = Vec::new();
        detectors.stream(state, Vec::new(), jiff::Timestamp::MAX, &mut out);
        stream_hits(*org, tlp, out, window, &mut hits);
    }
    hits
}

/// Hits of what a stream reported (its detections point at stored events by log id).
fn stream_hits(org: Uuid, tlp: Tlp, out: Vec<Detection>, window: i64, hits: &mut Vec<AlertHit>) {
    for d in out {
        let event_id = match d.position {
            Position::Offset(id) => i64::try_from(id).ok(),
            _ => None,
        };
        let origin = Origin {
            org,
            event_id,
            source: &d.source,
            ts: d.timestamp.map(|t| t.as_microsecond()),
            received_at: d.timestamp.map_or(0, |t| t.as_microsecond()),
            position: event_id.map_or_else(|| d.position.to_string(), |id| format!("event {id}")),
        };
        hits.push(hit(&origin, tlp, &d, window));
    }
}

pub(crate) fn engine_name(e: Engine) -> &'static str {
    match e {
        Engine::Sigma => "sigma",
        Engine::Indicator => "indicator",
        Engine::Correlation => "correlation",
        Engine::Behaviour => "behaviour",
    }
}

/// What an alert is about: the host, else the first key field, else the source.
fn entity(d: &Detection, origin: &Origin<'_>) -> String {
    d.host
        .clone()
        .filter(|h| !h.is_empty())
        .or_else(|| d.fields.first().map(|(k, v)| format!("{k}={v}")))
        .unwrap_or_else(|| origin.source.to_owned())
}

/// A detection, keyed for deduplication by owner, rule, entity and the dedup window its event
/// time falls in (so a replay or a retro-hunt finds the same alert).
pub(crate) fn hit(origin: &Origin<'_>, tlp: Tlp, d: &Detection, window: i64) -> AlertHit {
    let entity = entity(d, origin);
    let ts = d.timestamp.map(|t| t.as_microsecond()).or(origin.ts).unwrap_or(origin.received_at);
    let engine = engine_name(d.rule.engine);
    let dedup_key =
        format!("{}|{engine}|{}|{}|{}", origin.org, d.rule.id, entity.to_lowercase(), ts.div_euclid(window));
    let fields: serde_json::Map<String, serde_json::Value> =
        d.fields.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    AlertHit {
        owner: origin.org,
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
            event_id: origin.event_id,
            ts: d.timestamp.map(|t| t.as_microsecond()).or(origin.ts),
            source: origin.source.to_owned(),
            position: origin.position.clone(),
            fields: serde_json::Value::Object(fields).to_string(),
        },
    }
}
