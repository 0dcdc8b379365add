//! A lossless encoding of normalized events, for events that travel between processes (the
//! bus) or rest in a store and are read again (detection after ingest, retro-hunts).
//!
//! Live ingest parses each record once, where it arrives; what travels and what is stored is
//! the normalized event in this encoding, so a detection node neither re-detects the format
//! nor needs context a line depends on (a Zeek TSV line means nothing without its header).
//!
//! The encoding (version 2) is a one-line JSON header, a newline, then the raw record as it is:
//! `{"v":2,"t":<µs since epoch or null>,"p":"windows","f":"evtx","pos":{"line":12},"x":[["EventID",4624],…]}\n<raw record>`.
//! The raw record is not escaped, so encoding it is a copy. The fields (`x`) are left out when
//! reading the raw record again gives them: [`encode_parsed`] does so for JSON records, whose
//! fields are a function of the record alone (`read::json::event_from_json`), which halves what
//! is stored for the commonest format; decoding reads such a record again. Version 1 (one
//! JSON object with the raw record escaped in `"r"`) is still read.
//! The source (stream name, organisation) is not part of it: the carrier knows it.
//!
//! **Invariant:** `decode(encode(e))` gives an event equal to `e` in everything detectors read
//! (time, product, format, position, fields in order with their types, raw record), except
//! floating-point values that are not finite, which JSON cannot carry (they become null).
//! `decode(encode_parsed(e))` does the same for an event as a reader produced it from its raw
//! record (not changed since).

use std::sync::Arc;

use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::event::{Event, Field, Position, Product, Source};
use crate::read::Format;
use crate::value::Value;

/// The version written by [`encode`].
pub const CODEC_VERSION: u8 = 2;

/// Why an encoded event could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an encoded event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("encoded event version {0} is not supported (this build reads versions 1 and {CODEC_VERSION})")]
    Version(u8),
    #[error("encoded event has an invalid timestamp {0}")]
    Timestamp(i64),
    #[error("encoded event: {0}")]
    Invalid(&'static str),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Pos {
    Line(u64),
    Offset(u64),
    Record { id: u64, chunk: u64 },
}

/// A field value written as JSON without building a `serde_json::Value` first.
struct Json<'a>(&'a Value);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(_) => s.serialize_unit(),
            Value::Str(t) => s.serialize_str(t.as_str()),
            Value::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Json(item))?;
                }
                seq.end()
            }
        }
    }
}

/// The fields, as `[[name, value], …]`.
struct Fields<'a>(&'a [Field]);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for f in self.0 {
            seq.serialize_element(&(&*f.name, Json(&f.value)))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct Header<'a> {
    v: u8,
    t: Option<i64>,
    p: &'static str,
    f: &'a str,
    pos: Pos,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<Fields<'a>>,
}

#[derive(Deserialize)]
struct HeaderIn {
    v: u8,
    t: Option<i64>,
    p: String,
    f: String,
    pos: Pos,
    #[serde(default)]
    x: Option<Vec<(String, serde_json::Value)>>,
    /// Version 1 only: the raw record.
    #[serde(default)]
    r: Option<String>,
}

/// Appends the encoding of `event` to `out`, fields included.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    write(event, true, out);
}

/// Appends the encoding of `event`, as a reader produced it from its raw record, to `out`:
/// without the fields when reading the raw record again gives them (JSON records).
pub fn encode_parsed(event: &Event, out: &mut Vec<u8>) {
    write(event, event.format != "json", out);
}

