//! Where detections wait until the run ends: each is written as one JSON record to a
//! temporary file, and only a small sort key stays in memory. The timeline is then read back
//! in time order. Memory thus grows by a few dozen bytes per detection, not by the detection.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use nigehban_detect::{Detection, RuleInfo};
use nigehban_event::Position;
use nigehban_sigma::Level;
use serde::{Deserialize, Serialize};

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

/// The same record, borrowed from a detection, for writing without copying its strings.
#[derive(Serialize)]
struct RecordRef<'a> {
    timestamp: Option<String>,
    rule_id: &'a str,
    rule_title: &'a str,
    level: &'a str,
    engine: &'a str,
    tags: &'a [String],
    rule_path: &'a str,
    host: Option<&'a str>,
    source: &'a str,
    position: String,
    #[serde(serialize_with = "fields_as_map")]
    fields: &'a [(String, String)],
}

fn fields_as_map<S: serde::Serializer>(fields: &&[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(fields.len()))?;
    for (k, v) in fields.iter() {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

impl<'a> RecordRef<'a> {
    fn new(d: &'a Detection) -> Self {
        RecordRef {
            timestamp: d.timestamp.map(|t| t.to_string()),
            rule_id: &d.rule.id,
            rule_title: &d.rule.title,
            level: d.rule.level.as_str(),
            engine: match d.rule.engine {
                nigehban_detect::Engine::Sigma => "sigma",
                nigehban_detect::Engine::Indicator => "indicator",
                nigehban_detect::Engine::Correlation => "correlation",
            },
            tags: &d.rule.tags,
            rule_path: &d.rule.path,
            host: d.host.as_deref(),
            source: &d.source,
            position: d.position.to_string(),
            fields: &d.fields,
        }
    }
}

impl Record {
    pub fn from_detection(d: &Detection) -> Record {
        Record {
            timestamp: d.timestamp.map(|t| t.to_string()),
            rule_id: d.rule.id.clone(),
            rule_title: d.rule.title.clone(),
            level: d.rule.level.as_str().to_owned(),
            engine: RecordRef::new(d).engine.to_owned(),
            tags: d.rule.tags.clone(),
            rule_path: d.rule.path.clone(),
            host: d.host.clone(),
            source: d.source.to_string(),
            position: d.position.to_string(),
            fields: d.fields.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect(),
        }
    }
}

/// What sorts a detection into the timeline: time (none last), source, position, rule.
struct Key {
    timestamp: Option<jiff::Timestamp>,
    source: Arc<str>,
    position: (u64, u64),
    rule: Arc<RuleInfo>,
    offset: u64,
    len: u32,
}

fn position_key(p: Position) -> (u64, u64) {
    match p {
        Position::Line(n) => (n, 0),
        Position::Offset(o) => (o, 0),
        Position::EvtxRecord { record_id, chunk_offset } => (chunk_offset, record_id),
    }
}

/// Counts for the summary, kept as detections arrive.
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
    file: BufWriter<File>,
    path: PathBuf,
    written: u64,
    keys: Vec<Key>,
    tally: Tally,
    line: Vec<u8>,
}

impl DetectionStore {
    pub fn new() -> io::Result<DetectionStore> {
        let dir = std::env::temp_dir();
        let mut n = 0u32;
        loop {
            let path = dir.join(format!("nigehban-hunt-{}-{n}.jsonl", std::process::id()));
            match File::options().read(true).write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(DetectionStore {
                        file: BufWriter::with_capacity(1 << 20, file),
                        path,
                        written: 0,
                        keys: Vec::new(),
                        tally: Tally::default(),
                        line: Vec::new(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    pub fn push(&mut self, d: &Detection) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, &RecordRef::new(d)).map_err(io::Error::other)?;
        self.file.write_all(&self.line)?;
        self.keys.push(Key {
            timestamp: d.timestamp,
            source: d.source.clone(),
            position: position_key(d.position),
            rule: d.rule.clone(),
            offset: self.written,
            len: self.line.len() as u32,
        });
        self.written += self.line.len() as u64;
        let t = &mut self.tally;
        t.total += 1;
        *t.by_level.entry(d.rule.level).or_default() += 1;
        *t.by_rule.entry((d.rule.title.clone(), d.rule.id.clone(), d.rule.level)).or_default() += 1;
        let host = d.host.as_deref().unwrap_or("-");
        match t.by_host.get_mut(host) {
            Some(c) => *c += 1,
            None => {
                t.by_host.insert(host.to_owned(), 1);
            }
        }
        Ok(())
    }

    /// Reads the detections back in timeline order, as raw JSON records.
    pub fn for_each_sorted(mut self, mut f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        self.file.flush()?;
        self.keys.sort_by(|a, b| {
            (a.timestamp.is_none(), a.timestamp, &a.source, a.position, &a.rule.id).cmp(&(
                b.timestamp.is_none(),
                b.timestamp,
                &b.source,
                b.position,
                &b.rule.id,
            ))
        });
        let file = self.file.get_mut();
        let mut buf = Vec::new();
        for k in &self.keys {
            buf.resize(k.len as usize, 0);
            file.seek(SeekFrom::Start(k.offset))?;
            file.read_exact(&mut buf)?;
            f(&buf)?;
        }
        Ok(())
    }
}

impl Drop for DetectionStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
