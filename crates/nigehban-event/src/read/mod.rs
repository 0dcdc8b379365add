//! Readers: bytes in, [`Event`]s and [`Diagnostic`]s out.
//!
//! The caller opens files (and decompresses them); a reader only sees bytes. Text formats
//! are read line by line through [`TextReader`] with one [`LineFormat`] per format, so a
//! malformed line is reported with its number and the next line is read. EVTX is read chunk
//! by chunk (see [`evtx`]) so that large files can be parsed in parallel.

pub mod access;
mod auth;
pub mod azure;
mod cloud;
pub mod cloudtrail;
pub mod eml;
pub mod enrich;
pub mod evtx;
pub mod gcp;
pub mod json;
mod node;
mod postfix;
mod proxmox;
pub mod squid;
pub mod syslog;
mod vsphere;
pub mod windows;
pub mod zeek;
pub mod zimbra;

use std::io::BufRead;
use std::sync::Arc;

use crate::event::{Event, Position, Source};

/// A problem found while reading: what, where, and whether the reader could go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub source: String,
    pub position: Option<Position>,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.position {
            Some(p) => write!(f, "{}: {}: {}", self.source, p, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

/// What a reader yields: an event, or a diagnostic about input it skipped.
#[derive(Debug)]
pub enum Item {
    Event(Box<Event>),
    Diagnostic(Diagnostic),
}

/// The formats the readers recognise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Evtx,
    /// NDJSON, or JSON objects one after another (pretty-printed or not), or one JSON array.
    Json,
    /// RFC 5424 or RFC 3164 syslog lines (auth.log and friends).
    Syslog,
    /// Zeek's tab-separated logs with their `#fields` header.
    ZeekTsv,
    /// One RFC 5322 e-mail message (`.eml`): one event from its header block.
    Eml,
    /// Web server access logs (NCSA common / combined and their variants; pveproxy, Zimbra).
    AccessLog,
    /// Squid's native access log.
    Squid,
    /// Zimbra's `mailbox.log` and `audit.log`.
    Zimbra,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Evtx => "evtx",
            Format::Json => "json",
            Format::Syslog => "syslog",
            Format::ZeekTsv => "zeek",
            Format::Eml => "eml",
            Format::AccessLog => "access",
            Format::Squid => "squid",
            Format::Zimbra => "zimbra",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "evtx" => Format::Evtx,
            "json" | "ndjson" | "jsonl" => Format::Json,
            "syslog" => Format::Syslog,
            "zeek" | "zeek-tsv" => Format::ZeekTsv,
            "eml" | "email" => Format::Eml,
            "access" | "access-log" | "combined" | "clf" => Format::AccessLog,
            "squid" => Format::Squid,
            "zimbra" => Format::Zimbra,
            _ => return None,
        })
    }
}

/// Recognises a format from the first bytes of a (decompressed) file. `None` when the bytes
/// look like none of them: the caller reports the file as skipped.
pub fn detect_format(head: &[u8]) -> Option<Format> {
    if head.starts_with(evtx::FILE_MAGIC) {
        return Some(Format::Evtx);
    }
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = text.iter().position(|b| !b.is_ascii_whitespace())?;
    let text = &text[start..];
    if text.starts_with(b"#separator") || text.starts_with(b"#fields") {
        return Some(Format::ZeekTsv);
    }
    if text.starts_with(b"{") || text.starts_with(b"[") {
        return Some(Format::Json);
    }
    if eml::looks_like_eml(text) {
        return Some(Format::Eml);
    }
    let first_line = text.split(|b| *b == b'\n').next().unwrap_or(text);
    let first_line = String::from_utf8_lossy(first_line);
    if syslog::looks_like_syslog(&first_line) {
        return Some(Format::Syslog);
    }
    if squid::looks_like_squid(&first_line) {
        return Some(Format::Squid);
    }
    if zimbra::looks_like_zimbra(&first_line) {
        return Some(Format::Zimbra);
    }
    if access::looks_like_access_log(&first_line) {
        return Some(Format::AccessLog);
    }
    None
}

/// One text format, parsed a line at a time. A format may keep state between lines (Zeek's
/// header names the columns of the lines that follow).
pub trait LineFormat {
    /// Parses one line (without its line ending). `Ok(None)` for lines that carry no event
    /// (headers, comments, blank lines); `Err` for a line that should have been an event.
    fn parse_line(&mut self, line: &str, event: EventStub<'_>) -> Result<Option<Event>, String>;
}

/// What a [`LineFormat`] needs to build an event for a line.
pub struct EventStub<'a> {
    pub source: &'a Arc<Source>,
    pub line: u64,
}

