//! Syslog lines: RFC 5424, and RFC 3164 / BSD (auth.log and friends).
//!
//! Accepted shapes (PRI is optional for the BSD shapes, as files such as `/var/log/auth.log`
//! carry none):
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]    RFC 5424
//! [<PRI>]Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG                             RFC 3164 / BSD
//! [<PRI>]2026-11-28T07:11:15.123456+00:00 HOSTNAME TAG[PID]: MSG            rsyslog high precision
//! ```
//!
//! Fields (stable names): `facility` and `severity` (numbers, when PRI is present), `host`,
//! `app`, `pid` (a number when it reads as one), `msgid`, `sd.<SD-ID>.<PARAM-NAME>` for each
//! structured-data parameter, and `message` (the MSG text). RFC 5424's NILVALUE `-` leaves the
//! field out. BSD timestamps have no year and no zone: they are read as UTC in the year given
//! to [`SyslogFormat::with_year`] (see [`SyslogFormat`] for how the year advances).

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;

use super::{EventStub, LineFormat};
use crate::event::{Event, Position, Product};
use crate::value::Value;

/// Whether a line looks like syslog (used by format detection on a file's first line).
///
/// True for `<PRI>1 ` (RFC 5424), for a BSD `Mmm dd hh:mm:ss` timestamp (after an optional
/// PRI), for `<PRI>` followed by a month name, and for an ISO 8601 timestamp followed by a
/// host and an `app[pid]:` / `app:` tag.
pub fn looks_like_syslog(line: &str) -> bool {
    let rest = match split_pri(line) {
        Ok((Some(_), rest)) => {
            if rest.starts_with("1 ") || month_number(rest.get(..3).unwrap_or("")).is_some() {
                return true;
            }
            rest
        }
        Ok((None, rest)) => rest,
        Err(_) => return false,
    };
    if bsd_timestamp(rest).is_some() {
        return true;
    }
    // The ISO shape needs more evidence: plenty of non-syslog logs start with a timestamp.
    if let Some((_, rest)) = iso_timestamp(rest)
        && let Some((host, rest)) = rest.split_once(' ')
        && !host.is_empty()
    {
        return split_tag(rest).0.is_some();
    }
    false
}

/// The syslog line format.
///
/// BSD timestamps carry no year. The reader assumes the year it was given and advances it
/// when the months wrap round (a December line followed by a January line), so a file that
/// spans New Year is dated correctly. [`Default`] assumes the current year (from the system
/// clock, the only place this module looks at it) and steps back a year if the file's first
/// BSD timestamp would otherwise lie more than a day in the future (December logs read in
/// January). Tests and reproducible runs use [`SyslogFormat::with_year`].
pub struct SyslogFormat {
    /// Year assumed for the current BSD timestamp.
    year: i16,
    /// Month (1-12) of the previous BSD timestamp, to notice the year wrapping.
    last_month: Option<i8>,
    /// Only with `Default`: the time the reader was made.
    now: Option<Timestamp>,
}

impl SyslogFormat {
    /// A reader that dates BSD timestamps in `year` (then following the file across New Year).
    pub fn with_year(year: i16) -> Self {
        SyslogFormat { year, last_month: None, now: None }
    }

    /// The UTC timestamp of a BSD date, in the assumed year.
    fn bsd_to_timestamp(&mut self, t: &BsdTime) -> Result<Timestamp, String> {
        match self.last_month {
            None => {
                // First BSD line: with Default, a date in the future belongs to last year.
                if let Some(now) = self.now
                    && let Ok(ts) = t.in_year(self.year)
                    && ts.as_second() > now.as_second().saturating_add(86_400)
                {
                    self.year = self.year.saturating_sub(1);
                }
            }
            // Months going back by half a year or more: the log crossed into a new year.
            Some(last) if last - t.month >= 6 => self.year = self.year.saturating_add(1),
            Some(_) => {}
        }
        self.last_month = Some(t.month);
        t.in_year(self.year)
    }
}

impl Default for SyslogFormat {
    fn default() -> Self {
        let now = Timestamp::now();
        SyslogFormat { year: Offset::UTC.to_datetime(now).year(), last_month: None, now: Some(now) }
    }
}

