//! The hunting run: every input read in parallel, every event through the detector.
//!
//! Work is cut into units: a text file is one unit; an EVTX file is one unit per run of
//! [`EVTX_CHUNKS_PER_UNIT`] chunks, so one large file keeps every core busy. A unit holds one
//! chunk's events at a time, so memory depends on the number of threads, not on input size.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nigehban_detect::{Detector, Findings};
use nigehban_event::read::{self, evtx};
use nigehban_event::{Diagnostic, Event, Format, Item, Source};
use rayon::prelude::*;

use crate::inputs::{self, InputRef, Inputs, Skipped};
use crate::store::DetectionStore;

/// EVTX chunks (64 KiB each) per unit of work.
pub const EVTX_CHUNKS_PER_UNIT: u64 = 16;

/// Detections a thread gathers before it passes them on to the store.
const FLUSH_DETECTIONS: usize = 256;

/// Events are read this many at a time and then detected in turn, rather than each detected
/// as soon as it is read, so that reading and detection each run a little longer with their
/// code in the instruction cache, which alternating at every event evicts. Simulated by
/// cachegrind over the shared EVTX corpus with all SigmaHQ rules: a quarter fewer
/// instruction cache misses per copy, parsing alone no worse; timed, the gain is within
/// the noise (BENCHMARKS.md). Larger batches keep more events' memory alive at once and cost
/// the allocator more: 16 at a time, 1.5% more instructions.
const BATCH: usize = 4;

/// Counts of a batch of items, added to the shared ones at its end.
#[derive(Default)]
struct Tally {
    events: u64,
    filtered: u64,
    detections: u64,
}

/// How many diagnostics are kept word for word; the rest are counted.
pub const MAX_KEPT_DIAGNOSTICS: usize = 200;

#[derive(Clone, Debug, Default)]
pub struct HuntOptions {
    pub from: Option<jiff::Timestamp>,
    pub to: Option<jiff::Timestamp>,
}

/// Counters shared with a progress display while the hunt runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes: AtomicU64,
    pub events: AtomicU64,
    pub detections: AtomicU64,
}

/// What the run read and what it found along the way.
#[derive(Clone, Debug, Default)]
pub struct HuntStats {
    pub files: usize,
    pub bytes: u64,
    pub events: u64,
    /// Events outside `--from`/`--to`.
    pub events_filtered: u64,
    pub skipped: Vec<Skipped>,
    pub diagnostics: Vec<Diagnostic>,
    pub diagnostics_total: u64,
    pub events_per_format: Vec<(Format, u64)>,
}

/// A unit of work: a file of the run's [`Inputs`] by its index, or a run of chunks of one.
enum Unit {
    Text(u32),
    Evtx { file: u32, first_chunk: u64, chunks: u64 },
}

struct Shared<'a> {
    inputs: &'a Inputs,
    detector: &'a dyn Detector,
    options: &'a HuntOptions,
    progress: &'a Progress,
    store: Mutex<DetectionStore>,
    observations: Mutex<Vec<nigehban_detect::Observation>>,
    store_error: Mutex<Option<std::io::Error>>,
    diagnostics: Mutex<(Vec<Diagnostic>, u64)>,
    per_format: Mutex<Vec<(Format, u64)>>,
    filtered: AtomicU64,
    /// Detections passed on to the store, kept for reuse by the units that come next (one
    /// list per unit running at once; see [`Findings::recycle`]).
    spares: Mutex<Vec<Vec<nigehban_detect::Detection>>>,
}

