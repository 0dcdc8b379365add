//! A lossless encoding of normalized events, for events that travel between processes (the
//! bus) or rest in a store and are read again (detection after ingest, retro-hunts).
//!
//! Live ingest parses each record once, where it arrives; what travels and what is stored is
//! the normalized event in this encoding, so a detection node neither re-detects the format
//! nor needs context a line depends on (a Zeek TSV line means nothing without its header).
//!
//! The encoding is one JSON object per event, versioned:
//! `{"v":1,"t":<µs since epoch or null>,"p":"windows","f":"evtx","pos":{"line":12},"x":[["EventID",4624],…],"r":"<raw record>"}`.
//! The source (stream name, organisation) is not part of it: the carrier knows it.
//!
//! **Invariant:** `decode(encode(e))` gives an event equal to `e` in everything detectors read
//! (time, product, format, position, fields in order with their types, raw record), except
//! floating-point values that are not finite, which JSON cannot carry (they become null).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::{Event, Field, Position, Product, Source};
use crate::read::Format;
use crate::value::Value;

/// The version written by [`encode`].
pub const CODEC_VERSION: u8 = 1;

/// Why an encoded event could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an encoded event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("encoded event version {0} is not supported (this build reads version {CODEC_VERSION})")]
    Version(u8),
    #[error("encoded event has an invalid timestamp {0}")]
    Timestamp(i64),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Pos {
    Line(u64),
    Offset(u64),
    Record { id: u64, chunk: u64 },
}

#[derive(Serialize)]
struct Out<'a> {
    v: u8,
    t: Option<i64>,
    p: &'static str,
    f: &'a str,
    pos: Pos,
    x: Vec<(&'a str, serde_json::Value)>,
    r: &'a str,
}

#[derive(Deserialize)]
struct In {
    v: u8,
    t: Option<i64>,
    p: String,
    f: String,
    pos: Pos,
    x: Vec<(String, serde_json::Value)>,
    r: String,
}

/// Appends the encoding of `event` to `out` (no line ending).
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    let pos = match event.position {
        Position::Line(n) => Pos::Line(n),
        Position::Offset(n) => Pos::Offset(n),
        Position::EvtxRecord { record_id, chunk_offset } => Pos::Record { id: record_id, chunk: chunk_offset },
    };
    let record = Out {
        v: CODEC_VERSION,
        t: event.timestamp.map(|t| t.as_microsecond()),
        p: event.product.as_str(),
        f: event.format,
        pos,
        x: event.fields().iter().map(|f| (&*f.name, f.value.to_json())).collect(),
        r: &event.raw,
    };
    // Serializing plain data into a Vec cannot fail: no map has non-string keys and writing to
    // memory has no I/O error. Should it ever, the event is written as an empty record that
    // decoding reports, rather than a panic on the ingest path.
    if serde_json::to_writer(&mut *out, &record).is_err() {
        out.extend_from_slice(b"{}");
    }
}

/// Reads an event written by [`encode`]; `source` is where the carrier says it came from.
pub fn decode(bytes: &[u8], source: Arc<Source>) -> Result<Event, DecodeError> {
    let record: In = serde_json::from_slice(bytes)?;
    if record.v != CODEC_VERSION {
        return Err(DecodeError::Version(record.v));
    }
    let position = match record.pos {
        Pos::Line(n) => Position::Line(n),
        Pos::Offset(n) => Position::Offset(n),
        Pos::Record { id, chunk } => Position::EvtxRecord { record_id: id, chunk_offset: chunk },
    };
    let product = match record.p.as_str() {
        "windows" => Product::Windows,
        "linux" => Product::Linux,
        "zeek" => Product::Zeek,
        _ => Product::Other,
    };
    let format = Format::from_name(&record.f).map_or("json", Format::name);
    let mut event = Event::new(source, position, product, format);
    if let Some(t) = record.t {
        event.timestamp = Some(jiff::Timestamp::from_microsecond(t).map_err(|_| DecodeError::Timestamp(t))?);
    }
    event.raw = record.r.into_boxed_str();
    let fields =
        record.x.into_iter().map(|(name, v)| Field { name: name.into_boxed_str(), value: Value::from_json(&v) });
    event.extend_fields(fields);
    Ok(event)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::read::{Item, read_text};

    fn roundtrip(format: Format, text: &str) {
        let source = Source::file("test");
        let events: Vec<Event> = read_text(format, Cursor::new(text.as_bytes().to_vec()), source.clone())
            .filter_map(|i| match i {
                Item::Event(e) => Some(*e),
                Item::Diagnostic(_) => None,
            })
            .collect();
        assert!(!events.is_empty(), "{format:?}: no events");
        for e in events {
            let mut buf = Vec::new();
            encode(&e, &mut buf);
            let back = decode(&buf, source.clone()).unwrap();
            assert_eq!(back.timestamp, e.timestamp);
            assert_eq!(back.product, e.product);
            assert_eq!(back.format, e.format);
            assert_eq!(back.position, e.position);
            assert_eq!(back.raw, e.raw);
            assert_eq!(back.fields(), e.fields(), "{format:?}");
            // Lookups work on the decoded event (its index is rebuilt).
            if let Some(f) = e.fields().first() {
                assert_eq!(back.get(&f.name), Some(&f.value));
            }
        }
    }

    #[test]
    fn roundtrips_every_text_format() {
        roundtrip(
            Format::Json,
            r#"{"EventID": 4688, "Channel": "Security", "NewProcessName": "C:\\x.exe", "n": 1.5, "b": true, "z": null, "l": [1, "a"], "TimeCreated": "2024-05-01T10:00:00Z"}"#,
        );
        roundtrip(
            Format::Syslog,
            "<34>1 2024-05-01T10:00:00Z host sshd 12 - - Failed password for root from 10.0.0.1 port 22 ssh2\n",
        );
        roundtrip(
            Format::ZeekTsv,
            "#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\n1714557600.0\tC1\t10.0.0.1\t5000\t10.0.0.2\t443\ttcp\n",
        );
        roundtrip(
            Format::AccessLog,
            "10.0.0.1 - - [01/May/2024:10:00:00 +0000] \"GET /index.html HTTP/1.1\" 200 12 \"-\" \"curl/8\"\n",
        );
    }

    #[test]
    fn refuses_garbage_and_unknown_versions() {
        let source = Source::file("x");
        assert!(matches!(decode(b"not json", source.clone()), Err(DecodeError::Json(_))));
        assert!(matches!(decode(b"{}", source.clone()), Err(DecodeError::Json(_))));
        let v9 = br#"{"v":9,"t":null,"p":"other","f":"json","pos":{"line":1},"x":[],"r":""}"#;
        assert!(matches!(decode(v9, source.clone()), Err(DecodeError::Version(9))));
        let bad_time = br#"{"v":1,"t":9223372036854775807,"p":"other","f":"json","pos":{"line":1},"x":[],"r":""}"#;
        assert!(matches!(decode(bad_time, source), Err(DecodeError::Timestamp(_))));
    }
}