impl LineFormat for SyslogFormat {
    fn parse_line(&mut self, line: &str, stub: EventStub<'_>) -> Result<Option<Event>, String> {
        let mut event = Event::new(stub.source.clone(), Position::Line(stub.line), Product::Linux, "syslog");
        let (pri, rest) = split_pri(line)?;
        if let Some(pri) = pri {
            event.set("facility", Value::Int(i64::from(pri / 8)));
            event.set("severity", Value::Int(i64::from(pri % 8)));
        }
        match pri.and_then(|_| split_version(rest)) {
            Some(("1", rest)) => parse_rfc5424(&mut event, rest)?,
            Some((version, _)) => return Err(format!("unsupported syslog VERSION {version} (only 1 is defined)")),
            None => self.parse_bsd(&mut event, rest, pri.is_some())?,
        }
        // Normalized fields for the programs whose messages this crate knows (Postfix,
        // vCenter, ESXi, Proxmox VE, sshd/sudo …).
        super::enrich::syslog(&mut event);
        event.raw = line.into();
        Ok(Some(event))
    }
}

impl SyslogFormat {
    /// `TIMESTAMP HOSTNAME TAG[PID]: MSG` (RFC 3164 and its rsyslog ISO variant). Everything
    /// after the timestamp is best effort: a line without a tag keeps its text as `message`.
    fn parse_bsd(&mut self, event: &mut Event, s: &str, had_pri: bool) -> Result<(), String> {
        let rest = if let Some((t, rest)) = bsd_timestamp(s) {
            event.timestamp = Some(self.bsd_to_timestamp(&t)?);
            rest
        } else if let Some((ts, rest)) = iso_timestamp(s) {
            event.timestamp = Some(ts);
            rest
        } else if had_pri {
            return Err(format!(
                "RFC 3164: expected a timestamp like \"Nov 28 07:11:15\" or an ISO 8601 timestamp after <PRI>, found \"{}\"",
                excerpt(s)
            ));
        } else {
            return Err(format!(
                "not a syslog line: expected <PRI>, a timestamp like \"Nov 28 07:11:15\" or an ISO 8601 timestamp at the start, found \"{}\"",
                excerpt(s)
            ));
        };
        let rest = rest.trim_start_matches(' ');
        let (host, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err("RFC 3164: missing HOSTNAME after the timestamp".into());
        }
        event.set("host", Value::str(host));
        let (tag, message) = split_tag(rest);
        if let Some((app, pid)) = tag {
            event.set("app", Value::str(app));
            if let Some(pid) = pid {
                event.set("pid", number_or_text(pid));
            }
        }
        let message = message.trim_start_matches(' ');
        if !message.is_empty() {
            event.set("message", Value::str(message));
        }
        Ok(())
    }
}

/// Everything after `<PRI>1 `: `TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]`.
fn parse_rfc5424(event: &mut Event, s: &str) -> Result<(), String> {
    let (timestamp, s) = header_field(s, "TIMESTAMP")?;
    if timestamp != "-" {
        let ts = timestamp
            .parse::<Timestamp>()
            .map_err(|_| format!("RFC 5424: invalid TIMESTAMP \"{}\"", excerpt(timestamp)))?;
        event.timestamp = Some(ts);
    }
    let (host, s) = header_field(s, "HOSTNAME")?;
    let (app, s) = header_field(s, "APP-NAME")?;
    let (procid, s) = header_field(s, "PROCID")?;
    let (msgid, s) = header_field(s, "MSGID")?;
    if host != "-" {
        event.set("host", Value::str(host));
    }
    if app != "-" {
        event.set("app", Value::str(app));
    }
    if procid != "-" {
        event.set("pid", number_or_text(procid));
    }
    if msgid != "-" {
        event.set("msgid", Value::str(msgid));
    }

    let rest = if let Some(rest) = s.strip_prefix('-') {
        rest
    } else if s.starts_with('[') {
        parse_structured_data(event, s)?
    } else if s.is_empty() {
        return Err("RFC 5424: line ends before STRUCTURED-DATA".into());
    } else {
        return Err(format!("RFC 5424: expected STRUCTURED-DATA ('-' or '[') after MSGID, found \"{}\"", excerpt(s)));
    };
    let message = if rest.is_empty() {
        ""
    } else if let Some(msg) = rest.strip_prefix(' ') {
        msg
    } else {
        return Err(format!("RFC 5424: unexpected text right after STRUCTURED-DATA: \"{}\"", excerpt(rest)));
    };
    // MSG may start with a UTF-8 byte order mark announcing UTF-8 text.
    let message = message.strip_prefix('\u{FEFF}').unwrap_or(message);
    if !message.is_empty() {
        event.set("message", Value::str(message));
    }
    Ok(())
}

