//! Where detections wait until the run ends: what only a detection knows (host, key fields,
//! the kind of position) is written as a compact record to a temporary file; a small sort key
//! stays in memory, and what the detection shares with others (its rule, its source) is kept
//! once. The sort keys are sorted in runs of [`RUN_KEYS`], each run written to a second
//! temporary file once full; the timeline is then read back by merging the runs, and each
//! record rendered as JSON. Memory thus stays within one run of keys (under half a megabyte,
//! allocated once) and a small buffer per run, whatever the number of detections.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use nigehban_detect::{Detection, RuleInfo};
use nigehban_event::Position;
use nigehban_sigma::Level;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::output::{SmallWrites, WRITE_PIECE};

/// One detection as written out (JSON and JSON lines formats use it as is).
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    pub timestamp: Option<String>,
    pub rule_id: String,
    pub rule_title: String,
    pub level: String,
    pub engine: String,
    pub tags: Vec<String>,
    pub rule_path: String,
    pub host: Option<String>,
    pub source: String,
    pub position: String,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// What every detection of one rule shares, in the order [`Record`] has it, rendered once:
/// `"rule_id":…,"rule_title":…,"level":…,"engine":…,"tags":[…],"rule_path":…`.
#[derive(Serialize)]
struct RuleRef<'a> {
    rule_id: &'a str,
    rule_title: &'a str,
    level: &'a str,
    engine: &'a str,
    tags: &'a [String],
    rule_path: &'a str,
}

fn rule_fragment(rule: &RuleInfo) -> io::Result<Vec<u8>> {
    let r = RuleRef {
        rule_id: &rule.id,
        rule_title: &rule.title,
        level: rule.level.as_str(),
        engine: engine_name(rule.engine),
        tags: &rule.tags,
        rule_path: &rule.path,
    };
    let mut json = serde_json::to_vec(&r).map_err(io::Error::other)?;
    // Without the object's braces.
    json.pop();
    json.remove(0);
    Ok(json)
}

fn engine_name(e: nigehban_detect::Engine) -> &'static str {
    match e {
        nigehban_detect::Engine::Sigma => "sigma",
        nigehban_detect::Engine::Indicator => "indicator",
        nigehban_detect::Engine::Correlation => "correlation",
        nigehban_detect::Engine::Behaviour => "behaviour",
    }
}

impl Record {
    pub fn from_detection(d: &Detection) -> Record {
        Record {
            timestamp: d.timestamp.map(|t| t.to_string()),
            rule_id: d.rule.id.clone(),
            rule_title: d.rule.title.clone(),
            level: d.rule.level.as_str().to_owned(),
            engine: engine_name(d.rule.engine).to_owned(),
            tags: d.rule.tags.clone(),
            rule_path: d.rule.path.clone(),
            host: d.host.clone(),
            source: d.source.to_string(),
            position: d.position.to_string(),
            fields: d.fields.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect(),
        }
    }
}

/// What sorts a detection into the timeline, and where the rest of it is in the file.
#[derive(Clone, Copy)]
struct Key {
    /// Nanoseconds since the epoch as two halves that order as the whole does; `None` (as
    /// the largest value) for detections without a time, which come last.
    time: (i64, u64),
    /// Index in the store's sources, then (once sorting) the rank of its name.
    source: u32,
    position: (u64, u64),
    /// Index in the store's rules, then (once sorting) the rank of its id.
    rule: u32,
    len: u32,
    offset: u64,
}

/// The size of a key written to the runs' file.
const KEY_BYTES: usize = 52;

impl Key {
    fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut b = [0u8; KEY_BYTES];
        b[0..8].copy_from_slice(&self.time.0.to_le_bytes());
        b[8..16].copy_from_slice(&self.time.1.to_le_bytes());
        b[16..20].copy_from_slice(&self.source.to_le_bytes());
        b[20..28].copy_from_slice(&self.position.0.to_le_bytes());
        b[28..36].copy_from_slice(&self.position.1.to_le_bytes());
        b[36..40].copy_from_slice(&self.rule.to_le_bytes());
        b[40..44].copy_from_slice(&self.len.to_le_bytes());
        b[44..52].copy_from_slice(&self.offset.to_le_bytes());
        out.write_all(&b)
    }

    fn read(b: &[u8; KEY_BYTES]) -> Key {
        let u64_at = |at: usize| u64::from_le_bytes(std::array::from_fn(|i| b[at + i]));
        let u32_at = |at: usize| u32::from_le_bytes(std::array::from_fn(|i| b[at + i]));
        Key {
            time: (u64_at(0) as i64, u64_at(8)),
            source: u32_at(16),
            position: (u64_at(20), u64_at(28)),
            rule: u32_at(36),
            len: u32_at(40),
            offset: u64_at(44),
        }
    }
}

