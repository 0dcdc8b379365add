//! Beaconing: an implant calls home at a steady rhythm, with requests of nearly the same size.
//! Sigma cannot say this (it sees one event at a time); this detector sees every connection
//! of a source → destination pair and scores how periodic it is.
//!
//! Connections come from Zeek `conn` records (`id.orig_h`, `id.resp_h`, `id.resp_p`,
//! `proto`, `orig_bytes`, `resp_bytes`, `local_orig`) or from any record with the normalized
//! names of docs/fields.md (`source.ip`, `destination.ip`, `destination.port`,
//! `network.transport`, `source.bytes`, `destination.bytes`). Host names for destinations are
//! learnt from Zeek `dns` answers, `ssl` server names and `http` host headers, so that known
//! update and monitoring services can be told apart and the analyst sees a name.
//!
//! # Score
//! For each pair with at least `min_connections` connections (one per distinct time):
//! * timing: the mean of `1 − |Bowley skew|` of the intervals, `1 − MADM / median` of the
//!   intervals (0 when the deviation is as large as the median), and persistence, the share
//!   of median-long slots between the first and last connection that hold a connection;
//! * size: the mean of `1 − |Bowley skew|` and `1 − MADM / median` of the bytes sent.
//!
//! The score is the mean of timing and size, 0 … 1; a pair scoring at least `threshold` is
//! reported. Jitter of ±20% still scores well on timing; a human browsing does not.
//!
//! # What is left out
//! Connections the sensor marks as inbound (`local_orig` false), or from a public address to a
//! private one; ICMP; the ports of periodic infrastructure (`ignore_ports`: DNS, NTP, DHCP,
//! NetBIOS, mDNS, SSDP, SNMP); multicast and broadcast destinations; connections that carried no
//! payload either way (unless `require_payload` is off); destinations in `known_good_networks` or
//! whose learnt names end with one of `known_good_domains` (update agents, monitoring).
//!
//! # Bounded state
//! At most `max_pairs` pairs (further new pairs are counted, not kept) and at most
//! `max_connections_per_pair` connections per pair (beyond that only the count grows), 16 bytes
//! per connection.
//!
//! # Hunts and live streams
//! Built with [`BeaconDetector::new`], the detector gathers connections inside itself as
//! `detect` sees them (16 bytes each, whatever the number of files) and `correlate` scores every
//! pair once, over all its connections, at the end of the hunt. A live stream needs the
//! connections in its own state instead: built with [`BeaconDetector::for_streams`], `detect`
//! turns each connection (and each learnt name) into an [`Observation`] and keeps nothing; the
//! caller's [`crate::StreamState`] holds the pairs. There a pair is evaluated at each multiple
//! of `evaluate_every` (event time, from the epoch) that passes, if it had new connections,
//! over the connections of the last `history` (at most `max_connections_per_pair`, the oldest
//! dropped first), with the names learnt so far; a pair reported is not reported again for
//! `realert_after`. `correlate` of a detector built for streams scores as a hunt does.
//! How this differs from the hunt's end-of-input score:
//! * the score is over a sliding history, not over every connection: a beacon slower than
//!   `history / min_connections` is never seen live, and a long-lived periodic pair is reported
//!   again every `realert_after` while it lasts (a hunt reports it once);
//! * a pair is judged as soon as it has `min_connections` connections at an evaluation, on the
//!   names learnt before it: a name learnt later (a DNS answer logged after the connections)
//!   does not make it known-good retroactively;
//! * a pair with no connection for `history` is forgotten (its slot is free again).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use nigehban_event::{Event, Position, Product, Source, Value};
use nigehban_sigma::Level;
use serde::{Deserialize, Serialize};

use crate::firstseen::parse_duration;
use crate::stats::shape;
use crate::stream::{
    self, Kind, Reorder, SavedPosition, SavedReorder, SavedState, StateError, StreamState, StreamStats,
};
use crate::{Detection, Detector, Engine, Findings, Observation, RuleInfo};

/// Settings of the beaconing detector (the `beaconing` section of the rule pack).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BeaconConfig {
    pub id: String,
    pub title: String,
    pub description: String,
    pub level: String,
    pub tags: Vec<String>,
    /// Fewest connections of a pair worth scoring.
    pub min_connections: usize,
    /// Lowest score reported (0 … 1).
    pub threshold: f64,
    /// Destination ports of periodic infrastructure, never scored.
    pub ignore_ports: Vec<u16>,
    /// Destinations whose learnt host names end with one of these (`ubuntu.com` also covers
    /// `security.ubuntu.com`) are known-good periodic services.
    pub known_good_domains: Vec<String>,
    /// Destination networks (CIDR) of known-good periodic services.
    pub known_good_networks: Vec<String>,
    /// Only connections that carried payload (bytes either way) are counted.
    pub require_payload: bool,
    pub max_pairs: usize,
    pub max_connections_per_pair: usize,
    /// Live streams: how often pairs with new connections are evaluated (`1h`).
    pub evaluate_every: String,
    /// Live streams: how long a reported pair is not reported again (`24h`).
    pub realert_after: String,
    /// Live streams: how far back a pair's connections are kept and scored (`48h`).
    pub history: String,
}