impl Shared<'_> {
    fn diagnostic(&self, d: Diagnostic) {
        if let Ok(mut g) = self.diagnostics.lock() {
            g.1 += 1;
            if g.0.len() < MAX_KEPT_DIAGNOSTICS {
                g.0.push(d);
            }
        }
    }

    fn count_format(&self, format: Format, n: u64) {
        if let Ok(mut g) = self.per_format.lock() {
            match g.iter_mut().find(|(f, _)| *f == format) {
                Some((_, c)) => *c += n,
                None => g.push((format, n)),
            }
        }
    }

    fn in_window(&self, event: &Event) -> bool {
        let o = self.options;
        if o.from.is_none() && o.to.is_none() {
            return true;
        }
        match event.timestamp {
            Some(t) => o.from.is_none_or(|f| t >= f) && o.to.is_none_or(|to| t <= to),
            None => false,
        }
    }

    /// Runs the detector over a batch of reader items; returns the number of events.
    fn process(&self, items: impl Iterator<Item = Item>, source: &Arc<str>, local: &mut Findings) -> u64 {
        let mut tally = Tally::default();
        let mut events = 0;
        let mut batch = Vec::with_capacity(BATCH);
        for item in items {
            batch.push(item);
            if batch.len() < BATCH {
                continue;
            }
            self.process_batch(&mut batch, source, local, &mut tally);
            // A long text file shows progress as it is read.
            if tally.events >= 4096 {
                self.add(&tally);
                events += tally.events;
                tally = Tally::default();
            }
        }
        self.process_batch(&mut batch, source, local, &mut tally);
        self.add(&tally);
        events + tally.events
    }

    /// Runs the detector over the items read so far, in order (see [`BATCH`]).
    fn process_batch(&self, batch: &mut Vec<Item>, source: &Arc<str>, local: &mut Findings, tally: &mut Tally) {
        for item in batch.drain(..) {
            self.process_one(item, source, local, tally);
        }
    }

    /// Runs the detector over one reader item, counting into `tally`; passes the findings on
    /// to the store once there are [`FLUSH_DETECTIONS`] of them, so that a unit full of
    /// detections does not hold them all.
    fn process_one(&self, item: Item, source: &Arc<str>, local: &mut Findings, tally: &mut Tally) {
        match item {
            Item::Event(event) => {
                tally.events += 1;
                if !self.in_window(&event) {
                    tally.filtered += 1;
                    return;
                }
                let before = local.detections.len();
                self.detector.detect(&event, source, local);
                tally.detections += (local.detections.len() - before) as u64;
                if local.detections.len() >= FLUSH_DETECTIONS {
                    self.flush(local);
                }
            }
            Item::Diagnostic(d) => self.diagnostic(d),
        }
    }

    /// Adds a batch's counts to the shared ones.
    fn add(&self, tally: &Tally) {
        if tally.filtered > 0 {
            self.filtered.fetch_add(tally.filtered, Ordering::Relaxed);
        }
        if tally.detections > 0 {
            self.progress.detections.fetch_add(tally.detections, Ordering::Relaxed);
        }
        self.progress.events.fetch_add(tally.events, Ordering::Relaxed);
    }

    fn flush(&self, local: &mut Findings) {
        if local.is_empty() {
            return;
        }
        if !local.detections.is_empty()
            && let Ok(mut store) = self.store.lock()
        {
            for d in &local.detections {
                if let Err(e) = store.push(d)
                    && let Ok(mut slot) = self.store_error.lock()
                {
                    slot.get_or_insert(e);
                }
            }
        }
        // Outside the store's lock: what is not kept for reuse is freed here.
        local.recycle();
        if !local.observations.is_empty()
            && let Ok(mut g) = self.observations.lock()
        {
            g.append(&mut local.observations);
        }
    }

    fn run_unit(&self, unit: &Unit) {
        // The spare detections of a unit done before, whose memory this unit's detections reuse.
        let spare = self.spares.lock().ok().and_then(|mut s| s.pop()).unwrap_or_default();
        let mut local = Findings { spare, ..Findings::default() };
        match *unit {
            Unit::Text(file) => {
                if let Some(input) = self.inputs.get(file as usize) {
                    self.run_text(input, &mut local);
                }
            }
            Unit::Evtx { file, first_chunk, chunks } => {
                if let Some(input) = self.inputs.get(file as usize) {
                    self.run_evtx(input, first_chunk, chunks, &mut local);
                }
            }
        }
        self.flush(&mut local);
        if !local.spare.is_empty()
            && let Ok(mut spares) = self.spares.lock()
        {
            spares.push(local.spare);
        }
    }

    fn run_text(&self, input: InputRef<'_>, local: &mut Findings) {
        let name: Arc<str> = input.path.display().to_string().into();
        let source = Source::file(name.to_string());
        let reader = match inputs::open_text(input.path, input.gzip) {
            Ok(r) => r,
            Err(e) => {
                self.diagnostic(Diagnostic {
                    source: name.to_string(),
                    position: None,
                    message: format!("cannot open: {e}"),
                });
                return;
            }
        };
        // Count bytes as they are read for progress; gzip inputs count compressed bytes at the end.
        let counting = CountingRead { inner: reader, progress: self.progress, count: !input.gzip };
        let items = read::read_text(input.format, std::io::BufReader::with_capacity(64 << 10, counting), source);
        // Zeek JSON lines do not say which log they belong to; the file name does (`dns.log`,
        // `conn.00:00:00-01:00:00.log.gz`), and Sigma's Zeek rules select by it.
        let zeek_path = zeek_path_hint(input.path);
        let items = items.map(move |mut item| {
            if let (Item::Event(e), Some(path)) = (&mut item, &zeek_path)
                && e.product == nigehban_event::Product::Zeek
                && e.get_exact("_path").is_none()
            {
                e.set("_path", nigehban_event::Value::str(path.as_str()));
            }
            item
        });
        let n = self.process(items, &name, local);
        if input.gzip {
            self.progress.bytes.fetch_add(input.size, Ordering::Relaxed);
        }
        self.count_format(input.format, n);
    }

    fn run_evtx(&self, input: InputRef<'_>, first_chunk: u64, chunks: u64, local: &mut Findings) {
        let name: Arc<str> = input.path.display().to_string().into();
        let source = Source::file(name.to_string());
        let diag = |message: String, offset: Option<u64>| Diagnostic {
            source: name.to_string(),
            position: offset.map(nigehban_event::Position::Offset),
            message,
        };
        let mut file = match File::open(input.path) {
            Ok(f) => f,
            Err(e) => {
                self.diagnostic(diag(format!("cannot open: {e}"), None));
                return;
            }
        };
        if first_chunk == 0 {
            let mut header = [0u8; 8];
            if file.read_exact(&mut header).is_err() || header != *evtx::FILE_MAGIC {
                self.diagnostic(diag("not an EVTX file (bad file header magic)".into(), Some(0)));
                return;
            }
        }
        let start = evtx::HEADER_SIZE as u64 + first_chunk * evtx::CHUNK_SIZE as u64;
        if let Err(e) = file.seek(SeekFrom::Start(start)) {
            self.diagnostic(diag(format!("cannot seek: {e}"), Some(start)));
            return;
        }
        let mut events = 0;
        let mut batch = Vec::with_capacity(BATCH);
        for i in 0..chunks {
            let offset = start + i * evtx::CHUNK_SIZE as u64;
            let mut data = vec![0u8; evtx::CHUNK_SIZE];
            let filled = match evtx::read_full(&mut file, &mut data) {
                Ok(n) => n,
                Err(e) => {
                    self.diagnostic(diag(format!("read error: {e}"), Some(offset)));
                    break;
                }
            };
            self.progress.bytes.fetch_add(filled as u64, Ordering::Relaxed);
            if filled < data.len() {
                if filled > 0 && data[..filled].iter().any(|b| *b != 0) {
                    self.diagnostic(diag(
                        format!("truncated chunk ({filled} of {} bytes) skipped", evtx::CHUNK_SIZE),
                        Some(offset),
                    ));
                }
                break;
            }
            let mut tally = Tally::default();
            evtx::for_each_in_chunk(evtx::RawChunk { data, offset }, &source, |item| {
                batch.push(item);
                if batch.len() >= BATCH {
                    self.process_batch(&mut batch, &name, local, &mut tally);
                }
            });
            self.process_batch(&mut batch, &name, local, &mut tally);
            self.add(&tally);
            events += tally.events;
        }
        self.count_format(Format::Evtx, events);
    }
}

