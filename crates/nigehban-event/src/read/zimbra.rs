//! Zimbra's `mailbox.log` and `audit.log` (the mailbox server's log4j logs).
//!
//! ```text
//! 2024-03-01 10:15:02,123 INFO  [qtp1234-56:https://mail.example.gov/service/soap/AuthRequest] [name=user@example.gov;oip=203.0.113.7;ua=zclient/8.8.15;] account - authentication failed for [user@example.gov] (invalid password)
//! 2024-03-01 10:15:09,004 INFO  [ImapServer-7] [ip=10.0.0.2;oip=203.0.113.7;] security - cmd=Auth; account=user@example.gov; protocol=imap;
//! ```
//!
//! That is: date and time (local time of the server, without a zone: read as UTC), level,
//! `[thread]` (Jetty threads carry the request URL), `[context]` (`key=value;` pairs, possibly
//! empty), the logger's category, ` - ` and the message. Lines that continue the previous
//! record (a Java stack trace: lines starting with white space, `Caused by:`, `ExceptionId:`,
//! an exception class name …) carry no event of their own and are skipped.
//!
//! Fields of the line: `level`, `thread`, `logger` (`soap`, `security`, `account`, `mailop`
//! …), `message`, every context key under its own name (`name`, `aname`, `mid`, `ip`, `oip`,
//! `port`, `oport`, `ua`, `soapId` …), and the `key=value;` pairs of `security` messages as
//! `security.<key>` (`security.cmd`, `security.account`, `security.protocol`,
//! `security.error`). Normalized fields:
//!
//! - `user.name`: `aname` (an administrator acting for `name`, then `user.target.name`) else
//!   `name`, else the `account` of a security record, else the account in `authentication
//!   failed for [...]`;
//! - `source.ip` / `source.port`: `oip` (its first address) and `oport`, else `ip` and `port`;
//! - `user_agent.original`: `ua`;
//! - `event.action`: the SOAP request (`AuthRequest`, `ChangePasswordRequest` …) from the
//!   thread's URL or from a `soap` message, else the security record's `cmd` (`Auth`,
//!   `AdminAuth`, `ChangePassword`, `SetPassword`, `CreateAccount` …);
//! - `event.category` `authentication` (log-ons; `event.outcome` `failure` for `authentication
//!   failed` or a security `error=`, `success` for a security record without one or for
//!   `authentication succeeded`), `iam` (password and account changes; security records are
//!   written once the change is made: `success`), `email` (sending and delivery);
//!   `email.message_id` and `email.sender.address` when the message names them.
//!
//! The dataset is `zimbra.audit` or `zimbra.mailbox`: as given to [`ZimbraFormat::with_log`],
//! else from the file name (`audit.log*`, `mailbox.log*`), else per line: `security` records
//! and authentication, password-change and password-set records are `zimbra.audit`.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;

use super::enrich::{excerpt, ip, put, put_int};
use super::{EventStub, LineFormat};
use crate::event::{Event, Position, Product};
use crate::value::Value;

/// Which of Zimbra's logs a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZimbraLog {
    Mailbox,
    Audit,
}

impl ZimbraLog {
    fn dataset(self) -> &'static str {
        match self {
            ZimbraLog::Mailbox => "zimbra.mailbox",
            ZimbraLog::Audit => "zimbra.audit",
        }
    }

    fn from_path(path: &str) -> Option<ZimbraLog> {
        let path = path.replace('\\', "/").to_ascii_lowercase();
        let file = path.rsplit('/').next().unwrap_or(&path);
        if file.starts_with("audit.log") || file.starts_with("zimbra-audit") {
            Some(ZimbraLog::Audit)
        } else if file.starts_with("mailbox.log") || file.starts_with("zimbra-mailbox") {
            Some(ZimbraLog::Mailbox)
        } else {
            None
        }
    }
}

/// The Zimbra mailbox / audit log line format.
#[derive(Default)]
pub struct ZimbraFormat {
    log: Option<ZimbraLog>,
    named: bool,
}

