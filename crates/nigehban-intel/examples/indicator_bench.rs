//! Indicator matcher benchmark: load 1M indicators from a STIX 2.1 bundle (and from a plain
//! list), then time lookups on one thread. Indicators are generated here (documentation and
//! random-looking values); nothing is read from outside.
//!
//!   cargo run --release -p nigehban-intel --example indicator_bench [count]
//!   cargo run --release -p nigehban-intel --example indicator_bench [count] FILE   (write the
//!   indicators to FILE as a plain list, for bench/hunt-mixed.sh, and stop)

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use nigehban_intel::{IndicatorMeta, IndicatorSet, Tlp, load_plain, load_stix_bundle};

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn word(r: &mut Rng, n: usize) -> String {
    (0..n).map(|_| (b'a' + (r.next() % 26) as u8) as char).collect()
}

/// The i-th generated value: 40% addresses, 10% networks, 30% domains, 10% URLs, 10% hashes.
fn value(r: &mut Rng, i: usize) -> String {
    match i % 10 {
        0..=3 => Ipv4Addr::from(r.next() as u32).to_string(),
        4 => format!("{}/{}", Ipv4Addr::from((r.next() as u32) & 0xffff_ff00), 24),
        5..=7 => format!("{}.{}.example", word(r, 8), word(r, 6)),
        8 => format!("https://{}.example/{}/{}.php", word(r, 7), word(r, 5), word(r, 4)),
        _ => format!("{:016x}{:016x}{:016x}{:016x}", r.next(), r.next(), r.next(), r.next()),
    }
}

fn stix_pattern(v: &str) -> String {
    if v.contains("://") {
        format!("[url:value = '{v}']")
    } else if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("[file:hashes.'SHA-256' = '{v}']")
    } else if v.contains('/') {
        format!("[ipv4-addr:value ISSUBSET '{v}']")
    } else if v.parse::<Ipv4Addr>().is_ok() {
        format!("[ipv4-addr:value = '{v}']")
    } else {
        format!("[domain-name:value = '{v}']")
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let values: Vec<String> = (0..n).map(|i| value(&mut r, i)).collect();

    let mut bundle = String::with_capacity(n * 220);
    bundle.push_str("{\"type\": \"bundle\", \"id\": \"bundle--00000000-0000-4000-8000-000000000000\", \"objects\": [");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            bundle.push(',');
        }
        bundle.push_str(&format!(
            "{{\"type\": \"indicator\", \"spec_version\": \"2.1\", \"id\": \"indicator--{:08x}-0000-4000-8000-{:012x}\", \
             \"created\": \"2026-11-01T00:00:00Z\", \"modified\": \"2026-11-01T00:00:00Z\", \"pattern\": \"{}\", \
             \"pattern_type\": \"stix\", \"valid_from\": \"2026-11-01T00:00:00Z\"}}",
            i,
            i,
            stix_pattern(v)
        ));
    }
    bundle.push_str("]}");
    let plain = values.join("\n");
    // `indicator_bench N FILE`: write the indicators as a plain list (one value per line) for
    // the mixed-format hunt benchmark, and stop.
    if let Some(path) = std::env::args().nth(2) {
        std::fs::write(&path, format!("{plain}\n")).expect("writing the list");
        eprintln!("{n} indicators written to {path}");
        return;
    }

    let rss_before = rss_kib();
    let t = Instant::now();
    let mut set = IndicatorSet::new();
    let report = load_stix_bundle(&mut set, "bench-bundle.json", &bundle, Tlp::Amber, None).expect("bundle");
    let m = set.build();
    let stix_load = t.elapsed();
    let rss_after = rss_kib();
    assert_eq!(report.skipped_total, 0, "{:?}", report.skipped.first());
    let loaded = m.len();
    let heap = m.heap_bytes();
    drop(bundle);

    let t = Instant::now();
    let mut set2 = IndicatorSet::new();
    let src = set2.add_source("bench.txt");
    let r2 = load_plain(&mut set2, "bench.txt", &plain, IndicatorMeta::new(src, Tlp::Amber), None);
    let m2 = set2.build();
    let plain_load = t.elapsed();
    assert_eq!(r2.loaded, n);
    drop(m2);

    // Lookups: half hits (values of the set, sub-domains of its domains, addresses inside its
    // networks), half misses; addresses parsed beforehand, as event fields are.
    let mut q = Rng(42);
    let probes: Vec<(Option<IpAddr>, String)> = (0..2_000_000)
        .map(|i| {
            let v = if i % 2 == 0 {
                let base = &values[(q.next() as usize) % n];
                if base.ends_with(".example") {
                    format!("www.{base}")
                } else {
                    base.split('/').next().unwrap_or(base).to_owned()
                }
            } else {
                let k = (q.next() as usize) % 10;
                value(&mut q, k)
            };
            (v.parse::<IpAddr>().ok(), v)
        })
        .collect();
    let at = "2026-11-20T00:00:00Z".parse::<jiff::Timestamp>().map(|t| t.as_microsecond()).unwrap_or(0);
    let t = Instant::now();
    let mut hits = 0usize;
    for (ip, v) in &probes {
        let h = match ip {
            Some(ip) => m.match_ip(*ip, at),
            None if v.contains("://") => m.match_url(v, at),
            None if v.len() == 64 => m.match_hash(v, at),
            None => m.match_domain(v, at),
        };
        hits += usize::from(h.is_some());
    }
    let look = t.elapsed();
    let per_sec = probes.len() as f64 / look.as_secs_f64();
    println!(
        "| indicators | STIX bundle load | plain list load | heap per indicator | RSS growth per indicator | lookups/s (1 thread) | hit rate |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {loaded} | {:.2} s | {:.2} s | {:.0} B | {:.0} B | {:.2} M | {:.0}% |",
        stix_load.as_secs_f64(),
        plain_load.as_secs_f64(),
        heap as f64 / loaded as f64,
        (rss_after.saturating_sub(rss_before) * 1024) as f64 / loaded as f64,
        per_sec / 1e6,
        100.0 * hits as f64 / probes.len() as f64
    );
}
