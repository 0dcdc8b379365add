//! Web server access logs: the NCSA common and combined formats and what servers add to them.
//!
//! ```text
//! [VHOST[:PORT]] HOST IDENT AUTHUSER [10/Oct/2000:13:55:36 -0700] "GET /a?b HTTP/1.1" 200 2326 ["REFERER" "USER-AGENT" [EXTRA…]]
//! ```
//!
//! Apache's `common`, `combined` and `vhost_combined`, nginx's `combined` with a trailing
//! `$request_time`, Zimbra's Jetty request log (trailing latency) and Zimbra's nginx proxy log
//! (`$remote_addr:$remote_port`, an absolute URL, the upstream and server addresses at the
//! end) all read this way; so does Proxmox VE's `pveproxy` access log, which writes the month
//! as a number (`10/03/2024:14:02:11 +0100`).
//!
//! Fields of the line: `client` (HOST as written), `ident`, `auth_user` (when not `-`),
//! `vhost`, `request` (the request line), `status`, `bytes` (numbers; `bytes` is left out when
//! `-`), `referrer`, `user_agent`, `extra` (the text of any fields after the user agent, a
//! list), `response_time` (a trailing number, in whatever unit the server writes), and for
//! Zimbra's proxy log `upstream_addr` and `server_addr`. Normalized fields: see
//! `docs/fields.md` (`source.ip`, `user.name`, `http.*`, `url.*`, `user_agent.original`).
//!
//! The dataset says which server wrote the log: `proxmox.access`, `zimbra.access` or
//! `web.access`. It comes from [`AccessLogFormat::with_flavour`], else from the file name
//! (a path under `pveproxy/`; Zimbra's `access_log.*` and `nginx.access.log`, or a path under
//! `zimbra/`), else from the lines: Proxmox's API paths (`/api2/`) or a `user@pam` /
//! `user@pve` user, Zimbra's service paths (`/service/soap`, `/zimbraAdmin` …). Once a line
//! names the server, the lines after it keep that dataset; until then they are `web.access`.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;

use super::enrich::{excerpt, ip_and_port, put, put_int};
use super::{EventStub, LineFormat};
use crate::event::{Event, Position, Product};
use crate::value::Value;

/// Which server wrote an access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// Any web server (`web.access`).
    Web,
    /// Proxmox VE's `pveproxy` (`proxmox.access`).
    Proxmox,
    /// Zimbra's Jetty or nginx proxy (`zimbra.access`).
    Zimbra,
}

impl Flavour {
    pub fn dataset(self) -> &'static str {
        match self {
            Flavour::Web => "web.access",
            Flavour::Proxmox => "proxmox.access",
            Flavour::Zimbra => "zimbra.access",
        }
    }

    /// The flavour a file path names, if it names one.
    fn from_path(path: &str) -> Option<Flavour> {
        let path = path.replace('\\', "/").to_ascii_lowercase();
        let file = path.rsplit('/').next().unwrap_or(&path);
        if path.contains("pveproxy/") || file.starts_with("pveproxy") {
            Some(Flavour::Proxmox)
        } else if path.contains("zimbra/")
            || file.starts_with("zimbra")
            || file.starts_with("access_log.")
            || file.starts_with("nginx.access.log")
        {
            Some(Flavour::Zimbra)
        } else {
            None
        }
    }
}

/// The access log line format.
#[derive(Default)]
pub struct AccessLogFormat {
    /// Given by the caller or by the file name.
    fixed: Option<Flavour>,
    /// Whether the file name has been looked at.
    named: bool,
    /// Recognised from an earlier line.
    seen: Option<Flavour>,
}

impl AccessLogFormat {
    /// A reader for logs known to come from one server.
    pub fn with_flavour(flavour: Flavour) -> Self {
        AccessLogFormat { fixed: Some(flavour), named: true, seen: None }
    }
}