impl Default for BeaconConfig {
    fn default() -> Self {
        BeaconConfig {
            id: "nigehban-beaconing".into(),
            title: "Beaconing: periodic connections of one host to one destination".into(),
            description: "A host connects to the same destination at a steady rhythm with requests of nearly the \
                          same size, as command-and-control implants do."
                .into(),
            level: "high".into(),
            tags: vec!["attack.command-and-control".into(), "attack.t1071".into(), "attack.t1573".into()],
            min_connections: 20,
            threshold: 0.7,
            ignore_ports: vec![53, 67, 68, 123, 137, 138, 161, 162, 1900, 5353, 5355],
            known_good_domains: Vec::new(),
            known_good_networks: Vec::new(),
            require_payload: true,
            max_pairs: 500_000,
            max_connections_per_pair: 50_000,
            evaluate_every: "1h".into(),
            realert_after: "24h".into(),
            history: "48h".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
struct PairKey {
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    udp: bool,
}

struct Pair {
    /// (time in seconds, bytes sent by the source).
    conns: Vec<(f64, f64)>,
    total: u64,
    first: (Arc<Source>, Position),
    host: Option<String>,
}

const SHARDS: usize = 16;

/// The beaconing detector. Connections accumulate across [`Detector::detect`] calls (from any
/// thread); [`Detector::correlate`] scores every pair and empties the state.
pub struct BeaconDetector {
    config: BeaconConfig,
    rule: Arc<RuleInfo>,
    known_networks: Vec<(IpAddr, u8)>,
    known_domains: Vec<String>,
    pairs: Vec<Mutex<HashMap<PairKey, Pair>>>,
    names: Mutex<HashMap<IpAddr, Vec<Box<str>>>>,
    pair_count: AtomicU64,
    dropped_pairs: AtomicU64,
    /// Built for live streams: `detect` makes observations and keeps nothing.
    streams: bool,
    evaluate_every: SignedDuration,
    realert_after: SignedDuration,
    history: SignedDuration,
}

/// Observation kinds (`Observation::rules`) of a detector built for streams.
const OBSERVED_CONNECTION: u32 = 0;
const OBSERVED_NAME: u32 = 1;
/// Addresses whose names are learnt, and names per address.
const MAX_NAMED_ADDRESSES: usize = 1_000_000;
const MAX_NAMES_PER_ADDRESS: usize = 4;

/// Parses `10.0.0.0/8` or a bare address.
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.trim().parse::<IpAddr>().ok()?, l.trim().parse::<u8>().ok()?),
        None => {
            let a = s.trim().parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

fn in_network(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.octets()[0] == 100 && (a.octets()[1] & 0xC0) == 64
        }
        IpAddr::V6(a) => {
            a.is_loopback() || (a.segments()[0] & 0xfe00) == 0xfc00 || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn is_group_destination(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast() || (is_private(ip) && a.octets()[3] == 255),
        IpAddr::V6(a) => a.is_multicast(),
    }
}

fn first_of<'e>(event: &'e Event, names: &[&str]) -> Option<&'e Value> {
    names.iter().find_map(|n| event.get_exact(n).filter(|v| !v.is_null()))
}

fn ip_of(event: &Event, names: &[&str]) -> Option<IpAddr> {
    let v = first_of(event, names)?;
    let text = v.as_text()?;
    let t = text.trim();
    // Zeek writes IPv4-mapped IPv6 as such on some sensors.
    let t = t.strip_prefix("::ffff:").filter(|r| r.contains('.')).unwrap_or(t);
    t.parse().ok()
}

fn number_of(event: &Event, names: &[&str]) -> Option<f64> {
    let v = first_of(event, names)?;
    v.as_f64().or_else(|| v.as_text()?.trim().parse().ok())
}

fn flag_of(event: &Event, names: &[&str]) -> Option<bool> {
    match first_of(event, names)? {
        Value::Bool(b) => Some(*b),
        v => match v.as_text()?.trim() {
            "T" | "t" | "true" | "True" | "1" => Some(true),
            "F" | "f" | "false" | "False" | "0" => Some(false),
            _ => None,
        },
    }
}

fn text_of<'e>(event: &'e Event, names: &[&str]) -> Option<std::borrow::Cow<'e, str>> {
    first_of(event, names)?.as_text()
}

