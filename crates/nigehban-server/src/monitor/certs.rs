//! Rules owned by a CERT: detection across the organisations of its constituency.
//!
//! A CERT (nCERT, a provincial or a sectoral CERT) may own rules of its own
//! (`monitoring.cert_rules` in the server's configuration). They run over every event of the
//! CERT's constituency (the organisations below it in the tree, and the CERT's own events)
//! with **one stream per CERT**, apart from the per-organisation streams: a correlation rule
//! that counts the same source address failing to log on in three ministries fires once, as
//! an alert owned by the CERT (visible to the CERT and its chain upward, not to the
//! ministries). Per-event detections of a CERT's own rules are the CERT's alerts too.
//!
//! The constituency is taken from the tree as the detection worker knows it ([`Members`]):
//! read from the store at the first batch, again every [`REFRESH`], and at once (at most every
//! [`REFRESH_UNKNOWN`]) when a batch has events of an organisation it does not know (one just
//! created). An event counts for the CERTs its organisation was under when its batch was
//! detected; moving an organisation changes where its later events go, not what a CERT's
//! stream already holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nigehban_detect::DetectorSet;
use nigehban_policy::{OrgNode, Tlp, Tree};
use nigehban_store::{Org, Store, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How often the worker reads the tree again.
pub(crate) const REFRESH: Duration = Duration::from_secs(10);
/// How soon it reads the tree again when a batch has an organisation it does not know.
pub(crate) const REFRESH_UNKNOWN: Duration = Duration::from_secs(1);

/// One CERT's rules.
pub struct CertSet {
    /// The CERT.
    pub cert: Uuid,
    /// Its short name (logs, evidence).
    pub name: String,
    pub detectors: DetectorSet,
}

/// The rules owned by CERTs (none by default), shared by the settings of live monitoring.
#[derive(Clone, Default)]
pub struct CertRules(Arc<Vec<CertSet>>);

impl std::fmt::Debug for CertRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|s| &s.name)).finish()
    }
}

impl CertRules {
    /// The CERTs' rule sets; a CERT given twice keeps its first set.
    pub fn new(sets: Vec<CertSet>) -> CertRules {
        let mut out: Vec<CertSet> = Vec::with_capacity(sets.len());
        for s in sets {
            if out.iter().any(|o| o.cert == s.cert) {
                tracing::warn!(message = "A CERT's rules were given twice; the first set is used.", cert = %s.name);
                continue;
            }
            out.push(s);
        }
        CertRules(Arc::new(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn sets(&self) -> &[CertSet] {
        &self.0
    }

    /// The set of `cert`.
    pub(crate) fn get(&self, cert: Uuid) -> Option<&CertSet> {
        self.0.iter().find(|s| s.cert == cert)
    }
}

/// Why a key of `cert_rules` does not name a CERT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertKeyError {
    #[error("no organisation has the short name or id {0:?}")]
    Unknown(String),
    #[error(
        "{key:?} is of kind {kind}, not a CERT: only nCERT and the provincial and sectoral CERTs own rules across organisations"
    )]
    NotACert { key: String, kind: nigehban_policy::OrgKind },
}

/// The CERT a key of `cert_rules` names (its short name or id): `(id, short name)`.
pub fn resolve_cert(orgs: &[Org], key: &str) -> Result<(Uuid, String), CertKeyError> {
    let key = key.trim();
    let id = key.parse::<Uuid>().ok();
    let org = orgs
        .iter()
        .find(|o| o.short_name == key || Some(o.id) == id)
        .ok_or_else(|| CertKeyError::Unknown(key.to_owned()))?;
    if !org.kind.is_cert() {
        return Err(CertKeyError::NotACert { key: key.to_owned(), kind: org.kind });
    }
    Ok((org.id, org.short_name.clone()))
}

/// Which CERT sets each organisation's events go to, as of the last read of the tree.
#[derive(Default)]
pub(crate) struct Members {
    /// Organisation → indices into [`CertRules::sets`] of the CERTs above it (or itself).
    of: HashMap<Uuid, Vec<usize>>,
    /// Organisation → its short name (what a CERT's evidence calls it).
    names: HashMap<Uuid, Arc<str>>,
    read_at: Option<Instant>,
}

impl Members {
    /// Reads the tree again when it is due, or when `orgs` holds an organisation not known yet
    /// (at most every [`REFRESH_UNKNOWN`]). A failed read keeps what was known and says so.
    pub(crate) async fn refresh(&mut self, rules: &CertRules, store: &Store, orgs: impl Iterator<Item = Uuid>) {
        if rules.is_empty() {
            return;
        }
        let due = match self.read_at {
            None => true,
            Some(t) if t.elapsed() >= REFRESH => true,
            Some(t) => {
                let mut orgs = orgs;
                t.elapsed() >= REFRESH_UNKNOWN && orgs.any(|o| !self.names.contains_key(&o))
            }
        };
        if !due {
            return;
        }
        match read(rules, store).await {
            Ok(m) => *self = m,
            Err(e) => {
                tracing::warn!(message = "The constituency tree could not be read for CERT rules; the last one read is used.", error = %e);
                self.read_at = Some(Instant::now());
            }
        }
    }

