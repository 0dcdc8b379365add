//! E-mail messages (RFC 5322, `.eml` files): one event per message, from its header block.
//!
//! Only the header block is read (up to [`MAX_HEADER_BYTES`]); the body is not. Every header
//! becomes a field of its own name (the spelling of its first occurrence; a list when the
//! header is repeated, in message order, as `Received` is), unfolded, with RFC 2047
//! encoded-words decoded in the headers that carry text (`Subject`, `From`, `To` …). The
//! event's raw record is the header block.
//!
//! Normalized fields (`docs/fields.md`): `event.dataset` `email.message`, `event.category`
//! `email`, `email.from.address` / `email.from.name` / `email.from.domain` (`From:`),
//! `email.sender.address` / `email.sender.domain` (`Return-Path:`), `email.to.address`,
//! `email.cc.address`, `email.reply_to.address`, `email.subject`, `email.message_id`,
//! `email.auth.spf` / `email.auth.dkim` / `email.auth.dmarc` and `email.dkim.domain` from the
//! topmost `Authentication-Results` (the receiving server's; `Received-SPF` when it has no
//! `spf=`), `email.origin.ip`, `email.received.count`; the timestamp from `Date:` (else the
//! topmost `Received:`). Addresses are lower case.
//!
//! `email.origin.ip` is the client that handed the message to the receiving organisation. The
//! `Received:` chain is walked from the top, skipping hops from private, loopback and
//! link-local addresses. Large providers relay inside their own networks over public
//! addresses (Microsoft 365 hops between `2603:…` hosts); when the receiving server recorded
//! the client it checked SPF for (`Authentication-Results: spf=… (sender IP is …)`,
//! `Received-SPF: … client-ip=…`) and that address is one of the chain's hops, that hop is
//! the origin.

use std::io::BufRead;
use std::net::IpAddr;
use std::sync::Arc;

use super::{Diagnostic, Item};
use crate::event::{Event, Position, Product, Source};
use crate::value::Value;

/// How much of a message is read: its header block, up to this size.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// Header fields read from one message (real messages carry tens, rarely a few hundred);
/// the rest are reported and skipped, so that a pathological block costs little.
pub const MAX_HEADERS: usize = 2000;

/// Headers whose values are text that may hold RFC 2047 encoded-words.
const TEXT_HEADERS: &[&str] = &[
    "subject",
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "sender",
    "comments",
    "keywords",
    "thread-topic",
    "disposition-notification-to",
];

/// Header names that a message's first line may carry (besides `X-…`).
const FIRST_HEADERS: &[&str] = &[
    "received",
    "return-path",
    "delivered-to",
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "reply-to",
    "sender",
    "dkim-signature",
    "domainkey-signature",
    "authentication-results",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
    "received-spf",
    "content-type",
    "thread-topic",
    "thread-index",
    "in-reply-to",
    "references",
    "user-agent",
    "envelope-to",
    "x-original-to",
];

/// Headers that only e-mail carries, one of which a message must have.
const MAIL_HEADERS: &[&str] = &[
    "received",
    "return-path",
    "delivered-to",
    "from",
    "to",
    "subject",
    "message-id",
    "mime-version",
    "dkim-signature",
    "authentication-results",
    "received-spf",
    "arc-seal",
    "reply-to",
];

/// Whether the first bytes of a file look like an e-mail message: header fields from the first
/// line on (a known name or an `X-` name first), at least two of them before the end of the
/// header block or of `head`, one of them a header only mail has.
pub fn looks_like_eml(head: &[u8]) -> bool {
    let mut headers = 0;
    let mut mail = false;
    for (i, line) in head.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if i == 0 {
                return false;
            }
            continue;
        }
        let Some(name) = field_name(line) else {
            if i == 0 {
                return false;
            }
            break;
        };
        let lower = name.to_ascii_lowercase();
        if i == 0 && !(FIRST_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-")) {
            return false;
        }
        headers += 1;
        mail |= MAIL_HEADERS.contains(&lower.as_str());
        if headers >= 4 && mail {
            break;
        }
    }
    headers >= 2 && mail
}

/// The name of a header line (`Name:` or the obsolete `Name :`), if it is one.
fn field_name(line: &[u8]) -> Option<&str> {
    let colon = memchr::memchr(b':', line)?;
    let name = line[..colon].trim_ascii_end();
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { std::str::from_utf8(name).ok() } else { None }
}

/// Reads the header block of one message from `reader` (up to [`MAX_HEADER_BYTES`]) and
/// yields its event, then any diagnostics.
pub struct EmlReader<R> {
    reader: Option<R>,
    source: Arc<Source>,
    items: std::vec::IntoIter<Item>,
}

impl<R: BufRead> EmlReader<R> {
    pub fn new(reader: R, source: Arc<Source>) -> Self {
        EmlReader { reader: Some(reader), source, items: Vec::new().into_iter() }
    }
}

impl<R: BufRead> Iterator for EmlReader<R> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if let Some(reader) = self.reader.take() {
            self.items = read_message(reader, &self.source).into_iter();
        }
        self.items.next()
    }
}

/// Reads one message's header block from `reader` and parses it (see [`parse_message`]).
pub fn read_message<R: BufRead>(mut reader: R, source: &Arc<Source>) -> Vec<Item> {
    let mut block = Vec::new();
    let mut line = Vec::new();
    let mut lines = 0u64;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                return vec![Item::Diagnostic(Diagnostic {
                    source: source.name.clone(),
                    position: Some(Position::Line(lines + 1)),
                    message: format!("read error: {e}"),
                })];
            }
        }
        lines += 1;
        let end = line.iter().rposition(|b| !matches!(b, b'\r' | b'\n')).map_or(0, |p| p + 1);
        let blank = line[..end].is_empty() || (lines == 1 && &line[..end] == b"\xEF\xBB\xBF");
        block.extend_from_slice(&line);
        if (blank && lines > 1) || block.len() > MAX_HEADER_BYTES {
            break;
        }
    }
    parse_message(&block, source)
}

/// One header as it appears in the message.
struct Header<'a> {
    name: &'a str,
    /// The unfolded value (line breaks of folded lines removed, the whitespace kept), trimmed.
    value: String,
}

