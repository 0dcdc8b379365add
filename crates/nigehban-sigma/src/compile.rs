//! A detection compiled into matchers, and its evaluation against an event.
//!
//! Every value is turned into the cheapest matcher that is exact for it: plain equality,
//! `contains` / `startswith` / `endswith` with a precompiled substring finder, a regular
//! expression only for values with inner wildcards. Case-insensitive matching (the default)
//! compares lowercased needles with the event's precomputed lowercase text.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use ipnet::IpNet;
use memchr::memmem;
use nigehban_event::{Event, FieldKey, Value};
use regex_automata::meta::Regex;
use regex_syntax::hir::Hir;
use serde_json::Value as Json;

use crate::Error;
use crate::condition::{self, Expr};
use crate::glob::Glob;
use crate::rule::scalar_text;
use crate::value::{self, Part, SigmaString, Utf16};

/// Windash expansion stops at this many variants of one value.
const MAX_WINDASH_VARIANTS: usize = 625;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Lt,
    Lte,
    Gt,
    Gte,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrKind {
    Exact,
    Contains,
    StartsWith,
    EndsWith,
}

/// One compiled value test on one field value.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// Plain text comparison (needle lowercased unless `cased`).
    Str {
        kind: StrKind,
        needle: Box<str>,
        /// For `contains`: the substring finder, built on first use (most rules never meet
        /// an event they could match, and a finder costs some hundred bytes).
        finder: OnceLock<Box<memmem::Finder<'static>>>,
        cased: bool,
        /// For an exact needle that is an integer in canonical form: compared with integer
        /// values directly, without printing them.
        int: Option<i64>,
    },
    /// A value with inner wildcards; `literal` is its longest literal piece (for the
    /// prefilter).
    Glob {
        glob: Glob,
        cased: bool,
        literal: Option<String>,
    },
    /// The `re` modifier: a regular expression matched anywhere in the value.
    /// Shared by the variants of one rule (see [`Regexes`]).
    Regex(Arc<LazyRegex>),
    Cidr(Vec<IpNet>),
    Cmp(CmpOp, f64),
    /// `null`: the field is absent or null.
    Null,
    /// `exists`: the field is present (true) or absent (false).
    Exists(bool),
    /// `fieldref`: compared with the value of another field of the same event.
    FieldRef {
        other: FieldKey,
        kind: StrKind,
        cased: bool,
    },
    /// Expansions of one value (windash, base64offset): any of them.
    Any(Vec<Matcher>),
}

/// A field (or, with `field: None`, any field: a keyword search) and its values.
#[derive(Clone, Debug)]
pub struct FieldItem {
    pub field: Option<Box<str>>,
    /// `field` prepared for lookups (empty for keywords).
    pub key: FieldKey,
    pub matchers: Vec<Matcher>,
    /// `all`: every value must match (default: any).
    pub all: bool,
}

/// One named search of a detection.
#[derive(Clone, Debug)]
pub enum Search {
    /// A map: all its items must match.
    All(Vec<FieldItem>),
    /// A list of maps: any of them.
    Any(Vec<Vec<FieldItem>>),
}

#[derive(Clone, Debug)]
pub struct CompiledDetection {
    pub names: Vec<String>,
    pub searches: Vec<Search>,
    pub condition: Expr,
}

impl CompiledDetection {
    /// Compiles a `detection` map. `map_field` renames fields for a log source (e.g. Sysmon's
    /// `Image` to Security 4688's `NewProcessName`).
    pub fn compile(detection: &Json, map_field: &dyn Fn(&str) -> String) -> Result<CompiledDetection, Error> {
        Self::compile_sharing(detection, map_field, &mut Regexes::default())
    }

    /// [`CompiledDetection::compile`], with the regular expressions of `regexes` reused and
    /// those compiled added to it: the variants of one rule (one per log source it maps to)
    /// share them.
    pub fn compile_sharing(
        detection: &Json,
        map_field: &dyn Fn(&str) -> String,
        regexes: &mut Regexes,
    ) -> Result<CompiledDetection, Error> {
        let Json::Object(map) = detection else {
            return Err(Error::Missing("detection (not a map)"));
        };
        let mut names = Vec::new();
        let mut searches = Vec::new();
        let mut conditions: Vec<String> = Vec::new();
        for (name, body) in map {
            if name == "condition" {
                match body {
                    Json::String(s) => conditions.push(s.clone()),
                    Json::Array(items) => {
                        for i in items {
                            conditions.push(scalar_text(i).ok_or(Error::Missing("condition"))?);
                        }
                    }
                    _ => return Err(Error::Missing("condition")),
                }
                continue;
            }
            if name == "timeframe" {
                return Err(Error::Unsupported(
                    "`timeframe` in a detection (Sigma v1 aggregation); use a correlation rule".into(),
                ));
            }
            let search = compile_search(body, map_field, regexes)
                .map_err(|message| Error::Search { search: name.clone(), message })?;
            names.push(name.clone());
            searches.push(search);
        }
        if conditions.is_empty() {
            return Err(Error::Missing("condition"));
        }
        let mut exprs = Vec::new();
        for c in &conditions {
            exprs.push(
                condition::parse(c, &names).map_err(|message| Error::Condition { condition: clip(c, 160), message })?,
            );
        }
        let condition = if exprs.len() == 1 { exprs.remove(0) } else { Expr::Or(exprs) };
        Ok(CompiledDetection { names, searches, condition })
    }

    pub fn matches(&self, event: &Event) -> bool {
        self.eval(&self.condition, event)
    }

    fn eval(&self, expr: &Expr, event: &Event) -> bool {
        match expr {
            Expr::Search(i) => self.searches.get(*i).is_some_and(|s| search_matches(s, event)),
            Expr::Not(e) => !self.eval(e, event),
            Expr::And(items) => items.iter().all(|e| self.eval(e, event)),
            Expr::Or(items) => items.iter().any(|e| self.eval(e, event)),
            Expr::False => false,
        }
    }
}

/// Necessary conditions for a detection to match, as clauses: for each clause, at least one
/// of its facts holds for the event. No clause: no such condition could be derived
/// (negations, regular expressions without literals …) and the rule is always tested. An
/// empty clause can never hold (a condition that is always false).
///
/// The first clause is the most selective one; the others (at most [`MAX_CLAUSES`] in all)
/// are kept only if they are selective too, so that a rule with two strong conditions (an
/// image name and a command-line flag) is tested only when both are met.
pub type Clauses = Vec<Vec<Needle>>;

/// At most this many clauses per detection (see [`Clauses`]).
pub const MAX_CLAUSES: usize = 2;

/// Clauses after the first must rank at least this high (see [`Needle::rank`]): a literal of
/// three bytes or more. Weaker facts hold for most events of a bucket and would only add work.
const MIN_EXTRA_RANK: usize = 3;

/// One fact about an event that the prefilter can check cheaply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Needle {
    /// This lowercase literal occurs in a text value of the field, named as the rule names it
    /// (`None` for keywords, which may be in any field).
    Literal { text: String, field: Option<Box<str>> },
    /// The field, named as the rule names it, is present with a value other than null.
    Present(Box<str>),
}

/// Fields that the rule index mostly settles already: every event of a bucket has the same
/// channel and event id, and nearly always the same provider (each System 7045 event is from
/// the Service Control Manager). A literal in one of them lets nearly every event of the
/// bucket through.
const ROUTING_FIELDS: [&str; 4] = ["Channel", "EventID", "Provider_Name", "Provider_Guid"];

/// A [`Needle`] while a detection's clauses are worked out: borrowed from its matchers, so
/// that the facts left out (most of a long list's, once a stronger condition is found) are
/// neither copied nor freed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Fact<'a> {
    Literal { text: Cow<'a, str>, field: Option<&'a str> },
    Present(&'a str),
}

/// Clauses of [`Fact`]s (see [`Clauses`]).
type Facts<'a> = Vec<Vec<Fact<'a>>>;

impl Fact<'_> {
    /// How selective the fact is likely to be: the length of a literal; a field's presence
    /// ranks below any literal, and a fact about a routing field below both.
    fn rank(&self) -> usize {
        let routing = |f: &str| ROUTING_FIELDS.iter().any(|r| r.eq_ignore_ascii_case(f));
        match self {
            Fact::Literal { field: Some(f), .. } | Fact::Present(f) if routing(f) => 0,
            Fact::Literal { text, .. } => text.len(),
            Fact::Present(_) => 1,
        }
    }

    fn to_needle(&self) -> Needle {
        match self {
            Fact::Literal { text, field } => Needle::Literal { text: (**text).to_owned(), field: field.map(Box::from) },
            Fact::Present(f) => Needle::Present((*f).into()),
        }
    }
}