impl BeaconDetector {
    pub fn new(config: BeaconConfig) -> Result<BeaconDetector, String> {
        let level =
            Level::parse(&config.level).ok_or_else(|| format!("beaconing: `{}` is not a level", config.level))?;
        if !(0.0..=1.0).contains(&config.threshold) {
            return Err(format!("beaconing: threshold {} is not between 0 and 1", config.threshold));
        }
        let mut known_networks = Vec::new();
        for n in &config.known_good_networks {
            known_networks.push(parse_cidr(n).ok_or_else(|| format!("beaconing: `{n}` is not a network (CIDR)"))?);
        }
        let known_domains = config
            .known_good_domains
            .iter()
            .map(|d| d.trim().trim_start_matches("*.").trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        let duration = |what: &str, text: &str| {
            parse_duration(text)
                .filter(|d| d.is_positive())
                .ok_or_else(|| format!("beaconing: {what} `{text}` is not a duration (30m, 12h, 7d)"))
        };
        let evaluate_every = duration("evaluate_every", &config.evaluate_every)?;
        let realert_after = duration("realert_after", &config.realert_after)?;
        let history = duration("history", &config.history)?;
        let rule = Arc::new(RuleInfo {
            engine: Engine::Behaviour,
            id: config.id.clone(),
            title: config.title.clone(),
            level,
            tags: config.tags.clone(),
            path: "builtin:beaconing".into(),
            key_fields: Vec::new(),
        });
        Ok(BeaconDetector {
            rule,
            known_networks,
            known_domains,
            pairs: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            names: Mutex::new(HashMap::new()),
            pair_count: AtomicU64::new(0),
            dropped_pairs: AtomicU64::new(0),
            streams: false,
            evaluate_every,
            realert_after,
            history,
            config,
        })
    }

    /// The detector for live streams: `detect` turns connections and learnt names into
    /// observations for the caller's [`StreamState`] and keeps nothing itself (see the module
    /// documentation). A detector built with `new` only serves hunts: its streams see nothing.
    pub fn for_streams(mut self) -> BeaconDetector {
        self.streams = true;
        self
    }

    /// Whether the detector was built for live streams ([`BeaconDetector::for_streams`]).
    pub fn is_for_streams(&self) -> bool {
        self.streams
    }

    /// Pairs not kept because `max_pairs` was reached.
    pub fn dropped_pairs(&self) -> u64 {
        self.dropped_pairs.load(Ordering::Relaxed)
    }

    /// The (address, host name) pairs a DNS answer, TLS server name or HTTP Host header tells.
    fn names_of(event: &Event) -> Vec<(IpAddr, String)> {
        let mut out = Vec::new();
        let path = text_of(event, &["_path"]);
        let mut add = |ip: IpAddr, name: &str| {
            let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
            if !name.is_empty() && name != "-" {
                out.push((ip, name));
            }
        };
        match path.as_deref() {
            Some("dns") => {
                let Some(query) = text_of(event, &["query"]) else { return out };
                if let Some(answers) = first_of(event, &["answers"]) {
                    answers.for_each_scalar(&mut |a| {
                        if let Some(t) = a.as_text() {
                            for part in t.split(',') {
                                if let Ok(ip) = part.trim().parse::<IpAddr>() {
                                    add(ip, &query);
                                }
                            }
                        }
                        false
                    });
                }
            }
            Some("ssl") | Some("http") => {
                let name = text_of(event, &["server_name", "host"]);
                if let (Some(name), Some(ip)) = (name, ip_of(event, &["id.resp_h", "id_resp_h"])) {
                    // An HTTP Host header may carry a port.
                    let host = name.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()));
                    add(ip, host.map_or(&*name, |(h, _)| h));
                }
            }
            _ => {}
        }
        out
    }

    fn learn_names(&self, event: &Event) {
        let names = Self::names_of(event);
        if names.is_empty() {
            return;
        }
        if let Ok(mut map) = self.names.lock() {
            for (ip, name) in names {
                remember_name(&mut map, ip, name);
            }
        }
    }

    /// The connection an event records, when it is one this detector scores.
    fn connection(&self, event: &Event) -> Option<(PairKey, f64, f64)> {
        let path = text_of(event, &["_path"]);
        if event.product == Product::Zeek && path.as_deref() != Some("conn") {
            return None;
        }
        let src = ip_of(event, &["id.orig_h", "id_orig_h", "source.ip"])?;
        let dst = ip_of(event, &["id.resp_h", "id_resp_h", "destination.ip"])?;
        let port = number_of(event, &["id.resp_p", "id_resp_p", "destination.port"])?;
        let proto = text_of(event, &["proto", "network.transport"]).map(|p| p.to_ascii_lowercase());
        let udp = match proto.as_deref() {
            Some("tcp") | None => false,
            Some("udp") => true,
            Some(_) => return None,
        };
        if !(0.0..=65535.0).contains(&port) {
            return None;
        }
        let port = port as u16;
        if self.config.ignore_ports.contains(&port) || is_group_destination(dst) {
            return None;
        }
        match flag_of(event, &["local_orig"]) {
            Some(false) => return None,
            Some(true) => {}
            None if !is_private(src) && is_private(dst) => return None,
            None => {}
        }
        let sent = number_of(event, &["orig_bytes", "source.bytes"]).filter(|b| b.is_finite()).unwrap_or(0.0);
        let received = number_of(event, &["resp_bytes", "destination.bytes"]).filter(|b| b.is_finite()).unwrap_or(0.0);
        if self.config.require_payload && sent + received <= 0.0 {
            return None;
        }
        let t = event.timestamp?;
        let secs = t.as_microsecond() as f64 / 1e6;
        Some((PairKey { src, dst, port, udp }, secs, sent))
    }

    fn shard(key: &PairKey) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() as usize) % SHARDS
    }

    fn known_good(&self, dst: IpAddr, names: &[Box<str>]) -> Option<String> {
        if let Some(n) = self.known_networks.iter().find(|n| in_network(dst, **n)) {
            return Some(format!("{}/{}", n.0, n.1));
        }
        for name in names {
            for d in &self.known_domains {
                if **name == **d || name.ends_with(&format!(".{d}")) {
                    return Some(d.clone());
                }
            }
        }
        None
    }

    /// Scores every pair gathered so far and empties the state; returns the detections and,
    /// for explanation, every scored pair with its score.
    pub fn score_all(&self) -> (Vec<Detection>, Vec<Scored>) {
        let names = self.names.lock().map(|mut g| std::mem::take(&mut *g)).unwrap_or_default();
        let mut pairs = Vec::new();
        for shard in &self.pairs {
            pairs.extend(shard.lock().map(|mut g| std::mem::take(&mut *g)).unwrap_or_default());
        }
        self.pair_count.store(0, Ordering::Relaxed);
        self.score_pairs(pairs, &names)
    }

    /// Scores pairs over all their connections (the end of a hunt).
    fn score_pairs(&self, pairs: Vec<(PairKey, Pair)>, names: &Names) -> (Vec<Detection>, Vec<Scored>) {
        let mut detections = Vec::new();
        let mut scored = Vec::new();
        for (key, pair) in pairs {
            let dst_names: &[Box<str>] = names.get(&key.dst).map_or(&[], |v| v.as_slice());
            let Some(s) = score(&pair.conns, self.config.min_connections) else { continue };
            let known = self.known_good(key.dst, dst_names);
            if s.score >= self.config.threshold && known.is_none() {
                let seen = Seen {
                    total: pair.total,
                    host: pair.host.clone(),
                    source: &pair.first.0.name,
                    position: pair.first.1,
                };
                detections.push(self.detection(&key, &seen, &s, dst_names));
            }
            scored.push(Scored {
                source: key.src,
                destination: key.dst,
                port: key.port,
                udp: key.udp,
                names: dst_names.iter().map(|n| n.to_string()).collect(),
                known_good: known,
                score: s,
            });
        }
        scored.sort_by(|a, b| b.score.score.total_cmp(&a.score.score));
        (detections, scored)
    }

    fn detection(&self, key: &PairKey, pair: &Seen<'_>, s: &Score, names: &[Box<str>]) -> Detection {
        let ts = |secs: f64| jiff::Timestamp::from_microsecond((secs * 1e6) as i64).ok();
        let mut fields = vec![
            ("source.ip".to_owned(), key.src.to_string()),
            ("destination.ip".to_owned(), key.dst.to_string()),
            ("destination.port".to_owned(), format!("{}/{}", key.port, if key.udp { "udp" } else { "tcp" })),
        ];
        if !names.is_empty() {
            fields.push(("destination.names".into(), names.join(", ")));
        }
        fields.extend([
            ("connections".to_owned(), pair.total.to_string()),
            ("first".to_owned(), ts(s.first).map(|t| t.to_string()).unwrap_or_default()),
            ("last".to_owned(), ts(s.last).map(|t| t.to_string()).unwrap_or_default()),
            ("median_interval_s".to_owned(), format!("{:.1}", s.median_interval)),
            ("median_bytes".to_owned(), format!("{:.0}", s.median_bytes)),
            ("score".to_owned(), format!("{:.2} (timing {:.2}, size {:.2})", s.score, s.timing, s.size)),
        ]);
        Detection {
            rule: self.rule.clone(),
            timestamp: ts(s.last),
            host: pair.host.clone(),
            source: Arc::from(pair.source),
            position: pair.position,
            fields,
            counted: Vec::new(),
        }
    }
}