fn position_key(p: Position) -> (u64, u64) {
    match p {
        Position::Line(n) => (n, 0),
        Position::Offset(o) => (o, 0),
        Position::EvtxRecord { record_id, chunk_offset } => (chunk_offset, record_id),
    }
}

/// Counts for the summary.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub total: usize,
    pub by_level: HashMap<Level, usize>,
    /// (title, id, level) → count
    pub by_rule: HashMap<(String, String, Level), usize>,
    pub by_host: HashMap<String, usize>,
}

/// The detections of one run, in a temporary file.
pub struct DetectionStore {
    file: BufWriter<SmallWrites<File>>,
    path: PathBuf,
    written: u64,
    /// The keys of the run being gathered.
    keys: Vec<Key>,
    /// Keys in a run before it is sorted and written out.
    run_keys: usize,
    /// The runs written so far (each sorted): where each starts in `runs_file`, and its length.
    runs: Vec<(u64, usize)>,
    runs_file: Option<(BufWriter<File>, PathBuf)>,
    runs_written: u64,
    /// All detections pushed.
    total: usize,
    sources: Vec<Arc<str>>,
    source_ids: HashMap<Arc<str>, u32>,
    /// The source of the last detection pushed, and its index in `sources`.
    last_source: Option<(Arc<str>, u32)>,
    rules: Vec<Arc<RuleInfo>>,
    rule_ids: HashMap<usize, u32>,
    /// Detections per entry of `rules`.
    rule_counts: Vec<usize>,
    by_host: HashMap<String, usize>,
    line: Vec<u8>,
}

/// Records of a window fewer than this many bytes apart in the temporary file are read
/// together, the bytes between them included (see [`Merge::read_window`]).
const JOIN_GAP: u64 = 1 << 10;
/// The most one read takes in.
const MAX_READ: u64 = 1 << 20;
/// The sort keys kept in memory before they are sorted and written out as a run (56 bytes
/// each: about 460 KB, allocated at once so that the vector never doubles).
const RUN_KEYS: usize = 8 << 10;
/// Each run's read buffer while merging.
const RUN_BUFFER: usize = 16 << 10;

impl DetectionStore {
    pub fn new() -> io::Result<DetectionStore> {
        Self::with_runs_of(RUN_KEYS)
    }

