//! Normalized fields for records carried over syslog, and small helpers the text parsers share.
//!
//! [`syslog`] runs at the end of every syslog line: it looks at the `app` the syslog reader
//! found and hands the event to the parser for that program (Postfix, vCenter `vpxd`, ESXi
//! `hostd`, Proxmox VE daemons, the Linux authentication programs). Those parsers only add
//! fields, with [`Event::set_default`], so the syslog fields (`host`, `app`, `pid`, `message`)
//! stay as they are; a message they do not recognise keeps the fields it has plus
//! `event.dataset`. The normalized names are listed in `docs/fields.md`.

use std::net::IpAddr;

use super::{auth, postfix, proxmox, vsphere};
use crate::event::Event;
use crate::value::Value;

/// Adds the normalized fields of a syslog event whose `app` is one this crate knows.
pub fn syslog(event: &mut Event) {
    #[derive(Clone, Copy)]
    enum Program {
        Postfix,
        VCenter,
        Esxi,
        Proxmox,
        Auth,
    }
    // Decide on the borrowed name first: most lines come from other programs.
    let program = match event.get_exact("app") {
        Some(Value::Str(app)) => {
            let app = app.as_str();
            if postfix::is_postfix_app(app) {
                Program::Postfix
            } else if vsphere::is_vcenter_app(app) {
                Program::VCenter
            } else if vsphere::is_esxi_app(app) {
                Program::Esxi
            } else if proxmox::is_proxmox_app(app) {
                Program::Proxmox
            } else if auth::is_auth_app(app) {
                Program::Auth
            } else {
                return;
            }
        }
        _ => return,
    };
    let Some(message) = event.get_exact("message").and_then(Value::as_text).map(|m| m.into_owned()) else {
        return;
    };
    let dataset = match program {
        Program::Postfix => {
            postfix::enrich(event, &message);
            "postfix"
        }
        Program::VCenter => {
            vsphere::enrich_vcenter(event, &message);
            "vmware.vcenter"
        }
        Program::Esxi => {
            vsphere::enrich_esxi(event, &message);
            "vmware.esxi"
        }
        Program::Proxmox => {
            proxmox::enrich(event, &message);
            "proxmox.tasks"
        }
        Program::Auth => {
            let app = event.get_exact("app").and_then(Value::as_text).map(|a| a.into_owned()).unwrap_or_default();
            auth::enrich(event, &app, &message);
            "linux.auth"
        }
    };
    put(event, "event.dataset", dataset);
    if let Some(host) = event.get_exact("host").and_then(Value::as_text).map(|h| h.into_owned()) {
        put(event, "host.name", host);
    }
}

/// Adds a text field unless one of that name is present.
pub(crate) fn put(event: &mut Event, name: &str, value: impl Into<Box<str>>) {
    event.set_default(name, Value::str(value));
}

/// Adds an integer field unless one of that name is present.
pub(crate) fn put_int(event: &mut Event, name: &str, value: i64) {
    event.set_default(name, Value::Int(value));
}

/// The normalized fields of a VM lifecycle event: category, type, provider and target.
pub(crate) fn vm_event(event: &mut Event, kind: &str, provider: &str, target: Option<&str>) {
    put(event, "event.category", "vm");
    put(event, "event.type", kind);
    put(event, "cloud.provider", provider);
    if let Some(target) = target.filter(|t| !t.is_empty()) {
        put(event, "target.name", target);
        put(event, "target.type", "vm");
    }
}

/// The normalized fields of a log-on attempt.
pub(crate) fn authentication(event: &mut Event, outcome: &str) {
    put(event, "event.category", "authentication");
    put(event, "event.type", "start");
    put(event, "event.outcome", outcome);
}

/// An IP address as text, or `None` when `s` is not one. Brackets (`[2001:db8::1]`) are
/// removed, and an IPv4-mapped IPv6 address (`::ffff:192.0.2.7`, as dual-stack servers log
/// IPv4 clients) is given as the IPv4 address, so that one address has one spelling.
pub(crate) fn ip(s: &str) -> Option<String> {
    let s = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(s);
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some(v4.to_string()),
            None => Some(s.to_owned()),
        },
        IpAddr::V4(_) => Some(s.to_owned()),
    }
}

/// An address with an optional port: `192.0.2.7`, `192.0.2.7:51234`, `[2001:db8::1]:443`,
/// `2001:db8::1` (a bare IPv6 address is never split). `None` when no IP address is found.
pub(crate) fn ip_and_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(addr) = ip(s) {
        return Some((addr, None));
    }
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    if !host.starts_with('[') && host.contains(':') {
        return None;
    }
    Some((ip(host)?, Some(port)))
}

/// Splits `host[ip]` (Postfix's client and relay notation) into host and address.
pub(crate) fn host_and_bracketed(s: &str) -> Option<(&str, &str)> {
    let open = s.find('[')?;
    let inner = s[open + 1..].strip_suffix(']').or_else(|| s[open + 1..].split_once(']').map(|(a, _)| a))?;
    Some((&s[..open], inner))
}

/// The text after `key` (which includes its `=`) up to the next character in `ends` (or the
/// end of `s`).
pub(crate) fn value_after<'a>(s: &'a str, key: &str, ends: &[char]) -> Option<&'a str> {
    let start = find_key(s, key)? + key.len();
    let rest = &s[start..];
    let end = rest.find(ends).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The position of `key` in `s` at the start or after a separator (so that `user=` is not
/// found inside `ruser=`).
fn find_key(s: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find(key) {
        let at = from + i;
        let before = s[..at].chars().next_back();
        if before.is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != '-' && c != '.') {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

/// The start of `s`, for error messages.
pub(crate) fn excerpt(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(ip("192.0.2.7").as_deref(), Some("192.0.2.7"));
        assert_eq!(ip("::ffff:203.0.113.9").as_deref(), Some("203.0.113.9"));
        assert_eq!(ip("[2001:db8::1]").as_deref(), Some("2001:db8::1"));
        assert_eq!(ip("2001:db8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(ip("unknown"), None);
        assert_eq!(ip(""), None);
        assert_eq!(ip_and_port("192.0.2.7:51234"), Some(("192.0.2.7".into(), Some(51234))));
        assert_eq!(ip_and_port("[2001:db8::1]:443"), Some(("2001:db8::1".into(), Some(443))));
        assert_eq!(ip_and_port("2001:db8::1"), Some(("2001:db8::1".into(), None)));
        assert_eq!(ip_and_port("host:80"), None);
        assert_eq!(host_and_bracketed("mail.example.org[198.51.100.7]"), Some(("mail.example.org", "198.51.100.7")));
        assert_eq!(host_and_bracketed("unknown[203.0.113.9]:25"), Some(("unknown", "203.0.113.9")));
        assert_eq!(host_and_bracketed("none"), None);
    }

    #[test]
    fn keys_are_found_at_word_starts() {
        let s = "logname= uid=0 ruser= rhost=203.0.113.9  user=root";
        assert_eq!(value_after(s, "user=", &[' ']), Some("root"));
        assert_eq!(value_after(s, "rhost=", &[' ']), Some("203.0.113.9"));
        assert_eq!(value_after(s, "ruser=", &[' ']), Some(""));
        assert_eq!(value_after(s, "tty=", &[' ']), None);
    }
}