/// The score of one pair and what it is made of.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    pub connections: usize,
    pub first: f64,
    pub last: f64,
    pub median_interval: f64,
    pub median_bytes: f64,
    pub timing: f64,
    pub size: f64,
    pub score: f64,
}

/// A scored pair, reported or not.
#[derive(Clone, Debug)]
pub struct Scored {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub port: u16,
    pub udp: bool,
    pub names: Vec<String>,
    /// Why the pair is not reported although periodic (the known-good entry it matched).
    pub known_good: Option<String>,
    pub score: Score,
}

/// What a detection says of a pair besides its score.
struct Seen<'a> {
    total: u64,
    host: Option<String>,
    source: &'a str,
    position: Position,
}

type Names = HashMap<IpAddr, Vec<Box<str>>>;

/// Adds a learnt name for an address, within the bounds; false if it was not kept.
fn remember_name(names: &mut Names, ip: IpAddr, name: String) -> bool {
    if names.len() >= MAX_NAMED_ADDRESSES && !names.contains_key(&ip) {
        return false;
    }
    let list = names.entry(ip).or_default();
    if list.iter().any(|n| **n == *name) {
        return true;
    }
    if list.len() >= MAX_NAMES_PER_ADDRESS {
        return false;
    }
    list.push(name.into_boxed_str());
    true
}

fn score(conns: &[(f64, f64)], min_connections: usize) -> Option<Score> {
    let mut conns = conns.to_vec();
    conns.sort_by(|a, b| a.0.total_cmp(&b.0));
    conns.dedup_by(|b, a| b.0 == a.0);
    if conns.len() < min_connections.max(3) {
        return None;
    }
    let first = conns[0].0;
    let last = conns[conns.len() - 1].0;
    let mut intervals: Vec<f64> = conns.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let t = shape(&mut intervals)?;
    let skew = 1.0 - t.skew.abs();
    let dispersion = if t.median > 0.0 { (1.0 - t.madm / t.median).max(0.0) } else { 0.0 };
    let period = t.median.max(1.0);
    let slots = ((last - first) / period).floor() as u64 + 1;
    let mut used: Vec<u64> = conns.iter().map(|c| ((c.0 - first) / period) as u64).collect();
    used.dedup();
    let persistence = used.len() as f64 / slots as f64;
    let timing = (skew + dispersion + persistence) / 3.0;
    let mut sizes: Vec<f64> = conns.iter().map(|c| c.1).collect();
    let b = shape(&mut sizes)?;
    let size_skew = 1.0 - b.skew.abs();
    let size_dispersion = (1.0 - b.madm / b.median.max(1.0)).max(0.0);
    let size = (size_skew + size_dispersion) / 2.0;
    Some(Score {
        connections: conns.len(),
        first,
        last,
        median_interval: t.median,
        median_bytes: b.median,
        timing,
        size,
        score: (timing + size) / 2.0,
    })
}

