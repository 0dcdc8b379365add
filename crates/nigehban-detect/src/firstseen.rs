//! "First seen": a value never seen before for an entity — a user's first VM deletion, a
//! sign-in from a country or address the account never used — after a learning window in
//! which what is normal is recorded and nothing is reported. And "after": an event of one
//! kind by an entity shortly after a first-seen detection for that entity (VM deletions after
//! a sign-in from a new country).
//!
//! Rules select events by exact, case-insensitive field values (`where`), name the entity
//! (`entity`: one or more fields, such as `user.name`) and the value whose novelty counts
//! (`value`). Events are processed in time order in [`Detector::correlate`].
//!
//! Bounded state: at most `max_entries` (entity, value) pairs are remembered per rule; beyond
//! that nothing new is learnt and the count of pairs not kept grows (a value not remembered is
//! reported again when seen again, never silently dropped). For "after" rules, a rule's
//! detections are remembered per entity only as long as an "after" rule can look back at them
//! (its `within`), at most 64 per entity and `max_entries` entities.
//!
//! The offline pass and live streams share one path ([`Stream`]); in a live stream, learning
//! begins with the stream's first event of the rule, and a saved state keeps what each rule
//! learnt under the rule's id, so that a changed rule set keeps the learning of the rules that
//! did not change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use nigehban_event::{Event, Value};
use nigehban_sigma::Level;
use serde::{Deserialize, Serialize};

use crate::stream::{self, Kind, Reorder, SavedReorder, SavedState, StateError, StreamState, StreamStats};
use crate::{Detection, Detector, Engine, Findings, Observation, RuleInfo};

/// One field test of `where`: a value or a list of values (any of them).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.to_lowercase()],
            OneOrMany::Many(v) => v.iter().map(|s| s.to_lowercase()).collect(),
        }
    }
}

/// References to other first-seen rules: this rule fires when its events follow one of
/// their detections for the same entity within `within`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct After {
    pub rules: Vec<String>,
    pub within: String,
}

/// A first-seen rule as the rule pack writes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirstSeenRule {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub level: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Field → value(s) an event must have (case-insensitive, exact).
    #[serde(rename = "where")]
    pub filter: std::collections::BTreeMap<String, OneOrMany>,
    /// Fields naming the entity (all must be present).
    pub entity: Vec<String>,
    /// Fields whose combined value is new or not (empty: "the entity doing this at all").
    #[serde(default)]
    pub value: Vec<String>,
    /// How long from the first event seen what is normal is only learnt (`7d`, `12h`).
    #[serde(default)]
    pub learning: Option<String>,
    #[serde(default)]
    pub after: Option<After>,
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

fn default_max_entries() -> usize {
    1_000_000
}

struct Compiled {
    rule: FirstSeenRule,
    info: Arc<RuleInfo>,
    filter: Vec<(String, Vec<String>)>,
    learning: SignedDuration,
    after: Option<(Vec<usize>, SignedDuration)>,
    /// How long this rule's detections are remembered: the longest `within` of the "after"
    /// rules that refer to it (`None`: none does, nothing is remembered).
    keep: Option<SignedDuration>,
    /// Identifies what the rule learns, for saved stream states.
    fingerprint: String,
}

/// Parses `30s`, `15m`, `12h`, `7d`.
pub fn parse_duration(s: &str) -> Option<SignedDuration> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(SignedDuration::from_secs(secs))
}

/// First-seen and "after" rules as one detector.
pub struct FirstSeenDetector {
    rules: Vec<Compiled>,
    /// Every field any rule reads.
    fields: Vec<String>,
}

