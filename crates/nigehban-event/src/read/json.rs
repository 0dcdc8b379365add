//! JSON logs: NDJSON, objects one after another (pretty-printed or not, as `evtx_dump` and
//! many exporters write them), or a single top-level array.
//!
//! Objects are read one at a time, so memory stays bounded by the largest object (a
//! top-level array is the exception: it is read whole). A malformed object is reported with
//! the line it starts on and reading resumes with the next object.

use std::io::BufRead;
use std::sync::Arc;

use serde_json::Value as Json;

use super::node::Node;
use super::{Diagnostic, Item, azure, cloudtrail, gcp, windows, zeek};
use crate::event::{Event, Position, Product, Source};
use crate::value::Value;

/// Objects larger than this are skipped with a diagnostic rather than buffered.
const MAX_OBJECT_BYTES: usize = 64 << 20;

pub struct JsonReader<R> {
    reader: R,
    source: Arc<Source>,
    line: u64,
    buf: Vec<u8>,
    /// The object being gathered across lines, and the line it started on.
    pending: Vec<u8>,
    pending_start: u64,
    depth: i64,
    in_string: bool,
    escaped: bool,
    /// Items of a top-level array, once read.
    array: Option<std::vec::IntoIter<Json>>,
    /// Whether objects fit on one line (NDJSON), learnt from the first complete object. In
    /// NDJSON an object left open at the end of its line is malformed, and is reported at once.
    single_line: Option<bool>,
    /// A line read but not yet handled (it started a new object while the previous one was
    /// still open).
    held: Option<Vec<u8>>,
    done: bool,
}

impl<R: BufRead> JsonReader<R> {
    pub fn new(reader: R, source: Arc<Source>) -> Self {
        JsonReader {
            reader,
            source,
            line: 0,
            buf: Vec::new(),
            pending: Vec::new(),
            pending_start: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            array: None,
            single_line: None,
            held: None,
            done: false,
        }
    }

    fn diagnostic(&self, line: u64, message: String) -> Item {
        Item::Diagnostic(Diagnostic { source: self.source.name.clone(), position: Some(Position::Line(line)), message })
    }

    /// Tracks brace depth over `bytes`, outside strings. Returns true when a top-level value
    /// ends within them.
    fn scan(&mut self, bytes: &[u8]) -> bool {
        let mut closed = false;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            i += 1;
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                } else {
                    // Most of a record is inside strings: jump to the next quote or escape.
                    i = memchr::memchr2(b'"', b'\\', &bytes[i..]).map_or(bytes.len(), |n| i + n);
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth <= 0 {
                        closed = true;
                    }
                }
                _ => {}
            }
        }
        closed
    }

    fn reset_scan(&mut self) {
        self.pending.clear();
        self.depth = 0;
        self.in_string = false;
        self.escaped = false;
    }

    /// The object gathered, when it is the EVTX rendering of a Windows record: read in place
    /// (see [`node`](super::node)). `None` for anything else, read the general way.
    fn evtx_event(&self) -> Option<Event> {
        if !evtx_rendering(&self.pending) {
            return None;
        }
        let node = serde_json::from_slice::<Node>(&self.pending).ok()?;
        let mut event = Event::new(self.source.clone(), Position::Line(self.pending_start), Product::Other, "json");
        if !windows::from_evtx_node(&mut event, &node) {
            return None;
        }
        event.raw = record_text(self.pending.trim_ascii()).into_boxed_str();
        Some(event)
    }

    fn finish_object(&mut self) -> Option<Item> {
        if let Some(event) = self.evtx_event() {
            self.reset_scan();
            return Some(Item::Event(Box::new(event)));
        }
        let start = self.pending_start;
        let parsed = serde_json::from_slice::<Json>(&self.pending);
        let raw_len = self.pending.len();
        let result = match parsed {
            Ok(Json::Array(items)) => {
                self.array = Some(items.into_iter());
                None
            }
            Ok(Json::Object(mut map)) if wrapped_records(&map).is_some() => {
                // `{"Records": […]}` (CloudTrail files), `{"records": […]}` (Azure exports),
                // Graph's `{"@odata.context": …, "value": […]}`: one event per element.
                let key = wrapped_records(&map).unwrap_or_default().to_owned();
                if let Some(Json::Array(items)) = map.remove(&key) {
                    self.array = Some(items.into_iter());
                }
                None
            }
            Ok(v @ Json::Object(_)) => {
                let raw = record_text(self.pending.trim_ascii());
                Some(Item::Event(Box::new(event_from_json(&v, raw, &self.source, Position::Line(start)))))
            }
            Ok(other) => Some(self.diagnostic(start, format!("expected a JSON object, found {}", kind(&other)))),
            Err(e) => Some(self.diagnostic(start, format!("malformed JSON ({raw_len} bytes starting here): {e}"))),
        };
        self.reset_scan();
        result
    }
}

