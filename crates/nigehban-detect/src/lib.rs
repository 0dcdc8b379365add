//! Detection: what every detector (Sigma rules today; indicators and correlation next)
//! produces from an event, and the one trait that `hunt` and live monitoring drive.
//!
//! Architecture invariant: pure; no I/O, no async. A [`Detector`] is `Send + Sync` and takes
//! `&self`, so one instance serves every thread. Stateful logic (correlation windows) is
//! driven separately, in event-time order, by its caller.

mod sigma;

use std::sync::Arc;

use nigehban_event::{Event, Position, Value};
use nigehban_sigma::Level;
use serde::Serialize;

pub use sigma::SigmaDetector;

/// What kind of logic produced a detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Sigma,
    Indicator,
    Correlation,
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

/// Anything that turns events into detections.
pub trait Detector: Send + Sync {
    /// Appends the detections for `event` to `out`. `source` is the event's source name, shared
    /// so that detections do not copy it.
    fn detect(&self, event: &Event, source: &Arc<str>, out: &mut Vec<Detection>);
}
