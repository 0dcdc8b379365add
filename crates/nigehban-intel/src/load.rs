//! Loading indicators: plain lists (one value per line) and STIX 2.1 bundles (indicators with
//! simple patterns: `[type:property = 'value']`, OR-lists of them, `ISSUBSET` for networks).

use std::borrow::Cow;
use std::fmt;

use nigehban_policy::Tlp;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::matcher::{IndicatorMeta, IndicatorSet};
use crate::value::{IndicatorType, classify, normalize};
use crate::warninglist::Warninglists;

/// A value that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `file:line` or the STIX object's id.
    pub location: String,
    /// Why.
    pub reason: String,
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Indicators added.
    pub loaded: usize,
    /// Of those, values already present (kept, chained).
    pub duplicates: usize,
    /// Values left out because a warninglist lists them, per list.
    pub suppressed: Vec<(String, usize)>,
    /// Values not loaded (the first 1,000; `skipped_total` counts all).
    pub skipped: Vec<Skipped>,
    /// How many were skipped.
    pub skipped_total: usize,
}

impl LoadReport {
    fn skip(&mut self, location: impl Into<String>, reason: impl Into<String>) {
        self.skipped_total += 1;
        if self.skipped.len() < 1000 {
            self.skipped.push(Skipped { location: location.into(), reason: reason.into() });
        }
    }

    fn suppress(&mut self, list: &str) {
        match self.suppressed.iter_mut().find(|(l, _)| l == list) {
            Some((_, n)) => *n += 1,
            None => self.suppressed.push((list.to_owned(), 1)),
        }
    }

    /// How many were suppressed by warninglists.
    pub fn suppressed_total(&self) -> usize {
        self.suppressed.iter().map(|(_, n)| n).sum()
    }
}

fn add_one(
    set: &mut IndicatorSet,
    warn: Option<&Warninglists>,
    report: &mut LoadReport,
    location: impl FnOnce() -> String,
    kind: IndicatorType,
    value: &str,
    meta: IndicatorMeta,
) {
    let n = match normalize(kind, value) {
        Ok(n) => n,
        Err(e) => return report.skip(location(), e.to_string()),
    };
    if let Some(list) = warn.and_then(|w| w.check(&n, value)) {
        report.suppress(list);
        return;
    }
    let (_, dup) = set.add_normalized(&n, meta);
    report.loaded += 1;
    if dup {
        report.duplicates += 1;
    }
}

const TYPE_NAMES: &[(&str, IndicatorType)] = &[
    ("ip", IndicatorType::Ip),
    ("cidr", IndicatorType::Ip),
    ("domain", IndicatorType::Domain),
    ("url", IndicatorType::Url),
    ("email", IndicatorType::Email),
    ("md5", IndicatorType::Md5),
    ("sha1", IndicatorType::Sha1),
    ("sha256", IndicatorType::Sha256),
];

/// Loads a plain list: one value per line, its type recognised from its shape or given as a
/// prefix (`domain:example.org`); `#` starts a comment; blank lines are ignored. Every value
/// gets `meta` (source, TLP, window).
pub fn load_plain(
    set: &mut IndicatorSet,
    file: &str,
    text: &str,
    meta: IndicatorMeta,
    warn: Option<&Warninglists>,
) -> LoadReport {
    let mut report = LoadReport::default();
    for (i, line) in text.lines().enumerate() {
        let v = line.split(" #").next().unwrap_or("").trim();
        if v.is_empty() || v.starts_with('#') {
            continue;
        }
        let given = v.split_once(':').and_then(|(t, rest)| {
            TYPE_NAMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(t)).map(|(_, k)| (*k, rest.trim()))
        });
        let (kind, value) = match given {
            Some(kv) => kv,
            None => match classify(v) {
                Some(k) if !v.starts_with('/') => (k, v),
                _ => match scheme_less(v) {
                    Shape::AddressWithPort(ip) => (IndicatorType::Ip, ip),
                    Shape::HostPath => {
                        // A URL written without its scheme (common in feeds): both schemes.
                        for scheme in ["http://", "https://"] {
                            let url = format!("{scheme}{v}");
                            add_one(
                                set,
                                warn,
                                &mut report,
                                || format!("{file}:{}", i + 1),
                                IndicatorType::Url,
                                &url,
                                meta,
                            );
                        }
                        continue;
                    }
                    Shape::PathOnly => {
                        report.skip(
                            format!("{file}:{}", i + 1),
                            format!("{v:?} is a URL path without a host: it cannot be matched alone"),
                        );
                        continue;
                    }
                    Shape::Unknown => {
                        report.skip(
                            format!("{file}:{}", i + 1),
                            format!("{v:?} is not an IP address, network, domain, URL, e-mail address or hash"),
                        );
                        continue;
                    }
                },
            },
        };
        add_one(set, warn, &mut report, || format!("{file}:{}", i + 1), kind, value, meta);
    }
    report
}

