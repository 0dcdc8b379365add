//! Detection: what every detector (Sigma rules, indicators, correlation, behaviour) produces
//! from an event, and the one trait that `hunt` and live monitoring drive.
//!
//! Architecture invariant: pure; no I/O, no async. A [`Detector`] is `Send + Sync` and takes
//! `&self`, so one instance serves every thread. Stateful logic (correlation windows,
//! beaconing, first seen) is driven separately, in event-time order, by its caller: once over
//! a whole hunt ([`Detector::correlate`]), or batch after batch over a live stream
//! ([`Detector::stream`]).
//!
//! # Live streams
//!
//! The caller owns one [`StreamState`] per stream (an organisation's events; a CERT's
//! organisations together for the rules the CERT owns) and the detector stays shared:
//!
//! ```text
//! let mut state = detectors.stream_state();            // or detectors.restore_stream(&saved)?
//! for each batch {
//!     let mut findings = Findings::default();
//!     for event in batch { detectors.detect(&event, &source, &mut findings); }
//!     let mut out = findings.detections;                   // per-event detections, as always
//!     detectors.stream(&mut state, findings.observations, watermark, &mut out);
//!     publish(out); expose(state.stats()); now and then save(state.to_bytes()?);
//! }
//! ```
//!
//! **Watermark contract.** `watermark` is the stream's event-time watermark, typically the
//! newest event time seen minus the allowed lateness (and, for a quiet stream, the wall clock
//! minus the lateness, so that windows still close). The caller promises that no observation
//! older than it comes any more. Each call:
//! 1. drops the observations older than the watermark of an earlier call (counted in
//!    [`StreamStats::late_dropped`]) and those without a time ([`StreamStats::no_timestamp`]);
//!    an observation older than ones already received but not older than that watermark is
//!    late only in arrival and counts like any other;
//! 2. buffers the rest and releases, in time order (arrival order among equal times), every
//!    observation older than the new watermark; the others wait for a later call;
//! 3. decides what the watermark closes: correlation windows that end before it, beacon
//!    evaluations due at or before it.
//!
//! A watermark that goes back is ignored. `Timestamp::MAX` ends the stream: everything is
//! released and every window decided, as at the end of a hunt. The buffer holds at most
//! [`DEFAULT_MAX_BUFFERED`] observations per part ([`StreamState::set_max_buffered`]); beyond
//! that the oldest are released early ([`StreamStats::released_early`]) and what arrives older
//! than them afterwards is late.
//!
//! **Same result as a hunt.** Fed in time order across batches (out of order within the
//! lateness), a stream gives the detections `correlate` gives over the same observations at
//! once, for Sigma correlation rules (all four types, deferred conditions, chains) and first
//! seen, whatever the batches and watermarks, with or without a save and restore between
//! batches (`tests/stream.rs`). `correlate` itself is one batch with the watermark at
//! `Timestamp::MAX`: one code path. Exceptions: when a bound is reached (which groups or pairs
//! are evicted can depend on when time advanced), and events that share a source, position
//! and time are taken for one event, so a live source must give distinct positions (a
//! sequence number or offset) to distinct events. Beaconing live differs by design (below).
//!
//! **Bounds.** Correlation: the engine's limits (groups per rule, entries per window,
//! evidence per hit; groups whose window is over are released as time passes). Beaconing:
//! `max_pairs`, `max_connections_per_pair`, and the live `history`; idle pairs are released.
//! First seen: `max_entries` remembered values per rule, detections remembered for "after"
//! rules only as long as an "after" rule looks back. What is not kept is counted in
//! [`StreamStats`].
//!
//! **Beaconing live.** A [`BeaconDetector`] built for hunts gathers connections inside itself;
//! for a stream it must be built with [`BeaconDetector::for_streams`], which makes
//! observations instead. A pair is evaluated at each multiple of `evaluate_every` that time
//! passes, if it had new connections, over the connections of the last `history`; a reported
//! pair is not reported again for `realert_after`. The offline score is over every connection
//! at the end; live, a long-lived beacon is reported once per `realert_after`, a beacon slower
//! than `history` per `min_connections` is not seen, and names learnt after an evaluation do
//! not undo it (module `beacon`).
//!
//! **Persistence.** [`StreamState::to_bytes`] writes JSON: `{"format": 1, "state": …}`
//! ([`STATE_FORMAT`]) with the buffered observations (in the event codec's encoding), the open
//! windows and groups, the pairs and names, the learnt values and the counters.
//! [`Detector::restore_stream`] reads it back for a detector with the same rules; garbage, a
//! damaged state and another format version are [`StateError`]s, never a panic. Correlation
//! state refers to rules by index, so it carries a fingerprint of the correlation rules (and
//! of the ids of the rules they refer to): any change there refuses the correlation state.
//! First-seen state is kept per rule id and rule definition, so a changed rule starts afresh
//! and the others keep what they learnt. A [`DetectorSet`] restores each part that fits and
//! starts the others afresh, saying which and why in [`StreamState::restore_notes`]; the
//! caller logs them. The size of a saved state follows the state: up to the bounds above, and
//! a full first-seen rule of a million values is tens of megabytes.