impl Detector for BeaconDetector {
    fn detect(&self, event: &Event, _source: &Arc<str>, out: &mut Findings) {
        if matches!(text_of(event, &["_path"]).as_deref(), Some("dns" | "ssl" | "http")) {
            if self.streams {
                out.observations.extend(name_observations(event));
            } else {
                self.learn_names(event);
            }
            return;
        }
        let Some((key, secs, sent)) = self.connection(event) else { return };
        if self.streams {
            out.observations.push(connection_observation(event, &key, sent));
            return;
        }
        let Ok(mut shard) = self.pairs[Self::shard(&key)].lock() else { return };
        let cap = self.config.max_connections_per_pair;
        if let Some(pair) = shard.get_mut(&key) {
            pair.total += 1;
            if pair.conns.len() < cap {
                pair.conns.push((secs, sent));
            }
            return;
        }
        if self.pair_count.fetch_add(1, Ordering::Relaxed) as usize >= self.config.max_pairs {
            self.pair_count.fetch_sub(1, Ordering::Relaxed);
            self.dropped_pairs.fetch_add(1, Ordering::Relaxed);
            return;
        }
        shard.insert(
            key,
            Pair {
                conns: vec![(secs, sent)],
                total: 1,
                first: (event.source.clone(), event.position),
                host: event.host().map(|h| h.into_owned()),
            },
        );
    }

    fn correlate(&self, observations: Vec<Observation>) -> Vec<Detection> {
        if !self.streams {
            return self.score_all().0;
        }
        // Built for streams: the connections are in the observations; scored as a hunt does.
        let mut pairs: HashMap<PairKey, Pair> = HashMap::new();
        let mut names = Names::new();
        let cap = self.config.max_connections_per_pair;
        for o in &observations {
            if o.rules.contains(&OBSERVED_NAME) {
                for (ip, name) in observed_names(&o.event) {
                    remember_name(&mut names, ip, name);
                }
                continue;
            }
            let Some((key, secs, sent)) = observed_connection(&o.event) else { continue };
            if let Some(pair) = pairs.get_mut(&key) {
                pair.total += 1;
                if pair.conns.len() < cap {
                    pair.conns.push((secs, sent));
                }
            } else if pairs.len() < self.config.max_pairs {
                let first = (o.event.source.clone(), o.event.position);
                let host = text_of(&o.event, &["host.name"]).map(|h| h.into_owned());
                pairs.insert(key, Pair { conns: vec![(secs, sent)], total: 1, first, host });
            } else {
                self.dropped_pairs.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.score_pairs(pairs.into_iter().collect(), &names).0
    }

    fn stream_state(&self) -> StreamState {
        if !self.streams {
            return StreamState::none();
        }
        StreamState::of(Kind::Beacon(Box::new(Stream {
            reorder: Reorder::default(),
            pairs: HashMap::new(),
            names: Names::new(),
            next_evaluation: None,
            last_sweep: None,
            stats: StreamStats::default(),
            id: self.config.id.clone(),
        })))
    }

    fn stream(
        &self,
        state: &mut StreamState,
        observations: Vec<Observation>,
        watermark: Timestamp,
        out: &mut Vec<Detection>,
    ) {
        let Kind::Beacon(st) = &mut state.kind else {
            state.count_ignored(observations.len());
            return;
        };
        let released = st.reorder.push(observations, watermark, &mut st.stats);
        let before = out.len();
        for o in &released {
            let Some(t) = o.event.timestamp else { continue };
            self.evaluate_until(st, t, out);
            if o.rules.contains(&OBSERVED_NAME) {
                for (ip, name) in observed_names(&o.event) {
                    if !remember_name(&mut st.names, ip, name) {
                        st.stats.names_not_kept += 1;
                    }
                }
            } else if let Some((key, secs, sent)) = observed_connection(&o.event) {
                self.add_connection(st, key, secs, sent, &o.event, t);
            }
        }
        if let Some(floor) = st.reorder.floor {
            self.evaluate_until(st, floor, out);
            // A stream gone quiet still lets go of idle pairs.
            if st.last_sweep.is_none_or(|s| floor.duration_since(s) >= self.evaluate_every) {
                self.forget_idle(st, floor);
            }
        }
        st.stats.detections += (out.len() - before) as u64;
    }

    fn restore_stream_state(&self, saved: SavedState) -> Result<StreamState, StateError> {
        if !self.streams {
            // Built for hunts: its streams keep nothing.
            return saved.restore_none();
        }
        let saved: SavedStream = stream::parse(saved.expect("beaconing")?)?;
        if saved.id != self.config.id {
            return Err(StateError::Mismatch(format!(
                "saved for beaconing rule `{}`, not `{}`",
                saved.id, self.config.id
            )));
        }
        Ok(StreamState::of(Kind::Beacon(Box::new(Stream {
            reorder: Reorder::restore(saved.buffer)?,
            pairs: saved.pairs.into_iter().collect(),
            names: saved
                .names
                .into_iter()
                .map(|(ip, n)| (ip, n.into_iter().map(String::into_boxed_str).collect()))
                .collect(),
            next_evaluation: saved.next_evaluation,
            last_sweep: saved.last_sweep,
            stats: saved.stats,
            id: saved.id,
        }))))
    }
}

/// The observation of a connection, for a detector built for streams: the pair, the bytes sent,
/// and where and on which host it was seen.
fn connection_observation(event: &Event, key: &PairKey, sent: f64) -> Observation {
    let mut slim = Event::new(event.source.clone(), event.position, event.product, event.format);
    slim.timestamp = event.timestamp;
    slim.set("source.ip", Value::str(key.src.to_string()));
    slim.set("destination.ip", Value::str(key.dst.to_string()));
    slim.set("destination.port", Value::Int(i64::from(key.port)));
    slim.set("network.transport", Value::str(if key.udp { "udp" } else { "tcp" }));
    slim.set("source.bytes", Value::Float(sent));
    if let Some(h) = event.host() {
        slim.set("host.name", Value::str(h.into_owned()));
    }
    Observation { event: slim, rules: vec![OBSERVED_CONNECTION], detector: 0 }
}

/// The observation of the names an event tells for addresses (one per name).
fn name_observations(event: &Event) -> Vec<Observation> {
    let mut by_name: Vec<(String, Vec<Value>)> = Vec::new();
    for (ip, name) in BeaconDetector::names_of(event) {
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, ips)) => ips.push(Value::str(ip.to_string())),
            None => by_name.push((name, vec![Value::str(ip.to_string())])),
        }
    }
    by_name
        .into_iter()
        .map(|(name, ips)| {
            let mut slim = Event::new(event.source.clone(), event.position, event.product, event.format);
            slim.timestamp = event.timestamp;
            slim.set("host.name.learnt", Value::str(name));
            slim.set("host.ip", Value::List(ips));
            Observation { event: slim, rules: vec![OBSERVED_NAME], detector: 0 }
        })
        .collect()
}

