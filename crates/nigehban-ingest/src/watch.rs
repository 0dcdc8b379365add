//! The file and folder watcher. Polls (portable, no inotify): every `poll_interval_ms` it
//! lists the configured files and folders and reads what was appended.
//!
//! - Files are followed by identity (device and inode) through an open handle, so a renamed
//!   file keeps being read under its new name, and a file renamed out of the watch (rotation)
//!   is read to its end — including a last line without a line feed, once it has stopped
//!   growing — before its successor.
//! - A file that got shorter was truncated (copy-truncate rotation): it is read again from
//!   its start.
//! - Only complete lines are sent; a partial last line is read again at the next poll.
//! - Each batch carries an ack; the offset advances, and is saved in the state file, only
//!   once the server has stored the batch. A restart resumes from the saved offsets, so an
//!   acknowledged line is never sent twice and an unacknowledged one is sent again.
//! - Zeek TSV files (first line `#separator` or `#fields`): their `#` header block is sent at
//!   the start of every batch, since the server needs it to name the columns.
//! - EVTX files (`.evtx`) are read once their size is the same at two polls in a row; each
//!   record's JSON rendering is one record (format hint "json").
//!
//! Files already there on the very first run (no state file yet) are tailed from the end of
//! their last complete line unless `from_start`; files that appear later are read from their
//! start. EVTX files are always read whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nigehban_event::read::evtx::{self, ChunkReader};
use nigehban_event::{Item, Source};
use tokio::sync::{mpsc, oneshot};

use crate::state::{self, FileEntry, WatchState};
use crate::{IngestError, IngestMetrics, Origin, RawBatch, Shutdown, SourceKind, Spawned, WatchConfig, stopped};

/// How much of a file's start is searched for a Zeek header.
const HEADER_LIMIT: usize = 64 * 1024;

/// Extensions of rotated, compressed archives: never tailed as text.
const ARCHIVE_EXTENSIONS: [&str; 5] = [".gz", ".bz2", ".xz", ".zst", ".zip"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct FileId {
    dev: u64,
    inode: u64,
}

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata, _path: &Path) -> FileId {
    use std::os::unix::fs::MetadataExt;
    FileId { dev: meta.dev(), inode: meta.ino() }
}

/// Without inodes a file is known by its name only: rotation is then seen as truncation.
#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata, path: &Path) -> FileId {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    FileId { dev: 0, inode: h.finish() }
}

/// A file the listing found.
struct Candidate {
    path: PathBuf,
    id: FileId,
    evtx: bool,
}

fn is_evtx(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("evtx"))
}

