//! The indicator set and the matcher built from it.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use hashbrown::HashMap;
use nigehban_policy::Tlp;

use crate::ipset::IpSet;
use crate::strset::StrSet;
use crate::value::{IndicatorType, Normalized, ValueError, classify, normalize, normalize_url};

const NONE: u32 = u32::MAX;

/// What is known of one indicator besides its value (kept small: ~48 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndicatorMeta {
    /// Valid from (microseconds since the epoch; `i64::MIN`: always).
    pub valid_from: i64,
    /// Valid until, exclusive (`i64::MAX`: no end).
    pub valid_until: i64,
    /// The STIX indicator's UUID, if it came from STIX.
    pub stix_id: Option<[u8; 16]>,
    /// Index of its source in [`Matcher::source`].
    pub source: u32,
    /// Its TLP marking.
    pub tlp: Tlp,
    /// The next indicator with the same value (from another source or window).
    next_same: u32,
}

impl IndicatorMeta {
    /// An indicator valid at all times.
    pub fn new(source: u32, tlp: Tlp) -> IndicatorMeta {
        IndicatorMeta { valid_from: i64::MIN, valid_until: i64::MAX, stix_id: None, source, tlp, next_same: NONE }
    }

    /// Whether it is valid at `at` (microseconds since the epoch).
    pub fn valid_at(&self, at: i64) -> bool {
        self.valid_from <= at && at < self.valid_until
    }
}

/// A match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The indicator's number in the set.
    pub index: u32,
    /// Its type.
    pub kind: IndicatorType,
    /// The indicator as it was loaded and normalized (`10.0.0.0/8`, `evil.example`…), which may
    /// be wider than the value looked up (a network, a parent domain).
    pub indicator: String,
    /// Its metadata.
    pub meta: IndicatorMeta,
}

/// Indicators being collected. Build with [`IndicatorSet::build`].
#[derive(Default)]
pub struct IndicatorSet {
    metas: Vec<IndicatorMeta>,
    sources: Vec<String>,
    ips: IpSet,
    domains: StrSet,
    urls: StrSet,
    emails: StrSet,
    md5: HashMap<[u8; 16], u32>,
    sha1: HashMap<[u8; 20], u32>,
    sha256: HashMap<[u8; 32], u32>,
}

/// A frozen set of indicators, safe to share between threads.
pub struct Matcher {
    set: IndicatorSet,
}

impl IndicatorSet {
    /// An empty set.
    pub fn new() -> IndicatorSet {
        IndicatorSet::default()
    }

    /// Registers a source (a file, a feed, a STIX bundle) and returns its number for
    /// [`IndicatorMeta::source`].
    pub fn add_source(&mut self, name: &str) -> u32 {
        if let Some(i) = self.sources.iter().position(|s| s == name) {
            return i as u32;
        }
        self.sources.push(name.to_owned());
        (self.sources.len() - 1) as u32
    }

    /// How many indicators it holds.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// Adds a value of a known type. Returns the indicator's number and whether the value was
    /// already present (then both are kept, chained: each has its own window and source).
    pub fn add(&mut self, kind: IndicatorType, value: &str, meta: IndicatorMeta) -> Result<(u32, bool), ValueError> {
        let n = normalize(kind, value)?;
        Ok(self.add_normalized(&n, meta))
    }

    /// Adds a bare value whose type is recognised from its shape.
    pub fn add_value(&mut self, value: &str, meta: IndicatorMeta) -> Result<(u32, bool), ValueError> {
        let kind = classify(value).ok_or_else(|| ValueError {
            value: value.to_owned(),
            kind: "indicator",
            reason: "not an IP address, network, domain, URL, e-mail address or MD5/SHA-1/SHA-256 hash",
        })?;
        self.add(kind, value, meta)
    }

