//! Many rules, compiled once, indexed so that an event meets only the rules of its log source.
//!
//! Index: Windows events by (channel, event id), then by channel; other events by product.
//! A rule written for `process_creation` sits under (Sysmon, 1) and (Security, 4688), so a
//! Sysmon network event (id 3) never meets it. Per-event cost thus grows with the number of
//! rules for that event's source, not with the whole rule set.

use std::collections::HashMap;
use std::sync::Arc;

use nigehban_event::{Event, Product, Value};

use crate::Error;
use crate::compile::CompiledDetection;
use crate::correlation::CorrelationRule;
use crate::logsource::{LogSourceTable, Variant};
use crate::rule::{Rule, parse_rules};

/// Index of a rule in its [`RuleSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u32);

/// A rule as loaded: its metadata and where it came from.
#[derive(Debug)]
pub struct LoadedRule {
    pub rule: Rule,
    /// The file it was read from, as the caller named it.
    pub path: Arc<str>,
}

/// One rule that could not be used, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleFailure {
    pub path: Arc<str>,
    pub title: Option<String>,
    pub id: Option<String>,
    pub error: Error,
}

/// What happened when rules were loaded: nothing is dropped without a line here.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub files: usize,
    pub loaded: usize,
    pub correlations: usize,
    pub failed: Vec<RuleFailure>,
    /// Rules that load but with a caveat (e.g. a log source not in the table).
    pub warnings: Vec<(Arc<str>, String)>,
}

struct CompiledVariant {
    rule: RuleId,
    variant: Variant,
    detection: CompiledDetection,
}

#[derive(Default)]
struct ChannelIndex {
    by_event_id: HashMap<i64, Vec<u32>>,
    any_event_id: Vec<u32>,
}

/// Rules being gathered; [`RuleSetBuilder::build`] compiles and indexes them.
#[derive(Default)]
pub struct RuleSetBuilder {
    rules: Vec<LoadedRule>,
    variants: Vec<CompiledVariant>,
    correlations: Vec<(Arc<str>, Rule)>,
    report: LoadReport,
}

impl RuleSetBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the rules of one YAML file. Errors go to the load report.
    pub fn add_yaml(&mut self, path: &str, text: &str) {
        self.report.files += 1;
        let path: Arc<str> = path.into();
        for parsed in parse_rules(text) {
            match parsed {
                Ok(rule) => self.add_rule(path.clone(), rule),
                Err(error) => self.report.failed.push(RuleFailure { path: path.clone(), title: None, id: None, error }),
            }
        }
    }

    /// Adds the rules of one YAML file whose level is at least `min`; returns how many were
    /// left out for being below it. Correlation rules are always kept.
    pub fn add_yaml_min_level(&mut self, path: &str, text: &str, min: crate::Level) -> usize {
        self.report.files += 1;
        let path: Arc<str> = path.into();
        let mut below = 0;
        for parsed in parse_rules(text) {
            match parsed {
                Ok(rule) if rule.level < min && rule.correlation.is_none() => below += 1,
                Ok(rule) => self.add_rule(path.clone(), rule),
                Err(error) => self.report.failed.push(RuleFailure { path: path.clone(), title: None, id: None, error }),
            }
        }
        below
    }

    /// Adds one parsed rule.
    pub fn add_rule(&mut self, path: Arc<str>, rule: Rule) {
        if rule.correlation.is_some() {
            self.correlations.push((path, rule));
            return;
        }
        let resolved = LogSourceTable::builtin().resolve(&rule.logsource);
        let id = RuleId(self.rules.len() as u32);
        let mut compiled = Vec::with_capacity(resolved.variants.len());
        for variant in resolved.variants {
            match CompiledDetection::compile(&rule.detection, &|f| variant.map_field(f)) {
                Ok(detection) => compiled.push(CompiledVariant { rule: id, variant, detection }),
                Err(error) => {
                    self.report.failed.push(RuleFailure {
                        path,
                        title: Some(rule.title.clone()),
                        id: rule.id.clone(),
                        error,
                    });
                    return;
                }
            }
        }
        if let Some(what) = resolved.unmapped {
            self.report.warnings.push((
                path.clone(),
                format!("log source {what} is not in the log source table: evaluated against every event of its product"),
            ));
        }
        self.variants.extend(compiled);
        self.rules.push(LoadedRule { rule, path });
        self.report.loaded += 1;
    }

    pub fn build(mut self) -> RuleSet {
        // Correlation rules refer to other rules by id or name; resolve them now.
        let mut correlations = Vec::new();
        for (path, rule) in std::mem::take(&mut self.correlations) {
            match CorrelationRule::from_rule(&rule, &self.rules) {
                Ok(c) => {
                    correlations.push((LoadedRule { rule, path }, c));
                    self.report.correlations += 1;
                }
                Err(error) => self.report.failed.push(RuleFailure {
                    path,
                    title: Some(rule.title.clone()),
                    id: rule.id.clone(),
                    error,
                }),
            }
        }
        let mut by_channel: HashMap<String, ChannelIndex> = HashMap::new();
        let mut by_product: HashMap<Product, Vec<u32>> = HashMap::new();
        let mut any_product: Vec<u32> = Vec::new();
        for (i, cv) in self.variants.iter().enumerate() {
            let i = i as u32;
            let products = LogSourceTable::builtin().resolve(&self.rules[cv.rule.0 as usize].rule.logsource).products;
            match cv.variant.channels() {
                Some(channels) => {
                    let ids = cv.variant.event_ids();
                    for ch in channels {
                        let entry = by_channel.entry(ch.clone()).or_default();
                        match &ids {
                            Some(ids) => {
                                for id in ids {
                                    entry.by_event_id.entry(*id).or_default().push(i);
                                }
                            }
                            None => entry.any_event_id.push(i),
                        }
                    }
                }
                None => match products {
                    Some(ps) => {
                        for p in ps {
                            by_product.entry(p).or_default().push(i);
                        }
                    }
                    None => any_product.push(i),
                },
            }
        }
        RuleSet {
            rules: self.rules,
            variants: self.variants,
            by_channel,
            by_product,
            any_product,
            correlations,
            report: self.report,
        }
    }
}