impl CompiledDetection {
    /// Facts about the event that must hold for the detection to match (see [`Clauses`]).
    pub fn needle_clauses(&self) -> Clauses {
        let clauses = self.expr_clauses(&self.condition);
        clauses
            .iter()
            .enumerate()
            .filter(|(i, c)| *i == 0 || clause_rank(c) >= MIN_EXTRA_RANK)
            .map(|(_, c)| c.iter().map(Fact::to_needle).collect())
            .collect()
    }

    fn expr_clauses(&self, expr: &Expr) -> Facts<'_> {
        match expr {
            Expr::Search(i) => self.searches.get(*i).map(search_clauses).unwrap_or_default(),
            Expr::Not(_) => Vec::new(),
            Expr::False => vec![Vec::new()],
            Expr::And(items) => strongest(items.iter().flat_map(|e| self.expr_clauses(e))),
            Expr::Or(items) => any_of(items.iter().map(|e| self.expr_clauses(e))),
        }
    }
}

impl CompiledDetection {
    /// The integer values `field` must have for the detection to match (e.g. the `EventID`s
    /// a rule tests), when the condition requires one; `None` when it does not.
    pub fn required_ints(&self, field: &str) -> Option<Vec<i64>> {
        self.expr_ints(&self.condition, &field.to_ascii_lowercase())
    }

    fn expr_ints(&self, expr: &Expr, field: &str) -> Option<Vec<i64>> {
        match expr {
            Expr::Search(i) => match self.searches.get(*i)? {
                Search::All(items) => smallest(items.iter().map(|it| item_ints(it, field))),
                Search::Any(maps) => {
                    let mut out = Vec::new();
                    for items in maps {
                        out.extend(smallest(items.iter().map(|it| item_ints(it, field)))?);
                    }
                    Some(out)
                }
            },
            Expr::Not(_) => None,
            Expr::False => Some(Vec::new()),
            Expr::And(items) => smallest(items.iter().map(|e| self.expr_ints(e, field))),
            Expr::Or(items) => {
                let mut out = Vec::new();
                for e in items {
                    out.extend(self.expr_ints(e, field)?);
                }
                Some(out)
            }
        }
    }
}

fn smallest(sets: impl Iterator<Item = Option<Vec<i64>>>) -> Option<Vec<i64>> {
    sets.flatten().min_by_key(Vec::len)
}

/// The integers an item on `field` accepts, if it only accepts exact integers.
fn item_ints(item: &FieldItem, field: &str) -> Option<Vec<i64>> {
    if item.field.is_none() || item.key.lower() != field || item.all {
        return None;
    }
    let mut out = Vec::new();
    for m in &item.matchers {
        match m {
            Matcher::Str { kind: StrKind::Exact, int: Some(n), .. } => out.push(*n),
            _ => return None,
        }
    }
    Some(out)
}

/// How selective a clause is: that of its least selective fact (an empty clause never holds,
/// and ranks above all).
fn clause_rank(clause: &[Fact<'_>]) -> usize {
    clause.iter().map(Fact::rank).min().unwrap_or(usize::MAX)
}

/// The clauses of a conjunction: every conjunct's clauses are necessary; the most selective
/// [`MAX_CLAUSES`] are kept, the first of them the most selective (the last such on a tie).
fn strongest<'a>(clauses: impl Iterator<Item = Vec<Fact<'a>>>) -> Facts<'a> {
    let mut all: Vec<(usize, Vec<Fact<'a>>)> = clauses.map(|c| (clause_rank(&c), c)).collect();
    let Some(best) = all.iter().enumerate().max_by_key(|(_, (rank, _))| *rank).map(|(i, _)| i) else {
        return Vec::new();
    };
    let (_, first) = all.remove(best);
    if first.is_empty() {
        return vec![first];
    }
    // The rest by rank, most selective first (in order of appearance on a tie); a clause that
    // holds whenever a kept one does adds nothing.
    all.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
    let mut out = vec![first];
    for (_, c) in all {
        if out.len() == MAX_CLAUSES {
            break;
        }
        if !out.iter().any(|kept| holds_all(&c, kept)) {
            out.push(c);
        }
    }
    out
}

/// Whether `clause` holds every fact of `kept`.
fn holds_all(clause: &[Fact<'_>], kept: &[Fact<'_>]) -> bool {
    if clause.len().saturating_mul(kept.len()) <= SMALL_PRODUCT {
        return kept.iter().all(|n| clause.contains(n));
    }
    let facts: FastSet<&Fact<'_>> = clause.iter().collect();
    kept.iter().all(|n| facts.contains(n))
}

/// Below this many pairs of facts, comparing each with each is cheaper than hashing.
const SMALL_PRODUCT: usize = 256;

type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// The clauses of a disjunction. If one alternative has none, neither has the whole. Else
/// clause `j` joins every alternative's clause `j` (or its last, if it has fewer): whichever
/// alternative holds, its clause `j` does.
fn any_of<'a>(alternatives: impl Iterator<Item = Facts<'a>>) -> Facts<'a> {
    let alternatives: Vec<Facts<'a>> = alternatives.collect();
    if alternatives.iter().any(Vec::is_empty) {
        return Vec::new();
    }
    let width = alternatives.iter().map(Vec::len).max().unwrap_or(1);
    (0..width)
        .map(|j| {
            let parts = || alternatives.iter().map(|a| &a[j.min(a.len() - 1)]);
            let total: usize = parts().map(Vec::len).sum();
            let mut clause: Vec<Fact<'a>> = Vec::with_capacity(total);
            if total.saturating_mul(total) <= SMALL_PRODUCT {
                for n in parts().flatten() {
                    if !clause.contains(n) {
                        clause.push(n.clone());
                    }
                }
            } else {
                let mut seen: FastSet<&Fact<'a>> = FastSet::default();
                for n in parts().flatten() {
                    if seen.insert(n) {
                        clause.push(n.clone());
                    }
                }
            }
            clause
        })
        .collect()
}

fn search_clauses(search: &Search) -> Facts<'_> {
    match search {
        Search::All(items) => strongest(items.iter().flat_map(item_clauses)),
        Search::Any(maps) => any_of(maps.iter().map(|items| strongest(items.iter().flat_map(item_clauses)))),
    }
}

/// An item's clauses: one, of its values' literals (any one may match); for `|all`, one per
/// value, each of which must be met. Without literals, the field's presence, if every way
/// to match needs it.
fn item_clauses(item: &FieldItem) -> Facts<'_> {
    let field = item.field.as_deref();
    let literal = |text| Fact::Literal { text, field };
    let texts: Vec<Vec<Cow<'_, str>>> = if item.all {
        item.matchers.iter().filter_map(matcher_needles).collect()
    } else {
        item.matchers
            .iter()
            .map(matcher_needles)
            .collect::<Option<Vec<_>>>()
            .map(|sets| vec![sets.concat()])
            .unwrap_or_default()
    };
    if !texts.is_empty() {
        return texts.into_iter().map(|set| set.into_iter().map(literal).collect()).collect();
    }
    match &item.field {
        Some(field) => {
            let needs = |m: &Matcher| needs_value(m);
            let present = if item.all { item.matchers.iter().any(needs) } else { item.matchers.iter().all(needs) };
            if present { vec![vec![Fact::Present(field)]] } else { Vec::new() }
        }
        None => Vec::new(),
    }
}

/// Whether a matcher can only match a field that is present with a value other than null.
fn needs_value(m: &Matcher) -> bool {
    match m {
        Matcher::Null | Matcher::Exists(false) => false,
        Matcher::Any(ms) => ms.iter().all(needs_value),
        Matcher::Exists(true)
        | Matcher::Str { .. }
        | Matcher::Glob { .. }
        | Matcher::Regex(_)
        | Matcher::Cidr(_)
        | Matcher::Cmp(..)
        | Matcher::FieldRef { .. } => true,
    }
}

/// Literals that could also be the text of a number or boolean are no use: those values
/// are not scanned as text.
fn usable(needle: &str) -> bool {
    needle.len() >= 2
        && !needle.chars().all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
        && !matches!(needle, "true" | "false" | "null" | "inf" | "nan")
}

