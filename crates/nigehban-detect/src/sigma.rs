use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use jiff::Timestamp;
use nigehban_event::{Event, FieldKey, Position, Value};
use nigehban_sigma::correlation::{CorrelationEngine, CorrelationHit, RuleRef, SavedEngine};
use nigehban_sigma::{Level, RuleId, RuleSet};
use serde::Deserialize;

use crate::stream::{self, Kind, Reorder, SavedReorder, SavedState, StateError, StreamState, StreamStats};
use crate::{Detection, Detector, Engine, Findings, Observation, RuleInfo};

/// Sigma rules, and the Sigma correlation rules among them, as a [`Detector`].
pub struct SigmaDetector {
    rules: Arc<RuleSet>,
    info: Vec<Arc<RuleInfo>>,
    correlation_info: Vec<Arc<RuleInfo>>,
    /// Per rule: its key fields as lookup keys, prepared when it first matches.
    keys: Vec<OnceLock<Box<[FieldKey]>>>,
    /// Per rule: whether its matches are reported on their own.
    standalone: Vec<bool>,
    /// Per rule: the fields correlation rules read from its events (`None`: not referenced).
    correlated_fields: Vec<Option<Vec<String>>>,
    min_level: Option<Level>,
    /// Identifies the correlation rules and the rules they refer to, for saved stream states.
    fingerprint: String,
}

/// A live stream of a [`SigmaDetector`]'s observations: the correlation engine's windows.
pub(crate) struct Stream {
    pub(crate) reorder: Reorder,
    engine: CorrelationEngine,
    pub(crate) stats: StreamStats,
    fingerprint: String,
}

impl Stream {
    pub(crate) fn stats(&self) -> StreamStats {
        let e = self.engine.stats();
        StreamStats {
            state_entries: self.engine.groups() as u64,
            evicted_groups: e.evicted_groups,
            merged_entries: e.merged_entries,
            missing_fields: e.missing_group_field + e.missing_value_field,
            absorbed: e.absorbed,
            ..self.stats.clone()
        }
    }

    pub(crate) fn save(&self) -> Result<serde_json::Value, StateError> {
        Ok(serde_json::json!({
            "kind": "sigma",
            "fingerprint": self.fingerprint,
            "stats": self.stats,
            "buffer": stream::to_value(&self.reorder.save()?)?,
            "engine": stream::to_value(&self.engine.saved())?,
        }))
    }
}

/// Fields every Windows detection shows, before the rule's own.
const COMMON_FIELDS: &[&str] = &["EventID", "Channel"];

/// The entities a detection names after the rule's own fields, when the event has them
/// (normalized names, docs/fields.md): who, from where, to where, on what.
const ENTITY_FIELDS: &[&str] =
    &["user.name", "source.ip", "destination.ip", "destination.port", "cloud.provider", "target.name", "url.original"];

fn rule_info(engine: Engine, r: &nigehban_sigma::Rule, path: &str, key_fields: Vec<String>) -> Arc<RuleInfo> {
    Arc::new(RuleInfo {
        engine,
        id: r.id.clone().or_else(|| r.name.clone()).unwrap_or_else(|| r.title.clone()),
        title: r.title.clone(),
        level: r.level,
        tags: r.attack_tags().map(str::to_owned).collect(),
        path: path.to_owned(),
        key_fields,
    })
}

