//! Retro-hunts: Sigma rules (correlation rules included) or indicators run over a stored window
//! of events, raising alerts for past matches — a new C2 indicator from a peer CERT shows at
//! once which organisation already talked to it.
//!
//! A hunt is checked and compiled when it is asked for (a rule that does not compile is refused
//! before anything runs), recorded (queued), then run by a background task, at most
//! [`super::MonitorConfig::max_retrohunts`] at once. The task reads the window one organisation
//! at a time, in event-time order, a page at a time ([`nigehban_store::Store::retrohunt_events`]:
//! only the events the requester may read), detects each page with the hunt's own
//! [`DetectorSet`] through live detection's [`detect::detect_batch`] on the blocking pool (one
//! fresh stream per organisation, so correlation windows work as live; [`detect::finish`]
//! closes them at the end of the organisation's events), and commits the hits as alerts owned
//! by the event's organisation, as live detection does.
//!
//! **Retro-hunt alerts** carry `retrohunt|` before their dedup key, so they never add to a live
//! alert's count; their rule title starts with "Retro-hunt:" and their tags name `retrohunt`
//! and the hunt that created them. **Counting once:** each hit's match key (its alert's dedup
//! key, the event, the matched values) is claimed before the hits are committed and only newly
//! claimed hits are counted, so running a hunt again over the same window (or another hunt
//! that finds the same detections) adds nothing twice; see `nigehban_store`'s `retrohunt.rs`
//! for how claims and commits stay consistent across crashes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use nigehban_detect::{DetectorSet, IndicatorDetector, SigmaDetector};
use nigehban_intel::{IndicatorMeta, IndicatorSet, load_plain, load_stix_bundle};
use nigehban_policy::{Action, Kind, Principal, Refusal, Role, Tlp, Tree, read_scope};
use nigehban_sigma::RuleSetBuilder;
use nigehban_store::{
    AlertHit, CursorUpdate, NewRetroHunt, RetroHunt, RetroHuntProgress, RetroHuntRead, RetroHuntStatus, StoreError,
    retrohunt_cursor,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::Monitor;
use super::detect::{self, Streams};
use crate::ApiError;
use crate::auth::Auth;

/// Events read and detected at a time (memory: a page of encoded events and its findings).
const PAGE: u32 = 5_000;

/// Tries of a page's commit before the hunt fails.
const COMMIT_TRIES: u32 = 3;

/// The longest title.
const MAX_TITLE: usize = 300;

/// The warnings kept with a hunt.
const MAX_WARNINGS: usize = 20;

/// The retro-hunts of this process: the slots they run in, and the cancel flags of those
/// queued or running.
pub(crate) struct Running {
    slots: Arc<Semaphore>,
    max: u32,
    cancels: Mutex<HashMap<Uuid, Arc<AtomicBool>>>,
}

impl Running {
    pub(crate) fn new(max: usize) -> Running {
        let max = u32::try_from(max.clamp(1, 1_000)).unwrap_or(1);
        Running { slots: Arc::new(Semaphore::new(max as usize)), max, cancels: Mutex::new(HashMap::new()) }
    }

    fn register(&self, id: Uuid) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        if let Ok(mut c) = self.cancels.lock() {
            c.insert(id, flag.clone());
        }
        flag
    }

    /// The hunts this process holds (queued or running).
    pub(crate) fn held(&self) -> Vec<Uuid> {
        self.cancels.lock().map(|c| c.keys().copied().collect()).unwrap_or_default()
    }

    fn forget(&self, id: Uuid) {
        if let Ok(mut c) = self.cancels.lock() {
            c.remove(&id);
        }
    }

    /// Tells a hunt of this process to stop (its status is already `cancelled` in the store).
    pub(crate) fn cancel(&self, id: Uuid) {
        if let Ok(c) = self.cancels.lock()
            && let Some(flag) = c.get(&id)
        {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

impl Monitor {
    /// Takes every retro-hunt slot until the permit is dropped, so that new hunts stay queued
    /// (tests of the queue and of cancelling).
    #[doc(hidden)]
    pub async fn hold_retrohunt_slots_for_tests(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let r = &self.retrohunts;
        r.slots.clone().acquire_many_owned(r.max).await.ok()
    }
}

/// May this principal run retro-hunts? CERT and national analysts and managers over what their
/// CERT sees, an organisation's security lead over its own organisation's events (the read
/// scope decides which events; this decides who hunts at all). A token needs `events:read`
/// (it reads events) and `alerts:write` (it raises alerts).
pub(crate) fn may_hunt(p: &Principal) -> Result<(), Refusal> {
    if !matches!(p.role, Role::NationalAnalyst | Role::CertAnalyst | Role::CertManager | Role::OrgSecurityLead) {
        return Err(Refusal::Role);
    }
    if !p.scoped(Kind::Event, Action::Search) || !p.scoped(Kind::Alert, Action::Write) {
        return Err(Refusal::Scope);
    }
    Ok(())
}

/// Whether `p` sees the hunt: the hunters of the organisation that asked for it.
pub(crate) fn sees(p: &Principal, hunt: &RetroHunt) -> bool {
    may_hunt(p).is_ok() && hunt.org == p.org
}

/// What a retro-hunt hunts with, as it was asked for (kept with the hunt).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Definition {
    /// Sigma rules: one or more YAML documents, correlation rules included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rules: Option<String>,
    /// Indicator values (addresses, networks, domains, URLs, e-mail addresses, hashes), one
    /// each; `type:value` names the type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) indicators: Vec<String>,
    /// A STIX 2.1 bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stix: Option<serde_json::Value>,
    /// Whether a STIX indicator's `valid_from` bounds the past (by default it does not: the
    /// point is to find who talked to it before it was known; `valid_until` always ends it).
    #[serde(default)]
    pub(crate) respect_valid_from: bool,
}

/// A retro-hunt asked for.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) title: String,
    pub(crate) definition: Definition,
    /// Event time, µs: `from` inclusive, `to` exclusive.
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) orgs: Option<Vec<Uuid>>,
}

