//! Many rules, compiled once, indexed so that an event meets only the rules of its log source.
//!
//! Index: Windows events by (channel, event id), then by channel; other events by product.
//! A rule written for `process_creation` sits under (Sysmon, 1) and (Security, 4688), so a
//! Sysmon network event (id 3) never meets it. Per-event cost thus grows with the number of
//! rules for that event's source, not with the whole rule set.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aho_corasick::{Anchored, MatchKind};
use nigehban_event::{Event, FieldKey, FieldLayout, Product, Value};

use crate::Error;
use crate::compile::{Clauses, CompiledDetection, Needle, Regexes};
use crate::correlation::CorrelationRule;
use crate::grams::GramSet;
use crate::logsource::{LogSourceTable, Variant};
use crate::rule::{Rule, parse_rules};

/// Index of a rule in its [`RuleSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u32);

/// A rule as loaded: its metadata and where it came from.
#[derive(Debug)]
pub struct LoadedRule {
    /// The rule as written but for its detection, which a [`RuleSet`] keeps compiled only
    /// (`rule.detection` is null; `rule.detection_fields` are kept).
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
    /// The products of the rule's log source (`None`: any), and whether the table knows it.
    products: Option<Arc<[Product]>>,
    mapped: bool,
    variant: Variant,
    /// Whether the variant has conditions beyond the channel and event id that the index
    /// already guarantees.
    check_conditions: bool,
    detection: CompiledDetection,
}

/// One rule file parsed and compiled, ready to be added to a [`RuleSetBuilder`]. Preparing
/// is the costly part of loading (YAML, regular expressions); callers may prepare files on
/// several threads with [`prepare`] and add them in a fixed order.
pub struct Prepared {
    path: Arc<str>,
    items: Vec<PreparedItem>,
}

