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

use super::certs::{CertRules, Markings, Members, SavedMarkings, window_of};
use super::{CURSOR, Monitor, MonitorConfig, pause};

/// The stateful part of detection: one stream per organisation (correlation windows,
/// beaconing, first seen), with the newest event time seen, which sets its watermark; and one
/// stream per CERT that owns rules, over its whole constituency (`certs`).
pub(crate) struct Streams {
    states: HashMap<Uuid, (StreamState, i64)>,
    certs: HashMap<Uuid, CertStream>,
}

/// A CERT's stream: the state of its own rules over its constituency's events, the newest
/// event time seen among them, and their markings by minute (what marks its alerts).
struct CertStream {
    state: StreamState,
    seen: i64,
    markings: Markings,
}

/// The saved form of [`Streams`], kept with the detection cursor.
#[derive(Serialize, Deserialize)]
struct SavedStreams {
    v: u32,
    /// Organisation → (the stream's saved state, base64; the newest event time seen, µs).
    orgs: BTreeMap<Uuid, (String, i64)>,
    /// CERT → its stream (absent from states saved before CERTs owned rules).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    certs: BTreeMap<Uuid, SavedCert>,
}

/// The saved form of a [`CertStream`].
#[derive(Serialize, Deserialize)]
struct SavedCert {
    /// The stream's saved state, base64.
    state: String,
    /// The newest event time seen, µs.
    newest: i64,
    #[serde(default)]
    markings: SavedMarkings,
}

/// A stream's state from its saved form (base64 of [`StreamState::to_bytes`]).
fn restore_state(detectors: &DetectorSet, b64: &str, whose: &str, id: Uuid) -> Option<StreamState> {
    let restored = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| e.to_string())
        .and_then(|b| detectors.restore_stream(&b).map_err(|e| e.to_string()));
    match restored {
        Ok(state) => {
            for note in state.restore_notes() {
                tracing::warn!(message = "Part of a saved detection state started afresh.", stream = whose, org = %id, note = %note);
            }
            Some(state)
        }
        Err(e) => {
            tracing::warn!(message = "A saved detection stream could not be restored; it starts afresh.", stream = whose, org = %id, error = %e);
            None
        }
    }
}

fn save_state(state: &StreamState, whose: &str, id: Uuid) -> Option<String> {
    match state.to_bytes() {
        Ok(b) => Some(base64::engine::general_purpose::STANDARD.encode(b)),
        Err(e) => {
            tracing::error!(message = "A detection stream could not be saved.", stream = whose, org = %id, error = %e);
            None
        }
    }
}

impl Streams {
    /// Restores the streams saved with the cursor; a stream that cannot be restored (another
    /// rule set, another version) starts afresh, and says so in the log.
    pub(crate) fn restore(detectors: &DetectorSet, saved: Option<&[u8]>) -> Streams {
        Streams::restore_with_certs(detectors, &CertRules::default(), saved)
    }

    /// [`Streams::restore`], with the streams of the CERTs in `certs` (a saved CERT stream of
    /// a CERT that owns no rules any more is dropped).
    pub(crate) fn restore_with_certs(detectors: &DetectorSet, certs: &CertRules, saved: Option<&[u8]>) -> Streams {
        let mut streams = Streams::new();
        let Some(bytes) = saved.filter(|b| !b.is_empty()) else { return streams };
        let saved: SavedStreams = match serde_json::from_slice(bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(message = "The saved detection state could not be read; detection windows start afresh.", error = %e);
                return streams;
            }
        };
        if saved.v != 1 {
            tracing::warn!(
                message = "The saved detection state has another version; detection windows start afresh.",
                version = saved.v
            );
            return streams;
        }
        for (org, (b64, newest)) in saved.orgs {
            if let Some(state) = restore_state(detectors, &b64, "organisation", org) {
                streams.states.insert(org, (state, newest));
            }
        }
        for (cert, saved) in saved.certs {
            let Some(set) = certs.get(cert) else {
                tracing::warn!(message = "A saved CERT stream belongs to a CERT that owns no rules now; it is dropped.", org = %cert);
                continue;
            };
            if let Some(state) = restore_state(&set.detectors, &saved.state, "cert", cert) {
                let markings = Markings::restore(saved.markings);
                streams.certs.insert(cert, CertStream { state, seen: saved.newest, markings });
            }
        }
        streams
    }

    /// No state yet (a first start, or a retro-hunt).
    pub(crate) fn new() -> Streams {
        Streams { states: HashMap::new(), certs: HashMap::new() }
    }

    /// How many streams there are (organisations' and CERTs').
    pub(crate) fn len(&self) -> usize {
        self.states.len() + self.certs.len()
    }

    pub(crate) fn save(&self) -> Option<Vec<u8>> {
        let mut orgs = BTreeMap::new();
        for (org, (state, newest)) in &self.states {
            if let Some(b64) = save_state(state, "organisation", *org) {
                orgs.insert(*org, (b64, *newest));
            }
        }
        let mut certs = BTreeMap::new();
        for (cert, s) in &self.certs {
            if let Some(state) = save_state(&s.state, "cert", *cert) {
                certs.insert(*cert, SavedCert { state, newest: s.seen, markings: s.markings.save() });
            }
        }
        serde_json::to_vec(&SavedStreams { v: 1, orgs, certs }).ok()
    }
}