fn observed_names(event: &Event) -> Vec<(IpAddr, String)> {
    let Some(name) = text_of(event, &["host.name.learnt"]) else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(ips) = event.get_exact("host.ip") {
        ips.for_each_scalar(&mut |v| {
            if let Some(ip) = v.as_text().and_then(|t| t.parse::<IpAddr>().ok()) {
                out.push((ip, name.to_string()));
            }
            false
        });
    }
    out
}

fn observed_connection(event: &Event) -> Option<(PairKey, f64, f64)> {
    let src = ip_of(event, &["source.ip"])?;
    let dst = ip_of(event, &["destination.ip"])?;
    let port = u16::try_from(event.get_exact("destination.port")?.as_f64()? as i64).ok()?;
    let udp = text_of(event, &["network.transport"]).as_deref() == Some("udp");
    let sent = number_of(event, &["source.bytes"]).filter(|b| b.is_finite()).unwrap_or(0.0);
    let secs = event.timestamp?.as_microsecond() as f64 / 1e6;
    Some((PairKey { src, dst, port, udp }, secs, sent))
}

/// A live stream of a [`BeaconDetector`]'s observations.
pub(crate) struct Stream {
    pub(crate) reorder: Reorder,
    pairs: HashMap<PairKey, LivePair>,
    names: Names,
    /// The next evaluation time; `None` while no pair has new connections.
    next_evaluation: Option<Timestamp>,
    /// When idle pairs were last let go.
    last_sweep: Option<Timestamp>,
    pub(crate) stats: StreamStats,
    /// The beaconing rule's id, to refuse a state saved for another.
    id: String,
}

/// One pair's recent connections.
#[derive(Debug, Serialize, Deserialize)]
struct LivePair {
    /// (time in seconds, bytes sent), oldest first.
    conns: VecDeque<(f64, f64)>,
    /// Connections seen since the pair was first kept.
    total: u64,
    source: String,
    position: SavedPosition,
    host: Option<String>,
    /// New connections since the last evaluation.
    fresh: bool,
    /// The evaluation that last reported the pair.
    reported: Option<Timestamp>,
}

#[derive(Serialize, Deserialize)]
struct SavedStream {
    id: String,
    #[serde(default)]
    stats: StreamStats,
    buffer: SavedReorder,
    pairs: Vec<(PairKey, LivePair)>,
    names: Vec<(IpAddr, Vec<String>)>,
    next_evaluation: Option<Timestamp>,
    #[serde(default)]
    last_sweep: Option<Timestamp>,
}

impl Stream {
    pub(crate) fn stats(&self) -> StreamStats {
        StreamStats { state_entries: self.pairs.len() as u64, ..self.stats.clone() }
    }

    pub(crate) fn save(&self) -> Result<serde_json::Value, StateError> {
        #[derive(Serialize)]
        struct Ref<'a> {
            kind: &'static str,
            id: &'a str,
            stats: &'a StreamStats,
            buffer: SavedReorder,
            pairs: Vec<(&'a PairKey, &'a LivePair)>,
            names: Vec<(&'a IpAddr, &'a Vec<Box<str>>)>,
            next_evaluation: Option<Timestamp>,
            last_sweep: Option<Timestamp>,
        }
        let mut pairs: Vec<_> = self.pairs.iter().collect();
        pairs.sort_by_key(|(k, _)| **k);
        stream::to_value(&Ref {
            kind: "beaconing",
            id: &self.id,
            stats: &self.stats,
            buffer: self.reorder.save()?,
            pairs,
            names: self.names.iter().collect(),
            next_evaluation: self.next_evaluation,
            last_sweep: self.last_sweep,
        })
    }
}

