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

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nigehban_event::{Event, Position, Product, Source, Value};
use nigehban_sigma::Level;
use serde::Deserialize;

use crate::stats::shape;
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
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
}

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
            config,
        })
    }

    /// Pairs not kept because `max_pairs` was reached.
    pub fn dropped_pairs(&self) -> u64 {
        self.dropped_pairs.load(Ordering::Relaxed)
    }

    fn learn_names(&self, event: &Event) {
        let path = text_of(event, &["_path"]);
        let add = |ip: IpAddr, name: &str| {
            let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() || name == "-" {
                return;
            }
            if let Ok(mut names) = self.names.lock() {
                if names.len() >= 1_000_000 && !names.contains_key(&ip) {
                    return;
                }
                let list = names.entry(ip).or_default();
                if list.len() < 4 && !list.iter().any(|n| **n == *name) {
                    list.push(name.into_boxed_str());
                }
            }
        };
        match path.as_deref() {
            Some("dns") => {
                let Some(query) = text_of(event, &["query"]) else { return };
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
        let sent = number_of(event, &["orig_bytes", "source.bytes"]).unwrap_or(0.0);
        let received = number_of(event, &["resp_bytes", "destination.bytes"]).unwrap_or(0.0);
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
        let mut detections = Vec::new();
        let mut scored = Vec::new();
        for shard in &self.pairs {
            let pairs = shard.lock().map(|mut g| std::mem::take(&mut *g)).unwrap_or_default();
            for (key, pair) in pairs {
                let dst_names: &[Box<str>] = names.get(&key.dst).map_or(&[], |v| v.as_slice());
                let Some(s) = score(&key, &pair, self.config.min_connections) else { continue };
                let known = self.known_good(key.dst, dst_names);
                if s.score >= self.config.threshold && known.is_none() {
                    detections.push(self.detection(&key, &pair, &s, dst_names));
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
        }
        self.pair_count.store(0, Ordering::Relaxed);
        scored.sort_by(|a, b| b.score.score.total_cmp(&a.score.score));
        (detections, scored)
    }

    fn detection(&self, key: &PairKey, pair: &Pair, s: &Score, names: &[Box<str>]) -> Detection {
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
            source: Arc::from(pair.first.0.name.as_str()),
            position: pair.first.1,
            fields,
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

fn score(_key: &PairKey, pair: &Pair, min_connections: usize) -> Option<Score> {
    let mut conns = pair.conns.clone();
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
    fn detect(&self, event: &Event, _source: &Arc<str>, _out: &mut Findings) {
        if matches!(text_of(event, &["_path"]).as_deref(), Some("dns" | "ssl" | "http")) {
            self.learn_names(event);
            return;
        }
        let Some((key, secs, sent)) = self.connection(event) else { return };
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

    fn correlate(&self, _observations: Vec<Observation>) -> Vec<Detection> {
        self.score_all().0
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