    pub(crate) fn add_normalized(&mut self, n: &Normalized, meta: IndicatorMeta) -> (u32, bool) {
        let idx = self.metas.len() as u32;
        let existing = match n {
            Normalized::Net(ip, len) => self.ips.insert(*ip, *len, idx),
            Normalized::Domain(d) => self.domains.insert(d, idx),
            Normalized::Url(u) => self.urls.insert(u, idx),
            Normalized::Email(e) => self.emails.insert(e, idx),
            Normalized::Md5(h) => insert_fixed(&mut self.md5, *h, idx),
            Normalized::Sha1(h) => insert_fixed(&mut self.sha1, *h, idx),
            Normalized::Sha256(h) => insert_fixed(&mut self.sha256, *h, idx),
        };
        let mut meta = meta;
        meta.next_same = NONE;
        self.metas.push(meta);
        if let Some(first) = existing {
            // Chain behind the first indicator with this value.
            let f = first as usize;
            self.metas[idx as usize].next_same = self.metas[f].next_same;
            self.metas[f].next_same = idx;
            (idx, true)
        } else {
            (idx, false)
        }
    }

    /// Freezes the set.
    pub fn build(mut self) -> Matcher {
        self.metas.shrink_to_fit();
        self.ips.shrink();
        self.domains.shrink();
        self.urls.shrink();
        self.emails.shrink();
        self.md5.shrink_to_fit();
        self.sha1.shrink_to_fit();
        self.sha256.shrink_to_fit();
        Matcher { set: self }
    }
}

fn insert_fixed<const N: usize>(m: &mut HashMap<[u8; N], u32>, k: [u8; N], v: u32) -> Option<u32> {
    if let Some(x) = m.get(&k) {
        return Some(*x);
    }
    m.insert(k, v);
    None
}