/// A record's text. serde_json accepted it, so it is UTF-8 (checked again here, quickly).
fn record_text(record: &[u8]) -> String {
    match std::str::from_utf8(record) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(record).into_owned(),
    }
}

/// Whether an object's text starts as the EVTX rendering of a Windows record does:
/// `{"Event":` (the EVTX reader's output, and what `nigehban ingest` sends for EVTX files).
fn evtx_rendering(text: &[u8]) -> bool {
    let rest = text.trim_ascii_start().strip_prefix(b"{").unwrap_or_default().trim_ascii_start();
    rest.starts_with(b"\"Event\"")
}

/// Reads one stored JSON record into an event, as the reader reads it (the EVTX rendering in
/// place, anything else through `serde_json::Value`). `Ok(None)` when it is JSON but not an
/// object.
pub(crate) fn event_from_record(
    raw: String,
    source: &Arc<Source>,
    position: Position,
) -> Result<Option<Event>, serde_json::Error> {
    if evtx_rendering(raw.as_bytes())
        && let Ok(node) = serde_json::from_str::<Node>(&raw)
    {
        let mut event = Event::new(source.clone(), position, Product::Other, "json");
        if windows::from_evtx_node(&mut event, &node) {
            drop(node);
            event.raw = raw.into_boxed_str();
            return Ok(Some(event));
        }
    }
    let json: Json = serde_json::from_str(&raw)?;
    if !json.is_object() {
        return Ok(None);
    }
    Ok(Some(event_from_json(&json, raw, source, position)))
}

/// Whether gathered text starts a `{"Records": [` / `{"records": [` wrapper, whose elements
/// may start at the margin.
fn opens_wrapper(pending: &[u8]) -> bool {
    let rest = pending.trim_ascii_start().strip_prefix(b"{").unwrap_or_default().trim_ascii_start();
    rest.starts_with(b"\"Records\"") || rest.starts_with(b"\"records\"")
}

/// The key of a wrapper object's array of records: `Records` or `records` (or Graph's `value`
/// beside `@odata.context`) holding an array of objects, every other member a scalar.
fn wrapped_records(map: &serde_json::Map<String, Json>) -> Option<&str> {
    let objects = |v: &Json| v.as_array().is_some_and(|a| a.iter().all(Json::is_object));
    let key = ["Records", "records", "value"].into_iter().find(|k| map.get(*k).is_some_and(objects))?;
    if key == "value" && !map.contains_key("@odata.context") {
        return None;
    }
    map.iter().all(|(k, v)| k == key || !(v.is_array() || v.is_object())).then_some(key)
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

impl<R: BufRead> Iterator for JsonReader<R> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(items) = &mut self.array {
                match items.next() {
                    Some(v) => {
                        let raw = v.to_string();
                        if v.is_object() {
                            return Some(Item::Event(Box::new(event_from_json(
                                &v,
                                raw,
                                &self.source,
                                Position::Line(self.pending_start),
                            ))));
                        }
                        return Some(
                            self.diagnostic(
                                self.pending_start,
                                format!("array element is {}, not an object", kind(&v)),
                            ),
                        );
                    }
                    None => self.array = None,
                }
            }
            if let Some(line) = self.held.take() {
                if let Some(item) = self.take_line(line) {
                    return Some(item);
                }
                continue;
            }
            if self.done {
                return None;
            }
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    if !self.pending.iter().all(u8::is_ascii_whitespace) {
                        let start = self.pending_start;
                        self.reset_scan();
                        return Some(self.diagnostic(start, "truncated JSON object at end of input".into()));
                    }
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(self.diagnostic(self.line + 1, format!("read error: {e}")));
                }
            }
            self.line += 1;
            let mut line = std::mem::take(&mut self.buf);
            if self.line == 1 && line.starts_with(b"\xEF\xBB\xBF") {
                line.drain(..3);
            }
            if let Some(item) = self.take_line(line) {
                return Some(item);
            }
        }
    }
}