mod beacon;
mod firstseen;
mod indicators;
pub mod pack;
mod sigma;
mod stats;
mod stream;

use std::sync::Arc;

use nigehban_event::{Event, FieldKey, Position, Value};
use nigehban_sigma::Level;
use serde::Serialize;

pub use beacon::{BeaconConfig, BeaconDetector};
pub use firstseen::{FirstSeenDetector, FirstSeenRule};
pub use indicators::IndicatorDetector;
pub use sigma::SigmaDetector;
pub use stream::{DEFAULT_MAX_BUFFERED, STATE_FORMAT, SavedState, StateError, StreamState, StreamStats};

/// What kind of logic produced a detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Sigma,
    Indicator,
    Correlation,
    /// Behaviour detectors: beaconing, first-seen.
    Behaviour,
}

/// The rule behind a detection, shared by all its detections.
#[derive(Clone, Debug)]
pub struct RuleInfo {
    pub engine: Engine,
    /// The rule's own id (a SigmaHQ rule keeps its upstream id).
    pub id: String,
    pub title: String,
    pub level: Level,
    /// ATT&CK tags (`attack.t1059.001`).
    pub tags: Vec<String>,
    /// The file the rule came from.
    pub path: String,
    /// Fields worth showing with a match: the rule's `fields`, else those its detection tests.
    pub key_fields: Vec<String>,
}

/// One detection: a rule matched an event.
#[derive(Clone, Debug)]
pub struct Detection {
    pub rule: Arc<RuleInfo>,
    pub timestamp: Option<jiff::Timestamp>,
    pub host: Option<String>,
    pub source: Arc<str>,
    pub position: Position,
    /// The values of the rule's key fields in this event (field, value), in rule order.
    pub fields: Vec<(String, String)>,
    /// A correlation's evidence: some of the events it counted (the earliest and the newest, as
    /// the engine keeps them), with their sources. Empty for a detection on one event.
    pub counted: Vec<(Arc<nigehban_event::Source>, Position)>,
}

impl Detection {
    /// A detection of `rule` on `event`, with the rule's key fields copied from the event.
    pub fn new(rule: Arc<RuleInfo>, event: &Event, source: Arc<str>) -> Detection {
        // One buffer for every key field's lowercase name.
        let mut lower = String::new();
        Self::build(rule, event, source, |_, name| {
            lower.clear();
            lower.push_str(name);
            lower.make_ascii_lowercase();
            event.get_folded(name, &lower)
        })
    }

    /// As [`Detection::new`], with the rule's key fields prepared as lookup keys (`keys[i]`
    /// for `rule.key_fields[i]`), as a detector that reports many matches keeps them.
    pub fn with_keys(rule: Arc<RuleInfo>, keys: &[FieldKey], event: &Event, source: Arc<str>) -> Detection {
        Self::build(rule, event, source, |i, name| match keys.get(i) {
            Some(key) => event.lookup(key),
            None => event.get(name),
        })
    }