/// A matcher's literals, lowercase, one of which is in every text it matches; `None` when it
/// has none.
fn matcher_needles(m: &Matcher) -> Option<Vec<Cow<'_, str>>> {
    match m {
        Matcher::Str { needle, cased, .. } => {
            // A needle that is not `cased` was lowercased when compiled.
            let lower = if *cased { Cow::Owned(needle.to_lowercase()) } else { Cow::Borrowed(&**needle) };
            usable(&lower).then(|| vec![lower])
        }
        Matcher::Glob { literal, .. } => {
            literal.as_ref().map(|l| Cow::Owned(l.to_lowercase())).filter(|l| usable(l)).map(|l| vec![l])
        }
        Matcher::Any(ms) => {
            let mut out = Vec::new();
            for m in ms {
                out.extend(matcher_needles(m)?);
            }
            Some(out)
        }
        Matcher::Regex(re) => re.needles.as_ref().map(|n| n.iter().map(|t| Cow::Borrowed(t.as_str())).collect()),
        Matcher::Cidr(_) | Matcher::Cmp(..) | Matcher::Null | Matcher::Exists(_) | Matcher::FieldRef { .. } => None,
    }
}

fn search_matches(search: &Search, event: &Event) -> bool {
    match search {
        Search::All(items) => items.iter().all(|i| item_matches(i, event)),
        Search::Any(maps) => maps.iter().any(|items| items.iter().all(|i| item_matches(i, event))),
    }
}

fn item_matches(item: &FieldItem, event: &Event) -> bool {
    if item.field.is_none() {
        // Keyword search: any value of any field.
        let test = |m: &Matcher| event.fields().iter().any(|f| value_matches(m, Some(&f.value), event));
        return if item.all { item.matchers.iter().all(test) } else { item.matchers.iter().any(test) };
    }
    let value = event.lookup(&item.key);
    if item.all {
        item.matchers.iter().all(|m| value_matches(m, value, event))
    } else {
        item.matchers.iter().any(|m| value_matches(m, value, event))
    }
}

fn value_matches(m: &Matcher, value: Option<&Value>, event: &Event) -> bool {
    match m {
        Matcher::Null => value.is_none_or(Value::is_null),
        Matcher::Exists(want) => value.is_some_and(|v| !v.is_null()) == *want,
        Matcher::Any(ms) => ms.iter().any(|m| value_matches(m, value, event)),
        _ => match value {
            None => false,
            Some(v) => v.for_each_scalar(&mut |s| scalar_matches(m, s, event)),
        },
    }
}

fn str_test(kind: StrKind, hay: &str, needle: &str, finder: Option<&OnceLock<Box<memmem::Finder<'static>>>>) -> bool {
    match kind {
        StrKind::Exact => hay == needle,
        StrKind::Contains => match finder {
            Some(f) => f
                .get_or_init(|| Box::new(memmem::Finder::new(needle.as_bytes()).into_owned()))
                .find(hay.as_bytes())
                .is_some(),
            None => hay.contains(needle),
        },
        StrKind::StartsWith => hay.starts_with(needle),
        StrKind::EndsWith => hay.ends_with(needle),
    }
}

fn scalar_matches(m: &Matcher, v: &Value, event: &Event) -> bool {
    match m {
        Matcher::Str { kind: StrKind::Exact, int: Some(n), .. } if matches!(v, Value::Int(_)) => *v == Value::Int(*n),
        // An integer prints in canonical form, so it never equals a needle that is not one.
        Matcher::Str { kind: StrKind::Exact, int: None, .. } if matches!(v, Value::Int(_)) => false,
        Matcher::Str { kind, needle, finder, cased, .. } => {
            let text = if *cased { v.as_text() } else { v.as_lower_text() };
            text.is_some_and(|t| str_test(*kind, &t, needle, Some(finder)))
        }
        Matcher::Glob { glob, cased, .. } => {
            let text = if *cased { v.as_text() } else { v.as_lower_text() };
            text.is_some_and(|t| glob.is_match(&t))
        }
        Matcher::Regex(re) => v.as_text().is_some_and(|t| re.is_match(&t)),
        Matcher::Cidr(nets) => v
            .as_text()
            .and_then(|t| t.trim().parse::<IpAddr>().ok())
            .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
        Matcher::Cmp(op, n) => v.as_f64().is_some_and(|x| match op {
            CmpOp::Lt => x < *n,
            CmpOp::Lte => x <= *n,
            CmpOp::Gt => x > *n,
            CmpOp::Gte => x >= *n,
        }),
        Matcher::FieldRef { other, kind, cased } => {
            let Some(o) = event.lookup(other) else { return false };
            let a = if *cased { v.as_text() } else { v.as_lower_text() };
            let Some(a) = a else { return false };
            // A list on the other side (several recipients) matches when any element does.
            let mut hit = false;
            o.for_each_scalar(&mut |o| {
                let b = if *cased { o.as_text() } else { o.as_lower_text() };
                hit = b.is_some_and(|b| str_test(*kind, &a, &b, None));
                hit
            });
            hit
        }
        Matcher::Null => v.is_null(),
        Matcher::Exists(_) | Matcher::Any(_) => false,
    }
}

/// The most memory a regular expression's compiled form may take.
const REGEX_SIZE_LIMIT: usize = 1 << 23;
/// A regular expression whose syntax tree bounds the states of its automaton
/// ([`hir_size_bound`]) below this is compiled on first use rather than when the rule loads:
/// at some 40 bytes a state (one transition, or a few for a union), that is under 6 MB,
/// within [`REGEX_SIZE_LIMIT`].
const DEFERRED_REGEX_BOUND: usize = 1 << 17;

/// Regular expressions compiled for a rule, by pattern and flags (`i`, `m`, `s`), so that its
/// variants share them: an expression checked by compiling it at load (one of 220,000
/// states, say) is compiled once, and one compiled on first use is compiled once however many
/// of the rule's log sources meet events.
#[derive(Default)]
pub struct Regexes(HashMap<(String, [bool; 3]), Arc<LazyRegex>>);

/// A rule's regular expression, checked when the rule loads and compiled when it is first
/// needed. Compiling is most of a regular expression's cost, in time and in memory (some
/// tens of kilobytes each), and most rules never meet an event their literals let through.
/// Only expressions that cannot exceed the size limit wait ([`DEFERRED_REGEX_BOUND`]): so an
/// expression that could not be compiled is still reported with its rule at load.
///
/// A rule only asks whether a value holds a match, never where it is, so what is compiled is
/// the expression cut to what decides that ([`for_is_match`]): `-k\s\w{1,64}(\s?-p)?`
/// becomes `-k\s\w`, one copy of `\w`'s automaton rather than 64.
#[derive(Clone, Debug)]
pub struct LazyRegex {
    pattern: Box<str>,
    flags: [bool; 3],
    compiled: OnceLock<Option<Regex>>,
    /// Lowercase literals one of which is in every text the expression matches (see
    /// [`regex_needles`]); `None` when none could be derived.
    needles: Option<Box<[String]>>,
}

impl LazyRegex {
    /// Checks `pattern` and compiles it now if it could be large. The error is the regular
    /// expression library's message.
    fn new(pattern: &str, case_insensitive: bool, multi_line: bool, dot_all: bool) -> Result<LazyRegex, String> {
        let flags = [case_insensitive, multi_line, dot_all];
        let hir = parse_regex(pattern, flags)?;
        let re = LazyRegex {
            pattern: pattern.into(),
            flags,
            compiled: OnceLock::new(),
            needles: regex_needles(&hir).map(Vec::into_boxed_slice),
        };
        let hir = for_is_match(hir);
        if hir_size_bound(&hir) >= DEFERRED_REGEX_BOUND {
            let _ = re.compiled.set(Some(build_regex(&hir)?));
        }
        Ok(re)
    }

    fn build(&self) -> Result<Regex, String> {
        build_regex(&for_is_match(parse_regex(&self.pattern, self.flags)?))
    }

    fn is_match(&self, text: &str) -> bool {
        // The syntax was checked and the size bounded when the rule loaded, so building cannot
        // fail here.
        self.compiled.get_or_init(|| self.build().ok()).as_ref().is_some_and(|re| re.is_match(text))
    }
}

/// `pattern` parsed with the flags `i`, `m`, `s`; the error is the parser's message.
fn parse_regex(pattern: &str, [i, m, s]: [bool; 3]) -> Result<Hir, String> {
    regex_syntax::ParserBuilder::new()
        .case_insensitive(i)
        .multi_line(m)
        .dot_matches_new_line(s)
        .build()
        .parse(pattern)
        .map_err(|e| e.to_string())
}