/// The Zeek log a file holds, from its name, when it is one of Zeek's logs.
fn zeek_path_hint(path: &std::path::Path) -> Option<String> {
    const LOGS: &[&str] = &[
        "conn",
        "dns",
        "http",
        "ssl",
        "x509",
        "files",
        "notice",
        "weird",
        "smtp",
        "ssh",
        "ftp",
        "dhcp",
        "smb_files",
        "smb_mapping",
        "dce_rpc",
        "kerberos",
        "ntlm",
        "rdp",
        "ldap",
        "sip",
        "snmp",
        "tunnel",
        "software",
        "pe",
        "known_hosts",
        "known_services",
        "known_certs",
        "ocsp",
        "radius",
        "mysql",
        "irc",
        "rfb",
        "socks",
        "modbus",
        "dnp3",
        "intel",
    ];
    // `dns.log`, `dns.00:00:00-01:00:00.log.gz`, or with a sensor prefix: `NASHUA_dns.log`.
    let name = path.file_name()?.to_str()?;
    let stem = name.split('.').next()?;
    LOGS.iter()
        .filter(|log| {
            stem == **log
                || stem.strip_suffix(**log).is_some_and(|prefix| prefix.ends_with('_') || prefix.ends_with('-'))
        })
        .max_by_key(|log| log.len())
        .map(|log| (*log).to_owned())
}

struct CountingRead<'a, R> {
    inner: R,
    progress: &'a Progress,
    count: bool,
}