/// Why a definition cannot be hunted with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DefinitionError {
    #[error("rules: {name}: {reason}")]
    Rule { name: String, reason: String },
    #[error("rules: no rule found in the text")]
    NoRules,
    #[error("indicators[{index}] {value:?}: {reason}")]
    Indicator { index: usize, value: String, reason: String },
    #[error("stix: {0}")]
    Stix(String),
    #[error("nothing to hunt with: give Sigma rules, indicators or a STIX bundle")]
    Nothing,
}

/// The detectors of a definition, and what they hold.
pub(crate) struct Built {
    pub(crate) detectors: DetectorSet,
    pub(crate) rules: i64,
    pub(crate) correlations: i64,
    pub(crate) indicators: i64,
    pub(crate) warnings: Vec<String>,
}

/// A rule's name for messages: its title, else its id, else where it failed.
fn rule_name(title: Option<&str>, id: Option<&str>) -> String {
    match (title, id) {
        (Some(t), Some(i)) => format!("rule {t:?} ({i})"),
        (Some(t), None) => format!("rule {t:?}"),
        (None, Some(i)) => format!("rule {i}"),
        (None, None) => "the rules text".to_owned(),
    }
}

/// Compiles a definition into its detectors (Sigma rules with their correlation rules, one
/// indicator matcher). Nothing else runs: no built-in pack, no behaviour detectors.
/// `undated`: the time indicators are matched at for events without a time.
pub(crate) fn build(def: &Definition, undated: i64) -> Result<Built, DefinitionError> {
    let mut detectors = DetectorSet::new();
    let mut warnings = Vec::new();
    let (mut rules, mut correlations, mut indicators) = (0, 0, 0);
    if let Some(text) = def.rules.as_deref().filter(|t| !t.trim().is_empty()) {
        let mut builder = RuleSetBuilder::new();
        builder.add_yaml("rules", text);
        let set = builder.build();
        let report = set.report();
        if let Some(f) = report.failed.first() {
            return Err(DefinitionError::Rule {
                name: rule_name(f.title.as_deref(), f.id.as_deref()),
                reason: f.error.to_string(),
            });
        }
        if report.loaded == 0 && report.correlations == 0 {
            return Err(DefinitionError::NoRules);
        }
        warnings.extend(report.warnings.iter().map(|(_, w)| format!("rules: {w}")));
        rules = report.loaded as i64;
        correlations = report.correlations as i64;
        detectors.push(Box::new(SigmaDetector::new(Arc::new(set))));
    }
    let mut set = IndicatorSet::new();
    if !def.indicators.is_empty() {
        let source = set.add_source("indicators");
        // One value per line: the report's line is the value's index + 1.
        let values: Vec<&str> = def.indicators.iter().map(|v| v.lines().next().unwrap_or("")).collect();
        let text = values.join("\n");
        let report = load_plain(&mut set, "indicators", &text, IndicatorMeta::new(source, Tlp::Clear), None);
        if let Some(s) = report.skipped.first() {
            let index =
                s.location.rsplit(':').next().and_then(|l| l.parse::<usize>().ok()).map_or(0, |l| l.saturating_sub(1));
            return Err(DefinitionError::Indicator {
                index,
                value: values.get(index).map_or_else(String::new, |v| (*v).to_owned()),
                reason: s.reason.clone(),
            });
        }
        indicators += report.loaded as i64;
    }
    if let Some(bundle) = &def.stix {
        let text = stix_text(bundle, def.respect_valid_from);
        let report = load_stix_bundle(&mut set, "stix", &text, Tlp::Clear, None).map_err(DefinitionError::Stix)?;
        if report.loaded == 0 {
            let why = report.skipped.first().map_or_else(
                || "the bundle has no indicator".to_owned(),
                |s| {
                    format!(
                        "no indicator could be used ({} skipped; {}: {})",
                        report.skipped_total, s.location, s.reason
                    )
                },
            );
            return Err(DefinitionError::Stix(why));
        }
        if report.skipped_total > 0 {
            warnings.push(format!("stix: {} indicators skipped", report.skipped_total));
            warnings.extend(report.skipped.iter().map(|s| format!("stix: {}: {}", s.location, s.reason)));
        }
        indicators += report.loaded as i64;
    }
    if indicators > 0 {
        detectors.push(Box::new(IndicatorDetector::new(Arc::new(set.build()), undated)));
    }
    if detectors.is_empty() {
        return Err(DefinitionError::Nothing);
    }
    warnings.truncate(MAX_WARNINGS);
    Ok(Built { detectors, rules, correlations, indicators, warnings })
}

