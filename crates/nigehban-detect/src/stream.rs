//! What every live stream of observations shares: the state the caller owns
//! ([`StreamState`]), its counters ([`StreamStats`]), the reorder buffer that lets late events
//! count, and the saved form of a state ([`StreamState::to_bytes`], [`SavedState`]).
//! The contract is described in the crate's documentation.

use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;
use nigehban_event::{Event, Position, Source, codec};
use serde::{Deserialize, Serialize};

use crate::Observation;
use crate::{beacon, firstseen, sigma};

/// The version of the saved form written by [`StreamState::to_bytes`]; a saved state of any
/// other version is refused.
pub const STATE_FORMAT: u32 = 1;

/// Observations a stream holds back, per part, waiting for the watermark; beyond this the
/// oldest are released early ([`StreamStats::released_early`]).
pub const DEFAULT_MAX_BUFFERED: usize = 100_000;

/// A live stream's counters. Totals since the stream began (they survive a save and
/// restore), except the gauges `buffered` and `state_entries`, which say what is held now.
/// For a [`crate::DetectorSet`], the sum over its parts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamStats {
    /// Observations received.
    pub observations: u64,
    /// Observations older than the stream's watermark when they arrived: counted by no window.
    pub late_dropped: u64,
    /// Observations without a timestamp: they cannot be placed in time.
    pub no_timestamp: u64,
    /// Observations no part of a detector set takes (a `detector` index out of range).
    pub ignored: u64,
    /// Observations released before the watermark reached them because the reorder buffer was
    /// full; an observation older than one released early is then late.
    pub released_early: u64,
    /// Gauge: observations waiting in the reorder buffer.
    pub buffered: u64,
    /// Detections returned.
    pub detections: u64,
    /// Gauge: state held: correlation groups, beacon pairs, remembered first-seen values.
    pub state_entries: u64,
    /// Correlation: groups evicted because a rule had too many.
    pub evicted_groups: u64,
    /// Correlation: window entries merged or dropped because a group had too many.
    pub merged_entries: u64,
    /// Correlation: observations lacking a `group-by` or counted field.
    pub missing_fields: u64,
    /// Correlation: observations absorbed by a group that had just fired (same burst).
    pub absorbed: u64,
    /// Beaconing: connections of new pairs not kept (`max_pairs` reached).
    pub pairs_not_kept: u64,
    /// Beaconing: connections dropped from a pair's history because it was full
    /// (`max_connections_per_pair`); those older than the history window go without a count.
    pub connections_not_kept: u64,
    /// Beaconing: learnt (address, host name) pairs not kept: beyond four names for an
    /// address, or a million addresses.
    pub names_not_kept: u64,
    /// Beaconing: evaluations (one per evaluation interval with new connections).
    pub evaluations: u64,
    /// Beaconing: pairs periodic enough to report but reported less than `realert_after` ago.
    pub realerts_suppressed: u64,
    /// First seen: (entity, value) pairs or entities not remembered (`max_entries` reached).
    pub values_not_kept: u64,
}

impl StreamStats {
    fn add(&mut self, o: &StreamStats) {
        self.observations += o.observations;
        self.late_dropped += o.late_dropped;
        self.no_timestamp += o.no_timestamp;
        self.ignored += o.ignored;
        self.released_early += o.released_early;
        self.buffered += o.buffered;
        self.detections += o.detections;
        self.state_entries += o.state_entries;
        self.evicted_groups += o.evicted_groups;
        self.merged_entries += o.merged_entries;
        self.missing_fields += o.missing_fields;
        self.absorbed += o.absorbed;
        self.pairs_not_kept += o.pairs_not_kept;
        self.connections_not_kept += o.connections_not_kept;
        self.names_not_kept += o.names_not_kept;
        self.evaluations += o.evaluations;
        self.realerts_suppressed += o.realerts_suppressed;
        self.values_not_kept += o.values_not_kept;
    }
}

/// The state of one live stream of a detector's observations: open correlation windows,
/// beacon pairs, first-seen values, the reorder buffer, the counters. Owned by the caller, one
/// per stream (an organisation; a CERT's organisations for rules the CERT owns); made by
/// [`crate::Detector::stream_state`], fed by [`crate::Detector::stream`].
pub struct StreamState {
    pub(crate) kind: Kind,
    /// Why parts of a restored state started afresh.
    pub(crate) notes: Vec<String>,
}

