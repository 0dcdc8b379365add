//! Indicator matching as a detector: every address, domain, URL, e-mail address and file hash
//! found in an event's fields is looked up in an indicator [`Matcher`], at the event's time.

use std::net::IpAddr;
use std::sync::Arc;

use nigehban_event::{Event, Value};
use nigehban_intel::{Hit, Matcher};
use nigehban_sigma::Level;

use crate::{Detection, Detector, Engine, Findings, RuleInfo};

/// Field names (ASCII case-insensitive) whose values are host or domain names.
const DOMAIN_FIELDS: &[&str] = &[
    "queryname",
    "query",
    "server_name",
    "host",
    "hostname",
    "destinationhostname",
    "sourcehostname",
    "domain",
    "dns.question.name",
    "url.domain",
    "destination.domain",
    "http.host",
    "tls.server.name",
    "sni",
    "dest_host",
    "destination.names",
];

/// Field names whose values are e-mail addresses.
const EMAIL_FIELDS: &[&str] = &[
    "from",
    "to",
    "sender",
    "recipient",
    "mailfrom",
    "rcptto",
    "sender_address",
    "recipient_address",
    "email",
    "user_email",
    "email.from.address",
    "email.sender.address",
    "email.to.address",
    "email.reply_to.address",
    "email.authenticated_user",
];

/// Drives a [`Matcher`] over events.
pub struct IndicatorDetector {
    matcher: Arc<Matcher>,
    /// The time used for events without a timestamp (microseconds since the epoch), chosen by
    /// the caller (usually "now").
    undated: i64,
    level: Level,
}

impl IndicatorDetector {
    /// A detector over `matcher`; events without a timestamp are matched as of `undated`.
    pub fn new(matcher: Arc<Matcher>, undated: i64) -> IndicatorDetector {
        IndicatorDetector { matcher, undated, level: Level::High }
    }

    fn detection(&self, event: &Event, source: &Arc<str>, field: &str, value: &str, hit: Hit) -> Detection {
        let src = self.matcher.source(hit.meta.source).to_owned();
        let id = match hit.meta.stix_id {
            Some(b) => format!("indicator--{}", format_uuid(&b)),
            None => format!("indicator:{}:{}", hit.kind.as_str(), hit.indicator),
        };
        let rule = Arc::new(RuleInfo {
            engine: Engine::Indicator,
            id,
            title: format!("Indicator match: {} {}", hit.kind.as_str(), hit.indicator),
            level: self.level,
            tags: Vec::new(),
            path: src.clone(),
            key_fields: vec![field.to_owned()],
        });
        let mut d = Detection::new(rule, event, source.clone());
        d.fields = vec![
            (field.to_owned(), value.to_owned()),
            ("indicator".into(), hit.indicator),
            ("indicator_source".into(), src),
            ("tlp".into(), hit.meta.tlp.as_str().into()),
        ];
        d
    }
}