/// A STIX bundle as a retro-hunt loads it: unless `respect_valid_from`, its indicators lose
/// `valid_from`, so they match events from before they were known.
fn stix_text(bundle: &serde_json::Value, respect_valid_from: bool) -> String {
    if respect_valid_from {
        return bundle.to_string();
    }
    let mut bundle = bundle.clone();
    if let Some(objects) = bundle.get_mut("objects").and_then(|o| o.as_array_mut()) {
        for o in objects.iter_mut().filter_map(|o| o.as_object_mut()) {
            if o.get("type").and_then(|t| t.as_str()) == Some("indicator") {
                o.remove("valid_from");
            }
        }
    }
    bundle.to_string()
}

/// Why a retro-hunt was not started.
#[derive(Debug)]
pub(crate) enum SubmitError {
    /// The definition cannot be hunted with (a 400 naming the rule or value).
    Definition(DefinitionError),
    Api(ApiError),
}

impl From<ApiError> for SubmitError {
    fn from(e: ApiError) -> SubmitError {
        SubmitError::Api(e)
    }
}

impl From<StoreError> for SubmitError {
    fn from(e: StoreError) -> SubmitError {
        SubmitError::Api(e.into())
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        match e {
            SubmitError::Definition(d) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_definition", d.to_string()),
            SubmitError::Api(a) => a,
        }
    }
}

