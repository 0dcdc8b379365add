//! Squid's native access log (`logformat squid`):
//!
//! ```text
//! %ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt
//! 1286536308.779    180 192.168.0.224 TCP_MISS/200 411 GET http://www.example.com/ - HIER_DIRECT/93.184.216.34 text/html
//! ```
//!
//! Columns are separated by one or more spaces. The user column (`%[un`, `-` when unknown) is
//! optional (some configurations leave it out); fields after the content type (for example
//! headers logged with `log_mime_hdrs`) are kept as `extra`.
//!
//! Fields of the line: `elapsed` (milliseconds), `client`, `result_code` (`TCP_MISS`),
//! `status`, `bytes`, `method`, `url`, `user`, `hierarchy_code` (`HIER_DIRECT`), `peer`
//! (the server or peer address, when not `-`), `content_type`, `extra`. Normalized fields:
//! `event.dataset` `squid.access`, `event.category` `proxy`, `event.duration` (nanoseconds),
//! `source.ip`, `user.name`, `url.*`, `destination.ip` / `destination.domain`,
//! `destination.port` (for `CONNECT host:port`), `http.request.method`,
//! `http.response.status_code`, `http.response.bytes`, and `event.outcome` (`failure` for a
//! `*_DENIED` result or a status of 400 and above, `success` below 400, `unknown` for
//! status 000).

use jiff::Timestamp;

use super::access::split_url;
use super::enrich::{excerpt, ip, put, put_int};
use super::{EventStub, LineFormat};
use crate::event::{Event, Position, Product};
use crate::value::Value;

/// The Squid native access log line format.
#[derive(Default)]
pub struct SquidFormat;

impl LineFormat for SquidFormat {
    fn parse_line(&mut self, line: &str, stub: EventStub<'_>) -> Result<Option<Event>, String> {
        let mut event = Event::new(stub.source.clone(), Position::Line(stub.line), Product::Other, "squid");
        parse(&mut event, line)?;
        event.raw = line.into();
        Ok(Some(event))
    }
}

/// Whether a line looks like a Squid native access log line (format detection).
pub fn looks_like_squid(line: &str) -> bool {
    let mut words = line.split_ascii_whitespace();
    let (Some(time), Some(elapsed), Some(_client), Some(code)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return false;
    };
    epoch(time).is_some()
        && elapsed.bytes().all(|b| b.is_ascii_digit())
        && code.split_once('/').is_some_and(|(result, status)| is_code_word(result) && status.len() == 3)
}

/// `TCP_MISS`, `NONE_NONE`, `HIER_DIRECT`: upper-case letters, digits and underscores.
fn is_code_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Epoch seconds with an optional fraction (`1286536308.779`).
fn epoch(s: &str) -> Option<Timestamp> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let nanos = frac.bytes().chain(std::iter::repeat(b'0')).take(9).fold(0i32, |n, b| n * 10 + i32::from(b - b'0'));
    Timestamp::new(secs, nanos).ok()
}