enum Shape<'a> {
    AddressWithPort(&'a str),
    HostPath,
    PathOnly,
    Unknown,
}

/// Shapes feeds use that [`classify`] does not: `203.0.113.9:8443` or `…:22:443` (the address is the
/// indicator), `host.example/path` (a URL without its scheme), `/path` (no host).
fn scheme_less(v: &str) -> Shape<'_> {
    if let Some((ip, ports)) = v.split_once(':')
        && ip.parse::<std::net::Ipv4Addr>().is_ok()
        && ports.split(':').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Shape::AddressWithPort(ip);
    }
    if let Some(rest) = v.strip_prefix('[')
        && let Some((ip, port)) = rest.split_once("]:")
        && ip.parse::<std::net::Ipv6Addr>().is_ok()
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        return Shape::AddressWithPort(ip);
    }
    if v.starts_with('/') {
        return Shape::PathOnly;
    }
    if let Some((host, _)) = v.split_once('/') {
        let host =
            host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
        if matches!(classify(host), Some(IndicatorType::Domain | IndicatorType::Ip)) {
            return Shape::HostPath;
        }
    }
    Shape::Unknown
}

/// STIX 2.1 marking definitions for TLP (2.0 and 1.0 ids).
fn tlp_of_marking(id: &str) -> Option<Tlp> {
    Some(match id.strip_prefix("marking-definition--")? {
        "94868c89-83c2-464b-929b-a1a8aa3c8487" | "613f2e26-407d-48c7-9eca-b8e91df99dc9" => Tlp::Clear,
        "bab4a63c-aed9-4cf5-a766-dfca5abac2bb" | "34098fce-860f-48ae-8e50-ebd3cc5e41da" => Tlp::Green,
        "55d920b0-5e8b-4f79-9ee9-91f868d9b421" | "f88d31f6-486f-44da-b317-01333bde0b82" => Tlp::Amber,
        "939a9414-2ddd-4d32-a0cd-375ea402b003" => Tlp::AmberStrict,
        "e828b379-4e03-4974-9ac4-e53a884c97c1" | "5e57c739-391a-4eb3-b6be-7d15ca92d5ed" => Tlp::Red,
        _ => return None,
    })
}