/// Checks, records and starts a retro-hunt for `auth` (the policy first, then the definition:
/// nothing runs unless every rule compiles).
pub(crate) async fn submit(
    monitor: &Arc<Monitor>,
    auth: &Auth,
    tree: Arc<Tree>,
    req: Request,
) -> Result<RetroHunt, SubmitError> {
    may_hunt(&auth.principal).map_err(ApiError::refused)?;
    let title = req.title.trim();
    let bad = |m: String| SubmitError::Api(ApiError::bad_request(m));
    if title.is_empty() {
        return Err(bad("title: give the retro-hunt a title".into()));
    }
    if title.chars().count() > MAX_TITLE {
        return Err(bad(format!("title: at most {MAX_TITLE} characters")));
    }
    if req.to <= req.from {
        return Err(bad("to: the window must end after it starts (from < to)".into()));
    }
    if let Some(orgs) = &req.orgs {
        if orgs.is_empty() {
            return Err(bad("orgs: name at least one organisation, or leave it out for all".into()));
        }
        if let Some(o) = orgs.iter().find(|o| tree.get(**o).is_none()) {
            return Err(bad(format!("orgs: {o} is not an organisation")));
        }
    }
    let def = req.definition.clone();
    let undated = req.to;
    let built = tokio::task::spawn_blocking(move || build(&def, undated))
        .await
        .map_err(|e| {
            tracing::error!(message = "Compiling a retro-hunt failed.", error = %e);
            ApiError::internal()
        })?
        .map_err(SubmitError::Definition)?;
    let new = NewRetroHunt {
        title: title.to_owned(),
        org: auth.principal.org,
        created_by: auth.user.as_ref().map(|u| u.id),
        token: auth.token.as_ref().map(|t| t.id),
        from: req.from,
        to: req.to,
        orgs: req.orgs.clone(),
        definition: serde_json::to_value(&req.definition).unwrap_or(serde_json::Value::Null),
        rules: built.rules,
        correlations: built.correlations,
        indicators: built.indicators,
        warnings: built.warnings,
    };
    let hunt = monitor.store.create_retrohunt(&auth.actor(), new).await?;
    let cancelled = monitor.retrohunts.register(hunt.id);
    let job = Job {
        monitor: monitor.clone(),
        id: hunt.id,
        who: auth.principal.clone(),
        tree,
        detectors: Arc::new(built.detectors),
        from: req.from,
        to: req.to,
        orgs: req.orgs,
        cancelled,
    };
    tokio::spawn(job.run());
    Ok(hunt)
}

/// Cancels a hunt `p` sees: recorded (and audited) in the store, then its task told.
pub(crate) async fn cancel(monitor: &Monitor, auth: &Auth, id: Uuid) -> Result<RetroHunt, ApiError> {
    let hunt = monitor.store.retrohunt(id).await?.filter(|h| sees(&auth.principal, h));
    let Some(hunt) = hunt else { return Err(ApiError::not_found("retro-hunt")) };
    monitor.store.cancel_retrohunt(&auth.actor(), hunt.id).await?;
    monitor.retrohunts.cancel(hunt.id);
    monitor.store.retrohunt(id).await?.ok_or_else(|| ApiError::not_found("retro-hunt"))
}

/// How a run ended before its end.
enum Stop {
    /// Cancelled (here, or its status changed in the store).
    Cancelled,
    Failed(String),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        Stop::Failed(format!("the store failed: {e}"))
    }
}