/// Compiled, indexed rules.
pub struct RuleSet {
    rules: Vec<LoadedRule>,
    variants: Vec<CompiledVariant>,
    by_channel: HashMap<String, ChannelIndex>,
    by_product: HashMap<Product, Vec<u32>>,
    any_product: Vec<u32>,
    correlations: Vec<(LoadedRule, CorrelationRule)>,
    report: LoadReport,
}

impl RuleSet {
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rule(&self, id: RuleId) -> &LoadedRule {
        &self.rules[id.0 as usize]
    }

    pub fn rules(&self) -> impl Iterator<Item = (RuleId, &LoadedRule)> {
        self.rules.iter().enumerate().map(|(i, r)| (RuleId(i as u32), r))
    }

    pub fn correlations(&self) -> &[(LoadedRule, CorrelationRule)] {
        &self.correlations
    }

    /// Appends to `out` the rules that match `event` (each at most once).
    pub fn matches(&self, event: &Event, out: &mut Vec<RuleId>) {
        let start = out.len();
        let mut test = |list: &[u32]| {
            for &i in list {
                let cv = &self.variants[i as usize];
                if cv.variant.accepts(event) && cv.detection.matches(event) && !out[start..].contains(&cv.rule) {
                    out.push(cv.rule);
                }
            }
        };
        if event.product == Product::Windows
            && let Some(channel) = event.get("Channel").and_then(Value::as_lower_text)
            && let Some(index) = self.by_channel.get(&*channel)
        {
            let id = event.get("EventID").and_then(|v| match v {
                Value::Int(i) => Some(*i),
                other => other.as_text().and_then(|t| t.trim().parse().ok()),
            });
            if let Some(list) = id.and_then(|id| index.by_event_id.get(&id)) {
                test(list);
            }
            test(&index.any_event_id);
        }
        if let Some(list) = self.by_product.get(&event.product) {
            test(list);
        }
        test(&self.any_product);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nigehban_event::{Position, Source};

    fn windows_event(channel: &str, id: i64, fields: &[(&str, &str)]) -> Event {
        let mut e = Event::new(Source::file("t"), Position::Line(1), Product::Windows, "test");
        e.set("Channel", Value::str(channel));
        e.set("EventID", Value::Int(id));
        for (k, v) in fields {
            e.set(*k, Value::str(*v));
        }
        e
    }

    const RULE: &str = "title: Whoami\nid: r1\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n  sel:\n    Image|endswith: '\\whoami.exe'\n  condition: sel\n";

    #[test]
    fn process_creation_applies_to_sysmon_1_and_security_4688() {
        let mut b = RuleSetBuilder::new();
        b.add_yaml("r.yml", RULE);
        let rs = b.build();
        assert_eq!(rs.report().loaded, 1);
        let mut out = Vec::new();
        rs.matches(&windows_event("Microsoft-Windows-Sysmon/Operational", 1, &[("Image", "C:\\W\\whoami.exe")]), &mut out);
        assert_eq!(out, vec![RuleId(0)]);
        out.clear();
        rs.matches(&windows_event("Security", 4688, &[("NewProcessName", "C:\\W\\whoami.exe")]), &mut out);
        assert_eq!(out, vec![RuleId(0)]);
        out.clear();
        rs.matches(&windows_event("Microsoft-Windows-Sysmon/Operational", 3, &[("Image", "C:\\W\\whoami.exe")]), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn failures_are_reported_with_path() {
        let mut b = RuleSetBuilder::new();
        b.add_yaml("bad.yml", "title: x\nlogsource: {product: windows}\ndetection:\n  sel: {A|nope: 1}\n  condition: sel\n");
        b.add_yaml("worse.yml", ": : :\n");
        let rs = b.build();
        assert_eq!(rs.report().loaded, 0);
        assert_eq!(rs.report().failed.len(), 2);
        assert_eq!(&*rs.report().failed[0].path, "bad.yml");
        assert!(rs.report().failed[0].error.to_string().contains("nope"));
    }
}