/// One space-terminated RFC 5424 header field and the text after its space.
fn header_field<'a>(s: &'a str, name: &str) -> Result<(&'a str, &'a str), String> {
    let (field, rest) = s.split_once(' ').ok_or_else(|| format!("RFC 5424: header ends before or within {name}"))?;
    if field.is_empty() {
        return Err(format!("RFC 5424: empty {name} (two spaces in a row?)"));
    }
    Ok((field, rest))
}

/// Parses one or more SD-ELEMENTs (`[id name="value" ...]`) at the start of `s`, adding a
/// field `sd.<id>.<name>` for each parameter, and returns the text after the last element.
/// In values, `\"`, `\\` and `\]` stand for the character after the backslash; any other
/// backslash is kept as it is (RFC 5424 section 6.3.3). A parameter repeated within an
/// element becomes a list.
fn parse_structured_data<'a>(event: &mut Event, mut s: &'a str) -> Result<&'a str, String> {
    while let Some(body) = s.strip_prefix('[') {
        let id_end = body
            .find([' ', ']', '=', '"'])
            .ok_or_else(|| format!("structured data: element \"[{}\" is not closed with ']'", excerpt(body)))?;
        let (id, mut rest) = body.split_at(id_end);
        if id.is_empty() {
            return Err("structured data: element without an SD-ID".into());
        }
        if rest.starts_with(['=', '"']) {
            return Err(format!("structured data: invalid SD-ID \"{}\"", excerpt(&body[..=id_end])));
        }
        loop {
            // RFC 5424 puts exactly one space before each parameter; accept more.
            rest = rest.trim_start_matches(' ');
            if let Some(after) = rest.strip_prefix(']') {
                s = after;
                break;
            }
            if rest.is_empty() {
                return Err(format!("structured data: element [{id} is not closed with ']'"));
            }
            let name_end = rest
                .find(['=', ' ', ']', '"'])
                .ok_or_else(|| format!("structured data: parameter \"{}\" in [{id}] has no value", excerpt(rest)))?;
            let name = &rest[..name_end];
            if name.is_empty() {
                return Err(format!("structured data: parameter without a name in [{id}]"));
            }
            let Some(quoted) = rest[name_end..].strip_prefix("=\"") else {
                return Err(format!("structured data: parameter {name} in [{id}] must be written {name}=\"value\""));
            };
            let (value, after) = sd_param_value(quoted)
                .ok_or_else(|| format!("structured data: value of {name} in [{id}] is not closed with '\"'"))?;
            add_sd_param(event, id, name, value);
            rest = after;
        }
    }
    Ok(s)
}

/// Reads an SD PARAM-VALUE up to its closing unescaped `"`; returns the unescaped value and
/// the text after the quote, or `None` if the quote is missing.
fn sd_param_value(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => match s[i + 1..].chars().next() {
                Some(next @ ('"' | '\\' | ']')) => {
                    value.push(next);
                    chars.next();
                }
                _ => value.push('\\'),
            },
            c => value.push(c),
        }
    }
    None
}

fn add_sd_param(event: &mut Event, id: &str, name: &str, value: String) {
    let field = format!("sd.{id}.{name}");
    let value = Value::str(value);
    let merged = match event.get_exact(&field) {
        None => value,
        Some(Value::List(items)) => {
            let mut items = items.clone();
            items.push(value);
            Value::List(items)
        }
        Some(first) => Value::List(vec![first.clone(), value]),
    };
    event.set(field, merged);
}