impl FirstSeenDetector {
    pub fn new(rules: Vec<FirstSeenRule>) -> Result<FirstSeenDetector, String> {
        let mut compiled = Vec::new();
        let ids: Vec<String> = rules.iter().map(|r| r.id.clone()).collect();
        let plain: Vec<bool> = rules.iter().map(|r| r.after.is_none()).collect();
        for rule in rules {
            let what = |m: String| format!("first-seen rule `{}`: {m}", rule.id);
            let level = Level::parse(&rule.level).ok_or_else(|| what(format!("`{}` is not a level", rule.level)))?;
            if rule.entity.is_empty() {
                return Err(what("`entity` names no field".into()));
            }
            if rule.filter.is_empty() {
                return Err(what("`where` selects nothing".into()));
            }
            let learning = match &rule.learning {
                Some(l) => parse_duration(l).ok_or_else(|| what(format!("`{l}` is not a duration (30m, 12h, 7d)")))?,
                None => SignedDuration::ZERO,
            };
            let after = match &rule.after {
                Some(a) => {
                    if a.rules.is_empty() {
                        return Err(what("`after` names no rule".into()));
                    }
                    let mut i = Vec::new();
                    for r in &a.rules {
                        let at = ids.iter().position(|id| id == r).filter(|&at| plain[at]);
                        i.push(at.ok_or_else(|| {
                            what(format!("`after` names `{r}`, which is not a plain first-seen rule"))
                        })?);
                    }
                    let w = parse_duration(&a.within)
                        .ok_or_else(|| what(format!("`{}` is not a duration (30m, 12h, 7d)", a.within)))?;
                    Some((i, w))
                }
                None => None,
            };
            let info = Arc::new(RuleInfo {
                engine: Engine::Behaviour,
                id: rule.id.clone(),
                title: rule.title.clone(),
                level,
                tags: rule.tags.clone(),
                path: "builtin:first-seen".into(),
                key_fields: rule.entity.iter().chain(rule.value.iter()).cloned().collect(),
            });
            let filter = rule.filter.iter().map(|(k, v)| (k.clone(), v.values())).collect();
            let fingerprint = stream::fingerprint(&[
                &rule.id,
                &format!("{:?}", rule.filter),
                &format!("{:?}", rule.entity),
                &format!("{:?}", rule.value),
                &format!("{:?}", rule.learning),
                &format!("{:?}", rule.after),
                &rule.max_entries.to_string(),
            ]);
            compiled.push(Compiled { rule, info, filter, learning, after, keep: None, fingerprint });
        }
        for i in 0..compiled.len() {
            if let Some((targets, within)) = compiled[i].after.clone() {
                for t in targets {
                    if let Some(c) = compiled.get_mut(t) {
                        c.keep = Some(c.keep.map_or(within, |k| k.max(within)));
                    }
                }
            }
        }
        let mut fields: Vec<String> = Vec::new();
        for c in &compiled {
            for f in c.rule.entity.iter().chain(c.rule.value.iter()) {
                if !fields.contains(f) {
                    fields.push(f.clone());
                }
            }
        }
        Ok(FirstSeenDetector { rules: compiled, fields })
    }

    fn matches(c: &Compiled, event: &Event) -> bool {
        c.filter.iter().all(|(field, wanted)| {
            let Some(v) = event.get(field) else { return false };
            let mut hit = false;
            v.for_each_scalar(&mut |x| {
                if let Some(t) = x.as_lower_text()
                    && wanted.iter().any(|w| *w == *t)
                {
                    hit = true;
                }
                hit
            });
            hit
        })
    }
}

fn joined(event: &Event, fields: &[String]) -> Option<String> {
    let mut out = String::new();
    for f in fields {
        let v = event.get(f)?;
        let t = v.as_text()?;
        if t.is_empty() {
            return None;
        }
        if !out.is_empty() {
            out.push('\u{1f}');
        }
        out.push_str(&t.to_lowercase());
    }
    Some(out)
}

/// What one rule learnt.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct State {
    start: Option<Timestamp>,
    seen: HashSet<(String, String)>,
    not_kept: u64,
    /// Entity → times of this rule's detections (for `after` rules that refer to it), the
    /// last `keep`.
    hits: HashMap<String, Vec<Timestamp>>,
    /// (entity, time of the referred detection) already reported by an `after` rule.
    reported: HashSet<(String, Timestamp)>,
    /// When `hits` and `reported` were last rid of what can no longer match.
    last_prune: Option<Timestamp>,
}

/// Detections of a rule remembered per entity, for "after" rules.
const MAX_HITS_PER_ENTITY: usize = 64;

/// A live stream of a [`FirstSeenDetector`]'s observations (also the offline pass: one batch).
pub(crate) struct Stream {
    pub(crate) reorder: Reorder,
    states: Vec<State>,
    pub(crate) stats: StreamStats,
    /// Per rule: its id and fingerprint, to save the state under.
    ids: Vec<(String, String)>,
}