    /// [`Detection::with_keys`] written into `self`, whose strings and lists are reused rather
    /// than allocated anew (a detector that reports many matches fills detections given back
    /// by [`Findings::recycle`]).
    pub fn fill_with_keys(&mut self, rule: Arc<RuleInfo>, keys: &[FieldKey], event: &Event, source: Arc<str>) {
        fill_fields(&mut self.fields, &rule.key_fields, |i, name| match keys.get(i) {
            Some(key) => event.lookup(key),
            None => event.get(name),
        });
        match event.host() {
            Some(h) => {
                let host = self.host.get_or_insert_with(String::new);
                host.clear();
                host.push_str(&h);
            }
            None => self.host = None,
        }
        self.timestamp = event.timestamp;
        self.position = event.position;
        self.source = source;
        self.rule = rule;
        self.counted.clear();
    }

    fn build<'e>(
        rule: Arc<RuleInfo>,
        event: &'e Event,
        source: Arc<str>,
        lookup: impl FnMut(usize, &str) -> Option<&'e Value>,
    ) -> Detection {
        let mut fields = Vec::with_capacity(rule.key_fields.len());
        fill_fields(&mut fields, &rule.key_fields, lookup);
        Detection {
            host: event.host().map(|h| h.into_owned()),
            timestamp: event.timestamp,
            position: event.position,
            source,
            rule,
            fields,
            counted: Vec::new(),
        }
    }
}

/// Writes into `fields` the key fields the event has (`lookup` finds `names[i]`), as (name,
/// value) pairs in the order of `names`, reusing the strings already there; those left over
/// are dropped.
fn fill_fields<'e>(
    fields: &mut Vec<(String, String)>,
    names: &[String],
    mut lookup: impl FnMut(usize, &str) -> Option<&'e Value>,
) {
    let mut n = 0;
    for (i, name) in names.iter().enumerate() {
        let value = match lookup(i, name) {
            None | Some(Value::Null) => continue,
            Some(v) => v,
        };
        match fields.get_mut(n) {
            Some((key, text)) => {
                key.clear();
                key.push_str(name);
                text.clear();
                push_value(text, value);
            }
            None => {
                let mut text = String::new();
                push_value(&mut text, value);
                fields.push((name.clone(), text));
            }
        }
        n += 1;
    }
    fields.truncate(n);
}

/// Appends a key field's value as kept: text up to [`MAX_FIELD_BYTES`] (copied only as far
/// as it is kept: a script block may be megabytes), other values as printed, cut alike.
fn push_value(text: &mut String, value: &Value) {
    match value {
        Value::Str(t) => push_truncated(text, t.as_str(), MAX_FIELD_BYTES),
        v => {
            use std::fmt::Write;
            let _ = write!(text, "{v}");
            truncate(text, MAX_FIELD_BYTES);
        }
    }
}

/// A key field's value is kept up to this many bytes, then `…`.
const MAX_FIELD_BYTES: usize = 512;