fn parse(event: &mut Event, line: &str) -> Result<(), String> {
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    if words.len() < 8 {
        return Err(format!(
            "Squid access log: expected at least 8 columns (time elapsed client code/status bytes method URL …), found {} in \"{}\"",
            words.len(),
            excerpt(line)
        ));
    }
    let timestamp = epoch(words[0])
        .ok_or_else(|| format!("Squid access log: invalid time \"{}\" (epoch seconds expected)", excerpt(words[0])))?;
    let elapsed: i64 =
        words[1].parse().map_err(|_| format!("Squid access log: invalid elapsed time \"{}\"", excerpt(words[1])))?;
    let client = words[2];
    let (result_code, status) = words[3].split_once('/').filter(|(r, _)| is_code_word(r)).ok_or_else(|| {
        format!("Squid access log: invalid result code \"{}\" (CODE/STATUS expected)", excerpt(words[3]))
    })?;
    let status: i64 =
        status.parse().map_err(|_| format!("Squid access log: invalid status \"{}\"", excerpt(status)))?;
    let bytes: i64 =
        words[4].parse().map_err(|_| format!("Squid access log: invalid size \"{}\"", excerpt(words[4])))?;
    let method = words[5];
    let url = words[6];
    // The user column is optional: with it, HIERARCHY/PEER is the ninth column.
    let is_hierarchy = |w: &str| w.split_once('/').is_some_and(|(h, _)| is_code_word(h));
    let (user, rest) = if words.len() >= 9 && is_hierarchy(words[8]) {
        (Some(words[7]), &words[8..])
    } else if is_hierarchy(words[7]) {
        (None, &words[7..])
    } else {
        return Err(format!("Squid access log: expected HIERARCHY/PEER after the URL in \"{}\"", excerpt(line)));
    };
    let (hierarchy, peer) = rest[0].split_once('/').unwrap_or((rest[0], "-"));

    event.timestamp = Some(timestamp);
    event.set("elapsed", Value::Int(elapsed));
    event.set("client", Value::str(client));
    event.set("result_code", Value::str(result_code));
    event.set("status", Value::Int(status));
    event.set("bytes", Value::Int(bytes));
    event.set("method", Value::str(method));
    event.set("url", Value::str(url));
    let user = user.filter(|u| *u != "-").map(unescape_user);
    if let Some(user) = &user {
        event.set("user", Value::str(user.as_str()));
    }
    event.set("hierarchy_code", Value::str(hierarchy));
    if peer != "-" {
        event.set("peer", Value::str(peer));
    }
    if let Some(ct) = rest.get(1).filter(|c| **c != "-") {
        event.set("content_type", Value::str(*ct));
    }
    if rest.len() > 2 {
        event.set("extra", Value::List(rest[2..].iter().map(|w| Value::str(*w)).collect()));
    }

    put(event, "event.dataset", "squid.access");
    put(event, "event.category", "proxy");
    put_int(event, "event.duration", elapsed.saturating_mul(1_000_000));
    let outcome = if result_code.contains("DENIED") || status >= 400 {
        "failure"
    } else if status == 0 {
        "unknown"
    } else {
        "success"
    };
    put(event, "event.outcome", outcome);
    if let Some(addr) = ip(client) {
        put(event, "source.ip", addr);
    }
    if let Some(user) = user {
        put(event, "user.name", user);
    }
    put(event, "http.request.method", method);
    if url != "-" && !url.starts_with("error:") {
        put(event, "url.original", url);
        let parts = split_url(url);
        if let Some(domain) = parts.domain {
            put(event, "url.domain", domain);
            if ip(domain).is_none() {
                put(event, "destination.domain", domain);
            }
        }
        if let Some(port) = parts.port {
            put_int(event, "url.port", i64::from(port));
            if method.eq_ignore_ascii_case("CONNECT") {
                put_int(event, "destination.port", i64::from(port));
            }
        }
        if let Some(path) = parts.path {
            put(event, "url.path", path);
        }
        if let Some(query) = parts.query {
            put(event, "url.query", query);
        }
    }
    if peer != "-" {
        match ip(peer) {
            Some(addr) => put(event, "destination.ip", addr),
            None => put(event, "destination.domain", peer),
        }
    }
    if status != 0 {
        put_int(event, "http.response.status_code", status);
    }
    put_int(event, "http.response.bytes", bytes);
    Ok(())
}