/// A time as the seconds a pair's connections are kept in.
fn seconds(t: Timestamp) -> f64 {
    t.as_microsecond() as f64 / 1e6
}

/// The first multiple of `every` (from the epoch) after `t`.
fn evaluation_after(t: Timestamp, every: SignedDuration) -> Option<Timestamp> {
    let every = every.as_secs().max(1);
    let next = t.as_second().div_euclid(every).checked_add(1)?.checked_mul(every)?;
    Timestamp::from_second(next).ok()
}

impl BeaconDetector {
    fn add_connection(&self, st: &mut Stream, key: PairKey, secs: f64, sent: f64, event: &Event, t: Timestamp) {
        if !st.pairs.contains_key(&key) && st.pairs.len() >= self.config.max_pairs {
            st.stats.pairs_not_kept += 1;
            return;
        }
        let pair = st.pairs.entry(key).or_insert_with(|| LivePair {
            conns: VecDeque::new(),
            total: 0,
            source: event.source.name.clone(),
            position: event.position.into(),
            host: text_of(event, &["host.name"]).map(|h| h.into_owned()),
            fresh: false,
            reported: None,
        });
        if pair.conns.back().is_some_and(|c| c.0 < seconds(t.checked_sub(self.history).unwrap_or(Timestamp::MIN))) {
            // Idle for the whole history: as if it had been forgotten (whether or not a sweep
            // came by), so that the result does not depend on when sweeps ran.
            pair.conns.clear();
            pair.total = 0;
            pair.source = event.source.name.clone();
            pair.position = event.position.into();
            pair.host = text_of(event, &["host.name"]).map(|h| h.into_owned());
        }
        pair.total += 1;
        pair.conns.push_back((secs, sent));
        while pair.conns.len() > self.config.max_connections_per_pair.max(1) {
            pair.conns.pop_front();
            st.stats.connections_not_kept += 1;
        }
        pair.fresh = true;
        if st.next_evaluation.is_none() {
            st.next_evaluation = evaluation_after(t, self.evaluate_every);
        }
    }

    /// Runs the evaluations due at or before `now`: every connection before them has been
    /// seen (the caller has released everything older than `now`).
    fn evaluate_until(&self, st: &mut Stream, now: Timestamp, out: &mut Vec<Detection>) {
        while let Some(at) = st.next_evaluation
            && at <= now
        {
            self.evaluate(st, at, out);
            st.next_evaluation =
                if st.pairs.values().any(|p| p.fresh) { at.checked_add(self.evaluate_every).ok() } else { None };
        }
    }

    /// Scores the pairs with new connections over their history as of `at`.
    fn evaluate(&self, st: &mut Stream, at: Timestamp, out: &mut Vec<Detection>) {
        st.stats.evaluations += 1;
        let cutoff = seconds(at.checked_sub(self.history).unwrap_or(Timestamp::MIN));
        let mut found: Vec<(PairKey, Detection)> = Vec::new();
        for (key, pair) in st.pairs.iter_mut() {
            while pair.conns.front().is_some_and(|c| c.0 < cutoff) {
                pair.conns.pop_front();
            }
            if !std::mem::take(&mut pair.fresh) {
                continue;
            }
            let conns: Vec<(f64, f64)> = pair.conns.iter().copied().collect();
            let Some(s) = score(&conns, self.config.min_connections) else { continue };
            let dst_names: &[Box<str>] = st.names.get(&key.dst).map_or(&[], |v| v.as_slice());
            if s.score < self.config.threshold || self.known_good(key.dst, dst_names).is_some() {
                continue;
            }
            if pair.reported.is_some_and(|r| at.duration_since(r) < self.realert_after) {
                st.stats.realerts_suppressed += 1;
                continue;
            }
            pair.reported = Some(at);
            let seen = Seen {
                total: pair.total,
                host: pair.host.clone(),
                source: &pair.source,
                position: pair.position.into(),
            };
            let mut d = self.detection(key, &seen, &s, dst_names);
            d.fields.push(("evaluated_at".into(), at.to_string()));
            found.push((*key, d));
        }
        self.forget_idle(st, at);
        found.sort_by_key(|(k, _)| *k);
        out.extend(found.into_iter().map(|(_, d)| d));
    }