    /// The CERT sets `org`'s events go to.
    pub(crate) fn certs_of(&self, org: Uuid) -> &[usize] {
        self.of.get(&org).map_or(&[], Vec::as_slice)
    }

    /// The organisation's short name (its id when not known).
    pub(crate) fn name(&self, org: Uuid) -> Arc<str> {
        self.names.get(&org).cloned().unwrap_or_else(|| Arc::from(org.to_string()))
    }

    /// Members from a list of organisations (the store's, or a test's).
    pub(crate) fn from_orgs(rules: &CertRules, orgs: &[Org]) -> Result<Members, StoreError> {
        let tree = Tree::new(orgs.iter().map(|o| OrgNode { id: o.id, kind: o.kind, parents: o.parents.clone() }))
            .map_err(|e| StoreError::Corrupt(format!("constituency tree: {e}")))?;
        let mut of: HashMap<Uuid, Vec<usize>> = HashMap::new();
        for (i, set) in rules.sets().iter().enumerate() {
            if !tree.is_cert(set.cert) {
                tracing::warn!(message = "An organisation given CERT rules is no longer a CERT in the tree; its rules do not run.", cert = %set.name);
                continue;
            }
            for org in tree.constituency(set.cert) {
                of.entry(org).or_default().push(i);
            }
        }
        let names = orgs.iter().map(|o| (o.id, Arc::from(o.short_name.as_str()))).collect();
        Ok(Members { of, names, read_at: Some(Instant::now()) })
    }
}

async fn read(rules: &CertRules, store: &Store) -> Result<Members, StoreError> {
    let orgs = store.orgs().await?;
    Members::from_orgs(rules, &orgs)
}

/// The strictest marking of a CERT stream's events per minute of event time, for the last
/// [`MARKING_HORIZON`]: a CERT alert is marked with the strictest of the events in its window
/// (derived data keeps the strictest marking of its sources), whichever organisations they
/// came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Markings {
    by_minute: BTreeMap<i64, Tlp>,
}

/// How far back (in event time, behind the stream's newest event) markings are kept: CERT
/// correlation windows up to this long are marked from their own minutes.
pub(crate) const MARKING_HORIZON: i64 = 7 * 24 * 3600 * 1_000_000;
const MINUTE: i64 = 60_000_000;

/// The saved form: runs of minutes with one marking `(first minute, last minute, marking)`.
#[derive(Serialize, Deserialize, Default)]
#[serde(transparent)]
pub(crate) struct SavedMarkings(Vec<(i64, i64, Tlp)>);

impl Markings {
    /// Notes an event of time `ts` (µs) with marking `tlp`.
    pub(crate) fn note(&mut self, ts: i64, tlp: Tlp) {
        let entry = self.by_minute.entry(ts.div_euclid(MINUTE)).or_insert(tlp);
        *entry = (*entry).max(tlp);
    }

    /// Forgets minutes older than the horizon behind `newest` (µs).
    pub(crate) fn prune(&mut self, newest: i64) {
        let keep_from = newest.saturating_sub(MARKING_HORIZON).div_euclid(MINUTE);
        self.by_minute = self.by_minute.split_off(&keep_from);
    }

    /// The strictest marking of the minutes from `from` to `to` (µs, inclusive); over every
    /// minute kept when the span is not known or holds none.
    pub(crate) fn strictest(&self, span: Option<(i64, i64)>) -> Option<Tlp> {
        let within = span.and_then(|(from, to)| {
            self.by_minute.range(from.div_euclid(MINUTE)..=to.div_euclid(MINUTE)).map(|(_, t)| *t).max()
        });
        within.or_else(|| self.by_minute.values().copied().max())
    }

    pub(crate) fn save(&self) -> SavedMarkings {
        let mut runs: Vec<(i64, i64, Tlp)> = Vec::new();
        for (&minute, &tlp) in &self.by_minute {
            match runs.last_mut() {
                Some((_, last, t)) if *last + 1 == minute && *t == tlp => *last = minute,
                _ => runs.push((minute, minute, tlp)),
            }
        }
        SavedMarkings(runs)
    }

    pub(crate) fn restore(saved: SavedMarkings) -> Markings {
        let mut by_minute = BTreeMap::new();
        for (first, last, tlp) in saved.0 {
            // A damaged run is bounded by the horizon (no run longer than it is ever saved).
            if last < first || last - first > MARKING_HORIZON / MINUTE {
                continue;
            }
            for m in first..=last {
                by_minute.insert(m, tlp);
            }
        }
        Markings { by_minute }
    }
}