impl<R: BufRead> JsonReader<R> {
    /// Adds one line to the object being gathered; returns an item when one is complete (or
    /// found malformed).
    fn take_line(&mut self, line: Vec<u8>) -> Option<Item> {
        let first = line.iter().position(|b| !b.is_ascii_whitespace());
        let in_object = self.pending.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if in_object && first == Some(0) && line[0] == b'{' && !opens_wrapper(&self.pending) {
            // A new object starts at the margin while the previous one is still open: the
            // previous one is malformed. Report it, and read this line again afterwards.
            let start = self.pending_start;
            self.reset_scan();
            self.held = Some(line);
            return Some(self.diagnostic(start, "malformed JSON: object not closed".into()));
        }
        if self.pending.is_empty() {
            let Some(first) = first else {
                self.buf = line;
                return None;
            };
            if !matches!(line[first], b'{' | b'[') {
                let item = self.diagnostic(self.line, "expected a JSON object".into());
                self.buf = line;
                return Some(item);
            }
            self.pending_start = self.line;
        }
        let closed = self.scan(&line);
        self.pending.extend_from_slice(&line);
        self.buf = line;
        if self.pending.len() > MAX_OBJECT_BYTES {
            let start = self.pending_start;
            self.reset_scan();
            return Some(self.diagnostic(start, format!("JSON object larger than {MAX_OBJECT_BYTES} bytes skipped")));
        }
        if closed {
            if self.single_line.is_none() {
                self.single_line = Some(self.pending_start == self.line);
            }
            return self.finish_object();
        }
        if self.single_line == Some(true) {
            let start = self.pending_start;
            self.reset_scan();
            return Some(self.diagnostic(start, "malformed JSON: object not closed on its line".into()));
        }
        None
    }
}

/// Builds an event from one JSON object, recognising the Windows shapes and Zeek JSON; any
/// other object keeps its fields under their dotted paths.
pub fn event_from_json(v: &Json, raw: String, source: &Arc<Source>, position: Position) -> Event {
    let mut event = Event::new(source.clone(), position, Product::Other, "json");
    event.raw = raw.into_boxed_str();
    if windows::from_evtx_json(&mut event, v) {
        return event;
    }
    event.push_json("", v);
    if windows::normalize_winlogbeat(&mut event) || windows::normalize_flat(&mut event) {
        return event;
    }
    if cloudtrail::normalize(&mut event, v) || azure::normalize(&mut event, v) || gcp::normalize(&mut event, v) {
        return event;
    }
    if event.get_exact("ts").is_some() && (event.get_exact("uid").is_some() || event.get_exact("@stream").is_some()) {
        event.product = Product::Zeek;
        zeek::set_zeek_timestamp(&mut event);
        // Some exporters name the log in `@stream` and flatten `id.orig_h` to `id_orig_h`;
        // Sigma's Zeek rules use Zeek's own names.
        if event.get_exact("_path").is_none()
            && let Some(stream) = event.get_exact("@stream").cloned()
        {
            event.set("_path", stream);
        }
        for (flat, dotted) in [
            ("id_orig_h", "id.orig_h"),
            ("id_orig_p", "id.orig_p"),
            ("id_resp_h", "id.resp_h"),
            ("id_resp_p", "id.resp_p"),
        ] {
            if let Some(v) = event.get_exact(flat).cloned() {
                event.set_default(dotted, v);
            }
        }
        return event;
    }
    event.timestamp =
        ["@timestamp", "timestamp", "eventTime", "time", "EventTime", "date", "ts"].iter().find_map(|n| {
            match event.get_exact(n)? {
                Value::Str(t) => windows::parse_windows_time(t.as_str()),
                Value::Int(i) => epoch(*i as f64),
                Value::Float(f) => epoch(*f),
                _ => None,
            }
        });
    event
}

