//! Detection: what every detector (Sigma rules today; indicators and correlation next)
//! produces from an event, and the one trait that `hunt` and live monitoring drive.
//!
//! Architecture invariant: pure; no I/O, no async. A [`Detector`] is `Send + Sync` and takes
//! `&self`, so one instance serves every thread. Stateful logic (correlation windows) is
//! driven separately, in event-time order, by its caller.

mod beacon;
mod firstseen;
mod indicators;
pub mod pack;
mod sigma;
mod stats;

use std::sync::Arc;

use nigehban_event::{Event, Position, Value};
use nigehban_sigma::Level;
use serde::Serialize;

pub use beacon::{BeaconConfig, BeaconDetector};
pub use firstseen::{FirstSeenDetector, FirstSeenRule};
pub use indicators::IndicatorDetector;
pub use sigma::SigmaDetector;

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
}

impl Detection {
    /// A detection of `rule` on `event`, with the rule's key fields copied from the event.
    pub fn new(rule: Arc<RuleInfo>, event: &Event, source: Arc<str>) -> Detection {
        let mut fields = Vec::new();
        for name in &rule.key_fields {
            if let Some(v) = event.get(name)
                && !matches!(v, Value::Null)
            {
                let mut text = v.to_string();
                truncate(&mut text, 512);
                fields.push((name.clone(), text));
            }
        }
        Detection {
            host: event.host().map(|h| h.into_owned()),
            timestamp: event.timestamp,
            position: event.position,
            source,
            rule,
            fields,
        }
    }
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
}

impl Findings {
    pub fn is_empty(&self) -> bool {
        self.detections.is_empty() && self.observations.is_empty()
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
        let mut per_part: Vec<Vec<Observation>> = self.parts.iter().map(|_| Vec::new()).collect();
        for o in observations {
            if let Some(v) = per_part.get_mut(o.detector as usize) {
                v.push(o);
            }
        }
        let mut out = Vec::new();
        for (part, obs) in self.parts.iter().zip(per_part) {
            let mut own = obs;
            for o in &mut own {
                o.detector = 0;
            }
            out.extend(part.correlate(own));
        }
        out
    }
}