impl ZimbraFormat {
    /// A reader for a file known to be one of Zimbra's logs.
    pub fn with_log(log: ZimbraLog) -> Self {
        ZimbraFormat { log: Some(log), named: true }
    }
}

impl LineFormat for ZimbraFormat {
    fn parse_line(&mut self, line: &str, stub: EventStub<'_>) -> Result<Option<Event>, String> {
        if !self.named {
            self.named = true;
            self.log = ZimbraLog::from_path(&stub.source.name);
        }
        let Some((timestamp, rest)) = leading_timestamp(line) else {
            if is_continuation(line) {
                return Ok(None);
            }
            return Err(format!(
                "Zimbra log: expected a line starting \"YYYY-MM-DD hh:mm:ss,mmm LEVEL [thread]\", found \"{}\"",
                excerpt(line)
            ));
        };
        let mut event = Event::new(stub.source.clone(), Position::Line(stub.line), Product::Other, "zimbra");
        event.timestamp = Some(timestamp);
        let record = parse_record(rest).map_err(|e| format!("Zimbra log: {e} in \"{}\"", excerpt(line)))?;
        record.fill(&mut event, self.log);
        event.raw = line.into();
        Ok(Some(event))
    }
}

/// Whether a line looks like a Zimbra mailbox or audit log line (format detection). Other
/// log4j logs share the shape; Zimbra's has the `[context]` group after the thread.
pub fn looks_like_zimbra(line: &str) -> bool {
    leading_timestamp(line).is_some_and(|(_, rest)| parse_record(rest).is_ok_and(|r| r.has_context))
}

/// `2024-03-01 10:15:02,123 ` at the start of a line; the time and the rest.
fn leading_timestamp(line: &str) -> Option<(Timestamp, &str)> {
    let b = line.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i32> {
        let s = line.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &line[19..];
    let mut nanos = 0;
    if let Some(frac) = rest.strip_prefix([',', '.']) {
        let len = frac.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        nanos = frac[..len.min(9)]
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(9)
            .fold(0i32, |n, c| n * 10 + i32::from(c - b'0'));
        rest = &frac[len..];
    }
    let rest = rest.strip_prefix(' ')?;
    let dt = DateTime::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    Some((Offset::UTC.to_timestamp(dt).ok()?, rest))
}

/// A line that continues the record before it (stack traces and their details).
fn is_continuation(line: &str) -> bool {
    if line.starts_with([' ', '\t']) {
        return true;
    }
    const PREFIXES: [&str; 7] = ["Caused by:", "ExceptionId:", "Code:", "Method:", "Details:", "...", "Suppressed:"];
    if PREFIXES.iter().any(|p| line.starts_with(p)) {
        return true;
    }
    // `com.zimbra.common.service.ServiceException: ...` / `java.lang.NullPointerException`
    let head = line.split([':', ' ']).next().unwrap_or("");
    head.contains('.')
        && head.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'$' || b == b'_')
        && ["Exception", "Error", "Throwable"].iter().any(|s| head.ends_with(s))
}

const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// The parts of a record after its timestamp.
struct Record<'a> {
    level: &'a str,
    thread: &'a str,
    context: Vec<(&'a str, String)>,
    has_context: bool,
    logger: &'a str,
    message: &'a str,
}