    fn with_runs_of(run_keys: usize) -> io::Result<DetectionStore> {
        let dir = std::env::temp_dir();
        let mut n = 0u32;
        loop {
            let path = dir.join(format!("nigehban-hunt-{}-{n}.bin", std::process::id()));
            match File::options().read(true).write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(DetectionStore {
                        file: BufWriter::with_capacity(WRITE_PIECE, SmallWrites(file)),
                        path,
                        written: 0,
                        keys: Vec::with_capacity(run_keys.clamp(1, RUN_KEYS)),
                        run_keys: run_keys.max(1),
                        runs: Vec::new(),
                        runs_file: None,
                        runs_written: 0,
                        total: 0,
                        sources: Vec::new(),
                        source_ids: HashMap::new(),
                        last_source: None,
                        rules: Vec::new(),
                        rule_ids: HashMap::new(),
                        rule_counts: Vec::new(),
                        by_host: HashMap::new(),
                        line: Vec::new(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Counts by level, rule and host.
    pub fn tally(&self) -> Tally {
        let mut t = Tally { total: self.total, by_host: self.by_host.clone(), ..Tally::default() };
        for (rule, &n) in self.rules.iter().zip(&self.rule_counts) {
            *t.by_level.entry(rule.level).or_default() += n;
            *t.by_rule.entry((rule.title.clone(), rule.id.clone(), rule.level)).or_default() += n;
        }
        t
    }

    pub fn push(&mut self, d: &Detection) -> io::Result<()> {
        let rule = match self.rule_ids.get(&(Arc::as_ptr(&d.rule) as usize)) {
            Some(&i) => i,
            None => {
                let i = self.rules.len() as u32;
                self.rule_ids.insert(Arc::as_ptr(&d.rule) as usize, i);
                self.rules.push(d.rule.clone());
                self.rule_counts.push(0);
                i
            }
        };
        // Detections come in runs from one unit of work, which names its source once.
        let source = match &self.last_source {
            Some((s, i)) if Arc::ptr_eq(s, &d.source) => *i,
            _ => match self.source_ids.get(&d.source) {
                Some(&i) => i,
                None => {
                    let i = self.sources.len() as u32;
                    self.source_ids.insert(d.source.clone(), i);
                    self.sources.push(d.source.clone());
                    i
                }
            },
        };
        if self.last_source.as_ref().is_none_or(|(s, _)| !Arc::ptr_eq(s, &d.source)) {
            self.last_source = Some((d.source.clone(), source));
        }
        self.line.clear();
        encode(&mut self.line, d);
        self.file.write_all(&self.line)?;
        self.keys.push(Key {
            time: split_time(d.timestamp),
            source,
            position: position_key(d.position),
            rule,
            len: self.line.len() as u32,
            offset: self.written,
        });
        self.written += self.line.len() as u64;
        self.total += 1;
        if self.keys.len() >= self.run_keys {
            self.write_run()?;
        }
        if let Some(c) = self.rule_counts.get_mut(rule as usize) {
            *c += 1;
        }
        let host = d.host.as_deref().unwrap_or("-");
        match self.by_host.get_mut(host) {
            Some(c) => *c += 1,
            None => {
                self.by_host.insert(host.to_owned(), 1);
            }
        }
        Ok(())
    }

    /// Sorts the gathered keys by timeline order (the names of sources and rules, whose final
    /// ranks are not known yet) and writes them out as one run.
    fn write_run(&mut self) -> io::Result<()> {
        let (sources, rules) = (&self.sources, &self.rules);
        let name = |i: u32| sources.get(i as usize).map_or("", |s| &**s);
        let id = |i: u32| rules.get(i as usize).map_or("", |r| r.id.as_str());
        // Unstable (no scratch buffer), with equal keys kept in the order they came by their
        // offsets in the file, which grow with every record.
        self.keys.sort_unstable_by(|a, b| {
            a.time
                .cmp(&b.time)
                .then_with(|| name(a.source).cmp(name(b.source)))
                .then(a.position.cmp(&b.position))
                .then_with(|| id(a.rule).cmp(id(b.rule)))
                .then(a.offset.cmp(&b.offset))
        });
        if self.runs_file.is_none() {
            let path = self.path.with_extension("keys");
            let file = File::options().read(true).write(true).create(true).truncate(true).open(&path)?;
            self.runs_file = Some((BufWriter::with_capacity(RUN_BUFFER, file), path));
        }
        let Some((out, _)) = self.runs_file.as_mut() else { return Ok(()) };
        for k in &self.keys {
            k.write(out)?;
        }
        self.runs.push((self.runs_written, self.keys.len()));
        self.runs_written += (self.keys.len() * KEY_BYTES) as u64;
        self.keys.clear();
        Ok(())
    }

    /// Reads the detections back in timeline order (time, none last; source; position; rule
    /// id), as JSON records.
    pub fn for_each_sorted(self, mut f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        self.rendered(None, |Rendered { out, ends }| {
            let mut start = 0;
            for end in ends {
                if end > start {
                    f(&out[start..end])?;
                }
                start = end;
            }
            Ok(())
        })
    }

    /// Writes the detections to `out` in the order of [`DetectionStore::for_each_sorted`], as
    /// JSON lines: each record followed by a line break, written a rendered part (a thousand
    /// records or so) at a time rather than record by record.
    pub fn write_lines(self, out: &mut dyn Write) -> io::Result<()> {
        self.rendered(Some(b'\n'), |part| out.write_all(&part.out))
    }

    /// Merges, reads and renders the records in timeline order, each followed by `terminator`
    /// if there is one, and hands `each` the rendered parts in order.
    fn rendered(mut self, terminator: Option<u8>, mut each: impl FnMut(Rendered) -> io::Result<()>) -> io::Result<()> {
        self.file.flush()?;
        // Sort by the ranks of the source names and rule ids, which order as the strings do.
        let source_rank = ranks(&self.sources, |s| &**s);
        let rule_rank = ranks(&self.rules, |r| r.id.as_str());
        let rank = |ranks: &[u32], i: u32| ranks.get(i as usize).copied().unwrap_or(u32::MAX);
        let order = |k: &Key| (k.time, rank(&source_rank, k.source), k.position, rank(&rule_rank, k.rule));
        // The keys still in memory are the last run; the runs written out are merged with it
        // (on equal keys, the earlier run first: the order detections came in).
        self.keys.sort_unstable_by_key(|k| (order(k), k.offset));
        let mut readers = Vec::with_capacity(self.runs.len());
        if let Some((out, path)) = self.runs_file.as_mut() {
            out.flush()?;
            for &(start, len) in &self.runs {
                let mut file = File::open(&*path)?;
                file.seek(SeekFrom::Start(start))?;
                readers.push(Run::File { reader: BufReader::with_capacity(RUN_BUFFER, file), left: len });
            }
        }
        let memory = std::mem::take(&mut self.keys);
        readers.push(Run::Memory(memory.into_iter()));
        let mut heap = BinaryHeap::with_capacity(readers.len());
        for (run, reader) in readers.iter_mut().enumerate() {
            if let Some(key) = reader.next()? {
                heap.push(Head { order: order(&key), run, key });
            }
        }
        let rules = self.rules.iter().map(|r| rule_fragment(r)).collect::<io::Result<Vec<_>>>()?;
        let sources = self.sources.iter().map(|s| json_string(s)).collect::<io::Result<Vec<_>>>()?;
        let mut merge = Merge {
            heap,
            readers,
            order: &order,
            file: self.file.get_mut().get_mut(),
            rules: &rules,
            sources: &sources,
            window: Vec::with_capacity(RENDER_WINDOW),
            raw: Vec::new(),
            spans: Vec::new(),
            by_offset: Vec::with_capacity(RENDER_WINDOW),
            terminator,
        };
        // A second thread merges, reads and renders the next window while this one hands the
        // previous one on.
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<Rendered>>>(1);
            scope.spawn(move || {
                loop {
                    let next = merge.next_window();
                    let last = next.as_ref().map_or(true, Vec::is_empty);
                    // The receiver has gone if `f` failed: nothing more is wanted.
                    if tx.send(next).is_err() || last {
                        break;
                    }
                }
            });
            for parts in rx {
                for part in parts? {
                    each(part)?;
                }
            }
            Ok(())
        })
    }
}

/// The merge of the sorted runs, and the reading and rendering of its records.
struct Merge<'a> {
    heap: BinaryHeap<Head>,
    readers: Vec<Run>,
    order: &'a (dyn Fn(&Key) -> Order + Sync),
    /// The records' file.
    file: &'a mut File,
    /// Each rule's shared part, rendered (see [`rule_fragment`]).
    rules: &'a [Vec<u8>],
    /// Each source's name, rendered as a JSON string.
    sources: &'a [Vec<u8>],
    window: Vec<Key>,
    /// The bytes read for the window, and where in them each of its records is.
    raw: Vec<u8>,
    spans: Vec<std::ops::Range<usize>>,
    /// The window's positions in the order of their records' offsets.
    by_offset: Vec<u32>,
    /// A byte written after each record (a line break for JSON lines).
    terminator: Option<u8>,
}

impl Merge<'_> {
    /// The next [`RENDER_WINDOW`] records in timeline order, rendered as JSON on every thread;
    /// nothing once all are done.
    fn next_window(&mut self) -> io::Result<Vec<Rendered>> {
        self.window.clear();
        while self.window.len() < RENDER_WINDOW {
            let Some(head) = self.heap.pop() else { break };
            self.window.push(head.key);
            if let Some(reader) = self.readers.get_mut(head.run)
                && let Some(key) = reader.next()?
            {
                self.heap.push(Head { order: (self.order)(&key), run: head.run, key });
            }
        }
        self.read_window()?;
        let (raw, rules, sources, terminator) = (&self.raw, self.rules, self.sources, self.terminator);
        self.window
            .par_chunks(RENDER_CHUNK)
            .zip(self.spans.par_chunks(RENDER_CHUNK))
            .map(|(keys, spans)| {
                // About what a record of the shared corpus takes, so that `out` seldom grows.
                let mut out = Vec::with_capacity(keys.len() * 768);
                let mut ends = Vec::with_capacity(keys.len());
                let mut time = TimeText::default();
                for (k, span) in keys.iter().zip(spans) {
                    let start = out.len();
                    render(k, &raw[span.clone()], rules, sources, &mut time, &mut out)?;
                    if let Some(t) = terminator
                        && out.len() > start
                    {
                        out.push(t);
                    }
                    ends.push(out.len());
                }
                Ok(Rendered { out, ends })
            })
            .collect()
    }

    /// Reads the window's records in the order they lie in the file, records close together
    /// in one read. The timeline interleaves the detections of every file whose times
    /// overlap, each file's written in stretches: read in timeline order through a cache of
    /// blocks, a hunt over more such files than the cache held read a whole block for almost
    /// every record.
    ///
    /// `raw` keeps its length from one window to the next (a window's bytes are the first
    /// ones, as far as its spans reach), so that it is zeroed only where it grows rather than
    /// all over again before every window is read into it.
    fn read_window(&mut self) -> io::Result<()> {
        let window = &self.window;
        let mut used = 0;
        self.spans.clear();
        self.spans.resize(window.len(), 0..0);
        self.by_offset.clear();
        self.by_offset.extend(0..window.len() as u32);
        self.by_offset.sort_unstable_by_key(|&i| window[i as usize].offset);
        let mut i = 0;
        while let Some(&first) = self.by_offset.get(i) {
            let first = &window[first as usize];
            let start = first.offset;
            let mut end = start + u64::from(first.len);
            let mut j = i + 1;
            while let Some(&next) = self.by_offset.get(j) {
                let k = &window[next as usize];
                let k_end = k.offset + u64::from(k.len);
                if k.offset > end + JOIN_GAP || k_end - start > MAX_READ {
                    break;
                }
                end = end.max(k_end);
                j += 1;
            }
            let (base, n) = (used, (end - start) as usize);
            used += n;
            if self.raw.len() < used {
                self.raw.resize(used, 0);
            }
            read_at(self.file, start, &mut self.raw[base..used])?;
            for &at in &self.by_offset[i..j] {
                let k = &window[at as usize];
                let from = base + (k.offset - start) as usize;
                self.spans[at as usize] = from..from + k.len as usize;
            }
            i = j;
        }
        Ok(())
    }
}

/// A part of a window of records rendered as JSON: the text, and where each record ends.
struct Rendered {
    out: Vec<u8>,
    ends: Vec<usize>,
}

/// The timeline order of a key: time, then the ranks of its source's name, position, then
/// the rank of its rule's id.
type Order = ((i64, u64), u32, (u64, u64), u32);

/// The next key of a run, in a merge.
struct Head {
    order: Order,
    run: usize,
    key: Key,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    /// Reversed: `BinaryHeap` pops the greatest, the merge wants the least.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.order, other.run).cmp(&(self.order, self.run))
    }
}