/// One hunt's run.
struct Job {
    monitor: Arc<Monitor>,
    id: Uuid,
    who: Principal,
    tree: Arc<Tree>,
    detectors: Arc<DetectorSet>,
    from: i64,
    to: i64,
    orgs: Option<Vec<Uuid>>,
    cancelled: Arc<AtomicBool>,
}

/// What a run has counted so far, and its page number (the claims' and the cursor's).
struct Tally {
    progress: RetroHuntProgress,
    page: i64,
}

impl Job {
    async fn run(self) {
        let Ok(_slot) = self.monitor.retrohunts.slots.clone().acquire_owned().await else { return };
        let outcome = self.hunt().await;
        let store = &self.monitor.store;
        let ended = match outcome {
            Ok(()) => store.finish_retrohunt(self.id, RetroHuntStatus::Done, None).await,
            Err(Stop::Failed(why)) => {
                tracing::warn!(message = "A retro-hunt failed.", id = %self.id, error = %why);
                store.finish_retrohunt(self.id, RetroHuntStatus::Failed, Some(&why)).await
            }
            Err(Stop::Cancelled) => store.settle_retrohunt(self.id).await.map(|()| false),
        };
        if let Err(e) = ended {
            // Settled at the next start (`recover_retrohunts`).
            tracing::error!(message = "A retro-hunt's end could not be recorded.", id = %self.id, error = %e);
        }
        self.monitor.retrohunts.forget(self.id);
        tracing::info!(message = "A retro-hunt ended.", id = %self.id);
    }

    fn stop_if_cancelled(&self) -> Result<(), Stop> {
        if self.cancelled.load(Ordering::Relaxed) { Err(Stop::Cancelled) } else { Ok(()) }
    }

    async fn hunt(&self) -> Result<(), Stop> {
        let store = &self.monitor.store;
        // The organisations read: those asked for (or all) that the requester may read.
        let scope = read_scope(&self.who, &self.tree);
        let orgs: Vec<Uuid> = match &self.orgs {
            None => scope.chain_owners.iter().copied().collect::<BTreeSet<_>>().into_iter().collect(),
            Some(asked) => asked
                .iter()
                .copied()
                .filter(|o| scope.chain_owners.contains(o))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        };
        let total = store.count_retrohunt_events(&self.who, &self.tree, &orgs, self.from, self.to).await?;
        if !store.start_retrohunt(self.id, total).await? {
            return Err(Stop::Cancelled);
        }
        tracing::info!(message = "A retro-hunt started.", id = %self.id, organisations = orgs.len(), events = total);
        let mut tally = Tally { progress: RetroHuntProgress { total, ..RetroHuntProgress::default() }, page: 0 };
        for org in orgs {
            self.hunt_org(org, &mut tally).await?;
        }
        Ok(())
    }