impl LineFormat for AccessLogFormat {
    fn parse_line(&mut self, line: &str, stub: EventStub<'_>) -> Result<Option<Event>, String> {
        if !self.named {
            self.named = true;
            self.fixed = Flavour::from_path(&stub.source.name);
        }
        let parsed = parse(line)?;
        let flavour = match (self.fixed, self.seen) {
            (Some(f), _) | (None, Some(f)) => f,
            (None, None) => {
                let f = parsed.flavour_hint().unwrap_or(Flavour::Web);
                if f != Flavour::Web {
                    self.seen = Some(f);
                }
                f
            }
        };
        let mut event = Event::new(stub.source.clone(), Position::Line(stub.line), Product::Other, "access");
        parsed.fill(&mut event, flavour);
        event.raw = line.into();
        Ok(Some(event))
    }
}

/// Whether a line looks like an access log line (format detection).
pub fn looks_like_access_log(line: &str) -> bool {
    parse(line).is_ok()
}

/// One access log line, split into its fields (borrowed from the line).
#[derive(Debug)]
struct Line<'a> {
    vhost: Option<&'a str>,
    client: &'a str,
    ident: &'a str,
    auth_user: &'a str,
    timestamp: Timestamp,
    request: &'a str,
    status: u16,
    bytes: Option<i64>,
    referrer: Option<&'a str>,
    user_agent: Option<&'a str>,
    extra: Vec<Token<'a>>,
}

#[derive(Clone, Copy, Debug)]
enum Token<'a> {
    Bare(&'a str),
    Quoted(&'a str),
}

impl<'a> Token<'a> {
    fn text(self) -> &'a str {
        match self {
            Token::Bare(s) | Token::Quoted(s) => s,
        }
    }
}

/// The parts of a request line `METHOD TARGET PROTOCOL`.
struct Request<'a> {
    method: &'a str,
    target: &'a str,
    version: Option<&'a str>,
}

fn split_request(request: &str) -> Option<Request<'_>> {
    let mut parts = request.split(' ').filter(|p| !p.is_empty());
    let method = parts.next()?;
    let target = parts.next()?;
    let protocol = parts.next();
    if parts.next().is_some() || !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_') {
        return None;
    }
    let version = match protocol {
        Some(p) => Some(p.strip_prefix("HTTP/").or_else(|| p.strip_prefix("http/"))?),
        None => None,
    };
    Some(Request { method, target, version })
}

/// A URL's parts: domain (for absolute URLs and `CONNECT host:port`), path and query.
pub(crate) struct UrlParts<'a> {
    pub domain: Option<&'a str>,
    pub port: Option<u16>,
    pub path: Option<&'a str>,
    pub query: Option<&'a str>,
}

pub(crate) fn split_url(url: &str) -> UrlParts<'_> {
    let (authority, rest) = match url.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            (Some(&rest[..end]), &rest[end..])
        }
        _ if !url.starts_with('/') && !url.contains('/') && url.contains(':') => (Some(url), ""),
        _ => (None, url),
    };
    let (domain, port) = match authority {
        Some(a) => {
            let a = a.rsplit_once('@').map_or(a, |(_, host)| host);
            let (host, port) = match a.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(':') && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                    (h, p.parse().ok())
                }
                _ => (a, None),
            };
            let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
            (Some(host).filter(|h| !h.is_empty()), port)
        }
        None => (None, None),
    };
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    UrlParts { domain, port, path: Some(path).filter(|p| !p.is_empty()), query }
}

/// Zimbra's web paths (mail client, admin console, SOAP, REST, uploads, extensions).
const ZIMBRA_PATHS: [&str; 11] = [
    "/service/soap",
    "/service/admin/soap",
    "/service/home/",
    "/service/extension/",
    "/service/upload",
    "/service/preauth",
    "/service/zimlet/",
    "/service/proxy",
    "/zimbraadmin",
    "/zimbra/",
    "/public/login.jsp",
];