    /// Lets go of connections older than the history and of pairs left without any, unless
    /// reported less than `realert_after` ago.
    fn forget_idle(&self, st: &mut Stream, now: Timestamp) {
        let cutoff = seconds(now.checked_sub(self.history).unwrap_or(Timestamp::MIN));
        let realert = self.realert_after;
        st.pairs.retain(|_, p| {
            while p.conns.front().is_some_and(|c| c.0 < cutoff) {
                p.conns.pop_front();
            }
            !p.conns.is_empty() || p.reported.is_some_and(|r| now.duration_since(r) < realert)
        });
        st.last_sweep = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(ts: f64, src: &str, dst: &str, port: i64, bytes: i64) -> Event {
        let mut e = Event::new(Source::file("conn.log"), Position::Line(1), Product::Zeek, "zeek");
        e.set("_path", Value::str("conn"));
        e.set("id.orig_h", Value::str(src));
        e.set("id.resp_h", Value::str(dst));
        e.set("id.resp_p", Value::Int(port));
        e.set("proto", Value::str("tcp"));
        e.set("orig_bytes", Value::Int(bytes));
        e.set("resp_bytes", Value::Int(100));
        e.timestamp = jiff::Timestamp::from_microsecond((ts * 1e6) as i64).ok();
        e
    }

    fn run(d: &BeaconDetector, events: &[Event]) -> Vec<Detection> {
        let mut out = Findings::default();
        for e in events {
            d.detect(e, &Arc::from("conn.log"), &mut out);
        }
        d.correlate(Vec::new())
    }

    /// A pseudo-random sequence in 0..1, repeatable.
    fn noise(i: i64) -> f64 {
        let i = i as u64;
        let x = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn a_jittered_beacon_is_found_and_browsing_is_not() {
        let d = BeaconDetector::new(BeaconConfig::default()).unwrap();
        let mut events = Vec::new();
        // 60 s ± 20% jitter, 320-byte check-ins, for two hours.
        let mut t = 1_700_000_000.0;
        for i in 0..120 {
            events.push(conn(t, "10.1.1.5", "203.0.113.50", 443, 320 + (i % 3)));
            t += 60.0 * (0.8 + 0.4 * noise(i));
        }
        // Browsing: bursts at irregular times, sizes all over the place.
        let mut t = 1_700_000_000.0;
        for i in 0..120 {
            events.push(conn(t, "10.1.1.6", "198.51.100.7", 443, (noise(i + 500) * 50_000.0) as i64));
            t += if noise(i + 1000) < 0.7 { 0.5 } else { 600.0 * noise(i + 2000) };
        }
        let found = run(&d, &events);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].fields[0], ("source.ip".into(), "10.1.1.5".into()));
        assert_eq!(found[0].fields[1], ("destination.ip".into(), "203.0.113.50".into()));
        // The state was emptied.
        assert!(d.correlate(Vec::new()).is_empty());
    }

    #[test]
    fn infrastructure_inbound_and_known_good_are_left_out() {
        let config = BeaconConfig {
            known_good_domains: vec!["updates.example".into()],
            known_good_networks: vec!["192.0.2.0/24".into()],
            ..BeaconConfig::default()
        };
        let d = BeaconDetector::new(config).unwrap();
        let mut events = Vec::new();
        let mut dns = Event::new(Source::file("dns.log"), Position::Line(1), Product::Zeek, "zeek");
        dns.set("_path", Value::str("dns"));
        dns.set("query", Value::str("mirror.updates.example"));
        dns.set("answers", Value::List(vec![Value::str("198.51.100.9"), Value::str("mirror.cdn.example")]));
        events.push(dns);
        for i in 0..50 {
            let t = 1_700_000_000.0 + 3600.0 * i as f64;
            events.push(conn(t, "10.1.1.5", "198.51.100.9", 443, 669)); // named known-good
            events.push(conn(t, "10.1.1.5", "192.0.2.10", 443, 669)); // known-good network
            events.push(conn(t, "10.1.1.5", "203.0.113.1", 123, 48)); // NTP
            events.push(conn(t, "203.0.113.77", "10.1.1.5", 22, 1200)); // inbound to a private host
            events.push(conn(t, "10.1.1.5", "239.255.255.250", 8080, 100)); // multicast
            let mut empty = conn(t, "10.1.1.5", "203.0.113.2", 443, 0); // no payload
            empty.set("resp_bytes", Value::Int(0));
            events.push(empty);
            let mut inbound = conn(t, "198.51.100.1", "203.0.113.3", 443, 500);
            inbound.set("local_orig", Value::Bool(false));
            events.push(inbound);
        }
        let mut out = Findings::default();
        for e in &events {
            d.detect(e, &Arc::from("x"), &mut out);
        }
        let (found, scored) = d.score_all();
        assert!(found.is_empty(), "{found:#?}");
        assert_eq!(scored.len(), 2, "{scored:#?}");
        assert!(scored.iter().all(|s| s.known_good.is_some() && s.score.score > 0.9));
        assert!(scored.iter().any(|s| s.names == ["mirror.updates.example"]));
    }

    #[test]
    fn state_is_bounded() {
        let config = BeaconConfig { max_pairs: 3, max_connections_per_pair: 5, ..BeaconConfig::default() };
        let d = BeaconDetector::new(config).unwrap();
        let mut out = Findings::default();
        for i in 0..10 {
            for j in 0..10 {
                d.detect(&conn(i as f64, "10.0.0.1", &format!("203.0.113.{j}"), 443, 10), &Arc::from("x"), &mut out);
            }
        }
        assert_eq!(d.dropped_pairs(), 7 * 10);
        let kept: usize =
            d.pairs.iter().map(|s| s.lock().unwrap().values().map(|p| p.conns.len()).sum::<usize>()).sum();
        assert_eq!(kept, 15);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(BeaconDetector::new(BeaconConfig { level: "loud".into(), ..BeaconConfig::default() }).is_err());
        assert!(BeaconDetector::new(BeaconConfig { threshold: 2.0, ..BeaconConfig::default() }).is_err());
        let c = BeaconConfig { known_good_networks: vec!["10.0.0.0/40".into()], ..BeaconConfig::default() };
        assert!(BeaconDetector::new(c).is_err());
    }
}