impl<R: Read> Read for CountingRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.count {
            self.progress.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// Hunts over `inputs` with `detector`. The detections are in the returned store, which gives
/// them back sorted by time (events without a time last), then by source and position, so that
/// the result is the same on every run. Fails only if the store's temporary file fails.
pub fn hunt(
    inputs: Inputs,
    skipped: Vec<Skipped>,
    detector: &dyn Detector,
    options: &HuntOptions,
    progress: &Progress,
) -> std::io::Result<(DetectionStore, HuntStats)> {
    let unit_count = |size: u64, format: Format| match format {
        Format::Evtx => evtx_chunks(size).div_ceil(EVTX_CHUNKS_PER_UNIT) as usize,
        _ => 1,
    };
    let mut units = Vec::with_capacity(inputs.iter().map(|i| unit_count(i.size, i.format)).sum());
    let bytes = inputs.total_size();
    let files = inputs.len();
    for (i, input) in inputs.iter().enumerate() {
        let file = i as u32;
        if input.format == Format::Evtx {
            let chunks = evtx_chunks(input.size);
            let mut first = 0;
            while first < chunks {
                let n = EVTX_CHUNKS_PER_UNIT.min(chunks - first);
                units.push(Unit::Evtx { file, first_chunk: first, chunks: n });
                first += n;
            }
        } else {
            units.push(Unit::Text(file));
        }
    }
    // Large units first, so that the last unit to finish is a small one.
    units.sort_by_key(|u| {
        std::cmp::Reverse(match u {
            Unit::Text(i) => inputs.get(*i as usize).map_or(0, |input| input.size),
            Unit::Evtx { chunks, .. } => chunks * evtx::CHUNK_SIZE as u64,
        })
    });
    let shared = Shared {
        inputs: &inputs,
        detector,
        options,
        progress,
        store: Mutex::new(DetectionStore::new()?),
        observations: Mutex::new(Vec::new()),
        store_error: Mutex::new(None),
        diagnostics: Mutex::new((Vec::new(), 0)),
        per_format: Mutex::new(Vec::new()),
        filtered: AtomicU64::new(0),
        spares: Mutex::new(Vec::new()),
    };
    // One unit per task: units differ a lot in cost, and rayon would otherwise leave long runs
    // of them unsplit on one thread while the other sits idle.
    units.par_iter().with_max_len(1).for_each(|u| shared.run_unit(u));

    let mut observations = shared.observations.into_inner().unwrap_or_default();
    // Correlation runs over the observations in event-time order, whatever order the
    // parallel readers produced them in.
    observations.sort_by(|a, b| {
        (a.event.timestamp, &a.event.source.name, position_key_of(a.event.position)).cmp(&(
            b.event.timestamp,
            &b.event.source.name,
            position_key_of(b.event.position),
        ))
    });
    let mut store = shared.store.into_inner().map_err(|_| std::io::Error::other("detection store poisoned"))?;
    if let Some(e) = shared.store_error.into_inner().ok().flatten() {
        return Err(e);
    }
    for d in detector.correlate(observations) {
        store.push(&d)?;
    }
    let (mut diagnostics, diagnostics_total) = shared.diagnostics.into_inner().unwrap_or_default();
    diagnostics.sort_by(|a, b| (&a.source, format!("{:?}", a.position)).cmp(&(&b.source, format!("{:?}", b.position))));
    let mut events_per_format = shared.per_format.into_inner().unwrap_or_default();
    events_per_format.sort_by_key(|(f, _)| f.name());
    let stats = HuntStats {
        files,
        bytes,
        events: progress.events.load(Ordering::Relaxed),
        events_filtered: shared.filtered.load(Ordering::Relaxed),
        skipped,
        diagnostics,
        diagnostics_total,
        events_per_format,
    };
    Ok((store, stats))
}

/// The chunks of an EVTX file of `size` bytes (at least one, so that a file too short for one is
/// still opened and reported).
fn evtx_chunks(size: u64) -> u64 {
    size.saturating_sub(evtx::HEADER_SIZE as u64).div_ceil(evtx::CHUNK_SIZE as u64).max(1)
}

fn position_key_of(p: nigehban_event::Position) -> (u64, u64) {
    match p {
        nigehban_event::Position::Line(n) => (n, 0),
        nigehban_event::Position::Offset(o) => (o, 0),
        nigehban_event::Position::EvtxRecord { record_id, chunk_offset } => (chunk_offset, record_id),
    }
}

#[cfg(test)]
mod tests {
    use super::zeek_path_hint;
    use std::path::Path;

    #[test]
    fn zeek_log_names() {
        assert_eq!(zeek_path_hint(Path::new("/x/dns.log")).as_deref(), Some("dns"));
        assert_eq!(zeek_path_hint(Path::new("conn.00:00:00-01:00:00.log.gz")).as_deref(), Some("conn"));
        assert_eq!(zeek_path_hint(Path::new("NASHUA_smb_files.log")).as_deref(), Some("smb_files"));
        assert_eq!(zeek_path_hint(Path::new("NASHUA_files.log")).as_deref(), Some("files"));
        assert_eq!(zeek_path_hint(Path::new("auth.log")), None);
        assert_eq!(zeek_path_hint(Path::new("myconn.log")), None);
    }
}