/// Splits an optional `<PRI>` off the start of a line. `Err` when the line starts with `<`
/// but no valid PRI follows.
fn split_pri(line: &str) -> Result<(Option<u8>, &str), String> {
    let Some(after) = line.strip_prefix('<') else {
        return Ok((None, line));
    };
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    let invalid = || format!("invalid PRI \"{}\": expected <0> to <191> at the start", excerpt(line));
    if digits == 0 || digits > 3 || after.as_bytes().get(digits) != Some(&b'>') {
        return Err(invalid());
    }
    let pri: u16 = after[..digits].parse().map_err(|_| invalid())?;
    let pri = u8::try_from(pri)
        .ok()
        .filter(|p| *p <= 191)
        .ok_or_else(|| format!("invalid PRI <{pri}>: the priority must be between 0 and 191"))?;
    Ok((Some(pri), &after[digits + 1..]))
}

/// RFC 5424's VERSION right after the PRI: digits followed by a space. `None` when the text
/// after the PRI does not start that way (a BSD line).
fn split_version(s: &str) -> Option<(&str, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0 && digits <= 3 && s.as_bytes().get(digits) == Some(&b' ')).then(|| (&s[..digits], &s[digits + 1..]))
}

/// The parts of a BSD timestamp `Mmm dd hh:mm:ss[.fraction]`.
struct BsdTime {
    month: i8,
    day: i8,
    hour: i8,
    minute: i8,
    second: i8,
    nanosecond: i32,
}

impl BsdTime {
    fn in_year(&self, year: i16) -> Result<Timestamp, String> {
        let invalid = || {
            format!(
                "invalid date {:02}-{:02} {:02}:{:02}:{:02} in the assumed year {year}",
                self.month, self.day, self.hour, self.minute, self.second
            )
        };
        let dt = DateTime::new(year, self.month, self.day, self.hour, self.minute, self.second, self.nanosecond)
            .map_err(|_| invalid())?;
        Offset::UTC.to_timestamp(dt).map_err(|_| invalid())
    }
}

/// Reads a BSD timestamp at the start of `s` (the day may be space-padded: `Nov  2`); returns
/// it and the text after the space that follows it.
fn bsd_timestamp(s: &str) -> Option<(BsdTime, &str)> {
    let month = month_number(s.get(..3)?)?;
    let s = s[3..].strip_prefix(' ')?;
    let s = s.strip_prefix(' ').unwrap_or(s);
    let (day, s) = number(s, 1, 2)?;
    let s = s.strip_prefix(' ')?;
    let (hour, s) = number(s, 2, 2)?;
    let (minute, s) = number(s.strip_prefix(':')?, 2, 2)?;
    let (second, s) = number(s.strip_prefix(':')?, 2, 2)?;
    // Some daemons add fractional seconds (`07:11:15.123`).
    let (nanosecond, s) = match s.strip_prefix('.') {
        Some(frac) => {
            let len = frac.bytes().take_while(u8::is_ascii_digit).count();
            if len == 0 {
                return None;
            }
            let nanos = frac[..len.min(9)]
                .bytes()
                .chain(std::iter::repeat(b'0'))
                .take(9)
                .fold(0i32, |n, b| n * 10 + i32::from(b - b'0'));
            (nanos, &frac[len..])
        }
        None => (0, s),
    };
    let rest = if s.is_empty() { s } else { s.strip_prefix(' ')? };
    let field = |n: u32| i8::try_from(n).ok();
    let t = BsdTime {
        month,
        day: field(day)?,
        hour: field(hour)?,
        minute: field(minute)?,
        second: field(second)?,
        nanosecond,
    };
    Some((t, rest))
}

/// `min..=max` ASCII digits at the start of `s`, and the rest.
fn number(s: &str, min: usize, max: usize) -> Option<(u32, &str)> {
    let len = s.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if len < min {
        return None;
    }
    Some((s[..len].parse().ok()?, &s[len..]))
}

fn month_number(name: &str) -> Option<i8> {
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let i = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name))?;
    i8::try_from(i + 1).ok()
}