/// Parses a message (only its header block is looked at, up to [`MAX_HEADER_BYTES`]): the
/// event, followed by diagnostics for lines that could not be read as headers. A message
/// without a single header is one diagnostic.
pub fn parse_message(bytes: &[u8], source: &Arc<Source>) -> Vec<Item> {
    let diagnostic = |line: u64, message: String| {
        Item::Diagnostic(Diagnostic { source: source.name.clone(), position: Some(Position::Line(line)), message })
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut truncated = false;
    let limit = if bytes.len() > MAX_HEADER_BYTES {
        truncated = true;
        // Cut at the last line end within the limit.
        memchr::memrchr(b'\n', &bytes[..MAX_HEADER_BYTES]).map_or(MAX_HEADER_BYTES, |p| p + 1)
    } else {
        bytes.len()
    };
    let text = &bytes[..limit];

    // Each header: its name and the pieces of its value (the rest of its first line, then its
    // continuation lines).
    let mut raw_headers: Vec<(&str, Vec<&[u8]>)> = Vec::new();
    let mut block_end = text.len();
    let mut diagnostics = Vec::new();
    let mut offset = 0;
    let mut number = 0u64;
    let mut ended = false;
    for raw_line in text.split_inclusive(|b| *b == b'\n') {
        number += 1;
        let line = raw_line.strip_suffix(b"\n").unwrap_or(raw_line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let start = offset;
        offset += raw_line.len();
        if line.is_empty() {
            block_end = start;
            ended = true;
            break;
        }
        if number == 1 && line.starts_with(b"From ") {
            // An mbox separator line ("From sender date"), not a header.
            continue;
        }
        if matches!(line[0], b' ' | b'\t') {
            match raw_headers.last_mut() {
                Some((_, pieces)) => pieces.push(line),
                None => diagnostics.push(diagnostic(number, "continuation line before any header".into())),
            }
            continue;
        }
        match (field_name(line), memchr::memchr(b':', line)) {
            (Some(_), Some(_)) if raw_headers.len() >= MAX_HEADERS => {
                diagnostics
                    .push(diagnostic(number, format!("more than {MAX_HEADERS} header fields; the rest are not read")));
                ended = true;
                break;
            }
            (Some(name), Some(colon)) => raw_headers.push((name, vec![&line[colon + 1..]])),
            _ => {
                // Not a header: the header block ends here without its blank line.
                block_end = start;
                ended = true;
                if !raw_headers.is_empty() {
                    diagnostics.push(diagnostic(
                        number,
                        format!("not a header field ({}); the header block ends here", excerpt(line)),
                    ));
                }
                break;
            }
        }
    }
    if raw_headers.is_empty() {
        let first = text.split(|b| *b == b'\n').next().unwrap_or_default();
        return vec![diagnostic(1, format!("not an e-mail message: no header fields ({})", excerpt(first)))];
    }
    if truncated && !ended {
        diagnostics.push(diagnostic(
            number,
            format!("header block longer than {MAX_HEADER_BYTES} bytes; the rest is not read"),
        ));
    }
    let parsed: Vec<Header<'_>> = raw_headers
        .into_iter()
        .map(|(name, pieces)| {
            let mut value = String::new();
            for piece in pieces {
                value.push_str(&decode_8bit(piece));
            }
            Header { name, value: value.trim().to_owned() }
        })
        .collect();

    let mut event = Event::new(source.clone(), Position::Line(1), Product::Other, "eml");
    event.raw = String::from_utf8_lossy(text[..block_end].trim_ascii_end()).into_owned().into_boxed_str();
    push_headers(&mut event, &parsed);
    normalize(&mut event, &parsed);

    let mut items = vec![Item::Event(Box::new(event))];
    items.extend(diagnostics);
    items
}

/// A header's bytes as text: UTF-8 (RFC 6532) when valid, else Windows-1252 (8-bit headers
/// from old mailers).
fn decode_8bit(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => std::borrow::Cow::Owned(bytes.iter().map(|&b| cp1252(b)).collect()),
    }
}

fn excerpt(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    match s.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.into_owned(),
    }
}

/// Every header as a field of its own name; repeated headers as a list.
fn push_headers(event: &mut Event, headers: &[Header<'_>]) {
    let mut order: Vec<(&str, Vec<Value>)> = Vec::new();
    for h in headers {
        let lower = h.name.to_ascii_lowercase();
        let value = if TEXT_HEADERS.contains(&lower.as_str()) { decode_words(&h.value) } else { h.value.clone() };
        match order.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(h.name)) {
            Some((_, values)) => values.push(Value::str(value)),
            None => order.push((h.name, vec![Value::str(value)])),
        }
    }
    for (name, mut values) in order {
        let value = if values.len() == 1 { values.pop().unwrap_or(Value::Null) } else { Value::List(values) };
        event.set_default(name, value);
    }
}

