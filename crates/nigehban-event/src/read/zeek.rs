//! Zeek's tab-separated logs (`conn.log`, `dns.log`, `http.log`, `ssl.log` …).
//!
//! A Zeek TSV log starts with a header that says how to read the lines after it (columns are
//! separated by tabs, shown here as two spaces):
//!
//! ```text
//! #separator \x09
//! #set_separator  ,
//! #empty_field  (empty)
//! #unset_field  -
//! #path  conn
//! #open  2026-11-28-07-00-00
//! #fields  ts  uid  id.orig_h  id.orig_p  …
//! #types  time  string  addr  port  …
//! ```
//!
//! Each data line becomes an event with one field per column, named exactly as in `#fields`
//! and typed by `#types`: `time` is a float of epoch seconds and also sets the event's
//! timestamp; `count`, `int` and `port` are integers; `interval` and `double` are floats;
//! `bool` (`T`/`F`) is a boolean; `set[..]`, `vector[..]` and `table[..]` are lists; every
//! other type (`string`, `addr`, `subnet`, `enum` …) is text, with Zeek's `\xHH` escapes
//! decoded. An unset column (`-`) is left out; an empty one (`(empty)`) is an empty string or
//! list. The field `_path` holds the log's path (`conn`, `dns` …) from `#path`, or the one
//! given to [`ZeekTsvFormat::with_path`].
//!
//! Zeek's JSON logs are read by the JSON reader, which calls [`set_zeek_timestamp`].

use std::borrow::Cow;

use jiff::Timestamp;

use super::{EventStub, LineFormat};
use crate::event::{Event, Position, Product};
use crate::value::Value;

/// How a column's values are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scalar {
    /// Epoch seconds: a float, and the event's timestamp.
    Time,
    Int,
    Float,
    Bool,
    Text,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ColumnType {
    scalar: Scalar,
    /// `set[..]`, `vector[..]` or `table[..]`: a list of `scalar`.
    list: bool,
}

impl ColumnType {
    const TEXT: ColumnType = ColumnType { scalar: Scalar::Text, list: false };

    /// Reads a `#types` entry. Unknown types are read as text.
    fn parse(name: &str) -> ColumnType {
        let inner =
            ["set[", "vector[", "table["].iter().find_map(|prefix| name.strip_prefix(prefix)?.strip_suffix(']'));
        let scalar = match inner.unwrap_or(name) {
            "time" => Scalar::Time,
            "count" | "int" | "port" => Scalar::Int,
            "interval" | "double" => Scalar::Float,
            "bool" => Scalar::Bool,
            _ => Scalar::Text,
        };
        ColumnType { scalar, list: inner.is_some() }
    }
}

/// One column of the log: its name from `#fields`, its Zeek type name and how it is read.
#[derive(Clone, Debug)]
struct Column {
    name: Box<str>,
    zeek_type: Box<str>,
    kind: ColumnType,
}

/// The Zeek TSV line format. It keeps the header it has read; a new `#separator` line (logs
/// concatenated with `cat`) starts over.
#[derive(Debug)]
pub struct ZeekTsvFormat {
    separator: String,
    set_separator: String,
    empty_field: String,
    unset_field: String,
    /// From `#path`.
    path: Option<String>,
    /// From the caller, used when the header has no `#path`.
    path_hint: Option<String>,
    /// From `#fields` (and `#types`); `None` until `#fields` is read.
    columns: Option<Vec<Column>>,
}

impl Default for ZeekTsvFormat {
    fn default() -> Self {
        ZeekTsvFormat {
            separator: "\t".into(),
            set_separator: ",".into(),
            empty_field: "(empty)".into(),
            unset_field: "-".into(),
            path: None,
            path_hint: None,
            columns: None,
        }
    }
}