fn parse_record(s: &str) -> Result<Record<'_>, String> {
    let (level, rest) = s.split_once(' ').ok_or("missing LEVEL")?;
    if !LEVELS.contains(&level) {
        return Err(format!("unknown level \"{}\"", excerpt(level)));
    }
    let rest = rest.trim_start_matches(' ');
    let body = rest.strip_prefix('[').ok_or("expected [thread] after the level")?;
    let end = body.find("] ").or_else(|| body.strip_suffix(']').map(str::len)).ok_or("[thread] is not closed")?;
    let thread = &body[..end];
    let mut rest = body[end + 1..].trim_start_matches(' ');
    let mut context = Vec::new();
    let has_context = rest.starts_with('[');
    if let Some(ctx) = rest.strip_prefix('[') {
        // The context ends with `;]` (or is `[]`); values such as user agents may hold `]`.
        let end = if ctx.starts_with(']') {
            0
        } else {
            ctx.find(";] ")
                .map(|i| i + 1)
                .or_else(|| ctx.strip_suffix(";]").map(|c| c.len() + 1))
                .or_else(|| ctx.find("] "))
                .ok_or("[context] is not closed")?
        };
        context = parse_context(&ctx[..end]);
        rest = ctx[end + 1..].trim_start_matches(' ');
    }
    let (logger, message) = match rest.split_once(" - ") {
        Some((logger, message)) if !logger.is_empty() && !logger.contains(' ') => (logger, message),
        _ => return Err("expected \"category - message\" after the context".into()),
    };
    Ok(Record { level, thread, context, has_context, logger, message })
}

/// `name=a@b;oip=1.2.3.4;ua=Mozilla/5.0 (X11; Linux x86_64);` → pairs. A piece without `=`
/// continues the value before it (user agents contain `;`).
fn parse_context(s: &str) -> Vec<(&str, String)> {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for piece in s.split(';') {
        if piece.is_empty() {
            continue;
        }
        match piece.split_once('=') {
            Some((k, v)) if !k.is_empty() && !k.contains(' ') => pairs.push((k, v.to_owned())),
            _ => {
                if let Some((_, v)) = pairs.last_mut() {
                    v.push(';');
                    v.push_str(piece);
                }
            }
        }
    }
    pairs
}

/// `cmd=Auth; account=a@b; protocol=soap; error=authentication failed for [a], invalid password;`
fn parse_security(message: &str) -> Vec<(&str, &str)> {
    message
        .split("; ")
        .map(|p| p.trim().trim_end_matches(';'))
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| !k.is_empty() && !k.contains(' '))
        .collect()
}

/// The account in `authentication failed for [user@example.gov]`.
fn bracketed_after<'a>(message: &'a str, marker: &str) -> Option<&'a str> {
    let at = message.find(marker)? + marker.len();
    let rest = message[at..].trim_start().strip_prefix('[')?;
    rest.split_once(']').map(|(a, _)| a).filter(|a| !a.is_empty())
}

/// The SOAP request in a Jetty thread name (`qtp1-2:https://host/service/soap/AuthRequest`).
fn soap_request(thread: &str) -> Option<&str> {
    let at = thread.find("/soap/")? + "/soap/".len();
    let name = thread[at..].split(['/', '?', ' ']).next()?;
    (!name.is_empty()).then_some(name)
}

/// The value of `key=` in a message (up to a space, comma or `;`).
fn message_value<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    let at = message.find(key)? + key.len();
    let rest = &message[at..];
    let end = rest.find([' ', ',', ';']).unwrap_or(rest.len());
    Some(rest[..end].trim_end_matches('.')).filter(|v| !v.is_empty())
}