fn first<'h>(headers: &'h [Header<'_>], name: &str) -> Option<&'h str> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

fn all<'h>(headers: &'h [Header<'_>], name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
    headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

fn set(event: &mut Event, name: &str, value: &str) {
    event.set_default(name, Value::str(value));
}

fn set_addresses(event: &mut Event, name: &str, mailboxes: &[Mailbox]) {
    let mut addresses: Vec<String> = Vec::new();
    for m in mailboxes {
        if !addresses.contains(&m.address) {
            addresses.push(m.address.clone());
        }
    }
    if let Some(v) = super::cloud::one_or_list(addresses) {
        event.set_default(name, v);
    }
}

fn normalize(event: &mut Event, headers: &[Header<'_>]) {
    set(event, "event.dataset", "email.message");
    set(event, "event.category", "email");

    if let Some(from) = first(headers, "From") {
        let boxes = parse_addresses(from);
        set_addresses(event, "email.from.address", &boxes);
        if let Some(b) = boxes.first() {
            if let Some(name) = &b.name {
                set(event, "email.from.name", name);
                // "ceo@ministry.example" <someone@elsewhere.example>: an address in the display
                // name, the oldest trick to pass as someone else.
                if let Some(addr) = address_in_text(name) {
                    set(event, "email.from.name_address", &addr);
                }
            }
            if let Some(domain) = domain_of(&b.address) {
                set(event, "email.from.domain", domain);
            }
        }
    }
    if let Some(b) = first(headers, "Return-Path").and_then(|v| parse_addresses(v).into_iter().next()) {
        set(event, "email.sender.address", &b.address);
        if let Some(domain) = domain_of(&b.address) {
            set(event, "email.sender.domain", domain);
        }
    }
    for (header, field) in
        [("To", "email.to.address"), ("Cc", "email.cc.address"), ("Reply-To", "email.reply_to.address")]
    {
        let boxes: Vec<Mailbox> = all(headers, header).flat_map(parse_addresses).collect();
        set_addresses(event, field, &boxes);
        if header == "To" {
            // The recipients' domains, for rules that compare them with the sender's.
            let mut domains: Vec<Value> = Vec::new();
            for d in boxes.iter().filter_map(|b| domain_of(&b.address)) {
                if !domains.iter().any(|v| v.as_text().as_deref() == Some(d)) {
                    domains.push(Value::str(d));
                }
            }
            match domains.len() {
                0 => {}
                1 => event.set_default("email.to.domain", domains.remove(0)),
                _ => event.set_default("email.to.domain", Value::List(domains)),
            }
        }
    }
    if let Some(subject) = first(headers, "Subject") {
        set(event, "email.subject", &decode_words(subject));
    }
    if let Some(id) = first(headers, "Message-ID") {
        let id = id.trim().trim_start_matches('<').trim_end_matches('>').trim();
        if !id.is_empty() {
            set(event, "email.message_id", id);
        }
    }

    let results = first(headers, "Authentication-Results").map(parse_auth_results).unwrap_or_default();
    let spf = results.iter().find(|r| r.method == "spf").map(|r| r.result.clone()).or_else(|| {
        let received_spf = first(headers, "Received-SPF")?;
        let word = received_spf.split(|c: char| c.is_whitespace() || c == '(' || c == ';').next()?;
        let word = word.to_ascii_lowercase();
        SPF_RESULTS.contains(&word.as_str()).then_some(word)
    });
    if let Some(spf) = spf {
        set(event, "email.auth.spf", &spf);
    }
    // Several signatures: one that passed is what counts.
    let dkim = results
        .iter()
        .find(|r| r.method == "dkim" && r.result == "pass")
        .or_else(|| results.iter().find(|r| r.method == "dkim"));
    if let Some(d) = dkim {
        set(event, "email.auth.dkim", &d.result);
    }
    if let Some(d) = results.iter().find(|r| r.method == "dmarc") {
        set(event, "email.auth.dmarc", &d.result);
    }
    let dkim_domain = dkim
        .and_then(|d| d.property("header.d").or_else(|| d.property("header.i").and_then(domain_of)))
        .map(str::to_ascii_lowercase)
        .filter(|d| !d.is_empty() && d != "none")
        .or_else(|| first(headers, "DKIM-Signature").and_then(dkim_signature_domain));
    if let Some(domain) = dkim_domain {
        set(event, "email.dkim.domain", &domain);
    }

    let received: Vec<&str> = all(headers, "Received").collect();
    event.set_default("email.received.count", Value::Int(received.len() as i64));
    let boundary = first(headers, "Authentication-Results")
        .and_then(sender_ip_comment)
        .or_else(|| first(headers, "Received-SPF").and_then(received_spf_client_ip));
    if let Some(ip) = origin_ip(&received, boundary) {
        set(event, "email.origin.ip", &ip.to_string());
    }

    event.timestamp = first(headers, "Date")
        .and_then(parse_date)
        .or_else(|| received.first().and_then(|r| r.rsplit_once(';')).and_then(|(_, d)| parse_date(d)));
}

const SPF_RESULTS: &[&str] = &["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "error"];

/// A mailbox of an address header: the address (lower case) and its display name.
#[derive(Debug, PartialEq)]
struct Mailbox {
    name: Option<String>,
    address: String,
}

/// The first token of `text` that looks like an e-mail address (`local@domain.tld`), lower case.
fn address_in_text(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '(' | ')' | ',' | ';' | '[' | ']'))
        .map(|t| t.trim_matches(|c: char| !c.is_alphanumeric()))
        .find(|t| {
            let Some((local, domain)) = t.split_once('@') else { return false };
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-')
        })
        .map(|t| t.to_lowercase())
}

fn domain_of(address: &str) -> Option<&str> {
    let domain = address.rsplit_once('@')?.1.trim_end_matches(['.', '>']);
    (!domain.is_empty()).then_some(domain)
}

/// The mailboxes of an address list (`"Name, Inc" <a@b>, c@d (Comment), Group: e@f;`).
/// Entries without an `@` (`undisclosed-recipients:;`, `<>`) are left out.
fn parse_addresses(value: &str) -> Vec<Mailbox> {
    let mut out = Vec::new();
    let mut item = String::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut angle = false;
    let mut comment = 0usize;
    for c in value.chars() {
        if escaped {
            escaped = false;
            item.push(c);
            continue;
        }
        match c {
            '\\' if quoted || comment > 0 => {
                escaped = true;
                item.push(c);
            }
            '"' if comment == 0 => {
                quoted = !quoted;
                item.push(c);
            }
            '(' if !quoted => {
                comment += 1;
                item.push(c);
            }
            ')' if !quoted && comment > 0 => {
                comment -= 1;
                item.push(c);
            }
            '<' if !quoted && comment == 0 => {
                angle = true;
                item.push(c);
            }
            '>' if !quoted && comment == 0 => {
                angle = false;
                item.push(c);
            }
            ',' | ';' if !quoted && comment == 0 && !angle => {
                out.extend(mailbox(&item));
                item.clear();
            }
            ':' if !quoted && comment == 0 && !angle => {
                // A group's name ends here ("Group: a@b, c@d;").
                item.clear();
            }
            _ => item.push(c),
        }
    }
    out.extend(mailbox(&item));
    out
}

fn mailbox(item: &str) -> Option<Mailbox> {
    let (address, name) = match (item.rfind('<'), item.rfind('>')) {
        (Some(open), close) => {
            let end = close.filter(|c| *c > open).unwrap_or(item.len());
            let inner = &item[open + 1..end];
            // Obsolete source routes: <@relay1,@relay2:user@host>.
            let inner = inner.rsplit(':').next().unwrap_or(inner);
            (inner.trim().to_owned(), display_name(&item[..open]))
        }
        (None, _) => {
            let (bare, comments) = strip_comments(item);
            // An addr-spec has no spaces; of words before an address ("Name a@b", which
            // senders write without quotes or brackets), the one with the `@`.
            let bare = bare.split_whitespace().find(|w| w.contains('@')).unwrap_or_default();
            (bare.to_owned(), display_name(&comments))
        }
    };
    let address = address.trim_matches(|c: char| c.is_whitespace() || c == '"').to_lowercase();
    address.contains('@').then_some(Mailbox { name, address })
}

fn display_name(raw: &str) -> Option<String> {
    let (text, _) = strip_comments(raw);
    let text = text.trim();
    let text = if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        let inner = &text[1..text.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut escaped = false;
        for c in inner.chars() {
            if escaped || c != '\\' {
                out.push(c);
                escaped = false;
            } else {
                escaped = true;
            }
        }
        out
    } else {
        text.to_owned()
    };
    let name = decode_words(text.trim());
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The text with `(comments)` removed (quoted strings kept whole), and the comments' text.
fn strip_comments(s: &str) -> (String, String) {
    let mut text = String::with_capacity(s.len());
    let mut comments = String::new();
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
            if depth > 0 {
                comments.push(c)
            } else {
                text.push(c)
            }
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    text.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                text.push(c);
            }
            '(' if !quoted => {
                if depth > 0 {
                    comments.push(c);
                }
                depth += 1;
            }
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                if depth > 0 {
                    comments.push(c);
                } else {
                    comments.push(' ');
                    text.push(' ');
                }
            }
            _ if depth > 0 => comments.push(c),
            _ => text.push(c),
        }
    }
    (text, comments)
}