/// Seconds (or milliseconds, for values too large to be seconds) since the Unix epoch.
fn epoch(n: f64) -> Option<jiff::Timestamp> {
    let secs = if n > 1e11 { n / 1000.0 } else { n };
    jiff::Timestamp::from_nanosecond((secs * 1e9) as i128).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &str) -> Vec<Item> {
        JsonReader::new(input.as_bytes(), Source::file("t.json")).collect()
    }

    fn events(items: &[Item]) -> Vec<&Event> {
        items.iter().filter_map(|i| if let Item::Event(e) = i { Some(&**e) } else { None }).collect()
    }

    #[test]
    fn ndjson_with_a_bad_line_keeps_the_rest() {
        let items = read("{\"a\":1}\n{\"a\":\n2,}\n{\"a\":3}\n");
        let ev = events(&items);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].get("a"), Some(&Value::Int(3)));
        assert_eq!(ev[1].position, Position::Line(4));
        let diags: Vec<_> =
            items.iter().filter_map(|i| if let Item::Diagnostic(d) = i { Some(d) } else { None }).collect();
        // In NDJSON each line stands alone: the open object on line 2 and the stray line 3
        // are both reported.
        assert_eq!(diags.len(), 2);
        assert_eq!(diags[0].position, Some(Position::Line(2)));
        assert_eq!(diags[1].position, Some(Position::Line(3)));
    }

    #[test]
    fn pretty_printed_objects_one_after_another() {
        let items = read("{\n  \"a\": \"}{\",\n  \"b\": {\"c\": 1}\n}\n{\n\"a\": 2}\n");
        let ev = events(&items);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].get("b.c"), Some(&Value::Int(1)));
        assert_eq!(ev[0].get("a"), Some(&Value::str("}{")));
    }

    #[test]
    fn escapes_inside_strings_do_not_end_them() {
        // A backslash at the end of a value, an escaped quote before braces, across lines.
        let items = read("{\n  \"a\": \"x\\\\\",\n  \"b\": \"q\\\"}{\\\\\"\n}\n{\"c\": \"]\"}\n");
        let ev = events(&items);
        assert_eq!(ev.len(), 2, "{items:?}");
        assert_eq!(ev[0].get("a"), Some(&Value::str("x\\")));
        assert_eq!(ev[0].get("b"), Some(&Value::str("q\"}{\\")));
        assert_eq!(ev[1].get("c"), Some(&Value::str("]")));
        assert_eq!(ev[1].position, Position::Line(5));
    }

    #[test]
    fn an_unclosed_pretty_object_does_not_swallow_the_next() {
        let items = read("{\n  \"a\": 1\n}\n{\n  \"a\": [\n{\n  \"a\": 3\n}\n");
        let ev = events(&items);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].get("a"), Some(&Value::Int(3)));
        assert!(items.iter().any(|i| matches!(i, Item::Diagnostic(d) if d.position == Some(Position::Line(4)))));
    }

    #[test]
    fn zeek_json_gets_zeek_names() {
        let items = read(
            "{\"@stream\":\"conn\",\"ts\":1588205199.82437,\"uid\":\"C1\",\"id_orig_h\":\"10.0.1.6\",\"id_resp_p\":53}\n",
        );
        let ev = events(&items);
        assert_eq!(ev[0].product, Product::Zeek);
        assert_eq!(ev[0].get("_path"), Some(&Value::str("conn")));
        assert_eq!(ev[0].get("id.orig_h"), Some(&Value::str("10.0.1.6")));
        assert_eq!(ev[0].get("id.resp_p"), Some(&Value::Int(53)));
        assert!(ev[0].timestamp.is_some());
    }

    #[test]
    fn top_level_array() {
        let ev_items = read("[{\"a\":1},\n{\"a\":2}, 3]");
        assert_eq!(events(&ev_items).len(), 2);
        assert_eq!(ev_items.len(), 3);
    }

    #[test]
    fn record_wrappers_yield_one_event_per_element() {
        let items =
            read("{\"Records\": [\n{\"x\": 1},\n{\"x\": 2}\n]}\n{\"a\":0}\n{\"records\":[{\"y\":[1]}], \"n\": 1}\n");
        let ev = events(&items);
        assert_eq!(ev.len(), 4, "{items:?}");
        assert_eq!(ev[0].get("x"), Some(&Value::Int(1)));
        assert_eq!(ev[1].position, Position::Line(1));
        assert_eq!(&*ev[1].raw, "{\"x\":2}");
        assert_eq!(ev[2].position, Position::Line(5));
        assert_eq!(ev[3].position, Position::Line(6));
        // Not wrappers: other members that are objects, elements that are not objects, a
        // `value` array without Graph's `@odata.context`.
        for input in ["{\"Records\": [{\"x\": 1}], \"meta\": {}}", "{\"records\": [1, 2]}", "{\"value\": [{\"x\": 1}]}"]
        {
            let items = read(input);
            assert_eq!(events(&items).len(), 1, "{input}");
        }
        assert_eq!(events(&read("{\"@odata.context\": \"u\", \"value\": [{\"x\": 1}, {\"x\": 2}]}")).len(), 2);
    }

    #[test]
    fn truncated_object_is_reported() {
        let items = read("{\"a\":1}\n{\"a\":");
        assert_eq!(events(&items).len(), 1);
        assert!(
            matches!(&items[1], Item::Diagnostic(d) if d.message.contains("not closed") && d.position == Some(Position::Line(2)))
        );
        // Without a first complete line to say it is NDJSON, the end of input is what tells.
        let items = read("{\n\"a\":");
        assert!(matches!(&items[0], Item::Diagnostic(d) if d.message.contains("truncated")));
    }

    #[test]
    fn garbage_line_is_reported_not_fatal() {
        let items = read("hello\n{\"a\":1}\n");
        assert_eq!(events(&items).len(), 1);
    }
}