fn hex<const N: usize>(v: &str) -> Option<[u8; N]> {
    if v.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    let b = v.as_bytes();
    for i in 0..N {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

impl Matcher {
    /// An empty matcher.
    pub fn empty() -> Matcher {
        IndicatorSet::new().build()
    }

    /// How many indicators it holds.
    pub fn len(&self) -> usize {
        self.set.metas.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.set.metas.is_empty()
    }

    /// The name of a source.
    pub fn source(&self, i: u32) -> &str {
        self.set.sources.get(i as usize).map_or("", String::as_str)
    }

    /// Approximate heap bytes used (for the memory benchmark).
    pub fn heap_bytes(&self) -> usize {
        let s = &self.set;
        s.metas.capacity() * std::mem::size_of::<IndicatorMeta>()
            + s.ips.heap_bytes()
            + s.domains.heap_bytes()
            + s.urls.heap_bytes()
            + s.emails.heap_bytes()
            + s.md5.capacity() * 21
            + s.sha1.capacity() * 25
            + s.sha256.capacity() * 37
    }

    /// The first indicator of the chain starting at `first` valid at `at`.
    fn valid(&self, first: u32, at: i64) -> Option<(u32, IndicatorMeta)> {
        let mut i = first;
        while i != NONE {
            let m = self.set.metas.get(i as usize)?;
            if m.valid_at(at) {
                return Some((i, *m));
            }
            i = m.next_same;
        }
        None
    }

    /// An address: the longest network containing it with an indicator valid at `at`.
    pub fn match_ip(&self, ip: IpAddr, at: i64) -> Option<Hit> {
        // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address.
        let ip = match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let mut found = None;
        self.set.ips.lookup(ip, |first, len| match self.valid(first, at) {
            Some((index, meta)) => {
                found = Some((index, meta, len));
                true
            }
            None => false,
        });
        let (index, meta, len) = found?;
        let net = crate::value::masked(ip, len);
        let full = if net.is_ipv4() { 32 } else { 128 };
        let indicator = if len == full { net.to_string() } else { format!("{net}/{len}") };
        Some(Hit { index, kind: IndicatorType::Ip, indicator, meta })
    }

    /// A host name: the name itself or its nearest parent domain with an indicator.
    pub fn match_domain(&self, host: &str, at: i64) -> Option<Hit> {
        let host = host.trim_end_matches('.');
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let mut d = host;
        loop {
            if let Some(first) = self.set.domains.get(d)
                && let Some((index, meta)) = self.valid(first, at)
            {
                return Some(Hit { index, kind: IndicatorType::Domain, indicator: d.to_owned(), meta });
            }
            match d.find('.') {
                Some(i) => d = &d[i + 1..],
                None => return None,
            }
        }
    }

    /// A URL (normalized first), then its host as a domain or an address.
    pub fn match_url(&self, url: &str, at: i64) -> Option<Hit> {
        let n = normalize_url(url)?;
        if let Some(first) = self.set.urls.get(&n)
            && let Some((index, meta)) = self.valid(first, at)
        {
            return Some(Hit { index, kind: IndicatorType::Url, indicator: n, meta });
        }
        let rest = n.split_once("://")?.1;
        let host = &rest[..rest.find('/').unwrap_or(rest.len())];
        let host = match host.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit()) && !host.starts_with('[') => h,
            _ => host,
        };
        let host = host.trim_start_matches('[');
        let host = host.split(']').next().unwrap_or(host);
        match host.parse::<IpAddr>() {
            Ok(ip) => self.match_ip(ip, at),
            Err(_) => self.match_domain(host, at),
        }
    }

    /// An e-mail address, then its domain.
    pub fn match_email(&self, address: &str, at: i64) -> Option<Hit> {
        let e = address.trim().trim_matches(|c| c == '<' || c == '>').to_lowercase();
        if let Some(first) = self.set.emails.get(&e)
            && let Some((index, meta)) = self.valid(first, at)
        {
            return Some(Hit { index, kind: IndicatorType::Email, indicator: e, meta });
        }
        let (_, domain) = e.rsplit_once('@')?;
        self.match_domain(domain, at)
    }

    /// A file hash in hex (MD5, SHA-1 or SHA-256 by its length; any case).
    pub fn match_hash(&self, hash: &str, at: i64) -> Option<Hit> {
        let h = hash.trim();
        let (first, kind) = match h.len() {
            32 => (*self.set.md5.get(&hex::<16>(h)?)?, IndicatorType::Md5),
            40 => (*self.set.sha1.get(&hex::<20>(h)?)?, IndicatorType::Sha1),
            64 => (*self.set.sha256.get(&hex::<32>(h)?)?, IndicatorType::Sha256),
            _ => return None,
        };
        let (index, meta) = self.valid(first, at)?;
        Some(Hit { index, kind, indicator: h.to_ascii_lowercase(), meta })
    }

    /// Any value: its type is recognised from its shape.
    pub fn match_value(&self, value: &str, at: i64) -> Option<Hit> {
        let v = value.trim();
        if let Ok(ip) = v.parse::<IpAddr>() {
            return self.match_ip(ip, at);
        }
        match classify(v)? {
            IndicatorType::Ip => None,
            IndicatorType::Domain => self.match_domain(v, at),
            IndicatorType::Url => self.match_url(v, at),
            IndicatorType::Email => self.match_email(v, at),
            IndicatorType::Md5 | IndicatorType::Sha1 | IndicatorType::Sha256 => self.match_hash(v, at),
        }
    }

    /// Counts by type: (ip networks, domains, urls, e-mail addresses, hashes).
    pub fn counts(&self) -> [usize; 5] {
        let s = &self.set;
        [s.ips.len(), s.domains.len(), s.urls.len(), s.emails.len(), s.md5.len() + s.sha1.len() + s.sha256.len()]
    }
}

/// The matcher in use, replaced whole when the indicator set changes: readers keep the set
/// they started with; new lookups see the new one.
pub struct SharedMatcher {
    current: RwLock<Arc<Matcher>>,
}

impl Default for SharedMatcher {
    fn default() -> Self {
        SharedMatcher { current: RwLock::new(Arc::new(Matcher::empty())) }
    }
}

impl SharedMatcher {
    /// A shared matcher starting with `m`.
    pub fn new(m: Matcher) -> SharedMatcher {
        SharedMatcher { current: RwLock::new(Arc::new(m)) }
    }

    /// The matcher now in use.
    pub fn load(&self) -> Arc<Matcher> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new matcher.
    pub fn store(&self, m: Matcher) {
        let m = Arc::new(m);
        match self.current.write() {
            Ok(mut g) => *g = m,
            Err(poisoned) => *poisoned.into_inner() = m,
        }
    }
}
