//! Many rules, compiled once, indexed so that an event meets only the rules of its log source.
//!
//! Index: Windows events by (channel, event id), then by channel; other events by product.
//! A rule written for `process_creation` sits under (Sysmon, 1) and (Security, 4688), so a
//! Sysmon network event (id 3) never meets it. Per-event cost thus grows with the number of
//! rules for that event's source, not with the whole rule set.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
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
    /// Whether the variant has conditions beyond the channel and event id that the index
    /// already guarantees.
    check_conditions: bool,
    detection: CompiledDetection,
}

#[derive(Default)]
struct ChannelIndex {
    by_event_id: HashMap<i64, Vec<u32>>,
    any_event_id: Vec<u32>,
}

/// One rule file parsed and compiled, ready to be added to a [`RuleSetBuilder`]. Preparing
/// is the costly part of loading (YAML, regular expressions); callers may prepare files on
/// several threads with [`prepare`] and add them in a fixed order.
pub struct Prepared {
    path: Arc<str>,
    items: Vec<PreparedItem>,
}

enum PreparedItem {
    Rule { rule: Rule, variants: Vec<(Variant, CompiledDetection)>, unmapped: Option<String> },
    Correlation(Rule),
    Failed(RuleFailure),
}

/// Parses and compiles the rules of one YAML file (see [`Prepared`]).
pub fn prepare(path: &str, text: &str) -> Prepared {
    let path: Arc<str> = path.into();
    let items = parse_rules(text)
        .into_iter()
        .map(|parsed| match parsed {
            Ok(rule) => prepare_rule(&path, rule),
            Err(error) => PreparedItem::Failed(RuleFailure { path: path.clone(), title: None, id: None, error }),
        })
        .collect();
    Prepared { path, items }
}

fn prepare_rule(path: &Arc<str>, rule: Rule) -> PreparedItem {
    if rule.correlation.is_some() {
        return PreparedItem::Correlation(rule);
    }
    let resolved = LogSourceTable::builtin().resolve(&rule.logsource);
    let mut variants = Vec::with_capacity(resolved.variants.len());
    for variant in resolved.variants {
        match CompiledDetection::compile(&rule.detection, &|f| variant.map_field(f)) {
            Ok(detection) => variants.push((variant, detection)),
            Err(error) => {
                return PreparedItem::Failed(RuleFailure {
                    path: path.clone(),
                    title: Some(rule.title.clone()),
                    id: rule.id.clone(),
                    error,
                });
            }
        }
    }
    PreparedItem::Rule { rule, variants, unmapped: resolved.unmapped }
}