impl Record<'_> {
    fn context(&self, key: &str) -> Option<&str> {
        self.context.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    fn fill(&self, event: &mut Event, log: Option<ZimbraLog>) {
        event.set("level", Value::str(self.level));
        event.set("thread", Value::str(self.thread));
        for (k, v) in &self.context {
            event.set_default(k, Value::str(v.as_str()));
        }
        event.set("logger", Value::str(self.logger));
        event.set("message", Value::str(self.message));
        let security = if self.logger == "security" { parse_security(self.message) } else { Vec::new() };
        for (k, v) in &security {
            event.set_default(&format!("security.{k}"), Value::str(*v));
        }
        let sec = |key: &str| security.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).filter(|v| !v.is_empty());

        // Who, from where.
        let lower = self.message.to_ascii_lowercase();
        let failed = lower.contains("authentication failed");
        let actor = self
            .context("aname")
            .or(self.context("name"))
            .or(sec("account"))
            .or_else(|| bracketed_after(self.message, "authentication failed for"));
        if let Some(actor) = actor {
            put(event, "user.name", actor);
        }
        let target = if self.context("aname").is_some() { self.context("name") } else { None }
            .or(sec("name"))
            .or(if self.context("name").is_some() { sec("account") } else { None })
            .filter(|t| Some(*t) != actor);
        if let Some(target) = target {
            put(event, "user.target.name", target);
        }
        let (addr, port) = match self.context("oip") {
            Some(oip) => (Some(oip), self.context("oport")),
            None => (self.context("ip"), self.context("port")),
        };
        if let Some(addr) = addr.and_then(|a| ip(a.split(',').next().unwrap_or(a).trim())) {
            put(event, "source.ip", addr);
            if let Some(port) = port.and_then(|p| p.parse::<u16>().ok()) {
                put_int(event, "source.port", i64::from(port));
            }
        }
        if let Some(ua) = self.context("ua") {
            put(event, "user_agent.original", ua);
        }

        // What.
        let soap_message = (self.logger == "soap")
            .then(|| self.message.split(' ').next())
            .flatten()
            .filter(|w| w.ends_with("Request") && w.bytes().all(|b| b.is_ascii_alphanumeric()));
        let action = soap_request(self.thread).or(soap_message).or(sec("cmd"));
        if let Some(action) = action {
            put(event, "event.action", action);
        }
        let op = action.map(|a| a.strip_suffix("Request").unwrap_or(a)).unwrap_or("");
        let is_auth_op = matches!(op, "Auth" | "AdminAuth" | "PreAuth" | "DelegateAuth");
        let audit_like;
        if failed || lower.contains("authentication succeeded") || (is_auth_op && self.logger == "security") {
            let outcome = if failed || sec("error").is_some() {
                "failure"
            } else if self.logger == "security" || lower.contains("authentication succeeded") {
                "success"
            } else {
                "unknown"
            };
            super::enrich::authentication(event, outcome);
            audit_like = true;
        } else if let Some(kind) = iam_kind(op) {
            put(event, "event.category", "iam");
            put(event, "event.type", kind);
            if self.logger == "security" {
                put(event, "event.outcome", if sec("error").is_some() { "failure" } else { "success" });
            }
            audit_like = matches!(op, "ChangePassword" | "SetPassword");
        } else {
            if matches!(op, "SendMsg" | "SendDeliveryReport" | "SendInviteReply" | "SendShareNotification")
                || matches!(self.logger, "mailop" | "lmtp" | "smtp")
            {
                put(event, "event.category", "email");
            }
            audit_like = false;
        }
        if let Some(id) = message_value(self.message, "Message-ID=").or(message_value(self.message, "msgid=")) {
            put(event, "email.message_id", id.trim_start_matches('<').trim_end_matches('>'));
        }
        if let Some(sender) = message_value(self.message, "sender=") {
            put(event, "email.sender.address", sender.trim_matches(['<', '>']).to_lowercase());
        }

        let log =
            log.unwrap_or(if self.logger == "security" || audit_like { ZimbraLog::Audit } else { ZimbraLog::Mailbox });
        put(event, "event.dataset", log.dataset());
    }
}

