//! Bytes in, normalized events out: format recognition, the readers, the event codec.

use std::io::{Cursor, Read};
use std::sync::Arc;

use nigehban_event::read::{self, Format};
use nigehban_event::{Event, Item, Position, Source, codec};
use nigehban_policy::Tlp;
use nigehban_store::NewEvent;
use serde::Serialize;
use uuid::Uuid;

/// The most record errors named in one answer (the rest are counted).
pub(crate) const MAX_ERRORS: usize = 100;

/// A record that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct RecordError {
    /// 1-based line of the request body (text formats).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Byte offset (binary formats).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    pub message: String,
}

/// What a body parsed into.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub events: Vec<NewEvent>,
    /// The same events before encoding (for detection, see `Monitor::store_parsed`).
    pub parsed: Vec<Event>,
    pub rejected: u64,
    pub errors: Vec<RecordError>,
    pub format: Option<&'static str>,
}

/// Why a body could not be parsed at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("the body's format was not recognised (pass format=json|syslog|zeek|access|squid|zimbra|eml|evtx)")]
    Unrecognised,
    #[error("unknown format {0:?} (expected json, syslog, zeek, access, squid, zimbra, eml or evtx)")]
    UnknownFormat(String),
    #[error("the body is not valid gzip: {0}")]
    Gzip(std::io::Error),
    #[error("the body is larger than {0} bytes once decompressed")]
    TooLarge(usize),
}

/// Decompresses a gzip body, refusing to grow past `limit` bytes.
pub(crate) fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, ParseError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let mut decoder = flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1);
    decoder.read_to_end(&mut out).map_err(ParseError::Gzip)?;
    if out.len() > limit {
        return Err(ParseError::TooLarge(limit));
    }
    Ok(out)
}

/// Where the events of a body belong.
pub(crate) struct Target<'a> {
    pub org: Uuid,
    pub tlp: Tlp,
    pub source: &'a str,
}

/// Parses a body of records in `format` (recognised by content when `None`).
pub(crate) fn parse(body: &[u8], format: Option<&str>, target: &Target<'_>) -> Result<Parsed, ParseError> {
    let format = match format.filter(|f| !f.is_empty()) {
        Some(name) => Format::from_name(name).ok_or_else(|| ParseError::UnknownFormat(name.to_owned()))?,
        None => read::detect_format(&body[..body.len().min(64 * 1024)]).ok_or(ParseError::Unrecognised)?,
    };
    let source = Arc::new(Source { name: target.source.to_owned(), organisation: Some(target.org.to_string()) });
    let items: Box<dyn Iterator<Item = Item> + '_> = match format {
        Format::Evtx => Box::new(read::evtx::read_all(Cursor::new(body), source)),
        other => read::read_text(other, Cursor::new(body), source),
    };
    let mut parsed = Parsed { format: Some(format.name()), ..Parsed::default() };
    for item in items {
        match item {
            Item::Event(e) => {
                parsed.events.push(new_event(&e, target));
                parsed.parsed.push(*e);
            }
            Item::Diagnostic(d) => {
                parsed.rejected += 1;
                if parsed.errors.len() < MAX_ERRORS {
                    let (line, offset) = match d.position {
                        Some(Position::Line(n)) => (Some(n), None),
                        Some(Position::Offset(o)) => (None, Some(o)),
                        Some(Position::EvtxRecord { chunk_offset, .. }) => (None, Some(chunk_offset)),
                        None => (None, None),
                    };
                    parsed.errors.push(RecordError { line, offset, message: d.message });
                }
            }
        }
    }
    Ok(parsed)
}

/// The stored form of an event.
pub(crate) fn new_event(e: &Event, target: &Target<'_>) -> NewEvent {
    let mut record = Vec::with_capacity(e.raw.len() + 160);
    // As the reader produced it: a JSON record's fields are read again from it when decoded.
    codec::encode_parsed(e, &mut record);
    let dataset = ["event.dataset", "Channel", "_path"]
        .iter()
        .find_map(|n| e.get_exact(n).and_then(|v| v.as_text()).map(|t| t.into_owned()))
        .or_else(|| Some(e.format.to_owned()));
    NewEvent {
        org: target.org,
        tlp: target.tlp,
        ts: e.timestamp.map(|t| t.as_microsecond()),
        source: target.source.to_owned(),
        dataset,
        host: e.host().map(|h| h.into_owned()),
        record,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target<'static> {
        Target { org: Uuid::nil(), tlp: Tlp::AmberStrict, source: "test" }
    }

    #[test]
    fn parses_ndjson_and_names_bad_lines() {
        let body = b"{\"EventID\": 1, \"Channel\": \"Microsoft-Windows-Sysmon/Operational\", \"Computer\": \"ws1\"}\n{broken\n{\"a\": 2}\n";
        let p = parse(body, None, &target()).unwrap();
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.rejected, 1);
        assert_eq!(p.errors[0].line, Some(2));
        assert_eq!(p.events[0].host.as_deref(), Some("ws1"));
        assert_eq!(p.events[0].dataset.as_deref(), Some("Microsoft-Windows-Sysmon/Operational"));
    }

    #[test]
    fn recognises_syslog_and_refuses_unknown_formats() {
        let body =
            b"<34>1 2024-05-01T10:00:00Z web01 sshd 12 - - Failed password for root from 10.0.0.1 port 22 ssh2\n";
        let p = parse(body, None, &target()).unwrap();
        assert_eq!((p.events.len(), p.format), (1, Some("syslog")));
        assert!(matches!(parse(b"\x00\x01 nothing", None, &target()), Err(ParseError::Unrecognised)));
        assert!(matches!(parse(body, Some("nope"), &target()), Err(ParseError::UnknownFormat(_))));
    }

    #[test]
    fn gunzip_has_a_limit() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&vec![b'a'; 10_000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip(&gz, 20_000).unwrap().len(), 10_000);
        assert!(matches!(gunzip(&gz, 9_999), Err(ParseError::TooLarge(_))));
        assert!(matches!(gunzip(b"not gzip", 100), Err(ParseError::Gzip(_))));
    }
}