/// What a batch's commit gives: the alerts created, the detections committed and the state
/// saved with the cursor.
type Committed = (nigehban_store::Result<Vec<Uuid>>, usize, Option<Vec<u8>>);

/// A batch's commit, running while the next batch is detected.
struct InFlight {
    task: tokio::task::JoinHandle<Committed>,
    /// The log id of the batch's last event.
    last: i64,
    /// Its events.
    count: u64,
}

impl InFlight {
    /// Waits for the commit; once it holds, moves the cursor and the committed state on.
    /// Returns whether it held.
    async fn finish(self, monitor: &Monitor, cursor: &mut i64, committed: &mut Option<Vec<u8>>) -> bool {
        match self.task.await {
            Ok((Ok(created), hits, saved)) => {
                *cursor = self.last;
                *committed = saved;
                monitor.detected.store(self.last, Ordering::Relaxed);
                monitor.stored.fetch_max(self.last, Ordering::Relaxed);
                monitor.metrics.events_detected.fetch_add(self.count, Ordering::Relaxed);
                monitor.metrics.detections.fetch_add(hits as u64, Ordering::Relaxed);
                monitor.metrics.alerts_created.fetch_add(created.len() as u64, Ordering::Relaxed);
                true
            }
            Ok((Err(e), ..)) => {
                tracing::error!(message = "Detection could not commit its alerts; retrying the batch.", error = %e);
                monitor.metrics.detect_errors.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(e) => {
                tracing::error!(message = "Detection's commit stopped; retrying the batch.", error = %e);
                monitor.metrics.detect_errors.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// After a failed commit: the streams as saved with the last commit that held, and detection
/// going on again from its cursor.
fn rolled_back(monitor: &Monitor, certs: &CertRules, committed: Option<&[u8]>, cursor: i64) -> (Streams, i64) {
    (Streams::restore_with_certs(&monitor.detectors, certs, committed), cursor)
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
    let certs = monitor.config.cert_rules.clone();
    let mut streams = Streams::restore_with_certs(&monitor.detectors, &certs, committed.as_deref());
    // Which CERTs' rules each organisation's events go to (read from the tree when due).
    let mut members = Members::default();
    monitor.detected.store(cursor, Ordering::Relaxed);
    tracing::info!(
        message = "Detection follows the event log.",
        position = cursor,
        streams = streams.len(),
        cert_rule_sets = certs.sets().len()
    );
    // Batches are detected up to `detected_to`, and committed up to `cursor`: a batch's commit
    // runs while the next batch is detected (commits stay in order: one at a time).
    let mut detected_to = cursor;
    let mut in_flight: Option<InFlight> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        // What ingest handed over as it stored it, when it follows on from the cursor; else
        // the log read back (after a restart, or when the hand-over was full or raced).
        let batch = match monitor.fresh.take(detected_to, monitor.config.detect_batch as usize) {
            Taken::Events(events) => Batch::Fresh(events),
            Taken::Gap(next) => {
                let limit = u32::try_from(next.saturating_sub(detected_to + 1)).unwrap_or(u32::MAX);
                match monitor.store.events_after(detected_to, limit.min(monitor.config.detect_batch)).await {
                    Ok(b) => {
                        monitor.metrics.events_read_back.fetch_add(b.len() as u64, Ordering::Relaxed);
                        Batch::Stored(b)
                    }
                    Err(e) => {
                        tracing::error!(message = "Detection could not read the event log; retrying.", error = %e);
                        monitor.metrics.detect_errors.fetch_add(1, Ordering::Relaxed);
                        pause(&mut shutdown, Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
        };
        let Some(last) = batch.last_id() else {
            // Nothing new: the last batch's commit is finished before waiting.
            if let Some(p) = in_flight.take()
                && !p.finish(&monitor, &mut cursor, &mut committed).await
            {
                (streams, detected_to) = rolled_back(&monitor, &certs, committed.as_deref(), cursor);
                pause(&mut shutdown, Duration::from_secs(1)).await;
                continue;
            }
            tokio::select! {
                _ = monitor.arrivals.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        if !certs.is_empty() {
            members.refresh(&certs, &monitor.store, batch.orgs().into_iter()).await;
        }
        let m = monitor.clone();
        let count = batch.len() as u64;
        // The streams go to the blocking thread and come back with the result; should a
        // commit fail, detection goes back to the state saved with the last commit and
        // detects again (from the log) what followed it.
        let result = tokio::task::spawn_blocking(move || {
            let with = Some((&m.config.cert_rules, &members));
            let hits = match batch {
                Batch::Fresh(mut events) => detect_batch_with(&m.detectors, &m.config, &mut events, &mut streams, with),
                Batch::Stored(mut events) => {
                    detect_batch_with(&m.detectors, &m.config, &mut events, &mut streams, with)
                }
            };
            let saved = streams.save();
            (hits, saved, streams, members)
        })
        .await;
        let (hits, saved, back, back_members) = match result {
            Ok(r) => r,
            Err(e) => {
                // A detector panicked: a bug, not bad input (readers and detectors do not panic
                // on input). Skipping the batch would lose detections silently: stop loudly.
                tracing::error!(message = "Detection failed on a batch; the worker stops.", error = %e, position = cursor);
                monitor.metrics.detect_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(p) = in_flight.take() {
                    p.finish(&monitor, &mut cursor, &mut committed).await;
                }
                return;
            }
        };
        streams = back;
        members = back_members;
        if let Some(p) = in_flight.take()
            && !p.finish(&monitor, &mut cursor, &mut committed).await
        {
            // This batch was detected on top of a state that was not saved: both again.
            (streams, detected_to) = rolled_back(&monitor, &certs, committed.as_deref(), cursor);
            pause(&mut shutdown, Duration::from_secs(1)).await;
            continue;
        }
        let store = monitor.store.clone();
        let task = tokio::spawn(async move {
            let update = CursorUpdate { name: CURSOR, position: last, state: saved.as_deref(), fence: None };
            let result = store.commit_detections(&hits, Some(update)).await;
            (result, hits.len(), saved)
        });
        in_flight = Some(InFlight { task, last, count });
        detected_to = last;
    }
    if let Some(p) = in_flight.take() {
        p.finish(&monitor, &mut cursor, &mut committed).await;
    }
    tracing::info!(message = "Detection stopped.", position = cursor);
}

/// An event of the log as detection takes it: read back from the store, or handed over by
/// ingest as it was parsed and stored (the embedded mode's path when detection keeps up).
pub(crate) trait LogEvent: Send {
    /// Its position in the event log.
    fn id(&self) -> i64;
    fn org(&self) -> Uuid;
    /// Its marking; `None` when the stored marking cannot be read.
    fn tlp(&self) -> Option<Tlp>;
    /// Event time, µs.
    fn ts(&self) -> Option<i64>;
    /// When it was stored, µs.
    fn received_at(&self) -> i64;
    /// The source it came from.
    fn source(&self) -> &str;
    /// The normalized event (decoded, or taken: asked once); `source` is the shared source to
    /// give a decoded event.
    fn take_event(&mut self, source: Arc<Source>) -> Result<nigehban_event::Event, String>;
}

impl LogEvent for StoredEvent {
    fn id(&self) -> i64 {
        self.id
    }
    fn org(&self) -> Uuid {
        self.org_id
    }
    fn tlp(&self) -> Option<Tlp> {
        StoredEvent::tlp(self).ok()
    }
    fn ts(&self) -> Option<i64> {
        self.ts
    }
    fn received_at(&self) -> i64 {
        self.received_at
    }
    fn source(&self) -> &str {
        &self.source
    }
    fn take_event(&mut self, source: Arc<Source>) -> Result<nigehban_event::Event, String> {
        codec::decode(&self.record, source).map_err(|e| e.to_string())
    }
}

/// An event ingest has just stored, handed to detection as parsed (no read back, no decoding).
pub(crate) struct FreshEvent {
    pub(crate) id: i64,
    pub(crate) org: Uuid,
    pub(crate) tlp: Tlp,
    pub(crate) ts: Option<i64>,
    pub(crate) received_at: i64,
    pub(crate) source: Arc<Source>,
    pub(crate) event: Option<nigehban_event::Event>,
}

impl FreshEvent {
    /// About how much memory it holds (for the bound on what waits in memory): the raw
    /// record, each field's name and value with their allocations, the event itself.
    pub(crate) fn weight(&self) -> usize {
        fn value(v: &nigehban_event::Value) -> usize {
            match v {
                // The text and, unless already lowercase, its lowercase copy.
                nigehban_event::Value::Str(t) => 48 + 2 * t.as_str().len(),
                nigehban_event::Value::List(items) => 32 + items.iter().map(value).sum::<usize>(),
                _ => 0,
            }
        }
        self.event
            .as_ref()
            .map_or(0, |e| e.raw.len() + e.fields().iter().map(|f| 80 + f.name.len() + value(&f.value)).sum::<usize>())
            + 384
    }
}

impl LogEvent for FreshEvent {
    fn id(&self) -> i64 {
        self.id
    }
    fn org(&self) -> Uuid {
        self.org
    }
    fn tlp(&self) -> Option<Tlp> {
        Some(self.tlp)
    }
    fn ts(&self) -> Option<i64> {
        self.ts
    }
    fn received_at(&self) -> i64 {
        self.received_at
    }
    fn source(&self) -> &str {
        &self.source.name
    }
    fn take_event(&mut self, _: Arc<Source>) -> Result<nigehban_event::Event, String> {
        self.event.take().ok_or_else(|| "the event was already detected".to_owned())
    }
}

/// A batch for the embedded worker.
enum Batch {
    Fresh(Vec<FreshEvent>),
    Stored(Vec<StoredEvent>),
}

impl Batch {
    fn last_id(&self) -> Option<i64> {
        match self {
            Batch::Fresh(e) => e.last().map(|e| e.id),
            Batch::Stored(e) => e.last().map(|e| e.id),
        }
    }

    fn len(&self) -> usize {
        match self {
            Batch::Fresh(e) => e.len(),
            Batch::Stored(e) => e.len(),
        }
    }

    /// The organisations of its events, each once.
    fn orgs(&self) -> Vec<Uuid> {
        let mut orgs: Vec<Uuid> = match self {
            Batch::Fresh(e) => e.iter().map(|e| e.org).collect(),
            Batch::Stored(e) => e.iter().map(|e| e.org_id).collect(),
        };
        orgs.dedup();
        orgs.sort_unstable();
        orgs.dedup();
        orgs
    }
}

/// What [`Fresh::take`] found.
pub(crate) enum Taken {
    /// Events that follow on from the cursor, in log order.
    Events(Vec<FreshEvent>),
    /// Nothing that follows on: the log must be read up to (not including) this id
    /// (`i64::MAX`: as far as it goes).
    Gap(i64),
}

/// Batches ingest has stored and handed to the embedded detection worker, by their first log
/// id, within a bound on the memory they hold (beyond it, detection reads the log back).
pub(crate) struct Fresh {
    inner: std::sync::Mutex<FreshInner>,
    max_weight: usize,
    /// Told when detection takes events (room for more).
    room: tokio::sync::Notify,
}

#[derive(Default)]
struct FreshInner {
    batches: BTreeMap<i64, (usize, Vec<FreshEvent>)>,
    weight: usize,
}

impl Fresh {
    pub(crate) fn new(max_weight: usize) -> Fresh {
        Fresh { inner: std::sync::Mutex::new(FreshInner::default()), max_weight, room: tokio::sync::Notify::new() }
    }

    /// Hands over a stored batch (consecutive ids); dropped when the bound is reached.
    #[cfg(test)]
    pub(crate) fn put(&self, events: Vec<FreshEvent>) {
        let _ = self.try_put(events);
    }

    /// [`Fresh::put`], waiting up to `wait` for detection to make room when the bound is
    /// reached; returns whether the batch was handed over. The caller (ingest, which has
    /// stored the batch already) answers its sender only then: while detection keeps taking
    /// events, ingest runs at its pace instead of leaving batches to be read back from the
    /// log, which would cost detection more still. A detection that takes nothing for `wait`
    /// does not hold ingest up longer: the batch is dropped and read back later.
    pub(crate) async fn put_or_wait(&self, events: Vec<FreshEvent>, wait: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        let mut events = events;
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_put(events) {
                Ok(()) => return true,
                Err(back) => events = back,
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Hands over the batch if it fits under the bound (a batch larger than the bound alone
    /// fits when nothing else waits); gives it back if not.
    fn try_put(&self, events: Vec<FreshEvent>) -> Result<(), Vec<FreshEvent>> {
        let Some(first) = events.first().map(|e| e.id) else { return Ok(()) };
        let weight: usize = events.iter().map(FreshEvent::weight).sum();
        let Ok(mut inner) = self.inner.lock() else { return Ok(()) };
        if inner.weight + weight > self.max_weight && inner.weight > 0 {
            return Err(events);
        }
        inner.weight += weight;
        inner.batches.insert(first, (weight, events));
        Ok(())
    }

    /// The handed-over events right after `cursor`, at most `limit` (whole batches, or at
    /// least one); what lies at or before the cursor is dropped (the log was read instead).
    pub(crate) fn take(&self, cursor: i64, limit: usize) -> Taken {
        let Ok(mut inner) = self.inner.lock() else { return Taken::Gap(i64::MAX) };
        let inner = &mut *inner;
        let mut out: Vec<FreshEvent> = Vec::new();
        let mut next = cursor + 1;
        while let Some(entry) = inner.batches.first_entry() {
            let first = *entry.key();
            let (weight, events) = entry.get();
            let last = events.last().map_or(i64::MIN, |e| e.id);
            if last < next {
                inner.weight -= *weight;
                entry.remove();
                continue;
            }
            if first > next || (!out.is_empty() && out.len() + events.len() > limit) {
                break;
            }
            // A batch partly read from the log already: its rest.
            let skip = events.iter().take_while(|e| e.id < next).count();
            let (weight, mut events) = entry.remove();
            inner.weight -= weight;
            if out.is_empty() && skip == 0 {
                out = events;
            } else {
                out.extend(events.drain(skip..));
            }
            next = last + 1;
        }
        if out.is_empty() {
            Taken::Gap(inner.batches.first_key_value().map_or(i64::MAX, |(k, _)| *k))
        } else {
            self.room.notify_waiters();
            Taken::Events(out)
        }
    }
}

/// What one chunk of a batch gives: its per-event hits, the observations for the streams
/// with the organisation they belong to, and those for the CERT streams with the index of the
/// CERT's rule set.
type ChunkFindings = (Vec<AlertHit>, Vec<(Uuid, Observation)>, Vec<(usize, Observation)>);

/// The field CERT rules read the short name of the event's organisation from.
pub(crate) const ORG_FIELD: &str = "nigehban.org";

/// The rules owned by CERTs and which of them each organisation's events go to.
pub(crate) type CertPass<'a> = Option<(&'a CertRules, &'a Members)>;

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
pub(crate) fn detect_batch<E: LogEvent>(
    detectors: &DetectorSet,
    config: &MonitorConfig,
    batch: &mut [E],
    streams: &mut Streams,
) -> Vec<AlertHit> {
    detect_batch_with(detectors, config, batch, streams, None)
}

/// [`detect_batch`], and the rules owned by CERTs (`certs`): each event also goes through the
/// rule sets of the CERTs its organisation is under (or is), whose detections are alerts owned
/// by the CERT, and each such CERT's stream takes the observations of its whole constituency.
pub(crate) fn detect_batch_with<E: LogEvent>(
    detectors: &DetectorSet,
    config: &MonitorConfig,
    batch: &mut [E],
    streams: &mut Streams,
    certs: CertPass<'_>,
) -> Vec<AlertHit> {
    let window = dedup_micros(config);
    let lateness = i64::try_from(config.lateness.as_micros()).unwrap_or(i64::MAX);
    let default_tlp = config.default_tlp;
    let parts: Vec<ChunkFindings> = batch
        .par_chunks_mut(256)
        .map(|chunk| {
            let mut hits = Vec::new();
            let mut observations = Vec::new();
            let mut cert_observations = Vec::new();
            let mut findings = Findings::default();
            // Events of a batch mostly come in runs from one source: share its names along a run.
            let mut current: Option<(Uuid, Arc<Source>, Arc<str>)> = None;
            // The same for the CERTs' rules, whose evidence names the organisation too.
            let mut cert_current: Option<(Uuid, String, Arc<Source>, Arc<str>)> = None;
            for stored in chunk {
                let org = stored.org();
                let (source, name) = match &current {
                    Some((o, s, n)) if *o == org && s.name == stored.source() => (s.clone(), n.clone()),
                    _ => {
                        let s = Arc::new(Source { name: stored.source().to_owned(), organisation: Some(org.to_string()) });
                        let n: Arc<str> = Arc::from(stored.source());
                        current = Some((org, s.clone(), n.clone()));
                        (s, n)
                    }
                };
                let mut event = match stored.take_event(source) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(message = "A stored event could not be decoded; it is not detected.", id = stored.id(), error = %e);
                        continue;
                    }
                };
                let position = event.position.to_string();
                // Streams take events with the same source, position and time for one event: the
                // log position tells every stored event apart.
                event.position = Position::Offset(u64::try_from(stored.id()).unwrap_or_default());
                let tlp = stored.tlp().unwrap_or(default_tlp);
                detectors.detect(&event, &name, &mut findings);
                let origin = Origin {
                    org,
                    event_id: Some(stored.id()),
                    source: stored.source(),
                    ts: stored.ts(),
                    received_at: stored.received_at(),
                    position,
                };
                for d in findings.detections.drain(..) {
                    hits.push(hit(&origin, tlp, &d, window));
                }
                observations.extend(findings.observations.drain(..).map(|o| (org, o)));
                let Some((rules, members)) = certs else { continue };
                let of = members.certs_of(org);
                if of.is_empty() {
                    continue;
                }
                if !matches!(&cert_current, Some((o, src, _, _)) if *o == org && src == stored.source()) {
                    let n: Arc<str> = Arc::from(format!("{}/{}", members.name(org), stored.source()));
                    let s = Arc::new(Source { name: n.to_string(), organisation: Some(org.to_string()) });
                    cert_current = Some((org, stored.source().to_owned(), s, n));
                }
                let Some((_, _, cert_source, cert_name)) = &cert_current else { continue };
                // CERT rules may count organisations (`value_count` of it, `group-by` it): the
                // platform says which one sent the event; a field of that name in the record
                // does not.
                event.set(ORG_FIELD, nigehban_event::Value::str(&*members.name(org)));
                for &i in of {
                    let Some(set) = rules.sets().get(i) else { continue };
                    set.detectors.detect(&event, cert_name, &mut findings);
                    let cert_origin = Origin {
                        org: set.cert,
                        event_id: origin.event_id,
                        source: cert_name,
                        ts: origin.ts,
                        received_at: origin.received_at,
                        position: origin.position.clone(),
                    };
                    for d in findings.detections.drain(..) {
                        let cert_hit = hit(&cert_origin, tlp, &d, window);
                        if org != set.cert {
                            // The organisation's part: its own event.
                            hits.push(part(cert_hit.clone(), org, &set.name));
                        }
                        hits.push(cert_hit);
                    }
                    // The CERT's evidence names each event's organisation.
                    cert_observations.extend(findings.observations.drain(..).map(|mut o| {
                        o.event.source = cert_source.clone();
                        (i, o)
                    }));
                }
            }
            (hits, observations, cert_observations)
        })
        .collect();
    let mut hits = Vec::new();
    let mut per_org: BTreeMap<Uuid, Vec<Observation>> = BTreeMap::new();
    let mut per_cert: BTreeMap<usize, Vec<Observation>> = BTreeMap::new();
    for (h, obs, cert_obs) in parts {
        hits.extend(h);
        for (org, o) in obs {
            per_org.entry(org).or_default().push(o);
        }
        for (i, o) in cert_obs {
            per_cert.entry(i).or_default().push(o);
        }
    }
    // Each organisation's newest event time and strictest marking in this batch.
    let mut newest: HashMap<Uuid, (i64, Tlp)> = HashMap::new();
    for e in batch.iter() {
        let entry = newest.entry(e.org()).or_insert((i64::MIN, default_tlp));
        entry.0 = entry.0.max(e.ts().unwrap_or(e.received_at()));
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
    if let Some((rules, members)) = certs {
        cert_streams(rules, members, batch, per_cert, streams, config, &mut hits);
    }
    hits
}

/// Feeds each CERT's stream the observations of its constituency's events in the batch, with
/// the watermark at the newest event time among them minus `lateness`; its detections are
/// alerts owned by the CERT, marked with the strictest marking of the minutes they span.
fn cert_streams<E: LogEvent>(
    rules: &CertRules,
    members: &Members,
    batch: &[E],
    mut per_cert: BTreeMap<usize, Vec<Observation>>,
    streams: &mut Streams,
    config: &MonitorConfig,
    hits: &mut Vec<AlertHit>,
) {
    let window = dedup_micros(config);
    let lateness = i64::try_from(config.lateness.as_micros()).unwrap_or(i64::MAX);
    let default_tlp = config.default_tlp;
    // Each CERT's newest event time in this batch, and its events' markings by minute.
    let mut touched: BTreeMap<usize, i64> = BTreeMap::new();
    for e in batch {
        let of = members.certs_of(e.org());
        if of.is_empty() {
            continue;
        }
        let ts = e.ts().unwrap_or(e.received_at());
        let tlp = e.tlp().unwrap_or(default_tlp);
        for &i in of {
            let Some(set) = rules.sets().get(i) else { continue };
            let newest = touched.entry(i).or_insert(i64::MIN);
            *newest = (*newest).max(ts);
            let stream = streams.certs.entry(set.cert).or_insert_with(|| CertStream {
                state: set.detectors.stream_state(),
                seen: i64::MIN,
                markings: Markings::default(),
            });
            stream.markings.note(ts, tlp);
        }
    }
    for (i, time) in touched {
        let Some(set) = rules.sets().get(i) else { continue };
        let Some(stream) = streams.certs.get_mut(&set.cert) else { continue };
        stream.seen = stream.seen.max(time);
        stream.markings.prune(stream.seen);
        let observations = per_cert.remove(&i).unwrap_or_default();
        if observations.is_empty() {
            let st = stream.state.stats();
            if st.buffered == 0 && st.state_entries == 0 {
                continue;
            }
        }
        let watermark =
            jiff::Timestamp::from_microsecond(stream.seen.saturating_sub(lateness)).unwrap_or(jiff::Timestamp::MIN);
        let mut out = Vec::new();
        set.detectors.stream(&mut stream.state, observations, watermark, &mut out);
        for d in out {
            let tlp = stream.markings.strictest(window_of(&d.fields)).unwrap_or(default_tlp);
            let parts = parts_of(&d, set.cert);
            stream_hits(set.cert, tlp, vec![d], window, hits);
            for (org, d) in parts {
                let mut own = Vec::new();
                stream_hits(org, tlp, vec![d], window, &mut own);
                hits.extend(own.into_iter().map(|h| part(h, org, &set.name)));
            }
        }
    }
}

/// VISIBILITY rule 7: each organisation whose events a CERT's detection counted sees the part
/// that concerns its own data, and not the other organisations' names. `hit` (owned by `org`,
/// with evidence of `org`'s own events only) becomes that part: keyed apart from the
/// organisation's own alerts (`part|`), titled and tagged as the CERT's detection.
fn part(mut hit: AlertHit, org: Uuid, cert: &str) -> AlertHit {
    hit.owner = org;
    hit.dedup_key = format!("part|{org}|{}", hit.dedup_key);
    hit.rule_title = format!("{} (a detection of {cert} across its constituency)", hit.rule_title);
    hit.tags.push("cert-detection".into());
    hit.tags.push(format!("cert:{cert}"));
    hit
}

/// A CERT correlation's detection cut into the parts of the organisations whose events it
/// counted (as far as its evidence names them: the engine keeps the earliest and the newest
/// events): for each, the detection as seen from its own events — the first of them as the
/// position, the group's fields, and none of the fields that name other organisations (the
/// distinct values counted, the evidence list).
fn parts_of(d: &Detection, cert: Uuid) -> Vec<(Uuid, Detection)> {
    let mut by_org: BTreeMap<Uuid, Vec<(Arc<Source>, Position)>> = BTreeMap::new();
    for (source, position) in &d.counted {
        let Some(org) = source.organisation.as_deref().and_then(|o| Uuid::try_parse(o).ok()) else { continue };
        if org != cert {
            by_org.entry(org).or_default().push((source.clone(), *position));
        }
    }
    by_org
        .into_iter()
        .filter_map(|(org, counted)| {
            let (source, position) = counted.first().cloned()?;
            let mut own = d.clone();
            own.fields.retain(|(k, _)| k != "values" && k != "evidence");
            own.source = Arc::from(source.name.as_str());
            own.position = position;
            own.counted = counted;
            Some((org, own))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use nigehban_event::{Event, Product};

    use super::*;

    fn batch(ids: std::ops::RangeInclusive<i64>) -> Vec<FreshEvent> {
        let source = Source::file("test");
        ids.map(|id| FreshEvent {
            id,
            org: Uuid::nil(),
            tlp: Tlp::Green,
            ts: None,
            received_at: 0,
            source: source.clone(),
            event: Some(Event::new(source.clone(), Position::Line(1), Product::Other, "json")),
        })
        .collect()
    }

    fn ids(t: Taken) -> Result<Vec<i64>, i64> {
        match t {
            Taken::Events(e) => Ok(e.iter().map(|e| e.id).collect()),
            Taken::Gap(next) => Err(next),
        }
    }

    #[test]
    fn hands_over_what_follows_on_from_the_cursor() {
        let fresh = Fresh::new(1 << 20);
        assert_eq!(ids(fresh.take(0, 100)), Err(i64::MAX), "nothing handed over: read the log");
        // Stored in one order, handed over in another.
        fresh.put(batch(4..=6));
        assert_eq!(ids(fresh.take(0, 100)), Err(4), "ids 1..=3 are only in the log");
        fresh.put(batch(1..=3));
        fresh.put(batch(7..=9));
        // Whole batches up to the limit (at least one).
        assert_eq!(ids(fresh.take(0, 5)), Ok(vec![1, 2, 3]));
        assert_eq!(ids(fresh.take(3, 100)), Ok(vec![4, 5, 6, 7, 8, 9]));
        assert_eq!(ids(fresh.take(9, 100)), Err(i64::MAX));
    }

    #[test]
    fn drops_what_the_log_gave_already_and_keeps_the_rest_of_a_batch() {
        let fresh = Fresh::new(1 << 20);
        fresh.put(batch(1..=3));
        fresh.put(batch(4..=8));
        // Detection read the log up to 5 meanwhile.
        assert_eq!(ids(fresh.take(5, 100)), Ok(vec![6, 7, 8]));
        assert_eq!(fresh.inner.lock().unwrap().weight, 0, "what was passed is dropped");
    }

    fn failed_logon(org: Uuid, id: i64, tlp: Tlp, ip: &str, time: &str) -> FreshEvent {
        let source = Source::file("winlogbeat");
        let json = serde_json::json!({
            "EventID": if ip.is_empty() { 4634 } else { 4625 }, "Channel": "Security", "Computer": "dc",
            "IpAddress": ip, "TimeCreated": time,
        });
        let event = nigehban_event::read::json::event_from_json(&json, json.to_string(), &source, Position::Line(1));
        FreshEvent {
            id,
            org,
            tlp,
            ts: event.timestamp.map(|t| t.as_microsecond()),
            received_at: 0,
            source,
            event: Some(event),
        }
    }

    #[test]
    fn a_cert_stream_correlates_its_constituency_and_is_saved_with_the_cursor() {
        use super::super::certs::tests::org;
        use nigehban_policy::OrgKind;

        use crate::monitor::certs::CertSet;
        let ncert = org(OrgKind::National, "ncert", &[]);
        let cert = org(OrgKind::SectoralCert, "gov-cert", &[ncert.id]);
        let north = org(OrgKind::ProvincialCert, "north-cert", &[ncert.id]);
        let [a, b, c] = ["mofa", "mod", "moi"].map(|s| org(OrgKind::Organisation, s, &[cert.id]));
        let outsider = org(OrgKind::Organisation, "telecom", &[north.id]);
        let options = nigehban_hunt::detectors::DetectorOptions {
            rules: vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/cert-rules")],
            no_builtin: true,
            live: true,
            ..Default::default()
        };
        let (set, _) = nigehban_hunt::detectors::build(&options).unwrap();
        let rules = CertRules::new(vec![CertSet { cert: cert.id, name: "gov-cert".into(), detectors: set }]);
        let orgs = [&ncert, &cert, &north, &a, &b, &c, &outsider].map(|o| o.clone()).to_vec();
        let members = Members::from_orgs(&rules, &orgs).unwrap();
        let detectors = DetectorSet::new();
        let config = MonitorConfig { lateness: std::time::Duration::from_secs(60), ..MonitorConfig::default() };
        let ip = "203.0.113.9";

        let mut streams = Streams::new();
        let mut first = vec![
            failed_logon(a.id, 1, Tlp::Green, ip, "2026-11-28T09:00:00Z"),
            // Another CERT's organisation, and RED: neither counts nor marks the CERT's alert.
            failed_logon(outsider.id, 2, Tlp::Red, ip, "2026-11-28T09:01:00Z"),
            failed_logon(b.id, 3, Tlp::Amber, ip, "2026-11-28T09:02:00Z"),
        ];
        let hits = detect_batch_with(&detectors, &config, &mut first, &mut streams, Some((&rules, &members)));
        assert!(hits.is_empty(), "{hits:?}");
        assert_eq!(streams.certs.len(), 1);
        assert!(streams.states.contains_key(&a.id), "the organisations keep their own streams");

        // Saved with the cursor, restored (a restart).
        let saved = streams.save().unwrap();
        let mut streams = Streams::restore_with_certs(&detectors, &rules, Some(&saved));
        assert_eq!(streams.certs.len(), 1);
        let mut second = vec![
            failed_logon(c.id, 4, Tlp::Green, ip, "2026-11-28T09:04:00Z"),
            failed_logon(a.id, 5, Tlp::Green, "", "2026-11-29T09:00:00Z"),
        ];
        let hits = detect_batch_with(&detectors, &config, &mut second, &mut streams, Some((&rules, &members)));
        // The CERT's alert and the part of each of its three organisations (rule 7).
        assert_eq!(hits.len(), 4, "{hits:?}");
        let h = hits.iter().find(|h| h.owner == cert.id).unwrap();
        for (org, event) in [(&a, 1), (&b, 3), (&c, 4)] {
            let part =
                hits.iter().find(|h| h.owner == org.id).unwrap_or_else(|| panic!("no part for {}", org.short_name));
            assert!(part.dedup_key.starts_with(&format!("part|{}|{}", org.id, org.id)), "{}", part.dedup_key);
            assert_eq!(part.evidence.event_id, Some(event), "its own first event");
            assert_eq!(part.entity, h.entity);
            assert!(part.tags.iter().any(|t| t == "cert-detection"));
            for other in [&a, &b, &c].into_iter().filter(|o| o.id != org.id) {
                assert!(!part.evidence.fields.contains(&other.short_name), "{}", part.evidence.fields);
                assert!(!part.evidence.source.contains(&other.short_name), "{}", part.evidence.source);
            }
        }
        assert_eq!(h.owner, cert.id);
        assert_eq!(h.tlp, Tlp::Amber, "the strictest of the events in its window");
        assert_eq!(h.entity, format!("IpAddress={ip}"));
        assert!(h.dedup_key.starts_with(&cert.id.to_string()));
        assert!(h.evidence.fields.contains("mofa/winlogbeat"), "{}", h.evidence.fields);
        assert!(!h.evidence.fields.contains("telecom"), "{}", h.evidence.fields);
        assert_eq!(h.evidence.event_id, Some(1));

        // Without the CERT's rules the saved CERT stream is dropped; a state saved before CERTs
        // owned rules reads as before.
        assert_eq!(Streams::restore(&detectors, Some(&saved)).certs.len(), 0);
        let old = br#"{"v":1,"orgs":{}}"#;
        let s = Streams::restore_with_certs(&detectors, &rules, Some(old));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn holds_no_more_than_its_bound() {
        let one = batch(1..=1)[0].weight();
        let fresh = Fresh::new(3 * one);
        fresh.put(batch(1..=2));
        fresh.put(batch(3..=4));
        assert_eq!(ids(fresh.take(0, 100)), Ok(vec![1, 2]), "the second batch was over the bound");
        assert_eq!(ids(fresh.take(2, 100)), Err(i64::MAX));
        fresh.put(batch(3..=4));
        assert_eq!(ids(fresh.take(2, 100)), Ok(vec![3, 4]));
        // A batch over the bound alone is taken when nothing else waits.
        fresh.put(batch(5..=9));
        assert_eq!(ids(fresh.take(4, 100)), Ok(vec![5, 6, 7, 8, 9]));
    }

    #[tokio::test]
    async fn ingest_waits_for_room_while_detection_takes_and_not_longer() {
        let one = batch(1..=1)[0].weight();
        let fresh = Arc::new(Fresh::new(3 * one));
        fresh.put(batch(1..=2));
        // Full: the next batch waits until detection takes the first.
        let waiting = {
            let fresh = fresh.clone();
            tokio::spawn(async move { fresh.put_or_wait(batch(3..=4), std::time::Duration::from_secs(30)).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        assert_eq!(ids(fresh.take(0, 100)), Ok(vec![1, 2]));
        assert!(waiting.await.unwrap(), "handed over once there was room");
        assert_eq!(ids(fresh.take(2, 100)), Ok(vec![3, 4]));
        // A detection that takes nothing holds ingest up no longer than the wait.
        fresh.put(batch(5..=6));
        let start = std::time::Instant::now();
        assert!(!fresh.put_or_wait(batch(7..=8), std::time::Duration::from_millis(100)).await);
        assert!(start.elapsed() >= std::time::Duration::from_millis(100));
        assert_eq!(ids(fresh.take(4, 100)), Ok(vec![5, 6]));
        assert_eq!(ids(fresh.take(6, 100)), Err(i64::MAX), "7 and 8 are read back from the log");
    }
}