pub(crate) enum Kind {
    /// A detector without state across events.
    None(StreamStats),
    Sigma(Box<sigma::Stream>),
    Beacon(Box<beacon::Stream>),
    FirstSeen(Box<firstseen::Stream>),
    /// A detector set's parts, and the set's own counters (observations no part takes).
    Set {
        parts: Vec<StreamState>,
        own: StreamStats,
    },
}

impl fmt::Debug for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::None(_) => "none",
            Kind::Sigma(_) => "sigma",
            Kind::Beacon(_) => "beaconing",
            Kind::FirstSeen(_) => "first_seen",
            Kind::Set { .. } => "set",
        };
        f.debug_struct("StreamState").field("kind", &kind).field("stats", &self.stats()).finish()
    }
}

impl StreamState {
    /// The state of a detector that keeps none.
    pub fn none() -> StreamState {
        StreamState::of(Kind::None(StreamStats::default()))
    }

    pub(crate) fn of(kind: Kind) -> StreamState {
        StreamState { kind, notes: Vec::new() }
    }

    /// The stream's counters (summed over the parts of a set).
    pub fn stats(&self) -> StreamStats {
        match &self.kind {
            Kind::None(s) => s.clone(),
            Kind::Sigma(s) => s.stats(),
            Kind::Beacon(s) => s.stats(),
            Kind::FirstSeen(s) => s.stats(),
            Kind::Set { parts, own } => {
                let mut total = own.clone();
                for p in parts {
                    total.add(&p.stats());
                }
                total
            }
        }
    }

    /// Sets how many observations each part holds back waiting for the watermark
    /// ([`DEFAULT_MAX_BUFFERED`] unless set; not saved).
    pub fn set_max_buffered(&mut self, max: usize) {
        match &mut self.kind {
            Kind::None(_) => {}
            Kind::Sigma(s) => s.reorder.max = max,
            Kind::Beacon(s) => s.reorder.max = max,
            Kind::FirstSeen(s) => s.reorder.max = max,
            Kind::Set { parts, .. } => parts.iter_mut().for_each(|p| p.set_max_buffered(max)),
        }
    }

    /// Counts observations a detector could not take (a state made by another detector).
    pub(crate) fn count_ignored(&mut self, n: usize) {
        let stats = match &mut self.kind {
            Kind::None(s) => s,
            Kind::Sigma(s) => &mut s.stats,
            Kind::Beacon(s) => &mut s.stats,
            Kind::FirstSeen(s) => &mut s.stats,
            Kind::Set { own, .. } => own,
        };
        stats.observations += n as u64;
        stats.ignored += n as u64;
    }

    /// The newest watermark the stream was given (`None` before the first batch).
    pub fn watermark(&self) -> Option<Timestamp> {
        match &self.kind {
            Kind::None(_) => None,
            Kind::Sigma(s) => s.reorder.floor,
            Kind::Beacon(s) => s.reorder.floor,
            Kind::FirstSeen(s) => s.reorder.floor,
            Kind::Set { parts, .. } => parts.iter().filter_map(StreamState::watermark).max(),
        }
    }

    /// After a restore: the parts (or first-seen rules) that started afresh, and why (their
    /// rules changed). Empty when everything was restored.
    pub fn restore_notes(&self) -> Vec<String> {
        let mut out = self.notes.clone();
        if let Kind::Set { parts, .. } = &self.kind {
            for p in parts {
                out.extend(p.restore_notes());
            }
        }
        out
    }

    /// The state in its saved form (JSON, with the format version [`STATE_FORMAT`]), to be
    /// given back to [`crate::Detector::restore_stream`] of a detector with the same rules.
    pub fn to_bytes(&self) -> Result<Vec<u8>, StateError> {
        let envelope = serde_json::json!({ "format": STATE_FORMAT, "state": self.saved()? });
        serde_json::to_vec(&envelope).map_err(|e| StateError::Invalid(e.to_string()))
    }

    pub(crate) fn saved(&self) -> Result<serde_json::Value, StateError> {
        let value = match &self.kind {
            Kind::None(stats) => serde_json::json!({ "kind": "none", "stats": stats }),
            Kind::Sigma(s) => s.save()?,
            Kind::Beacon(s) => s.save()?,
            Kind::FirstSeen(s) => s.save()?,
            Kind::Set { parts, own } => {
                let parts = parts.iter().map(StreamState::saved).collect::<Result<Vec<_>, _>>()?;
                serde_json::json!({ "kind": "set", "parts": parts, "stats": own })
            }
        };
        Ok(value)
    }
}