/// Rules being gathered; [`RuleSetBuilder::build`] indexes them.
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
        self.add_prepared(prepare(path, text));
    }

    /// Adds one file's rules, prepared by [`prepare`].
    pub fn add_prepared(&mut self, prepared: Prepared) {
        self.report.files += 1;
        let path = prepared.path;
        for item in prepared.items {
            match item {
                PreparedItem::Rule { rule, variants, unmapped } => {
                    let id = RuleId(self.rules.len() as u32);
                    for (variant, detection) in variants {
                        let check_conditions = !variant.index_guarantees_conditions();
                        self.variants.push(CompiledVariant { rule: id, variant, check_conditions, detection });
                    }
                    if let Some(what) = unmapped {
                        self.report.warnings.push((
                            path.clone(),
                            format!(
                                "log source {what} is not in the log source table: evaluated against every event of its product"
                            ),
                        ));
                    }
                    self.rules.push(LoadedRule { rule, path: path.clone() });
                    self.report.loaded += 1;
                }
                PreparedItem::Correlation(rule) => self.correlations.push((path.clone(), rule)),
                PreparedItem::Failed(failure) => self.report.failed.push(failure),
            }
        }
    }

    /// Adds one parsed rule.
    pub fn add_rule(&mut self, path: Arc<str>, rule: Rule) {
        let item = prepare_rule(&path, rule);
        self.report.files = self.report.files.saturating_sub(1);
        self.add_prepared(Prepared { path, items: vec![item] });
    }

    pub fn build(mut self) -> RuleSet {
        // Correlation rules refer to other rules (and to each other) by id or name.
        let (correlations, failures) =
            crate::correlation::resolve_all(std::mem::take(&mut self.correlations), &self.rules);
        self.report.correlations += correlations.len();
        self.report.failed.extend(failures);

        let mut by_channel: HashMap<String, ChannelIndex> = HashMap::new();
        let mut by_product: HashMap<Product, Vec<u32>> = HashMap::new();
        let mut any_product: Vec<u32> = Vec::new();
        // Literals by where they must be found: in one named field, or (keywords) anywhere.
        let mut needles: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        let mut needle_ids: HashMap<(String, bool), u32> = HashMap::new();
        let mut needle_variants: [Vec<Vec<u32>>; 2] = [Vec::new(), Vec::new()];
        let mut scanned_fields: HashSet<Box<str>> = HashSet::new();
        let mut filtered = vec![false; self.variants.len()];
        for (i, cv) in self.variants.iter().enumerate() {
            let i = i as u32;
            if let Some(set) = cv.detection.needles() {
                filtered[i as usize] = true;
                for n in set {
                    let anywhere = n.field.is_none();
                    if let Some(f) = n.field {
                        scanned_fields.insert(f);
                    }
                    let k = usize::from(anywhere);
                    let id = *needle_ids.entry((n.text.clone(), anywhere)).or_insert_with(|| {
                        needles[k].push(n.text);
                        needle_variants[k].push(Vec::new());
                        (needles[k].len() - 1) as u32
                    });
                    let list = &mut needle_variants[k][id as usize];
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
            let products = LogSourceTable::builtin().resolve(&self.rules[cv.rule.0 as usize].rule.logsource).products;
            match cv.variant.channels() {
                Some(channels) => {
                    // Event ids from the log source, else those the detection requires.
                    let ids = cv.variant.event_ids().or_else(|| cv.detection.required_ints("EventID"));
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
        let build = |patterns: &[String]| {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
                .build(patterns)
                .ok()
        };
        let [field_needles, anywhere_needles] = needles;
        let [field_variants, anywhere_variants] = needle_variants;
        let prefilter = match (build(&field_needles), build(&anywhere_needles)) {
            (Some(in_fields), Some(anywhere)) => {
                Some(Prefilter { in_fields, anywhere, field_variants, anywhere_variants, scanned_fields, filtered })
            }
            _ => None,
        };
        RuleSet {
            rules: self.rules,
            variants: self.variants,
            by_channel,
            by_product,
            any_product,
            correlations,
            prefilter,
            report: self.report,
        }
    }
}

/// The shared literal prefilter: automata over the literals that rules need (see
/// [`CompiledDetection::needles`]), run once over an event's text values; a rule with
/// literals is tested only if one of them was found. Literals bound to a field are looked for
/// only in the fields some rule reads; keyword literals in every field.
struct Prefilter {
    in_fields: AhoCorasick,
    anywhere: AhoCorasick,
    /// For each literal, the variants that need it (any one of their literals suffices).
    field_variants: Vec<Vec<u32>>,
    anywhere_variants: Vec<Vec<u32>>,
    /// Folded names of the fields that field-bound literals come from.
    scanned_fields: HashSet<Box<str>>,
    /// Variants that have literals (the others are always tested).
    filtered: Vec<bool>,
}

impl Prefilter {
    /// Marks in `possible` every variant one of whose literals occurs in the event.
    fn scan(&self, event: &Event, possible: &mut Vec<u64>) {
        possible.clear();
        possible.resize(self.filtered.len().div_ceil(64), 0);
        let scan_anywhere = self.anywhere.patterns_len() > 0;
        let mut folded = String::new();
        for f in event.fields() {
            folded.clear();
            folded.extend(f.name.chars().map(|c| c.to_ascii_lowercase()));
            let in_fields = self.scanned_fields.contains(folded.as_str());
            if !in_fields && !scan_anywhere {
                continue;
            }
            f.value.for_each_scalar(&mut |v| {
                if let Value::Str(t) = v {
                    let text = t.lower();
                    if in_fields {
                        mark(&self.in_fields, &self.field_variants, text, possible);
                    }
                    if scan_anywhere {
                        mark(&self.anywhere, &self.anywhere_variants, text, possible);
                    }
                }
                false
            });
        }
    }
}

fn mark(automaton: &AhoCorasick, variants: &[Vec<u32>], text: &str, possible: &mut [u64]) {
    for m in automaton.find_overlapping_iter(text) {
        for &v in &variants[m.pattern().as_usize()] {
            possible[v as usize / 64] |= 1 << (v % 64);
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
    prefilter: Option<Prefilter>,
    report: LoadReport,
}

thread_local! {
    static POSSIBLE: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
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

    /// The candidate lists for an event: by channel and event id, by channel, by product, and
    /// the rules that apply to every product.
    fn candidates<'a>(&'a self, event: &Event, lists: &mut [&'a [u32]; 4]) {
        if event.product == Product::Windows
            && let Some(channel) = event.get("Channel").and_then(Value::as_lower_text)
            && let Some(index) = self.by_channel.get(&*channel)
        {
            let id = event.get("EventID").and_then(|v| match v {
                Value::Int(i) => Some(*i),
                other => other.as_text().and_then(|t| t.trim().parse().ok()),
            });
            if let Some(list) = id.and_then(|id| index.by_event_id.get(&id)) {
                lists[0] = list;
            }
            lists[1] = &index.any_event_id;
        }
        if let Some(list) = self.by_product.get(&event.product) {
            lists[2] = list;
        }
        lists[3] = &self.any_product;
    }

    /// Appends to `out` the rules that match `event` (each at most once).
    pub fn matches(&self, event: &Event, out: &mut Vec<RuleId>) {
        let mut lists: [&[u32]; 4] = [&[], &[], &[], &[]];
        self.candidates(event, &mut lists);
        if lists.iter().all(|l| l.is_empty()) {
            return;
        }
        POSSIBLE.with(|cell| {
            let mut guard = cell.try_borrow_mut();
            let mut local = Vec::new();
            let possible: &mut Vec<u64> = match guard.as_deref_mut() {
                Ok(p) => p,
                Err(_) => &mut local,
            };
            if let Some(pf) = &self.prefilter {
                pf.scan(event, possible);
            }
            let start = out.len();
            for list in lists {
                for &i in list {
                    if let Some(pf) = &self.prefilter
                        && pf.filtered[i as usize]
                        && possible[i as usize / 64] & (1 << (i % 64)) == 0
                    {
                        continue;
                    }
                    let cv = &self.variants[i as usize];
                    if (!cv.check_conditions || cv.variant.accepts(event))
                        && cv.detection.matches(event)
                        && !out[start..].contains(&cv.rule)
                    {
                        out.push(cv.rule);
                    }
                }
            }
        });
    }

    /// Matches without the prefilter: every candidate rule is evaluated. Used to check that the
    /// prefilter never changes a result.
    pub fn matches_unfiltered(&self, event: &Event, out: &mut Vec<RuleId>) {
        let mut lists: [&[u32]; 4] = [&[], &[], &[], &[]];
        self.candidates(event, &mut lists);
        let start = out.len();
        for list in lists {
            for &i in list {
                let cv = &self.variants[i as usize];
                if (!cv.check_conditions || cv.variant.accepts(event))
                    && cv.detection.matches(event)
                    && !out[start..].contains(&cv.rule)
                {
                    out.push(cv.rule);
                }
            }
        }
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
        rs.matches(
            &windows_event("Microsoft-Windows-Sysmon/Operational", 1, &[("Image", "C:\\W\\whoami.exe")]),
            &mut out,
        );
        assert_eq!(out, vec![RuleId(0)]);
        out.clear();
        rs.matches(&windows_event("Security", 4688, &[("NewProcessName", "C:\\W\\whoami.exe")]), &mut out);
        assert_eq!(out, vec![RuleId(0)]);
        out.clear();
        rs.matches(
            &windows_event("Microsoft-Windows-Sysmon/Operational", 3, &[("Image", "C:\\W\\whoami.exe")]),
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn failures_are_reported_with_path() {
        let mut b = RuleSetBuilder::new();
        b.add_yaml(
            "bad.yml",
            "title: x\nlogsource: {product: windows}\ndetection:\n  sel: {A|nope: 1}\n  condition: sel\n",
        );
        b.add_yaml("worse.yml", ": : :\n");
        let rs = b.build();
        assert_eq!(rs.report().loaded, 0);
        assert_eq!(rs.report().failed.len(), 2);
        assert_eq!(&*rs.report().failed[0].path, "bad.yml");
        assert!(rs.report().failed[0].error.to_string().contains("nope"));
    }
}