impl<'a> Line<'a> {
    fn target(&self) -> Option<Request<'a>> {
        split_request(self.request)
    }

    fn flavour_hint(&self) -> Option<Flavour> {
        let path = self.target().and_then(|r| split_url(r.target).path).unwrap_or("");
        let lower = path.to_ascii_lowercase();
        if lower.starts_with("/api2/") || self.auth_user.ends_with("@pam") || self.auth_user.ends_with("@pve") {
            return Some(Flavour::Proxmox);
        }
        if ZIMBRA_PATHS.iter().any(|p| lower.starts_with(p)) {
            return Some(Flavour::Zimbra);
        }
        None
    }

    fn fill(&self, event: &mut Event, flavour: Flavour) {
        event.timestamp = Some(self.timestamp);
        event.set("client", Value::str(self.client));
        if self.ident != "-" {
            event.set("ident", Value::str(self.ident));
        }
        if self.auth_user != "-" {
            event.set("auth_user", Value::str(self.auth_user));
        }
        if let Some(vhost) = self.vhost {
            event.set("vhost", Value::str(vhost));
        }
        event.set("request", Value::str(self.request));
        event.set("status", Value::Int(i64::from(self.status)));
        if let Some(bytes) = self.bytes {
            event.set("bytes", Value::Int(bytes));
        }
        if let Some(r) = self.referrer.filter(|r| *r != "-") {
            event.set("referrer", Value::str(r));
        }
        if let Some(ua) = self.user_agent.filter(|u| *u != "-") {
            event.set("user_agent", Value::str(ua));
        }
        self.fill_extra(event, flavour);

        put(event, "event.dataset", flavour.dataset());
        put(event, "event.category", "web");
        put(event, "event.outcome", if self.status >= 400 { "failure" } else { "success" });
        if let Some((addr, port)) = ip_and_port(self.client) {
            put(event, "source.ip", addr);
            if let Some(port) = port {
                put_int(event, "source.port", i64::from(port));
            }
        }
        if self.auth_user != "-" && !self.auth_user.is_empty() {
            put(event, "user.name", self.auth_user);
        }
        if let Some(req) = self.target() {
            put(event, "http.request.method", req.method);
            put(event, "url.original", req.target);
            let url = split_url(req.target);
            if let Some(path) = url.path {
                put(event, "url.path", path);
            }
            if let Some(query) = url.query {
                put(event, "url.query", query);
            }
            if let Some(domain) = url.domain {
                put(event, "url.domain", domain);
            }
            if let Some(port) = url.port {
                put_int(event, "url.port", i64::from(port));
            }
            if let Some(version) = req.version {
                put(event, "http.version", version);
            }
        }
        if let Some(vhost) = self.vhost {
            let host =
                vhost.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(vhost, |(h, _)| h);
            put(event, "url.domain", host);
        }
        put_int(event, "http.response.status_code", i64::from(self.status));
        if let Some(bytes) = self.bytes {
            put_int(event, "http.response.bytes", bytes);
        }
        if let Some(r) = self.referrer.filter(|r| *r != "-" && !r.is_empty()) {
            put(event, "http.request.referrer", r);
        }
        if let Some(ua) = self.user_agent.filter(|u| *u != "-" && !u.is_empty()) {
            put(event, "user_agent.original", ua);
        }
    }

    fn fill_extra(&self, event: &mut Event, flavour: Flavour) {
        if self.extra.is_empty() {
            return;
        }
        event.set("extra", Value::List(self.extra.iter().map(|t| Value::str(t.text())).collect()));
        for token in &self.extra {
            if let Token::Bare(s) = token {
                if let Ok(n) = s.parse::<i64>() {
                    event.set_default("response_time", Value::Int(n));
                } else if let Ok(f) = s.parse::<f64>()
                    && f.is_finite()
                {
                    event.set_default("response_time", Value::Float(f));
                }
            }
        }
        if flavour == Flavour::Zimbra
            && let [Token::Quoted(upstream), Token::Quoted(server), ..] = self.extra[..]
        {
            event.set("upstream_addr", Value::str(upstream));
            event.set("server_addr", Value::str(server));
        }
    }
}