impl Stream {
    pub(crate) fn stats(&self) -> StreamStats {
        StreamStats {
            state_entries: self.states.iter().map(|s| (s.seen.len() + s.hits.len() + s.reported.len()) as u64).sum(),
            values_not_kept: self.states.iter().map(|s| s.not_kept).sum(),
            ..self.stats.clone()
        }
    }

    pub(crate) fn save(&self) -> Result<serde_json::Value, StateError> {
        let rules: Vec<SavedRuleRef<'_>> = self
            .ids
            .iter()
            .zip(&self.states)
            .map(|((id, fingerprint), state)| SavedRuleRef { id, fingerprint, state })
            .collect();
        Ok(serde_json::json!({
            "kind": "first_seen",
            "stats": self.stats,
            "buffer": stream::to_value(&self.reorder.save()?)?,
            "rules": stream::to_value(&rules)?,
        }))
    }
}

impl Detector for FirstSeenDetector {
    fn detect(&self, event: &Event, _source: &Arc<str>, out: &mut Findings) {
        if event.timestamp.is_none() {
            return;
        }
        let matched: Vec<u32> =
            self.rules.iter().enumerate().filter(|(_, c)| Self::matches(c, event)).map(|(i, _)| i as u32).collect();
        if matched.is_empty() {
            return;
        }
        let mut slim = Event::new(event.source.clone(), event.position, event.product, event.format);
        slim.timestamp = event.timestamp;
        for f in &self.fields {
            if let Some(v) = event.get(f)
                && !matches!(v, Value::Null)
            {
                slim.set(f.as_str(), v.clone());
            }
        }
        if let Some(h) = event.host() {
            slim.set("host.name", Value::str(h.into_owned()));
        }
        out.observations.push(Observation { event: slim, rules: matched, detector: 0 });
    }

    fn correlate(&self, observations: Vec<Observation>) -> Vec<Detection> {
        let mut out = Vec::new();
        self.run(&mut self.new_stream(), observations, Timestamp::MAX, &mut out);
        out
    }

    fn stream_state(&self) -> StreamState {
        StreamState::of(Kind::FirstSeen(Box::new(self.new_stream())))
    }

    fn stream(
        &self,
        state: &mut StreamState,
        observations: Vec<Observation>,
        watermark: Timestamp,
        out: &mut Vec<Detection>,
    ) {
        match &mut state.kind {
            Kind::FirstSeen(st) => self.run(st, observations, watermark, out),
            _ => state.count_ignored(observations.len()),
        }
    }

    fn restore_stream_state(&self, saved: SavedState) -> Result<StreamState, StateError> {
        #[derive(Deserialize)]
        struct Saved {
            #[serde(default)]
            stats: StreamStats,
            buffer: SavedReorder,
            rules: Vec<SavedRule>,
        }
        let saved: Saved = stream::parse(saved.expect("first_seen")?)?;
        let mut st = self.new_stream();
        st.reorder = Reorder::restore(saved.buffer)?;
        st.stats = saved.stats;
        let mut notes = Vec::new();
        let mut by_id: HashMap<String, SavedRule> = saved.rules.into_iter().map(|r| (r.id.clone(), r)).collect();
        for (c, state) in self.rules.iter().zip(st.states.iter_mut()) {
            match by_id.remove(&c.rule.id) {
                Some(r) if r.fingerprint == c.fingerprint => *state = r.state,
                Some(_) => notes.push(format!("first-seen rule `{}` starts afresh: it changed", c.rule.id)),
                None => notes.push(format!("first-seen rule `{}` starts afresh: it is new", c.rule.id)),
            }
        }
        let mut gone: Vec<String> = by_id.into_keys().collect();
        gone.sort();
        for id in gone {
            notes.push(format!("first-seen rule `{id}` is no longer in the rule set: what it learnt is dropped"));
        }
        let mut state = StreamState::of(Kind::FirstSeen(Box::new(st)));
        state.notes = notes;
        Ok(state)
    }
}

/// One rule's saved state, under its id.
#[derive(Serialize, Deserialize)]
struct SavedRule {
    id: String,
    fingerprint: String,
    state: State,
}

