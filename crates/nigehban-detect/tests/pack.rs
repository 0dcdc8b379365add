//! The built-in pack against its own test cases (`pack/tests/*.yml`): every rule has at least
//! one positive and one negative case, and every case gives the count it expects.
//!
//! A case is log text in one of the readers' formats. For a detection rule, `expect` counts
//! the events the rule matches (base rules of a correlation are not reported on their own);
//! for a correlation or behaviour rule, the detections the whole pack reports for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use nigehban_detect::pack::{self, Behaviour};
use nigehban_detect::{BeaconDetector, Detector, DetectorSet, Findings, FirstSeenDetector, SigmaDetector};
use nigehban_event::read::{Format, read_text};
use nigehban_event::{Event, Item, Source};
use nigehban_sigma::{RuleSet, RuleSetBuilder};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    rule: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    format: String,
    expect: usize,
    input: String,
}

fn rules() -> RuleSet {
    let mut b = RuleSetBuilder::new();
    for p in pack::prepared() {
        b.add_prepared(p);
    }
    b.build()
}

fn events(format: &str, input: &str, file: &str) -> Vec<Event> {
    let format = Format::from_name(format).unwrap_or_else(|| panic!("{file}: unknown format `{format}`"));
    let mut out = Vec::new();
    for item in read_text(format, input.as_bytes(), Source::file(file)) {
        match item {
            Item::Event(e) => out.push(*e),
            Item::Diagnostic(d) => panic!("{file}: the case's input does not parse: {d}"),
        }
    }
    out
}

/// Detections per rule id of the whole pack over `events`, correlation included.
fn detections(rules: Arc<RuleSet>, events: &[Event]) -> BTreeMap<String, usize> {
    let behaviour = Behaviour::builtin().unwrap();
    let mut set = DetectorSet::new();
    set.push(Box::new(SigmaDetector::new(rules)));
    set.push(Box::new(BeaconDetector::new(behaviour.beaconing).unwrap()));
    set.push(Box::new(FirstSeenDetector::new(behaviour.first_seen).unwrap()));
    let mut f = Findings::default();
    let source: Arc<str> = Arc::from("case");
    for e in events {
        set.detect(e, &source, &mut f);
    }
    let mut obs = f.observations;
    obs.sort_by_key(|o| o.event.timestamp);
    let mut found = f.detections;
    found.extend(set.correlate(obs));
    let mut out = BTreeMap::new();
    for d in found {
        *out.entry(d.rule.id.clone()).or_insert(0) += 1;
    }
    out
}

#[test]
fn every_rule_of_the_pack_passes_its_cases() {
    let rules = Arc::new(rules());
    // Sigma rules are named in cases by `name`; behaviour rules by id.
    let mut by_name: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for (_, r) in rules.rules() {
        let name = r.rule.name.clone().unwrap_or_default();
        by_name.insert(name, (r.rule.id.clone().unwrap_or_default(), false));
    }
    for (r, _) in rules.correlations() {
        by_name.insert(r.rule.name.clone().unwrap_or_default(), (r.rule.id.clone().unwrap_or_default(), true));
    }
    let behaviour = Behaviour::builtin().unwrap();
    by_name.insert(behaviour.beaconing.id.clone(), (behaviour.beaconing.id.clone(), true));
    for r in &behaviour.first_seen {
        by_name.insert(r.id.clone(), (r.id.clone(), true));
    }

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/pack/tests");
    let mut covered: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths.iter().filter(|p| p.extension().is_some_and(|e| e == "yml")) {
        let text = std::fs::read_to_string(path).unwrap();
        let files: Vec<CaseFile> = serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        for file in files {
            let Some((id, stateful)) = by_name.get(&file.rule).cloned() else {
                failures.push(format!("{}: no rule named `{}` in the pack", path.display(), file.rule));
                continue;
            };
            for case in &file.cases {
                let where_ = format!("{} / {} / {}", path.display(), file.rule, case.name);
                let evs = events(&case.format, &case.input, &where_);
                let got = if stateful {
                    detections(rules.clone(), &evs).get(&id).copied().unwrap_or(0)
                } else {
                    let mut n = 0;
                    for e in &evs {
                        let mut ids = Vec::new();
                        rules.matches(e, &mut ids);
                        n += ids.iter().filter(|i| rules.rule(**i).rule.id.as_deref() == Some(id.as_str())).count();
                    }
                    n
                };
                if got != case.expect {
                    failures.push(format!("{where_}: expected {}, got {got}", case.expect));
                }
                let c = covered.entry(file.rule.clone()).or_default();
                if case.expect > 0 {
                    c.0 += 1;
                } else {
                    c.1 += 1;
                }
            }
        }
    }
    for name in by_name.keys() {
        match covered.get(name) {
            Some((p, n)) if *p > 0 && *n > 0 => {}
            Some((p, n)) => failures.push(format!("`{name}`: {p} positive and {n} negative cases")),
            None => failures.push(format!("`{name}`: no test cases")),
        }
    }
    assert!(failures.is_empty(), "{} problem(s):\n{}", failures.len(), failures.join("\n"));
}