/// `event.type` of an account operation, or `None` when it is not one.
fn iam_kind(op: &str) -> Option<&'static str> {
    Some(match op {
        "CreateAccount" | "AddAccountAlias" | "CreateDistributionList" | "CreateDomain" => "creation",
        "DeleteAccount" | "RemoveAccountAlias" | "DeleteDistributionList" | "DeleteDomain" => "deletion",
        "ChangePassword"
        | "SetPassword"
        | "ResetPassword"
        | "ModifyAccount"
        | "RenameAccount"
        | "GrantRight"
        | "RevokeRight"
        | "AddDistributionListMember"
        | "RemoveDistributionListMember"
        | "ModifyDistributionList"
        | "ModifyCos"
        | "ModifyDomain" => "change",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;
    use crate::read::{Item, TextReader};

    fn parse_with(format: &mut ZimbraFormat, file: &str, line: &str) -> Result<Option<Event>, String> {
        let source = Source::file(file);
        format.parse_line(line, EventStub { source: &source, line: 9 })
    }

    fn event(line: &str) -> Event {
        match parse_with(&mut ZimbraFormat::default(), "zimbra.txt", line) {
            Ok(Some(e)) => e,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn text(e: &Event, name: &str) -> Option<String> {
        e.get_exact(name).and_then(Value::as_text).map(|t| t.into_owned())
    }

    #[test]
    fn failed_soap_authentication() {
        let line = "2024-03-01 10:15:02,123 INFO  [qtp1234-56:https://mail.example.gov/service/soap/AuthRequest] [name=user@example.gov;oip=203.0.113.7;ua=zclient/8.8.15;] account - authentication failed for [user@example.gov] (invalid password)";
        let e = event(line);
        assert_eq!(&*e.raw, line);
        assert_eq!(e.format, "zimbra");
        assert_eq!(e.timestamp, "2024-03-01T10:15:02.123Z".parse().ok());
        assert_eq!(text(&e, "level").as_deref(), Some("INFO"));
        assert_eq!(text(&e, "thread").as_deref(), Some("qtp1234-56:https://mail.example.gov/service/soap/AuthRequest"));
        assert_eq!(text(&e, "name").as_deref(), Some("user@example.gov"));
        assert_eq!(text(&e, "oip").as_deref(), Some("203.0.113.7"));
        assert_eq!(text(&e, "logger").as_deref(), Some("account"));
        assert_eq!(
            text(&e, "message").as_deref(),
            Some("authentication failed for [user@example.gov] (invalid password)")
        );
        assert_eq!(text(&e, "user.name").as_deref(), Some("user@example.gov"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("203.0.113.7"));
        assert_eq!(text(&e, "user_agent.original").as_deref(), Some("zclient/8.8.15"));
        assert_eq!(text(&e, "event.action").as_deref(), Some("AuthRequest"));
        assert_eq!(text(&e, "event.category").as_deref(), Some("authentication"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("start"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("zimbra.audit"));
    }

    #[test]
    fn audit_security_records() {
        let e = event(
            "2015-12-05 18:47:36,435 INFO  [qtp1545357780-7135140:http://127.0.0.1:80/service/soap/AuthRequest] [name=pepe@domain.com;oip=10.1.2.123;ua=zclient/2.0.5_GA_1839;] security - cmd=Auth; account=pepe@domain.com; protocol=soap;",
        );
        assert_eq!(text(&e, "security.cmd").as_deref(), Some("Auth"));
        assert_eq!(text(&e, "security.account").as_deref(), Some("pepe@domain.com"));
        assert_eq!(text(&e, "security.protocol").as_deref(), Some("soap"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        assert_eq!(text(&e, "event.category").as_deref(), Some("authentication"));
        assert_eq!(e.get_exact("user.target.name"), None);

        // Admin console failure over the admin port; multiple addresses in oip.
        let e = event(
            "2026-09-01 00:15:45,087 WARN  [qtp1:https:https://mail.example.local:7073/service/admin/soap/] [name=admin@example.local;oip=203.0.113.5, 10.0.0.9;oport=51288;] security - cmd=AdminAuth; account=admin@example.local; protocol=soap; error=authentication failed for [admin], invalid password;",
        );
        assert_eq!(text(&e, "event.action").as_deref(), Some("AdminAuth"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("203.0.113.5"));
        assert_eq!(e.get_exact("source.port"), Some(&Value::Int(51288)));
        assert_eq!(text(&e, "security.error").as_deref(), Some("authentication failed for [admin], invalid password"));

        // IMAP login: no name in the context; the account is the user; ip is the proxy.
        let e = event(
            "2015-03-26 21:51:36,505 INFO  [Pop3Server-13] [ip=172.16.0.3;oip=200.111.128.196;] security - cmd=Auth; account=jbarrera@example.com; protocol=pop3;",
        );
        assert_eq!(text(&e, "user.name").as_deref(), Some("jbarrera@example.com"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("200.111.128.196"));

        // An administrator sets a user's password: actor and target.
        let e = event(
            "2024-03-01 11:00:00,000 INFO  [qtp1-2:https://mail.example.gov:7071/service/admin/soap/SetPasswordRequest] [name=admin@example.gov;oip=198.51.100.2;ua=ZimbraWebClient - FF123 (Linux)/10.0.6_GA_4603;] security - cmd=SetPassword; name=ceo@example.gov;",
        );
        assert_eq!(text(&e, "event.action").as_deref(), Some("SetPasswordRequest"));
        assert_eq!(text(&e, "event.category").as_deref(), Some("iam"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("change"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("admin@example.gov"));
        assert_eq!(text(&e, "user.target.name").as_deref(), Some("ceo@example.gov"));
        assert_eq!(text(&e, "user_agent.original").as_deref(), Some("ZimbraWebClient - FF123 (Linux)/10.0.6_GA_4603"));
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("zimbra.audit"));

        // Acting on behalf: aname is the actor.
        let e = event(
            "2024-03-01 11:00:01,000 INFO  [qtp1-3:https://mail.example.gov/service/soap/ChangePasswordRequest] [name=bob@example.gov;aname=admin@example.gov;mid=7;ip=198.51.100.2;] security - cmd=ChangePassword; account=bob@example.gov;",
        );
        assert_eq!(text(&e, "user.name").as_deref(), Some("admin@example.gov"));
        assert_eq!(text(&e, "user.target.name").as_deref(), Some("bob@example.gov"));
        assert_eq!(text(&e, "mid").as_deref(), Some("7"));
    }

    #[test]
    fn mailbox_records() {
        let e = event(
            "2019-11-20 12:54:30,180 INFO  [qtp1606304070-221://zimbra.mydomain/service/soap/SendMsgRequest] [name=rty@mydomain;mid=11;ip=192.0.2.44;port=60976;ua=Mozilla/5.0 (Windows NT 10.0; Win64; x64);soapId=10678364;] soap - SendMsgRequest elapsed=4",
        );
        assert_eq!(text(&e, "event.action").as_deref(), Some("SendMsgRequest"));
        assert_eq!(text(&e, "event.category").as_deref(), Some("email"));
        assert_eq!(text(&e, "user_agent.original").as_deref(), Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64)"));
        assert_eq!(e.get_exact("source.port"), Some(&Value::Int(60976)));
        assert_eq!(text(&e, "soapId").as_deref(), Some("10678364"));
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("zimbra.mailbox"));
        assert_eq!(e.get_exact("event.outcome"), None);

        let e = event(
            "2024-03-01 10:20:00,001 INFO  [LmtpServer-5] [name=bob@example.gov;mid=9;msgid=<abc@sender.example>;] lmtp - Delivering message: size=2048 bytes, nrcpts=1, sender=Alice@Sender.Example, msgid=<abc@sender.example>",
        );
        assert_eq!(text(&e, "event.category").as_deref(), Some("email"));
        assert_eq!(text(&e, "email.message_id").as_deref(), Some("abc@sender.example"));
        assert_eq!(text(&e, "email.sender.address").as_deref(), Some("alice@sender.example"));

        // Empty context; unrecognised records only get the dataset.
        let e = event("2024-03-01 10:20:00,001 INFO  [main] [] misc - Starting up");
        assert_eq!(e.get_exact("event.category"), None);
        assert_eq!(e.get_exact("user.name"), None);
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("zimbra.mailbox"));
    }

    #[test]
    fn detection_needs_the_context_group() {
        assert!(looks_like_zimbra("2024-03-01 10:15:02,123 INFO  [main] [] misc - Starting up"));
        assert!(!looks_like_zimbra("2024-03-01 10:15:02,123 INFO  [main] org.example.App - Starting up"));
        assert!(!looks_like_zimbra("2024-03-01 10:15:02,123 hello"));
    }

    #[test]
    fn file_name_decides_the_dataset() {
        let line = "2024-03-01 10:15:02,123 INFO  [ImapServer-1] [ip=192.0.2.1;] security - cmd=Auth; account=a@b; protocol=imap;";
        let mut f = ZimbraFormat::default();
        let e = parse_with(&mut f, "/opt/zimbra/log/mailbox.log.2024-03-01.gz", line).unwrap().unwrap();
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("zimbra.mailbox"));
        let mut f = ZimbraFormat::with_log(ZimbraLog::Audit);
        let e = parse_with(&mut f, "x", "2024-03-01 10:20:00,001 INFO  [main] [] misc - hi").unwrap().unwrap();
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("zimbra.audit"));
    }

    #[test]
    fn continuations_and_errors() {
        let mut f = ZimbraFormat::default();
        for line in [
            "com.zimbra.common.service.ServiceException: system failure: x",
            "\tat com.zimbra.cs.Foo.bar(Foo.java:12)",
            "Caused by: java.io.IOException: broken pipe",
            "ExceptionId:qtp1-2:https://x/service/soap:1709287200:abc",
            "java.lang.NullPointerException",
        ] {
            assert!(matches!(parse_with(&mut f, "m", line), Ok(None)), "{line}");
        }
        for (line, want) in [
            ("hello there", "expected a line starting"),
            ("2024-03-01 10:15:02,123 CHATTY [x] [] a - b", "unknown level"),
            ("2024-03-01 10:15:02,123 INFO  x [] a - b", "[thread]"),
            ("2024-03-01 10:15:02,123 INFO  [x", "not closed"),
            ("2024-03-01 10:15:02,123 INFO  [x] [a=b; c - d", "not closed"),
            ("2024-03-01 10:15:02,123 INFO  [x] [] no separator here", "category - message"),
            ("2024-02-30 10:15:02,123 INFO  [x] [] a - b", "expected a line starting"),
        ] {
            match parse_with(&mut f, "m", line) {
                Err(m) => assert!(m.contains(want), "{line}: {m}"),
                other => panic!("{line} gave {other:?}"),
            }
        }
    }

    #[test]
    fn fixtures_through_text_reader() {
        for (name, data, events, dataset) in [
            (
                "zimbra-mailbox.log",
                &include_bytes!("../../testdata/zimbra/zimbra-mailbox.log")[..],
                6,
                "zimbra.mailbox",
            ),
            ("zimbra-audit.log", &include_bytes!("../../testdata/zimbra/zimbra-audit.log")[..], 5, "zimbra.audit"),
        ] {
            let mut got = Vec::new();
            let mut diags = Vec::new();
            for item in TextReader::new(data, ZimbraFormat::default(), Source::file(name)) {
                match item {
                    Item::Event(e) => got.push(e),
                    Item::Diagnostic(d) => diags.push(d),
                }
            }
            assert_eq!(got.len(), events, "{name}");
            assert!(got.iter().all(|e| text(e, "event.dataset").as_deref() == Some(dataset)), "{name}");
            if name == "zimbra-mailbox.log" {
                assert_eq!(diags.len(), 1, "{diags:?}");
                assert_eq!(diags[0].position, Some(Position::Line(7)));
            } else {
                assert!(diags.is_empty(), "{diags:?}");
                let failures = got.iter().filter(|e| text(e, "event.outcome").as_deref() == Some("failure")).count();
                assert_eq!(failures, 3);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in r"(2024-03-01 10:15:02,123 )?[A-Z]{0,5} {0,2}(\[[ -~]{0,20}\] ?){0,2}[ -~\u{e9}]{0,30}") {
            let _ = looks_like_zimbra(&line);
            let _ = parse_with(&mut ZimbraFormat::default(), "x", &line);
        }
    }
}
