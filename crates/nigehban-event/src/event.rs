use std::sync::{Arc, OnceLock};

use crate::value::Value;

/// Where events came from: a file (or stream) and what is known about its origin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    /// The file path or stream name, as given by the caller.
    pub name: String,
    /// The organisation that owns the data, when known (live ingest sets it; `hunt` may use
    /// the top folder).
    pub organisation: Option<String>,
}

impl Source {
    pub fn file(name: impl Into<String>) -> Arc<Source> {
        Arc::new(Source { name: name.into(), organisation: None })
    }
}

/// Where in its source an event was found, for evidence and for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// 1-based line of a text or NDJSON file.
    Line(u64),
    /// Byte offset in the source.
    Offset(u64),
    /// An EVTX record: its record id and the byte offset of its chunk.
    EvtxRecord { record_id: u64, chunk_offset: u64 },
}

impl Position {
    /// The position as text (`record 7 (chunk at offset 4096)`), handed to `piece` a piece at a
    /// time: what `Display` writes, for callers that append many positions to a buffer without
    /// the formatting machinery (a hunt's timeline prints one per detection).
    pub fn write_pieces(self, mut piece: impl FnMut(&str)) {
        let mut n = itoa::Buffer::new();
        match self {
            Position::Line(l) => {
                piece("line ");
                piece(n.format(l));
            }
            Position::Offset(o) => {
                piece("offset ");
                piece(n.format(o));
            }
            Position::EvtxRecord { record_id, chunk_offset } => {
                piece("record ");
                piece(n.format(record_id));
                piece(" (chunk at offset ");
                piece(n.format(chunk_offset));
                piece(")");
            }
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut result = Ok(());
        self.write_pieces(|p| {
            if result.is_ok() {
                result = f.write_str(p);
            }
        });
        result
    }
}

/// The kind of system an event comes from, as Sigma's `logsource.product` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Product {
    Windows,
    Linux,
    Zeek,
    /// Anything else (generic JSON, web logs, cloud audit logs …).
    Other,
}

impl Product {
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Windows => "windows",
            Product::Linux => "linux",
            Product::Zeek => "zeek",
            Product::Other => "other",
        }
    }
}

/// One named field of an event. Names are those Sigma rules use (`CommandLine`, `EventID`,
/// `Channel`), or dotted JSON paths (`winlog.event_data.CommandLine`).
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: Box<str>,
    pub value: Value,
}

/// A normalized event.
#[derive(Clone, Debug)]
pub struct Event {
    /// When the event happened, as the record says; `None` if it did not say or it could not
    /// be read.
    pub timestamp: Option<jiff::Timestamp>,
    pub source: Arc<Source>,
    pub position: Position,
    pub product: Product,
    /// The format the reader recognised (`evtx`, `json`, `syslog`, `zeek` …).
    pub format: &'static str,
    fields: Vec<Field>,
    /// A hash table of field positions by ASCII-case-folded name, built on the first lookup
    /// (or taken from an event of the same names, see [`index_of`]) and dropped by every
    /// change, so that a rule's many lookups cost one probe each.
    index: OnceLock<FieldLayout>,
    /// The original record, kept for evidence: the JSON rendering of an EVTX record, the line
    /// of a text log, the JSON object of a JSON log.
    pub raw: Box<str>,
}

impl Event {
    pub fn new(source: Arc<Source>, position: Position, product: Product, format: &'static str) -> Self {
        Event {
            timestamp: None,
            source,
            position,
            product,
            format,
            fields: Vec::new(),
            index: OnceLock::new(),
            raw: Box::default(),
        }
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Adds a field, replacing the value of one already present under the same name.
    pub fn set(&mut self, name: impl Into<Box<str>>, value: Value) {
        let name = name.into();
        if let Some(f) = self.fields.iter_mut().find(|f| f.name == name) {
            f.value = value;
        } else {
            self.push_field(Field { name, value });
        }
    }

    /// Adds a field unless one of that name is already present.
    pub fn set_default(&mut self, name: &str, value: Value) {
        if self.get_exact(name).is_none() {
            self.push_field(Field { name: name.into(), value });
        }
    }

    /// Appends fields as they are, duplicates included (the codec restores an event exactly).
    pub(crate) fn extend_fields(&mut self, fields: impl IntoIterator<Item = Field>) {
        self.fields.extend(fields);
        self.index.take();
    }

    fn push_field(&mut self, field: Field) {
        self.fields.push(field);
        self.index.take();
    }

    pub fn get_exact(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|f| &*f.name == name).map(|f| &f.value)
    }