/// A sorted run of keys: written out, or the last one, still in memory.
enum Run {
    File { reader: BufReader<File>, left: usize },
    Memory(std::vec::IntoIter<Key>),
}

impl Run {
    fn next(&mut self) -> io::Result<Option<Key>> {
        match self {
            Run::File { reader, left } => {
                if *left == 0 {
                    return Ok(None);
                }
                let mut b = [0u8; KEY_BYTES];
                reader.read_exact(&mut b)?;
                *left -= 1;
                Ok(Some(Key::read(&b)))
            }
            Run::Memory(keys) => Ok(keys.next()),
        }
    }
}

/// Records read back and rendered together, and per rendering task.
const RENDER_WINDOW: usize = 4096;
const RENDER_CHUNK: usize = 1024;

/// The text of the last time rendered: in the timeline, detections of one time come together
/// (the rules one event met; the same events in copies of a log).
#[derive(Default)]
struct TimeText {
    time: Option<(i64, u64)>,
    text: Vec<u8>,
}

impl TimeText {
    /// The time as its JSON value (a string, or `null` for no time).
    fn get(&mut self, time: (i64, u64)) -> io::Result<&[u8]> {
        if self.time != Some(time) {
            self.text.clear();
            match join_time(time) {
                Some(t) => write!(self.text, "\"{t}\"")?,
                None => self.text.extend_from_slice(b"null"),
            }
            self.time = Some(time);
        }
        Ok(&self.text)
    }
}