/// Reads an ISO 8601 / RFC 3339 date-time (`2026-11-28T07:11:15.123456+00:00`) at the start of
/// `s`; without an offset it is taken as UTC. Returns it and the text after the next space.
fn iso_timestamp(s: &str) -> Option<(Timestamp, &str)> {
    let (token, rest) = s.split_once(' ').unwrap_or((s, ""));
    let b = token.as_bytes();
    // Quick shape check before handing the token to jiff: `YYYY-MM-DDT...`.
    if b.len() < 19 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let ts = match token.parse::<Timestamp>() {
        Ok(ts) => ts,
        Err(_) => Offset::UTC.to_timestamp(token.parse::<DateTime>().ok()?).ok()?,
    };
    Some((ts, rest))
}

/// Splits a BSD TAG (`app[pid]:` or `app:`) off the start of `s`. Returns the app and pid
/// when there is a tag, and the text after it; without a tag, all of `s` is the message.
fn split_tag(s: &str) -> (Option<(&str, Option<&str>)>, &str) {
    let Some(end) = s.find(['[', ':', ' ']) else {
        return (None, s);
    };
    let app = &s[..end];
    if app.is_empty() {
        return (None, s);
    }
    let rest = &s[end..];
    if let Some(msg) = rest.strip_prefix(':') {
        return (Some((app, None)), msg);
    }
    if let Some(bracketed) = rest.strip_prefix('[')
        && let Some((pid, after)) = bracketed.split_once(']')
        && !pid.contains(' ')
        && let Some(msg) = after.strip_prefix(':')
    {
        return (Some((app, Some(pid))), msg);
    }
    (None, s)
}

/// A number when the text is one (PROCID is usually a PID), the text otherwise.
fn number_or_text(s: &str) -> Value {
    match s.parse::<i64>() {
        Ok(n) => Value::Int(n),
        Err(_) => Value::str(s),
    }
}