/// Squid writes user names URL-encoded (`%40` for `@`, `%5C` for `\`).
fn unescape_user(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;
    use crate::read::{Item, TextReader};

    fn parse_line(line: &str) -> Result<Option<Event>, String> {
        let source = Source::file("access.log");
        SquidFormat.parse_line(line, EventStub { source: &source, line: 5 })
    }

    fn event(line: &str) -> Event {
        match parse_line(line) {
            Ok(Some(e)) => e,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn text(e: &Event, name: &str) -> Option<String> {
        e.get_exact(name).and_then(Value::as_text).map(|t| t.into_owned())
    }

    #[test]
    fn native_line_every_field() {
        let line = "1286536308.779    180 192.168.0.224 TCP_MISS/200 411 GET http://www.example.com/a?b=1 - HIER_DIRECT/93.184.216.34 text/html";
        let e = event(line);
        assert_eq!(&*e.raw, line);
        assert_eq!(e.format, "squid");
        assert_eq!(e.timestamp, "2010-10-08T11:11:48.779Z".parse().ok());
        assert_eq!(e.get_exact("elapsed"), Some(&Value::Int(180)));
        assert_eq!(text(&e, "client").as_deref(), Some("192.168.0.224"));
        assert_eq!(text(&e, "result_code").as_deref(), Some("TCP_MISS"));
        assert_eq!(e.get_exact("status"), Some(&Value::Int(200)));
        assert_eq!(e.get_exact("bytes"), Some(&Value::Int(411)));
        assert_eq!(text(&e, "method").as_deref(), Some("GET"));
        assert_eq!(e.get_exact("user"), None);
        assert_eq!(text(&e, "hierarchy_code").as_deref(), Some("HIER_DIRECT"));
        assert_eq!(text(&e, "peer").as_deref(), Some("93.184.216.34"));
        assert_eq!(text(&e, "content_type").as_deref(), Some("text/html"));
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("squid.access"));
        assert_eq!(text(&e, "event.category").as_deref(), Some("proxy"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        assert_eq!(e.get_exact("event.duration"), Some(&Value::Int(180_000_000)));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("192.168.0.224"));
        assert_eq!(text(&e, "url.original").as_deref(), Some("http://www.example.com/a?b=1"));
        assert_eq!(text(&e, "url.domain").as_deref(), Some("www.example.com"));
        assert_eq!(text(&e, "url.path").as_deref(), Some("/a"));
        assert_eq!(text(&e, "url.query").as_deref(), Some("b=1"));
        assert_eq!(text(&e, "destination.ip").as_deref(), Some("93.184.216.34"));
        assert_eq!(text(&e, "destination.domain").as_deref(), Some("www.example.com"));
        assert_eq!(text(&e, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(e.get_exact("http.response.status_code"), Some(&Value::Int(200)));
        assert_eq!(e.get_exact("http.response.bytes"), Some(&Value::Int(411)));
        assert_eq!(e.get_exact("user.name"), None);
    }

    #[test]
    fn users_connect_denials_and_missing_user_column() {
        let e = event(
            "1709287200.001   5021 10.1.2.3 TCP_TUNNEL/200 48213 CONNECT c2.example.net:443 DOMAIN%5Calice HIER_DIRECT/198.51.100.66 -",
        );
        assert_eq!(text(&e, "user").as_deref(), Some("DOMAIN\\alice"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("DOMAIN\\alice"));
        assert_eq!(text(&e, "url.domain").as_deref(), Some("c2.example.net"));
        assert_eq!(e.get_exact("destination.port"), Some(&Value::Int(443)));
        assert_eq!(e.get_exact("url.path"), None);
        assert_eq!(e.get_exact("content_type"), None);

        let e = event(
            "1709287201.500      0 10.1.2.4 TCP_DENIED/403 3941 GET http://blocked.example/ bob HIER_NONE/- text/html",
        );
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(e.get_exact("peer"), None);
        assert_eq!(e.get_exact("destination.ip"), None);

        // No user column.
        let e = event("1709287202.000     12 10.1.2.5 TCP_HIT/200 99 GET http://cdn.example/x HIER_NONE/- image/png");
        assert_eq!(e.get_exact("user"), None);
        assert_eq!(text(&e, "content_type").as_deref(), Some("image/png"));

        // Transaction ended before headers: status 000, URL is an error marker.
        let e = event(
            "1709287203.000      0 10.1.2.6 NONE_NONE/000 0 - error:transaction-end-before-headers - HIER_NONE/- -",
        );
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("unknown"));
        assert_eq!(e.get_exact("url.original"), None);
        assert_eq!(e.get_exact("http.response.status_code"), None);

        // A peer given by name, and logged headers after the content type.
        let e = event(
            "1709287204.000     40 10.1.2.7 TCP_MISS/200 10 GET http://a.example/ - FIRSTUP_PARENT/proxy2.example text/plain [Host: a.example]",
        );
        assert_eq!(text(&e, "destination.domain").as_deref(), Some("a.example"));
        assert_eq!(e.get_exact("destination.ip"), None);
        assert_eq!(e.get_exact("extra").map(|v| v.to_string()).as_deref(), Some("[[Host:, a.example]]"));
    }

    #[test]
    fn malformed_lines_are_errors() {
        for (line, want) in [
            ("hello world", "at least 8 columns"),
            ("yesterday 180 1.2.3.4 TCP_MISS/200 411 GET http://x/ - HIER_DIRECT/1.2.3.4 -", "invalid time"),
            ("1286536308.779 fast 1.2.3.4 TCP_MISS/200 411 GET http://x/ - HIER_DIRECT/1.2.3.4 -", "invalid elapsed"),
            (
                "1286536308.779 180 1.2.3.4 tcp_miss/200 411 GET http://x/ - HIER_DIRECT/1.2.3.4 -",
                "invalid result code",
            ),
            ("1286536308.779 180 1.2.3.4 TCP_MISS/abc 411 GET http://x/ - HIER_DIRECT/1.2.3.4 -", "invalid status"),
            ("1286536308.779 180 1.2.3.4 TCP_MISS/200 big GET http://x/ - HIER_DIRECT/1.2.3.4 -", "invalid size"),
            ("1286536308.779 180 1.2.3.4 TCP_MISS/200 411 GET http://x/ - direct text/html", "HIERARCHY/PEER"),
        ] {
            match parse_line(line) {
                Err(m) => assert!(m.contains(want), "{line}: {m}"),
                other => panic!("{line} gave {other:?}"),
            }
        }
    }

    #[test]
    fn detection() {
        assert!(looks_like_squid(
            "1286536308.779    180 192.168.0.224 TCP_MISS/200 411 GET http://www.example.com/ - HIER_DIRECT/93.184.216.34 text/html"
        ));
        assert!(!looks_like_squid("1286536308.779 hello"));
        assert!(!looks_like_squid("192.0.2.1 - - [01/Mar/2024:10:00:00 +0000] \"GET / HTTP/1.1\" 200 1"));
    }

    #[test]
    fn fixture_through_text_reader() {
        let data = include_bytes!("../../testdata/squid/squid-access.log");
        let mut events = Vec::new();
        let mut diagnostics = Vec::new();
        for item in TextReader::new(&data[..], SquidFormat, Source::file("squid-access.log")) {
            match item {
                Item::Event(e) => events.push(e),
                Item::Diagnostic(d) => diagnostics.push(d),
            }
        }
        assert_eq!(events.len(), 5);
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        assert_eq!(diagnostics[0].position, Some(Position::Line(4)));
        let denied = events.iter().filter(|e| text(e, "event.outcome").as_deref() == Some("failure")).count();
        assert_eq!(denied, 1);
        assert!(events.iter().all(|e| text(e, "event.dataset").as_deref() == Some("squid.access")));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in r"[0-9.]{0,14}( +[ -~]{0,12}){0,12}") {
            let _ = looks_like_squid(&line);
            let _ = parse_line(&line);
        }
    }
}