/// Appends the JSON record of one stored detection to `out` (nothing if its rule or source is
/// unknown, which a store it wrote itself never has): what [`Record`] serializes to, with the
/// rule's part rendered once for all its detections (`rules`), and each source's name once
/// (`sources`).
fn render(
    k: &Key,
    raw: &[u8],
    rules: &[Vec<u8>],
    sources: &[Vec<u8>],
    time: &mut TimeText,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let (Some(rule), Some(source)) = (rules.get(k.rule as usize), sources.get(k.source as usize)) else {
        return Ok(());
    };
    let stored = decode(raw).ok_or_else(|| io::Error::other("detection store: a damaged record"))?;
    let position = match stored.position_kind {
        0 => Position::Line(k.position.0),
        1 => Position::Offset(k.position.0),
        _ => Position::EvtxRecord { record_id: k.position.1, chunk_offset: k.position.0 },
    };
    // Times and positions print without characters that JSON escapes.
    out.extend_from_slice(b"{\"timestamp\":");
    out.extend_from_slice(time.get(k.time)?);
    out.push(b',');
    out.extend_from_slice(rule);
    out.extend_from_slice(b",\"host\":");
    match stored.host {
        Some(h) => json_str(out, h)?,
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"source\":");
    out.extend_from_slice(source);
    out.extend_from_slice(b",\"position\":\"");
    position.write_pieces(|p| out.extend_from_slice(p.as_bytes()));
    out.extend_from_slice(b"\",\"fields\":{");
    for (i, (name, value)) in stored.fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, name)?;
        out.push(b':');
        json_str(out, value)?;
    }
    out.extend_from_slice(b"}}");
    Ok(())
}

fn json_str(out: &mut Vec<u8>, s: &str) -> io::Result<()> {
    // Most texts hold nothing that JSON escapes: those are copied as they are, between quotes.
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return Ok(());
    }
    serde_json::to_writer(out, s).map_err(io::Error::other)
}

