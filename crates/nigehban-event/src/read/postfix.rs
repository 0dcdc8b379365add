//! Postfix's syslog lines (`postfix/smtpd`, `postfix/cleanup`, `postfix/qmgr`, `postfix/smtp`,
//! `postfix/lmtp`, `postfix/submission/smtpd`, and multi-instance names such as
//! `postfix-out/smtp`):
//!
//! ```text
//! 4F3A21C0123: client=unknown[203.0.113.5], sasl_method=LOGIN, sasl_username=alice@example.gov
//! 4F3A21C0123: message-id=<20240301.abc@example.gov>
//! 4F3A21C0123: from=<alice@example.gov>, size=1234, nrcpt=1 (queue active)
//! 4F3A21C0123: to=<bob@example.org>, relay=mx.example.org[198.51.100.7]:25, delay=1.2, dsn=2.0.0, status=sent (250 2.0.0 OK)
//! NOQUEUE: reject: RCPT from unknown[203.0.113.9]: 554 5.7.1 <x@y>: Relay access denied; from=<a@b> to=<x@y> proto=ESMTP helo=<h>
//! warning: unknown[203.0.113.9]: SASL LOGIN authentication failed: UGFzc3dvcmQ6
//! ```
//!
//! Fields: `postfix.queue_id`, and each `key=value` of the message as `postfix.<key>`
//! (`postfix.client`, `postfix.sasl_method`, `postfix.sasl_username`, `postfix.from`,
//! `postfix.to`, `postfix.relay`, `postfix.status`, `postfix.message-id`, `postfix.dsn` …;
//! angle brackets removed from addresses). Normalized: `source.ip` (client, or the address in
//! a reject or warning), `email.authenticated_user` and `user.name` (`sasl_username`),
//! `email.sender.address` (`from`), `email.to.address` (`to`), `email.message_id`
//! (`message-id` without its angle brackets), `destination.domain` / `destination.ip` / `destination.port`
//! (`relay`), `event.category` `email` for queue and reject lines, `event.action` (`sent`,
//! `bounced`, `deferred`, `expired` for deliveries, `reject` for rejections) and
//! `event.outcome` (`success` for sent, `failure` for bounced, expired and rejected, `unknown`
//! for deferred); SASL authentication failures are `event.category` `authentication`,
//! outcome `failure`.

use super::enrich::{authentication, host_and_bracketed, ip, put, put_int};
use crate::event::Event;
use crate::value::Value;

pub(crate) fn is_postfix_app(app: &str) -> bool {
    app.starts_with("postfix/") || (app.starts_with("postfix-") && app.contains('/'))
}