/// Splits an access log line into its fields.
fn parse(line: &str) -> Result<Line<'_>, String> {
    let mut rest = line.trim_end();
    // HOST IDENT AUTHUSER, optionally after a VHOST: bare words up to the '['.
    let mut words: Vec<&str> = Vec::with_capacity(4);
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.starts_with('[') {
            break;
        }
        if rest.is_empty() || words.len() == 4 {
            return Err(format!(
                "access log: expected HOST IDENT AUTHUSER [TIME] at the start, found \"{}\"",
                excerpt(line)
            ));
        }
        let end = rest.find(' ').unwrap_or(rest.len());
        words.push(&rest[..end]);
        rest = &rest[end..];
    }
    let (vhost, client, ident, auth_user) = match words[..] {
        [client, ident, user] => (None, client, ident, user),
        [vhost, client, ident, user] => (Some(vhost), client, ident, user),
        _ => {
            return Err(format!(
                "access log: expected HOST IDENT AUTHUSER before the time, found {} field(s) in \"{}\"",
                words.len(),
                excerpt(line)
            ));
        }
    };
    let close =
        rest.find(']').ok_or_else(|| format!("access log: time not closed with ']' in \"{}\"", excerpt(line)))?;
    let time = &rest[1..close];
    let timestamp = parse_time(time).ok_or_else(|| format!("access log: invalid time \"{}\"", excerpt(time)))?;
    rest = rest[close + 1..].trim_start_matches(' ');

    let (request, after) = quoted(rest).ok_or_else(|| {
        format!("access log: expected the quoted request line after the time in \"{}\"", excerpt(line))
    })?;
    rest = after.trim_start_matches(' ');
    let (status, after) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = (status.len() == 3)
        .then(|| status.parse::<u16>().ok())
        .flatten()
        .ok_or_else(|| format!("access log: invalid status \"{}\"", excerpt(status)))?;
    rest = after.trim_start_matches(' ');
    let (bytes, after) = rest.split_once(' ').unwrap_or((rest, ""));
    let bytes = match bytes {
        "-" => None,
        b => Some(b.parse::<i64>().map_err(|_| format!("access log: invalid size \"{}\"", excerpt(b)))?),
    };
    rest = after;

    let mut tokens = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if rest.starts_with('"') {
            let (text, after) =
                quoted(rest).ok_or_else(|| format!("access log: unclosed quote in \"{}\"", excerpt(rest)))?;
            tokens.push(Token::Quoted(text));
            rest = after;
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            tokens.push(Token::Bare(&rest[..end]));
            rest = &rest[end..];
        }
    }
    // Combined format: referrer and user agent are the first two quoted fields.
    let (referrer, user_agent, extra) = match tokens[..] {
        [Token::Quoted(r), Token::Quoted(ua), ..] => (Some(r), Some(ua), tokens[2..].to_vec()),
        _ => (None, None, tokens),
    };
    Ok(Line { vhost, client, ident, auth_user, timestamp, request, status, bytes, referrer, user_agent, extra })
}

/// A `"…"` field at the start of `s` (a backslash escapes the next character, as Apache
/// writes `\"`); returns its text as written and what follows.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('"')?;
    let mut escaped = false;
    for (i, b) in body.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some((&body[..i], &body[i + 1..])),
            _ => {}
        }
    }
    None
}

/// `10/Oct/2000:13:55:36 -0700`, or with the month as a number (pveproxy). The offset may be
/// missing (read as UTC) and the seconds may carry a fraction.
fn parse_time(s: &str) -> Option<Timestamp> {
    let (datetime, offset) = match s.split_once(' ') {
        Some((d, o)) => (d, Some(o)),
        None => (s, None),
    };
    let mut parts = datetime.splitn(3, '/');
    let day: i8 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let month: i8 = match month.parse() {
        Ok(m) => m,
        Err(_) => month_number(month)?,
    };
    let rest = parts.next()?;
    let (year, time) = rest.split_once(':')?;
    let year: i16 = year.parse().ok()?;
    let mut hms = time.splitn(3, ':');
    let hour: i8 = hms.next()?.parse().ok()?;
    let minute: i8 = hms.next()?.parse().ok()?;
    let seconds = hms.next()?;
    let (second, nanos) = match seconds.split_once(['.', ',']) {
        Some((s, frac)) => {
            if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let nanos =
                frac.bytes().chain(std::iter::repeat(b'0')).take(9).fold(0i32, |n, b| n * 10 + i32::from(b - b'0'));
            (s.parse::<i8>().ok()?, nanos)
        }
        None => (seconds.parse::<i8>().ok()?, 0),
    };
    let dt = DateTime::new(year, month, day, hour, minute, second, nanos).ok()?;
    let offset = match offset {
        None => Offset::UTC,
        Some(o) => parse_offset(o)?,
    };
    offset.to_timestamp(dt).ok()
}

/// `+0100`, `-0700`, `+01:00` or `Z`.
fn parse_offset(s: &str) -> Option<Offset> {
    if s == "Z" {
        return Some(Offset::UTC);
    }
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits = digits.replace(':', "");
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()
}