/// One result of an `Authentication-Results` header (RFC 8601): `method=result` and the
/// properties that follow it (`smtp.mailfrom=…`, `header.d=…`).
#[derive(Debug, PartialEq)]
struct AuthResult {
    method: String,
    result: String,
    properties: Vec<(String, String)>,
}

impl AuthResult {
    fn property(&self, name: &str) -> Option<&str> {
        self.properties.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The results of one `Authentication-Results` header. The leading authserv-id is optional
/// here: some receivers (Microsoft 365) start with the first result.
fn parse_auth_results(value: &str) -> Vec<AuthResult> {
    let (text, _) = strip_comments(value);
    let mut out: Vec<AuthResult> = Vec::new();
    for part in text.split(';') {
        let mut current: Option<usize> = None;
        for token in part.split_whitespace() {
            let Some((key, val)) = token.split_once('=') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            let val = val.trim().trim_matches('"');
            if key.is_empty() {
                continue;
            }
            let is_method = !key.contains('.') && !matches!(key.as_str(), "reason" | "action");
            if is_method {
                // `dkim/1=pass`: a method may carry a version.
                let method = key.split('/').next().unwrap_or(&key).to_owned();
                out.push(AuthResult { method, result: val.to_ascii_lowercase(), properties: Vec::new() });
                current = Some(out.len() - 1);
            } else if let Some(i) = current {
                out[i].properties.push((key, val.to_owned()));
            }
        }
    }
    out
}

/// Microsoft 365's note of the connecting client: `spf=pass (sender IP is 192.0.2.1)`.
fn sender_ip_comment(value: &str) -> Option<IpAddr> {
    let lower = value.to_ascii_lowercase();
    let at = lower.find("sender ip is ")? + "sender ip is ".len();
    let ip = value[at..].split(|c: char| c.is_whitespace() || c == ')' || c == ';').next()?;
    ip.parse().ok()
}

/// `Received-SPF: … client-ip=192.0.2.1; …`.
fn received_spf_client_ip(value: &str) -> Option<IpAddr> {
    let lower = value.to_ascii_lowercase();
    let at = lower.find("client-ip=")? + "client-ip=".len();
    let ip = value[at..].split(|c: char| c.is_whitespace() || c == ';' || c == ')').next()?;
    ip.trim_matches('"').parse().ok()
}

/// The `d=` tag of a `DKIM-Signature` header.
fn dkim_signature_domain(value: &str) -> Option<String> {
    value.split(';').find_map(|tag| {
        let (name, v) = tag.split_once('=')?;
        let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
        (name.trim().eq_ignore_ascii_case("d") && !v.is_empty()).then(|| v.to_ascii_lowercase())
    })
}

/// The IP addresses of a `Received:` header's `from` clause: those in comments (the address
/// the receiving server saw: `(host [192.0.2.1])`, `(192.0.2.1)`) first, then the others (the
/// name the client gave, `from [192.0.2.1]`).
fn received_from_ips(value: &str) -> Vec<IpAddr> {
    let value = value.rsplit_once(';').map_or(value, |(v, _)| v);
    let trimmed = value.trim_start();
    if !trimmed.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("from ")) {
        return Vec::new();
    }
    let mut in_comment = Vec::new();
    let mut outside = Vec::new();
    let mut depth = 0usize;
    let mut token = String::new();
    let flush = |token: &mut String, depth: usize, in_comment: &mut Vec<IpAddr>, outside: &mut Vec<IpAddr>| {
        if let Some(ip) = ip_token(token) {
            if depth > 0 { in_comment.push(ip) } else { outside.push(ip) }
        }
        token.clear();
    };
    let mut words = 0usize;
    for c in trimmed.chars() {
        match c {
            '(' => {
                flush(&mut token, depth, &mut in_comment, &mut outside);
                depth += 1;
            }
            ')' => {
                flush(&mut token, depth, &mut in_comment, &mut outside);
                depth = depth.saturating_sub(1);
            }
            c if c.is_whitespace() || matches!(c, '[' | ']' | ',' | '=' | '<' | '>') => {
                if depth == 0 && token.eq_ignore_ascii_case("by") && words > 1 {
                    break;
                }
                if !token.is_empty() && depth == 0 {
                    words += 1;
                }
                flush(&mut token, depth, &mut in_comment, &mut outside);
            }
            c => token.push(c),
        }
    }
    flush(&mut token, depth, &mut in_comment, &mut outside);
    in_comment.extend(outside);
    in_comment
}

fn ip_token(token: &str) -> Option<IpAddr> {
    let t = token.trim_end_matches('.');
    let t = t.get(..5).filter(|p| p.eq_ignore_ascii_case("ipv6:")).map_or(t, |_| &t[5..]);
    let t = t.split('%').next().unwrap_or(t);
    if t.len() < 2 || !(t.contains('.') || t.contains(':')) {
        return None;
    }
    t.parse().ok()
}

/// Private, loopback, link-local, unspecified and shared (CGNAT) addresses: hops inside an
/// organisation.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback() || v6.is_unspecified() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// The first external hop of the `Received:` chain (see the module documentation).
fn origin_ip(received: &[&str], boundary: Option<IpAddr>) -> Option<IpAddr> {
    let hops: Vec<Option<IpAddr>> =
        received.iter().map(|r| received_from_ips(r).into_iter().find(|ip| !is_internal(*ip))).collect();
    if let Some(b) = boundary.filter(|b| !is_internal(*b))
        && hops.contains(&Some(b))
    {
        return Some(b);
    }
    hops.into_iter().flatten().next()
}

/// Decodes RFC 2047 encoded-words (`=?utf-8?B?…?=`, `=?iso-8859-1?Q?…?=`) in `s`. Whitespace
/// between adjacent encoded-words is dropped; adjacent words in one charset are decoded
/// together (a character may be split across them). Words in an unknown charset, or whose
/// bytes do not decode, are kept as written.
pub fn decode_words(s: &str) -> String {
    if !s.contains("=?") {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut run: Option<Run> = None;
    let mut space = String::new();
    let mut after_word = false;
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c == '='
            && let Some((word, after)) = encoded_word(rest)
        {
            let raw = &rest[..rest.len() - after.len()];
            match (word, &mut run) {
                (Some((cs, bytes)), Some(r)) if after_word && r.charset.eq_ignore_ascii_case(&cs) => {
                    r.bytes.extend(bytes);
                    r.raw.push_str(&space);
                    r.raw.push_str(raw);
                }
                (Some((charset, bytes)), _) => {
                    flush(&mut out, run.take());
                    if !after_word {
                        out.push_str(&space);
                    }
                    run = Some(Run { charset, bytes, raw: raw.to_owned() });
                    after_word = true;
                }
                (None, _) => {
                    flush(&mut out, run.take());
                    out.push_str(&space);
                    out.push_str(raw);
                    after_word = false;
                }
            }
            space.clear();
            rest = after;
            continue;
        }
        if c.is_whitespace() {
            space.push(c);
        } else {
            flush(&mut out, run.take());
            out.push_str(&space);
            space.clear();
            out.push(c);
            after_word = false;
        }
        rest = &rest[c.len_utf8()..];
    }
    flush(&mut out, run.take());
    out.push_str(&space);
    out
}

/// Adjacent encoded-words in one charset: their bytes, and their text as written.
struct Run {
    charset: String,
    bytes: Vec<u8>,
    raw: String,
}

fn flush(out: &mut String, run: Option<Run>) {
    if let Some(run) = run {
        match decode_charset(&run.charset, &run.bytes) {
            Some(text) => out.push_str(&text),
            None => out.push_str(&run.raw),
        }
    }
}

/// The longest encoded-word looked for (RFC 2047 allows 75 characters; some mailers write
/// longer ones).
const MAX_WORD: usize = 1024;

/// Reads one encoded-word at the start of `s`: its charset and bytes, or `None` for a word
/// that is well delimited but does not decode (bad base64, unknown encoding); then the rest of
/// `s`. `None` when `s` does not start with an encoded-word.
#[allow(clippy::type_complexity)]
fn encoded_word(s: &str) -> Option<(Option<(String, Vec<u8>)>, &str)> {
    let body = s.strip_prefix("=?")?;
    let window = &body.as_bytes()[..body.len().min(MAX_WORD)];
    let q1 = memchr::memchr(b'?', window)?;
    let q2 = q1 + 1 + memchr::memchr(b'?', &window[q1 + 1..])?;
    let end = q2 + 1 + memchr::memmem::find(&window[q2 + 1..], b"?=")?;
    let charset = &body[..q1];
    let encoding = &body[q1 + 1..q2];
    let payload = &body[q2 + 1..end];
    let rest = &body[end + 2..];
    if charset.is_empty() || charset.contains(char::is_whitespace) || payload.contains(char::is_whitespace) {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => base64(payload),
        "Q" | "q" => q_decode(payload),
        _ => None,
    };
    // RFC 2231 language suffix: utf-8*en.
    let charset = charset.split('*').next().unwrap_or(charset).to_owned();
    Some((bytes.map(|b| (charset, b)), rest))
}

fn base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn q_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

/// Decodes bytes in the charsets seen in mail headers that need no tables beyond one small
/// one: UTF-8, US-ASCII, ISO-8859-1, ISO-8859-15 and Windows-1252. `None` for others, or
/// for UTF-8 that is not valid.
fn decode_charset(charset: &str, bytes: &[u8]) -> Option<String> {
    let cs = charset.to_ascii_lowercase().replace('_', "-");
    match cs.as_str() {
        "utf-8" | "utf8" => String::from_utf8(bytes.to_vec()).ok(),
        "us-ascii" | "ascii" => {
            if bytes.is_ascii() {
                String::from_utf8(bytes.to_vec()).ok()
            } else {
                Some(bytes.iter().map(|&b| cp1252(b)).collect())
            }
        }
        "iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" | "l1" => {
            Some(bytes.iter().map(|&b| char::from(b)).collect())
        }
        "iso-8859-15" | "iso8859-15" | "latin-9" | "latin9" => Some(bytes.iter().map(|&b| latin9(b)).collect()),
        "windows-1252" | "cp1252" => Some(bytes.iter().map(|&b| cp1252(b)).collect()),
        _ => None,
    }
}

/// Windows-1252: ISO-8859-1 with printable characters in 0x80–0x9F.
fn cp1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž', '\u{8F}', '\u{90}', '‘',
        '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}', 'ž', 'Ÿ',
    ];
    if (0x80..0xA0).contains(&b) { HIGH[usize::from(b - 0x80)] } else { char::from(b) }
}