pub(crate) fn enrich(event: &mut Event, message: &str) {
    let (queue_id, rest) = split_queue_id(message);
    if let Some(id) = queue_id {
        put(event, "postfix.queue_id", id);
    }
    let rest = rest.trim_start();

    if let Some(warning) = rest.strip_prefix("warning: ") {
        // warning: unknown[203.0.113.9]: SASL LOGIN authentication failed: …
        if warning.contains("authentication failed") {
            if let Some((client, _)) = warning.split_once(": ")
                && let Some((_, addr)) = host_and_bracketed(client)
                && let Some(addr) = ip(addr)
            {
                put(event, "source.ip", addr);
            }
            if let Some(method) = warning.split_once(": SASL ").and_then(|(_, m)| m.split(' ').next()) {
                put(event, "postfix.sasl_method", method);
            }
            put(event, "event.action", "sasl-authentication");
            authentication(event, "failure");
        }
        return;
    }

    // NOQUEUE: reject: RCPT from host[ip]: 554 …; from=<…> to=<…> proto=ESMTP helo=<…>
    let reject = rest.strip_prefix("reject: ").or_else(|| rest.strip_prefix("milter-reject: "));
    if let Some(reject) = reject {
        if let Some((_, after_from)) = reject.split_once(" from ")
            && let Some((client, _)) = after_from.split_once(": ")
            && let Some((_, addr)) = host_and_bracketed(client)
            && let Some(addr) = ip(addr)
        {
            put(event, "source.ip", addr);
        }
        let kv = reject.rsplit_once("; ").map_or("", |(_, kv)| kv);
        add_pairs(event, kv, ' ');
        put(event, "event.category", "email");
        put(event, "event.action", "reject");
        put(event, "event.outcome", "failure");
        return;
    }

    if queue_id.is_none() {
        // connect from host[ip], disconnect from host[ip] …
        if let Some(client) = rest.strip_prefix("connect from ").or_else(|| rest.strip_prefix("disconnect from "))
            && let Some((_, addr)) = host_and_bracketed(client.split(' ').next().unwrap_or(client))
            && let Some(addr) = ip(addr)
        {
            put(event, "source.ip", addr);
        }
        return;
    }

    add_pairs(event, rest, ',');
    put(event, "event.category", "email");
    if let Some(status) = event.get_exact("postfix.status").and_then(Value::as_text).map(|s| s.into_owned()) {
        let status = status.split(' ').next().unwrap_or("").to_owned();
        let outcome = match status.as_str() {
            "sent" | "delivered" => "success",
            "bounced" | "expired" | "undeliverable" => "failure",
            _ => "unknown",
        };
        if !status.is_empty() {
            put(event, "event.action", status.as_str());
        }
        put(event, "event.outcome", outcome);
    }
}

/// Postfix's queue id at the start of a message (`4F3A21C0123:`, long ids such as
/// `4Tq3Vx1bQzz9rx5:`, or `NOQUEUE:`), and the text after it.
fn split_queue_id(message: &str) -> (Option<&str>, &str) {
    if let Some((id, rest)) = message.split_once(": ")
        && id.len() >= 5
        && id.len() <= 20
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
        && id != "warning"
        && id != "error"
        && id != "fatal"
        && id != "panic"
    {
        if id == "NOQUEUE" {
            return (None, rest);
        }
        if id.bytes().any(|b| b.is_ascii_digit()) {
            return (Some(id), rest);
        }
    }
    (None, message)
}

/// Adds `key=value` pairs separated by `sep` (`,` in queue lines, ` ` in reject lines) as
/// `postfix.<key>`, and the normalized fields they carry. A value may be followed by a
/// parenthesised remark (`status=sent (250 OK)`), which stays with it.
fn add_pairs(event: &mut Event, s: &str, sep: char) {
    let mut recipients = Vec::new();
    for piece in split_pairs(s, sep) {
        let Some((key, value)) = piece.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(' ') {
            continue;
        }
        let value = value.trim();
        let bare = value.strip_prefix('<').and_then(|v| v.split_once('>')).map_or(value, |(v, _)| v);
        event.set_default(
            &format!("postfix.{key}"),
            Value::str(if matches!(key, "from" | "to" | "orig_to") { bare } else { value }),
        );
        match key {
            "client" => {
                if let Some((_, addr)) = host_and_bracketed(value)
                    && let Some(addr) = ip(addr)
                {
                    put(event, "source.ip", addr);
                }
            }
            "sasl_username" if !value.is_empty() => {
                put(event, "email.authenticated_user", value);
                put(event, "user.name", value);
            }
            "from" if !bare.is_empty() => put(event, "email.sender.address", bare.to_lowercase()),
            "to" if !bare.is_empty() => recipients.push(bare.to_lowercase()),
            "message-id" if !bare.is_empty() => put(event, "email.message_id", bare),
            "relay" if value != "none" => {
                // mx.example.org[198.51.100.7]:25, or local / private/dovecot-lmtp
                if let Some((host, addr)) = host_and_bracketed(value) {
                    if !host.is_empty() {
                        put(event, "destination.domain", host);
                    }
                    if let Some(addr) = ip(addr) {
                        put(event, "destination.ip", addr);
                    }
                    if let Some(port) = value.rsplit_once("]:").and_then(|(_, p)| p.parse::<u16>().ok()) {
                        put_int(event, "destination.port", i64::from(port));
                    }
                }
            }
            _ => {}
        }
    }
    match recipients.len() {
        0 => {}
        1 => put(event, "email.to.address", recipients.remove(0)),
        _ => event.set_default("email.to.address", Value::List(recipients.into_iter().map(Value::str).collect())),
    }
}