/// Lists the watched files (blocking).
fn scan(paths: &[PathBuf], suffix: Option<&str>, state_file: Option<&Path>) -> Vec<Candidate> {
    let mut out = Vec::new();
    let mut add = |path: PathBuf, meta: &std::fs::Metadata| {
        let id = file_id(meta, &path);
        if !out.iter().any(|c: &Candidate| c.id == id) {
            out.push(Candidate { evtx: is_evtx(&path), path, id });
        }
    };
    for root in paths {
        let Ok(meta) = std::fs::metadata(root) else { continue };
        if meta.is_file() {
            add(root.clone(), &meta);
            continue;
        }
        if !meta.is_dir() {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(root) else { continue };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for path in names {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let lower = name.to_ascii_lowercase();
            if name.starts_with('.')
                || ARCHIVE_EXTENSIONS.iter().any(|x| lower.ends_with(x))
                || state_file.is_some_and(|s| s == path)
            {
                continue;
            }
            if !is_evtx(&path) && suffix.is_some_and(|s| !name.ends_with(s)) {
                continue;
            }
            if let Ok(meta) = std::fs::metadata(&path)
                && meta.is_file()
            {
                add(path, &meta);
            }
        }
    }
    out
}

/// The header block of a Zeek TSV file: its leading `#` lines, and where they end.
#[derive(Clone, Debug, Default)]
struct ZeekHeader {
    lines: Vec<Bytes>,
    end: u64,
    /// A data line follows the header, so it cannot grow any more.
    complete: bool,
}

/// Reads the Zeek header at the start of `file`, if the file is Zeek TSV (blocking).
fn read_zeek_header(file: &File) -> std::io::Result<Option<ZeekHeader>> {
    let mut buf = vec![0u8; HEADER_LIMIT];
    let mut f = file;
    f.seek(SeekFrom::Start(0))?;
    let n = evtx::read_full(&mut f, &mut buf)?;
    let head = &buf[..n];
    if !(head.starts_with(b"#separator") || head.starts_with(b"#fields")) {
        return Ok(None);
    }
    let mut header = ZeekHeader::default();
    let mut pos = 0;
    while let Some(len) = head[pos..].iter().position(|b| *b == b'\n') {
        let line = &head[pos..pos + len];
        if !line.starts_with(b"#") {
            header.complete = true;
            break;
        }
        header.lines.push(Bytes::copy_from_slice(trim_cr(line)));
        pos += len + 1;
        header.end = pos as u64;
    }
    Ok(Some(header))
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Where tailing a file from its end starts: after its last complete line, so that a line
/// being written is sent whole (the file's size if no line ends in its last 64 KiB).
fn end_of_last_line(file: &File, size: u64) -> std::io::Result<u64> {
    let len = size.min(HEADER_LIMIT as u64);
    let mut buf = vec![0u8; len as usize];
    let mut f = file;
    f.seek(SeekFrom::Start(size - len))?;
    let n = evtx::read_full(&mut f, &mut buf)?;
    Ok(match buf[..n].iter().rposition(|b| *b == b'\n') {
        Some(i) => size - len + i as u64 + 1,
        None => size,
    })
}

/// What one read of a text file gave.
struct TextRead {
    records: Vec<Bytes>,
    bytes: usize,
    truncated: usize,
    /// The offset after the last byte consumed (complete lines, or skipped bytes).
    next_offset: u64,
    skip_line: bool,
    /// Less than a full batch was read: the end of the file was reached.
    at_end: bool,
}

/// Reads complete lines from `offset` (blocking). With `flush`, a last line without a line
/// feed is taken too (the file will not grow any more).
fn read_text(
    file: &File,
    offset: u64,
    batch_bytes: usize,
    max_line: usize,
    mut skip_line: bool,
    flush: bool,
) -> std::io::Result<TextRead> {
    let mut buf = vec![0u8; batch_bytes];
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    let n = evtx::read_full(&mut f, &mut buf)?;
    let data = &buf[..n];
    let mut out = TextRead {
        records: Vec::new(),
        bytes: 0,
        truncated: 0,
        next_offset: offset,
        skip_line: false,
        at_end: n < batch_bytes,
    };
    let mut pos = 0;
    let push = |out: &mut TextRead, line: &[u8]| {
        let line = trim_cr(line);
        let line = if line.len() > max_line {
            out.truncated += 1;
            &line[..max_line]
        } else {
            line
        };
        if !line.is_empty() {
            out.bytes += line.len();
            out.records.push(Bytes::copy_from_slice(line));
        }
    };
    if skip_line {
        match data.iter().position(|b| *b == b'\n') {
            Some(i) => {
                pos = i + 1;
                skip_line = false;
            }
            None => pos = n,
        }
    }
    while pos < n {
        match data[pos..].iter().position(|b| *b == b'\n') {
            Some(len) => {
                push(&mut out, &data[pos..pos + len]);
                pos += len + 1;
            }
            None => {
                let rest = &data[pos..];
                if flush {
                    push(&mut out, rest);
                    pos = n;
                } else if rest.len() > max_line {
                    // A line longer than the limit with no end yet: send what fits and drop
                    // the rest of it as it comes.
                    push(&mut out, rest);
                    pos = n;
                    skip_line = true;
                }
                break;
            }
        }
    }
    out.next_offset = offset + pos as u64;
    out.skip_line = skip_line;
    Ok(out)
}

/// Reads EVTX records a batch at a time (blocking), skipping the ones already acknowledged.
struct EvtxCursor {
    chunks: Option<ChunkReader<File>>,
    source: Arc<Source>,
    /// Records still to skip (acknowledged before a restart).
    skip: u64,
    pending: std::collections::VecDeque<Bytes>,
    errors: usize,
}

impl EvtxCursor {
    fn open(file: &File, name: &str, skip: u64) -> std::io::Result<EvtxCursor> {
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(0))?;
        let source = Source::file(name.to_owned());
        let mut errors = 0;
        let chunks = match ChunkReader::new(f, source.clone()) {
            Ok(c) => Some(c),
            Err(d) => {
                tracing::warn!(message = "EVTX file not read.", diagnostic = %d);
                errors += 1;
                None
            }
        };
        Ok(EvtxCursor { chunks, source, skip, pending: Default::default(), errors })
    }

    /// Up to `max` records; an empty batch means the file is done.
    fn next_batch(mut self, max: usize) -> (EvtxCursor, Vec<Bytes>) {
        while self.pending.len() < max {
            let Some(chunks) = self.chunks.as_mut() else { break };
            let Some(chunk) = chunks.next() else {
                self.chunks = None;
                break;
            };
            let mut items = Vec::new();
            match chunk {
                Ok(c) => evtx::parse_chunk(c, &self.source, &mut items),
                Err(d) => items.push(Item::Diagnostic(d)),
            }
            for item in items {
                match item {
                    Item::Event(e) if self.skip > 0 => {
                        drop(e);
                        self.skip -= 1;
                    }
                    Item::Event(e) => self.pending.push_back(Bytes::from(String::from(e.raw).into_bytes())),
                    Item::Diagnostic(d) => {
                        tracing::warn!(message = "EVTX record not read.", diagnostic = %d);
                        self.errors += 1;
                    }
                }
            }
        }
        let n = self.pending.len().min(max);
        let batch = self.pending.drain(..n).collect();
        (self, batch)
    }
}

enum Kind {
    Text { zeek: Option<ZeekHeader>, skip_line: bool },
    Evtx { last_size: Option<u64>, done: bool },
}

struct Tracked {
    path: PathBuf,
    file: Arc<File>,
    id: FileId,
    /// Text: byte offset after the last acknowledged line. EVTX: acknowledged records.
    offset: u64,
    kind: Kind,
    /// The order files were first seen in: older files are read first, so an old file is
    /// finished before the one that replaced it.
    seq: u64,
    /// No longer under a watched name: read to its end, then forgotten.
    retired: bool,
    retired_polls: u32,
    last_size: u64,
    /// After a refused batch the file waits until then before it is sent again, and the wait
    /// doubles at each refusal, so a server that keeps refusing is not asked at every poll.
    retry_at: Option<tokio::time::Instant>,
    retry_wait: Duration,
}

enum Delivery {
    Stored,
    Refused,
    Stop,
}

struct Watcher {
    config: WatchConfig,
    tx: mpsc::Sender<RawBatch>,
    metrics: Arc<IngestMetrics>,
    shutdown: Shutdown,
    tracked: HashMap<FileId, Tracked>,
    /// Entries of the state file, used at the first poll.
    restored: Vec<FileEntry>,
    first_run: bool,
    first_poll: bool,
    interval: Duration,
    /// Set by `deliver` when the server refused a batch.
    refused: bool,
    next_seq: u64,
}

/// Loads the state file and starts polling. An unreadable or corrupt state file is an error
/// (rather than silently starting over and resending or skipping data).
pub async fn spawn_watch(
    config: &WatchConfig,
    tx: mpsc::Sender<RawBatch>,
    metrics: Arc<IngestMetrics>,
    mut shutdown: Shutdown,
) -> Result<Spawned, IngestError> {
    if config.paths.is_empty() {
        return Err(IngestError::Config("a watcher needs at least one path".into()));
    }
    let saved = match &config.state_file {
        Some(path) => state::load(path)?,
        None => None,
    };
    let mut config = config.clone();
    config.max_line_bytes = config.max_line_bytes.max(16);
    // A batch must hold at least one whole line, or a long line could never complete.
    config.batch_bytes = config.batch_bytes.max(config.max_line_bytes + 1);
    config.evtx_batch_records = config.evtx_batch_records.max(1);
    let interval = Duration::from_millis(config.poll_interval_ms.max(10));
    let mut watcher = Watcher {
        config,
        tx,
        metrics,
        shutdown: shutdown.clone(),
        tracked: HashMap::new(),
        first_run: saved.is_none(),
        restored: saved.map(|s| s.files).unwrap_or_default(),
        first_poll: true,
        next_seq: 0,
        interval,
        refused: false,
    };
    let task = tokio::spawn(async move {
        loop {
            if !watcher.poll().await {
                break;
            }
            tokio::select! {
                biased;
                () = stopped(&mut shutdown) => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
    });
    Ok(Spawned { local_addr: None, task })
}

impl Watcher {
    /// One pass over every watched file. False when the watcher should stop.
    async fn poll(&mut self) -> bool {
        let paths = self.config.paths.clone();
        let suffix = self.config.suffix.clone();
        let state_file = self.config.state_file.clone();
        let candidates =
            match tokio::task::spawn_blocking(move || scan(&paths, suffix.as_deref(), state_file.as_deref())).await {
                Ok(c) => c,
                Err(_) => return false,
            };
        let first_poll = std::mem::replace(&mut self.first_poll, false);
        let restored = std::mem::take(&mut self.restored);
        let mut seen = std::collections::HashSet::new();
        for c in candidates {
            seen.insert(c.id);
            if let Some(t) = self.tracked.get_mut(&c.id) {
                t.path = c.path;
                t.retired = false;
                t.retired_polls = 0;
                continue;
            }
            let saved = restored.iter().find(|e| FileId { dev: e.dev, inode: e.inode } == c.id);
            let tail = first_poll && self.first_run && !self.config.from_start;
            if let Some(t) = self.open(&c.path, c.id, c.evtx, saved, tail).await {
                self.tracked.insert(c.id, t);
            }
        }
        if first_poll {
            // Files the state knows that are no longer under a watched name were rotated
            // while the watcher was down: look for them beside their old name and finish them.
            for e in &restored {
                let id = FileId { dev: e.dev, inode: e.inode };
                if seen.contains(&id) || e.evtx {
                    continue;
                }
                if let Some(path) = find_by_id(&e.path, id).await
                    && let Some(mut t) = self.open(&path, id, false, Some(e), false).await
                {
                    t.retired = true;
                    self.tracked.insert(id, t);
                }
            }
        }
        for t in self.tracked.values_mut() {
            if !seen.contains(&t.id) {
                t.retired = true;
            }
        }
        let mut order: Vec<(bool, u64, FileId)> = self.tracked.values().map(|t| (!t.retired, t.seq, t.id)).collect();
        order.sort();
        let mut changed = false;
        // A retired text file not finished yet holds back the files seen after it, so that
        // its successor's lines come after its own last ones.
        let mut hold_after: Option<u64> = None;
        for (active, seq, id) in order {
            if active && hold_after.is_some_and(|h| seq > h) {
                continue;
            }
            match self.read_file(id).await {
                Some(c) => changed |= c,
                None => return false,
            }
            if !active && self.tracked.get(&id).is_some_and(|t| matches!(t.kind, Kind::Text { .. })) {
                hold_after = Some(hold_after.map_or(seq, |h| h.min(seq)));
            }
        }
        if changed || first_poll {
            self.save_state().await;
        }
        true
    }

    /// Starts following a file: from the saved offset, from its end (`tail`), or from its start.
    async fn open(
        &mut self,
        path: &Path,
        id: FileId,
        evtx: bool,
        saved: Option<&FileEntry>,
        tail: bool,
    ) -> Option<Tracked> {
        let owned = path.to_owned();
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let file = File::open(&owned)?;
            let size = file.metadata()?.len();
            let zeek = if evtx { None } else { read_zeek_header(&file)? };
            let tail_at = if tail && !evtx { end_of_last_line(&file, size)? } else { size };
            Ok((file, size, zeek, tail_at))
        })
        .await;
        let (file, size, zeek, tail_at) = match opened {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                tracing::warn!(message = "Watched file cannot be opened.", file = %path.display(), error = %e);
                return None;
            }
            Err(_) => return None,
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let (offset, kind) = if evtx {
            let done = saved.is_some_and(|s| s.done);
            (saved.map_or(0, |s| s.offset), Kind::Evtx { last_size: None, done })
        } else {
            let header_end = zeek.as_ref().map_or(0, |z| z.end);
            let offset = match saved {
                // Shorter than the saved offset: truncated while the watcher was down.
                Some(s) if s.offset <= size => s.offset,
                Some(_) => 0,
                None if tail => tail_at,
                None => 0,
            };
            (offset.max(header_end), Kind::Text { zeek, skip_line: false })
        };
        Some(Tracked {
            path: path.to_owned(),
            file: Arc::new(file),
            id,
            offset,
            kind,
            seq,
            retired: false,
            retired_polls: 0,
            last_size: size,
            retry_at: None,
            retry_wait: self.interval,
        })
    }

    /// Reads what is new in one file and delivers it. Some(changed) to go on, None to stop.
    async fn read_file(&mut self, id: FileId) -> Option<bool> {
        let t = self.tracked.get(&id)?;
        if t.retry_at.is_some_and(|at| tokio::time::Instant::now() < at) {
            return Some(false);
        }
        let is_evtx = matches!(t.kind, Kind::Evtx { .. });
        self.refused = false;
        let changed = if is_evtx { self.read_evtx(id).await } else { self.read_text_file(id).await }?;
        let refused = std::mem::take(&mut self.refused);
        if let Some(t) = self.tracked.get_mut(&id) {
            if refused {
                t.retry_at = Some(tokio::time::Instant::now() + t.retry_wait);
                t.retry_wait = (t.retry_wait * 2).min(Duration::from_secs(60));
            } else {
                t.retry_at = None;
                t.retry_wait = self.interval;
            }
        }
        Some(changed)
    }

    async fn read_text_file(&mut self, id: FileId) -> Option<bool> {
        let mut changed = false;
        let (file, retired) = {
            let t = self.tracked.get(&id)?;
            (t.file.clone(), t.retired)
        };
        let f = file.clone();
        let size = match tokio::task::spawn_blocking(move || f.metadata().map(|m| m.len())).await {
            Ok(Ok(s)) => s,
            _ => {
                self.tracked.remove(&id);
                return Some(true);
            }
        };
        // A retired file that has not grown since the last poll is finished: its last line
        // is taken even without a line feed, and it is forgotten.
        let finishing = retired && self.tracked.get(&id)?.retired_polls > 0 && size == self.tracked.get(&id)?.last_size;
        {
            let t = self.tracked.get_mut(&id)?;
            if size < t.offset {
                tracing::info!(message = "Watched file truncated; reading it from its start.", file = %t.path.display());
                let f = file.clone();
                let zeek = tokio::task::spawn_blocking(move || read_zeek_header(&f)).await.ok()?.ok().flatten();
                t.offset = zeek.as_ref().map_or(0, |z| z.end);
                t.kind = Kind::Text { zeek, skip_line: false };
                changed = true;
            }
            if let Kind::Text { zeek: Some(z), .. } = &mut t.kind
                && !z.complete
            {
                let f = file.clone();
                if let Ok(Ok(Some(fresh))) = tokio::task::spawn_blocking(move || read_zeek_header(&f)).await {
                    t.offset = t.offset.max(fresh.end);
                    *z = fresh;
                }
            }
        }
        loop {
            let (offset, skip_line, zeek_lines, path) = {
                let t = self.tracked.get(&id)?;
                let Kind::Text { zeek, skip_line } = &t.kind else { return Some(changed) };
                (t.offset, *skip_line, zeek.as_ref().map(|z| z.lines.clone()), t.path.clone())
            };
            let (batch_bytes, max_line) = (self.config.batch_bytes, self.config.max_line_bytes);
            let f = file.clone();
            let read =
                tokio::task::spawn_blocking(move || read_text(&f, offset, batch_bytes, max_line, skip_line, finishing))
                    .await;
            let read = match read {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::warn!(message = "Watched file cannot be read.", file = %path.display(), error = %e);
                    break;
                }
                Err(_) => return None,
            };
            if read.truncated > 0 {
                self.metrics.add_truncated(SourceKind::File, read.truncated);
            }
            let at_end = read.at_end;
            if !read.records.is_empty() {
                let (count, bytes) = (read.records.len(), read.bytes);
                let format = self.config.format.clone().or_else(|| zeek_lines.as_ref().map(|_| "zeek".to_owned()));
                let records = match zeek_lines {
                    Some(mut header) => {
                        header.extend(read.records);
                        header
                    }
                    None => read.records,
                };
                match self.deliver(&path, format, records, (count, bytes)).await {
                    Delivery::Stored => {}
                    Delivery::Refused => return Some(changed),
                    Delivery::Stop => return None,
                }
            }
            if read.next_offset != offset || skip_line != read.skip_line {
                let t = self.tracked.get_mut(&id)?;
                t.offset = read.next_offset;
                if let Kind::Text { skip_line, .. } = &mut t.kind {
                    *skip_line = read.skip_line;
                }
                changed = true;
                self.save_state().await;
            }
            if at_end || read.next_offset == offset {
                break;
            }
        }
        let t = self.tracked.get_mut(&id)?;
        if finishing {
            tracing::debug!(message = "Rotated file finished.", file = %t.path.display());
            self.tracked.remove(&id);
            return Some(true);
        }
        if t.retired {
            t.retired_polls += 1;
        }
        t.last_size = size;
        Some(changed)
    }

    async fn read_evtx(&mut self, id: FileId) -> Option<bool> {
        let (file, path, offset, retired) = {
            let t = self.tracked.get_mut(&id)?;
            let f = t.file.clone();
            (f, t.path.clone(), t.offset, t.retired)
        };
        if retired {
            // Gone from the folder: forget it (its records, if read, are stored).
            self.tracked.remove(&id);
            return Some(true);
        }
        let f = file.clone();
        let size = match tokio::task::spawn_blocking(move || f.metadata().map(|m| m.len())).await {
            Ok(Ok(s)) => s,
            _ => return Some(false),
        };
        {
            let t = self.tracked.get_mut(&id)?;
            let Kind::Evtx { last_size, done } = &mut t.kind else { return Some(false) };
            if *done {
                return Some(false);
            }
            // Still being written (or first seen now): wait until its size holds still.
            if *last_size != Some(size) || size == 0 {
                *last_size = Some(size);
                return Some(false);
            }
        }
        let name = path.display().to_string();
        let f = file.clone();
        let mut cursor = match tokio::task::spawn_blocking(move || EvtxCursor::open(&f, &name, offset)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(message = "EVTX file cannot be read.", file = %path.display(), error = %e);
                return Some(false);
            }
            Err(_) => return None,
        };
        let max = self.config.evtx_batch_records;
        loop {
            let (next, records) = tokio::task::spawn_blocking(move || cursor.next_batch(max)).await.ok()?;
            cursor = next;
            if cursor.errors > 0 {
                self.metrics.add_evtx_record_errors(std::mem::take(&mut cursor.errors));
            }
            if records.is_empty() {
                break;
            }
            let (count, bytes) = (records.len(), records.iter().map(|r| r.len()).sum());
            match self.deliver(&path, Some("json".to_owned()), records, (count, bytes)).await {
                Delivery::Stored => {}
                Delivery::Refused => return Some(true),
                Delivery::Stop => return None,
            }
            self.tracked.get_mut(&id)?.offset += count as u64;
            self.save_state().await;
        }
        let t = self.tracked.get_mut(&id)?;
        if let Kind::Evtx { done, .. } = &mut t.kind {
            *done = true;
        }
        Some(true)
    }

    /// Sends a batch and waits for the server's answer. `counted` is the records and bytes
    /// the metrics count (Zeek header lines are context, not data).
    async fn deliver(
        &mut self,
        path: &Path,
        format: Option<String>,
        records: Vec<Bytes>,
        counted: (usize, usize),
    ) -> Delivery {
        let (ack, acked) = oneshot::channel();
        let batch = RawBatch {
            origin: Origin { org: self.config.org.clone(), source: format!("file {}", path.display()) },
            format,
            records,
            ack: Some(ack),
        };
        tokio::select! {
            biased;
            () = stopped(&mut self.shutdown) => return Delivery::Stop,
            sent = self.tx.send(batch) => if sent.is_err() {
                return Delivery::Stop;
            },
        }
        self.metrics.received(SourceKind::File, counted.0, counted.1);
        let answer = tokio::select! {
            biased;
            () = stopped(&mut self.shutdown) => return Delivery::Stop,
            answer = acked => answer,
        };
        match answer {
            Ok(Ok(())) => Delivery::Stored,
            Ok(Err(reason)) => {
                self.metrics.add_batch_refused(SourceKind::File);
                self.refused = true;
                tracing::warn!(message = "Batch refused by the server; it will be sent again.", file = %path.display(), %reason);
                Delivery::Refused
            }
            Err(_) => {
                self.metrics.add_batch_refused(SourceKind::File);
                self.refused = true;
                tracing::warn!(message = "Batch dropped by the server without an answer; it will be sent again.", file = %path.display());
                Delivery::Refused
            }
        }
    }

    async fn save_state(&self) {
        let Some(path) = self.config.state_file.clone() else { return };
        let mut tracked: Vec<&Tracked> = self.tracked.values().collect();
        tracked.sort_by_key(|t| t.seq);
        let state = WatchState {
            files: tracked
                .into_iter()
                .map(|t| FileEntry {
                    path: t.path.clone(),
                    dev: t.id.dev,
                    inode: t.id.inode,
                    offset: t.offset,
                    evtx: matches!(t.kind, Kind::Evtx { .. }),
                    done: matches!(t.kind, Kind::Evtx { done: true, .. }),
                })
                .collect(),
        };
        let shown = path.display().to_string();
        match tokio::task::spawn_blocking(move || state::save(&path, &state)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(message = "Watch state not saved.", file = %shown, error = %e),
            Err(_) => {}
        }
    }
}