impl FirstSeenDetector {
    fn new_stream(&self) -> Stream {
        Stream {
            reorder: Reorder::default(),
            states: self.rules.iter().map(|_| State::default()).collect(),
            stats: StreamStats::default(),
            ids: self.rules.iter().map(|c| (c.rule.id.clone(), c.fingerprint.clone())).collect(),
        }
    }

    /// Feeds a batch to a stream; the one path of both the offline pass and live streams.
    fn run(&self, st: &mut Stream, observations: Vec<Observation>, watermark: Timestamp, out: &mut Vec<Detection>) {
        let released = st.reorder.push(observations, watermark, &mut st.stats);
        let before = out.len();
        for o in &released {
            self.observe(&mut st.states, o, out);
        }
        st.stats.detections += (out.len() - before) as u64;
    }

    fn observe(&self, states: &mut [State], o: &Observation, out: &mut Vec<Detection>) {
        let Some(t) = o.event.timestamp else { return };
        // Plain first-seen rules first, so that an `after` rule sees a detection made by
        // the same event's predecessor rules in this pass.
        let mut order: Vec<usize> = o.rules.iter().map(|&i| i as usize).filter(|&i| i < self.rules.len()).collect();
        order.sort_by_key(|&i| self.rules[i].after.is_some());
        for i in order {
            let c = &self.rules[i];
            let Some(entity) = joined(&o.event, &c.rule.entity) else { continue };
            if let Some((targets, within)) = &c.after {
                let recent = targets
                    .iter()
                    .filter_map(|&target| {
                        let times = states.get(target)?.hits.get(&entity)?;
                        let h = times.iter().rev().find(|&&h| h <= t && t.duration_since(h) <= *within)?;
                        Some((target, *h))
                    })
                    .max_by_key(|(_, h)| *h);
                let st = &mut states[i];
                if st.last_prune.is_none_or(|p| t.duration_since(p) > *within) {
                    st.reported.retain(|(_, h)| t.duration_since(*h) <= *within);
                    st.last_prune = Some(t);
                }
                if let Some((target, h)) = recent
                    && st.reported.insert((entity.clone(), h))
                {
                    let mut d = self.detection(c, &o.event);
                    d.fields.push(("after".into(), format!("{} at {h}", self.rules[target].rule.id)));
                    out.push(d);
                }
                continue;
            }
            let Some(value) = joined(&o.event, &c.rule.value) else { continue };
            let st = &mut states[i];
            let start = *st.start.get_or_insert(t);
            let key = (entity.clone(), value);
            if st.seen.contains(&key) {
                continue;
            }
            let learning = t.duration_since(start) < c.learning;
            if st.seen.len() < c.rule.max_entries {
                st.seen.insert(key);
            } else {
                st.not_kept += 1;
            }
            if learning {
                continue;
            }
            let mut d = self.detection(c, &o.event);
            d.fields.push(("learning_since".into(), start.to_string()));
            out.push(d);
            let Some(keep) = c.keep else { continue };
            if st.last_prune.is_none_or(|p| t.duration_since(p) > keep) {
                st.hits.retain(|_, times| times.last().is_some_and(|h| t.duration_since(*h) <= keep));
                st.last_prune = Some(t);
            }
            if !st.hits.contains_key(&entity) && st.hits.len() >= c.rule.max_entries {
                st.not_kept += 1;
                continue;
            }
            let times = st.hits.entry(entity).or_default();
            times.retain(|h| t.duration_since(*h) <= keep);
            if times.len() < MAX_HITS_PER_ENTITY {
                times.push(t);
            }
        }
    }
}

#[derive(Serialize)]
struct SavedRuleRef<'a> {
    id: &'a str,
    fingerprint: &'a str,
    state: &'a State,
}

