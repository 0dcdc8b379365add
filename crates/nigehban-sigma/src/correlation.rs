//! Sigma correlation rules (specification v2, "Sigma Correlation Rules"): parsing, validation,
//! reference resolution, and a streaming evaluation engine.
//!
//! A correlation rule refers to other rules (detection rules, or other correlation rules) by
//! `id` or `name` and says how their matches relate:
//!
//! - `event_count`: at least / at most N matching events per group within `timespan`;
//! - `value_count`: N distinct values of `condition.field` per group within `timespan`;
//! - `temporal`: all referenced rules (or as many as the condition says) match for one group
//!   within `timespan`, in any order;
//! - `temporal_ordered`: the same, in the order the rules are listed.
//!
//! [`CorrelationRule::from_rule`] / [`resolve_all`] read and check the `correlation:` section;
//! [`CorrelationEngine`] consumes base-rule matches in timestamp order and reports
//! [`CorrelationHit`]s.
//!
//! # Evaluation semantics
//!
//! * Only events with a timestamp take part; the others are counted
//!   ([`CorrelationStats::no_timestamp`]). Events are grouped by the text of their `group-by`
//!   fields (aliases applied per referenced rule); an event lacking one of these fields does not
//!   take part in that correlation (counted in [`CorrelationStats::missing_group_field`]), as
//!   a `group by` in a query language would drop it.
//! * "Within `timespan`" is inclusive: events at `t` and `t + timespan` are within it.
//! * Conditions without an upper bound (`gt`, `gte`; temporal types without a condition) are
//!   decided as soon as they hold, over a **sliding** window ending at the newest event. After a
//!   hit the group starts afresh, and events of that group up to `hit.start + timespan` (the
//!   window that fired) are absorbed ([`CorrelationStats::absorbed`]): one burst gives one hit,
//!   a later burst another.
//! * Conditions with an upper bound (`lt`, `lte`, `eq`, ranges; a temporal expression with
//!   `not`) can only be decided once the window is complete. Such a window is **anchored** at
//!   the first event of its group, covers `[start, start + timespan]`, and is decided when time
//!   moves past its end (a later event, [`CorrelationEngine::advance`]) or at
//!   [`CorrelationEngine::flush`]. Note that a group with no event at all is never seen, so
//!   "fewer than N" means "between 1 and N-1".
//! * `temporal_ordered` needs distinct events in non-decreasing timestamp order (ties in
//!   arrival order); the engine keeps, for each prefix of the rule list, the chain with the
//!   latest start, which is the one most likely to complete within the timespan.
//! * Chained correlations: a hit of correlation A is an input to every correlation B that
//!   refers to A, at the hit's `end` time, with A's group-by values as its fields.
//! * State is bounded: at most [`Limits::max_groups`] groups per correlation rule (the least
//!   recently active eighth is evicted when full, counted in
//!   [`CorrelationStats::evicted_groups`]), at most [`Limits::max_window_entries`] timestamps
//!   or distinct values per group (beyond it the oldest entries are merged or dropped, which
//!   can only under-count), at most [`Limits::max_evidence`] evidence references per hit.
//!   Windows older than the timespan are dropped as time advances. Events themselves are never
//!   kept: only timestamps, group values and evidence references.
//! * Deferred windows are decided in the order of their end over all rules, so that advancing
//!   time in steps ([`CorrelationEngine::advance`], a live stream's watermark) gives the same
//!   hits as advancing it at once.
//! * The state can be saved and restored ([`CorrelationEngine::saved`],
//!   [`CorrelationEngine::restore`], serde) for an engine built from the same rules; event
//!   identities (which tell one event matched through two rules from two events) are not
//!   saved, so they do not span a restore.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use nigehban_event::{Event, Position, Source, Value};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::Error;
use crate::condition::{self, Expr};
use crate::rule::{Rule, scalar_text};
use crate::ruleset::{LoadedRule, RuleFailure, RuleId};

// ---------------------------------------------------------------------------------------------
// The rule
// ---------------------------------------------------------------------------------------------

/// The kind of relationship a correlation rule looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CorrelationType {
    EventCount,
    ValueCount,
    Temporal,
    TemporalOrdered,
}

impl CorrelationType {
    pub fn as_str(self) -> &'static str {
        match self {
            CorrelationType::EventCount => "event_count",
            CorrelationType::ValueCount => "value_count",
            CorrelationType::Temporal => "temporal",
            CorrelationType::TemporalOrdered => "temporal_ordered",
        }
    }

    fn parse(s: &str) -> Option<CorrelationType> {
        Some(match s {
            "event_count" => CorrelationType::EventCount,
            "value_count" => CorrelationType::ValueCount,
            "temporal" => CorrelationType::Temporal,
            "temporal_ordered" => CorrelationType::TemporalOrdered,
            _ => return None,
        })
    }
}

impl fmt::Display for CorrelationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule a correlation refers to: a detection rule of the rule set, or another correlation
/// rule by its index in the list of correlation rules (`RuleSet::correlations()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleRef {
    Rule(RuleId),
    Correlation(usize),
}

/// An inclusive range of counts, from the condition's `gt` / `gte` / `lt` / `lte` / `eq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountRange {
    pub min: u64,
    /// `None`: no upper bound, so the condition can be decided as soon as it holds.
    pub max: Option<u64>,
}

impl CountRange {
    pub fn contains(&self, n: u64) -> bool {
        n >= self.min && self.max.is_none_or(|max| n <= max)
    }
}

impl fmt::Display for CountRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max {
            None => write!(f, ">= {}", self.min),
            Some(max) if max == self.min => write!(f, "= {max}"),
            Some(max) if self.min == 0 => write!(f, "<= {max}"),
            Some(max) => write!(f, ">= {} and <= {max}", self.min),
        }
    }
}

/// When a correlation matches.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// The number of events (`event_count`), distinct values (`value_count`) or distinct
    /// referenced rules seen (`temporal`, `temporal_ordered`) in the window.
    Count(CountRange),
    /// An expression over the referenced rules' names (`temporal` only, an extension that
    /// pySigma also reads): `failed_logon and successful_logon and not logoff`. `Expr::Search(i)`
    /// stands for the `i`-th entry of `rules`.
    Rules { text: String, expr: Expr },
}

/// A field name alias: `alias` is the name used in `group-by` (or `condition.field`), and
/// `fields` says which event field it stands for in the matches of each referenced rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Alias {
    pub name: String,
    pub fields: Vec<(RuleRef, String)>,
}

/// A parsed, checked correlation rule with its references resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct CorrelationRule {
    pub kind: CorrelationType,
    /// The referenced rules, in the order of `rules` (the order matters for `temporal_ordered`).
    pub rules: Vec<RuleRef>,
    /// The entries of `rules` as written.
    pub rule_names: Vec<String>,
    /// `group-by` field names as written (possibly alias names).
    pub group_by: Vec<String>,
    pub timespan: SignedDuration,
    /// `timespan` as written (`5m`).
    pub timespan_text: String,
    pub condition: Condition,
    /// `value_count`: the field(s) whose distinct values are counted (several fields count
    /// distinct combinations). Empty for the other types.
    pub value_fields: Vec<String>,
    pub aliases: Vec<Alias>,
    /// `generate`: whether the referenced rules' own matches are also to be reported (default
    /// false). Read from the `correlation` section, where pySigma reads it.
    pub generate: bool,
}

impl CorrelationRule {
    /// Reads and checks a correlation rule whose references are all detection rules in `rules`
    /// (index = `RuleId.0`). A reference to another correlation rule is reported as unknown
    /// here; use [`resolve_all`] to load chains of correlation rules.
    pub fn from_rule(rule: &Rule, rules: &[LoadedRule]) -> Result<CorrelationRule, Error> {
        CorrelationRule::resolve(rule, rules, &[])
    }

    /// Like [`CorrelationRule::from_rule`], and references may also name the correlation rules
    /// in `correlations` (the list the engine is built from; a reference becomes
    /// `RuleRef::Correlation(index)`).
    pub fn resolve(
        rule: &Rule,
        rules: &[LoadedRule],
        correlations: &[(LoadedRule, CorrelationRule)],
    ) -> Result<CorrelationRule, Error> {
        let parsed = parse_section(rule)?;
        resolve_parsed(&parsed, rules, correlations).map_err(|e| match e {
            Unresolved::Invalid(e) => e,
            Unresolved::Unknown(name) => unknown_reference(&name),
        })
    }

    /// The event field that a `group-by` / `condition.field` name stands for in the matches of
    /// `rule`: the alias's field for that rule, or the name itself.
    pub fn field_for<'a>(&'a self, name: &'a str, rule: RuleRef) -> &'a str {
        self.aliases
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.fields.iter().find(|(r, _)| *r == rule))
            .map_or(name, |(_, f)| f.as_str())
    }
}

/// Resolves correlation rules that may refer to each other (chains, in any order in the
/// files), against the detection rules `rules` (index = `RuleId.0`). Returns the correlation
/// rules that loaded, ordered so that a rule comes after every correlation rule it refers to
/// (so `RuleRef::Correlation(i)` indexes this list), and one failure for each that did not.
pub fn resolve_all(
    pending: Vec<(Arc<str>, Rule)>,
    rules: &[LoadedRule],
) -> (Vec<(LoadedRule, CorrelationRule)>, Vec<RuleFailure>) {
    let failure = |path: Arc<str>, rule: &Rule, error: Error| RuleFailure {
        path,
        title: Some(rule.title.clone()),
        id: rule.id.clone(),
        error,
    };
    let mut done: Vec<(LoadedRule, CorrelationRule)> = Vec::new();
    let mut failed = Vec::new();
    // Names (ids and names) of correlation rules that failed, to explain references to them.
    let mut failed_names: Vec<String> = Vec::new();
    // Structural errors first: they do not depend on the order of resolution.
    let mut waiting: Vec<(Arc<str>, Rule, Parsed, String)> = Vec::new();
    for (path, rule) in pending {
        match parse_section(&rule) {
            Ok(parsed) => waiting.push((path, rule, parsed, String::new())),
            Err(error) => {
                failed_names.extend(rule.id.iter().chain(rule.name.iter()).cloned());
                failed.push(failure(path, &rule, error));
            }
        }
    }
    // Resolve in rounds: a rule whose references are not all known yet waits for the next
    // round, in case it refers to a correlation rule resolved in this one.
    loop {
        let before = waiting.len();
        let mut still = Vec::new();
        for (path, rule, parsed, _) in waiting {
            match resolve_parsed(&parsed, rules, &done) {
                Ok(c) => done.push((LoadedRule { rule, path }, c)),
                Err(Unresolved::Unknown(name)) => still.push((path, rule, parsed, name)),
                Err(Unresolved::Invalid(error)) => {
                    failed_names.extend(rule.id.iter().chain(rule.name.iter()).cloned());
                    failed.push(failure(path, &rule, error));
                }
            }
        }
        waiting = still;
        if waiting.is_empty() || waiting.len() == before {
            break;
        }
    }
    // What is left refers to something unknown, to a rule that failed, or to each other.
    let waiting_names: HashSet<&str> =
        waiting.iter().flat_map(|(_, r, _, _)| r.id.iter().chain(r.name.iter())).map(String::as_str).collect();
    for (path, rule, _, name) in &waiting {
        let error = if waiting_names.contains(name.as_str()) {
            Error::Correlation(format!(
                "rule `{name}` is a correlation rule that cannot be resolved: correlation rules refer to each other in a cycle"
            ))
        } else if failed_names.iter().any(|n| n == name) {
            Error::Correlation(format!("rule `{name}` is a correlation rule that failed to load"))
        } else {
            unknown_reference(name)
        };
        failed.push(failure(path.clone(), rule, error));
    }
    (done, failed)
}

/// Parses a `timespan`: a positive number and a unit, `s`, `m`, `h`, `d` or `w` (`90m`).
pub fn parse_timespan(text: &str) -> Result<SignedDuration, Error> {
    let t = text.trim();
    let bad = |why: &str| Error::Correlation(format!("invalid timespan `{text}`: {why}"));
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    let (number, unit) = t.split_at(digits);
    if number.is_empty() {
        return Err(bad("expected a number and a unit, e.g. `5m`"));
    }
    let seconds_per_unit: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        "" => return Err(bad("missing unit (s, m, h, d or w)")),
        "M" | "y" => {
            return Err(bad("months and years have no fixed length: use days (`30d`)"));
        }
        other => {
            return Err(bad(&format!("unknown unit `{other}` (use s, m, h, d or w)")));
        }
    };
    let n: i64 = number.parse().map_err(|_| bad("number too large"))?;
    if n == 0 {
        return Err(bad("must be greater than zero"));
    }
    n.checked_mul(seconds_per_unit)
        .filter(|s| *s <= 100 * 366 * 86_400)
        .map(SignedDuration::from_secs)
        .ok_or_else(|| bad("too long"))
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