/// Compiles `hir` as the `regex` crate compiles a pattern (leftmost-first, no empty match
/// inside a character), within [`REGEX_SIZE_LIMIT`].
fn build_regex(hir: &Hir) -> Result<Regex, String> {
    let config = Regex::config()
        .match_kind(regex_automata::MatchKind::LeftmostFirst)
        .utf8_empty(true)
        .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
        .hybrid_cache_capacity(2 * (1 << 20));
    Regex::builder().configure(config).build_from_hir(hir).map_err(|e| match e.size_limit() {
        Some(limit) => format!("compiled regex exceeds size limit of {limit} bytes"),
        None => e.to_string(),
    })
}

/// An expression that some part of a text matches exactly when some part of it matches
/// `hir`, cut to the least such a part must hold: what may match nothing at either end is
/// left out (`.*`, `(\s?-p)?`), and a repetition there keeps its least count (`\w{1,64}`
/// is `\w`), since a text holding a match holds that much of it, and that much is a
/// match. Parts that look at the text around them (`^`, `$`, `\b`) are kept, and so is
/// what lies between them and the rest of the expression (`foo\s*$` stays whole).
fn for_is_match(hir: Hir) -> Hir {
    trim_ends(hir, true, true)
}

/// [`for_is_match`] at the start of `hir`, its end, or both.
fn trim_ends(hir: Hir, start: bool, end: bool) -> Hir {
    use regex_syntax::hir::{HirKind, Repetition};
    if !start && !end {
        return hir;
    }
    if matches_nothing_anywhere(&hir) {
        return Hir::empty();
    }
    match hir.into_kind() {
        HirKind::Capture(c) => trim_ends(*c.sub, start, end),
        HirKind::Repetition(r) if r.min == 1 => trim_ends(*r.sub, start, end),
        HirKind::Repetition(r) if r.max != Some(r.min) => {
            Hir::repetition(Repetition { min: r.min, max: Some(r.min), greedy: r.greedy, sub: r.sub })
        }
        HirKind::Concat(mut items) => {
            if end {
                while items.last().is_some_and(matches_nothing_anywhere) {
                    items.pop();
                }
            }
            if start {
                let optional = items.iter().take_while(|h| matches_nothing_anywhere(h)).count();
                items.drain(..optional);
            }
            if items.len() == 1 {
                return items.pop().map_or_else(Hir::empty, |h| trim_ends(h, start, end));
            }
            if let Some(last) = items.last_mut() {
                *last = trim_ends(std::mem::replace(last, Hir::empty()), false, end);
            }
            if let Some(first) = items.first_mut() {
                *first = trim_ends(std::mem::replace(first, Hir::empty()), start, false);
            }
            Hir::concat(items)
        }
        HirKind::Alternation(alternatives) => {
            Hir::alternation(alternatives.into_iter().map(|h| trim_ends(h, start, end)).collect())
        }
        HirKind::Repetition(r) => Hir::repetition(r),
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(l) => Hir::literal(l.0),
        HirKind::Class(c) => Hir::class(c),
        HirKind::Look(l) => Hir::look(l),
    }
}

/// Whether `hir` matches the empty text wherever it is looked for: it may match nothing,
/// and nothing in it looks at the text around it.
fn matches_nothing_anywhere(hir: &Hir) -> bool {
    hir.properties().minimum_len() == Some(0) && hir.properties().look_set().is_empty()
}

/// At most this many alternative literals stand for one regular expression in the prefilter.
const MAX_REGEX_NEEDLES: usize = 64;

/// Lowercase literals one of which occurs in every text that `hir` matches (anywhere, so
/// that the prefilter may look for them in the lowercased value), each at least two
/// characters and not the text of a number ([`usable`]); `None` when the expression has no
/// such set. Of the sets that would do, the one whose shortest literal is longest is taken.
///
/// Only ASCII literals are taken, and a class stands for a letter only when each of its
/// characters lowercases to that letter (`[Kk\u{212A}]` is `k`; `[Ss\u{17F}]` is not `s`,
/// for `ſ` lowercases to itself): a text the expression matches then holds the literal once
/// lowercased, character for character.
fn regex_needles(hir: &regex_syntax::hir::Hir) -> Option<Vec<String>> {
    use regex_syntax::hir::HirKind;
    if let Some(t) = fixed_text(hir) {
        return usable(&t).then(|| vec![t]);
    }
    let set = match hir.kind() {
        HirKind::Empty | HirKind::Look(_) | HirKind::Class(_) => None,
        HirKind::Literal(l) => ascii_pieces(&l.0).max_by_key(String::len).map(|t| vec![t]),
        HirKind::Capture(c) => regex_needles(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => regex_needles(&r.sub),
        HirKind::Repetition(_) => None,
        HirKind::Alternation(items) => {
            let mut out: Vec<String> = Vec::new();
            for h in items {
                for t in regex_needles(h)? {
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
            }
            (out.len() <= MAX_REGEX_NEEDLES).then_some(out)
        }
        HirKind::Concat(items) => {
            // Runs of items that match one fixed text are literals in full; any other item
            // may hold a set of its own.
            let mut candidates: Vec<Vec<String>> = Vec::new();
            let mut run = String::new();
            for h in items {
                match (fixed_text(h), h.kind()) {
                    (Some(t), _) => run.push_str(&t),
                    // Text with characters beyond ASCII: its ASCII pieces, the first ending
                    // the run so far and the last starting the next.
                    (None, HirKind::Literal(l)) => {
                        let mut pieces = ascii_pieces(&l.0);
                        run.push_str(&pieces.next().unwrap_or_default());
                        candidates.push(vec![std::mem::take(&mut run)]);
                        for piece in pieces {
                            candidates.push(vec![std::mem::replace(&mut run, piece)]);
                        }
                    }
                    (None, _) => {
                        candidates.push(vec![std::mem::take(&mut run)]);
                        candidates.extend(regex_needles(h));
                    }
                }
            }
            candidates.push(vec![run]);
            candidates
                .into_iter()
                .filter(|set| set.iter().all(|t| usable(t)))
                .max_by_key(|set| set.iter().map(String::len).min().unwrap_or(0))
        }
    };
    set.filter(|set| !set.is_empty() && set.iter().all(|t| usable(t)))
}

/// The runs of ASCII characters in a literal that holds others, lowercased, in order.
fn ascii_pieces(bytes: &[u8]) -> impl Iterator<Item = String> {
    let text = String::from_utf8_lossy(bytes).into_owned();
    text.split(|c: char| !c.is_ascii()).map(str::to_ascii_lowercase).collect::<Vec<_>>().into_iter()
}

/// The one text `hir` matches, lowercased, when it matches exactly one ASCII text (up to the
/// case of letters a class folds together, see [`regex_needles`]); zero-width assertions
/// match the empty text.
fn fixed_text(hir: &regex_syntax::hir::Hir) -> Option<String> {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(String::new()),
        HirKind::Literal(l) => std::str::from_utf8(&l.0).ok().filter(|t| t.is_ascii()).map(str::to_ascii_lowercase),
        HirKind::Class(Class::Unicode(c)) => {
            let mut letter = None;
            for r in c.ranges() {
                if (r.end() as u32) - (r.start() as u32) > 4 {
                    return None;
                }
                for ch in r.start()..=r.end() {
                    let mut lower = ch.to_lowercase();
                    let (Some(l), None) = (lower.next(), lower.next()) else { return None };
                    if !l.is_ascii() || letter.is_some_and(|x| x != l) {
                        return None;
                    }
                    letter = Some(l);
                }
            }
            letter.map(String::from)
        }
        HirKind::Class(Class::Bytes(c)) => {
            let mut letter = None;
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    let l = b.to_ascii_lowercase();
                    if !l.is_ascii() || letter.is_some_and(|x| x != l) {
                        return None;
                    }
                    letter = Some(l);
                }
            }
            letter.map(|l| char::from(l).to_string())
        }
        HirKind::Capture(c) => fixed_text(&c.sub),
        HirKind::Repetition(r) if Some(r.min) == r.max && r.min <= 16 => {
            fixed_text(&r.sub).map(|t| t.repeat(r.min as usize))
        }
        HirKind::Concat(items) => items.iter().map(fixed_text).collect(),
        HirKind::Repetition(_) | HirKind::Alternation(_) => None,
    }
}