/// Whether `text` holds a byte that a JSON string escapes: a control character (below
/// 0x20), `"` or `\`. Eight bytes at a time: a byte is below 0x20 when subtracting 0x20
/// borrows from its top bit while the byte's own top bit is clear, and is `"` or `\` when
/// its exclusive or with that character is zero.
fn needs_escape(text: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let special = |w: u64| {
        (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
            | zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
    };
    let mut chunks = text.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        if special(u64::from_le_bytes(w)) != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

fn json_string(s: &str) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() + 2);
    json_str(&mut out, s)?;
    Ok(out)
}

const NO_TIME: (i64, u64) = (i64::MAX, u64::MAX);

fn split_time(t: Option<jiff::Timestamp>) -> (i64, u64) {
    match t {
        Some(t) => {
            let n = t.as_nanosecond();
            ((n >> 64) as i64, n as u64)
        }
        None => NO_TIME,
    }
}

fn join_time(t: (i64, u64)) -> Option<jiff::Timestamp> {
    if t == NO_TIME {
        return None;
    }
    jiff::Timestamp::from_nanosecond((i128::from(t.0) << 64) | i128::from(t.1)).ok()
}

/// For each item, the rank of its name among all names (equal names share a rank).
fn ranks<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<u32> {
    let mut order: Vec<u32> = (0..items.len() as u32).collect();
    order.sort_by(|&a, &b| name(&items[a as usize]).cmp(name(&items[b as usize])));
    let mut out = vec![0; items.len()];
    let mut rank = 0;
    for (n, &i) in order.iter().enumerate() {
        if n > 0 && name(&items[order[n - 1] as usize]) != name(&items[i as usize]) {
            rank = n as u32;
        }
        out[i as usize] = rank;
    }
    out
}

/// The part of a detection only it knows, as stored: the kind of position, the host and the
/// key fields, each string with its length before it.
fn encode(out: &mut Vec<u8>, d: &Detection) {
    out.push(match d.position {
        Position::Line(_) => 0,
        Position::Offset(_) => 1,
        Position::EvtxRecord { .. } => 2,
    });
    match &d.host {
        Some(h) => {
            out.push(1);
            put_str(out, h);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(d.fields.len() as u32).to_le_bytes());
    for (k, v) in &d.fields {
        put_str(out, k);
        put_str(out, v);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Stored<'a> {
    position_kind: u8,
    host: Option<&'a str>,
    fields: Vec<(&'a str, &'a str)>,
}

fn decode(mut raw: &[u8]) -> Option<Stored<'_>> {
    let position_kind = take_u8(&mut raw)?;
    let host = match take_u8(&mut raw)? {
        0 => None,
        _ => Some(take_str(&mut raw)?),
    };
    let n = take_u32(&mut raw)?;
    let mut fields = Vec::with_capacity(n.min(64) as usize);
    for _ in 0..n {
        fields.push((take_str(&mut raw)?, take_str(&mut raw)?));
    }
    Some(Stored { position_kind, host, fields })
}

fn take_u8(raw: &mut &[u8]) -> Option<u8> {
    let (&b, rest) = raw.split_first()?;
    *raw = rest;
    Some(b)
}

fn take_u32(raw: &mut &[u8]) -> Option<u32> {
    let (head, rest) = raw.split_first_chunk::<4>()?;
    *raw = rest;
    Some(u32::from_le_bytes(*head))
}

fn take_str<'a>(raw: &mut &'a [u8]) -> Option<&'a str> {
    let n = take_u32(raw)? as usize;
    if raw.len() < n {
        return None;
    }
    let (s, rest) = raw.split_at(n);
    *raw = rest;
    std::str::from_utf8(s).ok()
}

#[cfg(unix)]
fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