const KEYS: [&str; 7] = ["type", "rules", "group-by", "timespan", "condition", "aliases", "generate"];
const TYPES: &str = "event_count, value_count, temporal or temporal_ordered";

/// The `correlation` section, read and checked, with references still as written.
#[derive(Debug)]
struct Parsed {
    kind: CorrelationType,
    names: Vec<String>,
    group_by: Vec<String>,
    timespan: SignedDuration,
    timespan_text: String,
    condition: Condition,
    value_fields: Vec<String>,
    aliases: Vec<(String, Vec<(String, String)>)>,
    generate: bool,
}

enum Unresolved {
    Invalid(Error),
    /// A reference (in `rules` or `aliases`) that names no rule given: maybe a correlation
    /// rule not resolved yet.
    Unknown(String),
}

fn err(message: impl Into<String>) -> Error {
    Error::Correlation(message.into())
}

fn unknown_reference(name: &str) -> Error {
    err(format!(
        "unknown rule `{name}`: no loaded rule has this id or name (rules that failed to load or were filtered out cannot be referenced)"
    ))
}

/// A string or a list of strings.
fn string_list(v: &Json, what: &str) -> Result<Vec<String>, Error> {
    match v {
        Json::Array(items) => items
            .iter()
            .map(|i| scalar_text(i).ok_or_else(|| err(format!("`{what}` must be a list of names, found {i}"))))
            .collect(),
        other => scalar_text(other).map(|s| vec![s]).ok_or_else(|| err(format!("`{what}` must be a list of names"))),
    }
}

fn parse_section(rule: &Rule) -> Result<Parsed, Error> {
    let Some(Json::Object(map)) = &rule.correlation else {
        return Err(err("the `correlation` section is not a map"));
    };
    if let Some(k) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(err(format!("unknown key `{k}` (expected {})", KEYS.join(", "))));
    }

    let kind = match map.get("type").map(|v| scalar_text(v).ok_or(v)) {
        None => return Err(err(format!("missing `type` ({TYPES})"))),
        Some(Err(v)) => return Err(err(format!("`type` must be one of {TYPES}, found {v}"))),
        Some(Ok(t)) => match CorrelationType::parse(&t) {
            Some(k) => k,
            None if t.starts_with("value_") || t.ends_with("_extended") => {
                return Err(Error::Unsupported(format!("correlation type `{t}` (supported: {TYPES})")));
            }
            None => return Err(err(format!("unknown type `{t}` (expected {TYPES})"))),
        },
    };

    let names = match map.get("rules") {
        None => {
            return Err(err("missing `rules` (the ids or names of the rules to correlate)"));
        }
        Some(v) => string_list(v, "rules")?,
    };
    if names.is_empty() {
        return Err(err("`rules` is empty"));
    }

    let group_by = match map.get("group-by") {
        None | Some(Json::Null) => Vec::new(),
        Some(v) => string_list(v, "group-by")?,
    };

    let timespan_text = match map.get("timespan") {
        None => return Err(err("missing `timespan` (e.g. `timespan: 5m`)")),
        Some(v) => scalar_text(v).ok_or_else(|| err("`timespan` must be a text such as `5m`"))?,
    };
    let timespan = parse_timespan(&timespan_text)?;

    let temporal = matches!(kind, CorrelationType::Temporal | CorrelationType::TemporalOrdered);
    let (condition, value_fields) = match map.get("condition") {
        None | Some(Json::Null) if temporal => {
            (Condition::Count(CountRange { min: names.len() as u64, max: None }), Vec::new())
        }
        None | Some(Json::Null) => {
            return Err(err(format!("{kind} needs a `condition`, e.g. `condition: {{gte: 5}}`")));
        }
        Some(Json::Object(c)) => {
            let (range, fields) = parse_count_condition(c)?;
            (Condition::Count(range), fields)
        }
        Some(Json::String(text)) if temporal => {
            let expr = condition::parse(text, &names)
                .map_err(|message| err(format!("condition `{text}`: {message} (names are the entries of `rules`)")))?;
            (Condition::Rules { text: text.clone(), expr }, Vec::new())
        }
        Some(v) if temporal => {
            return Err(err(format!(
                "`condition` must be a map such as `{{gte: 2}}` or an expression over the names in `rules`, found {v}"
            )));
        }
        Some(v) => {
            return Err(err(format!("`condition` must be a map such as `{{gte: 5}}`, found {v}")));
        }
    };
    let condition = check_condition(kind, condition, &value_fields, names.len())?;

    let mut aliases = Vec::new();
    match map.get("aliases") {
        None | Some(Json::Null) => {}
        Some(Json::Object(a)) => {
            for (alias, mapping) in a {
                let Json::Object(mapping) = mapping else {
                    return Err(err(format!("alias `{alias}` must map rule names to field names")));
                };
                let mut fields = Vec::new();
                for (rule_name, field) in mapping {
                    let field = scalar_text(field).ok_or_else(|| {
                        err(format!("alias `{alias}`: the field for `{rule_name}` must be a field name"))
                    })?;
                    fields.push((rule_name.clone(), field));
                }
                aliases.push((alias.clone(), fields));
            }
        }
        Some(_) => {
            return Err(err("`aliases` must be a map: alias name → {rule name: field name}"));
        }
    }

    let generate = match map.get("generate") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(v) => return Err(err(format!("`generate` must be true or false, found {v}"))),
    };

    Ok(Parsed { kind, names, group_by, timespan, timespan_text, condition, value_fields, aliases, generate })
}

/// `{gte: 5}`, `{gt: 100, lte: 200}`, `{eq: 1}`, with `field` for value_count.
fn parse_count_condition(c: &serde_json::Map<String, Json>) -> Result<(CountRange, Vec<String>), Error> {
    let number = |op: &str, v: &Json| -> Result<u64, Error> {
        let text = scalar_text(v).unwrap_or_else(|| v.to_string());
        text.trim()
            .parse::<u64>()
            .map_err(|_| err(format!("condition `{op}: {text}`: expected a whole number of at least 0")))
    };
    let mut min: Option<(&str, u64)> = None;
    let mut max: Option<(&str, u64)> = None;
    let mut fields = Vec::new();
    for (op, v) in c {
        let (bound, value) = match op.as_str() {
            "field" => {
                fields = string_list(v, "condition.field")?;
                if fields.is_empty() {
                    return Err(err("`condition.field` is empty"));
                }
                continue;
            }
            "gte" => (&mut min, number(op, v)?),
            "gt" => (&mut min, number(op, v)?.checked_add(1).ok_or_else(|| err("condition `gt`: number too large"))?),
            "lte" => (&mut max, number(op, v)?),
            "lt" => match number(op, v)?.checked_sub(1) {
                Some(n) => (&mut max, n),
                None => return Err(err("condition `lt: 0` can never be met")),
            },
            "eq" => {
                let n = number(op, v)?;
                if let Some((other, _)) = min.or(max) {
                    return Err(err(format!("condition: `eq` cannot be combined with `{other}`")));
                }
                min = Some(("eq", n));
                max = Some(("eq", n));
                continue;
            }
            other => {
                return Err(err(format!(
                    "condition: unknown key `{other}` (expected gt, gte, lt, lte, eq and, for value_count, field)"
                )));
            }
        };
        if let Some((other, _)) = bound {
            return Err(err(format!("condition: `{op}` cannot be combined with `{other}`")));
        }
        *bound = Some((op.as_str(), value));
    }
    let range = match (min, max) {
        (None, None) => return Err(err("condition: needs one of gt, gte, lt, lte, eq")),
        (min, max) => CountRange { min: min.map_or(0, |(_, n)| n), max: max.map(|(_, n)| n) },
    };
    if range.max.is_some_and(|max| max < range.min) {
        return Err(err(format!(
            "condition: the range is empty (at least {} and at most {})",
            range.min,
            range.max.unwrap_or(0)
        )));
    }
    Ok((range, fields))
}

/// Checks the condition against the type, and normalises temporal counts.
fn check_condition(
    kind: CorrelationType,
    condition: Condition,
    fields: &[String],
    rules: usize,
) -> Result<Condition, Error> {
    if kind == CorrelationType::ValueCount && fields.is_empty() {
        return Err(err("value_count needs `field` in its condition: the field whose distinct values are counted"));
    }
    if kind != CorrelationType::ValueCount && !fields.is_empty() {
        return Err(err(format!("`field` in the condition is only used by value_count, not {kind}")));
    }
    let n = rules as u64;
    match (kind, condition) {
        (CorrelationType::Temporal | CorrelationType::TemporalOrdered, Condition::Count(mut range)) => {
            if range.min > n {
                return Err(err(format!("condition {range} can never be met: only {n} rules are referenced")));
            }
            // At most `n` distinct rules can be seen: an upper bound of `n` or more is no bound.
            if range.max.is_some_and(|max| max >= n) {
                range.max = None;
            }
            if kind == CorrelationType::TemporalOrdered && (range.min != n || range.max.is_some()) {
                return Err(Error::Unsupported(format!(
                    "temporal_ordered with condition {range}: only \"all rules in order\" (no condition, or gte: {n}) is supported"
                )));
            }
            Ok(Condition::Count(range))
        }
        (CorrelationType::TemporalOrdered, Condition::Rules { text, .. }) => Err(Error::Unsupported(format!(
            "temporal_ordered with the expression condition `{text}`: only \"all rules in order\" is supported"
        ))),
        (_, condition) => Ok(condition),
    }
}

/// Finds the rule a reference names, among detection rules and resolved correlation rules.
fn lookup(
    name: &str,
    rules: &[LoadedRule],
    correlations: &[(LoadedRule, CorrelationRule)],
) -> Result<RuleRef, Unresolved> {
    let names = |r: &Rule| r.id.as_deref() == Some(name) || r.name.as_deref() == Some(name);
    let mut found: Vec<(RuleRef, &Arc<str>)> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        if names(&r.rule) {
            found.push((RuleRef::Rule(RuleId(i as u32)), &r.path));
        }
    }
    for (i, (r, _)) in correlations.iter().enumerate() {
        if names(&r.rule) {
            found.push((RuleRef::Correlation(i), &r.path));
        }
    }
    match found.as_slice() {
        [] => Err(Unresolved::Unknown(name.to_owned())),
        [(one, _)] => Ok(*one),
        many => Err(Unresolved::Invalid(err(format!(
            "rule reference `{name}` is ambiguous: {} rules have this id or name ({})",
            many.len(),
            many.iter().map(|(_, p)| &***p).collect::<Vec<_>>().join(", ")
        )))),
    }
}

fn resolve_parsed(
    p: &Parsed,
    rules: &[LoadedRule],
    correlations: &[(LoadedRule, CorrelationRule)],
) -> Result<CorrelationRule, Unresolved> {
    let refs = p.names.iter().map(|n| lookup(n, rules, correlations)).collect::<Result<Vec<_>, _>>()?;
    let mut aliases = Vec::with_capacity(p.aliases.len());
    for (alias, mapping) in &p.aliases {
        let mut fields = Vec::with_capacity(mapping.len());
        for (rule_name, field) in mapping {
            let r = lookup(rule_name, rules, correlations)?;
            if !refs.contains(&r) {
                return Err(Unresolved::Invalid(err(format!(
                    "alias `{alias}` names rule `{rule_name}`, which is not in `rules`"
                ))));
            }
            fields.push((r, field.clone()));
        }
        aliases.push(Alias { name: alias.clone(), fields });
    }
    Ok(CorrelationRule {
        kind: p.kind,
        rules: refs,
        rule_names: p.names.clone(),
        group_by: p.group_by.clone(),
        timespan: p.timespan,
        timespan_text: p.timespan_text.clone(),
        condition: p.condition.clone(),
        value_fields: p.value_fields.clone(),
        aliases,
        generate: p.generate,
    })
}

// ---------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------

/// One event behind a correlation hit, for showing evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(with = "saved::source")]
    pub source: Arc<Source>,
    #[serde(with = "saved::position")]
    pub position: Position,
    pub timestamp: Timestamp,
    /// The detection rule the event matched.
    #[serde(with = "saved::rule_id")]
    pub rule: RuleId,
}