fn write(event: &Event, with_fields: bool, out: &mut Vec<u8>) {
    let pos = match event.position {
        Position::Line(n) => Pos::Line(n),
        Position::Offset(n) => Pos::Offset(n),
        Position::EvtxRecord { record_id, chunk_offset } => Pos::Record { id: record_id, chunk: chunk_offset },
    };
    let header = Header {
        v: CODEC_VERSION,
        t: event.timestamp.map(|t| t.as_microsecond()),
        p: event.product.as_str(),
        f: event.format,
        pos,
        x: with_fields.then(|| Fields(event.fields())),
    };
    out.reserve(event.raw.len() + 96);
    // Serializing plain data into a Vec cannot fail: no map has non-string keys and writing to
    // memory has no I/O error. Should it ever, the event is written as an empty record that
    // decoding reports, rather than a panic on the ingest path. Compact JSON holds no newline.
    if serde_json::to_writer(&mut *out, &header).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.push(b'\n');
    out.extend_from_slice(event.raw.as_bytes());
}

/// Reads an event written by [`encode`] or [`encode_parsed`] (or version 1); `source` is where
/// the carrier says it came from.
pub fn decode(bytes: &[u8], source: Arc<Source>) -> Result<Event, DecodeError> {
    let (head, raw) = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], Some(&bytes[i + 1..])),
        None => (bytes, None),
    };
    let header: HeaderIn = serde_json::from_slice(head)?;
    let raw = match (header.v, raw, header.r) {
        (1, None, Some(r)) => r,
        (1, _, _) => return Err(DecodeError::Invalid("version 1 without its raw record")),
        (CODEC_VERSION, Some(raw), None) => {
            std::str::from_utf8(raw).map_err(|_| DecodeError::Invalid("raw record is not UTF-8"))?.to_owned()
        }
        (CODEC_VERSION, _, _) => return Err(DecodeError::Invalid("no raw record after the header")),
        (v, _, _) => return Err(DecodeError::Version(v)),
    };
    let position = match header.pos {
        Pos::Line(n) => Position::Line(n),
        Pos::Offset(n) => Position::Offset(n),
        Pos::Record { id, chunk } => Position::EvtxRecord { record_id: id, chunk_offset: chunk },
    };
    let product = match header.p.as_str() {
        "windows" => Product::Windows,
        "linux" => Product::Linux,
        "zeek" => Product::Zeek,
        _ => Product::Other,
    };
    let timestamp = match header.t {
        Some(t) => Some(jiff::Timestamp::from_microsecond(t).map_err(|_| DecodeError::Timestamp(t))?),
        None => None,
    };
    let format = Format::from_name(&header.f).map_or("json", Format::name);
    let mut event = match header.x {
        Some(x) => {
            let mut event = Event::new(source, position, product, format);
            event.raw = raw.into_boxed_str();
            let fields =
                x.into_iter().map(|(name, v)| Field { name: name.into_boxed_str(), value: Value::from_json(&v) });
            event.extend_fields(fields);
            event
        }
        None => {
            // The fields are those reading the raw record gives.
            let Some(mut event) = crate::read::json::event_from_record(raw, &source, position)? else {
                return Err(DecodeError::Invalid("the raw record of a JSON event is not an object"));
            };
            event.product = product;
            event.format = format;
            // The record's own time is finer than the header's microseconds: kept when the
            // two agree.
            if event.timestamp.map(|t| t.as_microsecond()) != header.t {
                event.timestamp = timestamp;
            }
            return Ok(event);
        }
    };
    event.timestamp = timestamp;
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
    fn json_records_are_stored_without_fields_and_read_again() {
        let source = Source::file("test");
        let ndjson = concat!(
            r#"{"EventID": 4688, "Channel": "Security", "NewProcessName": "C:\\x.exe", "n": 1.5, "z": null, "l": [1, "a"], "TimeCreated": "2024-05-01T10:00:00Z"}"#,
            "\n",
            r#"{"winlog": {"event_id": 4625, "channel": "Security", "event_data": {"TargetUserName": "root"}}, "@timestamp": "2024-05-01T10:00:01Z"}"#,
            "\n",
            r#"{"ts": 1714557600.5, "uid": "C1", "id.orig_h": "10.0.0.1", "_path": "conn"}"#,
            "\n",
        );
        let pretty = "{\n  \"pretty\": \"printed\",\n  \"multi\": [\"line\"]\n}\n";
        let events: Vec<Event> = [ndjson, pretty]
            .into_iter()
            .flat_map(|text| read_text(Format::Json, Cursor::new(text.as_bytes().to_vec()), source.clone()))
            .filter_map(|i| match i {
                Item::Event(e) => Some(*e),
                Item::Diagnostic(_) => None,
            })
            .collect();
        assert_eq!(events.len(), 4);
        for e in events {
            let mut buf = Vec::new();
            encode_parsed(&e, &mut buf);
            let head = std::str::from_utf8(&buf).unwrap().split('\n').next().unwrap().to_owned();
            assert!(!head.contains("\"x\""), "{head}");
            let back = decode(&buf, source.clone()).unwrap();
            assert_eq!(
                (back.timestamp, back.product, back.format, back.position),
                (e.timestamp, e.product, e.format, e.position)
            );
            assert_eq!(back.raw, e.raw);
            assert_eq!(back.fields(), e.fields());
        }
        // A JSON event changed after reading keeps its fields with `encode`.
        let mut e = Event::new(source.clone(), Position::Line(1), Product::Other, "json");
        e.raw = r#"{"a": 1}"#.into();
        e.set("a", Value::Int(1));
        e.set("nigehban.org", Value::str("mofa"));
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        assert_eq!(decode(&buf, source).unwrap().fields(), e.fields());
    }

    #[test]
    fn version_1_is_still_read() {
        let v1 = br#"{"v":1,"t":1714557600000000,"p":"linux","f":"syslog","pos":{"line":3},"x":[["app","sshd"],["pid",12]],"r":"<34>1 2024-05-01T10:00:00Z host sshd 12 - - hi\nthere"}"#;
        let e = decode(v1, Source::file("x")).unwrap();
        assert_eq!(e.format, "syslog");
        assert_eq!(e.position, Position::Line(3));
        assert_eq!(&*e.raw, "<34>1 2024-05-01T10:00:00Z host sshd 12 - - hi\nthere");
        assert_eq!(e.get_exact("pid"), Some(&Value::Int(12)));
        assert_eq!(e.timestamp.map(|t| t.as_microsecond()), Some(1_714_557_600_000_000));
    }

    #[test]
    fn refuses_garbage_and_unknown_versions() {
        let source = Source::file("x");
        assert!(matches!(decode(b"not json", source.clone()), Err(DecodeError::Json(_))));
        assert!(matches!(decode(b"{}", source.clone()), Err(DecodeError::Json(_))));
        let v9 = b"{\"v\":9,\"t\":null,\"p\":\"other\",\"f\":\"json\",\"pos\":{\"line\":1},\"x\":[]}\n";
        assert!(matches!(decode(v9, source.clone()), Err(DecodeError::Version(9))));
        let bad_time =
            b"{\"v\":2,\"t\":9223372036854775807,\"p\":\"other\",\"f\":\"json\",\"pos\":{\"line\":1},\"x\":[]}\n";
        assert!(matches!(decode(bad_time, source.clone()), Err(DecodeError::Timestamp(_))));
        // No raw record after a version 2 header; a JSON event whose record is not an object.
        let headless = br#"{"v":2,"t":null,"p":"other","f":"json","pos":{"line":1},"x":[]}"#;
        assert!(matches!(decode(headless, source.clone()), Err(DecodeError::Invalid(_))));
        let not_object = b"{\"v\":2,\"t\":null,\"p\":\"other\",\"f\":\"json\",\"pos\":{\"line\":1}}\n[1]";
        assert!(matches!(decode(not_object, source.clone()), Err(DecodeError::Invalid(_))));
        let not_json = b"{\"v\":2,\"t\":null,\"p\":\"other\",\"f\":\"json\",\"pos\":{\"line\":1}}\n{oops";
        assert!(matches!(decode(not_json, source), Err(DecodeError::Json(_))));
    }
}