/// A simple STIX pattern: the (type, value) comparisons it ORs together.
pub(crate) fn parse_pattern(p: &str) -> Result<Vec<(IndicatorType, String)>, String> {
    let mut out = Vec::new();
    let b = p.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    let word = |i: &mut usize| -> String {
        let start = *i;
        while *i < b.len() && (b[*i].is_ascii_alphanumeric() || b[*i] == b'_') {
            *i += 1;
        }
        p.get(start..*i).unwrap_or("").to_owned()
    };
    // A few characters from byte `i`, for messages (never splits a character).
    let near = |i: usize| -> String { p.get(i..).unwrap_or("").chars().take(10).collect() };
    let mut expect_obs = true;
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        if !expect_obs {
            let w = word(&mut i);
            if w != "OR" {
                return Err(if w.is_empty() {
                    format!("unexpected {:?} after an observation", near(i))
                } else {
                    format!("{w} between observations: only OR is supported for matching")
                });
            }
            expect_obs = true;
            continue;
        }
        if b[i] != b'[' {
            return Err(format!("expected [ at {:?}", near(i)));
        }
        i += 1;
        loop {
            skip_ws(&mut i);
            // Object path: type:property(.key)* with quoted keys allowed.
            let start = i;
            while i < b.len()
                && !b[i].is_ascii_whitespace()
                && b[i] != b'='
                && b[i] != b']'
                && b[i] != b'!'
                && b[i] != b'<'
                && b[i] != b'>'
            {
                if b[i] == b'\'' {
                    i += 1;
                    while i < b.len() && b[i] != b'\'' {
                        i += 1;
                    }
                }
                if i < b.len() {
                    i += 1;
                }
            }
            let path = p.get(start..i.min(b.len())).unwrap_or("").to_owned();
            skip_ws(&mut i);
            let op = if i < b.len() && b[i] == b'=' {
                i += 1;
                "=".to_owned()
            } else {
                let w = word(&mut i);
                if w.is_empty() { near(i).chars().take(2).collect() } else { w }
            };
            if op != "=" && op != "ISSUBSET" {
                return Err(format!("operator {op:?} (only = and ISSUBSET are supported for matching)"));
            }
            skip_ws(&mut i);
            if i >= b.len() || b[i] != b'\'' {
                return Err("expected a quoted value".into());
            }
            i += 1;
            let mut value = String::new();
            loop {
                if i >= b.len() {
                    return Err("unterminated string".into());
                }
                match b[i] {
                    b'\\' if i + 1 < b.len() => {
                        let ch = p.get(i + 1..).and_then(|r| r.chars().next()).unwrap_or('\u{fffd}');
                        value.push(ch);
                        i += 1 + ch.len_utf8();
                    }
                    b'\'' => {
                        i += 1;
                        break;
                    }
                    _ => {
                        let ch = p.get(i..).and_then(|r| r.chars().next()).unwrap_or('\u{fffd}');
                        value.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            let kind = path_type(&path).ok_or_else(|| format!("object path {path:?} is not one the matcher uses"))?;
            if op == "ISSUBSET" && kind != IndicatorType::Ip {
                return Err(format!("ISSUBSET on {path}"));
            }
            out.push((kind, value));
            skip_ws(&mut i);
            if i < b.len() && b[i] == b']' {
                i += 1;
                break;
            }
            let w = word(&mut i);
            if w != "OR" {
                return Err(if w.is_empty() {
                    "expected ] or OR".into()
                } else {
                    format!("{w} inside an observation: only OR is supported for matching")
                });
            }
        }
        expect_obs = false;
    }
    if out.is_empty() {
        return Err("empty pattern".into());
    }
    Ok(out)
}

fn path_type(path: &str) -> Option<IndicatorType> {
    let (object, prop) = path.split_once(':')?;
    let prop = prop.replace('\'', "");
    Some(match (object, prop.as_str()) {
        ("ipv4-addr" | "ipv6-addr", "value") => IndicatorType::Ip,
        ("domain-name", "value") => IndicatorType::Domain,
        ("url", "value") => IndicatorType::Url,
        ("email-addr", "value") => IndicatorType::Email,
        ("email-message", "from_ref.value" | "sender_ref.value") => IndicatorType::Email,
        ("file" | "artifact", "hashes.MD5") => IndicatorType::Md5,
        ("file" | "artifact", "hashes.SHA-1" | "hashes.SHA1") => IndicatorType::Sha1,
        ("file" | "artifact", "hashes.SHA-256" | "hashes.SHA256") => IndicatorType::Sha256,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct StixObject<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pattern: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pattern_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    valid_from: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    valid_until: Option<Cow<'a, str>>,
    #[serde(default)]
    revoked: bool,
    #[serde(borrow, default)]
    object_marking_refs: Vec<Cow<'a, str>>,
}

struct Loader<'r> {
    set: &'r mut IndicatorSet,
    warn: Option<&'r Warninglists>,
    report: &'r mut LoadReport,
    source: u32,
    default_tlp: Tlp,
    file: &'r str,
    seen: usize,
}

fn micros(s: &str) -> Result<i64, String> {
    s.parse::<jiff::Timestamp>().map(|t| t.as_microsecond()).map_err(|e| format!("timestamp {s:?}: {e}"))
}

impl Loader<'_> {
    fn object(&mut self, o: StixObject<'_>) {
        self.seen += 1;
        if o.kind != "indicator" {
            return;
        }
        let location = format!("{} {}", self.file, o.id.as_deref().unwrap_or("(indicator without id)"));
        if o.revoked {
            return self.report.skip(location, "revoked");
        }
        match o.pattern_type.as_deref() {
            Some("stix") => {}
            other => {
                return self.report.skip(location, format!("pattern_type {other:?}: only STIX patterns are matched"));
            }
        }
        let Some(pattern) = o.pattern.as_deref() else { return self.report.skip(location, "no pattern") };
        let parts = match parse_pattern(pattern) {
            Ok(p) => p,
            Err(e) => return self.report.skip(location, format!("pattern {pattern:?}: {e}")),
        };
        let mut meta = IndicatorMeta::new(self.source, self.default_tlp);
        if let Some(t) = o.object_marking_refs.iter().find_map(|m| tlp_of_marking(m)) {
            meta.tlp = t;
        }
        for (field, value) in [("valid_from", &o.valid_from), ("valid_until", &o.valid_until)] {
            if let Some(v) = value {
                match micros(v) {
                    Ok(m) if field == "valid_from" => meta.valid_from = m,
                    Ok(m) => meta.valid_until = m,
                    Err(e) => return self.report.skip(location, format!("{field}: {e}")),
                }
            }
        }
        meta.stix_id = o.id.as_deref().and_then(|id| id.strip_prefix("indicator--")).and_then(uuid_bytes);
        for (kind, value) in parts {
            add_one(self.set, self.warn, self.report, || location.clone(), kind, &value, meta);
        }
    }
}

fn uuid_bytes(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

struct ObjectsSeed<'l, 'r>(&'l mut Loader<'r>);

impl<'de> DeserializeSeed<'de> for ObjectsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ObjectsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of STIX objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(o) = seq.next_element::<StixObject<'de>>()? {
            self.0.object(o);
        }
        Ok(())
    }
}