/// A correlation rule that matched.
#[derive(Clone, Debug, PartialEq)]
pub struct CorrelationHit {
    /// Index of the correlation rule in the list the engine was built from.
    pub correlation: usize,
    /// `group-by` field names (as written in the rule) and the values of this group.
    pub group: Vec<(String, String)>,
    /// The earliest event counted.
    pub start: Timestamp,
    /// For conditions decided as soon as they hold: the newest event counted. For conditions
    /// with an upper bound: `start + timespan`, the end of the window that was evaluated.
    pub end: Timestamp,
    /// Events (`event_count`), distinct values (`value_count`), or distinct referenced rules
    /// seen (`temporal`, `temporal_ordered`).
    pub count: u64,
    /// `value_count`: some of the distinct values counted (at most `Limits::max_evidence`;
    /// several fields are joined with ` | `).
    pub values: Vec<String>,
    /// Some of the events counted (at most `Limits::max_evidence`: the earliest and the
    /// newest), in timestamp order.
    pub evidence: Vec<Evidence>,
}

/// Bounds on the engine's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Groups (distinct `group-by` values) tracked per correlation rule.
    pub max_groups: usize,
    /// Timestamps or distinct values remembered per group.
    pub max_window_entries: usize,
    /// Evidence references (and sample values) per hit.
    pub max_evidence: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_groups: 100_000, max_window_entries: 10_000, max_evidence: 10 }
    }
}

/// What the engine skipped or dropped; nothing is lost without a count here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorrelationStats {
    /// Observations (event, referenced rule) of events without a timestamp.
    pub no_timestamp: u64,
    /// Observations whose event lacks a `group-by` field.
    pub missing_group_field: u64,
    /// `value_count` observations whose event lacks the counted field.
    pub missing_value_field: u64,
    /// Observations older than an event already seen (input not in timestamp order).
    pub late: u64,
    /// Observations absorbed by a group that had just fired (same burst).
    pub absorbed: u64,
    /// Groups evicted because a correlation rule reached `Limits::max_groups`.
    pub evicted_groups: u64,
    /// Window entries merged or dropped because a group reached `Limits::max_window_entries`.
    pub merged_entries: u64,
    pub hits: u64,
}

/// Evaluates correlation rules over base-rule matches delivered in timestamp order.
///
/// ```text
/// for event in events {
///     ids.clear();
///     ruleset.matches(&event, &mut ids);
///     engine.observe_all(&ids, &event, &mut hits);
/// }
/// engine.flush(&mut hits);
/// ```
#[derive(Debug)]
pub struct CorrelationEngine {
    rules: Vec<CorrelationRule>,
    plans: Vec<Plan>,
    states: Vec<State>,
    /// For each rule that correlations refer to, the correlations that refer to it.
    by_input: HashMap<RuleRef, Vec<usize>>,
    limits: Limits,
    /// The newest timestamp seen.
    now: Option<Timestamp>,
    stats: CorrelationStats,
}

/// Per correlation rule: what can be worked out once.
#[derive(Debug)]
struct Plan {
    inputs: HashMap<RuleRef, InputFields>,
    /// Decided at window expiry (condition with an upper bound) rather than as soon as it holds.
    deferred: bool,
    /// Count an event once even if it matches several referenced rules.
    count_once: bool,
}

/// For one referenced rule: the event fields to read (aliases applied) and its positions in
/// `rules`.
#[derive(Debug)]
struct InputFields {
    group: Vec<String>,
    values: Vec<String>,
    steps: Vec<usize>,
}

type GroupKey = Box<[Box<str>]>;
/// An event's identity: its source (by address) and position.
type EventId = (usize, Position);

