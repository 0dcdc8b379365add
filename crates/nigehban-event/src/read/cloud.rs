//! What the cloud audit-log parsers ([`super::cloudtrail`], [`super::azure`], [`super::gcp`])
//! share: looking values up in the record as the vendor wrote it, and adding the normalized
//! fields of `docs/fields.md` without replacing any of the record's own.

use std::net::IpAddr;

use serde_json::Value as Json;

use crate::event::Event;
use crate::value::Value;

/// The value at `path` (object keys, outermost first).
pub(crate) fn at<'a>(v: &'a Json, path: &[&str]) -> Option<&'a Json> {
    path.iter().try_fold(v, |v, key| v.as_object()?.get(*key))
}

/// The non-empty string at `path`.
pub(crate) fn text<'a>(v: &'a Json, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Json::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// The first non-empty string found under one of `paths`.
pub(crate) fn first_text<'a>(v: &'a Json, paths: &[&[&str]]) -> Option<&'a str> {
    paths.iter().find_map(|p| text(v, p))
}

/// The value under `key` in an object, matching the key without regard to ASCII case
/// (request parameters are spelt `dBInstanceIdentifier` by one service, `DBInstanceIdentifier`
/// by another).
pub(crate) fn get_ignore_case<'a>(v: &'a Json, key: &str) -> Option<&'a Json> {
    let map = v.as_object()?;
    map.get(key).or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// A string or a number as text (error codes come as both).
pub(crate) fn scalar_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Adds a normalized text field unless the record has one of that name.
pub(crate) fn set(event: &mut Event, name: &str, value: &str) {
    event.set_default(name, Value::str(value));
}

/// Adds `name` when `value` is an IP address (a cloud's "source address" also holds service
/// names such as `AWS Internal` or `autoscaling.amazonaws.com`).
pub(crate) fn set_ip(event: &mut Event, name: &str, value: Option<&str>) {
    if let Some(ip) = value.and_then(parse_ip) {
        // As the other parsers give it: an IPv4-mapped IPv6 address as the IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        event.set_default(name, Value::str(ip.to_string()));
    }
}

/// An IP address, also in brackets (`[2001:db8::1]`) or with a port (`192.0.2.1:443`).
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    let inner = s.strip_prefix('[').and_then(|r| r.split(']').next());
    if let Some(ip) = inner.and_then(|i| i.parse().ok()) {
        return Some(ip);
    }
    s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// One value, or a list when there are several.
pub(crate) fn one_or_list(mut items: Vec<String>) -> Option<Value> {
    items.dedup();
    match items.len() {
        0 => None,
        1 => items.pop().map(Value::str),
        _ => Some(Value::List(items.into_iter().map(Value::str).collect())),
    }
}

/// What an operation does to the object it acts on, in `event.category` / `event.type` terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kind {
    pub category: &'static str,
    pub kind: &'static str,
}

impl Kind {
    pub(crate) const fn new(category: &'static str, kind: &'static str) -> Kind {
        Kind { category, kind }
    }
}

/// Adds `event.category`, `event.type` and, with a target, `target.name` / `target.type`
/// (`vm` or `database`, after the category).
pub(crate) fn set_kind(event: &mut Event, kind: Kind, target: Option<Value>) {
    set(event, "event.category", kind.category);
    set(event, "event.type", kind.kind);
    if let Some(target) = target {
        event.set_default("target.name", target);
        if matches!(kind.category, "vm" | "database") {
            set(event, "target.type", kind.category);
        }
    }
}

/// The last segment of a resource path (`…/virtualMachines/myvm` → `myvm`).
pub(crate) fn last_segment(path: &str) -> Option<&str> {
    path.trim_end_matches('/').rsplit('/').next().filter(|s| !s.is_empty())
}

/// The record's time (RFC 3339, or `2020-05-15 17:55:19.303000000` read as UTC).
pub(crate) fn timestamp(v: &Json, paths: &[&[&str]]) -> Option<jiff::Timestamp> {
    paths.iter().find_map(|p| text(v, p).and_then(super::windows::parse_windows_time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addresses_in_their_usual_spellings() {
        assert_eq!(parse_ip("192.0.2.1"), "192.0.2.1".parse().ok());
        assert_eq!(parse_ip("[2001:db8::1]"), "2001:db8::1".parse().ok());
        assert_eq!(parse_ip("192.0.2.1:443"), "192.0.2.1".parse().ok());
        assert_eq!(parse_ip("AWS Internal"), None);
        assert_eq!(parse_ip("autoscaling.amazonaws.com"), None);
        let mut e = Event::new(
            crate::event::Source::file("t"),
            crate::event::Position::Line(1),
            crate::event::Product::Other,
            "json",
        );
        set_ip(&mut e, "source.ip", Some("::ffff:203.0.113.9"));
        assert_eq!(e.get_exact("source.ip"), Some(&Value::str("203.0.113.9")));
    }

    #[test]
    fn paths_and_segments() {
        let v = serde_json::json!({"a": {"b": " x "}, "A": {"Key": 1}});
        assert_eq!(text(&v, &["a", "b"]), Some("x"));
        assert_eq!(text(&v, &["a", "c"]), None);
        assert_eq!(get_ignore_case(&v["A"], "key"), Some(&serde_json::json!(1)));
        assert_eq!(last_segment("/subscriptions/s/vm/myvm/"), Some("myvm"));
        assert_eq!(last_segment(""), None);
        assert_eq!(one_or_list(vec!["a".into(), "a".into()]), Some(Value::str("a")));
    }
}