fn format_uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// `SHA256=ab…,MD5=cd…` (Sysmon's `Hashes`) or a bare hash: the hex values.
fn hashes(v: &str) -> impl Iterator<Item = &str> {
    v.split([',', ';', ' '])
        .map(|p| p.rsplit('=').next().unwrap_or(p).trim())
        .filter(|h| matches!(h.len(), 32 | 40 | 64) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn looks_like_ip(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=45).contains(&b.len()) && (b[0].is_ascii_hexdigit() || b[0] == b':') && (s.contains('.') || s.contains(':'))
}

impl IndicatorDetector {
    fn check(&self, name_lower: &str, text: &str, at: i64) -> Option<Hit> {
        let m = &self.matcher;
        if looks_like_ip(text)
            && let Ok(ip) = text.parse::<IpAddr>()
        {
            return m.match_ip(ip, at);
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            return m.match_url(text, at);
        }
        if DOMAIN_FIELDS.contains(&name_lower) && text.contains('.') {
            return m.match_domain(text, at);
        }
        if EMAIL_FIELDS.contains(&name_lower) && text.contains('@') {
            // A header may carry a display name: "Name <a@b.example>".
            let addr = text.rsplit('<').next().unwrap_or(text).trim_end_matches('>');
            return m.match_email(addr, at);
        }
        if name_lower.contains("hash")
            || name_lower.ends_with("md5")
            || name_lower.ends_with("sha1")
            || name_lower.ends_with("sha256")
        {
            return hashes(text).find_map(|h| m.match_hash(h, at));
        }
        None
    }
}

impl Detector for IndicatorDetector {
    fn detect(&self, event: &Event, source: &Arc<str>, out: &mut Findings) {
        if self.matcher.is_empty() {
            return;
        }
        let at = event.timestamp.map_or(self.undated, |t| t.as_microsecond());
        let mut lower = String::new();
        // One detection per indicator and event, however many fields carry it (a parser's
        // `oip` and the normalized `source.ip` hold the same address).
        let first = out.detections.len();
        for f in event.fields() {
            lower.clear();
            lower.extend(f.name.chars().map(|c| c.to_ascii_lowercase()));
            let mut one = |v: &Value| -> bool {
                if let Value::Str(t) = v
                    && let Some(hit) = self.check(&lower, t.as_str(), at)
                    && !out.detections[first..].iter().any(|d| d.fields.get(1).is_some_and(|i| i.1 == hit.indicator))
                {
                    out.detections.push(self.detection(event, source, &f.name, t.as_str(), hit));
                }
                // Go on through every element of a list (a DNS answer list).
                false
            };
            f.value.for_each_scalar(&mut one);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nigehban_event::{Position, Product, Source};
    use nigehban_intel::{IndicatorMeta, IndicatorSet, Tlp};

    fn event(fields: &[(&str, &str)]) -> Event {
        let mut e = Event::new(Source::file("t.log"), Position::Line(1), Product::Other, "json");
        for (k, v) in fields {
            e.set(*k, Value::str(*v));
        }
        e.timestamp = "2026-11-20T10:00:00Z".parse().ok();
        e
    }

    fn detector() -> IndicatorDetector {
        let mut set = IndicatorSet::new();
        let s = set.add_source("c2.txt");
        for v in [
            "192.168.0.4",
            "evil.example",
            "https://x.example/gate.php",
            "ceo@mofa-gov.example",
            "d41d8cd98f00b204e9800998ecf8427e",
        ] {
            set.add_value(v, IndicatorMeta::new(s, Tlp::Amber)).unwrap();
        }
        IndicatorDetector::new(Arc::new(set.build()), 0)
    }

    fn hits(d: &IndicatorDetector, e: &Event) -> Vec<String> {
        let mut out = Findings::default();
        d.detect(e, &Arc::from("t.log"), &mut out);
        out.detections.iter().map(|d| d.fields[1].1.clone()).collect()
    }

    #[test]
    fn finds_indicators_in_the_fields_that_carry_them() {
        let d = detector();
        assert_eq!(hits(&d, &event(&[("id.orig_h", "10.0.0.5"), ("id.resp_h", "192.168.0.4")])), vec!["192.168.0.4"]);
        assert_eq!(hits(&d, &event(&[("QueryName", "cdn.EVIL.example")])), vec!["evil.example"]);
        assert_eq!(hits(&d, &event(&[("Hashes", "SHA1=00,MD5=D41D8CD98F00B204E9800998ECF8427E")])).len(), 1);
        assert_eq!(hits(&d, &event(&[("from", "CEO <ceo@mofa-gov.example>")])), vec!["ceo@mofa-gov.example"]);
        assert_eq!(
            hits(&d, &event(&[("url", "https://X.example:443/gate.php#top")])),
            vec!["https://x.example/gate.php"]
        );
        assert_eq!(hits(&d, &event(&[("url", "http://cdn.evil.example/a")])), vec!["evil.example"]);
        // A domain in a field that is not a host name is not looked up.
        assert!(hits(&d, &event(&[("CommandLine", "ping evil.example")])).is_empty());
        // Every element of a list is looked at; an indicator in two fields is one detection.
        let mut e = event(&[("oip", "192.168.0.4"), ("source.ip", "192.168.0.4")]);
        e.set("answers", Value::List(vec![Value::str("x.example"), Value::str("d41d8cd98f00b204e9800998ecf8427e")]));
        e.set("TTLs", Value::List(vec![Value::str("10.0.0.1"), Value::str("192.168.0.4")]));
        assert_eq!(hits(&d, &e), vec!["192.168.0.4"]);
        let mut e = event(&[("query", "a.example")]);
        e.set("answers", Value::List(vec![Value::str("10.0.0.1"), Value::str("192.168.0.4")]));
        assert_eq!(hits(&d, &e), vec!["192.168.0.4"]);
    }
}