impl ZeekTsvFormat {
    /// A reader whose events get `_path` = `path` unless the log's own `#path` says otherwise
    /// (for example the file name's stem, `conn` for `conn.00:00:00-01:00:00.log`).
    pub fn with_path(path: impl Into<String>) -> Self {
        ZeekTsvFormat { path_hint: Some(path.into()), ..ZeekTsvFormat::default() }
    }

    /// Reads a `#...` header line. Unknown directives (and `#open`/`#close`) are ignored.
    fn header(&mut self, line: &str) -> Result<(), String> {
        // `#separator` is always followed by a space: the separator is not known yet.
        if let Some(value) = line.strip_prefix("#separator") {
            let separator = unescape_bytes(value.trim_start_matches([' ', '\t']));
            let separator = String::from_utf8(separator).map_err(|_| "#separator is not valid UTF-8".to_string())?;
            if separator.is_empty() {
                return Err("#separator is empty".into());
            }
            // A new header block: forget the previous one.
            *self = ZeekTsvFormat { separator, path_hint: self.path_hint.take(), ..ZeekTsvFormat::default() };
            return Ok(());
        }
        let (key, value) = match line.split_once(self.separator.as_str()) {
            Some(split) => split,
            // Be lenient with headers whose tabs were turned into spaces.
            None => line.split_once(' ').unwrap_or((line, "")),
        };
        match key {
            "#set_separator" => self.set_separator = String::from_utf8_lossy(&unescape_bytes(value)).into_owned(),
            "#empty_field" => self.empty_field = value.into(),
            "#unset_field" => self.unset_field = value.into(),
            "#path" => self.path = Some(value.into()),
            "#fields" => {
                let columns = value
                    .split(self.separator.as_str())
                    .map(|name| {
                        // Until `#types` says otherwise, `ts` is a time and the rest is text.
                        let (zeek_type, kind) = if name == "ts" {
                            ("time", ColumnType { scalar: Scalar::Time, list: false })
                        } else {
                            ("string", ColumnType::TEXT)
                        };
                        Column { name: name.into(), zeek_type: zeek_type.into(), kind }
                    })
                    .collect();
                self.columns = Some(columns);
            }
            "#types" => {
                let Some(columns) = self.columns.as_mut() else {
                    return Err("#types before #fields".into());
                };
                let types: Vec<&str> = value.split(self.separator.as_str()).collect();
                if types.len() != columns.len() {
                    return Err(format!(
                        "#types lists {} types but #fields names {} fields; reading all fields as text",
                        types.len(),
                        columns.len()
                    ));
                }
                for (column, zeek_type) in columns.iter_mut().zip(types) {
                    column.zeek_type = zeek_type.into();
                    column.kind = ColumnType::parse(zeek_type);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Converts one column of a data line; `None` for an unset value.
    fn value(&self, column: &Column, raw: &str) -> Result<Option<Value>, String> {
        if raw == self.unset_field {
            return Ok(None);
        }
        let kind = column.kind;
        if raw == self.empty_field && (kind.list || kind.scalar == Scalar::Text) {
            return Ok(Some(if kind.list { Value::List(Vec::new()) } else { Value::str("") }));
        }
        if !kind.list {
            return scalar(kind.scalar, raw).map(Some).map_err(|e| self.bad_value(column, raw, e));
        }
        let mut items = Vec::new();
        for element in raw.split(self.set_separator.as_str()) {
            items.push(if element == self.unset_field {
                Value::Null
            } else {
                scalar(kind.scalar, element).map_err(|e| self.bad_value(column, raw, e))?
            });
        }
        Ok(Some(Value::List(items)))
    }

    fn bad_value(&self, column: &Column, raw: &str, what: &str) -> String {
        let shown: String = raw.chars().take(40).collect();
        format!("field {} ({}): {what} \"{shown}\"", column.name, column.zeek_type)
    }
}

/// Converts a scalar value (or a list element). `Err` names what was expected.
fn scalar(kind: Scalar, raw: &str) -> Result<Value, &'static str> {
    Ok(match kind {
        Scalar::Text => match unescape(raw) {
            Cow::Borrowed(s) => Value::str(s),
            Cow::Owned(s) => Value::str(s),
        },
        Scalar::Int => match raw.parse::<i64>() {
            Ok(i) => Value::Int(i),
            // A `count` above i64::MAX: keep the exact digits.
            Err(_) if raw.parse::<u64>().is_ok() => Value::str(raw),
            Err(_) => return Err("not an integer"),
        },
        Scalar::Float | Scalar::Time => Value::Float(raw.parse::<f64>().map_err(|_| "not a number")?),
        Scalar::Bool => match raw {
            "T" => Value::Bool(true),
            "F" => Value::Bool(false),
            _ => return Err("not a bool (T or F)"),
        },
    })
}

impl LineFormat for ZeekTsvFormat {
    fn parse_line(&mut self, line: &str, stub: EventStub<'_>) -> Result<Option<Event>, String> {
        if line.starts_with('#') {
            self.header(line)?;
            return Ok(None);
        }
        let Some(columns) = &self.columns else {
            return Err("Zeek data line before the #fields header".into());
        };
        let found = line.split(self.separator.as_str()).count();
        if found != columns.len() {
            return Err(format!("expected {} fields (from #fields), found {found}", columns.len()));
        }

        let mut event = Event::new(stub.source.clone(), Position::Line(stub.line), Product::Zeek, "zeek");
        if let Some(path) = self.path.as_ref().or(self.path_hint.as_ref()) {
            event.set("_path", Value::str(path.as_str()));
        }
        for (column, raw) in columns.iter().zip(line.split(self.separator.as_str())) {
            let Some(value) = self.value(column, raw)? else {
                continue;
            };
            // The timestamp is the `ts` column, or else the first time column.
            if column.kind == (ColumnType { scalar: Scalar::Time, list: false })
                && (event.timestamp.is_none() || &*column.name == "ts")
            {
                let ts = parse_epoch_text(raw).or_else(|| value.as_f64().and_then(epoch_seconds));
                if ts.is_some() {
                    event.timestamp = ts;
                }
            }
            event.set(column.name.clone(), value);
        }
        event.raw = line.into();
        Ok(Some(event))
    }
}

/// Sets `event.timestamp` from its `ts` field: epoch seconds (a float, an integer or text) or
/// an RFC 3339 string (Zeek's JSON logs write either, depending on `json_timestamps`). Leaves
/// the timestamp alone when there is no readable `ts`.
pub fn set_zeek_timestamp(event: &mut Event) {
    let ts = match event.get_exact("ts") {
        Some(Value::Float(f)) => epoch_seconds(*f),
        Some(Value::Int(i)) => Timestamp::from_second(*i).ok(),
        Some(Value::Str(t)) => {
            let s = t.as_str().trim();
            parse_epoch_text(s)
                .or_else(|| s.parse::<Timestamp>().ok())
                .or_else(|| s.parse::<f64>().ok().and_then(epoch_seconds))
        }
        _ => None,
    };
    if ts.is_some() {
        event.timestamp = ts;
    }
}

/// Epoch seconds written as plain decimal digits (`1764313875.123456`), read exactly rather
/// than through a float. `None` for anything else (signs, exponents).
fn parse_epoch_text(s: &str) -> Option<Timestamp> {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds: i64 = whole.parse().ok()?;
    // Nanoseconds from the first nine fraction digits, padded with zeros.
    let nanos = fraction.bytes().chain(std::iter::repeat(b'0')).take(9).fold(0i32, |n, b| n * 10 + i32::from(b - b'0'));
    Timestamp::new(seconds, nanos).ok()
}

/// Epoch seconds as a float, rounded to the microsecond (Zeek's precision; a float of
/// today's epoch seconds cannot hold nanoseconds exactly).
fn epoch_seconds(f: f64) -> Option<Timestamp> {
    if !f.is_finite() {
        return None;
    }
    let mut seconds = f.floor();
    let mut micros = ((f - seconds) * 1e6).round();
    if micros >= 1e6 {
        seconds += 1.0;
        micros -= 1e6;
    }
    // Out-of-range floats saturate in `as`, and `Timestamp::new` rejects them.
    Timestamp::new(seconds as i64, micros as i32 * 1000).ok()
}

/// Decodes Zeek's `\xHH` escapes (for the separators, non-printable bytes, and values that
/// would read as `-` or `(empty)`). Text whose decoded bytes are not UTF-8 is kept escaped,
/// so nothing is lost.
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains("\\x") {
        return Cow::Borrowed(s);
    }
    match String::from_utf8(unescape_bytes(s)) {
        Ok(decoded) => Cow::Owned(decoded),
        Err(_) => Cow::Borrowed(s),
    }
}

fn unescape_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'x')
            && let (Some(hi), Some(lo)) = (b.get(i + 2).and_then(hex), b.get(i + 3).and_then(hex))
        {
            out.push(hi << 4 | lo);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn hex(b: &u8) -> Option<u8> {
    char::from(*b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;
    use crate::read::{Diagnostic, Item, TextReader};

    fn read(data: &[u8], format: ZeekTsvFormat) -> (Vec<Event>, Vec<Diagnostic>) {
        let mut events = Vec::new();
        let mut diagnostics = Vec::new();
        for item in TextReader::new(data, format, Source::file("zeek.log")) {
            match item {
                Item::Event(e) => events.push(*e),
                Item::Diagnostic(d) => diagnostics.push(d),
            }
        }
        (events, diagnostics)
    }

    fn read_ok(data: &[u8]) -> Vec<Event> {
        let (events, diagnostics) = read(data, ZeekTsvFormat::default());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        events
    }

    fn text(event: &Event, name: &str) -> Option<String> {
        event.get_exact(name).and_then(Value::as_text).map(Cow::into_owned)
    }

    fn strs(items: &[&str]) -> Value {
        Value::List(items.iter().map(|s| Value::str(*s)).collect())
    }

    fn ts(s: &str) -> Option<Timestamp> {
        Some(s.parse().unwrap())
    }

    /// A small log with the given `#fields`/`#types` and data lines (columns joined by tabs).
    fn log(fields: &str, types: &str, lines: &[&str]) -> String {
        let mut s =
            String::from("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\ttest\n");
        s += &format!("#fields\t{}\n#types\t{}\n", fields.replace(' ', "\t"), types.replace(' ', "\t"));
        for line in lines {
            s += &line.replace(' ', "\t");
            s.push('\n');
        }
        s
    }

    #[test]
    fn conn_log() {
        let events = read_ok(include_bytes!("../../testdata/zeek/conn.log"));
        assert_eq!(events.len(), 4);
        let e = &events[0];
        assert_eq!(e.product, Product::Zeek);
        assert_eq!(e.format, "zeek");
        assert_eq!(e.position, Position::Line(9));
        assert_eq!(e.timestamp, ts("2025-11-28T07:11:15.123456Z"));
        assert_eq!(e.get_exact("ts"), Some(&Value::Float(1764313875.123456)));
        assert_eq!(text(e, "_path").as_deref(), Some("conn"));
        assert_eq!(text(e, "uid").as_deref(), Some("CHhAvVGS1DHFjwGM9"));
        assert_eq!(text(e, "id.orig_h").as_deref(), Some("192.0.2.15"));
        assert_eq!(e.get_exact("id.orig_p"), Some(&Value::Int(49812)));
        assert_eq!(text(e, "id.resp_h").as_deref(), Some("203.0.113.80"));
        assert_eq!(e.get_exact("id.resp_p"), Some(&Value::Int(443)));
        assert_eq!(text(e, "proto").as_deref(), Some("tcp"));
        assert_eq!(text(e, "service").as_deref(), Some("ssl"));
        assert_eq!(e.get_exact("duration"), Some(&Value::Float(12.503817)));
        assert_eq!(e.get_exact("orig_bytes"), Some(&Value::Int(1532)));
        assert_eq!(e.get_exact("local_orig"), Some(&Value::Bool(true)));
        assert_eq!(e.get_exact("local_resp"), Some(&Value::Bool(false)));
        assert_eq!(text(e, "history").as_deref(), Some("ShADadFf"));
        assert_eq!(e.get_exact("tunnel_parents"), Some(&Value::List(vec![])));
        assert_eq!(e.host().as_deref(), Some("192.0.2.15"));
        assert!(e.raw.starts_with("1764313875.123456\tCHhAvVGS1DHFjwGM9\t"));

        // An S0 scan attempt: unset service, duration and byte counts are left out.
        let scan = &events[2];
        assert_eq!(text(scan, "conn_state").as_deref(), Some("S0"));
        for absent in ["service", "duration", "orig_bytes", "resp_bytes"] {
            assert_eq!(scan.get_exact(absent), None, "{absent}");
        }
        assert_eq!(scan.get_exact("missed_bytes"), Some(&Value::Int(0)));

        // A tunnelled connection lists its parents.
        assert_eq!(events[3].get_exact("tunnel_parents"), Some(&strs(&["CwFs1P2UcUdlSxD2La", "C3pzc0dOTsv3nk7yAd"])));
    }

    #[test]
    fn dns_log() {
        let events = read_ok(include_bytes!("../../testdata/zeek/dns.log"));
        assert_eq!(events.len(), 3);
        let e = &events[0];
        assert_eq!(text(e, "_path").as_deref(), Some("dns"));
        assert_eq!(text(e, "query").as_deref(), Some("updates.example.com"));
        assert_eq!(e.get_exact("qtype"), Some(&Value::Int(1)));
        assert_eq!(text(e, "qtype_name").as_deref(), Some("A"));
        assert_eq!(e.get_exact("rcode"), Some(&Value::Int(0)));
        assert_eq!(e.get_exact("RD"), Some(&Value::Bool(true)));
        assert_eq!(e.get_exact("answers"), Some(&strs(&["cdn.example.net", "198.51.100.44"])));
        assert_eq!(e.get_exact("TTLs"), Some(&Value::List(vec![Value::Float(300.0), Value::Float(60.0)])));
        assert_eq!(e.get_exact("rejected"), Some(&Value::Bool(false)));

        // NXDOMAIN: no answers.
        let nx = &events[1];
        assert_eq!(text(nx, "rcode_name").as_deref(), Some("NXDOMAIN"));
        assert_eq!(nx.get_exact("rtt"), Some(&Value::Float(0.034007)));
        assert_eq!(nx.get_exact("answers"), None);

        // A TXT answer with an escaped tab and comma.
        let txt = &events[2];
        assert_eq!(text(txt, "query").as_deref(), Some("aGVsbG8.exfil.example.org"));
        assert_eq!(txt.get_exact("answers"), Some(&strs(&["TXT 27 v=spf1\tinclude,x"])));
    }

    #[test]
    fn http_log() {
        let events = read_ok(include_bytes!("../../testdata/zeek/http.log"));
        assert_eq!(events.len(), 3);
        let e = &events[0];
        assert_eq!(text(e, "_path").as_deref(), Some("http"));
        assert_eq!(text(e, "method").as_deref(), Some("GET"));
        assert_eq!(text(e, "host").as_deref(), Some("www.example.com"));
        assert_eq!(text(e, "uri").as_deref(), Some("/index.html?q=a%20b"));
        assert_eq!(
            text(e, "user_agent").as_deref(),
            Some(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
            )
        );
        assert_eq!(e.get_exact("status_code"), Some(&Value::Int(200)));
        assert_eq!(e.get_exact("tags"), Some(&Value::List(vec![])));
        assert_eq!(e.get_exact("resp_mime_types"), Some(&strs(&["text/html"])));
        assert_eq!(e.get_exact("username"), None);

        let post = &events[1];
        assert_eq!(text(post, "method").as_deref(), Some("POST"));
        assert_eq!(text(post, "user_agent").as_deref(), Some("curl/8.5.0"));
        assert_eq!(text(post, "username").as_deref(), Some("admin"));
        assert_eq!(post.get_exact("request_body_len"), Some(&Value::Int(342)));
        assert_eq!(post.get_exact("orig_mime_types"), Some(&strs(&["application/x-dosexec"])));

        // A value that is literally "-" is written escaped, and reads back as "-".
        assert_eq!(text(&events[2], "referrer").as_deref(), Some("-"));
        assert_eq!(text(&events[2], "user_agent").as_deref(), Some(""));
    }

    #[test]
    fn ssl_log() {
        let events = read_ok(include_bytes!("../../testdata/zeek/ssl.log"));
        assert_eq!(events.len(), 2);
        let e = &events[0];
        assert_eq!(text(e, "_path").as_deref(), Some("ssl"));
        assert_eq!(text(e, "version").as_deref(), Some("TLSv13"));
        assert_eq!(text(e, "cipher").as_deref(), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(text(e, "server_name").as_deref(), Some("login.example.com"));
        assert_eq!(e.get_exact("established"), Some(&Value::Bool(true)));
        assert_eq!(e.get_exact("resumed"), Some(&Value::Bool(false)));
        assert_eq!(
            e.get_exact("cert_chain_fps"),
            Some(&strs(&["f1e2d3c4b5a6978877665544332211ffeeddccbb", "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d"]))
        );
        assert_eq!(e.get_exact("client_cert_chain_fps"), Some(&Value::List(vec![])));
        assert_eq!(text(&events[1], "validation_status").as_deref(), Some("self signed certificate"));
        assert_eq!(events[1].get_exact("server_name"), None);
    }

    #[test]
    fn errors_name_the_problem() {
        let data = log(
            "ts uid id.orig_p flag",
            "time string port bool",
            &[
                "1764313875.5 Cabc 80 T",
                "1764313876.5 Cabc 80",
                "1764313877.5 Cabc http T",
                "1764313878.5 Cabc 80 yes",
                "1764313879.5 Cabc 80 F extra",
            ],
        );
        let (events, diagnostics) = read(data.as_bytes(), ZeekTsvFormat::default());
        assert_eq!(events.len(), 1);
        let messages: Vec<_> = diagnostics.iter().map(|d| (d.position, d.message.as_str())).collect();
        assert_eq!(
            messages,
            [
                (Some(Position::Line(9)), "expected 4 fields (from #fields), found 3"),
                (Some(Position::Line(10)), "field id.orig_p (port): not an integer \"http\""),
                (Some(Position::Line(11)), "field flag (bool): not a bool (T or F) \"yes\""),
                (Some(Position::Line(12)), "expected 4 fields (from #fields), found 5"),
            ]
        );

        let (events, diagnostics) =
            read(b"1764313875.5\tCabc\n#fields\tts\tuid\n1764313875.5\tCabc\n", ZeekTsvFormat::default());
        assert_eq!(events.len(), 1);
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].position, Some(Position::Line(1)));
        assert_eq!(diagnostics[0].message, "Zeek data line before the #fields header");

        let (_, diagnostics) = read(b"#fields\tts\tuid\n#types\ttime\n", ZeekTsvFormat::default());
        assert!(diagnostics[0].message.contains("#types lists 1 types but #fields names 2"));
    }

    #[test]
    fn header_variants() {
        // No #path: the caller's path; no #types: text, except that `ts` is a time.
        let data = b"#fields\tts\tuid\tid.orig_p\n1764313875.25\tCabc\t80\n";
        let (events, diagnostics) = read(data, ZeekTsvFormat::with_path("conn"));
        assert!(diagnostics.is_empty());
        assert_eq!(text(&events[0], "_path").as_deref(), Some("conn"));
        assert_eq!(events[0].timestamp, ts("2025-11-28T07:11:15.25Z"));
        assert_eq!(events[0].get_exact("id.orig_p"), Some(&Value::str("80")));
        // Neither: no `_path`.
        assert_eq!(read_ok(data)[0].get_exact("_path"), None);

        // Another separator and set separator, and a second header block after the first.
        let mut data =
            String::from("#separator |\n#set_separator|;\n#path|weird\n#fields|ts|names\n#types|time|set[string]\n");
        data += "1764313875.0|a;b\n";
        data += &log("ts n", "time count", &["1764313999.000001 42"]);
        let (events, diagnostics) = read(data.as_bytes(), ZeekTsvFormat::with_path("hint"));
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(text(&events[0], "_path").as_deref(), Some("weird"));
        assert_eq!(events[0].get_exact("names"), Some(&strs(&["a", "b"])));
        assert_eq!(text(&events[1], "_path").as_deref(), Some("test"));
        assert_eq!(events[1].get_exact("n"), Some(&Value::Int(42)));
        assert_eq!(events[1].timestamp, ts("2025-11-28T07:13:19.000001Z"));
    }

    #[test]
    fn values() {
        let data = log(
            "ts big neg s v",
            "time count int string vector[count]",
            &["1764313875.123456789 18446744073709551615 -5 \\x2d 1,-,3", "1764313875 1 2 caf\\xc3\\xa9\\xff (empty)"],
        );
        let events = read_ok(data.as_bytes());
        let e = &events[0];
        assert_eq!(e.timestamp, ts("2025-11-28T07:11:15.123456789Z"));
        assert_eq!(e.get_exact("big"), Some(&Value::str("18446744073709551615")));
        assert_eq!(e.get_exact("neg"), Some(&Value::Int(-5)));
        assert_eq!(e.get_exact("s"), Some(&Value::str("-")));
        assert_eq!(e.get_exact("v"), Some(&Value::List(vec![Value::Int(1), Value::Null, Value::Int(3)])));
        // Escapes that decode to invalid UTF-8 are kept as written.
        assert_eq!(events[1].get_exact("s"), Some(&Value::str("caf\\xc3\\xa9\\xff")));
        assert_eq!(events[1].get_exact("v"), Some(&Value::List(vec![])));
        assert_eq!(unescape("caf\\xc3\\xa9 \\x4"), "café \\x4");
    }

    proptest::proptest! {
        /// Any data line under a typed header gives an event or an error, never a panic.
        #[test]
        fn arbitrary_values_never_panic(line in "[0-9a-zA-Z.,\\\\x()\t-]{0,60}") {
            let data = log("ts a b c d", "time count bool set[addr] string", &[]) + &line + "\n";
            let _ = read(data.as_bytes(), ZeekTsvFormat::default());
            let _ = unescape(&line);
        }
    }

    #[test]
    fn zeek_timestamp_from_json_shapes() {
        let source = Source::file("x");
        let cases = [
            (Value::Float(1764313875.123456), ts("2025-11-28T07:11:15.123456Z")),
            (Value::Int(1764313875), ts("2025-11-28T07:11:15Z")),
            (Value::str("2025-11-28T07:11:15.123456Z"), ts("2025-11-28T07:11:15.123456Z")),
            (Value::str("1764313875.5"), ts("2025-11-28T07:11:15.5Z")),
            (Value::str("yesterday"), None),
            (Value::Float(f64::NAN), None),
            (Value::Float(1e300), None),
        ];
        for (value, expected) in cases {
            let mut e = Event::new(source.clone(), Position::Line(1), Product::Zeek, "json");
            e.set("ts", value.clone());
            set_zeek_timestamp(&mut e);
            assert_eq!(e.timestamp, expected, "{value:?}");
        }
        let mut e = Event::new(source, Position::Line(1), Product::Zeek, "json");
        set_zeek_timestamp(&mut e);
        assert_eq!(e.timestamp, None);
    }
}