impl Drop for DetectionStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some((_, path)) = &self.runs_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nigehban_detect::Engine;

    fn rule(id: &str) -> Arc<RuleInfo> {
        Arc::new(RuleInfo {
            engine: Engine::Sigma,
            id: id.into(),
            title: format!("title {id}"),
            level: Level::High,
            tags: vec!["attack.t1".into()],
            path: format!("{id}.yml"),
            key_fields: Vec::new(),
        })
    }

    fn detection(rule: &Arc<RuleInfo>, source: &str, t: Option<i64>, record: u64, host: Option<&str>) -> Detection {
        Detection {
            rule: rule.clone(),
            timestamp: t.map(|s| jiff::Timestamp::new(s, if s < 0 { -5 } else { 5 }).unwrap()),
            host: host.map(Into::into),
            source: source.into(),
            position: Position::EvtxRecord { record_id: record, chunk_offset: 4096 },
            fields: vec![("EventID".into(), "4688".into()), ("CommandLine".into(), "x \"y\" é".into())],
            counted: Vec::new(),
        }
    }

    /// JSON lines written a rendered part at a time are the records one by one, each
    /// followed by a line break, over several windows and runs.
    #[test]
    fn lines_are_the_records_one_by_one() {
        let (r, q) = (rule("r"), rule("q"));
        let fill = || {
            let mut store = DetectionStore::with_runs_of(1000).unwrap();
            for i in 0..(RENDER_WINDOW as u64 * 2 + 77) {
                let rule = if i % 3 == 0 { &q } else { &r };
                let host = format!("h{}", i % 11);
                let t = (i % 4 != 0).then_some((i % 97) as i64);
                store.push(&detection(rule, &format!("s{}", i % 5), t, i, Some(&host))).unwrap();
            }
            store
        };
        let mut expected = Vec::new();
        fill()
            .for_each_sorted(|raw| {
                expected.extend_from_slice(raw);
                expected.push(b'\n');
                Ok(())
            })
            .unwrap();
        let mut lines = Vec::new();
        fill().write_lines(&mut lines).unwrap();
        assert_eq!(lines.iter().filter(|&&b| b == b'\n').count(), RENDER_WINDOW * 2 + 77);
        assert!(lines == expected, "the lines differ from the records");
    }

    /// The store's timeline, one JSON record per item.
    fn timeline(store: DetectionStore) -> Vec<String> {
        let mut out = Vec::new();
        store
            .for_each_sorted(|raw| {
                out.push(String::from_utf8(raw.to_vec()).unwrap());
                Ok(())
            })
            .unwrap();
        out
    }

    /// What [`Record`] serializes `ds` to.
    fn as_records(ds: &[&Detection]) -> Vec<String> {
        ds.iter().map(|d| serde_json::to_string(&Record::from_detection(d)).unwrap()).collect()
    }

    #[test]
    fn records_come_back_in_timeline_order_as_written() {
        // In memory alone, and merged from runs of 1, 2 and 4 keys.
        for run_keys in [RUN_KEYS, 1, 2, 4] {
            timeline_order_with_runs_of(run_keys);
        }
    }

    fn timeline_order_with_runs_of(run_keys: usize) {
        let (a, b) = (rule("b-rule"), rule("a-rule"));
        let ds = [
            detection(&a, "s2", Some(10), 1, Some("H1")),
            detection(&b, "s1", None, 2, None),
            detection(&b, "s2", Some(10), 1, Some("H1")),
            detection(&a, "s1", Some(10), 7, Some("H2")),
            detection(&a, "s1", Some(3), 9, Some("H2")),
            detection(&a, "s1", Some(-3), 9, Some("H2")),
        ];
        let mut store = DetectionStore::with_runs_of(run_keys).unwrap();
        for d in &ds {
            store.push(d).unwrap();
        }
        let tally = store.tally();
        assert_eq!(tally.total, 6);
        assert_eq!(tally.by_level.get(&Level::High), Some(&6));
        assert_eq!(tally.by_rule.get(&("title a-rule".into(), "a-rule".into(), Level::High)), Some(&2));
        assert_eq!(tally.by_host.get("-"), Some(&1));
        assert_eq!(
            timeline(store),
            as_records(&[&ds[5], &ds[4], &ds[3], &ds[2], &ds[0], &ds[1]]),
            "runs of {run_keys}"
        );
    }

    #[test]
    fn records_render_as_record_serializes() {
        // Characters JSON escapes, in every string a record holds.
        let odd = "q\"b\\s/ \n\r\t\u{1}\u{1f} é 日本 🦀 \u{7f}";
        let rule = Arc::new(RuleInfo {
            engine: Engine::Indicator,
            id: format!("id {odd}"),
            title: format!("title {odd}"),
            level: Level::Informational,
            tags: vec![odd.into(), String::new()],
            path: format!("C:\\rules\\{odd}.yml"),
            key_fields: Vec::new(),
        });
        let bare = Arc::new(RuleInfo { tags: Vec::new(), ..(*rule).clone() });
        let mut ds = vec![
            detection(&rule, odd, Some(1), 1, Some(odd)),
            detection(&bare, "s", None, 2, None),
            detection(&rule, "s", Some(-7), 3, Some("")),
            // The time of the record before it, rendered once for both.
            detection(&bare, "t", Some(1), 4, None),
        ];
        ds[0].fields.push((odd.into(), odd.into()));
        ds[1].fields.clear();
        ds[1].position = Position::Line(12);
        ds[2].position = Position::Offset(99);
        let mut store = DetectionStore::new().unwrap();
        for d in &ds {
            store.push(d).unwrap();
        }
        assert_eq!(timeline(store), as_records(&[&ds[2], &ds[0], &ds[3], &ds[1]]));
    }

    #[test]
    fn an_error_from_the_writer_ends_the_reading_back() {
        let r = rule("r");
        let mut store = DetectionStore::with_runs_of(100).unwrap();
        for i in 0..(3 * RENDER_WINDOW as u64) {
            store.push(&detection(&r, "s", Some(i as i64), i, None)).unwrap();
        }
        let mut seen = 0;
        let result = store.for_each_sorted(|_| {
            seen += 1;
            if seen == 10 { Err(io::Error::other("disk full")) } else { Ok(()) }
        });
        assert_eq!(result.unwrap_err().to_string(), "disk full");
        assert_eq!(seen, 10);
    }

    /// Many files whose times overlap, each written in one stretch: the timeline takes one
    /// record from each in turn, and every record comes back whole and in its place.
    #[test]
    fn interleaved_files_read_back_in_timeline_order() {
        let r = rule("r");
        let mut store = DetectionStore::with_runs_of(1000).unwrap();
        let (files, times) = (120u64, 40i64);
        for f in 0..files {
            for t in 0..times {
                // A host per record, and records of varied lengths.
                let host = format!("f{f:03}-t{t:02}-{}", "x".repeat(((f * 7 + t as u64) % 50) as usize));
                store.push(&detection(&r, &format!("file{f:03}"), Some(t), t as u64, Some(&host))).unwrap();
            }
        }
        let records: Vec<Record> = timeline(store).iter().map(|j| serde_json::from_str(j).unwrap()).collect();
        assert_eq!(records.len(), (files * times as u64) as usize);
        let mut at = 0;
        for t in 0..times {
            for f in 0..files {
                let rec = &records[at];
                at += 1;
                assert_eq!(rec.source, format!("file{f:03}"));
                let host = rec.host.as_deref().unwrap_or_default();
                assert!(host.starts_with(&format!("f{f:03}-t{t:02}-")), "{host} at file {f}, time {t}");
                assert_eq!(host.len(), 9 + ((f * 7 + t as u64) % 50) as usize);
                assert_eq!(rec.fields.get("CommandLine").and_then(|v| v.as_str()), Some("x \"y\" é"));
            }
        }
    }

    #[test]
    fn many_records_across_runs_and_reads() {
        let mut outputs = Vec::new();
        for run_keys in [1 << 20, RUN_KEYS, 1000, 4096] {
            outputs.push(many_records_with_runs_of(run_keys));
        }
        // The merge of runs gives exactly the order of one sort in memory, ties included.
        assert!(outputs.iter().all(|o| *o == outputs[0]));
    }

    fn many_records_with_runs_of(run_keys: usize) -> Vec<String> {
        let (r, q) = (rule("r"), rule("q"));
        let mut store = DetectionStore::with_runs_of(run_keys).unwrap();
        let long = "v".repeat(MAX_READ as usize + 10);
        for i in 0..9000u64 {
            // Ties: the same time, source, position and rule, told apart by the host only.
            let host = format!("h{i}");
            let rule = if i % 7 == 0 { &q } else { &r };
            let mut d = detection(rule, &format!("s{}", i % 4), Some((i % 5) as i64), i % 3, Some(&host));
            if i % 3000 == 0 {
                d.fields.push(("long".into(), long.clone()));
            }
            store.push(&d).unwrap();
        }
        assert_eq!(store.len(), 9000);
        let mut out = Vec::new();
        let mut last = None;
        store
            .for_each_sorted(|raw| {
                let rec: Record = serde_json::from_slice(raw).unwrap();
                let key = (rec.timestamp.clone(), rec.source.clone());
                assert!(last.as_ref().is_none_or(|l| *l <= key));
                last = Some(key);
                out.push(String::from_utf8(raw.to_vec()).unwrap());
                Ok(())
            })
            .unwrap();
        assert_eq!(out.len(), 9000);
        out
    }

    /// Texts are written as serde_json writes them, whether they hold a character to escape
    /// or not, wherever it is (in the eight-byte words or the rest).
    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut texts: Vec<String> =
            vec![String::new(), "plain".into(), "C:\\Windows\\x.exe".into(), "é ü 漢字 🙂".into()];
        for c in (0u8..0x80).map(char::from).chain(['\u{7f}', '\u{80}', '\u{2028}', 'é']) {
            for at in [0, 3, 7, 8, 12, 15, 16, 20] {
                let mut t: String = "abcdefghijklmnopqrstu".chars().take(at).collect();
                t.push(c);
                t.push_str("xyz");
                texts.push(t);
            }
        }
        for t in texts {
            let mut ours = Vec::new();
            json_str(&mut ours, &t).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&t).unwrap(), "{t:?}");
        }
    }
}