/// Appends `s` to `out` up to `max` bytes (at a character boundary), then `…` if anything
/// was cut.
fn push_truncated(out: &mut String, s: &str, max: usize) {
    if s.len() <= max {
        out.push_str(s);
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.reserve(end + '…'.len_utf8());
    out.push_str(&s[..end]);
    out.push('…');
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// An event kept for stateful logic that runs later in time order (correlation): only the
/// fields that logic needs, and which of the detector's rules the event matched.
#[derive(Clone, Debug)]
pub struct Observation {
    pub event: Event,
    pub rules: Vec<u32>,
    /// Which part of a [`DetectorSet`] the observation belongs to (0 outside a set).
    pub detector: u16,
}

/// What a detector found in events: detections, and observations for its stateful pass.
#[derive(Debug, Default)]
pub struct Findings {
    pub detections: Vec<Detection>,
    pub observations: Vec<Observation>,
    /// Detections already passed on, kept by [`Findings::recycle`] so that the next ones
    /// ([`Findings::push_with_keys`]) reuse their memory. A caller that makes a `Findings`
    /// for each piece of work may carry this from one to the next.
    pub spare: Vec<Detection>,
}

/// Detections a [`Findings`] keeps for reuse.
const MAX_SPARE: usize = 256;

impl Findings {
    pub fn is_empty(&self) -> bool {
        self.detections.is_empty() && self.observations.is_empty()
    }

    /// Adds [`Detection::with_keys`], written into a spare detection when there is one.
    pub fn push_with_keys(&mut self, rule: Arc<RuleInfo>, keys: &[FieldKey], event: &Event, source: Arc<str>) {
        match self.spare.pop() {
            Some(mut d) => {
                d.fill_with_keys(rule, keys, event, source);
                self.detections.push(d);
            }
            None => self.detections.push(Detection::with_keys(rule, keys, event, source)),
        }
    }

    /// Empties `detections`, which the caller has passed on (by reference), keeping up to
    /// [`MAX_SPARE`] of them for [`Findings::push_with_keys`] to fill again.
    pub fn recycle(&mut self) {
        let keep = self.detections.len().min(MAX_SPARE.saturating_sub(self.spare.len()));
        self.spare.extend(self.detections.drain(..keep));
        self.detections.clear();
    }

    pub fn append(&mut self, other: &mut Findings) {
        self.detections.append(&mut other.detections);
        self.observations.append(&mut other.observations);
    }
}

/// Anything that turns events into detections.
pub trait Detector: Send + Sync {
    /// Adds the detections (and observations) for `event` to `out`. `source` is the event's
    /// source name, shared so that detections do not copy it. Events may come in any order and
    /// on any thread.
    fn detect(&self, event: &Event, source: &Arc<str>, out: &mut Findings);

    /// Runs the stateful logic (correlation windows) over the observations gathered by
    /// `detect`, which the caller passes sorted by event time, and returns its detections.
    fn correlate(&self, observations: Vec<Observation>) -> Vec<Detection> {
        let _ = observations;
        Vec::new()
    }

    /// A fresh state for a live stream of this detector's observations (see the crate's
    /// documentation for the contract).
    fn stream_state(&self) -> StreamState {
        StreamState::none()
    }

    /// Folds a batch of observations (from `detect`, in any order) into `state` and appends the
    /// detections that fired to `out`. `watermark` is the stream's event-time watermark: the
    /// caller promises that no observation older than it will come any more (later ones are
    /// counted as `late_dropped` and not used). Observations older than the watermark are
    /// processed in time order, and windows that end before it are decided.
    /// `Timestamp::MAX` ends the stream: everything is processed and decided, as at the end of
    /// a hunt.
    fn stream(
        &self,
        state: &mut StreamState,
        observations: Vec<Observation>,
        watermark: jiff::Timestamp,
        out: &mut Vec<Detection>,
    ) {
        let _ = (watermark, out);
        state.count_ignored(observations.len());
    }

    /// Rebuilds a saved state (read with [`SavedState::from_bytes`]) for this detector. Refuses
    /// a state saved by another kind of detector or for other rules; a [`DetectorSet`] restores
    /// each part it can and starts the others afresh ([`StreamState::restore_notes`]).
    fn restore_stream_state(&self, saved: SavedState) -> Result<StreamState, StateError> {
        saved.restore_none()
    }

    /// [`Detector::restore_stream_state`] from the bytes [`StreamState::to_bytes`] wrote.
    fn restore_stream(&self, bytes: &[u8]) -> Result<StreamState, StateError> {
        self.restore_stream_state(SavedState::from_bytes(bytes)?)
    }
}

/// Several detectors driven as one: each event goes to every part, and each part's
/// observations come back to it, in time order, for its stateful pass.
#[derive(Default)]
pub struct DetectorSet {
    parts: Vec<Box<dyn Detector>>,
}

impl DetectorSet {
    pub fn new() -> DetectorSet {
        DetectorSet::default()
    }

    pub fn push(&mut self, detector: Box<dyn Detector>) {
        self.parts.push(detector);
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

impl Detector for DetectorSet {
    fn detect(&self, event: &Event, source: &Arc<str>, out: &mut Findings) {
        for (i, part) in self.parts.iter().enumerate() {
            let before = out.observations.len();
            part.detect(event, source, out);
            for o in &mut out.observations[before..] {
                o.detector = i as u16;
            }
        }
    }

    fn correlate(&self, observations: Vec<Observation>) -> Vec<Detection> {
        let (per_part, _) = self.route(observations);
        let mut out = Vec::new();
        for (part, own) in self.parts.iter().zip(per_part) {
            out.extend(part.correlate(own));
        }
        out
    }

    fn stream_state(&self) -> StreamState {
        let parts = self.parts.iter().map(|p| p.stream_state()).collect();
        StreamState::of(stream::Kind::Set { parts, own: StreamStats::default() })
    }

    fn stream(
        &self,
        state: &mut StreamState,
        observations: Vec<Observation>,
        watermark: jiff::Timestamp,
        out: &mut Vec<Detection>,
    ) {
        let stream::Kind::Set { parts: states, own } = &mut state.kind else {
            // A state made by another detector: nothing of it fits.
            state.count_ignored(observations.len());
            return;
        };
        // A state restored for fewer parts (cannot happen through `restore_stream_state`).
        while states.len() < self.parts.len() {
            states.push(StreamState::none());
        }
        let (per_part, ignored) = self.route(observations);
        own.observations += ignored;
        own.ignored += ignored;
        for ((part, obs), st) in self.parts.iter().zip(per_part).zip(states.iter_mut()) {
            part.stream(st, obs, watermark, out);
        }
    }

    fn restore_stream_state(&self, saved: SavedState) -> Result<StreamState, StateError> {
        #[derive(serde::Deserialize)]
        struct Set {
            parts: Vec<serde_json::Value>,
            #[serde(default)]
            stats: StreamStats,
        }
        let set: Set = stream::parse(saved.expect("set")?)?;
        let mut saved_parts = set.parts.into_iter();
        let mut states = Vec::with_capacity(self.parts.len());
        let mut notes = Vec::new();
        for (i, part) in self.parts.iter().enumerate() {
            let restored = match saved_parts.next() {
                Some(value) => part.restore_stream_state(SavedState { value }),
                None => Err(StateError::Mismatch("not in the saved state".into())),
            };
            match restored {
                Ok(st) => states.push(st),
                Err(StateError::Mismatch(why)) => {
                    notes.push(format!("part {i} starts afresh: {why}"));
                    states.push(part.stream_state());
                }
                Err(e) => return Err(e),
            }
        }
        let extra = saved_parts.count();
        if extra > 0 {
            notes.push(format!("{extra} saved part(s) beyond the detector's {} dropped", self.parts.len()));
        }
        let mut state = StreamState::of(stream::Kind::Set { parts: states, own: set.stats });
        state.notes = notes;
        Ok(state)
    }
}

impl DetectorSet {
    /// Each part's observations (with `detector` set back to 0), and how many name no part.
    fn route(&self, observations: Vec<Observation>) -> (Vec<Vec<Observation>>, u64) {
        let mut per_part: Vec<Vec<Observation>> = self.parts.iter().map(|_| Vec::new()).collect();
        let mut ignored = 0;
        for mut o in observations {
            if let Some(v) = per_part.get_mut(o.detector as usize) {
                o.detector = 0;
                v.push(o);
            } else {
                ignored += 1;
            }
        }
        (per_part, ignored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nigehban_event::{Product, Source};

    /// Key fields are copied as far as they are kept: 512 bytes at most, cut at a character
    /// boundary and marked with `…`; numbers and short text whole.
    #[test]
    fn key_fields_are_kept_up_to_512_bytes() {
        let rule = Arc::new(RuleInfo {
            engine: Engine::Sigma,
            id: "r".into(),
            title: "R".into(),
            level: Level::High,
            tags: Vec::new(),
            path: "r.yml".into(),
            key_fields: ["EventID", "ScriptBlockText", "Short", "Missing"].map(String::from).to_vec(),
        });
        let mut event = Event::new(Source::file("t"), Position::Line(1), Product::Windows, "test");
        event.set("EventID", Value::Int(4104));
        // 'é' is two bytes: byte 512 falls inside one.
        let long = format!("a{}", "é".repeat(600));
        event.set("scriptblocktext", Value::str(long.as_str()));
        event.set("Short", Value::str("é"));
        let d = Detection::new(rule, &event, "t".into());
        let kept: Vec<(&str, &str)> = d.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let cut = format!("{}…", &long[..511]);
        assert_eq!(kept, [("EventID", "4104"), ("ScriptBlockText", cut.as_str()), ("Short", "é")]);
    }

    /// A detection filled again after [`Findings::recycle`] is the one [`Detection::with_keys`]
    /// makes, whatever the detection it reuses held: more or fewer key fields, longer values,
    /// a host or none, another rule, source and time.
    #[test]
    fn recycled_detections_are_the_fresh_ones() {
        let rule = |id: &str, fields: &[&str]| {
            Arc::new(RuleInfo {
                engine: Engine::Sigma,
                id: id.into(),
                title: id.to_uppercase(),
                level: Level::High,
                tags: Vec::new(),
                path: format!("{id}.yml"),
                key_fields: fields.iter().map(|f| f.to_string()).collect(),
            })
        };
        let rules = [
            rule("wide", &["EventID", "CommandLine", "Image", "User", "Computer"]),
            rule("narrow", &["Image"]),
            rule("none", &["Missing"]),
            rule("long", &["CommandLine", "EventID"]),
        ];
        let keys: Vec<Vec<FieldKey>> =
            rules.iter().map(|r| r.key_fields.iter().map(|f| FieldKey::new(f)).collect()).collect();
        let mut events = Vec::new();
        for (i, (host, command)) in
            [(Some("ws1"), "cmd /c whoami"), (None, "x"), (Some("dc01.example.org"), &*"é".repeat(400)), (None, "y")]
                .into_iter()
                .enumerate()
        {
            let mut e = Event::new(Source::file("t"), Position::Line(i as u64 + 1), Product::Windows, "test");
            e.set("EventID", Value::Int(4688 + i as i64));
            e.set("CommandLine", Value::str(command));
            e.set("Image", Value::str(format!("C:\\bin\\{i}.exe")));
            if let Some(h) = host {
                e.set("Computer", Value::str(h));
            }
            e.timestamp = jiff::Timestamp::from_second(1_700_000_000 + i as i64).ok();
            events.push(e);
        }
        let sources: [Arc<str>; 2] = ["a.evtx".into(), "b.evtx".into()];
        let mut findings = Findings::default();
        let mut expected = Vec::new();
        for round in 0..3 {
            for (r, (rule, keys)) in rules.iter().zip(&keys).enumerate() {
                for (e, event) in events.iter().enumerate() {
                    let source = sources[(r + e + round) % 2].clone();
                    findings.push_with_keys(rule.clone(), keys, event, source.clone());
                    expected.push(Detection::with_keys(rule.clone(), keys, event, source));
                }
            }
            let got: Vec<String> = findings.detections.iter().map(|d| format!("{d:?}")).collect();
            let want: Vec<String> = expected.drain(..).map(|d| format!("{d:?}")).collect();
            assert_eq!(got, want, "round {round}");
            findings.recycle();
            assert!(findings.detections.is_empty());
            assert_eq!(findings.spare.len(), rules.len() * events.len());
            // The spare ones are taken last first, so each is filled with another rule's
            // detection on another event than it held.
        }
    }
}