/// A saved stream state, read back but not yet restored (that needs the detector:
/// [`crate::Detector::restore_stream_state`]).
#[derive(Clone, Debug)]
pub struct SavedState {
    pub(crate) value: serde_json::Value,
}

impl SavedState {
    /// Reads what [`StreamState::to_bytes`] wrote. Garbage and other format versions are
    /// errors.
    pub fn from_bytes(bytes: &[u8]) -> Result<SavedState, StateError> {
        #[derive(Deserialize)]
        struct Envelope {
            format: u64,
            state: serde_json::Value,
        }
        let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| StateError::Invalid(e.to_string()))?;
        if envelope.format != u64::from(STATE_FORMAT) {
            return Err(StateError::Format(envelope.format));
        }
        Ok(SavedState { value: envelope.state })
    }

    /// The kind of state saved (`none`, `sigma`, `beaconing`, `first_seen`, `set`).
    pub fn kind(&self) -> &str {
        self.value.get("kind").and_then(|k| k.as_str()).unwrap_or("")
    }

    /// The saved value of the kind a detector expects.
    pub(crate) fn expect(self, kind: &str) -> Result<serde_json::Value, StateError> {
        if self.kind().is_empty() {
            return Err(StateError::Invalid("the state names no kind of detector".into()));
        }
        if self.kind() != kind {
            return Err(StateError::Mismatch(format!(
                "saved state is of a `{}` detector, not of a `{kind}` detector",
                self.kind()
            )));
        }
        Ok(self.value)
    }

    /// The saved state of a detector without state.
    pub(crate) fn restore_none(self) -> Result<StreamState, StateError> {
        #[derive(Deserialize)]
        struct None {
            #[serde(default)]
            stats: StreamStats,
        }
        let saved: None = parse(self.expect("none")?)?;
        Ok(StreamState::of(Kind::None(saved.stats)))
    }
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, StateError> {
    serde_json::from_value(value).map_err(|e| StateError::Invalid(e.to_string()))
}

pub(crate) fn to_value<T: Serialize>(value: &T) -> Result<serde_json::Value, StateError> {
    serde_json::to_value(value).map_err(|e| StateError::Invalid(e.to_string()))
}

/// Why a saved stream state cannot be restored. The caller starts the stream afresh
/// ([`crate::Detector::stream_state`]) and says so in its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateError {
    /// Not a saved stream state (damaged, truncated, or not one at all).
    Invalid(String),
    /// A saved state of another format version.
    Format(u64),
    /// Saved by another detector, or with other rules.
    Mismatch(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Invalid(why) => write!(f, "not a saved stream state: {why}"),
            StateError::Format(v) => {
                write!(f, "saved stream state has format {v}; this build reads format {STATE_FORMAT}")
            }
            StateError::Mismatch(why) => write!(f, "saved stream state does not fit the detector: {why}"),
        }
    }
}

impl std::error::Error for StateError {}