    /// Looks a field up by name: an exact match first, else one whose name differs only in
    /// ASCII case (Windows field names are case-insensitive in practice: `CommandLine` vs
    /// `Commandline`).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.get_folded(name, &name.to_ascii_lowercase())
    }

    /// [`Event::get`] for callers that keep the ASCII-lowercase form of the name, sparing one
    /// allocation per lookup.
    pub fn get_folded(&self, name: &str, lower: &str) -> Option<&Value> {
        self.find(name, lower, fold_hash(lower)).map(|i| &self.fields[i].value)
    }

    /// [`Event::get`] by a key prepared once (compiled rules look the same names up in every
    /// event).
    pub fn lookup(&self, key: &FieldKey) -> Option<&Value> {
        self.find(&key.name, &key.lower, key.hash).map(|i| &self.fields[i].value)
    }

    /// The position in [`Event::fields`] of the field [`Event::lookup`] finds.
    pub fn lookup_position(&self, key: &FieldKey) -> Option<usize> {
        self.find(&key.name, &key.lower, key.hash)
    }

    /// The event's field names, in their order, as one value (see [`FieldLayout`]).
    pub fn layout(&self) -> &FieldLayout {
        self.index.get_or_init(|| index_of(&self.fields))
    }

    fn find(&self, name: &str, lower: &str, hash: u64) -> Option<usize> {
        let slots = &self.layout().0;
        let mask = slots.len() - 1;
        let mut at = hash as usize & mask;
        let tag = slot(hash, 0) & TAG;
        let mut first: Option<u32> = None;
        // Equal folded names sit in one probe run; the exact name wins, else the field that
        // came first. Only fields whose hashes agree in the slot's tag are compared.
        while slots[at] != EMPTY {
            let entry = slots[at];
            at = (at + 1) & mask;
            if entry & TAG != tag {
                continue;
            }
            let i = entry as u32;
            let Some(f) = self.fields.get(i as usize) else { continue };
            if f.name.len() != lower.len() {
                continue;
            }
            if &*f.name == name {
                return Some(i as usize);
            }
            if f.name.eq_ignore_ascii_case(lower) && first.is_none_or(|j| i < j) {
                first = Some(i);
            }
        }
        first.map(|i| i as usize)
    }

    /// The text of a field, if present and scalar.
    pub fn get_text(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.get(name).and_then(Value::as_text)
    }

    /// Adds every leaf of a JSON value as a field named by its dotted path under `prefix`.
    /// Arrays of scalars become lists; arrays of objects add each leaf path as a list of the
    /// values found under it.
    pub fn push_json(&mut self, prefix: &str, value: &serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    self.push_json(&path, v);
                }
            }
            serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
                let mut sub = Event::new(self.source.clone(), self.position, self.product, self.format);
                for item in items {
                    let mut one = Event::new(self.source.clone(), self.position, self.product, self.format);
                    one.push_json(prefix, item);
                    for f in one.fields {
                        match sub.fields.iter_mut().find(|g| g.name == f.name) {
                            Some(Field { value: Value::List(list), .. }) => list.push(f.value),
                            _ => sub.fields.push(Field { name: f.name, value: Value::List(vec![f.value]) }),
                        }
                    }
                }
                self.fields.extend(sub.fields);
                self.index.take();
            }
            leaf => {
                if !prefix.is_empty() {
                    self.push_field(Field { name: prefix.into(), value: Value::from_json(leaf) });
                }
            }
        }
    }

    /// Names and values as a JSON object, in field order.
    pub fn fields_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::with_capacity(self.fields.len());
        for f in &self.fields {
            map.insert(f.name.to_string(), f.value.to_json());
        }
        serde_json::Value::Object(map)
    }

    /// The host the event is about, under whichever name the format uses.
    pub fn host(&self) -> Option<std::borrow::Cow<'_, str>> {
        ["Computer", "host", "hostname", "Hostname", "host.name", "id.orig_h"]
            .iter()
            .find_map(|n| self.get_exact(n).and_then(Value::as_text))
    }
}

/// An event's field names, in their order, as one value: two events whose layouts are the
/// same ([`FieldLayout::same`]) have the same names in the same order, so every lookup gives
/// the same position in both, and what a caller found in one holds for the other. (Two
/// events with the same names may still have layouts that are not the same: the converse
/// does not hold.) Holding a layout keeps it from being taken for another's.
///
/// It is the event's field index: an event whose names change drops it, and the events of
/// one thread that have the same names share one (see [`index_of`]).
#[derive(Clone, Debug)]
pub struct FieldLayout(Arc<[u64]>);