    /// One organisation's events in time order, with a fresh stream (correlation windows).
    async fn hunt_org(&self, org: Uuid, tally: &mut Tally) -> Result<(), Stop> {
        let config = &self.monitor.config;
        let mut streams = Streams::new();
        let mut strictest: Option<Tlp> = None;
        let mut after = None;
        loop {
            self.stop_if_cancelled()?;
            let read = RetroHuntRead { org, from: self.from, to: self.to, after, limit: PAGE };
            let (mut events, next) = self.monitor.store.retrohunt_events(&self.who, &self.tree, &read).await?;
            for e in &events {
                let tlp = e.tlp().unwrap_or(config.default_tlp);
                strictest = Some(strictest.map_or(tlp, |s| s.max(tlp)));
            }
            let scanned = events.len() as i64;
            if !events.is_empty() {
                let detectors = self.detectors.clone();
                let monitor = self.monitor.clone();
                let (hits, back) = tokio::task::spawn_blocking(move || {
                    let hits = detect::detect_batch(&detectors, &monitor.config, &mut events, &mut streams);
                    (hits, streams)
                })
                .await
                .map_err(|e| Stop::Failed(format!("detection failed: {e}")))?;
                streams = back;
                self.commit(hits, tally).await?;
            }
            tally.progress.scanned += scanned;
            if !self.monitor.store.retrohunt_progress(self.id, &tally.progress).await? {
                return Err(Stop::Cancelled);
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        // The end of the organisation's window: every correlation window still open is decided.
        if let Some(tlp) = strictest {
            let detectors = self.detectors.clone();
            let monitor = self.monitor.clone();
            let hits =
                tokio::task::spawn_blocking(move || detect::finish(&detectors, &monitor.config, &mut streams, tlp))
                    .await
                    .map_err(|e| Stop::Failed(format!("detection failed: {e}")))?;
            if !hits.is_empty() {
                self.commit(hits, tally).await?;
                if !self.monitor.store.retrohunt_progress(self.id, &tally.progress).await? {
                    return Err(Stop::Cancelled);
                }
            }
        }
        Ok(())
    }

    /// Marks a page's hits as the hunt's, claims them, and commits those newly claimed as
    /// alerts, moving the hunt's cursor to this page in the same transaction.
    async fn commit(&self, hits: Vec<AlertHit>, tally: &mut Tally) -> Result<(), Stop> {
        self.stop_if_cancelled()?;
        let store = &self.monitor.store;
        tally.page += 1;
        let page = tally.page;
        tally.progress.matches += hits.len() as i64;
        let mut keyed: Vec<(String, AlertHit)> = Vec::with_capacity(hits.len());
        let mut seen = HashSet::new();
        for mut h in hits {
            if !mark(&mut h, self.id) {
                tally.progress.withheld += 1;
                continue;
            }
            let key = match_key(&h);
            if seen.insert(key.clone()) {
                keyed.push((key, h));
            } else {
                // The same detection twice in one page (two rules with one id): counted once.
                tally.progress.already_counted += 1;
            }
        }
        if keyed.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = keyed.iter().map(|(k, _)| k.clone()).collect();
        let all_alerts: Vec<String> =
            keyed.iter().map(|(_, h)| h.dedup_key.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let cursor = retrohunt_cursor(self.id);
        let mut tries = 0;
        let (claimed, created) = loop {
            tries += 1;
            let claimed = store.claim_retrohunt_matches(self.id, page, &keys).await?;
            let new: Vec<AlertHit> =
                keyed.iter().filter(|(k, _)| claimed.contains(k)).map(|(_, h)| h.clone()).collect();
            if new.is_empty() {
                break (claimed, Vec::new());
            }
            let update = CursorUpdate { name: &cursor, position: page, state: None, fence: None };
            match store.commit_detections(&new, Some(update)).await {
                Ok(created) => break (claimed, created),
                Err(e) => {
                    // Not committed: the claims go, so that the detections count when retried.
                    store.release_retrohunt_matches(self.id, page - 1).await?;
                    if tries >= COMMIT_TRIES {
                        return Err(Stop::Failed(format!("its alerts could not be committed: {e}")));
                    }
                    tracing::warn!(message = "A retro-hunt could not commit its alerts; retrying.", id = %self.id, error = %e);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        tally.progress.already_counted += (keyed.len() - claimed.len()) as i64;
        // The alerts this page added to; the others' detections were all counted before.
        let counted: HashSet<String> =
            keyed.iter().filter(|(k, _)| claimed.contains(k)).map(|(_, h)| h.dedup_key.clone()).collect();
        self.monitor.metrics.alerts_created.fetch_add(created.len() as u64, Ordering::Relaxed);
        store.link_retrohunt_alerts(self.id, &all_alerts, &counted, &created).await?;
        Ok(())
    }
}

/// Makes a hit the hunt's: a dedup key apart from live alerts', a title and tags that say where
/// it came from, and the strictest marking of the event and the indicator it matched. `false`
/// when that marking is TLP:RED (nobody could see the alert: it is withheld).
fn mark(h: &mut AlertHit, hunt: Uuid) -> bool {
    if h.engine == "indicator"
        && let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(&h.evidence.fields)
        && let Some(tlp) = fields.get("tlp").and_then(|t| t.as_str()).and_then(|t| t.parse::<Tlp>().ok())
    {
        h.tlp = h.tlp.max(tlp);
    }
    if h.tlp == Tlp::Red {
        return false;
    }
    h.dedup_key = format!("retrohunt|{}", h.dedup_key);
    h.rule_title = format!("Retro-hunt: {}", h.rule_title);
    h.tags.push("retrohunt".to_owned());
    h.tags.push(format!("retrohunt:{hunt}"));
    true
}

/// What makes a detection one: its alert, its event, where in the event and the values matched.
fn match_key(h: &AlertHit) -> String {
    let mut d = Sha256::new();
    for part in [
        h.dedup_key.as_bytes(),
        h.rule_id.as_bytes(),
        &h.evidence.event_id.unwrap_or(-1).to_be_bytes(),
        h.evidence.position.as_bytes(),
        h.evidence.fields.as_bytes(),
    ] {
        d.update((part.len() as u64).to_be_bytes());
        d.update(part);
    }
    hex::encode(d.finalize())
}

/// How often this process says its hunts are alive.
const KEEPALIVE: Duration = Duration::from_secs(20);
/// Hunts not kept alive for this long belong to a process that stopped.
const STALE: Duration = Duration::from_secs(180);

/// Runs until `shutdown` says stop: keeps this process's hunts alive and, every minute, fails
/// and settles the hunts of processes that stopped (this one's before a restart included).
pub(crate) async fn maintain(monitor: Arc<Monitor>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut ticks = 0u32;
    loop {
        let held = monitor.retrohunts.held();
        if !held.is_empty()
            && let Err(e) = monitor.store.retrohunts_keepalive(&held).await
        {
            tracing::warn!(message = "Retro-hunts could not be kept alive.", error = %e);
        }
        if ticks.is_multiple_of(3) {
            let stale_before =
                jiff::Timestamp::now().as_microsecond() - i64::try_from(STALE.as_micros()).unwrap_or(i64::MAX);
            if let Err(e) = monitor.store.recover_stale_retrohunts(stale_before).await {
                tracing::warn!(message = "Retro-hunts of stopped processes could not be recovered.", error = %e);
            }
        }
        ticks = ticks.wrapping_add(1);
        tokio::select! {
            _ = tokio::time::sleep(KEEPALIVE) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "title: Whoami\nid: r-1\nlogsource: {product: windows, category: process_creation}\n\
                        detection:\n  sel:\n    Image|endswith: '\\whoami.exe'\n  condition: sel\nlevel: high\n";

    #[test]
    fn a_rule_that_does_not_compile_is_named() {
        let def = Definition {
            rules: Some(format!(
                "{RULE}---\ntitle: Broken\nid: r-2\nlogsource: {{product: windows}}\ndetection:\n  sel:\n    Image|nosuchmodifier: x\n  condition: sel\n"
            )),
            ..Definition::default()
        };
        let e = build(&def, 0).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("\"Broken\"") && e.contains("r-2"), "{e}");
        let e = build(&Definition::default(), 0).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("nothing to hunt with"), "{e}");
    }

    #[test]
    fn a_bad_indicator_is_named_by_index() {
        let def =
            Definition { indicators: vec!["203.0.113.9".into(), "not an indicator".into()], ..Definition::default() };
        let e = build(&def, 0).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("indicators[1] \"not an indicator\""), "{e}");
        let ok = build(
            &Definition { indicators: vec!["203.0.113.9".into(), "evil.example".into()], ..Definition::default() },
            0,
        );
        assert!(ok.is_ok_and(|b| b.indicators == 2));
    }

    #[test]
    fn stix_valid_from_does_not_bound_the_past_unless_asked() {
        let bundle = serde_json::json!({"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "objects": [
            {"type": "indicator", "spec_version": "2.1", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
             "created": "2026-12-01T00:00:00Z", "modified": "2026-12-01T00:00:00Z", "pattern_type": "stix",
             "pattern": "[ipv4-addr:value = '198.51.100.7']", "valid_from": "2026-12-01T00:00:00Z"}]});
        let past = "2026-11-01T00:00:00Z".parse::<jiff::Timestamp>().map(|t| t.as_microsecond()).unwrap_or(0);
        for (respect, found) in [(false, true), (true, false)] {
            let def = Definition { stix: Some(bundle.clone()), respect_valid_from: respect, ..Definition::default() };
            let built = build(&def, past);
            assert!(built.as_ref().is_ok_and(|b| b.indicators == 1), "{:?}", built.err());
            let mut set = IndicatorSet::new();
            let r = load_stix_bundle(&mut set, "t", &stix_text(&bundle, respect), Tlp::Clear, None);
            assert!(r.is_ok());
            assert_eq!(set.build().match_value("198.51.100.7", past).is_some(), found);
        }
    }

    #[test]
    fn hits_are_marked_as_the_hunts_with_the_strictest_marking() {
        let hunt = Uuid::nil();
        let hit = |engine: &str, tlp: Tlp, indicator_tlp: &str| AlertHit {
            owner: Uuid::nil(),
            tlp,
            dedup_key: "o|indicator|r|gw|1".into(),
            rule_id: "r".into(),
            rule_title: "Indicator match".into(),
            engine: engine.into(),
            level: "high".into(),
            level_rank: 3,
            tags: vec![],
            entity: "gw".into(),
            ts: 1,
            evidence: nigehban_store::Evidence {
                event_id: Some(7),
                ts: Some(1),
                source: "s".into(),
                position: "event 7".into(),
                fields: serde_json::json!({ "tlp": indicator_tlp }).to_string(),
            },
        };
        let mut h = hit("indicator", Tlp::Green, "AMBER");
        assert!(mark(&mut h, hunt));
        assert_eq!(h.tlp, Tlp::Amber, "the indicator's marking is stricter");
        assert_eq!(h.dedup_key, "retrohunt|o|indicator|r|gw|1");
        assert!(h.rule_title.starts_with("Retro-hunt: ") && h.tags.contains(&"retrohunt".to_owned()));
        let mut h = hit("sigma", Tlp::Green, "RED");
        assert!(mark(&mut h, hunt), "only an indicator's own marking counts");
        assert_eq!(h.tlp, Tlp::Green);
        assert!(!mark(&mut hit("indicator", Tlp::Amber, "RED"), hunt), "RED: withheld");
        assert_ne!(
            match_key(&hit("indicator", Tlp::Amber, "AMBER")),
            match_key(&hit("indicator", Tlp::Amber, "CLEAR"))
        );
    }

    #[test]
    fn hunters() {
        let p = |role, scopes: Option<Vec<&str>>| Principal {
            user: None,
            org: Uuid::nil(),
            role,
            scopes: scopes.map(|s| s.iter().filter_map(|s| s.parse().ok()).collect()),
        };
        assert!(may_hunt(&p(Role::CertAnalyst, None)).is_ok());
        assert!(may_hunt(&p(Role::OrgSecurityLead, None)).is_ok());
        assert_eq!(may_hunt(&p(Role::OrgReporter, None)), Err(Refusal::Role));
        assert_eq!(may_hunt(&p(Role::PlatformAdmin, None)), Err(Refusal::Role));
        assert_eq!(may_hunt(&p(Role::CertAnalyst, Some(vec!["*:read"]))), Err(Refusal::Scope));
        assert!(may_hunt(&p(Role::CertAnalyst, Some(vec!["events:read", "alerts:write"]))).is_ok());
    }
}