/// Reads a text file line by line with one [`LineFormat`]. Lines that are not valid UTF-8 are
/// read lossily; a line that fails to parse becomes a diagnostic naming its number.
pub struct TextReader<R, F> {
    reader: R,
    format: F,
    source: Arc<Source>,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead, F: LineFormat> TextReader<R, F> {
    pub fn new(reader: R, format: F, source: Arc<Source>) -> Self {
        TextReader { reader, format, source, line: 0, buf: Vec::with_capacity(4096), done: false }
    }
}

impl<R: BufRead, F: LineFormat> Iterator for TextReader<R, F> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        while !self.done {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Item::Diagnostic(Diagnostic {
                        source: self.source.name.clone(),
                        position: Some(Position::Line(self.line + 1)),
                        message: format!("read error: {e}"),
                    }));
                }
            }
            self.line += 1;
            let mut bytes = &self.buf[..];
            while let Some((b'\n' | b'\r', rest)) = bytes.split_last() {
                bytes = rest;
            }
            if self.line == 1 {
                bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            }
            let line = String::from_utf8_lossy(bytes);
            if line.trim().is_empty() {
                continue;
            }
            let stub = EventStub { source: &self.source, line: self.line };
            match self.format.parse_line(&line, stub) {
                Ok(Some(event)) => return Some(Item::Event(Box::new(event))),
                Ok(None) => continue,
                Err(message) => {
                    return Some(Item::Diagnostic(Diagnostic {
                        source: self.source.name.clone(),
                        position: Some(Position::Line(self.line)),
                        message,
                    }));
                }
            }
        }
        None
    }
}

/// Reads any text format from `reader`. EVTX is not a text format: use [`evtx`].
pub fn read_text<'r, R: BufRead + 'r>(
    format: Format,
    reader: R,
    source: Arc<Source>,
) -> Box<dyn Iterator<Item = Item> + 'r> {
    match format {
        Format::Json => Box::new(json::JsonReader::new(reader, source)),
        Format::Syslog => Box::new(TextReader::new(reader, syslog::SyslogFormat::default(), source)),
        Format::ZeekTsv => Box::new(TextReader::new(reader, zeek::ZeekTsvFormat::default(), source)),
        Format::Eml => Box::new(eml::EmlReader::new(reader, source)),
        Format::AccessLog => Box::new(TextReader::new(reader, access::AccessLogFormat::default(), source)),
        Format::Squid => Box::new(TextReader::new(reader, squid::SquidFormat, source)),
        Format::Zimbra => Box::new(TextReader::new(reader, zimbra::ZimbraFormat::default(), source)),
        Format::Evtx => Box::new(std::iter::once(Item::Diagnostic(Diagnostic {
            source: source.name.clone(),
            position: None,
            message: "EVTX is a binary format; read it with the EVTX chunk reader".into(),
        }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised_by_content() {
        assert_eq!(detect_format(b"ElfFile\0rest"), Some(Format::Evtx));
        assert_eq!(detect_format(b"  {\"a\":1}\n"), Some(Format::Json));
        assert_eq!(detect_format(b"#separator \\x09\n#set_separator\t,\n"), Some(Format::ZeekTsv));
        assert_eq!(
            detect_format(b"<34>1 2003-10-11T22:14:15.003Z mymachine su - ID47 - 'su root' failed\n"),
            Some(Format::Syslog)
        );
        assert_eq!(
            detect_format(b"Nov 28 07:11:15 web01 sshd[812]: Accepted password for root\n"),
            Some(Format::Syslog)
        );
        assert_eq!(detect_format(b"just some words\n"), None);
        assert_eq!(
            detect_format(b"Return-Path: <a@b.example>\nReceived: from x (x [192.0.2.1])\n\tby y; Mon, 3 Jun 2024\n"),
            Some(Format::Eml)
        );
        assert_eq!(detect_format(b"Date: today\nLevel: info\n"), None);
        assert_eq!(detect_format(b""), None);
    }

    #[test]
    fn text_logs_are_recognised_by_content() {
        assert_eq!(
            detect_format(b"192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 2326\n"),
            Some(Format::AccessLog)
        );
        assert_eq!(
            detect_format(
                b"::ffff:192.0.2.1 - root@pam [10/03/2024:14:02:11 +0100] \"GET /api2/json/version HTTP/1.1\" 200 9\n"
            ),
            Some(Format::AccessLog)
        );
        assert_eq!(
            detect_format(b"1286536308.779    180 192.168.0.224 TCP_MISS/200 411 GET http://www.example.com/ - HIER_DIRECT/93.184.216.34 text/html\n"),
            Some(Format::Squid)
        );
        assert_eq!(
            detect_format(b"2024-03-01 10:15:02,123 INFO  [ImapServer-1] [ip=192.0.2.1;] security - cmd=Auth; account=a@b; protocol=imap;\n"),
            Some(Format::Zimbra)
        );
        // Syslog lines carrying these formats stay syslog.
        assert_eq!(
            detect_format(b"Nov 28 07:11:15 web01 nginx: 192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 2326\n"),
            Some(Format::Syslog)
        );
        for name in ["access", "squid", "zimbra"] {
            let format = Format::from_name(name).unwrap();
            assert_eq!(format.name(), name);
        }
    }
}