/// One correlation rule's open groups and windows. Serialized for [`SavedEngine`]; event
/// identities (source addresses) are not, as they mean nothing in another process.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(with = "saved::groups")]
    groups: HashMap<GroupKey, Group>,
    /// Deferred windows in order of their end.
    expiries: VecDeque<Expiry>,
    next_window: u64,
    last_sweep: Option<Timestamp>,
    #[serde(skip)]
    last_event: Option<(EventId, Timestamp)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Expiry {
    at: Timestamp,
    key: GroupKey,
    window: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Group {
    newest: Timestamp,
    /// After a hit: events up to this time belong to the burst that fired.
    quiet_until: Option<Timestamp>,
    window: Window,
}

#[derive(Debug, Serialize, Deserialize)]
enum Window {
    /// event_count, sliding: (timestamp, events at it), oldest first.
    Count { buckets: VecDeque<(Timestamp, u64)>, total: u64, evidence: Vec<Evidence> },
    /// value_count, sliding: each distinct value with its newest occurrence.
    Values { values: HashMap<Box<str>, (Timestamp, Vec<Evidence>)> },
    /// temporal, sliding: the newest occurrence of each referenced rule.
    Temporal { last: Vec<Option<(Timestamp, Vec<Evidence>)>> },
    /// temporal_ordered: for each prefix of `rules`, the chain with the latest start.
    Ordered { chain: Vec<Option<Chain>> },
    /// Any type with an upper bound: anchored at its first event, decided at its end.
    Deferred(Deferred),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Chain {
    start: Timestamp,
    last: Timestamp,
    #[serde(skip)]
    last_event: Option<EventId>,
    evidence: Vec<Evidence>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Deferred {
    id: u64,
    start: Timestamp,
    events: u64,
    values: HashSet<Box<str>>,
    /// More distinct values than the condition allows (or than the limit): cannot match.
    values_overflow: bool,
    seen: Vec<bool>,
    evidence: Vec<Evidence>,
}

impl Window {
    fn fresh(kind: CorrelationType, steps: usize) -> Window {
        match kind {
            CorrelationType::EventCount => Window::Count { buckets: VecDeque::new(), total: 0, evidence: Vec::new() },
            CorrelationType::ValueCount => Window::Values { values: HashMap::new() },
            CorrelationType::Temporal => Window::Temporal { last: vec![None; steps] },
            CorrelationType::TemporalOrdered => Window::Ordered { chain: vec![None; steps] },
        }
    }

    /// Visits every evidence reference the window holds (to share sources after a restore).
    fn for_each_evidence(&mut self, f: &mut dyn FnMut(&mut Evidence)) {
        match self {
            Window::Count { evidence, .. } => evidence.iter_mut().for_each(f),
            Window::Values { values } => values.values_mut().flat_map(|(_, e)| e.iter_mut()).for_each(f),
            Window::Temporal { last } => last.iter_mut().flatten().flat_map(|(_, e)| e.iter_mut()).for_each(f),
            Window::Ordered { chain } => chain.iter_mut().flatten().flat_map(|c| c.evidence.iter_mut()).for_each(f),
            Window::Deferred(d) => d.evidence.iter_mut().for_each(f),
        }
    }

    fn deferred_id(&self) -> Option<u64> {
        match self {
            Window::Deferred(d) => Some(d.id),
            _ => None,
        }
    }
}

/// What a correlation rule is fed: a base-rule match, or a hit of a correlation it refers to.
enum Input<'a> {
    Event { event: &'a Event, rule: RuleId },
    Hit(&'a CorrelationHit),
}

impl Input<'_> {
    fn field(&self, name: &str) -> Option<Box<str>> {
        match self {
            Input::Event { event, .. } => event.get(name).and_then(value_text),
            Input::Hit(hit) => hit
                .group
                .iter()
                .find(|(f, _)| f == name)
                .or_else(|| hit.group.iter().find(|(f, _)| f.eq_ignore_ascii_case(name)))
                .map(|(_, v)| v.as_str().into()),
        }
    }

    fn evidence(&self, t: Timestamp, max: usize) -> Vec<Evidence> {
        match self {
            Input::Event { event, rule } => {
                if max == 0 {
                    return Vec::new();
                }
                vec![Evidence { source: event.source.clone(), position: event.position, timestamp: t, rule: *rule }]
            }
            Input::Hit(hit) => hit.evidence.iter().take(max).cloned().collect(),
        }
    }

    fn identity(&self) -> Option<EventId> {
        match self {
            Input::Event { event, .. } => Some((Arc::as_ptr(&event.source).addr(), event.position)),
            Input::Hit(_) => None,
        }
    }
}

/// A field value as group or counted text; `None` for null and empty lists.
fn value_text(v: &Value) -> Option<Box<str>> {
    match v {
        Value::Null => None,
        Value::List(items) if items.is_empty() => None,
        Value::List(_) => Some(v.to_string().into()),
        other => other.as_text().map(|t| t.into()),
    }
}

fn plus(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// Whether `t` is within `span` before `newest` (inclusive).
fn within(t: Timestamp, newest: Timestamp, span: SignedDuration) -> bool {
    newest.duration_since(t) <= span
}

/// Appends evidence, keeping at most `max`: when full, the middle entry goes, so that the
/// earliest and the newest events are both kept.
fn push_evidence(dst: &mut Vec<Evidence>, src: impl IntoIterator<Item = Evidence>, max: usize) {
    for e in src {
        if max == 0 {
            return;
        }
        if dst.len() >= max {
            dst.remove(max / 2);
        }
        dst.push(e);
    }
}

fn eval(expr: &Expr, seen: &[bool]) -> bool {
    match expr {
        Expr::Search(i) => seen.get(*i).copied().unwrap_or(false),
        Expr::Not(e) => !eval(e, seen),
        Expr::And(items) => items.iter().all(|e| eval(e, seen)),
        Expr::Or(items) => items.iter().any(|e| eval(e, seen)),
        Expr::False => false,
    }
}

fn has_not(expr: &Expr) -> bool {
    match expr {
        Expr::Not(_) => true,
        Expr::And(items) | Expr::Or(items) => items.iter().any(has_not),
        Expr::Search(_) | Expr::False => false,
    }
}

impl Plan {
    fn new(rule: &CorrelationRule) -> Plan {
        let mut inputs: HashMap<RuleRef, InputFields> = HashMap::new();
        for (i, r) in rule.rules.iter().enumerate() {
            inputs
                .entry(*r)
                .or_insert_with(|| InputFields {
                    group: rule.group_by.iter().map(|g| rule.field_for(g, *r).to_owned()).collect(),
                    values: rule.value_fields.iter().map(|f| rule.field_for(f, *r).to_owned()).collect(),
                    steps: Vec::new(),
                })
                .steps
                .push(i);
        }
        let deferred = match &rule.condition {
            _ if rule.kind == CorrelationType::TemporalOrdered => false,
            Condition::Count(range) => range.max.is_some(),
            Condition::Rules { expr, .. } => has_not(expr),
        };
        let count_once = matches!(rule.kind, CorrelationType::EventCount | CorrelationType::ValueCount);
        Plan { inputs, deferred, count_once }
    }
}

/// What `feed` needs about one correlation rule.
struct Ctx<'a> {
    index: usize,
    rule: &'a CorrelationRule,
    plan: &'a Plan,
    limits: &'a Limits,
}

impl Ctx<'_> {
    fn hit(
        &self,
        key: &GroupKey,
        start: Timestamp,
        end: Timestamp,
        count: u64,
        values: Vec<String>,
        mut evidence: Vec<Evidence>,
    ) -> CorrelationHit {
        evidence.sort_by_key(|e| e.timestamp);
        evidence.truncate(self.limits.max_evidence);
        CorrelationHit {
            correlation: self.index,
            group: self.rule.group_by.iter().cloned().zip(key.iter().map(|v| v.to_string())).collect(),
            start,
            end,
            count,
            values,
            evidence,
        }
    }

    fn satisfied(&self, count: u64, seen: &[bool]) -> bool {
        match &self.rule.condition {
            Condition::Count(range) => range.contains(count),
            Condition::Rules { expr, .. } => eval(expr, seen),
        }
    }

    /// Decides a complete deferred window.
    fn close(&self, key: &GroupKey, d: Deferred) -> Option<CorrelationHit> {
        let count = match self.rule.kind {
            CorrelationType::EventCount => d.events,
            CorrelationType::ValueCount if d.values_overflow => return None,
            CorrelationType::ValueCount => d.values.len() as u64,
            CorrelationType::Temporal | CorrelationType::TemporalOrdered => {
                d.seen.iter().filter(|s| **s).count() as u64
            }
        };
        if !self.satisfied(count, &d.seen) {
            return None;
        }
        let mut values: Vec<String> = d.values.iter().map(|v| v.replace('\u{1f}', " | ")).collect();
        values.sort();
        values.truncate(self.limits.max_evidence);
        Some(self.hit(key, d.start, plus(d.start, self.rule.timespan), count, values, d.evidence))
    }
}

impl State {
    /// Removes sliding-window groups with nothing left in their window.
    fn sweep(&mut self, now: Timestamp, span: SignedDuration) {
        self.groups.retain(|_, g| {
            matches!(g.window, Window::Deferred(_))
                || within(g.newest, now, span)
                || g.quiet_until.is_some_and(|q| now <= q)
        });
    }

    /// Makes room for one more group.
    fn make_room(&mut self, limits: &Limits, stats: &mut CorrelationStats, now: Timestamp, span: SignedDuration) {
        let max = limits.max_groups.max(1);
        if self.groups.len() >= max {
            self.sweep(now, span);
        }
        if self.groups.len() >= max {
            // Evict the least recently active eighth at once, so that the cost of finding them
            // is spread over many insertions.
            let evict = (self.groups.len() / 8).max(1);
            let mut ages: Vec<Timestamp> = self.groups.values().map(|g| g.newest).collect();
            let cutoff = *ages.select_nth_unstable(evict - 1).1;
            let mut removed = 0usize;
            self.groups.retain(|_, g| {
                let go = removed < evict && g.newest <= cutoff;
                removed += usize::from(go);
                !go
            });
            stats.evicted_groups += removed as u64;
        }
        // Evicted deferred windows leave stale expiry entries behind; drop them now and then.
        if self.expiries.len() > 2 * max + 16 {
            let groups = &self.groups;
            self.expiries.retain(|e| groups.get(&e.key).and_then(|g| g.window.deferred_id()) == Some(e.window));
        }
    }

    fn push_expiry(&mut self, e: Expiry) {
        // Usually at the back; windows opened by chained (older) hits may end earlier.
        let at = self.expiries.partition_point(|x| x.at <= e.at);
        self.expiries.insert(at, e);
    }

    /// Closes the window an expiry entry stands for, if it is still open.
    fn take_expired(&mut self, ctx: &Ctx<'_>, e: &Expiry) -> Option<CorrelationHit> {
        if self.groups.get(&e.key).and_then(|g| g.window.deferred_id()) != Some(e.window) {
            return None;
        }
        match self.groups.remove(&e.key)?.window {
            Window::Deferred(d) => ctx.close(&e.key, d),
            _ => None,
        }
    }
}

/// Feeds one input to one correlation rule; returns its hit, if it fires now.
fn feed(
    ctx: &Ctx<'_>,
    state: &mut State,
    stats: &mut CorrelationStats,
    now: Timestamp,
    from: RuleRef,
    input: &Input<'_>,
    t: Timestamp,
) -> Option<CorrelationHit> {
    let fields = ctx.plan.inputs.get(&from)?;
    let rule = ctx.rule;
    let span = rule.timespan;
    let max_evidence = ctx.limits.max_evidence;
    let identity = input.identity().map(|id| (id, t));
    if ctx.plan.count_once && identity.is_some() && state.last_event == identity {
        // The same event again, through another of the referenced rules.
        return None;
    }

    let mut key = Vec::with_capacity(fields.group.len());
    for f in &fields.group {
        let Some(v) = input.field(f) else {
            stats.missing_group_field += 1;
            return None;
        };
        key.push(v);
    }
    let value: Option<Box<str>> = if rule.kind == CorrelationType::ValueCount {
        let mut parts = Vec::with_capacity(fields.values.len());
        for f in &fields.values {
            let Some(v) = input.field(f) else {
                stats.missing_value_field += 1;
                return None;
            };
            parts.push(v);
        }
        Some(parts.join("\u{1f}").into())
    } else {
        None
    };
    if ctx.plan.count_once {
        state.last_event = identity;
    }
    let key: GroupKey = key.into();

    if !state.groups.contains_key(&key) {
        state.make_room(ctx.limits, stats, now, span);
        let window = if ctx.plan.deferred {
            let id = state.next_window;
            state.next_window += 1;
            state.push_expiry(Expiry { at: plus(t, span), key: key.clone(), window: id });
            Window::Deferred(Deferred {
                id,
                start: t,
                events: 0,
                values: HashSet::new(),
                values_overflow: false,
                seen: vec![false; rule.rules.len()],
                evidence: Vec::new(),
            })
        } else {
            Window::fresh(rule.kind, rule.rules.len())
        };
        state.groups.insert(key.clone(), Group { newest: t, quiet_until: None, window });
    }
    let group = state.groups.get_mut(&key)?;
    if let Some(q) = group.quiet_until {
        if t <= q {
            stats.absorbed += 1;
            return None;
        }
        group.quiet_until = None;
    }
    if t > group.newest {
        group.newest = t;
    }
    let newest = group.newest;
    let cap = ctx.limits.max_window_entries.max(1);
    let evidence = input.evidence(t, max_evidence);

    let hit = match &mut group.window {
        Window::Deferred(d) => {
            d.events += 1;
            if let Some(v) = value
                && !d.values_overflow
            {
                d.values.insert(v);
                // Beyond the upper bound the condition cannot hold any more: stop collecting.
                let bound = match &rule.condition {
                    Condition::Count(range) => range.max.unwrap_or(u64::MAX),
                    Condition::Rules { .. } => u64::MAX,
                };
                if d.values.len() as u64 > bound || d.values.len() > cap {
                    if d.values.len() > cap {
                        stats.merged_entries += 1;
                    }
                    d.values_overflow = true;
                    d.values = HashSet::new();
                }
            }
            for &k in &fields.steps {
                if let Some(s) = d.seen.get_mut(k) {
                    *s = true;
                }
            }
            push_evidence(&mut d.evidence, evidence, max_evidence);
            None
        }

        Window::Count { buckets, total, evidence: ev } => {
            // Timestamps in order; an event at the same time as a bucket joins it.
            let at = buckets.partition_point(|b| b.0 < t);
            match buckets.get_mut(at) {
                Some(b) if b.0 == t => b.1 += 1,
                _ => buckets.insert(at, (t, 1)),
            }
            *total += 1;
            while let Some(&(ts, n)) = buckets.front() {
                if within(ts, newest, span) {
                    break;
                }
                *total = total.saturating_sub(n);
                buckets.pop_front();
            }
            // Too many distinct timestamps: merge the two oldest under the older one (it then
            // leaves the window early, which can only under-count).
            while buckets.len() > cap {
                let Some((t0, n0)) = buckets.pop_front() else {
                    break;
                };
                if let Some(b) = buckets.front_mut() {
                    *b = (t0, b.1 + n0);
                }
                stats.merged_entries += 1;
            }
            ev.retain(|e| within(e.timestamp, newest, span));
            push_evidence(ev, evidence, max_evidence);
            if ctx.satisfied(*total, &[]) {
                let start = buckets.front().map_or(t, |b| b.0);
                Some(ctx.hit(&key, start, newest, *total, Vec::new(), std::mem::take(ev)))
            } else {
                None
            }
        }

        Window::Values { values } => {
            let v = value.unwrap_or_default();
            match values.get_mut(&v) {
                Some(entry) if t >= entry.0 => *entry = (t, evidence),
                Some(_) => {}
                None => {
                    values.insert(v, (t, evidence));
                }
            }
            values.retain(|_, (ts, _)| within(*ts, newest, span));
            while values.len() > cap {
                let Some(oldest) = values.iter().min_by_key(|(v, (ts, _))| (*ts, *v)).map(|(k, _)| k.clone()) else {
                    break;
                };
                values.remove(&oldest);
                stats.merged_entries += 1;
            }
            let count = values.len() as u64;
            if ctx.satisfied(count, &[]) {
                let mut entries: Vec<_> = values.iter().collect();
                // By time, then by value: the same hit whatever the map's order.
                entries.sort_by(|(a, (ta, _)), (b, (tb, _))| ta.cmp(tb).then_with(|| a.cmp(b)));
                let start = entries.first().map_or(t, |(_, (ts, _))| *ts);
                let shown: Vec<String> =
                    entries.iter().take(max_evidence).map(|(v, _)| v.replace('\u{1f}', " | ")).collect();
                let mut ev = Vec::new();
                push_evidence(&mut ev, entries.iter().flat_map(|(_, (_, e))| e.iter().cloned()), max_evidence);
                Some(ctx.hit(&key, start, newest, count, shown, ev))
            } else {
                None
            }
        }

        Window::Temporal { last } => {
            for &k in &fields.steps {
                if let Some(slot) = last.get_mut(k)
                    && slot.as_ref().is_none_or(|(ts, _)| t >= *ts)
                {
                    *slot = Some((t, evidence.clone()));
                }
            }
            for slot in last.iter_mut() {
                if slot.as_ref().is_some_and(|(ts, _)| !within(*ts, newest, span)) {
                    *slot = None;
                }
            }
            let seen: Vec<bool> = last.iter().map(Option::is_some).collect();
            let count = seen.iter().filter(|s| **s).count() as u64;
            if ctx.satisfied(count, &seen) {
                let start = last.iter().flatten().map(|(ts, _)| *ts).min().unwrap_or(t);
                let mut ev = Vec::new();
                let mut slots: Vec<&(Timestamp, Vec<Evidence>)> = last.iter().flatten().collect();
                slots.sort_by_key(|(ts, _)| *ts);
                push_evidence(&mut ev, slots.into_iter().flat_map(|(_, e)| e.iter().cloned()), max_evidence);
                Some(ctx.hit(&key, start, newest, count, Vec::new(), ev))
            } else {
                None
            }
        }

        Window::Ordered { chain } => {
            let me = input.identity();
            // Later positions first, so that one event does not extend a chain it just started.
            for &k in fields.steps.iter().rev() {
                let candidate = if k == 0 {
                    Some(Chain { start: t, last: t, last_event: me, evidence: evidence.clone() })
                } else {
                    chain
                        .get(k - 1)
                        .and_then(Option::as_ref)
                        .filter(|c| t >= c.last && within(c.start, t, span) && (me.is_none() || c.last_event != me))
                        .map(|c| {
                            let mut ev = c.evidence.clone();
                            push_evidence(&mut ev, evidence.iter().cloned(), max_evidence);
                            Chain { start: c.start, last: t, last_event: me, evidence: ev }
                        })
                };
                if let Some(new) = candidate
                    && let Some(slot) = chain.get_mut(k)
                    && slot.as_ref().is_none_or(|old| new.start >= old.start)
                {
                    *slot = Some(new);
                }
            }
            for slot in chain.iter_mut() {
                if slot.as_ref().is_some_and(|c| !within(c.start, newest, span)) {
                    *slot = None;
                }
            }
            match chain.last().and_then(Option::as_ref) {
                Some(done) => {
                    let n = chain.len() as u64;
                    Some(ctx.hit(&key, done.start, done.last, n, Vec::new(), done.evidence.clone()))
                }
                None => None,
            }
        }
    };

    if let Some(h) = &hit {
        // Start afresh; the rest of the window that fired belongs to the same burst.
        group.window = Window::fresh(rule.kind, rule.rules.len());
        group.quiet_until = Some(plus(h.start, span));
    }
    hit
}

impl CorrelationEngine {
    pub fn new(correlations: &[(LoadedRule, CorrelationRule)]) -> CorrelationEngine {
        CorrelationEngine::with_limits(correlations, Limits::default())
    }

    pub fn with_limits(correlations: &[(LoadedRule, CorrelationRule)], limits: Limits) -> CorrelationEngine {
        let rules: Vec<CorrelationRule> = correlations.iter().map(|(_, c)| c.clone()).collect();
        let plans = rules.iter().map(Plan::new).collect();
        let states = rules.iter().map(|_| State::default()).collect();
        let mut by_input: HashMap<RuleRef, Vec<usize>> = HashMap::new();
        for (i, c) in rules.iter().enumerate() {
            for r in &c.rules {
                let list = by_input.entry(*r).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        CorrelationEngine { rules, plans, states, by_input, limits, now: None, stats: CorrelationStats::default() }
    }

    pub fn stats(&self) -> &CorrelationStats {
        &self.stats
    }

    /// Groups currently tracked, over all correlation rules.
    pub fn groups(&self) -> usize {
        self.states.iter().map(|s| s.groups.len()).sum()
    }

    /// Whether any correlation rule refers to `rule` (so its matches need to be observed).
    pub fn is_referenced(&self, rule: RuleRef) -> bool {
        self.by_input.contains_key(&rule)
    }

    /// Whether the matches of `rule` are to be reported on their own: not if a correlation
    /// rule refers to it without `generate: true` (as pySigma decides).
    pub fn standalone(&self, rule: RuleRef) -> bool {
        self.by_input.get(&rule).is_none_or(|cs| cs.iter().all(|&c| self.rules.get(c).is_some_and(|r| r.generate)))
    }

    /// Observes that `event` matched the detection rule `rule`. Call it for every (event,
    /// matching rule) pair, in timestamp order; hits are appended to `out`.
    pub fn observe(&mut self, rule: RuleId, event: &Event, out: &mut Vec<CorrelationHit>) {
        let from = RuleRef::Rule(rule);
        if !self.by_input.contains_key(&from) {
            return;
        }
        let Some(t) = event.timestamp else {
            self.stats.no_timestamp += 1;
            return;
        };
        if self.now.is_some_and(|now| t < now) {
            self.stats.late += 1;
        }
        self.advance(t, out);
        let now = self.now.unwrap_or(t);
        let input = Input::Event { event, rule };
        let mut fired = Vec::new();
        for &c in self.by_input.get(&from).map(Vec::as_slice).unwrap_or_default() {
            let (Some(r), Some(plan), Some(state)) = (self.rules.get(c), self.plans.get(c), self.states.get_mut(c))
            else {
                continue;
            };
            let ctx = Ctx { index: c, rule: r, plan, limits: &self.limits };
            fired.extend(feed(&ctx, state, &mut self.stats, now, from, &input, t));
        }
        self.cascade(fired, out);
    }

    /// [`CorrelationEngine::observe`] for each of the rules an event matched.
    pub fn observe_all(&mut self, rules: &[RuleId], event: &Event, out: &mut Vec<CorrelationHit>) {
        for &r in rules {
            self.observe(r, event, out);
        }
    }

    /// Moves the clock to `now`: windows that ended before it are decided. `observe` does this
    /// itself; call it to let time pass without events (a live stream gone quiet).
    ///
    /// Windows are decided in the order of their end (over all rules; the lower rule index
    /// first on a tie), so the hits do not depend on how time was advanced: one call to
    /// `advance(t)` gives the same hits as calls with any increasing times up to `t`.
    pub fn advance(&mut self, now: Timestamp, out: &mut Vec<CorrelationHit>) {
        if self.now.is_some_and(|n| now <= n) {
            return;
        }
        self.now = Some(now);
        self.close_windows(Some(now), out);
        for (rule, state) in self.rules.iter().zip(self.states.iter_mut()) {
            if state.last_sweep.is_none_or(|s| !within(s, now, rule.timespan)) {
                state.sweep(now, rule.timespan);
                state.last_sweep = Some(now);
            }
        }
    }

    /// End of input: decides every window still open (conditions with an upper bound), then
    /// forgets all state so that the engine can take another, unrelated input.
    pub fn flush(&mut self, out: &mut Vec<CorrelationHit>) {
        self.close_windows(None, out);
        for s in &mut self.states {
            *s = State::default();
        }
        self.now = None;
    }

    /// Decides the deferred windows that end before `before` (all of them: `None`), earliest
    /// end first. A hit can open windows in the rules that refer to its rule; those that end
    /// before `before` too are decided in the same pass.
    fn close_windows(&mut self, before: Option<Timestamp>, out: &mut Vec<CorrelationHit>) {
        loop {
            let next = self
                .states
                .iter()
                .enumerate()
                .filter_map(|(c, s)| s.expiries.front().map(|e| (e.at, c)))
                .filter(|(at, _)| before.is_none_or(|b| *at < b))
                .min();
            let Some((_, c)) = next else { break };
            let mut fired = Vec::new();
            if let (Some(rule), Some(plan), Some(state)) =
                (self.rules.get(c), self.plans.get(c), self.states.get_mut(c))
                && let Some(e) = state.expiries.pop_front()
            {
                let ctx = Ctx { index: c, rule, plan, limits: &self.limits };
                fired.extend(state.take_expired(&ctx, &e));
            }
            self.cascade(fired, out);
        }
    }

    /// The engine's state (open groups and windows, the clock, the counters) for saving: it
    /// serializes with serde. Restore it with [`CorrelationEngine::restore`] into an engine
    /// built from the same correlation rules; the caller checks that they are the same (the
    /// state refers to rules by their index and to detection rules by [`RuleId`]).
    pub fn saved(&self) -> SavedEngineRef<'_> {
        SavedEngineRef { now: self.now, stats: &self.stats, rules: &self.states }
    }

    /// Replaces the engine's state with a saved one. Refuses (and leaves the engine as it was)
    /// a state whose shape does not fit this engine's rules: another number of rules, group
    /// keys of another length, windows of another type.
    pub fn restore(&mut self, saved: SavedEngine) -> Result<(), Error> {
        let SavedEngine { now, stats, mut rules } = saved;
        if rules.len() != self.rules.len() {
            return Err(err(format!(
                "saved state has {} correlation rules, the engine {}",
                rules.len(),
                self.rules.len()
            )));
        }
        let mut sources: HashMap<(String, Option<String>), Arc<Source>> = HashMap::new();
        for (c, state) in rules.iter_mut().enumerate() {
            let (Some(rule), Some(plan)) = (self.rules.get(c), self.plans.get(c)) else {
                return Err(err("saved state does not fit the rules"));
            };
            let steps = rule.rules.len();
            for (key, group) in state.groups.iter_mut() {
                let fits = key.len() == rule.group_by.len()
                    && match &group.window {
                        Window::Deferred(d) => plan.deferred && d.seen.len() == steps,
                        Window::Count { .. } => !plan.deferred && rule.kind == CorrelationType::EventCount,
                        Window::Values { .. } => !plan.deferred && rule.kind == CorrelationType::ValueCount,
                        Window::Temporal { last } => {
                            !plan.deferred && rule.kind == CorrelationType::Temporal && last.len() == steps
                        }
                        Window::Ordered { chain } => {
                            !plan.deferred && rule.kind == CorrelationType::TemporalOrdered && chain.len() == steps
                        }
                    };
                if !fits {
                    return Err(err(format!("saved state of correlation rule {c} does not fit the rule")));
                }
                group.window.for_each_evidence(&mut |e| {
                    let id = (e.source.name.clone(), e.source.organisation.clone());
                    e.source = sources.entry(id).or_insert_with(|| e.source.clone()).clone();
                });
            }
            state.expiries.make_contiguous().sort_by_key(|e| e.at);
        }
        self.now = now;
        self.stats = stats;
        self.states = rules;
        Ok(())
    }

    /// Reports hits, feeding each to the correlation rules that refer to its rule.
    fn cascade(&mut self, hits: Vec<CorrelationHit>, out: &mut Vec<CorrelationHit>) {
        let mut queue: VecDeque<CorrelationHit> = hits.into();
        while let Some(hit) = queue.pop_front() {
            self.stats.hits += 1;
            let from = RuleRef::Correlation(hit.correlation);
            let now = self.now.map_or(hit.end, |n| n.max(hit.end));
            for &c in self.by_input.get(&from).map(Vec::as_slice).unwrap_or_default() {
                let (Some(r), Some(plan), Some(state)) = (self.rules.get(c), self.plans.get(c), self.states.get_mut(c))
                else {
                    continue;
                };
                let ctx = Ctx { index: c, rule: r, plan, limits: &self.limits };
                queue.extend(feed(&ctx, state, &mut self.stats, now, from, &Input::Hit(&hit), hit.end));
            }
            out.push(hit);
        }
    }
}

/// A saved [`CorrelationEngine`] state, borrowed from the engine ([`CorrelationEngine::saved`]).
#[derive(Serialize)]
pub struct SavedEngineRef<'a> {
    now: Option<Timestamp>,
    stats: &'a CorrelationStats,
    rules: &'a [State],
}

/// A saved [`CorrelationEngine`] state, read back ([`CorrelationEngine::restore`]).
#[derive(Debug, Deserialize)]
pub struct SavedEngine {
    now: Option<Timestamp>,
    stats: CorrelationStats,
    rules: Vec<State>,
}

/// Serde forms of what has none of its own.
mod saved {
    pub mod source {
        use std::sync::Arc;

        use nigehban_event::Source;
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        pub fn serialize<S: Serializer>(s: &Arc<Source>, to: S) -> Result<S::Ok, S::Error> {
            (&s.name, &s.organisation).serialize(to)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Arc<Source>, D::Error> {
            let (name, organisation) = <(String, Option<String>)>::deserialize(from)?;
            Ok(Arc::new(Source { name, organisation }))
        }
    }

    pub mod position {
        use nigehban_event::Position;
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        #[derive(Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Pos {
            Line(u64),
            Offset(u64),
            Record(u64, u64),
        }

        pub fn serialize<S: Serializer>(p: &Position, to: S) -> Result<S::Ok, S::Error> {
            match *p {
                Position::Line(n) => Pos::Line(n),
                Position::Offset(n) => Pos::Offset(n),
                Position::EvtxRecord { record_id, chunk_offset } => Pos::Record(record_id, chunk_offset),
            }
            .serialize(to)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Position, D::Error> {
            Ok(match Pos::deserialize(from)? {
                Pos::Line(n) => Position::Line(n),
                Pos::Offset(n) => Position::Offset(n),
                Pos::Record(record_id, chunk_offset) => Position::EvtxRecord { record_id, chunk_offset },
            })
        }
    }

    pub mod rule_id {
        use serde::{Deserialize, Deserializer, Serializer};

        use crate::RuleId;

        pub fn serialize<S: Serializer>(r: &RuleId, to: S) -> Result<S::Ok, S::Error> {
            to.serialize_u32(r.0)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<RuleId, D::Error> {
            u32::deserialize(from).map(RuleId)
        }
    }

    /// Groups as a list of (key, group): JSON object keys are strings only.
    pub mod groups {
        use std::collections::HashMap;

        use serde::ser::SerializeSeq;
        use serde::{Deserialize, Deserializer, Serializer};

        use super::super::{Group, GroupKey};

        pub fn serialize<S: Serializer>(groups: &HashMap<GroupKey, Group>, to: S) -> Result<S::Ok, S::Error> {
            let mut seq = to.serialize_seq(Some(groups.len()))?;
            for entry in groups {
                seq.serialize_element(&entry)?;
            }
            seq.end()
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<HashMap<GroupKey, Group>, D::Error> {
            Ok(Vec::<(GroupKey, Group)>::deserialize(from)?.into_iter().collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::parse_rules;
    use crate::{RuleSet, RuleSetBuilder};
    use nigehban_event::{Position, Product, Source};

    const BRUTE_FORCE: &str = include_str!("../testdata/correlation/brute_force.yml");
    const SPRAYING: &str = include_str!("../testdata/correlation/password_spraying.yml");
    const FAILED_AND_SUCCESS: &str = include_str!("../testdata/correlation/failed_and_successful_logon.yml");
    const SMB_ALIASES: &str = include_str!("../testdata/correlation/smb_then_failed_logon.yml");
    const SLOW_BRUTE: &str = include_str!("../testdata/correlation/slow_brute_force.yml");
    const CHAINED: &str = include_str!("../testdata/correlation/brute_force_then_success.yml");
    const INVALID: &str = include_str!("../testdata/correlation/invalid.yml");
    const MIXED: &str = include_str!("../testdata/correlation/mixed.yml");

    const T0: &str = "2024-05-01T10:00:00Z";

    /// `T0` plus `secs` seconds.
    fn at(secs: i64) -> Timestamp {
        plus(T0.parse().unwrap(), SignedDuration::from_secs(secs))
    }

    fn security(line: u64, secs: i64, id: i64, fields: &[(&str, &str)]) -> Event {
        windows(line, secs, "Security", id, fields)
    }

    fn windows(line: u64, secs: i64, channel: &str, id: i64, fields: &[(&str, &str)]) -> Event {
        let mut e = Event::new(Source::file("Security.evtx"), Position::Line(line), Product::Windows, "test");
        e.timestamp = Some(at(secs));
        e.set("Channel", Value::str(channel));
        e.set("EventID", Value::Int(id));
        for (k, v) in fields {
            e.set(*k, Value::str(*v));
        }
        e
    }

    fn failed(line: u64, secs: i64, user: &str, ip: &str) -> Event {
        security(line, secs, 4625, &[("TargetUserName", user), ("IpAddress", ip)])
    }

    fn success(line: u64, secs: i64, user: &str, ip: &str) -> Event {
        security(line, secs, 4624, &[("TargetUserName", user), ("IpAddress", ip)])
    }

    /// A rule set with its engine: events go through `RuleSet::matches` then the engine.
    struct Harness {
        rs: RuleSet,
        engine: CorrelationEngine,
        hits: Vec<CorrelationHit>,
    }

    impl Harness {
        fn new(yaml: &str) -> Harness {
            Harness::with_limits(yaml, Limits::default())
        }

        fn with_limits(yaml: &str, limits: Limits) -> Harness {
            let mut b = RuleSetBuilder::new();
            b.add_yaml("fixture.yml", yaml);
            let rs = b.build();
            assert!(rs.report().failed.is_empty(), "{:?}", rs.report().failed);
            assert!(rs.report().correlations > 0);
            let engine = CorrelationEngine::with_limits(rs.correlations(), limits);
            Harness { rs, engine, hits: Vec::new() }
        }

        fn feed(&mut self, events: impl IntoIterator<Item = Event>) {
            let mut ids = Vec::new();
            for e in events {
                ids.clear();
                self.rs.matches(&e, &mut ids);
                self.engine.observe_all(&ids, &e, &mut self.hits);
            }
        }

        fn flush(&mut self) {
            self.engine.flush(&mut self.hits);
        }

        fn index_of(&self, title: &str) -> usize {
            self.rs.correlations().iter().position(|(r, _)| r.rule.title == title).unwrap()
        }

        fn hits_of(&self, title: &str) -> Vec<&CorrelationHit> {
            let i = self.index_of(title);
            self.hits.iter().filter(|h| h.correlation == i).collect()
        }
    }

    fn group(h: &CorrelationHit) -> Vec<(&str, &str)> {
        h.group.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    // --- parsing ------------------------------------------------------------------------------

    #[test]
    fn fixture_rules_parse_with_their_settings() {
        let h = Harness::new(BRUTE_FORCE);
        let (loaded, c) = &h.rs.correlations()[0];
        assert_eq!(loaded.rule.level, crate::Level::Medium);
        assert_eq!(c.kind, CorrelationType::EventCount);
        assert_eq!(c.rules, vec![RuleRef::Rule(RuleId(0))]);
        assert_eq!(c.group_by, vec!["TargetUserName"]);
        assert_eq!(c.timespan, SignedDuration::from_mins(5));
        assert_eq!(c.condition, Condition::Count(CountRange { min: 5, max: None }));
        assert!(!c.generate);

        let h = Harness::new(SPRAYING);
        let c = &h.rs.correlations()[0].1;
        assert_eq!(c.kind, CorrelationType::ValueCount);
        assert_eq!(c.value_fields, vec!["TargetUserName"]);
        assert!(c.generate);

        let h = Harness::new(SMB_ALIASES);
        let c = &h.rs.correlations()[0].1;
        assert_eq!(c.field_for("attacker_ip", RuleRef::Rule(RuleId(0))), "SourceIp");
        assert_eq!(c.field_for("attacker_ip", RuleRef::Rule(RuleId(1))), "IpAddress");
        assert_eq!(c.field_for("Computer", RuleRef::Rule(RuleId(1))), "Computer");
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("30s").unwrap(), SignedDuration::from_secs(30));
        assert_eq!(parse_timespan("5m").unwrap(), SignedDuration::from_mins(5));
        assert_eq!(parse_timespan("1h").unwrap(), SignedDuration::from_hours(1));
        assert_eq!(parse_timespan("2d").unwrap(), SignedDuration::from_hours(48));
        assert_eq!(parse_timespan("1w").unwrap(), SignedDuration::from_hours(168));
        for (bad, why) in [
            ("5", "missing unit"),
            ("5x", "unknown unit `x`"),
            ("5 min", "unknown unit ` min`"),
            ("m", "expected a number"),
            ("0s", "greater than zero"),
            ("1M", "months"),
            ("-5m", "expected a number"),
            ("99999999999999999999d", "too large"),
            ("9999999w", "too long"),
        ] {
            let e = parse_timespan(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn count_conditions() {
        let range = |yaml: &str| {
            let Json::Object(m) = serde_saphyr::from_str::<Json>(yaml).unwrap() else { panic!() };
            parse_count_condition(&m).map(|(r, _)| r)
        };
        assert_eq!(range("gt: 100\nlte: 200").unwrap(), CountRange { min: 101, max: Some(200) });
        assert_eq!(range("lt: 3").unwrap(), CountRange { min: 0, max: Some(2) });
        assert_eq!(range("eq: 4").unwrap(), CountRange { min: 4, max: Some(4) });
        assert_eq!(range("gte: '7'").unwrap(), CountRange { min: 7, max: None });
        assert_eq!(CountRange { min: 101, max: Some(200) }.to_string(), ">= 101 and <= 200");
        for (bad, why) in [
            ("gte: -1", "whole number"),
            ("gte: 2.5", "whole number"),
            ("gte: many", "whole number"),
            ("gt: 1\ngte: 2", "cannot be combined"),
            ("eq: 1\nlt: 5", "cannot be combined"),
            ("gte: 10\nlte: 5", "range is empty"),
            ("lt: 0", "never be met"),
            ("above: 5", "unknown key `above`"),
            ("field: x", "needs one of"),
        ] {
            let e = range(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    /// Loads `base` plus one correlation document and returns the correlation's error.
    fn correlation_error(correlation: &str) -> String {
        let base = "title: Failed logon\nname: failed_logon\nlogsource: {product: windows, service: security}\ndetection: {sel: {EventID: 4625}, condition: sel}\n---\ntitle: Successful logon\nname: successful_logon\nlogsource: {product: windows, service: security}\ndetection: {sel: {EventID: 4624}, condition: sel}\n---\ntitle: Correlation\n";
        let mut b = RuleSetBuilder::new();
        b.add_yaml("c.yml", &format!("{base}{correlation}"));
        let rs = b.build();
        assert_eq!(rs.report().loaded, 2);
        assert_eq!(rs.report().correlations, 0, "expected an error for:\n{correlation}");
        assert_eq!(rs.report().failed.len(), 1);
        assert_eq!(rs.report().failed[0].title.as_deref(), Some("Correlation"));
        rs.report().failed[0].error.to_string()
    }

    #[test]
    fn invalid_correlation_rules_are_reported_clearly() {
        let cases = [
            ("correlation: {type: event_count, rules: [failed_logon], condition: {gte: 5}}", "missing `timespan`"),
            (
                "correlation: {type: event_count, rules: [failed_logon], timespan: 5x, condition: {gte: 5}}",
                "unknown unit `x`",
            ),
            (
                "correlation: {type: event_count, rules: [failed_logon], timespan: 5, condition: {gte: 5}}",
                "missing unit",
            ),
            (
                "correlation: {type: event_cnt, rules: [failed_logon], timespan: 5m, condition: {gte: 5}}",
                "unknown type `event_cnt`",
            ),
            (
                "correlation: {type: value_sum, rules: [failed_logon], timespan: 5m, condition: {gte: 5, field: x}}",
                "unsupported: correlation type `value_sum`",
            ),
            ("correlation: {rules: [failed_logon], timespan: 5m, condition: {gte: 5}}", "missing `type`"),
            ("correlation: {type: event_count, timespan: 5m, condition: {gte: 5}}", "missing `rules`"),
            ("correlation: {type: event_count, rules: [], timespan: 5m, condition: {gte: 5}}", "`rules` is empty"),
            (
                "correlation: {type: event_count, rules: [failed_logon], timespan: 5m}",
                "event_count needs a `condition`",
            ),
            (
                "correlation: {type: event_count, rules: [failed_logon], timespan: 5m, condition: '> 5'}",
                "must be a map",
            ),
            ("correlation: {type: event_count, rules: [failed_logon], timespan: 5m, condition: {}}", "needs one of"),
            (
                "correlation: {type: event_count, rules: [failed_logon], timespan: 5m, condition: {gte: -2}}",
                "whole number",
            ),
            (
                "correlation: {type: value_count, rules: [failed_logon], timespan: 5m, condition: {gte: 5}}",
                "value_count needs `field`",
            ),
            (
                "correlation: {type: event_count, rules: [failed_logon], timespan: 5m, condition: {gte: 5, field: User}}",
                "only used by value_count",
            ),
            (
                "correlation: {type: event_count, rules: [failed_login], timespan: 5m, condition: {gte: 5}}",
                "unknown rule `failed_login`",
            ),
            (
                "correlation: {type: event_count, rules: [failed_logon], group_by: [User], timespan: 5m, condition: {gte: 5}}",
                "unknown key `group_by`",
            ),
            (
                "correlation: {type: event_count, rules: [failed_logon], group-by: {a: b}, timespan: 5m, condition: {gte: 5}}",
                "`group-by` must be a list",
            ),
            (
                "correlation: {type: event_count, rules: [failed_logon], timespan: 5m, condition: {gte: 5}, generate: maybe}",
                "`generate` must be true or false",
            ),
            (
                "correlation: {type: temporal, rules: [failed_logon, successful_logon], timespan: 5m, condition: {gte: 3}}",
                "can never be met",
            ),
            (
                "correlation: {type: temporal_ordered, rules: [failed_logon, successful_logon], timespan: 5m, condition: {gte: 1}}",
                "unsupported: temporal_ordered",
            ),
            (
                "correlation: {type: temporal_ordered, rules: [failed_logon, successful_logon], timespan: 5m, condition: failed_logon or successful_logon}",
                "unsupported: temporal_ordered",
            ),
            (
                "correlation: {type: temporal, rules: [failed_logon, successful_logon], timespan: 5m, condition: failed_logon and logoff}",
                "unknown search `logoff`",
            ),
            (
                "correlation: {type: temporal, rules: [failed_logon], timespan: 5m, aliases: {ip: {successful_logon: IpAddress}}}",
                "not in `rules`",
            ),
            (
                "correlation: {type: temporal, rules: [failed_logon], timespan: 5m, aliases: {ip: IpAddress}}",
                "alias `ip` must map",
            ),
            ("correlation: [event_count]", "not a map"),
        ];
        for (yaml, want) in cases {
            let e = correlation_error(yaml);
            assert!(e.contains(want), "{yaml}\n  gave: {e}\n  want: {want}");
        }
    }

    #[test]
    fn invalid_fixture_reports_each_rule() {
        let mut b = RuleSetBuilder::new();
        b.add_yaml("invalid.yml", INVALID);
        let rs = b.build();
        assert_eq!(rs.report().loaded, 1);
        assert_eq!(rs.report().correlations, 0);
        let expected = [
            ("No timespan", "missing `timespan`"),
            ("Timespan in minutes spelled out", "unknown unit ` minutes`"),
            ("Sum of bytes", "unsupported"),
            ("Distinct users without a field", "value_count needs `field`"),
            ("Reference to a rule that does not exist", "unknown rule `kerberos_preauth_failed`"),
        ];
        assert_eq!(rs.report().failed.len(), expected.len(), "{:?}", rs.report().failed);
        for (title, want) in expected {
            let f = rs.report().failed.iter().find(|f| f.title.as_deref() == Some(title)).unwrap();
            assert!(f.error.to_string().contains(want), "{title}: {}", f.error);
            assert_eq!(&*f.path, "invalid.yml");
        }
    }

    // --- event_count --------------------------------------------------------------------------

    #[test]
    fn five_failed_logons_for_one_user_fire_once() {
        let mut h = Harness::new(BRUTE_FORCE);
        h.feed((0..4).map(|i| failed(i + 1, i as i64 * 30, "alice", "10.0.0.5")));
        assert!(h.hits.is_empty(), "four is below the threshold");
        h.feed([failed(5, 150, "alice", "10.0.0.9")]);
        assert_eq!(h.hits.len(), 1);
        let hit = &h.hits[0];
        assert_eq!(group(hit), [("TargetUserName", "alice")]);
        assert_eq!((hit.start, hit.end, hit.count), (at(0), at(150), 5));
        assert_eq!(hit.evidence.len(), 5);
        assert_eq!(hit.evidence[0].position, Position::Line(1));
        assert_eq!(hit.evidence[4].position, Position::Line(5));
        assert_eq!(hit.evidence[0].source.name, "Security.evtx");
        assert_eq!(hit.evidence[0].rule, RuleId(0));
        h.flush();
        assert_eq!(h.hits.len(), 1);
    }

    #[test]
    fn failed_logons_spread_beyond_the_timespan_do_not_fire() {
        let mut h = Harness::new(BRUTE_FORCE);
        // Five failures, two minutes apart: never five within five minutes.
        h.feed((0..5).map(|i| failed(i + 1, i as i64 * 120, "alice", "10.0.0.5")));
        h.flush();
        assert!(h.hits.is_empty());
    }

    #[test]
    fn failed_logons_for_different_users_do_not_add_up() {
        let mut h = Harness::new(BRUTE_FORCE);
        h.feed((0..8).map(|i| failed(i + 1, i as i64, if i % 2 == 0 { "alice" } else { "bob" }, "10.0.0.5")));
        h.flush();
        assert!(h.hits.is_empty());
    }

    #[test]
    fn window_slides() {
        let mut h = Harness::new(BRUTE_FORCE);
        // At 0, 100, 200, 310, 320, 330: the first two fall out of the window before the fifth.
        h.feed([0, 100, 200, 310, 320].into_iter().enumerate().map(|(i, s)| failed(i as u64, s, "alice", "ip")));
        assert!(h.hits.is_empty());
        h.feed([failed(9, 330, "alice", "ip")]);
        assert_eq!(h.hits.len(), 1);
        assert_eq!((h.hits[0].start, h.hits[0].count), (at(100), 5));
        // Inclusive: events exactly `timespan` apart are within it.
        let mut h = Harness::new(BRUTE_FORCE);
        h.feed([0, 1, 2, 3, 300].into_iter().enumerate().map(|(i, s)| failed(i as u64, s, "alice", "ip")));
        assert_eq!(h.hits.len(), 1);
    }

    #[test]
    fn one_burst_one_hit_and_a_later_burst_another() {
        let mut h = Harness::new(BRUTE_FORCE);
        h.feed((0..12).map(|i| failed(i, i as i64 * 10, "alice", "ip")));
        assert_eq!(h.hits.len(), 1);
        assert_eq!(h.engine.stats().absorbed, 7);
        h.feed((0..6).map(|i| failed(100 + i, 1800 + i as i64 * 10, "alice", "ip")));
        assert_eq!(h.hits.len(), 2);
        assert_eq!(h.hits[1].start, at(1800));
        assert_eq!(h.hits[1].evidence.len(), 5);
    }

    #[test]
    fn one_event_matching_two_referenced_rules_counts_once() {
        let yaml = "title: A\nname: a\nlogsource: {product: windows, service: security}\ndetection: {sel: {EventID: 4625}, condition: sel}\n---\ntitle: B\nname: b\nlogsource: {product: windows, service: security}\ndetection: {sel: {TargetUserName: alice}, condition: sel}\n---\ntitle: C\ncorrelation: {type: event_count, rules: [a, b], group-by: [TargetUserName], timespan: 5m, condition: {gte: 3}}\n";
        let mut h = Harness::new(yaml);
        h.feed((0..2).map(|i| failed(i, i as i64, "alice", "ip")));
        assert!(h.hits.is_empty());
        h.feed([failed(3, 3, "alice", "ip")]);
        assert_eq!(h.hits.len(), 1);
        assert_eq!(h.hits[0].count, 3);
    }

    // --- value_count --------------------------------------------------------------------------

    #[test]
    fn one_address_failing_for_three_users_is_password_spraying() {
        let mut h = Harness::new(SPRAYING);
        h.feed([
            failed(1, 0, "alice", "10.0.0.66"),
            failed(2, 60, "alice", "10.0.0.66"),
            failed(3, 120, "bob", "10.0.0.66"),
            failed(4, 130, "dave", "10.0.0.7"),
        ]);
        assert!(h.hits.is_empty());
        h.feed([failed(5, 400, "carol", "10.0.0.66")]);
        assert_eq!(h.hits.len(), 1);
        let hit = &h.hits[0];
        assert_eq!(group(hit), [("IpAddress", "10.0.0.66")]);
        assert_eq!(hit.count, 3);
        assert_eq!(hit.values, ["alice", "bob", "carol"]);
        // One event per distinct value: alice's newest occurrence.
        assert_eq!(
            hit.evidence.iter().map(|e| e.position).collect::<Vec<_>>(),
            [Position::Line(2), Position::Line(3), Position::Line(5)]
        );
        assert_eq!(hit.start, at(60));
    }

    #[test]
    fn repeated_user_or_spread_out_users_are_not_spraying() {
        let mut h = Harness::new(SPRAYING);
        h.feed((0..10).map(|i| failed(i, i as i64 * 5, "alice", "10.0.0.66")));
        h.feed([failed(20, 0, "bob", "10.0.0.67"), failed(21, 1, "carol", "10.0.0.68")]);
        // Three users, but 11 minutes from first to last.
        h.feed([
            failed(30, 1000, "u1", "10.0.0.99"),
            failed(31, 1300, "u2", "10.0.0.99"),
            failed(32, 1660, "u3", "10.0.0.99"),
        ]);
        h.flush();
        assert!(h.hits.is_empty());
    }

    #[test]
    fn events_without_the_group_or_value_field_are_counted_and_skipped() {
        let mut h = Harness::new(SPRAYING);
        h.feed([security(1, 0, 4625, &[("TargetUserName", "alice")])]);
        h.feed([security(2, 0, 4625, &[("IpAddress", "10.0.0.1")])]);
        let mut no_time = failed(3, 0, "bob", "10.0.0.1");
        no_time.timestamp = None;
        h.feed([no_time]);
        let s = h.engine.stats();
        assert_eq!((s.missing_group_field, s.missing_value_field, s.no_timestamp), (1, 1, 1));
        assert!(h.hits.is_empty());
    }

    // --- temporal -----------------------------------------------------------------------------

    #[test]
    fn failed_then_successful_logon_from_one_address() {
        let mut h = Harness::new(FAILED_AND_SUCCESS);
        h.feed([failed(1, 0, "alice", "10.0.0.66"), success(2, 300, "alice", "10.0.0.66")]);
        let unordered = h.hits_of("Failed and successful logons from one address");
        let ordered = h.hits_of("Successful logon after failed logons from one address");
        assert_eq!(unordered.len(), 1);
        assert_eq!(ordered.len(), 1);
        assert_eq!(group(ordered[0]), [("IpAddress", "10.0.0.66")]);
        assert_eq!((ordered[0].start, ordered[0].end, ordered[0].count), (at(0), at(300), 2));
        assert_eq!(ordered[0].evidence.iter().map(|e| e.rule).collect::<Vec<_>>(), [RuleId(0), RuleId(1)]);
    }

    #[test]
    fn temporal_negatives_other_address_or_too_late() {
        let mut h = Harness::new(FAILED_AND_SUCCESS);
        h.feed([failed(1, 0, "alice", "10.0.0.66"), success(2, 60, "alice", "10.0.0.67")]);
        h.feed([failed(3, 1000, "alice", "10.0.0.70"), success(4, 1000 + 601, "alice", "10.0.0.70")]);
        h.flush();
        assert!(h.hits.is_empty(), "{:?}", h.hits);
    }

    #[test]
    fn temporal_ordered_needs_the_listed_order() {
        let mut h = Harness::new(FAILED_AND_SUCCESS);
        h.feed([success(1, 0, "alice", "10.0.0.66"), failed(2, 60, "alice", "10.0.0.66")]);
        assert_eq!(h.hits_of("Failed and successful logons from one address").len(), 1, "any order");
        assert!(h.hits_of("Successful logon after failed logons from one address").is_empty(), "wrong order");
        // Then the right order, later: the ordered rule fires, using the failure at 60.
        h.feed([success(3, 120, "alice", "10.0.0.66")]);
        let ordered = h.hits_of("Successful logon after failed logons from one address");
        assert_eq!(ordered.len(), 1);
        assert_eq!(ordered[0].start, at(60));
    }

    #[test]
    fn temporal_ordered_keeps_the_latest_start() {
        let yaml = "title: A\nname: a\nlogsource: {product: windows, service: security}\ndetection: {sel: {EventID: 1}, condition: sel}\n---\ntitle: B\nname: b\nlogsource: {product: windows, service: security}\ndetection: {sel: {EventID: 2}, condition: sel}\n---\ntitle: C\nname: c\nlogsource: {product: windows, service: security}\ndetection: {sel: {EventID: 3}, condition: sel}\n---\ntitle: ABC\ncorrelation: {type: temporal_ordered, rules: [a, b, c], timespan: 1m}\n";
        let mut h = Harness::new(yaml);
        let e = |line: u64, secs: i64, id: i64| security(line, secs, id, &[]);
        // a@0 b@10 a@50 c@65: the chain from a@0 is too long (65s), but a@50 has no b after it.
        h.feed([e(1, 0, 1), e(2, 10, 2), e(3, 50, 1), e(4, 65, 3)]);
        assert!(h.hits.is_empty());
        // b@70 c@80: a@50 → b@70 → c@80 within a minute.
        h.feed([e(5, 70, 2), e(6, 80, 3)]);
        assert_eq!(h.hits.len(), 1);
        assert_eq!((h.hits[0].start, h.hits[0].end), (at(50), at(80)));
        assert_eq!(h.hits[0].group, []);
    }

    #[test]
    fn temporal_with_count_and_expression_conditions() {
        let base = "title: A\nname: a\nlogsource: {product: windows, service: security}\ndetection: {sel: {EventID: 1}, condition: sel}\n---\ntitle: B\nname: b\nlogsource: {product: windows, service: security}\ndetection: {sel: {EventID: 2}, condition: sel}\n---\ntitle: C\nname: c\nlogsource: {product: windows, service: security}\ndetection: {sel: {EventID: 3}, condition: sel}\n---\n";
        let e = |line: u64, secs: i64, id: i64| security(line, secs, id, &[("Computer", "ws1")]);
        // Two of the three within the timespan.
        let mut h = Harness::new(&format!(
            "{base}title: Two of three\ncorrelation: {{type: temporal, rules: [a, b, c], group-by: [Computer], timespan: 1m, condition: {{gte: 2}}}}\n"
        ));
        h.feed([e(1, 0, 3), e(2, 30, 1)]);
        assert_eq!(h.hits.len(), 1);
        assert_eq!(h.hits[0].count, 2);
        // An expression without `not` is decided as soon as it holds.
        let mut h = Harness::new(&format!(
            "{base}title: A and B or C\ncorrelation: {{type: temporal, rules: [a, b, c], group-by: [Computer], timespan: 1m, condition: a and (b or c)}}\n"
        ));
        h.feed([e(1, 0, 1)]);
        assert!(h.hits.is_empty());
        h.feed([e(2, 10, 3)]);
        assert_eq!(h.hits.len(), 1);
        // With `not`, only at the end of the window.
        let mut h = Harness::new(&format!(
            "{base}title: A without C\ncorrelation: {{type: temporal, rules: [a, b, c], group-by: [Computer], timespan: 1m, condition: a and b and not c}}\n"
        ));
        h.feed([e(1, 0, 1), e(2, 10, 2)]);
        assert!(h.hits.is_empty());
        h.feed([e(3, 59, 3)]);
        h.feed([security(4, 100, 1, &[("Computer", "ws2")]), security(5, 110, 2, &[("Computer", "ws2")])]);
        h.flush();
        assert_eq!(h.hits.len(), 1, "only ws2, which had no C");
        assert_eq!(group(&h.hits[0]), [("Computer", "ws2")]);
        assert_eq!((h.hits[0].start, h.hits[0].end), (at(100), at(160)));
    }

    #[test]
    fn aliases_join_different_fields_of_different_rules() {
        let mut h = Harness::new(SMB_ALIASES);
        let smb = |line: u64, secs: i64, src: &str| {
            windows(
                line,
                secs,
                "Microsoft-Windows-Sysmon/Operational",
                3,
                &[("SourceIp", src), ("DestinationPort", "445"), ("Initiated", "true")],
            )
        };
        h.feed([smb(1, 0, "10.1.1.7"), failed(2, 30, "administrator", "10.1.1.8")]);
        assert!(h.hits.is_empty(), "different addresses");
        h.feed([failed(3, 60, "administrator", "10.1.1.7")]);
        assert_eq!(h.hits.len(), 1);
        assert_eq!(group(&h.hits[0]), [("attacker_ip", "10.1.1.7")]);
        assert_eq!(h.hits[0].evidence.len(), 2);
    }

    // --- conditions with an upper bound -------------------------------------------------------

    #[test]
    fn range_condition_is_decided_at_the_end_of_the_window() {
        let mut h = Harness::new(SLOW_BRUTE);
        // alice: 4 failures (within 3..=5) → a hit once the window [0, 600] is over.
        h.feed((0..4).map(|i| failed(i, i as i64 * 100, "alice", "ip")));
        // bob: 7 failures: too many for this rule.
        h.feed((0..7).map(|i| failed(10 + i, 350 + i as i64, "bob", "ip")));
        // carol: 2 failures: too few.
        h.feed([failed(20, 400, "carol", "ip"), failed(21, 410, "carol", "ip")]);
        assert!(h.hits.is_empty(), "not decided before the window ends");
        h.feed([failed(30, 600, "dave", "ip")]);
        assert!(h.hits.is_empty(), "600 is still within alice's window");
        h.feed([failed(31, 601, "dave", "ip")]);
        assert_eq!(h.hits.len(), 1);
        assert_eq!(group(&h.hits[0]), [("TargetUserName", "alice")]);
        assert_eq!((h.hits[0].start, h.hits[0].end, h.hits[0].count), (at(0), at(600), 4));
        h.flush();
        assert_eq!(h.hits.len(), 1, "bob, carol and dave do not match");
        assert_eq!(h.engine.groups(), 0);
    }

    #[test]
    fn time_passing_without_events_decides_windows() {
        let mut h = Harness::new(SLOW_BRUTE);
        h.feed((0..3).map(|i| failed(i, i as i64, "alice", "ip")));
        h.engine.advance(at(500), &mut h.hits);
        assert!(h.hits.is_empty());
        h.engine.advance(at(700), &mut h.hits);
        assert_eq!(h.hits.len(), 1);
    }

    #[test]
    fn fewer_than_and_value_count_with_an_upper_bound() {
        let base = "title: Failed logon\nname: failed_logon\nlogsource: {product: windows, service: security}\ndetection: {sel: {EventID: 4625}, condition: sel}\n---\n";
        let mut h = Harness::new(&format!(
            "{base}title: Few\ncorrelation: {{type: event_count, rules: [failed_logon], group-by: [IpAddress], timespan: 1m, condition: {{lt: 2}}}}\n"
        ));
        h.feed([failed(1, 0, "a", "1.1.1.1"), failed(2, 0, "a", "2.2.2.2"), failed(3, 5, "a", "2.2.2.2")]);
        h.flush();
        assert_eq!(h.hits.len(), 1);
        assert_eq!(group(&h.hits[0]), [("IpAddress", "1.1.1.1")]);

        let mut h = Harness::new(&format!(
            "{base}title: Exactly two users\ncorrelation: {{type: value_count, rules: [failed_logon], group-by: [IpAddress], timespan: 1m, condition: {{eq: 2, field: TargetUserName}}}}\n"
        ));
        h.feed([failed(1, 0, "a", "1.1.1.1"), failed(2, 1, "b", "1.1.1.1"), failed(3, 2, "b", "1.1.1.1")]);
        h.feed([failed(4, 0, "a", "2.2.2.2"), failed(5, 1, "b", "2.2.2.2"), failed(6, 2, "c", "2.2.2.2")]);
        h.flush();
        assert_eq!(h.hits.len(), 1);
        assert_eq!(group(&h.hits[0]), [("IpAddress", "1.1.1.1")]);
        assert_eq!(h.hits[0].values, ["a", "b"]);
    }

    // --- chains, bounds, generate -------------------------------------------------------------

    /// The base rules of `yaml` in a rule set, and its correlation rules resolved together.
    fn chained(yaml: &str) -> (RuleSet, Vec<(LoadedRule, CorrelationRule)>, Vec<RuleFailure>) {
        let mut b = RuleSetBuilder::new();
        b.add_yaml("chain.yml", yaml);
        let rs = b.build();
        let base: Vec<LoadedRule> =
            rs.rules().map(|(_, r)| LoadedRule { rule: r.rule.clone(), path: r.path.clone() }).collect();
        let pending: Vec<(Arc<str>, Rule)> = parse_rules(yaml)
            .into_iter()
            .flatten()
            .filter(|r| r.correlation.is_some())
            .map(|r| ("chain.yml".into(), r))
            .collect();
        let (done, failed) = resolve_all(pending, &base);
        (rs, done, failed)
    }

    #[test]
    fn chained_correlations_resolve_in_any_order() {
        let (rs, correlations, failures) = chained(CHAINED);
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(correlations.len(), 2);
        // The outer rule is first in the file but comes after the rule it refers to.
        assert_eq!(correlations[0].0.rule.name.as_deref(), Some("many_failed_logons"));
        assert_eq!(correlations[1].1.rules, vec![RuleRef::Correlation(0), RuleRef::Rule(RuleId(1))]);
        // Without chain support (`from_rule`), the outer rule's reference is unknown.
        let outer = &correlations[1].0.rule;
        let base: Vec<LoadedRule> =
            rs.rules().map(|(_, r)| LoadedRule { rule: r.rule.clone(), path: r.path.clone() }).collect();
        let e = CorrelationRule::from_rule(outer, &base).unwrap_err().to_string();
        assert!(e.contains("unknown rule `many_failed_logons`"), "{e}");

        let mut engine = CorrelationEngine::new(&correlations);
        assert!(!engine.standalone(RuleRef::Rule(RuleId(0))));
        assert!(engine.standalone(RuleRef::Correlation(1)));
        let mut hits = Vec::new();
        let mut ids = Vec::new();
        let events = (0..3)
            .map(|i| failed(i, i as i64 * 20, "alice", "10.0.0.66"))
            .chain([success(9, 200, "bob", "10.0.0.66"), success(10, 240, "alice", "10.0.0.70")]);
        for e in events {
            ids.clear();
            rs.matches(&e, &mut ids);
            engine.observe_all(&ids, &e, &mut hits);
        }
        engine.flush(&mut hits);
        assert_eq!(hits.iter().map(|h| h.correlation).collect::<Vec<_>>(), [0, 1]);
        let outer = &hits[1];
        assert_eq!(group(outer), [("TargetUserName", "alice")]);
        assert_eq!((outer.start, outer.end), (at(40), at(240)));
        assert_eq!(outer.evidence.len(), 4, "three failures and the success");
    }

    #[test]
    fn chains_report_unknown_failed_and_cyclic_references() {
        let base = "title: Failed logon\nname: failed_logon\nlogsource: {product: windows, service: security}\ndetection: {sel: {EventID: 4625}, condition: sel}\n---\n";
        let yaml = format!(
            "{base}title: First\nname: first\ncorrelation: {{type: temporal, rules: [failed_logon, second], timespan: 1m}}\n---\ntitle: Second\nname: second\ncorrelation: {{type: temporal, rules: [first], timespan: 1m}}\n---\ntitle: Bad\nname: bad\ncorrelation: {{type: temporal, rules: [failed_logon], timespan: 1 m}}\n---\ntitle: Uses bad\ncorrelation: {{type: event_count, rules: [bad], timespan: 1m, condition: {{gte: 2}}}}\n---\ntitle: Uses nothing\ncorrelation: {{type: event_count, rules: [nothing], timespan: 1m, condition: {{gte: 2}}}}\n"
        );
        let (_, done, failures) = chained(&yaml);
        assert!(done.is_empty());
        let error = |t: &str| {
            failures
                .iter()
                .find(|f| f.title.as_deref() == Some(t))
                .unwrap_or_else(|| panic!("{t}: {failures:?}"))
                .error
                .to_string()
        };
        assert!(error("First").contains("cycle"));
        assert!(error("Second").contains("cycle"));
        assert!(error("Bad").contains("invalid timespan"));
        assert!(error("Uses bad").contains("failed to load"));
        assert!(error("Uses nothing").contains("unknown rule `nothing`"));
    }

    #[test]
    fn groups_are_bounded() {
        let limits = Limits { max_groups: 16, max_window_entries: 3, max_evidence: 2 };
        let mut h = Harness::with_limits(BRUTE_FORCE, limits);
        h.feed((0..100).map(|i| failed(i, i as i64, &format!("user{i}"), "ip")));
        assert!(h.engine.groups() <= 16);
        assert!(h.engine.stats().evicted_groups >= 84);
        // Windows hold at most three timestamps; merged entries under-count, never over-count.
        h.feed((0..6).map(|i| failed(200 + i, 200 + i as i64, "zed", "ip")));
        assert!(h.engine.stats().merged_entries > 0);
        assert_eq!(h.hits.len(), 1);
        assert_eq!(h.hits[0].evidence.len(), 2);
        // Time passing drops idle groups.
        h.feed([failed(300, 10_000, "late", "ip")]);
        assert_eq!(h.engine.groups(), 1);
    }

    #[test]
    fn out_of_order_events_are_counted() {
        let mut h = Harness::new(BRUTE_FORCE);
        h.feed([failed(1, 100, "alice", "ip"), failed(2, 50, "alice", "ip")]);
        assert_eq!(h.engine.stats().late, 1);
        h.feed((0..3).map(|i| failed(3 + i, 101 + i as i64, "alice", "ip")));
        assert_eq!(h.hits.len(), 1);
        assert_eq!(h.hits[0].start, at(50));
    }

    #[test]
    fn unreferenced_rules_cost_nothing() {
        let yaml = format!(
            "{BRUTE_FORCE}---\ntitle: Logoff\nlogsource: {{product: windows, service: security}}\ndetection: {{sel: {{EventID: 4634}}, condition: sel}}\n"
        );
        let mut h = Harness::new(&yaml);
        let mut e = security(1, 0, 4634, &[]);
        e.timestamp = None;
        h.feed([e]);
        assert_eq!(h.engine.stats(), &CorrelationStats::default());
        assert!(h.engine.standalone(RuleRef::Rule(RuleId(1))));
        assert!(!h.engine.is_referenced(RuleRef::Rule(RuleId(1))));
    }

    // --- live streams: time advanced in steps, state saved and restored ----------------------

    /// Failures and successes of a few users from a few addresses, seconds apart, sorted.
    fn mixed_events(seed: u64, n: u64) -> Vec<Event> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut t = 0i64;
        (0..n)
            .map(|i| {
                t += next(90) as i64;
                let user = ["alice", "bob", "carol"][next(3) as usize];
                let ip = ["10.0.0.1", "10.0.0.2"][next(2) as usize];
                if next(4) == 0 { success(i, t, user, ip) } else { failed(i, t, user, ip) }
            })
            .collect()
    }

    fn run_in_steps(rs: &RuleSet, events: &[Event], cuts: &[usize], restart: bool) -> Vec<CorrelationHit> {
        let mut engine = CorrelationEngine::new(rs.correlations());
        let mut hits = Vec::new();
        let mut ids = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if cuts.contains(&i) {
                // The watermark: just before this event.
                if let Some(t) = e.timestamp {
                    engine.advance(t.checked_sub(SignedDuration::from_secs(1)).unwrap(), &mut hits);
                }
                if restart {
                    let json = serde_json::to_string(&engine.saved()).unwrap();
                    engine = CorrelationEngine::new(rs.correlations());
                    engine.restore(serde_json::from_str(&json).unwrap()).unwrap();
                }
            }
            ids.clear();
            rs.matches(e, &mut ids);
            engine.observe_all(&ids, e, &mut hits);
        }
        engine.flush(&mut hits);
        hits
    }

    fn sorted(mut hits: Vec<CorrelationHit>) -> Vec<String> {
        let mut out: Vec<String> = hits.drain(..).map(|h| format!("{h:?}")).collect();
        out.sort();
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn advancing_time_and_restarting_change_no_hit(
            seed in 0u64..1_000_000,
            cuts in proptest::collection::vec(0usize..120, 0..6),
            restart in proptest::bool::ANY,
        ) {
            let mut b = RuleSetBuilder::new();
            b.add_yaml("mixed.yml", MIXED);
            let rs = b.build();
            proptest::prop_assert!(rs.report().failed.is_empty());
            let events = mixed_events(seed, 120);
            let whole = sorted(run_in_steps(&rs, &events, &[], false));
            let steps = sorted(run_in_steps(&rs, &events, &cuts, restart));
            proptest::prop_assert!(!whole.is_empty());
            proptest::prop_assert_eq!(whole, steps);
        }
    }

    #[test]
    fn the_mixed_fixture_fires_every_rule() {
        let mut b = RuleSetBuilder::new();
        b.add_yaml("mixed.yml", MIXED);
        let rs = b.build();
        let mut fired = HashSet::new();
        for seed in 0..8 {
            fired.extend(run_in_steps(&rs, &mixed_events(seed, 120), &[], false).iter().map(|h| h.correlation));
        }
        assert_eq!(fired.len(), rs.correlations().len(), "{fired:?}");
    }

    #[test]
    fn a_restore_that_does_not_fit_is_refused() {
        let h = Harness::new(BRUTE_FORCE);
        let mut hits = Vec::new();
        let mut engine = CorrelationEngine::new(h.rs.correlations());
        engine.observe(RuleId(0), &failed(1, 0, "alice", "ip"), &mut hits);
        let json = serde_json::to_string(&engine.saved()).unwrap();
        // Another rule set: one more correlation rule.
        let other = Harness::new(FAILED_AND_SUCCESS);
        let mut wrong = CorrelationEngine::new(other.rs.correlations());
        let e = wrong.restore(serde_json::from_str(&json).unwrap()).unwrap_err().to_string();
        assert!(e.contains("correlation rules"), "{e}");
        // Same count, another type of window.
        let slow = Harness::new(SLOW_BRUTE);
        let mut wrong = CorrelationEngine::new(slow.rs.correlations());
        let e = wrong.restore(serde_json::from_str(&json).unwrap()).unwrap_err().to_string();
        assert!(e.contains("does not fit"), "{e}");
        assert!(serde_json::from_str::<SavedEngine>("{\"now\": 3}").is_err());
    }
}