impl SigmaDetector {
    pub fn new(rules: Arc<RuleSet>) -> Self {
        let info: Vec<Arc<RuleInfo>> = rules
            .rules()
            .map(|(_, loaded)| {
                let r = &loaded.rule;
                let mut key_fields: Vec<String> = COMMON_FIELDS.iter().map(|s| s.to_string()).collect();
                let own = if r.fields.is_empty() { r.detection_fields.clone() } else { r.fields.clone() };
                for f in own.into_iter().chain(ENTITY_FIELDS.iter().map(|s| s.to_string())) {
                    if !key_fields.contains(&f) {
                        key_fields.push(f);
                    }
                }
                rule_info(Engine::Sigma, r, &loaded.path, key_fields)
            })
            .collect();
        let correlation_info = rules
            .correlations()
            .iter()
            .map(|(loaded, _)| rule_info(Engine::Correlation, &loaded.rule, &loaded.path, Vec::new()))
            .collect();
        let engine = CorrelationEngine::new(rules.correlations());
        let mut standalone = Vec::with_capacity(rules.len());
        let mut correlated_fields = Vec::with_capacity(rules.len());
        for (id, _) in rules.rules() {
            let r = RuleRef::Rule(id);
            standalone.push(engine.standalone(r));
            correlated_fields.push(engine.is_referenced(r).then(|| {
                let mut fields = BTreeSet::new();
                for (_, c) in rules.correlations() {
                    if !c.rules.contains(&r) {
                        continue;
                    }
                    for name in c.group_by.iter().chain(c.value_fields.iter()) {
                        fields.insert(c.field_for(name, r).to_owned());
                    }
                }
                fields.into_iter().collect()
            }));
        }
        let fingerprint = Self::fingerprint_of(&rules);
        let keys = (0..info.len()).map(|_| OnceLock::new()).collect();
        SigmaDetector {
            rules,
            info,
            correlation_info,
            keys,
            standalone,
            correlated_fields,
            min_level: None,
            fingerprint,
        }
    }