/// ISO-8859-15: ISO-8859-1 with eight characters replaced.
fn latin9(b: u8) -> char {
    match b {
        0xA4 => '€',
        0xA6 => 'Š',
        0xA8 => 'š',
        0xB4 => 'Ž',
        0xB8 => 'ž',
        0xBC => 'Œ',
        0xBD => 'œ',
        0xBE => 'Ÿ',
        b => char::from(b),
    }
}

/// An RFC 5322 date (`Wed, 20 Sep 2023 10:49:41 +0000 (UTC)`), also in the obsolete forms:
/// two- and three-digit years, zone names (`GMT`, `EST` …; military letters and unknown names
/// as UTC), no seconds, no zone (UTC), asctime order (`Wed Sep 20 10:49:41 2023`); and
/// RFC 3339, which some senders write.
pub fn parse_date(s: &str) -> Option<jiff::Timestamp> {
    let (text, _) = strip_comments(s);
    let mut numbers = Vec::new();
    let mut month = None;
    let mut time = None;
    let mut offset = None;
    for t in text.split(|c: char| c.is_whitespace() || c == ',').filter(|t| !t.is_empty()) {
        if t.contains(':') && time.is_none() {
            time = Some(parse_time(t));
        } else if t.bytes().all(|b| b.is_ascii_digit()) {
            numbers.push(t);
        } else if time.is_none() && month.is_none() && month_number(t).is_some() {
            month = month_number(t);
        } else if time.is_some() && offset.is_none() {
            offset = zone_offset(t);
        }
    }
    let parsed = (|| {
        let (h, mi, sec) = time??;
        let (day, year) = match numbers.as_slice() {
            [a, b, ..] if a.len() == 4 => (*b, *a),
            [a, b, ..] => (*a, *b),
            _ => return None,
        };
        let n: i16 = year.parse().ok()?;
        let year = match year.len() {
            1 | 2 if n < 50 => 2000 + n,
            1..=3 => 1900 + n,
            _ => n,
        };
        let day: i8 = day.parse().ok()?;
        let dt = jiff::civil::DateTime::new(year, month?, day, h, mi, sec.min(59), 0).ok()?;
        let offset = jiff::tz::Offset::from_seconds(offset.unwrap_or(0)).ok()?;
        dt.to_zoned(jiff::tz::TimeZone::fixed(offset)).ok().map(|z| z.timestamp())
    })();
    parsed.or_else(|| s.trim().parse::<jiff::Timestamp>().ok())
}