impl FieldLayout {
    pub fn same(&self, other: &FieldLayout) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// A number that tells the layouts held at one time apart (for hashing).
    pub fn id(&self) -> usize {
        self.0.as_ptr() as usize
    }
}

/// The field index of an event with these fields (see [`Event::find`]).
///
/// It depends on the names alone, in their order, and events of one kind repeat them: every
/// Sysmon process creation has the same fields, in the same order. So each thread keeps the
/// indexes of the last [`LAYOUTS`] name sequences it indexed, and an event whose names are
/// those of one of them (compared byte for byte, which costs a fifth of hashing them into a
/// new table) shares its index.
fn index_of(fields: &[Field]) -> FieldLayout {
    let mut names = 0usize;
    for f in fields {
        names += f.name.len();
    }
    if fields.len() > MAX_LAYOUT_FIELDS || names > MAX_LAYOUT_BYTES {
        return FieldLayout(build_index(fields));
    }
    let key = (fields.len() as u64) << 32 | names as u64;
    INDEXED.with(|cell| {
        let Ok(mut layouts) = cell.try_borrow_mut() else { return FieldLayout(build_index(fields)) };
        if let Some(layout) = layouts.entries.iter().find(|l| l.key == key && l.holds(fields)) {
            return layout.index.clone();
        }
        let index = build_index(fields);
        layouts.remember(key, fields, index.clone());
        FieldLayout(index)
    })
}

/// A thread's recently indexed name sequences.
#[derive(Default)]
struct Layouts {
    entries: Vec<Indexed>,
    /// The entry replaced next once all [`LAYOUTS`] are taken.
    next: usize,
}

/// One name sequence and its index.
struct Indexed {
    /// The number of names and their total length, compared first.
    key: u64,
    /// The names, one after another, and the length of each.
    names: Box<[u8]>,
    lens: Box<[u32]>,
    index: FieldLayout,
}

/// Name sequences a thread remembers: an EVTX file's events mostly share a dozen.
const LAYOUTS: usize = 16;
/// Events with more fields, or longer names in all, are indexed afresh each time.
const MAX_LAYOUT_FIELDS: usize = 256;
const MAX_LAYOUT_BYTES: usize = 8 << 10;

thread_local! {
    static INDEXED: std::cell::RefCell<Layouts> = std::cell::RefCell::new(Layouts::default());
}

impl Layouts {
    fn remember(&mut self, key: u64, fields: &[Field], index: Arc<[u64]>) {
        let mut names = Vec::with_capacity((key & u64::from(u32::MAX)) as usize);
        let mut lens = Vec::with_capacity(fields.len());
        for f in fields {
            names.extend_from_slice(f.name.as_bytes());
            lens.push(f.name.len() as u32);
        }
        let layout = Indexed { key, names: names.into(), lens: lens.into(), index: FieldLayout(index) };
        if self.entries.len() < LAYOUTS {
            self.entries.push(layout);
        } else if let Some(slot) = self.entries.get_mut(self.next) {
            *slot = layout;
            self.next = (self.next + 1) % LAYOUTS;
        }
    }
}

impl Indexed {
    /// Whether `fields` have exactly these names, in this order (the caller has compared
    /// their number and total length).
    fn holds(&self, fields: &[Field]) -> bool {
        let mut rest: &[u8] = &self.names;
        for (f, &len) in fields.iter().zip(self.lens.iter()) {
            match rest.split_at_checked(len as usize) {
                Some((stored, tail)) if stored == f.name.as_bytes() => rest = tail,
                _ => return false,
            }
        }
        true
    }
}

/// A new field index: each field's slot, found by its name's hash, with open addressing in a
/// table at least half free.
fn build_index(fields: &[Field]) -> Arc<[u64]> {
    let len = (fields.len() * 2).next_power_of_two().max(8);
    let mut slots = vec![EMPTY; len];
    for (i, f) in fields.iter().enumerate() {
        let hash = fold_hash(&f.name);
        let mut at = hash as usize & (len - 1);
        while slots[at] != EMPTY {
            at = (at + 1) & (len - 1);
        }
        slots[at] = slot(hash, i as u32);
    }
    slots.into()
}

/// A free slot of an event's field index. A used one holds a field's position in its low 32
/// bits and, in its high 32 bits, bits of the hash of its name ([`TAG`]).
const EMPTY: u64 = u64::MAX;

/// The bits of a slot that hold the name's hash.
const TAG: u64 = 0xFFFF_FFFF_0000_0000;

/// The slot of the field at `position` whose name hashes to `hash`: never [`EMPTY`], since
/// positions stay below `u32::MAX`.
fn slot(hash: u64, position: u32) -> u64 {
    (hash & TAG) | u64::from(position)
}