    /// The correlation rules as the engine reads them, with the id of every detection rule they
    /// refer to by index: a saved engine state fits exactly the rule sets with the same value.
    fn fingerprint_of(rules: &RuleSet) -> String {
        let mut parts: Vec<String> = Vec::new();
        for (loaded, c) in rules.correlations() {
            parts.push(format!("{:?}|{:?}|{:?}", loaded.rule.id, loaded.rule.title, c));
            for r in &c.rules {
                if let RuleRef::Rule(id) = r
                    && (id.0 as usize) < rules.len()
                {
                    let base = &rules.rule(*id).rule;
                    parts.push(format!("{}={:?}|{:?}|{:?}", id.0, base.id, base.name, base.title));
                }
            }
        }
        stream::fingerprint(&parts.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn new_stream(&self) -> Stream {
        Stream {
            reorder: Reorder::default(),
            engine: CorrelationEngine::new(self.rules.correlations()),
            stats: StreamStats::default(),
            fingerprint: self.fingerprint.clone(),
        }
    }

    /// Feeds a batch to a stream; the one path of both the offline pass and live streams.
    fn run(&self, st: &mut Stream, observations: Vec<Observation>, watermark: Timestamp, out: &mut Vec<Detection>) {
        let released = st.reorder.push(observations, watermark, &mut st.stats);
        let mut hits = Vec::new();
        let mut ids: Vec<RuleId> = Vec::new();
        for o in &released {
            ids.clear();
            ids.extend(o.rules.iter().map(|&i| RuleId(i)));
            st.engine.observe_all(&ids, &o.event, &mut hits);
        }
        match st.reorder.floor {
            // The end of the stream: every window still open is decided.
            Some(floor) if floor == Timestamp::MAX => st.engine.flush(&mut hits),
            Some(floor) => st.engine.advance(floor, &mut hits),
            None => {}
        }
        let before = out.len();
        out.extend(hits.iter().filter_map(|h| self.hit_detection(h)).filter(|d| self.reportable(d.rule.level)));
        st.stats.detections += (out.len() - before) as u64;
    }

    /// Reports only detections of rules at this level or above (all rules still run, so that
    /// correlation rules keep the low-level rules they count).
    pub fn with_min_level(mut self, min: Option<Level>) -> Self {
        self.min_level = min;
        self
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    pub fn info(&self, id: RuleId) -> &Arc<RuleInfo> {
        &self.info[id.0 as usize]
    }

    fn reportable(&self, level: Level) -> bool {
        self.min_level.is_none_or(|m| level >= m)
    }

    fn hit_detection(&self, hit: &CorrelationHit) -> Option<Detection> {
        let rule = self.correlation_info.get(hit.correlation)?.clone();
        let first = hit.evidence.first();
        let mut fields: Vec<(String, String)> = hit.group.clone();
        fields.push(("count".into(), hit.count.to_string()));
        if !hit.values.is_empty() {
            fields.push(("values".into(), hit.values.join(", ")));
        }
        fields.push(("window".into(), format!("{} .. {}", hit.start, hit.end)));
        fields.push((
            "evidence".into(),
            hit.evidence.iter().map(|e| format!("{} {}", e.source.name, e.position)).collect::<Vec<_>>().join("; "),
        ));
        Some(Detection {
            rule,
            timestamp: Some(hit.end),
            host: None,
            source: first.map(|e| Arc::from(e.source.name.as_str())).unwrap_or_else(|| Arc::from("")),
            position: first.map(|e| e.position).unwrap_or(Position::Line(0)),
            fields,
            counted: hit.evidence.iter().map(|e| (e.source.clone(), e.position)).collect(),
        })
    }
}

impl Detector for SigmaDetector {
    fn detect(&self, event: &Event, source: &Arc<str>, out: &mut Findings) {
        let mut ids = Vec::new();
        self.rules.matches(event, &mut ids);
        let mut observed: Vec<u32> = Vec::new();
        let mut wanted: Vec<&str> = Vec::new();
        for id in ids {
            let i = id.0 as usize;
            if let Some(fields) = &self.correlated_fields[i] {
                observed.push(id.0);
                wanted.extend(fields.iter().map(String::as_str));
            }
            if self.standalone[i] && self.reportable(self.info[i].level) {
                let info = &self.info[i];
                let keys = self.keys[i].get_or_init(|| info.key_fields.iter().map(|f| FieldKey::new(f)).collect());
                out.push_with_keys(info.clone(), keys, event, source.clone());
            }
        }
        if !observed.is_empty() {
            // Keep only what correlation reads: the time, where it was, and its group fields.
            let mut slim = Event::new(event.source.clone(), event.position, event.product, event.format);
            slim.timestamp = event.timestamp;
            for name in wanted {
                if slim.get_exact(name).is_none()
                    && let Some(v) = event.get(name)
                    && !matches!(v, Value::Null)
                {
                    slim.set(name, v.clone());
                }
            }
            out.observations.push(Observation { event: slim, rules: observed, detector: 0 });
        }
    }

    fn correlate(&self, observations: Vec<Observation>) -> Vec<Detection> {
        if self.rules.correlations().is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.run(&mut self.new_stream(), observations, Timestamp::MAX, &mut out);
        out
    }

    fn stream_state(&self) -> StreamState {
        StreamState::of(Kind::Sigma(Box::new(self.new_stream())))
    }

    fn stream(
        &self,
        state: &mut StreamState,
        observations: Vec<Observation>,
        watermark: Timestamp,
        out: &mut Vec<Detection>,
    ) {
        match &mut state.kind {
            Kind::Sigma(st) => self.run(st, observations, watermark, out),
            _ => state.count_ignored(observations.len()),
        }
    }

    fn restore_stream_state(&self, saved: SavedState) -> Result<StreamState, StateError> {
        #[derive(Deserialize)]
        struct Saved {
            fingerprint: String,
            #[serde(default)]
            stats: StreamStats,
            buffer: SavedReorder,
            engine: SavedEngine,
        }
        let saved: Saved = stream::parse(saved.expect("sigma")?)?;
        if saved.fingerprint != self.fingerprint {
            return Err(StateError::Mismatch(format!(
                "the correlation rules changed (saved for rule set {}, this one is {})",
                saved.fingerprint, self.fingerprint
            )));
        }
        let mut st = self.new_stream();
        st.engine.restore(saved.engine).map_err(|e| StateError::Mismatch(e.to_string()))?;
        st.reorder = Reorder::restore(saved.buffer)?;
        st.stats = saved.stats;
        Ok(StreamState::of(Kind::Sigma(Box::new(st))))
    }
}