/// Splits at `sep` outside parentheses and angle brackets.
fn split_pairs(s: &str, sep: char) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '<' => depth += 1,
            ')' | '>' => depth = (depth - 1).max(0),
            c if c == sep && depth == 0 => {
                pieces.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    pieces.push(&s[start..]);
    pieces.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use crate::event::{Event, Source};
    use crate::read::syslog::SyslogFormat;
    use crate::read::{EventStub, Item, LineFormat, TextReader};
    use crate::value::Value;

    fn event(line: &str) -> Event {
        let source = Source::file("mail.log");
        match SyslogFormat::with_year(2024).parse_line(line, EventStub { source: &source, line: 1 }) {
            Ok(Some(e)) => e,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn text(e: &Event, name: &str) -> Option<String> {
        e.get_exact(name).and_then(Value::as_text).map(|t| t.into_owned())
    }

    #[test]
    fn submission_with_sasl() {
        let e = event(
            "Mar  1 10:00:01 mail postfix/submission/smtpd[1234]: 4F3A21C0123: client=unknown[203.0.113.5], sasl_method=LOGIN, sasl_username=Alice@example.gov",
        );
        assert_eq!(text(&e, "app").as_deref(), Some("postfix/submission/smtpd"));
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("postfix"));
        assert_eq!(text(&e, "host.name").as_deref(), Some("mail"));
        assert_eq!(text(&e, "postfix.queue_id").as_deref(), Some("4F3A21C0123"));
        assert_eq!(text(&e, "postfix.client").as_deref(), Some("unknown[203.0.113.5]"));
        assert_eq!(text(&e, "postfix.sasl_method").as_deref(), Some("LOGIN"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("203.0.113.5"));
        assert_eq!(text(&e, "email.authenticated_user").as_deref(), Some("Alice@example.gov"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("Alice@example.gov"));
        assert_eq!(text(&e, "event.category").as_deref(), Some("email"));
        assert_eq!(e.get_exact("event.outcome"), None);
    }

    #[test]
    fn queue_lines() {
        let e = event("Mar  1 10:00:01 mail postfix/cleanup[1235]: 4F3A21C0123: message-id=<20240301.abc@example.gov>");
        assert_eq!(text(&e, "email.message_id").as_deref(), Some("20240301.abc@example.gov"));
        let e = event(
            "Mar  1 10:00:01 mail postfix/qmgr[1236]: 4F3A21C0123: from=<Alice@Example.gov>, size=1234, nrcpt=2 (queue active)",
        );
        assert_eq!(text(&e, "postfix.from").as_deref(), Some("Alice@Example.gov"));
        assert_eq!(text(&e, "email.sender.address").as_deref(), Some("alice@example.gov"));
        assert_eq!(text(&e, "postfix.nrcpt").as_deref(), Some("2 (queue active)"));
        let e = event("Mar  1 10:00:01 mail postfix/qmgr[1236]: 4F3A21C0124: from=<>, size=99, nrcpt=1 (queue active)");
        assert_eq!(e.get_exact("email.sender.address"), None);
        let e = event(
            "Mar  1 10:00:02 mail postfix/smtp[1237]: 4F3A21C0123: to=<bob@example.org>, relay=mx.example.org[198.51.100.7]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 OK, id=1)",
        );
        assert_eq!(text(&e, "email.to.address").as_deref(), Some("bob@example.org"));
        assert_eq!(text(&e, "destination.domain").as_deref(), Some("mx.example.org"));
        assert_eq!(text(&e, "destination.ip").as_deref(), Some("198.51.100.7"));
        assert_eq!(e.get_exact("destination.port"), Some(&Value::Int(25)));
        assert_eq!(text(&e, "postfix.status").as_deref(), Some("sent (250 2.0.0 OK, id=1)"));
        assert_eq!(text(&e, "event.action").as_deref(), Some("sent"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        let e = event(
            "Mar  1 10:00:03 mail postfix/smtp[1238]: 5B1C2D3E4F: to=<x@nowhere.example>, relay=none, delay=0.1, dsn=5.4.4, status=bounced (Host or domain name not found)",
        );
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(e.get_exact("destination.domain"), None);
        let e = event(
            "Mar  1 10:00:03 mail postfix/lmtp[1239]: 5B1C2D3E4F: to=<c@example.gov>, relay=mail.example.gov[10.0.0.2]:7025, delay=0.2, dsn=4.4.1, status=deferred (connect refused)",
        );
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("unknown"));
        assert_eq!(text(&e, "event.action").as_deref(), Some("deferred"));
    }

    #[test]
    fn rejects_and_sasl_failures() {
        let e = event(
            "Mar  1 10:00:03 mail postfix/smtpd[1234]: NOQUEUE: reject: RCPT from unknown[203.0.113.9]: 554 5.7.1 <spam@example.org>: Relay access denied; from=<a@b.example> to=<spam@example.org> proto=ESMTP helo=<x>",
        );
        assert_eq!(e.get_exact("postfix.queue_id"), None);
        assert_eq!(text(&e, "source.ip").as_deref(), Some("203.0.113.9"));
        assert_eq!(text(&e, "email.sender.address").as_deref(), Some("a@b.example"));
        assert_eq!(text(&e, "email.to.address").as_deref(), Some("spam@example.org"));
        assert_eq!(text(&e, "postfix.helo").as_deref(), Some("<x>"));
        assert_eq!(text(&e, "event.action").as_deref(), Some("reject"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));

        let e = event(
            "Mar  1 10:00:04 mail postfix/smtpd[1234]: warning: unknown[203.0.113.9]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
        );
        assert_eq!(text(&e, "event.category").as_deref(), Some("authentication"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("203.0.113.9"));
        assert_eq!(text(&e, "postfix.sasl_method").as_deref(), Some("LOGIN"));

        // Other warnings and connects: dataset, and the client address for connects.
        let e = event(
            "Mar  1 10:00:05 mail postfix/smtpd[1234]: warning: hostname x.example does not resolve to address 192.0.2.1",
        );
        assert_eq!(e.get_exact("event.category"), None);
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("postfix"));
        let e = event("Mar  1 10:00:05 mail postfix/smtpd[1234]: connect from unknown[2001:db8::9]");
        assert_eq!(text(&e, "source.ip").as_deref(), Some("2001:db8::9"));
        assert_eq!(e.get_exact("event.category"), None);
        // Not postfix.
        let e = event("Mar  1 10:00:05 mail postfixish[1]: 4F3A21C0123: client=unknown[203.0.113.5]");
        assert_eq!(e.get_exact("event.dataset"), None);
    }

    #[test]
    fn fixture_through_text_reader() {
        let data = include_bytes!("../../testdata/syslog/postfix.log");
        let mut events = Vec::new();
        for item in TextReader::new(&data[..], SyslogFormat::with_year(2024), Source::file("postfix.log")) {
            match item {
                Item::Event(e) => events.push(e),
                Item::Diagnostic(d) => panic!("{d}"),
            }
        }
        assert_eq!(events.len(), 10);
        assert!(events.iter().all(|e| text(e, "event.dataset").as_deref() == Some("postfix")));
        let failed_auth =
            events.iter().filter(|e| text(e, "event.category").as_deref() == Some("authentication")).count();
        assert_eq!(failed_auth, 2);
        let sent = events.iter().filter(|e| text(e, "event.action").as_deref() == Some("sent")).count();
        assert_eq!(sent, 1);
    }
}