/// A stable 64-bit hash (FNV-1a) of rule definitions, as hex: it must give the same value in
/// every process and every build that has the same rules.
pub(crate) fn fingerprint(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

// ---------------------------------------------------------------------------------------------
// The reorder buffer
// ---------------------------------------------------------------------------------------------

/// Holds observations back until the watermark passes them, then releases them in time order
/// (stable: observations of the same time keep their arrival order).
#[derive(Debug)]
pub(crate) struct Reorder {
    pending: Vec<Observation>,
    /// The effective watermark: every observation before it has been released; one that
    /// arrives now is late.
    pub(crate) floor: Option<Timestamp>,
    pub(crate) max: usize,
}

impl Default for Reorder {
    fn default() -> Self {
        Reorder { pending: Vec::new(), floor: None, max: DEFAULT_MAX_BUFFERED }
    }
}

impl Reorder {
    /// Takes a batch; returns the observations now released (older than `watermark`, or all of
    /// them at `Timestamp::MAX`, the end of the stream), in time order.
    pub(crate) fn push(
        &mut self,
        observations: Vec<Observation>,
        watermark: Timestamp,
        stats: &mut StreamStats,
    ) -> Vec<Observation> {
        for o in observations {
            stats.observations += 1;
            match o.event.timestamp {
                None => stats.no_timestamp += 1,
                Some(t) if self.floor.is_some_and(|f| t < f) => stats.late_dropped += 1,
                Some(_) => self.pending.push(o),
            }
        }
        // Mostly sorted already (the buffer, then a batch): the stable sort is close to linear.
        self.pending.sort_by_key(|o| o.event.timestamp);
        let floor = self.floor.map_or(watermark, |f| f.max(watermark));
        let cut = if floor == Timestamp::MAX {
            self.pending.len()
        } else {
            self.pending.partition_point(|o| o.event.timestamp.is_some_and(|t| t < floor))
        };
        let mut released: Vec<Observation> = if cut == self.pending.len() {
            std::mem::take(&mut self.pending)
        } else {
            self.pending.drain(..cut).collect()
        };
        if self.pending.len() > self.max {
            let extra = self.pending.len() - self.max;
            released.extend(self.pending.drain(..extra));
            stats.released_early += extra as u64;
        }
        let newest = released.last().and_then(|o| o.event.timestamp);
        self.floor = Some(newest.map_or(floor, |n| n.max(floor)));
        stats.buffered = self.pending.len() as u64;
        released
    }

    pub(crate) fn save(&self) -> Result<SavedReorder, StateError> {
        let pending = self.pending.iter().map(SavedObservation::of).collect::<Result<Vec<_>, _>>()?;
        Ok(SavedReorder { floor: self.floor, pending })
    }

    pub(crate) fn restore(saved: SavedReorder) -> Result<Reorder, StateError> {
        let mut sources: std::collections::HashMap<(String, Option<String>), Arc<Source>> =
            std::collections::HashMap::new();
        let mut pending = Vec::with_capacity(saved.pending.len());
        for o in saved.pending {
            let source = sources
                .entry((o.source.clone(), o.organisation.clone()))
                .or_insert_with(|| Arc::new(Source { name: o.source.clone(), organisation: o.organisation.clone() }))
                .clone();
            pending.push(o.restore(source)?);
        }
        Ok(Reorder { pending, floor: saved.floor, max: DEFAULT_MAX_BUFFERED })
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct SavedReorder {
    floor: Option<Timestamp>,
    pending: Vec<SavedObservation>,
}

/// A buffered observation: its event in the event codec's encoding, and what the codec leaves
/// to the carrier (the source) or keeps less precisely (the time, in microseconds there).
#[derive(Serialize, Deserialize)]
struct SavedObservation {
    source: String,
    organisation: Option<String>,
    time: Option<Timestamp>,
    rules: Vec<u32>,
    /// The encoding as a string (states saved before the codec's version 2: its JSON object).
    event: serde_json::Value,
}

impl SavedObservation {
    fn of(o: &Observation) -> Result<SavedObservation, StateError> {
        let mut bytes = Vec::new();
        codec::encode(&o.event, &mut bytes);
        Ok(SavedObservation {
            source: o.event.source.name.clone(),
            organisation: o.event.source.organisation.clone(),
            time: o.event.timestamp,
            rules: o.rules.clone(),
            event: serde_json::Value::String(String::from_utf8(bytes).map_err(|e| StateError::Invalid(e.to_string()))?),
        })
    }

    fn restore(self, source: Arc<Source>) -> Result<Observation, StateError> {
        let bytes = match self.event {
            serde_json::Value::String(s) => s.into_bytes(),
            object => serde_json::to_vec(&object).map_err(|e| StateError::Invalid(e.to_string()))?,
        };
        let mut event: Event =
            codec::decode(&bytes, source).map_err(|e| StateError::Invalid(format!("buffered event: {e}")))?;
        event.timestamp = self.time;
        Ok(Observation { event, rules: self.rules, detector: 0 })
    }
}

/// [`Position`] in a saved state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SavedPosition {
    Line(u64),
    Offset(u64),
    Record(u64, u64),
}

impl From<Position> for SavedPosition {
    fn from(p: Position) -> Self {
        match p {
            Position::Line(n) => SavedPosition::Line(n),
            Position::Offset(n) => SavedPosition::Offset(n),
            Position::EvtxRecord { record_id, chunk_offset } => SavedPosition::Record(record_id, chunk_offset),
        }
    }
}

impl From<SavedPosition> for Position {
    fn from(p: SavedPosition) -> Self {
        match p {
            SavedPosition::Line(n) => Position::Line(n),
            SavedPosition::Offset(n) => Position::Offset(n),
            SavedPosition::Record(record_id, chunk_offset) => Position::EvtxRecord { record_id, chunk_offset },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nigehban_event::{Position, Product, Value};

    fn obs(secs: i64, line: u64) -> Observation {
        let mut e = Event::new(Source::file("s"), Position::Line(line), Product::Other, "json");
        e.timestamp = Timestamp::from_second(1_700_000_000 + secs).ok();
        e.set("user.name", Value::str("alice"));
        Observation { event: e, rules: vec![0], detector: 0 }
    }

    fn lines(v: &[Observation]) -> Vec<u64> {
        v.iter()
            .map(|o| match o.event.position {
                Position::Line(n) => n,
                _ => 0,
            })
            .collect()
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn the_buffer_releases_in_time_order_up_to_the_watermark_and_counts_late_ones() {
        let mut r = Reorder::default();
        let mut stats = StreamStats::default();
        let out = r.push(vec![obs(10, 1), obs(5, 2), obs(20, 3), obs(5, 4)], at(10), &mut stats);
        assert_eq!(lines(&out), [2, 4]);
        assert_eq!(stats.buffered, 2);
        // 7 is late (before the watermark 10); 12 is not: it is released before 20.
        let out = r.push(vec![obs(7, 5), obs(12, 6)], at(15), &mut stats);
        assert_eq!(lines(&out), [1, 6]);
        assert_eq!(stats.late_dropped, 1);
        // A watermark that goes back changes nothing.
        let out = r.push(vec![obs(14, 7)], at(3), &mut stats);
        assert!(out.is_empty());
        assert_eq!(stats.late_dropped, 2);
        let out = r.push(Vec::new(), Timestamp::MAX, &mut stats);
        assert_eq!(lines(&out), [3]);
        assert_eq!((stats.observations, stats.buffered), (7, 0));
    }

    #[test]
    fn a_full_buffer_releases_its_oldest_early() {
        let mut r = Reorder { max: 2, ..Reorder::default() };
        let mut stats = StreamStats::default();
        let out = r.push((0..5).map(|i| obs(100 + i, i as u64)).collect(), at(0), &mut stats);
        assert_eq!(lines(&out), [0, 1, 2]);
        assert_eq!(stats.released_early, 3);
        // Older than what was released early: late.
        let out = r.push(vec![obs(101, 9)], at(0), &mut stats);
        assert!(out.is_empty());
        assert_eq!(stats.late_dropped, 1);
    }

    #[test]
    fn buffered_observations_survive_a_save() {
        let mut r = Reorder::default();
        let mut stats = StreamStats::default();
        let mut o = obs(10, 1);
        o.event.timestamp = Some(at(10).checked_add(jiff::SignedDuration::from_nanos(7)).unwrap());
        r.push(vec![o, obs(11, 2)], at(0), &mut stats);
        let json = serde_json::to_string(&r.save().unwrap()).unwrap();
        let mut back = Reorder::restore(serde_json::from_str(&json).unwrap()).unwrap();
        let out = back.push(Vec::new(), Timestamp::MAX, &mut stats);
        assert_eq!(lines(&out), [1, 2]);
        assert_eq!(out[0].event.timestamp, Some(at(10).checked_add(jiff::SignedDuration::from_nanos(7)).unwrap()));
        assert_eq!(out[0].event.get("user.name").and_then(|v| v.as_text()).as_deref(), Some("alice"));
        assert!(Arc::ptr_eq(&out[0].event.source, &out[1].event.source));
    }

    #[test]
    fn observations_saved_before_the_codec_version_2_are_read() {
        let saved: SavedObservation = serde_json::from_value(serde_json::json!({
            "source": "s", "organisation": null, "time": null, "rules": [0],
            "event": {"v": 1, "t": null, "p": "other", "f": "json", "pos": {"line": 4},
                      "x": [["user.name", "bob"]], "r": "{\"user.name\": \"bob\"}"},
        }))
        .unwrap();
        let o = saved.restore(Source::file("s")).unwrap();
        assert_eq!(o.event.position, Position::Line(4));
        assert_eq!(o.event.get("user.name").and_then(|v| v.as_text()).as_deref(), Some("bob"));
    }

    #[test]
    fn garbage_and_other_versions_are_refused() {
        assert!(matches!(SavedState::from_bytes(b"\x00\xffnot json"), Err(StateError::Invalid(_))));
        assert!(matches!(SavedState::from_bytes(b"{\"format\": 99, \"state\": {}}"), Err(StateError::Format(99))));
        assert!(matches!(SavedState::from_bytes(b"{\"format\": 1}"), Err(StateError::Invalid(_))));
        let saved = SavedState::from_bytes(b"{\"format\": 1, \"state\": {\"kind\": \"sigma\"}}").unwrap();
        assert!(matches!(saved.restore_none(), Err(StateError::Mismatch(_))));
    }
}