/// A file with this identity in the folder of `old` (where rotation leaves it), if any.
async fn find_by_id(old: &Path, id: FileId) -> Option<PathBuf> {
    let dir = old.parent()?.to_owned();
    tokio::task::spawn_blocking(move || {
        std::fs::read_dir(&dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && file_id(&m, p) == id))
    })
    .await
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(content: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(content).expect("write");
        let handle = File::open(f.path()).expect("open");
        (f, handle)
    }

    fn texts(r: &TextRead) -> Vec<String> {
        r.records.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
    }

    #[test]
    fn only_complete_lines_are_read() {
        let (_f, h) = file_with(b"one\r\ntwo\n\nthr");
        let r = read_text(&h, 0, 1024, 100, false, false).expect("read");
        assert_eq!(texts(&r), ["one", "two"]);
        assert_eq!(r.next_offset, 10);
        let r = read_text(&h, 10, 1024, 100, false, true).expect("read");
        assert_eq!(texts(&r), ["thr"]);
        assert_eq!(r.next_offset, 13);
    }

    #[test]
    fn long_lines_are_truncated_and_their_rest_skipped() {
        let (_f, h) = file_with(&[b'x'; 50]);
        let r = read_text(&h, 0, 1024, 20, false, false).expect("read");
        assert_eq!(texts(&r), ["x".repeat(20)]);
        assert!(r.skip_line);
        assert_eq!(r.truncated, 1);
        let (_f, h) = file_with(b"rest of it\nnext\n");
        let r = read_text(&h, 0, 1024, 20, true, false).expect("read");
        assert_eq!(texts(&r), ["next"]);
    }

    #[test]
    fn reads_a_zeek_header() {
        let (_f, h) = file_with(b"#separator \\x09\n#fields\tts\tuid\n#types\ttime\tstring\n1.0\tC1\n");
        let z = read_zeek_header(&h).expect("read").expect("zeek");
        assert_eq!(z.lines.len(), 3);
        assert!(z.complete);
        assert_eq!(z.end, 50);
        let (_f, h) = file_with(b"plain line\n");
        assert!(read_zeek_header(&h).expect("read").is_none());
    }
}