/// The start of `s`, for error messages.
fn excerpt(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::Source;
    use crate::read::{Item, TextReader};

    fn parse_with(format: &mut SyslogFormat, line: &str) -> Result<Option<Event>, String> {
        let source = Source::file("test.log");
        format.parse_line(line, EventStub { source: &source, line: 7 })
    }

    fn parse(line: &str) -> Event {
        match parse_with(&mut SyslogFormat::with_year(2026), line) {
            Ok(Some(event)) => event,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn error(line: &str) -> String {
        match parse_with(&mut SyslogFormat::with_year(2026), line) {
            Err(message) => message,
            other => panic!("{line:?} should be an error, gave {other:?}"),
        }
    }

    fn text(event: &Event, name: &str) -> Option<String> {
        event.get_exact(name).and_then(Value::as_text).map(|t| t.into_owned())
    }

    fn ts(s: &str) -> Option<Timestamp> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn rfc5424_example_1_no_structured_data() {
        let line = "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{FEFF}'su root' failed for lonvick on /dev/pts/8";
        let e = parse(line);
        assert_eq!(e.product, Product::Linux);
        assert_eq!(e.format, "syslog");
        assert_eq!(e.position, Position::Line(7));
        assert_eq!(&*e.raw, line);
        assert_eq!(e.timestamp, ts("2003-10-11T22:14:15.003Z"));
        assert_eq!(e.get_exact("facility"), Some(&Value::Int(4)));
        assert_eq!(e.get_exact("severity"), Some(&Value::Int(2)));
        assert_eq!(text(&e, "host").as_deref(), Some("mymachine.example.com"));
        assert_eq!(text(&e, "app").as_deref(), Some("su"));
        assert_eq!(e.get_exact("pid"), None);
        assert_eq!(text(&e, "msgid").as_deref(), Some("ID47"));
        assert_eq!(text(&e, "message").as_deref(), Some("'su root' failed for lonvick on /dev/pts/8"));
    }

    #[test]
    fn rfc5424_example_2_offset_and_nil_msgid() {
        let e = parse(
            "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
        );
        assert_eq!(e.timestamp, ts("2003-08-24T12:14:15.000003Z"));
        assert_eq!(e.get_exact("facility"), Some(&Value::Int(20)));
        assert_eq!(e.get_exact("severity"), Some(&Value::Int(5)));
        assert_eq!(text(&e, "host").as_deref(), Some("192.0.2.1"));
        assert_eq!(text(&e, "app").as_deref(), Some("myproc"));
        assert_eq!(e.get_exact("pid"), Some(&Value::Int(8710)));
        assert_eq!(e.get_exact("msgid"), None);
        assert_eq!(text(&e, "message").as_deref(), Some("%% It's time to make the do-nuts."));
    }

    #[test]
    fn rfc5424_example_3_structured_data_and_message() {
        let e = parse(
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 \
             [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \u{FEFF}An application event log entry...",
        );
        assert_eq!(text(&e, "sd.exampleSDID@32473.iut").as_deref(), Some("3"));
        assert_eq!(text(&e, "sd.exampleSDID@32473.eventSource").as_deref(), Some("Application"));
        assert_eq!(text(&e, "sd.exampleSDID@32473.eventID").as_deref(), Some("1011"));
        assert_eq!(text(&e, "message").as_deref(), Some("An application event log entry..."));
    }

    #[test]
    fn rfc5424_example_4_two_elements_no_message() {
        let e = parse(
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 \
             [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]",
        );
        assert_eq!(text(&e, "sd.exampleSDID@32473.eventID").as_deref(), Some("1011"));
        assert_eq!(text(&e, "sd.examplePriority@32473.class").as_deref(), Some("high"));
        assert_eq!(e.get_exact("message"), None);
    }

    #[test]
    fn rfc5424_escapes_nil_values_and_repeated_params() {
        let e = parse(r#"<13>1 - - - - - [x@1 q="say \"hi\"" p="C:\\dir\]" raw="a\b" r="1" r="2"] done"#);
        assert_eq!(e.timestamp, None);
        assert_eq!(e.get_exact("host"), None);
        assert_eq!(e.get_exact("app"), None);
        assert_eq!(text(&e, "sd.x@1.q").as_deref(), Some(r#"say "hi""#));
        assert_eq!(text(&e, "sd.x@1.p").as_deref(), Some(r"C:\dir]"));
        assert_eq!(text(&e, "sd.x@1.raw").as_deref(), Some(r"a\b"));
        assert_eq!(e.get_exact("sd.x@1.r"), Some(&Value::List(vec![Value::str("1"), Value::str("2")])));
        assert_eq!(text(&e, "message").as_deref(), Some("done"));
    }

    #[test]
    fn auth_log_sshd_lines() {
        let e = parse(
            "Nov 28 07:11:15 web01 sshd[812]: Failed password for invalid user admin from 203.0.113.9 port 51234 ssh2",
        );
        assert_eq!(e.timestamp, ts("2026-11-28T07:11:15Z"));
        assert_eq!(e.get_exact("facility"), None);
        assert_eq!(text(&e, "host").as_deref(), Some("web01"));
        assert_eq!(text(&e, "app").as_deref(), Some("sshd"));
        assert_eq!(e.get_exact("pid"), Some(&Value::Int(812)));
        assert_eq!(
            text(&e, "message").as_deref(),
            Some("Failed password for invalid user admin from 203.0.113.9 port 51234 ssh2")
        );
        assert_eq!(e.host().as_deref(), Some("web01"));

        let e = parse(
            "Nov  2 09:03:44 bastion sshd[2201]: Accepted publickey for deploy from 198.51.100.23 port 40022 ssh2: ED25519 SHA256:Xk3v",
        );
        assert_eq!(e.timestamp, ts("2026-11-02T09:03:44Z"));
        assert_eq!(
            text(&e, "message").as_deref(),
            Some("Accepted publickey for deploy from 198.51.100.23 port 40022 ssh2: ED25519 SHA256:Xk3v")
        );
    }

    #[test]
    fn auth_log_sudo_and_untagged_lines() {
        let e = parse(
            "Nov 28 07:12:01 web01 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/cat /etc/shadow",
        );
        assert_eq!(text(&e, "app").as_deref(), Some("sudo"));
        assert_eq!(e.get_exact("pid"), None);
        assert_eq!(
            text(&e, "message").as_deref(),
            Some("alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/cat /etc/shadow")
        );
        let e = parse(
            "Nov 28 07:12:01 web01 sudo: pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)",
        );
        assert_eq!(
            text(&e, "message").as_deref(),
            Some("pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)")
        );

        // RFC 3164 section 5.4 examples: with PRI, with and without a tag.
        let e = parse("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(e.get_exact("facility"), Some(&Value::Int(4)));
        assert_eq!(text(&e, "app").as_deref(), Some("su"));
        let e = parse("<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!");
        assert_eq!(text(&e, "host").as_deref(), Some("10.0.0.99"));
        assert_eq!(e.get_exact("app"), None);
        assert_eq!(text(&e, "message").as_deref(), Some("Use the BFG!"));
    }

    #[test]
    fn rsyslog_high_precision_timestamps() {
        let e =
            parse("2026-11-28T07:11:15.123456+02:00 web01 sshd[812]: Connection closed by 192.0.2.7 port 22 [preauth]");
        assert_eq!(e.timestamp, ts("2026-11-28T05:11:15.123456Z"));
        assert_eq!(text(&e, "host").as_deref(), Some("web01"));
        assert_eq!(e.get_exact("pid"), Some(&Value::Int(812)));
        assert_eq!(text(&e, "message").as_deref(), Some("Connection closed by 192.0.2.7 port 22 [preauth]"));
        // No offset: UTC.
        let e = parse("2026-11-28T07:11:15 web01 CRON[99]: (root) CMD (run-parts /etc/cron.hourly)");
        assert_eq!(e.timestamp, ts("2026-11-28T07:11:15Z"));
    }

    #[test]
    fn bsd_year_follows_the_file_across_new_year() {
        let mut f = SyslogFormat::with_year(2025);
        let mut when = |line: &str| parse_with(&mut f, line).unwrap().unwrap().timestamp;
        assert_eq!(when("Dec 31 23:59:58 h app: a"), ts("2025-12-31T23:59:58Z"));
        assert_eq!(when("Jan  1 00:00:01 h app: b"), ts("2026-01-01T00:00:01Z"));
        assert_eq!(when("Jan  1 00:00:02 h app: c"), ts("2026-01-01T00:00:02Z"));
    }

    #[test]
    fn default_steps_back_a_year_for_future_dates() {
        let now = Timestamp::now();
        let mut f = SyslogFormat::default();
        let year = f.year;
        // A date ten days ahead is in the future unless it wraps into next year, in which case
        // it is simply next year's date: either way the reader must not date it after `now`.
        let ahead = Offset::UTC.to_datetime(now.saturating_add(jiff::SignedDuration::from_hours(240)).unwrap());
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let line = format!("{} {:2} 12:00:00 h app: x", months[ahead.month() as usize - 1], ahead.day());
        let t = parse_with(&mut f, &line).unwrap().unwrap().timestamp.unwrap();
        assert!(t < now, "{t} should be before {now}");
        assert!(f.year == year - 1 || ahead.year() != year);
    }

    #[test]
    fn malformed_lines_are_errors_with_reasons() {
        assert!(error("<999>1 2003-10-11T22:14:15.003Z h a - - - x").contains("between 0 and 191"));
        assert!(error("<192>Nov 28 07:11:15 h a: x").contains("invalid PRI <192>"));
        assert!(error("<abc>Nov 28 07:11:15 h a: x").contains("invalid PRI"));
        assert!(error("<34 Nov 28 07:11:15 h a: x").contains("invalid PRI"));
        assert!(error("<34>1 2003-10-11T22:14:15.003Z h a - ID47 [id p=\"v\"").contains("not closed with ']'"));
        assert!(
            error("<34>1 2003-10-11T22:14:15.003Z h a - ID47 [id p=\"v] msg")
                .contains("value of p in [id] is not closed")
        );
        assert!(error("<34>1 2003-10-11T22:14:15.003Z h a - ID47 [id p=v] msg").contains("p=\"value\""));
        assert!(error("<34>1 2003-10-11T22:14:15.003Z h a - ID47 [ p=\"v\"] msg").contains("without an SD-ID"));
        assert!(
            error("<34>1 2003-10-11T22:14:15.003Z h a - ID47 [id p=\"v\"]msg").contains("right after STRUCTURED-DATA")
        );
        assert!(error("<34>1 2003-10-11T22:14:15.003Z h a - ID47 hello").contains("expected STRUCTURED-DATA"));
        assert!(error("<34>1 2003-10-11T22:14:15.003Z h a").contains("before or within APP-NAME"));
        assert!(error("<34>1 2003-10-11T22:14:15.003Z h a - ID47").contains("before or within MSGID"));
        assert!(error("<34>1 2003-10-11T22:14:15.003Z h a - ID47 ").contains("before STRUCTURED-DATA"));
        assert!(error("<34>1 yesterday h a - - -").contains("invalid TIMESTAMP \"yesterday\""));
        assert!(error("<34>1  h a - - -").contains("empty TIMESTAMP"));
        assert!(error("<34>2 2003-10-11T22:14:15.003Z h a - - -").contains("VERSION 2"));
        assert!(error("<34>hello").contains("after <PRI>"));
        assert!(error("just some words").contains("not a syslog line"));
        assert!(error("Feb 30 07:11:15 h a: x").contains("invalid date 02-30"));
        assert!(error("Nov 28 07:11:15 ").contains("missing HOSTNAME"));
    }

    #[test]
    fn detection() {
        for yes in [
            "<34>1 2003-10-11T22:14:15.003Z mymachine su - ID47 - 'su root' failed",
            "<34>Oct 11 22:14:15 mymachine su: 'su root' failed",
            "Nov 28 07:11:15 web01 sshd[812]: Accepted password for root",
            "Nov  2 07:11:15 web01 kernel: [0.000000] Linux version",
            "2026-11-28T07:11:15.123456+00:00 web01 sshd[812]: Accepted password for root",
            "2026-11-28T07:11:15.123456+00:00 web01 systemd: Started Session 1.",
        ] {
            assert!(looks_like_syslog(yes), "{yes}");
        }
        for no in [
            "just some words",
            "<999>1 2003-10-11T22:14:15.003Z h a - - -",
            "2026-11-28T07:11:15Z INFO starting server",
            "2026-11-28 07:11:15 web01 sshd[812]: x",
            "November rain",
            "",
        ] {
            assert!(!looks_like_syslog(no), "{no}");
        }
    }

    proptest::proptest! {
        /// Any line gives an event or an error, never a panic; detection never panics either.
        #[test]
        fn arbitrary_lines_never_panic(line in "(<[0-9]{0,4}>?)?(1 )?[ -~\u{e9}\u{FEFF}]{0,80}") {
            let _ = looks_like_syslog(&line);
            let _ = parse_with(&mut SyslogFormat::with_year(2026), &line);
        }

        #[test]
        fn structured_data_shapes_never_panic(sd in r#"[\[\]a-z="\\ ]{0,40}"#) {
            let line = format!("<13>1 2026-11-28T07:11:15Z h app - - {sd}");
            let _ = parse_with(&mut SyslogFormat::with_year(2026), &line);
        }
    }

    #[test]
    fn auth_log_fixture_through_text_reader() {
        let data = include_bytes!("../../testdata/syslog/auth.log");
        let reader = TextReader::new(&data[..], SyslogFormat::with_year(2026), Source::file("auth.log"));
        let mut events = Vec::new();
        let mut diagnostics = Vec::new();
        for item in reader {
            match item {
                Item::Event(e) => events.push(e),
                Item::Diagnostic(d) => diagnostics.push(d),
            }
        }
        assert_eq!(events.len(), 8);
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        assert_eq!(diagnostics[0].position, Some(Position::Line(6)));
        assert!(diagnostics[0].message.contains("invalid PRI <999>"));

        let failed: Vec<_> =
            events.iter().filter(|e| text(e, "message").is_some_and(|m| m.starts_with("Failed password"))).collect();
        assert_eq!(failed.len(), 3);
        assert!(failed.iter().all(|e| text(e, "app").as_deref() == Some("sshd")));
        assert_eq!(failed[0].position, Position::Line(1));
        assert_eq!(failed[0].timestamp, ts("2026-11-28T07:11:15Z"));
        assert!(Arc::ptr_eq(&failed[0].source, &events[1].source));

        let sudo = events.iter().find(|e| text(e, "app").as_deref() == Some("sudo")).unwrap();
        assert!(text(sudo, "message").unwrap().contains("COMMAND=/usr/bin/id"));

        let rfc5424 = events.last().unwrap();
        assert_eq!(text(rfc5424, "sd.origin.ip").as_deref(), Some("192.0.2.10"));
        assert_eq!(rfc5424.get_exact("severity"), Some(&Value::Int(6)));
    }
}