/// A field name prepared for lookups in many events: the name, its ASCII-lowercase form and
/// its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldKey {
    name: Box<str>,
    lower: Box<str>,
    hash: u64,
}

impl FieldKey {
    pub fn new(name: &str) -> FieldKey {
        let lower = name.to_ascii_lowercase();
        FieldKey { hash: fold_hash(&lower), name: name.into(), lower: lower.into() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name in ASCII lowercase.
    pub fn lower(&self) -> &str {
        &self.lower
    }
}

/// A hash of a name that ignores ASCII case, eight bytes at a time. Setting bit 0x20 of every
/// byte maps both cases of a letter to one value (and a few other bytes together, which only
/// costs a comparison).
fn fold_hash(name: &str) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let mut h = (name.len() as u64).wrapping_mul(K);
    let mut chunks = name.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ (u64::from_le_bytes(w) | FOLD)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        h = (h.rotate_left(5) ^ (tail_word(rest) | FOLD)).wrapping_mul(K);
    }
    h ^ (h >> 32)
}

/// The last one to seven bytes of a name as a little-endian word, zero-padded. Read with loads
/// that may overlap rather than copied into a buffer first: a word read back at once from
/// bytes just stored one by one waits for the stores (most names end in such a remainder).
fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    let (Some(&first), Some(&last)) = (rest.first(), rest.last()) else { return 0 };
    if n >= 4 {
        let mut lo = [0u8; 4];
        let mut hi = [0u8; 4];
        lo.copy_from_slice(&rest[..4]);
        hi.copy_from_slice(&rest[n - 4..]);
        u64::from(u32::from_le_bytes(lo)) | u64::from(u32::from_le_bytes(hi)) << ((n - 4) * 8)
    } else {
        let middle = rest.get(n / 2).copied().unwrap_or(first);
        u64::from(first) | u64::from(middle) << (n / 2 * 8) | u64::from(last) << ((n - 1) * 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_print_as_evidence_names_them() {
        assert_eq!(Position::Line(12).to_string(), "line 12");
        assert_eq!(Position::Offset(0).to_string(), "offset 0");
        let record = Position::EvtxRecord { record_id: 7, chunk_offset: u64::MAX };
        assert_eq!(record.to_string(), "record 7 (chunk at offset 18446744073709551615)");
        let mut pieces = String::new();
        record.write_pieces(|p| pieces.push_str(p));
        assert_eq!(pieces, record.to_string());
    }

    #[test]
    fn lookup_is_exact_then_case_insensitive() {
        let mut e = Event::new(Source::file("x"), Position::Line(1), Product::Windows, "json");
        e.set("CommandLine", Value::str("a"));
        e.set("commandline", Value::str("b"));
        assert_eq!(e.get("commandline"), Some(&Value::str("b")));
        assert_eq!(e.get("COMMANDLINE"), Some(&Value::str("a")));
        assert_eq!(e.get("Image"), None);
        e.set("Image", Value::str("c"));
        assert_eq!(e.get("image"), Some(&Value::str("c")));
        assert_eq!(e.get_folded("IMAGE", "image"), Some(&Value::str("c")));
        for i in 0..100 {
            e.set(format!("F{i}"), Value::Int(i));
        }
        for i in 0..100 {
            assert_eq!(e.get(&format!("f{i}")), Some(&Value::Int(i)));
        }
        assert_eq!(e.get("COMMANDLINE"), Some(&Value::str("a")));
        assert_eq!(e.lookup(&FieldKey::new("COMMANDLINE")), Some(&Value::str("a")));
        assert_eq!(e.lookup(&FieldKey::new("commandline")), Some(&Value::str("b")));
        assert_eq!(e.lookup_position(&FieldKey::new("image")), Some(2));
        assert_eq!(e.lookup(&FieldKey::new("F99")), Some(&Value::Int(99)));
        assert_eq!(e.lookup(&FieldKey::new("F100")), None);
    }

    fn event_named(names: &[&str]) -> Event {
        let mut e = Event::new(Source::file("x"), Position::Line(1), Product::Windows, "evtx");
        // Duplicates kept, as the codec restores them.
        e.extend_fields(
            names.iter().enumerate().map(|(i, n)| Field { name: (*n).into(), value: Value::Int(i as i64) }),
        );
        e
    }

    /// Events with the same names in the same order share one index; events whose names differ
    /// in any byte, in order or in where one ends, with the same count and total length (what
    /// is compared first), each get their own, and every lookup answers as a fresh index does.
    #[test]
    fn events_of_one_layout_share_an_index() {
        let a = event_named(&["Channel", "EventID", "CommandLine", "Image"]);
        let b = event_named(&["Channel", "EventID", "CommandLine", "Image"]);
        let layouts: [&[&str]; 6] = [
            &["Channel", "EventID", "CommandLine", "Image"],
            &["Channel", "EventID", "Image", "CommandLine"],
            &["Channel", "EventID", "CommandLinf", "Image"],
            &["Channel", "EventID", "CommandLineI", "mage"],
            &["channel", "EventID", "CommandLine", "Image"],
            &["Channel", "EventID", "Image", "Image", "CommandLine"],
        ];
        assert_eq!(a.lookup(&FieldKey::new("image")), Some(&Value::Int(3)));
        assert_eq!(b.lookup(&FieldKey::new("image")), Some(&Value::Int(3)));
        assert!(a.layout().same(b.layout()));
        // A clone keeps the layout until its names change; a changed value changes no name.
        let mut c = a.clone();
        assert!(c.layout().same(a.layout()));
        c.set("Image", Value::str("other"));
        assert!(c.layout().same(a.layout()));
        c.set("ParentImage", Value::str("p"));
        assert!(!c.layout().same(a.layout()));
        assert_eq!(c.lookup_position(&FieldKey::new("parentimage")), Some(4));
        for names in layouts {
            let e = event_named(names);
            let mut probes: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            probes.extend(
                ["IMAGE", "commandline", "commandlinei", "Mage", "Channel", "channel", "Absent"].map(String::from),
            );
            for p in &probes {
                let key = FieldKey::new(p);
                let fresh = FieldLayout(build_index(&e.fields));
                let expected = {
                    let f = Event { index: OnceLock::from(fresh), ..e.clone() };
                    f.lookup_position(&key)
                };
                assert_eq!(e.lookup_position(&key), expected, "{names:?} {p}");
            }
        }
        let exact = event_named(&["channel", "EventID", "CommandLine", "Image"]);
        assert_eq!(exact.lookup(&FieldKey::new("Channel")), Some(&Value::Int(0)));
        assert!(!exact.layout().same(a.layout()));
    }

    proptest::proptest! {
        /// Whatever names events have, and in whatever order they come, a lookup answers as an
        /// index built for the event alone does (names from a small alphabet, so that layouts
        /// often agree in count and length but not in bytes).
        #[test]
        fn shared_indexes_answer_as_fresh_ones(
            events in proptest::collection::vec(proptest::collection::vec("[aAbB.]{0,10}", 0..12), 1..40),
            probes in proptest::collection::vec("[aAbB.]{0,10}", 1..8),
        ) {
            for names in &events {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let e = event_named(&names);
                let alone = Event { index: OnceLock::from(FieldLayout(build_index(&e.fields))), ..e.clone() };
                for p in probes.iter().chain(events.iter().flatten()) {
                    let key = FieldKey::new(p);
                    proptest::prop_assert_eq!(e.lookup_position(&key), alone.lookup_position(&key));
                }
            }
        }
    }

    #[test]
    fn tail_word_is_the_zero_padded_word() {
        for n in 0..8 {
            let rest: Vec<u8> = (1..=n as u8).map(|b| b * 17).collect();
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(&rest);
            assert_eq!(tail_word(&rest), u64::from_le_bytes(w), "{n} bytes");
        }
    }

    #[test]
    fn fold_hash_ignores_ascii_case_only() {
        for (a, b) in [
            ("CommandLine", "commandline"),
            ("winlog.event_data.TargetUserName", "WINLOG.EVENT_DATA.targetusername"),
            ("", ""),
        ] {
            assert_eq!(fold_hash(a), fold_hash(b));
        }
        assert_ne!(fold_hash("ab"), fold_hash("ab "));
        assert_ne!(fold_hash("Image"), fold_hash("Images"));
    }

    #[test]
    fn json_is_flattened_to_dotted_paths() {
        let mut e = Event::new(Source::file("x"), Position::Line(1), Product::Other, "json");
        let v: serde_json::Value = serde_json::json!({
            "a": {"b": 1, "c": [1, 2]},
            "r": [{"arn": "x"}, {"arn": "y", "t": true}]
        });
        e.push_json("", &v);
        assert_eq!(e.get("a.b"), Some(&Value::Int(1)));
        assert_eq!(e.get("a.c"), Some(&Value::List(vec![Value::Int(1), Value::Int(2)])));
        assert_eq!(e.get("r.arn"), Some(&Value::List(vec![Value::str("x"), Value::str("y")])));
        assert_eq!(e.get("r.t"), Some(&Value::List(vec![Value::Bool(true)])));
    }
}