enum PreparedItem {
    Rule {
        rule: Rule,
        /// Each variant compiled, with the facts it needs (see [`CompiledDetection::needle_clauses`]).
        variants: Vec<(Variant, CompiledDetection, Clauses)>,
        products: Option<Vec<Product>>,
        unmapped: Option<String>,
    },
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
    let mut regexes = Regexes::default();
    for variant in resolved.variants {
        match CompiledDetection::compile_sharing(&rule.detection, &|f| variant.map_field(f), &mut regexes) {
            Ok(detection) => {
                let needles = detection.needle_clauses();
                variants.push((variant, detection, needles));
            }
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
    // Compiled: the YAML data is no longer needed (some 3 KB a rule).
    let mut rule = rule;
    rule.detection = serde_json::Value::Null;
    PreparedItem::Rule { rule, variants, products: resolved.products, unmapped: resolved.unmapped }
}

/// Rules being gathered; [`RuleSetBuilder::build`] indexes them.
#[derive(Default)]
pub struct RuleSetBuilder {
    rules: Vec<LoadedRule>,
    variants: Vec<CompiledVariant>,
    /// Per variant: the facts it needs.
    needles: Vec<Clauses>,
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

    /// Makes room for the rules of `prepared`, so that adding them then moves none of the
    /// rules already added to a larger allocation (each a few hundred bytes; thousands of
    /// them moved at every doubling, onto pages touched for the first time).
    pub fn reserve_for<'a>(&mut self, prepared: impl IntoIterator<Item = &'a Prepared>) {
        let (mut rules, mut variants) = (0, 0);
        for item in prepared.into_iter().flat_map(|p| &p.items) {
            if let PreparedItem::Rule { variants: v, .. } = item {
                rules += 1;
                variants += v.len();
            }
        }
        self.rules.reserve(rules);
        self.variants.reserve(variants);
        self.needles.reserve(variants);
    }

    /// Adds one file's rules, prepared by [`prepare`].
    pub fn add_prepared(&mut self, prepared: Prepared) {
        self.report.files += 1;
        let path = prepared.path;
        for item in prepared.items {
            match item {
                PreparedItem::Rule { rule, variants, products, unmapped } => {
                    let id = RuleId(self.rules.len() as u32);
                    let products: Option<Arc<[Product]>> = products.map(Into::into);
                    for (variant, detection, needles) in variants {
                        let check_conditions = !variant.index_guarantees_conditions();
                        self.variants.push(CompiledVariant {
                            rule: id,
                            products: products.clone(),
                            mapped: unmapped.is_none(),
                            variant,
                            check_conditions,
                            detection,
                        });
                        self.needles.push(needles);
                    }
                    if let Some(what) = unmapped {
                        let against = if rule.logsource.product.is_some() {
                            "every event of its product"
                        } else {
                            "every event but those of Windows event logs"
                        };
                        self.report.warnings.push((
                            path.clone(),
                            format!("log source {what} is not in the log source table: evaluated against {against}"),
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

        // Where each variant applies: (channel, event id), channel, product, or everywhere.
        // Per channel: the variants by event id, and those for any event id.
        type ChannelLists = (FastMap<i64, Vec<u32>>, Vec<u32>);
        let mut by_channel: HashMap<String, ChannelLists> = HashMap::new();
        let mut by_product: HashMap<Product, Vec<u32>> = HashMap::new();
        let mut any_product: Vec<u32> = Vec::new();
        // The same but those whose category or service the log source table does not know
        // (`category: database`, `category: antivirus`, `service: nginx`): no Windows event log
        // provides them, so they stay out of the Windows buckets (they fired on Security and
        // Sysmon events only by accident: a `Filename` or a word such as "drop" in a message).
        let mut any_but_unmapped: Vec<u32> = Vec::new();
        // Variants for one data set of docs/fields.md (`event.dataset`): only events that name
        // that data set can meet them, so they are kept out of every other bucket.
        let mut by_dataset: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, cv) in self.variants.iter().enumerate() {
            let i = i as u32;
            if let Some((_, sets)) = cv.variant.conditions.iter().find(|(f, _)| f == "event.dataset") {
                for d in sets {
                    by_dataset.entry(d.clone()).or_default().push(i);
                }
                continue;
            }
            match cv.variant.channels() {
                Some(channels) => {
                    // Event ids from the log source, else those the detection requires.
                    let ids = cv.variant.event_ids().or_else(|| cv.detection.required_ints("EventID"));
                    for ch in channels {
                        let entry = by_channel.entry(ch.clone()).or_default();
                        match &ids {
                            Some(ids) => {
                                for id in ids {
                                    let list = entry.0.entry(*id).or_default();
                                    if list.last() != Some(&i) {
                                        list.push(i);
                                    }
                                }
                            }
                            None => entry.1.push(i),
                        }
                    }
                }
                None => match &cv.products {
                    Some(ps) => {
                        for &p in ps.iter() {
                            by_product.entry(p).or_default().push(i);
                        }
                    }
                    None => {
                        any_product.push(i);
                        if cv.mapped {
                            any_but_unmapped.push(i);
                        }
                    }
                },
            }
        }
        // Each bucket lists every variant an event of its kind meets, in a fixed order: by
        // event id, by channel, by product, then those for every product.
        let joined = |lists: &[&[u32]]| Bucket::new(lists.concat());
        let product_list = |p: Product| by_product.get(&p).map(Vec::as_slice).unwrap_or(&[]);
        let windows = product_list(Product::Windows);
        let channels = by_channel
            .iter()
            .map(|(ch, (ids, rest))| {
                let by_id =
                    ids.iter().map(|(id, list)| (*id, joined(&[list, rest, windows, &any_but_unmapped]))).collect();
                (
                    ch.as_str().into(),
                    ChannelBuckets { by_event_id: by_id, other: joined(&[rest, windows, &any_but_unmapped]) },
                )
            })
            .collect();
        let products = PRODUCTS.map(|p| {
            let any = if p == Product::Windows { &any_but_unmapped } else { &any_product };
            joined(&[product_list(p), any])
        });
        let by_dataset = by_dataset.into_iter().map(|(d, list)| (d.into_boxed_str(), Bucket::new(list))).collect();
        RuleSet {
            rules: self.rules,
            variants: self.variants,
            needles: self.needles,
            by_channel: channels,
            by_product: products,
            by_dataset,
            automata: Automata::default(),
            correlations,
            report: self.report,
        }
    }
}

const PRODUCTS: [Product; 4] = [Product::Windows, Product::Linux, Product::Zeek, Product::Other];

fn product_index(p: Product) -> usize {
    match p {
        Product::Windows => 0,
        Product::Linux => 1,
        Product::Zeek => 2,
        Product::Other => 3,
    }
}

/// The variants that events of one kind (a channel and event id, a channel, a product) meet,
/// and the literal prefilter for them, built when the first such event comes.
struct Bucket {
    variants: Box<[u32]>,
    plan: OnceLock<Plan>,
}

impl Bucket {
    fn new(variants: Vec<u32>) -> Bucket {
        Bucket { variants: variants.into(), plan: OnceLock::new() }
    }
}

struct ChannelBuckets {
    by_event_id: FastMap<i64, Bucket>,
    /// Events of the channel whose event id has no rules of its own.
    other: Bucket,
}

/// A bucket's literal prefilter: for each field that a bucket's rule needs a literal in, an
/// automaton over the literals of that field only; for keyword literals, one automaton run
/// over every field. A variant with literals is evaluated only if one literal of each of its
/// clauses was found (see [`CompiledDetection::needle_clauses`]); variants without literals
/// are always evaluated.
///
/// Each clause has a slot in the bit set the scan marks: a variant's first clause the
/// variant's position in the bucket, its other clauses slots after the last position.
struct Plan {
    /// Slots of the variants without literals, as a bit set.
    always: Box<[u64]>,
    /// The number of variants (the slots before the extra clauses').
    variants: u32,
    /// Per variant with more than one clause: the range of its other clauses' slots. Empty
    /// when no variant has more than one.
    extra: Box<[(u32, u32)]>,
    fields: Box<[FieldScan]>,
    anywhere: Option<Scanner>,
    /// Events that met the bucket, counted up to [`BUSY_BUCKET`].
    events: AtomicU32,
    /// Tells this plan's entries in the threads' [`FOUND`] caches apart from other plans'.
    id: u64,
}

struct FieldScan {
    /// The field as rules name it.
    key: FieldKey,
    /// Slots of the clauses that need only the field to be present (not null).
    present: Box<[u32]>,
    scanner: Option<Scanner>,
    /// Whether `scanner` also looks for the plan's keyword literals.
    covers_anywhere: bool,
}

impl Plan {
    fn build(variants: &[u32], needles: &[Clauses], automata: &Automata) -> Plan {
        let n = variants.len();
        let mut always = vec![0u64; n.div_ceil(64)];
        // Literal → the slots of the clauses that hold when it is found, per field; and the
        // slots of the clauses the field's presence meets.
        type FieldNeeds<'a> = (FastMap<&'a str, Vec<u32>>, Vec<u32>);
        let mut fields: FastMap<&str, FieldNeeds> = FastMap::default();
        let mut anywhere: FastMap<&str, Vec<u32>> = FastMap::default();
        let mut extra = Vec::new();
        let mut next_slot = n as u32;
        for (at, &v) in variants.iter().enumerate() {
            let clauses = &needles[v as usize];
            if clauses.is_empty() {
                always[at / 64] |= 1 << (at % 64);
                continue;
            }
            // Clause 0 has the variant's own slot; clauses 1.. the next free ones.
            let first_extra = next_slot;
            if clauses.len() > 1 {
                next_slot += clauses.len() as u32 - 1;
                extra.resize(at, (0, 0));
                extra.push((first_extra, next_slot));
            }
            for (k, clause) in clauses.iter().enumerate() {
                let slot = if k == 0 { at as u32 } else { first_extra + k as u32 - 1 };
                for n in clause {
                    let targets = match n {
                        Needle::Literal { text, field: Some(f) } => {
                            fields.entry(f).or_default().0.entry(text).or_default()
                        }
                        Needle::Literal { text, field: None } => anywhere.entry(text).or_default(),
                        Needle::Present(f) => &mut fields.entry(f).or_default().1,
                    };
                    if targets.last() != Some(&slot) {
                        targets.push(slot);
                    }
                }
            }
        }
        if !extra.is_empty() {
            extra.resize(n, (0, 0));
        }
        always.resize((next_slot as usize).div_ceil(64), 0);
        // The automaton of a field with many literals (a command line's, a script's) looks
        // for the keyword literals too, so that its value, often long, is read once: the
        // keyword pass then skips it. A field with few literals keeps its own, for which a
        // vectorized search (the gate) usually rules the value out at once.
        let mut scans: Vec<FieldScan> = fields
            .into_iter()
            .map(|(name, (mut literals, present))| {
                let covers_anywhere = !anywhere.is_empty() && literals.len() >= MERGE_KEYWORDS_FROM;
                for (text, targets) in anywhere.iter().filter(|_| covers_anywhere) {
                    let merged = literals.entry(text).or_default();
                    merged.extend_from_slice(targets);
                    merged.sort_unstable();
                    merged.dedup();
                }
                FieldScan {
                    key: FieldKey::new(name),
                    present: present.into(),
                    scanner: (!literals.is_empty()).then(|| Scanner::build(literals, automata)),
                    covers_anywhere,
                }
            })
            .collect();
        scans.sort_by(|a, b| a.key.name().cmp(b.key.name()));
        let anywhere = (!anywhere.is_empty()).then(|| Scanner::build(anywhere, automata));
        Plan {
            always: always.into(),
            variants: n as u32,
            extra: extra.into(),
            fields: scans.into(),
            anywhere,
            events: AtomicU32::new(0),
            id: NEXT_PLAN.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Calls `f` with the positions of the plan's fields in `event` (in the order of
    /// `self.fields`; [`ABSENT`] for a field it lacks). Events of one layout have their
    /// fields at the same positions, so each thread keeps what it found for a plan and a layout
    /// (in a table of [`FOUND_SLOTS`], by both): an event of the layout before is then not
    /// looked up field by field.
    fn with_positions<R>(&self, event: &Event, f: impl FnOnce(&[u32]) -> R) -> R {
        let layout = event.layout();
        let find = || -> Box<[u32]> {
            self.fields.iter().map(|s| event.lookup_position(&s.key).map_or(ABSENT, |at| at as u32)).collect()
        };
        FOUND.with(|cell| {
            let Ok(mut found) = cell.try_borrow_mut() else { return f(&find()) };
            if found.is_empty() {
                found.resize_with(FOUND_SLOTS, || None);
            }
            let hash = (self.id ^ (layout.id() as u64).rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let Some(slot) = found.get_mut((hash >> (64 - FOUND_SLOTS.trailing_zeros())) as usize) else {
                return f(&find());
            };
            match slot {
                Some(e) if e.plan == self.id && e.layout.same(layout) => {}
                _ => *slot = Some(Found { plan: self.id, layout: layout.clone(), positions: find() }),
            }
            match slot {
                Some(e) => f(&e.positions),
                None => f(&find()),
            }
        })
    }

    /// Whether the variant at bucket position `at` may match: its first clause's slot is
    /// marked in `possible` (the caller knows), and so are its other clauses'.
    fn others_met(&self, at: usize, possible: &[u64]) -> bool {
        let Some(&(start, end)) = self.extra.get(at) else { return true };
        (start..end).all(|s| possible.get(s as usize / 64).is_some_and(|w| w & (1 << (s % 64)) != 0))
    }

    /// Marks in `possible` the slots of the clauses one of whose literals occurs where it
    /// must (or whose field is present).
    fn scan(&self, event: &Event, possible: &mut [u64]) {
        if self.events.load(Ordering::Relaxed) < BUSY_BUCKET
            && self.events.fetch_add(1, Ordering::Relaxed) + 1 == BUSY_BUCKET
        {
            for s in self.fields.iter().filter_map(|f| f.scanner.as_ref()).chain(&self.anywhere) {
                s.automaton.promote();
            }
        }
        // The fields whose values were already searched for the keyword literals.
        let mut covered = [usize::MAX; MAX_COVERED];
        let mut n_covered = 0;
        self.with_positions(event, |positions| {
            for (f, &at) in self.fields.iter().zip(positions) {
                let Some(field) = event.fields().get(at as usize) else { continue };
                let value = &field.value;
                if f.covers_anywhere && n_covered < MAX_COVERED {
                    covered[n_covered] = at as usize;
                    n_covered += 1;
                }
                if !value.is_null() {
                    mark(&f.present, possible);
                }
                if let Some(scanner) = &f.scanner {
                    value.for_each_scalar(&mut |v| {
                        if let Value::Str(t) = v {
                            scanner.scan(t.lower().as_bytes(), possible);
                        }
                        false
                    });
                }
            }
        });
        if let Some(anywhere) = &self.anywhere {
            // Keyword literals may be anywhere: every string value long enough to hold one,
            // joined by a byte that no literal holds (0xFF is never in UTF-8), so that no
            // literal is found across two values, and looked for in one pass.
            let shortest = anywhere.automaton.shortest;
            with_scratch(&JOINED, |joined| {
                joined.clear();
                let uncovered = event.fields().iter().enumerate().filter(|(i, _)| !covered[..n_covered].contains(i));
                for f in uncovered.map(|(_, f)| f) {
                    f.value.for_each_scalar(&mut |v| {
                        if let Value::Str(t) = v
                            && t.lower().len() >= shortest
                        {
                            joined.extend_from_slice(t.lower().as_bytes());
                            joined.push(SEPARATOR);
                        }
                        false
                    });
                }
                anywhere.scan(joined, possible);
            });
        }
    }
}

/// What a thread found of one plan's fields in events of one layout (see
/// [`Plan::with_positions`]). Holding the layout keeps its id from being another's.
struct Found {
    plan: u64,
    layout: FieldLayout,
    positions: Box<[u32]>,
}

/// The position of a field an event lacks.
const ABSENT: u32 = u32::MAX;

/// Entries of a thread's [`FOUND`] table (a power of two): a bucket's events have a few
/// layouts, and some hundred buckets meet events.
const FOUND_SLOTS: usize = 1 << 10;

/// Numbers the plans built (see [`Plan::id`]).
static NEXT_PLAN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// Where plans' fields were found in events of a layout, by plan and layout.
    static FOUND: std::cell::RefCell<Vec<Option<Found>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A field searched for this many literals or more is searched for the keyword literals in
/// the same pass (see [`Plan::build`]): beyond 64 literals there is no gate to keep.
const MERGE_KEYWORDS_FROM: usize = 64;

/// At most this many fields searched with their own automata are skipped by the keyword
/// pass (a plan names some twenty fields at most; any beyond are searched twice, which finds
/// nothing more and nothing less).
const MAX_COVERED: usize = 32;

/// Separates the values joined for the keyword scan: never a byte of UTF-8 text, so never a
/// byte of a literal.
const SEPARATOR: u8 = 0xFF;

thread_local! {
    /// The values of the event being scanned for keyword literals, joined.
    static JOINED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch vector, kept between events so that it is allocated
/// once; or with a fresh one if the thread's is in use (a re-entrant call).
fn with_scratch<T, R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<T>>>,
    f: impl FnOnce(&mut Vec<T>) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut mine) => f(&mut mine),
        Err(_) => f(&mut Vec::new()),
    })
}

/// A bucket's automata get their vectorized gate once this many events have met it (most
/// buckets see a few events and never need one).
///
/// There is no DFA tier: the gate rules out most texts, and over the ×20 benchmark DFAs (an
/// 8 MB budget of them) saved no CPU time measurably while they held some 7 MiB that a
/// one-file hunt never built, so that memory grew with the input (BENCHMARKS.md).
const BUSY_BUCKET: u32 = 256;

/// A search for some literals: for up to [`GRAMS_FROM`] literals a contiguous NFA, gated once
/// a busy bucket uses it; for more, their rarest four-byte pieces ([`GramSet`]).
struct Automaton {
    patterns: Literals,
    /// The length of the shortest literal.
    shortest: usize,
    search: Search,
    /// A vectorized search for the first occurrence of any literal (Teddy, for up to 64
    /// literals where the processor has the instructions): most texts hold none, and then
    /// the automaton's byte-by-byte walk is skipped. Where a literal occurs, the walk finds
    /// all of them, starting where the first one starts. Built when a busy bucket uses the
    /// automaton.
    gate: OnceLock<Option<aho_corasick::packed::Searcher>>,
}

/// How an [`Automaton`] looks for its literals.
enum Search {
    Nfa(Box<aho_corasick::nfa::contiguous::NFA>),
    Grams(GramSet),
    /// No automaton could be built (too many states): every literal is taken as found.
    Unbuilt,
}

/// From this many literals on, a search's literals are found by their rarest four-byte pieces
/// rather than by an automaton: no vectorized gate takes more than 64 literals, and without
/// one the walk of an automaton this large costs some 5 ns a byte, the pieces' scan about 2.
const GRAMS_FROM: usize = 65;

/// An automaton over some literals, and for each literal the bucket positions of the
/// variants that need it. Buckets that look for the same literals share one automaton.
struct Scanner {
    automaton: Arc<Automaton>,
    targets: Box<[Box<[u32]>]>,
}

/// Sorted literals.
type Literals = Box<[Box<str>]>;

/// Automata by the (sorted) literals they look for: under the hash of the literals, those
/// with that hash (so that a lookup need not copy the literals).
#[derive(Default)]
struct Automata {
    by_literals: Mutex<FastMap<u64, Vec<Arc<Automaton>>>>,
    hasher: foldhash::fast::RandomState,
}

/// Maps within the rule set, whose keys (channels, event ids, field names, literals) come
/// from rules and events: hashed with foldhash rather than SipHash, as the bucket of every
/// event is looked up by its channel.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

impl Scanner {
    fn build(literals: FastMap<&str, Vec<u32>>, automata: &Automata) -> Scanner {
        let mut literals: Vec<(&str, Vec<u32>)> = literals.into_iter().collect();
        literals.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let texts: Vec<&str> = literals.iter().map(|(l, _)| *l).collect();
        let targets = literals.into_iter().map(|(_, t)| t.into_boxed_slice()).collect();
        let key = automata.hasher.hash_one(&texts);
        let same = |a: &&Arc<Automaton>| a.patterns.iter().map(|p| &**p).eq(texts.iter().copied());
        if let Ok(cache) = automata.by_literals.lock()
            && let Some(a) = cache.get(&key).and_then(|list| list.iter().find(same))
        {
            return Scanner { automaton: a.clone(), targets };
        }
        let patterns: Literals = texts.iter().map(|t| Box::from(*t)).collect();
        let automaton = Arc::new(Automaton::build(patterns));
        if let Ok(mut cache) = automata.by_literals.lock() {
            cache.entry(key).or_default().push(automaton.clone());
        }
        Scanner { automaton, targets }
    }

    fn scan(&self, text: &[u8], possible: &mut [u64]) {
        let a = &*self.automaton;
        // No literal fits in a shorter text.
        if text.len() < a.shortest {
            return;
        }
        // Where the first literal starts: no literal starts before.
        let mut from = 0;
        if let Some(Some(gate)) = a.gate.get() {
            match gate.find(text) {
                Some(m) => from = m.start(),
                None => return,
            }
        }
        match &a.search {
            Search::Grams(grams) => grams.find(text, &mut |i| {
                if let Some(t) = self.targets.get(i) {
                    mark(t, possible);
                }
            }),
            Search::Nfa(nfa) => run(&**nfa, &self.targets, text.get(from..).unwrap_or_default(), possible),
            Search::Unbuilt => {
                for t in self.targets.iter() {
                    mark(t, possible);
                }
            }
        }
    }
}

impl Automaton {
    fn build(patterns: Literals) -> Automaton {
        let search = if patterns.len() >= GRAMS_FROM {
            Search::Grams(GramSet::new(patterns.iter().map(|p| p.as_bytes())))
        } else {
            aho_corasick::nfa::contiguous::Builder::new()
                .match_kind(MatchKind::Standard)
                .prefilter(false)
                .build(patterns.iter().map(|p| p.as_bytes()))
                .map_or(Search::Unbuilt, |nfa| Search::Nfa(Box::new(nfa)))
        };
        let shortest = patterns.iter().map(|p| p.len()).min().unwrap_or(0);
        Automaton { patterns, shortest, search, gate: OnceLock::new() }
    }

    /// Builds the gate (for an NFA only: the gram search has none).
    fn promote(&self) {
        if !matches!(self.search, Search::Nfa(_)) {
            return;
        }
        self.gate.get_or_init(|| aho_corasick::packed::Searcher::new(self.patterns.iter().map(|p| p.as_bytes())));
    }
}

/// An overlapping search: every literal that ends at every position marks its variants.
fn run<A: aho_corasick::automaton::Automaton>(a: &A, targets: &[Box<[u32]>], text: &[u8], possible: &mut [u64]) {
    let Ok(mut sid) = a.start_state(Anchored::No) else {
        for t in targets {
            mark(t, possible);
        }
        return;
    };
    for &b in text {
        sid = a.next_state(Anchored::No, sid, b);
        if a.is_special(sid) && a.is_match(sid) {
            for i in 0..a.match_len(sid) {
                if let Some(t) = targets.get(a.match_pattern(sid, i).as_usize()) {
                    mark(t, possible);
                }
            }
        }
    }
}

fn mark(targets: &[u32], possible: &mut [u64]) {
    for &at in targets {
        if let Some(w) = possible.get_mut(at as usize / 64) {
            *w |= 1 << (at % 64);
        }
    }
}

/// Compiled, indexed rules.
pub struct RuleSet {
    rules: Vec<LoadedRule>,
    variants: Vec<CompiledVariant>,
    /// Per variant: the facts it needs (see [`CompiledDetection::needle_clauses`]).
    needles: Vec<Clauses>,
    by_channel: FastMap<Box<str>, ChannelBuckets>,
    /// Per product (in [`PRODUCTS`] order): for events not taken by a channel.
    by_product: [Bucket; 4],
    /// Per data set (`event.dataset`, lowercase): the variants of rules routed by it, met in
    /// addition to the event's own bucket.
    by_dataset: HashMap<Box<str>, Bucket>,
    automata: Automata,
    correlations: Vec<(LoadedRule, CorrelationRule)>,
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

    /// The bucket of an event: by channel and event id, by channel, else by product.
    fn bucket(&self, event: &Event) -> &Bucket {
        // The readers name these two exactly so and put them first: found by a short scan,
        // which spares building the event's field index when its bucket holds no rule.
        let field = |name: &str, lower: &str| event.get_exact(name).or_else(|| event.get_folded(name, lower));
        if event.product == Product::Windows
            && let Some(channel) = field("Channel", "channel").and_then(Value::as_lower_text)
            && let Some(index) = self.by_channel.get(&*channel)
        {
            let id = field("EventID", "eventid").and_then(|v| match v {
                Value::Int(i) => Some(*i),
                other => other.as_text().and_then(|t| t.trim().parse().ok()),
            });
            return id.and_then(|id| index.by_event_id.get(&id)).unwrap_or(&index.other);
        }
        &self.by_product[product_index(event.product)]
    }

    fn evaluate(&self, v: u32, event: &Event, start: usize, out: &mut Vec<RuleId>) {
        let cv = &self.variants[v as usize];
        if (!cv.check_conditions || cv.variant.accepts(event))
            && cv.detection.matches(event)
            && !out[start..].contains(&cv.rule)
        {
            out.push(cv.rule);
        }
    }

    /// The bucket of the event's data set, when rules are routed by it.
    fn dataset_bucket(&self, event: &Event) -> Option<&Bucket> {
        if self.by_dataset.is_empty() {
            return None;
        }
        let d = event.get_exact("event.dataset")?.as_lower_text()?;
        self.by_dataset.get(&*d)
    }

    /// Appends to `out` the rules that match `event` (each at most once).
    pub fn matches(&self, event: &Event, out: &mut Vec<RuleId>) {
        let start = out.len();
        self.match_bucket(self.bucket(event), event, start, out);
        if let Some(b) = self.dataset_bucket(event) {
            self.match_bucket(b, event, start, out);
        }
    }

    fn match_bucket(&self, bucket: &Bucket, event: &Event, start: usize, out: &mut Vec<RuleId>) {
        if bucket.variants.is_empty() {
            return;
        }
        let plan = bucket.plan.get_or_init(|| Plan::build(&bucket.variants, &self.needles, &self.automata));
        with_scratch(&POSSIBLE, |possible| {
            possible.clear();
            possible.extend_from_slice(&plan.always);
            plan.scan(event, possible);
            let words = (plan.variants as usize).div_ceil(64);
            for (k, &word) in possible[..words.min(possible.len())].iter().enumerate() {
                let mut w = word;
                while w != 0 {
                    let at = k * 64 + w.trailing_zeros() as usize;
                    w &= w - 1;
                    if let Some(&v) = bucket.variants.get(at)
                        && plan.others_met(at, possible)
                    {
                        self.evaluate(v, event, start, out);
                    }
                }
            }
        });
    }

    /// Matches without the prefilter: every candidate rule is evaluated. Used to check that the
    /// prefilter never changes a result.
    pub fn matches_unfiltered(&self, event: &Event, out: &mut Vec<RuleId>) {
        let start = out.len();
        let dataset = self.dataset_bucket(event).map_or(&[][..], |b| &b.variants[..]);
        for &v in self.bucket(event).variants.iter().chain(dataset) {
            self.evaluate(v, event, start, out);
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
        // The rule set keeps the detection compiled, and the fields it names.
        let kept = &rs.rule(RuleId(0)).rule;
        assert!(kept.detection.is_null());
        assert_eq!(kept.detection_fields, ["Image"]);
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

    /// A rule for any product whose category the log source table does not know (SigmaHQ's
    /// `category: database`, `category: antivirus`) runs on every product's events but not on
    /// Windows event logs', where it only ever met a word or a field name by accident; a
    /// product-less rule without a category, or with one the table knows, still runs everywhere.
    #[test]
    fn unmapped_product_less_rules_stay_off_windows_event_logs() {
        let mut b = RuleSetBuilder::new();
        b.add_yaml(
            "db.yml",
            "title: Anomalous query\nlogsource: {category: database}\ndetection:\n  k: ['drop', 'truncate']\n  condition: k\n",
        );
        b.add_yaml("any.yml", "title: Anywhere\nlogsource: {}\ndetection:\n  k: ['drop']\n  condition: k\n");
        // A category the table knows for Windows: still everywhere (Sysmon for Linux has a channel too).
        b.add_yaml(
            "jsp.yml",
            "title: JSP\nlogsource: {category: file_event}\ndetection:\n  s:\n    TargetFilename|endswith: '.jsp'\n  condition: s\n",
        );
        let rs = b.build();
        assert_eq!(rs.report().loaded, 3, "{:?}", rs.report().failed);
        let mut out = Vec::new();
        rs.matches(&windows_event("Linux-Sysmon/Operational", 11, &[("TargetFilename", "/opt/w/a.jsp")]), &mut out);
        assert_eq!(out, vec![RuleId(2)]);
        let warnings: Vec<&str> = rs.report().warnings.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(
            warnings,
            ["log source category `database` is not in the log source table: evaluated against every event but \
              those of Windows event logs"]
        );
        for product in [Product::Linux, Product::Other] {
            let mut e = Event::new(Source::file("t"), Position::Line(1), product, "test");
            e.set("message", Value::str("DROP TABLE users;"));
            let mut out = Vec::new();
            rs.matches(&e, &mut out);
            out.sort();
            assert_eq!(out, vec![RuleId(0), RuleId(1)], "{product:?}");
        }
        out.clear();
        rs.matches(&windows_event("Security", 4663, &[("ObjectName", "C:\\drop\\x")]), &mut out);
        assert_eq!(out, vec![RuleId(1)]);
        let mut e = Event::new(Source::file("t"), Position::Line(1), Product::Windows, "test");
        e.set("ObjectName", Value::str("C:\\drop\\x"));
        out.clear();
        rs.matches(&e, &mut out);
        assert_eq!(out, vec![RuleId(1)], "a Windows event without a channel");
    }

    /// The prefilter (the automaton, with a vectorized gate in front once the bucket is busy)
    /// never hides a literal, wherever it sits in a value and whatever the
    /// value's length; keyword literals are not found across two values.
    #[test]
    fn literals_are_found_wherever_they_are() {
        let many: Vec<String> = (0..70).map(|i| format!("      - 'kw{i:02}zq'")).collect();
        let rules = [
            "title: Few keywords\nlogsource: {product: windows}\ndetection:\n  k:\n    - 'mimikatz'\n    - 'sekurlsa::'\n    - 'abc'\n  condition: k\n".to_owned(),
            format!("title: Many keywords\nlogsource: {{product: windows}}\ndetection:\n  k:\n{}\n  condition: k\n", many.join("\n").replace("      ", "    ")),
            "title: Field\nlogsource: {product: windows}\ndetection:\n  sel:\n    CommandLine|contains: ['-enc ', 'downloadstring']\n  condition: sel\n".to_owned(),
        ];
        let mut b = RuleSetBuilder::new();
        for (i, r) in rules.iter().enumerate() {
            b.add_yaml(&format!("r{i}.yml"), r);
        }
        let rs = b.build();
        assert_eq!(rs.report().loaded, 3, "{:?}", rs.report().failed);
        let pad = "x".repeat(90);
        // (the event's fields, the rules expected to match)
        type Case<'a> = (Vec<(&'a str, String)>, Vec<u32>);
        let cases: Vec<Case> = vec![
            (vec![("A", "MIMIKATZ".into())], vec![0]),
            (vec![("A", format!("{pad}sekurlsa::logonpasswords"))], vec![0]),
            (vec![("A", format!("sekurlsa::{pad}"))], vec![0]),
            (vec![("A", "short".into()), ("B", format!("{pad}abc{pad}"))], vec![0]),
            (vec![("A", "xab".into()), ("B", "cx".into())], vec![]),
            (vec![("A", "ab".into()), ("B", "c".into())], vec![]),
            // A value exactly as long as the shortest literal, beside values too short to hold one.
            (vec![("A", "x".into()), ("B", "abc".into()), ("C", "ab".into())], vec![0]),
            (vec![("A", "x".into()), ("B", "y".into())], vec![]),
            (vec![("A", "KW07ZQ".into())], vec![1]),
            (vec![("A", format!("{pad}kw69zq"))], vec![1]),
            (vec![("A", "kw6".into()), ("B", "9zq".into())], vec![]),
            (vec![("CommandLine", "powershell -enc AAAA".into())], vec![2]),
            (vec![("CommandLine", format!("{pad}IEX (New-Object Net.WebClient).DownloadString('x')"))], vec![2]),
            (vec![("Other", "powershell -enc AAAA".into())], vec![]),
            (vec![("CommandLine", format!("{pad} mimikatz -enc "))], vec![0, 2]),
            // The field's literals after the first one found, and shorter than the shortest.
            (vec![("CommandLine", format!("{pad}-enc {pad}downloadstring"))], vec![2]),
            (vec![("CommandLine", "-en".into())], vec![]),
        ];
        // More events than it takes for the bucket to become busy: with and without the gate.
        for round in 0..2 * BUSY_BUCKET as usize / cases.len() + 2 {
            for (fields, expected) in &cases {
                let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let event = windows_event("Application", 1000, &fields);
                let (mut got, mut all) = (Vec::new(), Vec::new());
                rs.matches(&event, &mut got);
                rs.matches_unfiltered(&event, &mut all);
                got.sort();
                all.sort();
                let expected: Vec<RuleId> = expected.iter().map(|&i| RuleId(i)).collect();
                assert_eq!(got, expected, "round {round}, {fields:?}");
                assert_eq!(all, expected, "round {round}, {fields:?}");
            }
        }
    }

    /// Events of one bucket with their fields in different places (other layouts), in turn:
    /// where a plan found its fields in one layout is never taken for another's, whether the
    /// field moved, changed case, or went missing.
    #[test]
    fn fields_are_found_in_every_layout_of_a_bucket() {
        let mut b = RuleSetBuilder::new();
        b.add_yaml(
            "img.yml",
            "title: Img\nlogsource: {product: windows}\ndetection:\n  a:\n    Image|endswith: '\\tool.exe'\n  condition: a\n",
        );
        b.add_yaml(
            "cli.yml",
            "title: Cli\nlogsource: {product: windows}\ndetection:\n  a:\n    CommandLine|contains: ' -secret '\n  condition: a\n",
        );
        let rs = b.build();
        let (tool, cli) = ("C:\\x\\tool.exe", "run -secret now");
        type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<u32>);
        let cases: Vec<Case> = vec![
            (vec![("Image", tool), ("CommandLine", cli)], vec![0, 1]),
            (vec![("CommandLine", cli), ("Image", tool)], vec![0, 1]),
            (vec![("Image", "C:\\x\\other.exe"), ("CommandLine", cli)], vec![1]),
            (vec![("CommandLine", "quiet"), ("Image", tool)], vec![0]),
            (vec![("image", tool), ("X", cli)], vec![0]),
            (vec![("X", tool), ("commandline", cli)], vec![1]),
            (vec![("X", tool), ("Y", cli)], vec![]),
            (vec![("Y", cli)], vec![]),
            (vec![("Pad", "p"), ("Pad2", "q"), ("Image", tool)], vec![0]),
        ];
        for round in 0..2 * BUSY_BUCKET as usize / cases.len() + 2 {
            for (fields, expected) in &cases {
                let event = windows_event("Application", 1, fields);
                let mut got = Vec::new();
                rs.matches(&event, &mut got);
                got.sort();
                let expected: Vec<RuleId> = expected.iter().map(|&i| RuleId(i)).collect();
                assert_eq!(got, expected, "round {round}, {fields:?}");
            }
        }
    }

    /// A variant with two clauses is evaluated only when both are met, and every match is
    /// still found: with more variants than one word of the bit set holds, so that the extra
    /// clauses' slots lie beyond the first words, and with and without the gate.
    #[test]
    fn variants_with_two_clauses_match_as_without_the_prefilter() {
        let mut b = RuleSetBuilder::new();
        for i in 0..70 {
            let rule = match i % 7 {
                // One clause only.
                3 => format!(
                    "title: R{i}\nlogsource: {{product: windows}}\ndetection:\n  a:\n    Image|endswith: '\\tool{i:02}.exe'\n  condition: a\n"
                ),
                // No clause: always evaluated.
                5 => format!(
                    "title: R{i}\nlogsource: {{product: windows}}\ndetection:\n  a:\n    Image|endswith: '\\tool{i:02}.exe'\n  b:\n    CommandLine|contains: 'x'\n  condition: a or not b\n"
                ),
                _ => format!(
                    "title: R{i}\nlogsource: {{product: windows}}\ndetection:\n  a:\n    Image|endswith: '\\tool{i:02}.exe'\n  b:\n    CommandLine|contains: ' -flag{i:02} '\n  condition: a and b\n"
                ),
            };
            b.add_yaml(&format!("r{i}.yml"), &rule);
        }
        let rs = b.build();
        assert_eq!(rs.report().loaded, 70, "{:?}", rs.report().failed);
        let mut found = 0;
        for round in 0..2 * BUSY_BUCKET as usize / 70 + 2 {
            for i in 0..70 {
                let image = format!("C:\\x\\tool{i:02}.exe");
                let other = format!("C:\\x\\tool{:02}.exe", (i + 1) % 70);
                let flag = format!("run -flag{i:02} now");
                for (img, cli) in
                    [(&image, &flag), (&image, &String::new()), (&other, &flag), (&image, &"x".to_owned())]
                {
                    let event = windows_event("Application", 1, &[("Image", img), ("CommandLine", cli)]);
                    let (mut got, mut all) = (Vec::new(), Vec::new());
                    rs.matches(&event, &mut got);
                    rs.matches_unfiltered(&event, &mut all);
                    got.sort();
                    all.sort();
                    assert_eq!(got, all, "round {round}, rule {i}: {img} {cli}");
                    found += got.len();
                }
            }
        }
        assert!(found > 100, "{found}");
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