fn month_number(name: &str) -> Option<i8> {
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let i = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name))?;
    i8::try_from(i + 1).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;
    use crate::read::{Item, TextReader};

    fn parse_as(format: &mut AccessLogFormat, file: &str, line: &str) -> Result<Option<Event>, String> {
        let source = Source::file(file);
        format.parse_line(line, EventStub { source: &source, line: 3 })
    }

    fn event(line: &str) -> Event {
        match parse_as(&mut AccessLogFormat::default(), "access.log", line) {
            Ok(Some(e)) => e,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn text(e: &Event, name: &str) -> Option<String> {
        e.get_exact(name).and_then(Value::as_text).map(|t| t.into_owned())
    }

    fn ts(s: &str) -> Option<Timestamp> {
        s.parse().ok()
    }

    #[test]
    fn combined_format_every_field() {
        let line = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?a=1&b=2 HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;
        let e = event(line);
        assert_eq!(e.format, "access");
        assert_eq!(&*e.raw, line);
        assert_eq!(e.position, Position::Line(3));
        assert_eq!(e.timestamp, ts("2000-10-10T20:55:36Z"));
        assert_eq!(text(&e, "client").as_deref(), Some("127.0.0.1"));
        assert_eq!(e.get_exact("ident"), None);
        assert_eq!(text(&e, "auth_user").as_deref(), Some("frank"));
        assert_eq!(text(&e, "request").as_deref(), Some("GET /apache_pb.gif?a=1&b=2 HTTP/1.0"));
        assert_eq!(e.get_exact("status"), Some(&Value::Int(200)));
        assert_eq!(e.get_exact("bytes"), Some(&Value::Int(2326)));
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("web.access"));
        assert_eq!(text(&e, "event.category").as_deref(), Some("web"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("127.0.0.1"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("frank"));
        assert_eq!(text(&e, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(text(&e, "url.original").as_deref(), Some("/apache_pb.gif?a=1&b=2"));
        assert_eq!(text(&e, "url.path").as_deref(), Some("/apache_pb.gif"));
        assert_eq!(text(&e, "url.query").as_deref(), Some("a=1&b=2"));
        assert_eq!(e.get_exact("url.domain"), None);
        assert_eq!(text(&e, "http.version").as_deref(), Some("1.0"));
        assert_eq!(e.get_exact("http.response.status_code"), Some(&Value::Int(200)));
        assert_eq!(e.get_exact("http.response.bytes"), Some(&Value::Int(2326)));
        assert_eq!(text(&e, "http.request.referrer").as_deref(), Some("http://www.example.com/start.html"));
        assert_eq!(text(&e, "user_agent.original").as_deref(), Some("Mozilla/4.08 [en] (Win98; I ;Nav)"));
    }

    #[test]
    fn common_format_and_failures() {
        let e = event(r#"192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] "POST /login HTTP/1.1" 401 -"#);
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(e.get_exact("user.name"), None);
        assert_eq!(e.get_exact("auth_user"), None);
        assert_eq!(e.get_exact("bytes"), None);
        assert_eq!(e.get_exact("http.response.bytes"), None);
        assert_eq!(e.get_exact("http.request.referrer"), None);
        assert_eq!(e.get_exact("user_agent.original"), None);
        assert_eq!(e.get_exact("url.query"), None);
        let e = event(r#"192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 399 0"#);
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        let e = event(r#"192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 500 0 "-" "-""#);
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(e.get_exact("referrer"), None);
        assert_eq!(e.get_exact("user_agent.original"), None);
    }

    #[test]
    fn odd_request_lines_are_kept_but_not_split() {
        let e = event(r#"192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] "-" 408 0 "-" "-""#);
        assert_eq!(text(&e, "request").as_deref(), Some("-"));
        assert_eq!(e.get_exact("http.request.method"), None);
        let e = event(r#"192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] "\x16\x03\x01\x00\xa5\x01" 400 157 "-" "-""#);
        assert_eq!(e.get_exact("url.original"), None);
        assert_eq!(e.get_exact("http.response.status_code"), Some(&Value::Int(400)));
        // An escaped quote inside the user agent.
        let e = event(r#"192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] "GET /x HTTP/1.1" 200 1 "-" "curl \"7\"" 0.004"#);
        assert_eq!(text(&e, "user_agent.original").as_deref(), Some(r#"curl \"7\""#));
        assert_eq!(e.get_exact("response_time"), Some(&Value::Float(0.004)));
    }

    #[test]
    fn ipv6_mapped_addresses_vhosts_and_absolute_urls() {
        let e = event(
            r#"::ffff:203.0.113.9 - - [01/Mar/2024:10:00:00 +0000] "GET http://evil.example:8080/x?y HTTP/1.1" 200 5 "-" "ua""#,
        );
        assert_eq!(text(&e, "client").as_deref(), Some("::ffff:203.0.113.9"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("203.0.113.9"));
        assert_eq!(text(&e, "url.domain").as_deref(), Some("evil.example"));
        assert_eq!(e.get_exact("url.port"), Some(&Value::Int(8080)));
        assert_eq!(text(&e, "url.path").as_deref(), Some("/x"));
        assert_eq!(text(&e, "url.query").as_deref(), Some("y"));
        let e = event(r#"2001:db8::5 - - [01/Mar/2024:10:00:00 +0000] "CONNECT mail.example.gov:443 HTTP/1.1" 200 0"#);
        assert_eq!(text(&e, "source.ip").as_deref(), Some("2001:db8::5"));
        assert_eq!(text(&e, "url.domain").as_deref(), Some("mail.example.gov"));
        assert_eq!(e.get_exact("url.path"), None);
        // Apache vhost_combined.
        let e = event(
            r#"www.example.gov:443 198.51.100.4 - - [01/Mar/2024:10:00:00 +0000] "GET /a HTTP/2.0" 200 5 "-" "ua""#,
        );
        assert_eq!(text(&e, "vhost").as_deref(), Some("www.example.gov:443"));
        assert_eq!(text(&e, "url.domain").as_deref(), Some("www.example.gov"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("198.51.100.4"));
        assert_eq!(text(&e, "http.version").as_deref(), Some("2.0"));
        // A host name instead of an address: no source.ip.
        let e = event(r#"client.example.org - - [01/Mar/2024:10:00:00 +0000] "GET /a HTTP/1.1" 200 5"#);
        assert_eq!(e.get_exact("source.ip"), None);
    }

    #[test]
    fn pveproxy_lines_are_proxmox_access() {
        let mut f = AccessLogFormat::default();
        let e = parse_as(
            &mut f,
            "logs/access.log",
            r#"::ffff:192.0.2.10 - root@pam [10/03/2024:14:02:11 +0100] "DELETE /api2/json/nodes/pve1/qemu/101 HTTP/1.1" 200 76"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(e.timestamp, ts("2024-03-10T13:02:11Z"));
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("proxmox.access"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("root@pam"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("192.0.2.10"));
        assert_eq!(text(&e, "http.request.method").as_deref(), Some("DELETE"));
        // Sticky: a later line without Proxmox paths is still pveproxy's.
        let e = parse_as(
            &mut f,
            "logs/access.log",
            r#"::ffff:192.0.2.10 - - [10/03/2024:14:02:12 +0100] "GET / HTTP/1.1" 200 10"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("proxmox.access"));
        // By file name, from the first line.
        let mut f = AccessLogFormat::default();
        let e = parse_as(
            &mut f,
            "/var/log/pveproxy/access.log",
            r#"192.0.2.10 - - [10/03/2024:14:02:12 +0100] "GET / HTTP/1.1" 200 10"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("proxmox.access"));
    }

    #[test]
    fn zimbra_access_logs() {
        // Zimbra's nginx proxy log: address:port, two spaces, an absolute URL, upstream and server.
        let line = r#"203.0.113.7:51234 - - [01/Mar/2024:10:15:02 +0000]  "POST https://mail.example.gov/service/soap/AuthRequest HTTP/1.1" 200 1234 "-" "Mozilla/5.0" "10.0.0.2:8080" "10.0.0.1:443""#;
        let e = event(line);
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("zimbra.access"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("203.0.113.7"));
        assert_eq!(e.get_exact("source.port"), Some(&Value::Int(51234)));
        assert_eq!(text(&e, "url.domain").as_deref(), Some("mail.example.gov"));
        assert_eq!(text(&e, "url.path").as_deref(), Some("/service/soap/AuthRequest"));
        assert_eq!(text(&e, "upstream_addr").as_deref(), Some("10.0.0.2:8080"));
        assert_eq!(text(&e, "server_addr").as_deref(), Some("10.0.0.1:443"));
        // Jetty's request log with latency; recognised by the file name.
        let mut f = AccessLogFormat::default();
        let e = parse_as(
            &mut f,
            "/opt/zimbra/log/access_log.2024-03-01",
            r#"10.0.0.1 - - [01/Mar/2024:10:15:02 +0000] "GET /favicon.ico HTTP/1.1" 404 0 "-" "Mozilla/5.0" 3"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("zimbra.access"));
        assert_eq!(e.get_exact("response_time"), Some(&Value::Int(3)));
        // Not Zimbra: an ordinary path stays web.access.
        let e = event(r#"10.0.0.1 - - [01/Mar/2024:10:15:02 +0000] "GET /services/soap HTTP/1.1" 200 1"#);
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("web.access"));
    }

    #[test]
    fn malformed_lines_are_errors() {
        let mut f = AccessLogFormat::default();
        for (line, want) in [
            ("just words here", "expected HOST IDENT AUTHUSER"),
            ("a b c d e [x]", "expected HOST IDENT AUTHUSER"),
            ("a b [01/Mar/2024:10:15:02 +0000] \"GET / HTTP/1.1\" 200 1", "found 2 field(s)"),
            ("a - - [01/Mar/2024:10:15:02 +0000 \"GET / HTTP/1.1\" 200 1", "not closed"),
            ("a - - [32/Mar/2024:10:15:02 +0000] \"GET / HTTP/1.1\" 200 1", "invalid time"),
            ("a - - [01/Mar/2024:10:15:02 +0000] GET / HTTP/1.1 200 1", "quoted request"),
            ("a - - [01/Mar/2024:10:15:02 +0000] \"GET / HTTP/1.1\" OK 1", "invalid status"),
            ("a - - [01/Mar/2024:10:15:02 +0000] \"GET / HTTP/1.1\" 200 lots", "invalid size"),
            ("a - - [01/Mar/2024:10:15:02 +0000] \"GET / HTTP/1.1\" 200 1 \"ref", "unclosed quote"),
        ] {
            match parse_as(&mut f, "x.log", line) {
                Err(m) => assert!(m.contains(want), "{line}: {m}"),
                other => panic!("{line} gave {other:?}"),
            }
        }
    }

    #[test]
    fn fixtures_through_text_reader() {
        for (name, data, events, diagnostics, dataset) in [
            (
                "access-combined.log",
                &include_bytes!("../../testdata/access/access-combined.log")[..],
                6,
                1,
                "web.access",
            ),
            (
                "pveproxy-access.log",
                &include_bytes!("../../testdata/access/pveproxy-access.log")[..],
                5,
                0,
                "proxmox.access",
            ),
            (
                "zimbra-nginx.access.log",
                &include_bytes!("../../testdata/access/zimbra-nginx.access.log")[..],
                4,
                0,
                "zimbra.access",
            ),
        ] {
            let mut got = Vec::new();
            let mut diags = Vec::new();
            for item in TextReader::new(data, AccessLogFormat::default(), Source::file(name)) {
                match item {
                    Item::Event(e) => got.push(e),
                    Item::Diagnostic(d) => diags.push(d),
                }
            }
            assert_eq!(got.len(), events, "{name}");
            assert_eq!(diags.len(), diagnostics, "{name}: {diags:?}");
            assert!(got.iter().all(|e| text(e, "event.dataset").as_deref() == Some(dataset)), "{name}");
            if name == "access-combined.log" {
                assert_eq!(diags[0].position, Some(Position::Line(4)));
                assert!(diags[0].message.contains("invalid status"));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in r#"[ -~\u{e9}]{0,20}( - - \[[0-9/A-Za-z: +-]{0,30}\] "[ -~]{0,20}" [0-9]{0,4} [0-9-]{0,4}( "[ -~]{0,10}")*)?"#) {
            let _ = parse_as(&mut AccessLogFormat::default(), "x.log", &line);
        }
    }
}