impl FirstSeenDetector {
    fn detection(&self, c: &Compiled, event: &Event) -> Detection {
        let mut fields = Vec::new();
        for f in c.rule.entity.iter().chain(c.rule.value.iter()) {
            if let Some(t) = event.get(f).and_then(|v| v.as_text()) {
                fields.push((f.clone(), t.into_owned()));
            }
        }
        Detection {
            rule: c.info.clone(),
            timestamp: event.timestamp,
            host: event.get("host.name").and_then(|v| v.as_text()).map(|h| h.into_owned()),
            source: Arc::from(event.source.name.as_str()),
            position: event.position,
            fields,
            counted: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nigehban_event::{Position, Product, Source};

    fn rules() -> Vec<FirstSeenRule> {
        serde_saphyr::from_str(
            r#"
- id: new-country
  title: Sign-in from a country never used by the account
  level: medium
  where: {event.category: authentication, event.outcome: success}
  entity: [user.name]
  value: [source.geo.country_iso_code]
  learning: 7d
- id: deletion-after-new-country
  title: VM deletion after a sign-in from a new country
  level: high
  where: {event.category: vm, event.type: deletion}
  entity: [user.name]
  after: {rules: [new-country], within: 2h}
"#,
        )
        .unwrap()
    }

    fn ev(t: &str, fields: &[(&str, &str)]) -> Event {
        let mut e = Event::new(Source::file("a.json"), Position::Line(1), Product::Other, "json");
        for (k, v) in fields {
            e.set(*k, Value::str(*v));
        }
        e.timestamp = t.parse().ok();
        e
    }

    fn signin(t: &str, user: &str, country: &str) -> Event {
        ev(
            t,
            &[
                ("event.category", "authentication"),
                ("event.outcome", "success"),
                ("user.name", user),
                ("source.geo.country_iso_code", country),
            ],
        )
    }

    fn deletion(t: &str, user: &str) -> Event {
        ev(t, &[("event.category", "vm"), ("event.type", "deletion"), ("user.name", user)])
    }

    fn run(d: &FirstSeenDetector, events: Vec<Event>) -> Vec<(String, String)> {
        let mut out = Findings::default();
        for e in &events {
            d.detect(e, &Arc::from("a.json"), &mut out);
        }
        let mut obs = out.observations;
        obs.sort_by_key(|o| o.event.timestamp);
        d.correlate(obs)
            .into_iter()
            .map(|d| (d.rule.id.clone(), d.fields.iter().map(|f| f.1.as_str()).collect::<Vec<_>>().join(" ")))
            .collect()
    }

    #[test]
    fn new_values_after_learning_and_deletions_after_them() {
        let d = FirstSeenDetector::new(rules()).unwrap();
        let found = run(
            &d,
            vec![
                signin("2026-01-01T08:00:00Z", "ali@gov.example", "PK"),
                signin("2026-01-03T08:00:00Z", "sara@gov.example", "PK"),
                // Still learning: a new country is recorded, not reported.
                signin("2026-01-05T08:00:00Z", "sara@gov.example", "AE"),
                deletion("2026-01-05T09:00:00Z", "sara@gov.example"),
                // After learning: PK is known for ali, AE is known for sara.
                signin("2026-01-10T08:00:00Z", "ali@gov.example", "PK"),
                signin("2026-01-10T08:00:00Z", "sara@gov.example", "AE"),
                // New.
                signin("2026-01-11T08:00:00Z", "ali@gov.example", "NL"),
                deletion("2026-01-11T08:30:00Z", "ali@gov.example"),
                deletion("2026-01-11T08:31:00Z", "ali@gov.example"),
                // Too late after the sign-in.
                deletion("2026-01-11T11:00:00Z", "ali@gov.example"),
                deletion("2026-01-11T08:30:00Z", "sara@gov.example"),
            ],
        );
        assert_eq!(
            found,
            vec![
                ("new-country".to_string(), "ali@gov.example NL 2026-01-01T08:00:00Z".to_string()),
                (
                    "deletion-after-new-country".to_string(),
                    "ali@gov.example new-country at 2026-01-11T08:00:00Z".into()
                ),
            ]
        );
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let mut r = rules();
        r[1].after.as_mut().unwrap().rules = vec!["nope".into()];
        assert!(FirstSeenDetector::new(r).err().unwrap_or_default().contains("`nope`"));
        let mut r = rules();
        r[0].learning = Some("soon".into());
        assert!(FirstSeenDetector::new(r).err().unwrap_or_default().contains("soon"));
        let mut r = rules();
        r[0].level = "loud".into();
        assert!(FirstSeenDetector::new(r).is_err());
    }
}