/// An upper bound of the number of states of the automaton compiled from `hir` (saturating):
/// a Unicode class becomes its ranges' UTF-8 sequences, a state per byte range of each
/// (`\w`: some 3,400, where 36 for each of its 770 ranges, as the bound once took, is 27,700).
fn hir_size_bound(hir: &regex_syntax::hir::Hir) -> usize {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 1,
        HirKind::Literal(l) => l.0.len() + 1,
        HirKind::Class(Class::Unicode(c)) => c.ranges().iter().fold(1usize, |n, r| {
            regex_syntax::utf8::Utf8Sequences::new(r.start(), r.end()).fold(n, |n, seq| n.saturating_add(seq.len()))
        }),
        HirKind::Class(Class::Bytes(c)) => c.ranges().len().saturating_add(1),
        HirKind::Repetition(r) => {
            let copies = r.max.unwrap_or(r.min).max(r.min).saturating_add(1) as usize;
            hir_size_bound(&r.sub).saturating_mul(copies).saturating_add(1)
        }
        HirKind::Capture(c) => hir_size_bound(&c.sub).saturating_add(2),
        HirKind::Concat(items) | HirKind::Alternation(items) => {
            items.iter().fold(1usize, |n, h| n.saturating_add(hir_size_bound(h)).saturating_add(1))
        }
    }
}

/// `s` cut to at most `max` characters, for error messages.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

fn compile_search(body: &Json, map_field: &dyn Fn(&str) -> String, regexes: &mut Regexes) -> Result<Search, String> {
    match body {
        Json::Object(map) => Ok(Search::All(compile_map(map, map_field, regexes)?)),
        Json::Array(items) if !items.is_empty() && items.iter().all(Json::is_object) => {
            let mut maps = Vec::new();
            for i in items {
                if let Json::Object(m) = i {
                    maps.push(compile_map(m, map_field, regexes)?);
                }
            }
            Ok(Search::Any(maps))
        }
        Json::Array(items) => {
            // A list of plain values: keywords, any of them anywhere in the event.
            let item = compile_item(None, &[], items, regexes)?;
            Ok(Search::All(vec![item]))
        }
        Json::String(_) | Json::Number(_) => {
            let item = compile_item(None, &[], std::slice::from_ref(body), regexes)?;
            Ok(Search::All(vec![item]))
        }
        Json::Null => Err("empty search".into()),
        Json::Bool(_) => Err("a search cannot be a boolean".into()),
    }
}