/// The window a correlation detection reports (`start .. end`), in µs.
pub(crate) fn window_of(fields: &[(String, String)]) -> Option<(i64, i64)> {
    let (_, w) = fields.iter().find(|(k, _)| k == "window")?;
    let (start, end) = w.split_once(" .. ")?;
    let start: jiff::Timestamp = start.trim().parse().ok()?;
    let end: jiff::Timestamp = end.trim().parse().ok()?;
    Some((start.as_microsecond(), end.as_microsecond()))
}

#[cfg(test)]
pub(crate) mod tests {
    use nigehban_policy::OrgKind;
    use nigehban_store::OrgProfile;

    use super::*;

    /// An organisation of the tree, for tests.
    pub(crate) fn org(kind: OrgKind, short: &str, parents: &[Uuid]) -> Org {
        Org {
            id: Uuid::now_v7(),
            kind,
            name: short.to_owned(),
            short_name: short.to_owned(),
            sector: None,
            province: None,
            parents: parents.to_vec(),
            profile: OrgProfile::default(),
            security_lead: None,
            created_at: 0,
        }
    }

    #[test]
    fn a_key_names_a_cert_by_short_name_or_id() {
        let ncert = org(OrgKind::National, "ncert", &[]);
        let cert = org(OrgKind::SectoralCert, "gov-cert", &[ncert.id]);
        let ministry = org(OrgKind::Organisation, "mofa", &[cert.id]);
        let orgs = vec![ncert.clone(), cert.clone(), ministry.clone()];
        assert_eq!(resolve_cert(&orgs, "gov-cert"), Ok((cert.id, "gov-cert".to_owned())));
        assert_eq!(resolve_cert(&orgs, &ncert.id.to_string()), Ok((ncert.id, "ncert".to_owned())));
        assert_eq!(resolve_cert(&orgs, "nobody"), Err(CertKeyError::Unknown("nobody".into())));
        let err = resolve_cert(&orgs, "mofa").unwrap_err();
        assert!(err.to_string().contains("\"mofa\" is of kind organisation, not a CERT"), "{err}");
    }

    #[test]
    fn members_follow_the_tree() {
        let ncert = org(OrgKind::National, "ncert", &[]);
        let cert = org(OrgKind::SectoralCert, "gov-cert", &[ncert.id]);
        let other = org(OrgKind::ProvincialCert, "north-cert", &[ncert.id]);
        let a = org(OrgKind::Organisation, "mofa", &[cert.id]);
        let b = org(OrgKind::Organisation, "telecom", &[other.id]);
        let rules = CertRules::new(vec![
            CertSet { cert: cert.id, name: "gov-cert".into(), detectors: DetectorSet::new() },
            CertSet { cert: ncert.id, name: "ncert".into(), detectors: DetectorSet::new() },
        ]);
        let orgs = vec![ncert.clone(), cert.clone(), other.clone(), a.clone(), b.clone()];
        let m = Members::from_orgs(&rules, &orgs).unwrap();
        assert_eq!(m.certs_of(a.id), &[0, 1], "the ministry is under its CERT and nCERT");
        assert_eq!(m.certs_of(cert.id), &[0, 1], "a CERT's own events are in its constituency");
        assert_eq!(m.certs_of(b.id), &[1], "another CERT's organisation is nCERT's only");
        assert_eq!(m.certs_of(ncert.id), &[1]);
        assert_eq!(&*m.name(a.id), "mofa");
    }

    #[test]
    fn markings_keep_the_strictest_per_minute_and_survive_a_save() {
        let mut m = Markings::default();
        let t0 = 1_800_000_000_000_000;
        m.note(t0, Tlp::Green);
        m.note(t0 + MINUTE, Tlp::Green);
        m.note(t0 + 2 * MINUTE, Tlp::AmberStrict);
        m.note(t0 + 2 * MINUTE + 1, Tlp::Amber);
        m.note(t0 + 9 * MINUTE, Tlp::Red);
        assert_eq!(m.strictest(Some((t0, t0 + MINUTE))), Some(Tlp::Green));
        assert_eq!(m.strictest(Some((t0, t0 + 3 * MINUTE))), Some(Tlp::AmberStrict));
        assert_eq!(m.strictest(None), Some(Tlp::Red), "unknown span: every minute kept");
        let saved = serde_json::to_string(&m.save()).unwrap();
        let back = Markings::restore(serde_json::from_str(&saved).unwrap());
        assert_eq!(back.by_minute, m.by_minute);
        m.prune(t0 + MARKING_HORIZON + 5 * MINUTE);
        assert_eq!(m.strictest(Some((t0, t0 + 3 * MINUTE))), Some(Tlp::Red), "pruned: what is kept");
    }

    #[test]
    fn a_correlation_window_is_read_back() {
        let fields = vec![("window".to_owned(), "2026-11-28T09:00:00Z .. 2026-11-28T09:10:00Z".to_owned())];
        let (s, e) = window_of(&fields).unwrap();
        assert_eq!(e - s, 10 * MINUTE);
        assert_eq!(window_of(&[]), None);
    }
}