fn parse_time(t: &str) -> Option<(i8, i8, i8)> {
    let mut parts = t.split(':');
    let h: i8 = parts.next()?.parse().ok()?;
    let m: i8 = parts.next()?.parse().ok()?;
    let s: i8 = match parts.next() {
        Some(s) => s.split('.').next()?.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() || !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..=60).contains(&s) {
        return None;
    }
    Some((h, m, s))
}

fn month_number(t: &str) -> Option<i8> {
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let t = t.get(..3)?;
    MONTHS.iter().position(|m| m.eq_ignore_ascii_case(t)).and_then(|i| i8::try_from(i + 1).ok())
}

fn zone_offset(t: &str) -> Option<i32> {
    let b = t.as_bytes();
    if b.len() == 5 && matches!(b[0], b'+' | b'-') && b[1..].iter().all(u8::is_ascii_digit) {
        let n: i32 = t[1..].parse().ok()?;
        let secs = (n / 100) * 3600 + (n % 100) * 60;
        if n / 100 > 23 || n % 100 > 59 {
            return None;
        }
        return Some(if b[0] == b'-' { -secs } else { secs });
    }
    let hours = match t.to_ascii_uppercase().as_str() {
        "UT" | "UTC" | "GMT" | "Z" => 0,
        "EDT" => -4,
        "EST" | "CDT" => -5,
        "CST" | "MDT" => -6,
        "MST" | "PDT" => -7,
        "PST" => -8,
        // Military zones and unknown names: RFC 5322 reads them as -0000.
        _ => 0,
    };
    Some(hours * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> (Option<Event>, Vec<Diagnostic>) {
        let mut event = None;
        let mut diagnostics = Vec::new();
        for item in parse_message(bytes, &Source::file("m.eml")) {
            match item {
                Item::Event(e) => event = Some(*e),
                Item::Diagnostic(d) => diagnostics.push(d),
            }
        }
        (event, diagnostics)
    }

    fn text(e: &Event, name: &str) -> Option<String> {
        e.get_exact(name).and_then(|v| v.as_text()).map(|t| t.into_owned())
    }

    fn list(e: &Event, name: &str) -> Vec<String> {
        match e.get_exact(name) {
            Some(Value::List(items)) => items.iter().filter_map(|v| v.as_text()).map(|t| t.into_owned()).collect(),
            Some(v) => v.as_text().map(|t| vec![t.into_owned()]).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    fn ts(s: &str) -> Option<jiff::Timestamp> {
        s.parse().ok()
    }

    #[test]
    fn folded_headers_encoded_words_and_the_topmost_authentication_results() {
        let (e, diags) = parse(include_bytes!("../../testdata/eml/folded-encoded.eml"));
        let e = e.expect("event");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(e.format, "eml");
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("email.message"));
        assert_eq!(text(&e, "email.from.address").as_deref(), Some("security@bank.example.com"));
        assert_eq!(text(&e, "email.from.name").as_deref(), Some("Bank Überweisung"));
        assert_eq!(text(&e, "email.from.domain").as_deref(), Some("bank.example.com"));
        assert_eq!(text(&e, "From").as_deref(), Some("Bank Überweisung <Security@Bank.Example.COM>"));
        assert_eq!(text(&e, "email.sender.address").as_deref(), Some("bounces+x1@mailer.example.net"));
        assert_eq!(text(&e, "email.sender.domain").as_deref(), Some("mailer.example.net"));
        assert_eq!(
            list(&e, "email.to.address"),
            ["amna@cert.example.pk", "soc@cert.example.pk", "joerg@partner.example"]
        );
        assert!(text(&e, "To").unwrap().contains("Jörg Müller <Joerg@Partner.Example>"));
        assert_eq!(list(&e, "email.to.domain"), ["cert.example.pk", "partner.example"]);
        assert_eq!(list(&e, "email.cc.address"), ["ops@cert.example.pk", "noc@cert.example.pk"]);
        assert_eq!(text(&e, "email.reply_to.address").as_deref(), Some("collect@drop.example.ru"));
        // The folded Subject: two encoded-words (the whitespace between them dropped), then text.
        assert_eq!(text(&e, "email.subject").as_deref(), Some("Urgent: verify your account ✔️ now"));
        assert_eq!(text(&e, "email.message_id").as_deref(), Some("20240514041157.77.abc@bank.example.com"));
        // The topmost Authentication-Results, not the one the sender wrote further down.
        assert_eq!(text(&e, "email.auth.spf").as_deref(), Some("softfail"));
        assert_eq!(text(&e, "email.auth.dkim").as_deref(), Some("pass"));
        assert_eq!(text(&e, "email.dkim.domain").as_deref(), Some("news.example.org"));
        assert_eq!(text(&e, "email.auth.dmarc").as_deref(), Some("fail"));
        // 10.20.0.5 is internal; the first external hop is the relay.
        assert_eq!(text(&e, "email.origin.ip").as_deref(), Some("203.0.113.45"));
        assert_eq!(e.get_exact("email.received.count"), Some(&Value::Int(3)));
        assert_eq!(list(&e, "Received").len(), 3);
        assert_eq!(list(&e, "Authentication-Results").len(), 2);
        assert_eq!(e.timestamp, ts("2024-05-14T04:11:57Z"));
        assert!(e.raw.starts_with("Return-Path:") && e.raw.ends_with("Content-Type: text/plain; charset=utf-8"));
        assert_eq!(e.position, Position::Line(1));
    }

    #[test]
    fn spoofed_sender_with_received_spf_and_an_obsolete_date() {
        let (e, diags) = parse(include_bytes!("../../testdata/eml/spoofed-from.eml"));
        let e = e.expect("event");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(text(&e, "email.from.address").as_deref(), Some("ceo@ministry.example.pk"));
        assert_eq!(text(&e, "email.from.name").as_deref(), Some("Secretary (Office)"));
        assert_eq!(text(&e, "email.sender.domain").as_deref(), Some("attacker.example"));
        assert_eq!(text(&e, "email.auth.spf").as_deref(), Some("fail"));
        assert_eq!(text(&e, "email.auth.dkim").as_deref(), Some("none"));
        assert_eq!(text(&e, "email.auth.dmarc").as_deref(), Some("fail"));
        // No header.d in the results: the signature's d= tag.
        assert_eq!(text(&e, "email.dkim.domain").as_deref(), Some("attacker.example"));
        assert_eq!(text(&e, "email.origin.ip").as_deref(), Some("192.0.2.200"));
        assert_eq!(text(&e, "email.message_id").as_deref(), Some("spoof-1@attacker.example"));
        assert_eq!(e.timestamp, ts("2024-06-03T06:00:00Z"));
    }

    #[test]
    fn relays_inside_a_provider_are_not_the_origin() {
        let (e, _) = parse(include_bytes!("../../testdata/eml/m365-relayed.eml"));
        let e = e.expect("event");
        assert_eq!(text(&e, "email.origin.ip").as_deref(), Some("198.51.100.23"));
        assert_eq!(text(&e, "email.auth.spf").as_deref(), Some("fail"));
        assert_eq!(text(&e, "email.auth.dkim").as_deref(), Some("none"));
        assert_eq!(e.get_exact("email.dkim.domain"), None);
        assert_eq!(text(&e, "email.subject").as_deref(), Some("Salary slip – June"));
        assert_eq!(text(&e, "email.sender.address").as_deref(), Some("payroll@payroll.example.com"));
        assert_eq!(e.get_exact("email.received.count"), Some(&Value::Int(4)));
        assert_eq!(e.timestamp, ts("2024-06-06T07:30:00Z"));
        // Without the receiving server's note, the first public hop is taken.
        let received: Vec<&str> = vec!["from a (b [10.0.0.1]) by c; x", "from d (e [192.0.2.7]) by f; x"];
        assert_eq!(origin_ip(&received, None), "192.0.2.7".parse().ok());
        // A boundary address that is in none of the hops is not trusted.
        assert_eq!(origin_ip(&received, "198.51.100.1".parse().ok()), "192.0.2.7".parse().ok());
    }

    #[test]
    fn bad_encodings_keep_their_text() {
        let (e, diags) = parse(include_bytes!("../../testdata/eml/bad-encodings.eml"));
        let e = e.expect("event");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(text(&e, "email.from.address").as_deref(), Some("ete@example.org"));
        // 8-bit header bytes that are not UTF-8 are read as Windows-1252.
        assert_eq!(text(&e, "email.from.name").as_deref(), Some("été"));
        assert_eq!(
            text(&e, "email.subject").as_deref(),
            Some("=?utf-8?B?not*base64?= and =?koi8-r?B?8NLJ18XU?= and =?utf-8?Q?bad=ZZhex?=")
        );
        assert_eq!(e.get_exact("email.to.address"), None);
        assert_eq!(e.get_exact("email.message_id"), None);
        // `Date: yesterday` does not read: the topmost Received date is used.
        assert_eq!(e.timestamp, ts("2024-06-07T08:02:03Z"));
        assert_eq!(text(&e, "email.origin.ip").as_deref(), Some("192.0.2.9"));
    }

    #[test]
    fn encoded_words() {
        assert_eq!(decode_words("=?UTF-8?B?w7xiZXI=?="), "über");
        assert_eq!(decode_words("a =?iso-8859-1?q?caf=E9?= b"), "a café b");
        // A character split across two words.
        assert_eq!(decode_words("=?utf-8?B?ww==?=\r\n =?utf-8?B?pA==?="), "ä");
        assert_eq!(decode_words("=?utf-8?q?a?= =?utf-8?q?b?="), "ab");
        assert_eq!(decode_words("=?utf-8*en?q?x?="), "x");
        assert_eq!(decode_words("plain =? text ?="), "plain =? text ?=");
        assert_eq!(decode_words("=?utf-8?q?a?=b"), "ab");
        assert_eq!(decode_words("=?utf-8?x?a?="), "=?utf-8?x?a?=");
        assert_eq!(decode_words("=?utf-8?B?/w==?="), "=?utf-8?B?/w==?=");
        assert_eq!(decode_words("=?"), "=?");
    }

    #[test]
    fn addresses() {
        let boxes =
            parse_addresses(r#""Doe, \"J\"" <J@X.example>, y@z.example (Why Z), <@r1,@r2:Q@R.example>, <>, G:;"#);
        assert_eq!(
            boxes,
            vec![
                Mailbox { name: Some("Doe, \"J\"".into()), address: "j@x.example".into() },
                Mailbox { name: Some("Why Z".into()), address: "y@z.example".into() },
                Mailbox { name: None, address: "q@r.example".into() },
            ]
        );
        assert_eq!(domain_of("a@b@C.example."), Some("C.example"));
    }

    #[test]
    fn authentication_results() {
        let r = parse_auth_results(
            "mx.google.com; dkim=pass header.i=@hotmail.com header.s=selector1 header.b=\"m/f\"; arc=pass (i=1); \
             spf=pass (google.com: domain of x designates 40.92.45.68 as permitted sender) smtp.mailfrom=x@hotmail.com; \
             dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=hotmail.com",
        );
        let methods: Vec<_> = r.iter().map(|r| (r.method.as_str(), r.result.as_str())).collect();
        assert_eq!(methods, [("dkim", "pass"), ("arc", "pass"), ("spf", "pass"), ("dmarc", "pass")]);
        assert_eq!(r[0].property("header.i"), Some("@hotmail.com"));
        assert_eq!(r[2].property("smtp.mailfrom"), Some("x@hotmail.com"));
        assert_eq!(
            sender_ip_comment("spf=none (sender IP is 143.55.232.5) smtp.mailfrom=a"),
            "143.55.232.5".parse().ok()
        );
        assert_eq!(
            received_spf_client_ip("Pass (x) client-ip=2a01:111:f400::1; helo=y"),
            "2a01:111:f400::1".parse().ok()
        );
    }

    #[test]
    fn received_hops() {
        let ips = |s: &str| received_from_ips(s).iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            ips("from [2.59.254.56] (unknown [2.59.254.56]) by www.example (Postfix); Sun, 10 Sep 2023"),
            ["2.59.254.56", "2.59.254.56"]
        );
        assert_eq!(ips("from a.example (198.51.100.1) by b.example (10.0.0.1) with SMTP; x"), ["198.51.100.1"]);
        assert_eq!(ips("from h ([IPv6:2001:db8::5]) by m; x"), ["2001:db8::5"]);
        assert_eq!(ips("from x ([fe80::1%4]) by y ([fe80::2%4]) with mapi; d"), ["fe80::1"]);
        assert_eq!(ips("by mail-vs1-f54.google.com with SMTP id 1; x"), Vec::<String>::new());
        // Found by fuzzing: a multi-byte character where "from " would end.
        assert_eq!(ips("from\u{e3}GH4 (2603:10a6::46) by x; d"), Vec::<String>::new());
        assert!(is_internal("fe80::1".parse().unwrap()));
        assert!(is_internal("::1".parse().unwrap()));
        assert!(is_internal("100.64.1.1".parse().unwrap()));
        assert!(!is_internal("2603:10a6:d10:1e::18".parse().unwrap()));
    }

    #[test]
    fn dates() {
        for (s, want) in [
            ("Wed, 20 Sep 2023 10:49:41 +0000", "2023-09-20T10:49:41Z"),
            ("Sun, 10 Sep 2023 21:18:52 -0400 (EDT)", "2023-09-11T01:18:52Z"),
            ("20 Sep 2023 10:49 GMT", "2023-09-20T10:49:00Z"),
            ("Wed, 20 Sep 99 10:49:41 EST", "1999-09-20T15:49:41Z"),
            ("Wed, 20 Sep 103 10:49:41 Z", "2003-09-20T10:49:41Z"),
            ("Wed Sep 20 10:49:41 2023", "2023-09-20T10:49:41Z"),
            ("Wed, 20 Sep 2023 10:49:41 +0000 (UTC)", "2023-09-20T10:49:41Z"),
            ("2023-09-20T10:49:41+05:00", "2023-09-20T05:49:41Z"),
        ] {
            assert_eq!(parse_date(s), ts(want), "{s}");
        }
        for bad in ["", "yesterday", "31 Feb 2023 10:00:00 +0000", "20 Sep 2023 25:00:00", "20 Sep 2023"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn recognised_by_content() {
        assert!(looks_like_eml(b"Received: from a by b; x\nFrom: a@b\nTo: c@d\n\nbody"));
        assert!(looks_like_eml(b"X-Original-To: a@b\r\nDelivered-To: a@b\r\n"));
        assert!(looks_like_eml(b"From: a@b\nSubject: hi\n"));
        assert!(!looks_like_eml(b"Date: 2024-01-01\nLevel: info\n"));
        assert!(!looks_like_eml(b"Nov 28 07:11:15 web01 sshd[812]: Accepted password\n"));
        assert!(!looks_like_eml(b"From: a@b\n"));
        assert!(!looks_like_eml(b" From: a@b\nTo: c@d\n"));
        assert!(!looks_like_eml(b"Host: example.com\nUser-Agent: x\n"));
        assert!(!looks_like_eml(b""));
    }

    #[test]
    fn not_a_message_and_stray_lines() {
        let (e, diags) = parse(b"hello world\nmore\n");
        assert!(e.is_none());
        assert_eq!(diags[0].position, Some(Position::Line(1)));
        let (e, diags) = parse(b"  folded first\nFrom: a@b\n");
        assert!(e.is_some());
        assert!(diags[0].message.contains("continuation"));
        let (e, diags) = parse(b"From: a@b\nSubject: x\nthis is body without a blank line\nTo: c@d\n");
        let e = e.expect("event");
        assert_eq!(e.get_exact("To"), None);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].position, Some(Position::Line(3)));
        let (e, _) = parse(b"From MAILER-DAEMON Fri Jul  8 12:08:34 2011\nFrom: a@b\nSubject: x\n\n");
        assert_eq!(text(&e.expect("event"), "email.from.address").as_deref(), Some("a@b"));
    }

    #[test]
    fn the_header_block_is_capped() {
        let mut big = b"From: a@b\nX-Pad: ".to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_HEADER_BYTES));
        big.extend_from_slice(b"\nSubject: late\n\nbody");
        let items = read_message(&big[..], &Source::file("big.eml"));
        assert!(matches!(&items[0], Item::Event(e) if e.get_exact("From").is_some()));
        let items: Vec<_> = EmlReader::new(&b"Subject: x\nFrom: a@b\n\nbody\n"[..], Source::file("s.eml")).collect();
        assert_eq!(items.len(), 1);
    }

    #[test]
    fn the_number_of_headers_is_capped() {
        let mut many = String::from("From: a@b\n");
        for i in 0..(MAX_HEADERS + 10) {
            many.push_str(&format!("X-H{i}: v\n"));
        }
        let (e, diags) = parse(many.as_bytes());
        assert_eq!(e.expect("event").fields().iter().filter(|f| f.name.starts_with("X-H")).count(), MAX_HEADERS - 1);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].position, Some(Position::Line(MAX_HEADERS as u64 + 1)));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_never_panic(s in "([A-Za-z-]{1,8}: [ -~\u{e9}=?_]{0,40}\r?\n[ \t]?){0,6}") {
            let _ = parse_message(s.as_bytes(), &Source::file("p.eml"));
            let _ = decode_words(&s);
            let _ = parse_date(&s);
            let _ = parse_addresses(&s);
        }
    }
}