fn compile_map(
    map: &serde_json::Map<String, Json>,
    map_field: &dyn Fn(&str) -> String,
    regexes: &mut Regexes,
) -> Result<Vec<FieldItem>, String> {
    let mut out = Vec::with_capacity(map.len());
    for (key, values) in map {
        let mut parts = key.split('|');
        let field = parts.next().unwrap_or("").trim();
        let modifiers: Vec<&str> = parts.collect();
        let values: Vec<Json> = match values {
            Json::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        let field = if field.is_empty() { None } else { Some(map_field(field)) };
        out.push(compile_item(field.as_deref(), &modifiers, &values, regexes).map_err(|e| format!("`{key}`: {e}"))?);
    }
    Ok(out)
}

#[derive(Default)]
struct Mods {
    kind: Option<StrKind>,
    all: bool,
    cased: bool,
    re: bool,
    re_i: bool,
    re_m: bool,
    re_s: bool,
    cidr: bool,
    exists: bool,
    fieldref: bool,
    expand: bool,
    windash: bool,
    base64: bool,
    base64offset: bool,
    utf16: Option<Utf16>,
    cmp: Option<CmpOp>,
}

fn parse_mods(modifiers: &[&str]) -> Result<Mods, String> {
    let mut m = Mods::default();
    for raw in modifiers {
        let name = raw.trim().to_ascii_lowercase();
        let set_kind = |m: &mut Mods, k| {
            if m.kind.is_some_and(|old| old != k) {
                return Err(format!("conflicting modifiers near `{raw}`"));
            }
            m.kind = Some(k);
            Ok(())
        };
        match name.as_str() {
            "contains" => set_kind(&mut m, StrKind::Contains)?,
            "startswith" => set_kind(&mut m, StrKind::StartsWith)?,
            "endswith" => set_kind(&mut m, StrKind::EndsWith)?,
            "all" => m.all = true,
            "cased" => m.cased = true,
            "re" => m.re = true,
            "i" if m.re => m.re_i = true,
            "m" if m.re => m.re_m = true,
            "s" if m.re => m.re_s = true,
            "cidr" => m.cidr = true,
            "exists" => m.exists = true,
            "fieldref" => m.fieldref = true,
            "expand" => m.expand = true,
            "windash" => m.windash = true,
            "base64" => m.base64 = true,
            "base64offset" => m.base64offset = true,
            "wide" | "utf16le" => m.utf16 = Some(Utf16::Le),
            "utf16be" => m.utf16 = Some(Utf16::Be),
            "utf16" => m.utf16 = Some(Utf16::LeBom),
            "lt" => m.cmp = Some(CmpOp::Lt),
            "lte" => m.cmp = Some(CmpOp::Lte),
            "gt" => m.cmp = Some(CmpOp::Gt),
            "gte" => m.cmp = Some(CmpOp::Gte),
            other => return Err(format!("unknown modifier `{other}`")),
        }
    }
    if m.utf16.is_some() && !(m.base64 || m.base64offset) {
        return Err("`wide`/`utf16` modifiers must be followed by `base64` or `base64offset`".into());
    }
    Ok(m)
}

fn compile_item(
    field: Option<&str>,
    modifiers: &[&str],
    values: &[Json],
    regexes: &mut Regexes,
) -> Result<FieldItem, String> {
    let mut mods = parse_mods(modifiers)?;
    // Keywords (values without a field) are searched for anywhere in the event's values.
    if field.is_none() && mods.kind.is_none() && !mods.re && mods.cmp.is_none() && !mods.cidr {
        mods.kind = Some(StrKind::Contains);
    }
    if values.is_empty() {
        return Err("no values".into());
    }
    let mut matchers = Vec::with_capacity(values.len());
    for v in values {
        matchers.push(compile_value(&mods, field.is_some(), v, regexes)?);
    }
    if !mods.all && matchers.len() > 1 && matchers.iter().all(|m| matches!(m, Matcher::Cidr(_))) {
        // One list of ranges: the value is parsed as an address once, not once per range.
        let nets = matchers.drain(..).flat_map(|m| if let Matcher::Cidr(n) = m { n } else { Vec::new() }).collect();
        matchers.push(Matcher::Cidr(nets));
    }
    Ok(FieldItem {
        field: field.map(Into::into),
        key: FieldKey::new(field.unwrap_or_default()),
        matchers,
        all: mods.all,
    })
}

fn compile_value(mods: &Mods, has_field: bool, v: &Json, regexes: &mut Regexes) -> Result<Matcher, String> {
    if mods.exists {
        let want = match v {
            Json::Bool(b) => *b,
            Json::String(s) if s.eq_ignore_ascii_case("true") => true,
            Json::String(s) if s.eq_ignore_ascii_case("false") => false,
            _ => return Err("`exists` takes true or false".into()),
        };
        if !has_field {
            return Err("`exists` needs a field".into());
        }
        return Ok(Matcher::Exists(want));
    }
    if v.is_null() {
        return Ok(Matcher::Null);
    }
    let text = match v {
        Json::String(s) => s.clone(),
        Json::Number(n) => n.to_string(),
        Json::Bool(b) => b.to_string(),
        Json::Array(_) | Json::Object(_) | Json::Null => return Err("nested lists or maps are not values".into()),
    };
    if let Some(op) = mods.cmp {
        let n = text.trim().parse::<f64>().map_err(|_| format!("`{text}` is not a number"))?;
        return Ok(Matcher::Cmp(op, n));
    }
    if mods.cidr {
        let nets = text.split(',').map(|c| parse_cidr(c.trim())).collect::<Result<Vec<_>, _>>()?;
        return Ok(Matcher::Cidr(nets));
    }
    if mods.re {
        let key = (text, [mods.re_i, mods.re_m, mods.re_s]);
        if let Some(re) = regexes.0.get(&key) {
            return Ok(Matcher::Regex(re.clone()));
        }
        let text = &key.0;
        let re = LazyRegex::new(text, mods.re_i, mods.re_m, mods.re_s)
            .map_err(|e| format!("regular expression `{text}`: {}", e.lines().last().unwrap_or("invalid")))?;
        let re = Arc::new(re);
        regexes.0.insert(key, re.clone());
        return Ok(Matcher::Regex(re));
    }
    if mods.fieldref {
        return Ok(Matcher::FieldRef {
            other: FieldKey::new(&text),
            kind: mods.kind.unwrap_or(StrKind::Exact),
            cased: mods.cased,
        });
    }

    let mut s = SigmaString::parse(&text);
    if mods.expand {
        s = expand_placeholders(&s);
    }
    let mut variants = if mods.windash { value::windash_variants(&s, MAX_WINDASH_VARIANTS) } else { vec![s] };
    if mods.base64 || mods.base64offset {
        let mut encoded = Vec::new();
        for v in &variants {
            let plain = v.as_plain().ok_or("wildcards cannot be base64-encoded")?;
            let bytes = match mods.utf16 {
                Some(enc) => value::encode_utf16(&plain, enc),
                None => plain.into_bytes(),
            };
            if mods.base64offset {
                encoded.extend(value::base64_offsets(&bytes).iter().map(|e| SigmaString::literal(e)));
            } else {
                encoded.push(SigmaString::literal(&value::base64(&bytes)));
            }
        }
        variants = encoded;
    }
    let mut matchers = Vec::with_capacity(variants.len());
    for mut v in variants {
        match mods.kind {
            Some(StrKind::Contains) => {
                v.prepend_star();
                v.append_star();
            }
            Some(StrKind::StartsWith) => v.append_star(),
            Some(StrKind::EndsWith) => v.prepend_star(),
            _ => {}
        }
        matchers.push(string_matcher(&v, mods.cased)?);
    }
    Ok(if matchers.len() == 1 { matchers.remove(0) } else { Matcher::Any(matchers) })
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<IpAddr>().map(IpNet::from).map_err(|_| format!("`{s}` is not a CIDR range"))
}

/// `%name%` placeholders (the `expand` modifier) match anything when no value is configured.
fn expand_placeholders(s: &SigmaString) -> SigmaString {
    let mut out = SigmaString::default();
    for p in &s.parts {
        match p {
            Part::Lit(l) => {
                let mut rest = l.as_str();
                while let Some(start) = rest.find('%') {
                    let Some(len) = rest[start + 1..].find('%') else { break };
                    if start > 0 {
                        out.parts.push(Part::Lit(rest[..start].to_owned()));
                    }
                    out.parts.push(Part::Star);
                    rest = &rest[start + len + 2..];
                }
                if !rest.is_empty() {
                    out.parts.push(Part::Lit(rest.to_owned()));
                }
            }
            other => out.parts.push(other.clone()),
        }
    }
    out
}

/// The cheapest exact matcher for a Sigma string.
pub fn string_matcher(s: &SigmaString, cased: bool) -> Result<Matcher, String> {
    let fold = |t: &str| if cased { t.to_owned() } else { t.to_lowercase() };
    let has_one = s.parts.iter().any(|p| matches!(p, Part::One));
    let n = s.parts.len();
    let simple = |kind: StrKind, needle: &str| {
        let needle = fold(needle);
        let finder = OnceLock::new();
        let int =
            (kind == StrKind::Exact).then(|| needle.parse::<i64>().ok().filter(|n| n.to_string() == needle)).flatten();
        Matcher::Str { kind, needle: needle.into(), finder, cased, int }
    };
    if !has_one {
        match (n, s.parts.as_slice()) {
            (0, _) => return Ok(simple(StrKind::Exact, "")),
            (1, [Part::Lit(l)]) => return Ok(simple(StrKind::Exact, l)),
            (1, [Part::Star]) => return Ok(Matcher::Glob { glob: Glob::new(s, !cased), cased, literal: None }),
            (2, [Part::Lit(l), Part::Star]) => return Ok(simple(StrKind::StartsWith, l)),
            (2, [Part::Star, Part::Lit(l)]) => return Ok(simple(StrKind::EndsWith, l)),
            (3, [Part::Star, Part::Lit(l), Part::Star]) => return Ok(simple(StrKind::Contains, l)),
            _ => {}
        }
    }
    let literal = s
        .parts
        .iter()
        .filter_map(|p| if let Part::Lit(l) = p { Some(l) } else { None })
        .max_by_key(|l| l.len())
        .cloned();
    Ok(Matcher::Glob { glob: Glob::new(s, !cased), cased, literal })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nigehban_event::{Position, Product, Source};

    fn event(fields: &[(&str, Value)]) -> Event {
        let mut e = Event::new(Source::file("t"), Position::Line(1), Product::Windows, "test");
        for (k, v) in fields {
            e.set(*k, v.clone());
        }
        e
    }

    fn det(yaml: &str) -> CompiledDetection {
        let v: Json = serde_saphyr::from_str(yaml).unwrap();
        CompiledDetection::compile(&v, &|f| f.to_owned()).unwrap()
    }

    fn s(v: &str) -> Value {
        Value::str(v)
    }

    #[test]
    fn default_matching_is_case_insensitive_and_exact() {
        let d = det("sel:\n  Image: 'C:\\Windows\\System32\\cmd.exe'\ncondition: sel\n");
        assert!(d.matches(&event(&[("Image", s("c:\\windows\\system32\\CMD.exe"))])));
        assert!(!d.matches(&event(&[("Image", s("c:\\windows\\system32\\cmd.exe "))])));
        assert!(!d.matches(&event(&[])));
    }

    #[test]
    fn modifiers_contains_startswith_endswith_all() {
        let d = det(
            "sel:\n  CommandLine|contains|all: [' -enc ', 'hidden']\n  Image|endswith: '\\powershell.exe'\ncondition: sel\n",
        );
        let hit = event(&[("CommandLine", s("powershell -w HIDDEN -enc AAAA")), ("Image", s("C:\\x\\PowerShell.exe"))]);
        assert!(d.matches(&hit));
        let miss = event(&[("CommandLine", s("powershell -enc AAAA")), ("Image", s("C:\\x\\PowerShell.exe"))]);
        assert!(!d.matches(&miss));
    }

    #[test]
    fn wildcards_and_escapes() {
        let d = det("sel:\n  F: 'a*b?c'\n  G: 'x\\*'\ncondition: sel\n");
        assert!(d.matches(&event(&[("F", s("aZZbYc")), ("G", s("x*"))])));
        assert!(!d.matches(&event(&[("F", s("abc")), ("G", s("x*"))])));
        assert!(!d.matches(&event(&[("F", s("aZZbYc")), ("G", s("xy"))])));
    }

    #[test]
    fn numbers_null_empty_exists() {
        let d = det("sel:\n  EventID: 4688\n  A: null\n  B: ''\n  C|exists: true\ncondition: sel\n");
        assert!(d.matches(&event(&[("EventID", Value::Int(4688)), ("B", s("")), ("C", s("x"))])));
        assert!(!d.matches(&event(&[("EventID", Value::Int(4688)), ("A", s("v")), ("B", s("")), ("C", s("x"))])));
        assert!(!d.matches(&event(&[("EventID", Value::Int(4688)), ("B", s(""))])));
        assert!(d.matches(&event(&[("EventID", s("4688")), ("B", s("")), ("C", s("x"))])));
    }

    #[test]
    fn regex_cidr_compare_cased_fieldref() {
        let d = det(
            "sel:\n  A|re: '^ab+c$'\n  B|cidr: ['10.0.0.0/8', '192.168.1.0/24']\n  C|gte: 5\n  D|cased: 'MiXed'\n  E|fieldref: F\ncondition: sel\n",
        );
        let ok = event(&[
            ("A", s("abbbc")),
            ("B", s("10.1.2.3")),
            ("C", Value::Int(7)),
            ("D", s("MiXed")),
            ("E", s("same")),
            ("F", s("SAME")),
        ]);
        assert!(d.matches(&ok));
        let bad_case = event(&[
            ("A", s("abbbc")),
            ("B", s("10.1.2.3")),
            ("C", Value::Int(7)),
            ("D", s("mixed")),
            ("E", s("same")),
            ("F", s("same")),
        ]);
        assert!(!d.matches(&bad_case));
        let re_cased = event(&[
            ("A", s("ABC")),
            ("B", s("10.1.2.3")),
            ("C", Value::Int(7)),
            ("D", s("MiXed")),
            ("E", s("a")),
            ("F", s("a")),
        ]);
        assert!(!d.matches(&re_cased));
        let d = det("sel:\n  A|re|i: '^ab+c$'\ncondition: sel\n");
        assert!(d.matches(&event(&[("A", s("ABC"))])));
    }

    #[test]
    fn base64offset_and_wide() {
        let d = det("sel:\n  CommandLine|base64offset|contains: '/bin/bash'\ncondition: sel\n");
        assert!(d.matches(&event(&[("CommandLine", s("echo IC9iaW4vYmFzaA== | base64 -d"))])));
        let wide = value::base64(&value::encode_utf16("Invoke-Mimikatz", Utf16::Le));
        let d = det("sel:\n  CommandLine|wide|base64offset|contains: 'Invoke-Mimikatz'\ncondition: sel\n");
        assert!(d.matches(&event(&[("CommandLine", s(&format!("powershell -enc {wide}")))])));
    }

    #[test]
    fn windash() {
        let d = det("sel:\n  CommandLine|windash|contains: ' -exec bypass'\ncondition: sel\n");
        assert!(d.matches(&event(&[("CommandLine", s("powershell /exec bypass"))])));
        assert!(d.matches(&event(&[("CommandLine", s("powershell \u{2013}exec bypass"))])));
        assert!(!d.matches(&event(&[("CommandLine", s("powershell exec bypass"))])));
    }

    /// The prefilter's clauses: the most selective first; a second only if selective too; an
    /// `|all` list gives one clause per value; a disjunction joins its alternatives' clauses
    /// rank by rank; a negation requires nothing.
    #[test]
    fn needle_clauses_keep_the_two_most_selective_conditions() {
        let lit = |field: &str, text: &str| Needle::Literal { text: text.into(), field: Some(field.into()) };
        let d = det(
            "img:\n  Image|endswith: '\\rundll32.exe'\ncli:\n  CommandLine|contains: [' -a ', 'zzzz']\ncondition: all of *\n",
        );
        assert_eq!(
            d.needle_clauses(),
            vec![vec![lit("Image", "\\rundll32.exe")], vec![lit("CommandLine", " -a "), lit("CommandLine", "zzzz")]]
        );
        let d = det("sel:\n  CommandLine|contains|all: ['-nop', 'hidden', 'bypass']\ncondition: sel\n");
        assert_eq!(d.needle_clauses(), vec![vec![lit("CommandLine", "bypass")], vec![lit("CommandLine", "hidden")]]);
        // A second clause of a two-byte literal would let most events through: left out.
        let d = det("a:\n  Image|endswith: '\\cmd.exe'\nb:\n  CommandLine|contains: '/c'\ncondition: a and b\n");
        assert_eq!(d.needle_clauses(), vec![vec![lit("Image", "\\cmd.exe")]]);
        let d = det(
            "a:\n  X|contains: 'aaaa'\nb:\n  Y|contains: 'bbbbbb'\nc:\n  Z|contains: 'cccc'\ncondition: (a and b) or c\n",
        );
        assert_eq!(
            d.needle_clauses(),
            vec![vec![lit("Y", "bbbbbb"), lit("Z", "cccc")], vec![lit("X", "aaaa"), lit("Z", "cccc")]]
        );
        let d = det("a:\n  X|contains: 'aaaa'\nb:\n  Y|contains: 'bbbb'\ncondition: a and not b\n");
        assert_eq!(d.needle_clauses(), vec![vec![lit("X", "aaaa")]]);
        let d = det("a:\n  X|contains: 'aaaa'\nb:\n  Y|contains: 'bbbb'\ncondition: a or not b\n");
        assert_eq!(d.needle_clauses(), Vec::<Vec<Needle>>::new());
    }

    /// The variants of one rule share its regular expressions: compiled (at load or on first
    /// use) once for all of them; an expression with other flags is another.
    #[test]
    fn variants_share_their_regular_expressions() {
        let v: Json = serde_saphyr::from_str(
            "sel:\n  Image|re: '[a-z]+[.]exe$'\n  CommandLine|re|i: '[a-z]+[.]exe$'\ncondition: sel\n",
        )
        .unwrap();
        let mut regexes = Regexes::default();
        let sysmon = CompiledDetection::compile_sharing(&v, &|f| f.to_owned(), &mut regexes).unwrap();
        let security = CompiledDetection::compile_sharing(&v, &|f| format!("New{f}"), &mut regexes).unwrap();
        let regexes_of = |d: &CompiledDetection| -> Vec<Arc<LazyRegex>> {
            let Search::All(items) = &d.searches[0] else { panic!("one map") };
            items
                .iter()
                .map(|i| match &i.matchers[0] {
                    Matcher::Regex(re) => re.clone(),
                    _ => panic!("a regex"),
                })
                .collect()
        };
        let (a, b) = (regexes_of(&sysmon), regexes_of(&security));
        assert!(Arc::ptr_eq(&a[0], &b[0]) && Arc::ptr_eq(&a[1], &b[1]));
        assert!(!Arc::ptr_eq(&a[0], &a[1]), "`i` makes another expression");
        assert!(a[0].compiled.get().is_none());
        assert!(sysmon.matches(&event(&[("Image", s("C:\\x\\a.exe")), ("CommandLine", s("A.EXE"))])));
        assert!(b[0].compiled.get().is_some(), "compiled once for both");
        assert!(!security.matches(&event(&[("NewImage", s("C:\\x\\A.EXE")), ("NewCommandLine", s("a.exe"))])));
    }

    #[test]
    fn keywords_search_every_field() {
        let d = det("keywords:\n  - 'mimikatz'\n  - 'sekurlsa'\ncondition: keywords\n");
        assert!(d.matches(&event(&[("A", s("x")), ("B", s("run Mimikatz now"))])));
        assert!(!d.matches(&event(&[("A", s("x"))])));
    }

    #[test]
    fn list_of_maps_is_or() {
        let d = det("sel:\n  - A: 1\n  - B: 2\ncondition: sel\n");
        assert!(d.matches(&event(&[("B", Value::Int(2))])));
        assert!(!d.matches(&event(&[("B", Value::Int(1))])));
    }

    #[test]
    fn list_valued_fields_match_any_element() {
        let d = det("sel:\n  Data|contains: 'evil'\ncondition: sel\n");
        assert!(d.matches(&event(&[("Data", Value::List(vec![s("fine"), s("so EVIL")]))])));
    }

    #[test]
    fn bad_values_are_errors() {
        let bad = |y: &str| {
            let v: Json = serde_saphyr::from_str(y).unwrap();
            CompiledDetection::compile(&v, &|f| f.to_owned()).unwrap_err()
        };
        assert!(bad("sel:\n  A|foo: x\ncondition: sel\n").to_string().contains("unknown modifier `foo`"));
        assert!(bad("sel:\n  A|re: '(x'\ncondition: sel\n").to_string().contains("regular expression"));
        assert!(bad("sel:\n  A|cidr: 'x'\ncondition: sel\n").to_string().contains("not a CIDR"));
        assert!(bad("sel:\n  A: x\n").to_string().contains("condition"));
        // Too large once compiled: found when the rule loads, not when it is first used.
        let big = bad("sel:\n  A|re: '\\w{200}\\w{200}'\ncondition: sel\n").to_string();
        assert!(big.contains("regular expression") && big.contains("size limit"), "{big}");
    }

    #[test]
    fn regular_expressions_compiled_on_first_use_match_as_others() {
        let d = det("sel:\n  A|re|i: '^ab+c'\n  B|re: 'x.y'\ncondition: sel\n");
        let Some(Search::All(items)) = d.searches.first() else { panic!("one map") };
        let Some(Matcher::Regex(re)) = items[0].matchers.first() else { panic!("a regular expression") };
        assert!(re.compiled.get().is_none(), "small expressions wait for their first use");
        assert!(d.matches(&event(&[("A", s("ABBC!")), ("B", s("x-y"))])));
        assert!(re.compiled.get().is_some_and(Option::is_some));
        assert!(!d.matches(&event(&[("A", s("zabc")), ("B", s("x-y"))])));
        assert!(!d.matches(&event(&[("A", s("abc")), ("B", s("x\ny"))])));
        // Flags given by modifiers hold for the deferred build too.
        let d = det("sel:\n  A|re|s: 'x.y'\ncondition: sel\n");
        assert!(d.matches(&event(&[("A", s("x\ny"))])));
    }

    /// The bound that defers an expression holds: the largest repetitions of the widest
    /// classes that it lets wait still compile within the size limit; a little more is
    /// compiled at load.
    #[test]
    fn deferred_regular_expressions_compile_within_the_size_limit() {
        let bound = |p: &str, i: bool| {
            hir_size_bound(&regex_syntax::ParserBuilder::new().case_insensitive(i).build().parse(p).unwrap())
        };
        for class in [r"\w", r"\d", r"\s", r"\W", r"[^a]", r".", r"[a-zé]"] {
            for i in [false, true] {
                // The largest count that is still deferred.
                let mut n = 1;
                while bound(&format!("{class}{{{}}}", n + 1), i) < DEFERRED_REGEX_BOUND {
                    n += 1;
                }
                let deferred = format!("{class}{{{n}}}");
                let re = LazyRegex::new(&deferred, i, false, false).unwrap();
                assert!(re.compiled.get().is_none(), "{deferred} waits");
                assert!(re.build().is_ok(), "{deferred} (i: {i}) compiles within the limit");
                let eager = LazyRegex::new(&format!("{class}{{{}}}", n + 1), i, false, false);
                assert!(eager.is_err() || eager.is_ok_and(|re| re.compiled.get().is_some()));
            }
        }
        // `\w` is some 3,400 states, not 36 for each of its 770 ranges (27,700).
        assert!((3_000..4_000).contains(&bound(r"\w", false)), "{}", bound(r"\w", false));
    }

    fn needles_of(pattern: &str) -> Option<Vec<String>> {
        let hir = regex_syntax::ParserBuilder::new().build().parse(pattern).unwrap();
        regex_needles(&hir)
    }

    #[test]
    fn regular_expressions_give_the_prefilter_a_literal_every_match_holds() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            (r"\$PSHome\[\s*\d{1,3}\s*\]\s*\+\s*\$PSHome\[", Some(&["$pshome["])),
            // The longest run between the parts that vary.
            (r"(Copy-Item|cpi) .{2,128} -Destination .{1,32}\\Windows\\(System32|SysWOW64)", Some(&[" -destination "])),
            // Alternatives each need theirs; one without a literal spoils the set.
            (r"(?:ipconfig|netsh)\s+/all", Some(&["ipconfig", "netsh"])),
            (r"(?:ipconfig|\d+)\s+/all", Some(&["/all"])),
            (r"(abc|\d+)", None),
            // Optional parts hold nothing; repeated ones what they repeat.
            (r"(abc)?x", None),
            (r"x*abc", Some(&["abc"])),
            (r"(ab){2}", Some(&["abab"])),
            (r"(?:\bmimikatz)+ab\b", Some(&["mimikatz"])),
            (r"\bmimikatz\b", Some(&["mimikatz"])),
            // Case folded classes: `k` also matches the Kelvin sign, which lowercases to `k`;
            // `s` also matches `ſ`, which does not: the literal breaks there.
            (r"(?i)kk", Some(&["kk"])),
            (r"(?i)werfaultsecure\.exe", Some(&["ecure.exe"])),
            (r"(?i)ss", None),
            // Only ASCII runs; nothing a number's text could hold; nothing shorter than two.
            (r"café", Some(&["caf"])),
            (r"x\s*über_all", Some(&["ber_all"])),
            (r"4625", None),
            (r"a.b", None),
        ];
        for (pattern, want) in cases {
            let want = want.map(|w| w.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>());
            assert_eq!(needles_of(pattern), want, "{pattern}");
        }
        // Every text the expression matches holds a needle once lowercased.
        for (pattern, text) in [
            (r"(?i)kk", "\u{212A}K"),
            (r"(?i)werfaultsecure\.exe", "WerFaultſecure.EXE"),
            (r"\$PSHome\[\s*1\s*\]\s*\+\s*\$PSHome\[", "x $PSHome[ 1 ]+$PSHome[2]"),
        ] {
            assert!(regex::Regex::new(pattern).unwrap().is_match(text), "{pattern} on {text}");
            let lower = text.to_lowercase();
            let needles = needles_of(pattern).unwrap_or_default();
            assert!(needles.iter().any(|n| lower.contains(n.as_str())), "{pattern}: {needles:?} in {lower}");
        }
    }

    /// What is compiled for an expression is cut at its ends to what decides whether a text
    /// holds a match.
    #[test]
    fn expressions_are_cut_to_what_decides_a_match() {
        let cut = |p: &str| for_is_match(parse_regex(p, [false; 3]).unwrap());
        let same = |p: &str| parse_regex(p, [false; 3]).unwrap();
        for (pattern, want) in [
            (r"-k\s\w{1,64}(\s?(-p|-s))?", r"-k\s\w"),
            (r".*foo.*", "foo"),
            (r"(?:a|b.*)", "a|b"),
            (r"x{2,5}y?", "x{2}"),
            (r"(\w+)\.exe", r"\w\.exe"),
            (r"a*", ""),
            // What looks at the text around it stays, and what lies between it and the rest.
            (r"^foo.*", "^foo"),
            (r"foo\s*$", r"foo\s*$"),
            (r"\bfoo\b.*", r"\bfoo\b"),
            (r"(?m)^a+", "(?m)^a"),
            // Within, nothing changes.
            (r"a.*b", "a.*b"),
            (r"a\w{1,64}b", r"a\w{1,64}b"),
        ] {
            assert_eq!(cut(pattern), same(want), "{pattern}");
        }
        // `\w{1,64}` at the end no longer costs 64 copies of its automaton.
        assert!(hir_size_bound(&cut(r"-k\s\w{1,64}(\s?(-p|-s))?")) < 10_000);
        // A repetition that must be long stays long, so it is still too large.
        assert!(LazyRegex::new(r"\w{200}\w{200}", false, false, false).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The cut expression matches some part of a text exactly when the whole one does.
        #[test]
        fn cut_expressions_match_the_texts_the_whole_ones_match(
            pattern in regex_pattern(),
            texts in proptest::collection::vec("[ab\\- \n.é]{0,12}", 8),
            flags in proptest::array::uniform3(proptest::bool::ANY),
        ) {
            let [i, m, s] = flags;
            let whole = regex::RegexBuilder::new(&pattern)
                .case_insensitive(i).multi_line(m).dot_matches_new_line(s).build().unwrap();
            let cut = LazyRegex::new(&pattern, i, m, s).unwrap();
            for text in &texts {
                proptest::prop_assert_eq!(whole.is_match(text), cut.is_match(text), "{} on {:?}", pattern, text);
            }
        }
    }

    /// Small expressions over the texts' alphabet: literals, classes, anchors and word
    /// boundaries, joined, alternated, grouped and repeated.
    fn regex_pattern() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf =
            proptest::sample::select(&["a", "b", "-", "é", r"\w", r"\s", ".", "[^a]", "^", "$", r"\b", r"\B"][..])
                .prop_map(str::to_owned);
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 1..4).prop_map(|v| v.concat()),
                proptest::collection::vec(inner.clone(), 2..4).prop_map(|v| format!("(?:{})", v.join("|"))),
                inner.clone().prop_map(|p| format!("({p})")),
                (inner, 0u32..3, 0u32..3, prop_oneof![Just("?"), Just("*"), Just("+"), Just("")], proptest::bool::ANY)
                    .prop_map(|(p, lo, extra, op, lazy)| {
                        let lazy = if lazy && !op.is_empty() { "?" } else { "" };
                        if op.is_empty() {
                            format!("(?:{p}){{{lo},{}}}", lo + extra)
                        } else {
                            format!("(?:{p}){op}{lazy}")
                        }
                    }),
            ]
        })
    }

    #[test]
    fn a_list_of_ranges_is_one_matcher() {
        let d = det(
            "sel:\n  A|cidr: ['10.0.0.0/8', '192.168.1.0/24', null]\n  B|cidr: ['10.0.0.0/8', '::1/128']\ncondition: sel\n",
        );
        let Some(Search::All(items)) = d.searches.first() else { panic!("one map") };
        assert_eq!(items[0].matchers.len(), 3, "a null among the ranges keeps them apart");
        assert!(matches!(&items[1].matchers[..], [Matcher::Cidr(nets)] if nets.len() == 2));
        assert!(d.matches(&event(&[("A", s("192.168.1.7")), ("B", s("::1"))])));
        assert!(d.matches(&event(&[("B", s("10.1.2.3"))])));
        assert!(!d.matches(&event(&[("A", s("192.168.2.7")), ("B", s("10.1.2.3"))])));
    }
}
