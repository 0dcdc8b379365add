use std::sync::Arc;

use nigehban_event::Event;
use nigehban_sigma::{RuleId, RuleSet};

use crate::{Detection, Detector, Engine, RuleInfo};

/// Sigma rules as a [`Detector`].
pub struct SigmaDetector {
    rules: Arc<RuleSet>,
    info: Vec<Arc<RuleInfo>>,
}

/// Fields every Windows detection shows, before the rule's own.
const COMMON_FIELDS: &[&str] = &["EventID", "Channel"];

impl SigmaDetector {
    pub fn new(rules: Arc<RuleSet>) -> Self {
        let info = rules
            .rules()
            .map(|(_, loaded)| {
                let r = &loaded.rule;
                let mut key_fields: Vec<String> = COMMON_FIELDS.iter().map(|s| s.to_string()).collect();
                let own = if r.fields.is_empty() { detection_fields(&r.detection) } else { r.fields.clone() };
                for f in own {
                    if !key_fields.contains(&f) {
                        key_fields.push(f);
                    }
                }
                Arc::new(RuleInfo {
                    engine: Engine::Sigma,
                    id: r.id.clone().unwrap_or_else(|| r.title.clone()),
                    title: r.title.clone(),
                    level: r.level,
                    tags: r.attack_tags().map(str::to_owned).collect(),
                    path: loaded.path.to_string(),
                    key_fields,
                })
            })
            .collect();
        SigmaDetector { rules, info }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    pub fn info(&self, id: RuleId) -> &Arc<RuleInfo> {
        &self.info[id.0 as usize]
    }
}

/// The field names a detection tests, in order of appearance, without modifiers.
fn detection_fields(detection: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let add_map = |m: &serde_json::Map<String, serde_json::Value>, out: &mut Vec<String>| {
        for key in m.keys() {
            let field = key.split('|').next().unwrap_or("").trim();
            if !field.is_empty() && !out.iter().any(|f| f == field) {
                out.push(field.to_owned());
            }
        }
    };
    if let serde_json::Value::Object(searches) = detection {
        for (name, body) in searches {
            if name == "condition" {
                continue;
            }
            match body {
                serde_json::Value::Object(m) => add_map(m, &mut out),
                serde_json::Value::Array(items) => {
                    for i in items {
                        if let serde_json::Value::Object(m) = i {
                            add_map(m, &mut out);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

impl Detector for SigmaDetector {
    fn detect(&self, event: &Event, source: &Arc<str>, out: &mut Vec<Detection>) {
        let mut ids = Vec::new();
        self.rules.matches(event, &mut ids);
        for id in ids {
            out.push(Detection::new(self.info[id.0 as usize].clone(), event, source.clone()));
        }
    }
}