struct BundleVisitor<'l, 'r>(&'l mut Loader<'r>);

impl<'de> Visitor<'de> for BundleVisitor<'_, '_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a STIX 2.1 bundle")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut is_bundle = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "type" => is_bundle = map.next_value::<Cow<'de, str>>()? == "bundle",
                "objects" => map.next_value_seed(ObjectsSeed(self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(is_bundle)
    }
}

/// Loads the indicators of a STIX 2.1 bundle (streamed: the bundle is never held as a whole).
/// TLP comes from each indicator's `object_marking_refs` (TLP 2.0 or 1.0 marking definitions),
/// else `default_tlp`; `valid_from`/`valid_until` bound each indicator's window.
pub fn load_stix_bundle(
    set: &mut IndicatorSet,
    file: &str,
    text: &str,
    default_tlp: Tlp,
    warn: Option<&Warninglists>,
) -> Result<LoadReport, String> {
    let mut report = LoadReport::default();
    let source = set.add_source(file);
    let mut loader = Loader { set, warn, report: &mut report, source, default_tlp, file, seen: 0 };
    let mut de = serde_json::Deserializer::from_str(text);
    let is_bundle = de.deserialize_map(BundleVisitor(&mut loader)).map_err(|e| format!("{file}: {e}"))?;
    de.end().map_err(|e| format!("{file}: {e}"))?;
    if !is_bundle {
        return Err(format!("{file}: not a STIX bundle (\"type\": \"bundle\" expected)"));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_patterns() {
        assert_eq!(
            parse_pattern("[ipv4-addr:value = '203.0.113.9']").unwrap(),
            vec![(IndicatorType::Ip, "203.0.113.9".into())]
        );
        let p = parse_pattern("[domain-name:value = 'evil.example' OR url:value = 'http://x.example/a\\'b'] OR [file:hashes.'SHA-256' = 'aa']").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[1], (IndicatorType::Url, "http://x.example/a'b".into()));
        assert_eq!(p[2].0, IndicatorType::Sha256);
        assert_eq!(parse_pattern("[ipv4-addr:value ISSUBSET '10.0.0.0/8']").unwrap()[0].1, "10.0.0.0/8");
    }

    #[test]
    fn refuses_what_it_cannot_match() {
        for (p, why) in [
            ("[ipv4-addr:value = '1.2.3.4'] AND [domain-name:value = 'x.example']", "AND"),
            ("[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [domain-name:value = 'x.example']", "FOLLOWEDBY"),
            ("[url:value LIKE '%x%']", "LIKE"),
            ("[process:name = 'evil.exe']", "process:name"),
            ("[ipv4-addr:value = '1.2.3.4' AND ipv4-addr:value = '1.2.3.5']", "AND"),
            ("[ipv4-addr:value != '1.2.3.4']", "!="),
            ("[ipv4-addr:value = '1.2.3.4'] WITHIN 300 SECONDS", "WITHIN"),
            ("[ipv4-addr:value = '1.2.3.4", "unterminated"),
        ] {
            let e = parse_pattern(p).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
        }
        // Found by fuzzing: a quote in an object path running to the end; multi-byte
        // characters after an escape and in messages.
        for p in ["[ipvUUUUUUUUUU'UUUUUUUUz:valub\\'c']", "[x:y = 'a\\é", "[x:'", "é", "[ipv4-addr:value = '1'] é€"]
        {
            assert!(parse_pattern(p).is_err(), "{p}");
        }
        let e = parse_pattern("[process:name = 'x']").unwrap_err();
        assert!(e.contains("process:name"), "{e}");
    }
}
