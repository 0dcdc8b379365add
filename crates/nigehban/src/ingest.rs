//! `nigehban ingest`: ships log files (or standard input) to a platform server's ingest API.
//!
//! Text files go in chunks cut at line boundaries, gzip-compressed; Zeek TSV files repeat
//! their `#` header block at the start of every chunk (the server needs it to name the
//! columns); EVTX files are read here and each record's JSON rendering is one NDJSON line.
//! The server answers only once the accepted events are durable, so a chunk it answered is
//! never sent again: with `--state` the acknowledged offset of every file is saved after each
//! chunk, and a rerun resumes where the last one stopped.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use nigehban_event::read::evtx;
use nigehban_event::{Format, Item, Source};
use nigehban_hunt::inputs::{self, Input};
use serde::{Deserialize, Serialize};

/// The server takes at most 64 MiB of uncompressed body.
const MAX_BODY: usize = 64 << 20;
/// How many rejected lines the summary names.
const ERRORS_SHOWN: usize = 20;

#[derive(Args)]
pub struct IngestArgs {
    /// Files, folders (recursively) or `-` for standard input.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The platform server's URL (e.g. https://nigehban.example).
    #[arg(long)]
    server: String,
    /// An API token with the ingest scope.
    #[arg(long, env = "NIGEHBAN_TOKEN", hide_env_values = true)]
    token: String,
    /// The source name shown with the events (default: each file's path; "stdin").
    #[arg(long)]
    source: Option<String>,
    /// Format hint for text inputs (json, syslog, zeek, access, squid, zimbra); by default the
    /// server recognises the format by content.
    #[arg(long, value_parser = crate::hunt::parse_input_format)]
    format: Option<Format>,
    /// Record per file what the server acknowledged, and resume from it.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Uncompressed size of a chunk (cut at line boundaries).
    #[arg(long, default_value_t = 4 << 20)]
    chunk_bytes: usize,
    /// Extra CA certificate (PEM) to trust for the server's certificate.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Give up on a chunk after this many failed attempts (server errors, overload,
    /// connection problems).
    #[arg(long, default_value_t = 10)]
    retries: u32,
    /// No progress bar and no summary.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// What the server says about a chunk it accepted.
#[derive(Debug, Deserialize)]
struct IngestAnswer {
    #[serde(default)]
    accepted: u64,
    #[serde(default)]
    rejected: u64,
    #[serde(default)]
    errors: Vec<LineError>,
}

/// A record the server could not read: by line of the body (text) or byte offset.
#[derive(Debug, Deserialize)]
struct LineError {
    #[serde(default)]
    line: Option<u64>,
    #[serde(default)]
    offset: Option<u64>,
    message: String,
}

/// Per-file progress kept in the `--state` file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct FileState {
    size: u64,
    mtime_s: i64,
    mtime_ns: u32,
    /// Text: bytes (of the decompressed content) acknowledged. EVTX: 0.
    offset: u64,
    /// Text: lines acknowledged. EVTX: records acknowledged.
    lines: u64,
    done: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    files: BTreeMap<String, FileState>,
}

impl State {
    fn load(path: &Path) -> anyhow::Result<State> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("reading state file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading state file {}", path.display())),
        }
    }

    /// Replaces the state file atomically: a crash leaves the old state or the new one.
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = path.with_file_name(format!(".{name}.tmp"));
        let json = serde_json::to_vec_pretty(self)?;
        let mut f = std::fs::File::create(&temp).with_context(|| format!("writing {}", temp.display()))?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&temp, path).with_context(|| format!("replacing state file {}", path.display()))?;
        Ok(())
    }
}

/// One request body and where its lines came from.
struct Chunk {
    body: Vec<u8>,
    /// Lines in the body, prepended header lines included.
    lines: u64,
    /// Zeek header lines put in front of the file's own lines.
    header_lines: u64,
    /// File line (text) or record number (EVTX) of the first line after the header, from 1.
    first: u64,
    /// The file's progress once this chunk is acknowledged.
    end_offset: u64,
    end_lines: u64,
}

/// Cuts a text input into chunks at line boundaries.
struct TextChunks {
    reader: Box<dyn BufRead + Send>,
    offset: u64,
    line: u64,
    /// The Zeek header block, repeated in every chunk that does not start the file.
    header: Option<(Vec<u8>, u64)>,
    pending: Vec<u8>,
}

impl TextChunks {
    fn next_chunk(&mut self, limit: usize) -> std::io::Result<Option<Chunk>> {
        let mut body = Vec::with_capacity(limit.min(MAX_BODY) + 1024);
        let mut header_lines = 0;
        if let Some((header, n)) = &self.header
            && self.offset > 0
        {
            body.extend_from_slice(header);
            header_lines = *n;
        }
        let first = self.line + 1;
        let mut data_lines = 0u64;
        loop {
            if self.pending.is_empty() && self.reader.read_until(b'\n', &mut self.pending)? == 0 {
                break;
            }
            let room = limit.saturating_sub(body.len());
            if data_lines > 0 && self.pending.len() + 1 > room {
                break;
            }
            self.offset += self.pending.len() as u64;
            self.line += 1;
            data_lines += 1;
            body.extend_from_slice(&self.pending);
            if !self.pending.ends_with(b"\n") {
                body.push(b'\n');
            }
            self.pending.clear();
        }
        if data_lines == 0 {
            return Ok(None);
        }
        Ok(Some(Chunk {
            body,
            lines: header_lines + data_lines,
            header_lines,
            first,
            end_offset: self.offset,
            end_lines: self.line,
        }))
    }
}

/// The `#` lines at the start of a Zeek TSV input, and how many there are.
fn zeek_header(input: &Input) -> std::io::Result<Option<(Vec<u8>, u64)>> {
    let mut reader = inputs::open_text(&input.path, input.gzip)?;
    let mut header = Vec::new();
    let mut n = 0;
    let mut line = Vec::new();
    while header.len() < (1 << 20) {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 || !line.starts_with(b"#") {
            break;
        }
        header.extend_from_slice(&line);
        if !line.ends_with(b"\n") {
            header.push(b'\n');
        }
        n += 1;
    }
    Ok((n > 0).then_some((header, n)))
}

/// What one run did, for the summary.
#[derive(Default)]
struct Summary {
    files: u64,
    chunks: u64,
    accepted: u64,
    rejected: u64,
    /// Chunks the server refused whole (400, 413 of a single line).
    refused_chunks: u64,
    errors: Vec<String>,
    skipped: Vec<String>,
}

impl Summary {
    fn error(&mut self, message: String) {
        if self.errors.len() < ERRORS_SHOWN {
            self.errors.push(message);
        }
    }
}

/// Why a chunk was not accepted.
enum Failure {
    /// The token is not valid or may not ingest: nothing more can be sent.
    Fatal(String),
    /// The server refuses this chunk (400): report it and go on.
    Refused(String),
    /// Larger than the server takes.
    TooLarge,
}

struct Client {
    http: reqwest::Client,
    url: reqwest::Url,
    token: String,
    retries: u32,
}

impl Client {
    /// Sends one chunk, retrying overload, server errors and connection problems.
    async fn send(
        &self,
        source: &str,
        format: Option<&str>,
        gz: &[u8],
    ) -> anyhow::Result<Result<IngestAnswer, Failure>> {
        let mut url = self.url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("source", source);
            if let Some(f) = format {
                q.append_pair("format", f);
            }
        }
        let mut backoff = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .http
                .post(url.clone())
                .bearer_auth(&self.token)
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .header(reqwest::header::CONTENT_ENCODING, "gzip")
                .body(gz.to_vec())
                .send()
                .await;
            let wait = match sent {
                Err(e) => {
                    if attempt > self.retries {
                        bail!("sending to {}: {e} (after {attempt} attempts)", self.url);
                    }
                    backoff
                }
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(300)));
                    let text = resp.text().await.unwrap_or_default();
                    match status.as_u16() {
                        200..=299 => {
                            return match serde_json::from_str::<IngestAnswer>(&text) {
                                Ok(a) => Ok(Ok(a)),
                                Err(e) => bail!("the server's answer is not what was expected ({e}): {text:.200}"),
                            };
                        }
                        401 | 403 => {
                            return Ok(Err(Failure::Fatal(format!(
                                "the server refused the token ({status}): {text:.200}"
                            ))));
                        }
                        413 => return Ok(Err(Failure::TooLarge)),
                        429 | 500..=599 => {
                            if attempt > self.retries {
                                bail!("the server answered {status} {attempt} times: {text:.200}");
                            }
                            retry_after.unwrap_or(backoff)
                        }
                        _ => return Ok(Err(Failure::Refused(format!("{status}: {text:.200}")))),
                    }
                }
            };
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    enc.write_all(body)?;
    enc.finish()
}

/// Splits a chunk's body in two at a line boundary (for a server that found it too large).
fn split(chunk: &Chunk) -> Option<(Chunk, Chunk)> {
    let data_lines = chunk.lines - chunk.header_lines;
    if data_lines < 2 {
        return None;
    }
    let mut header_end = 0;
    for _ in 0..chunk.header_lines {
        header_end += chunk.body[header_end..].iter().position(|b| *b == b'\n')? + 1;
    }
    let keep = data_lines / 2;
    let mut cut = header_end;
    for _ in 0..keep {
        cut += chunk.body[cut..].iter().position(|b| *b == b'\n')? + 1;
    }
    let mut second = chunk.body[..header_end].to_vec();
    second.extend_from_slice(&chunk.body[cut..]);
    let first_body = chunk.body[..cut].to_vec();
    let first = Chunk {
        body: first_body,
        lines: chunk.header_lines + keep,
        header_lines: chunk.header_lines,
        first: chunk.first,
        // Text offsets of a half are not known without counting bytes: only the second half
        // moves the file's progress (see `ship`).
        end_offset: chunk.end_offset,
        end_lines: chunk.end_lines,
    };
    let second = Chunk {
        body: second,
        lines: chunk.header_lines + (data_lines - keep),
        header_lines: chunk.header_lines,
        first: chunk.first + keep,
        end_offset: chunk.end_offset,
        end_lines: chunk.end_lines,
    };
    Some((first, second))
}

/// Where a chunk's line is in its file.
fn position(chunk: &Chunk, line: u64, evtx: bool) -> String {
    if line <= chunk.header_lines {
        return format!("line {line} (header)");
    }
    let n = chunk.first + line - chunk.header_lines - 1;
    if evtx { format!("record {n}") } else { format!("line {n}") }
}

struct Run<'a> {
    client: Client,
    args: &'a IngestArgs,
    state: State,
    summary: Summary,
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Run<'_> {
    fn progress(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            let rate = self.summary.accepted as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!("{} events ({rate:.0}/s)", self.summary.accepted));
        }
    }

    fn save_state(&self) -> anyhow::Result<()> {
        match &self.args.state {
            Some(path) => self.state.save(path),
            None => Ok(()),
        }
    }

    /// Sends the chunks `next` gives, one at a time, saving the file's progress after each.
    /// An error ends the run (the token was refused, the server kept failing).
    async fn ship(
        &mut self,
        name: &str,
        key: Option<&str>,
        evtx: bool,
        format: Option<&str>,
        mut next: impl FnMut() -> anyhow::Result<Option<Chunk>>,
    ) -> anyhow::Result<()> {
        let source = self.args.source.clone().unwrap_or_else(|| name.to_owned());
        let mut queue: VecDeque<(Chunk, bool)> = VecDeque::new();
        loop {
            let (chunk, last_part) = match queue.pop_front() {
                Some(c) => c,
                None => match next()? {
                    Some(c) => (c, true),
                    None => return Ok(()),
                },
            };
            let raw = chunk.body.len() as u64;
            let gz = gzip(&chunk.body)?;
            let answer = if chunk.body.len() > MAX_BODY || gz.len() > 16 << 20 {
                Err(Failure::TooLarge)
            } else {
                self.client.send(&source, format, &gz).await?
            };
            match answer {
                Ok(a) => {
                    self.summary.chunks += 1;
                    self.summary.accepted += a.accepted;
                    self.summary.rejected += a.rejected;
                    for e in &a.errors {
                        let at = match (e.line, e.offset) {
                            (Some(line), _) => position(&chunk, line, evtx),
                            (None, Some(offset)) => format!(
                                "chunk from {} {}, byte {offset}",
                                if evtx { "record" } else { "line" },
                                chunk.first
                            ),
                            (None, None) => {
                                format!("chunk from {} {}", if evtx { "record" } else { "line" }, chunk.first)
                            }
                        };
                        self.summary.error(format!("{name}: {at}: {}", e.message));
                    }
                }
                Err(Failure::Fatal(message)) => bail!("{message}"),
                Err(Failure::TooLarge) => match split(&chunk) {
                    Some((a, b)) => {
                        queue.push_front((b, last_part));
                        queue.push_front((a, false));
                        continue;
                    }
                    None => {
                        self.summary.refused_chunks += 1;
                        self.summary.error(format!("{name}: {}: too large for the server", position_first(evtx)));
                    }
                },
                Err(Failure::Refused(message)) => {
                    self.summary.refused_chunks += 1;
                    self.summary.error(format!(
                        "{name}: lines {}–{} refused: {message}",
                        chunk.first,
                        chunk.first + chunk.lines - chunk.header_lines - 1
                    ));
                }
            }
            // EVTX progress is counted by file, at its end (the JSON is larger than the file).
            self.progress(if evtx { 0 } else { raw });
            // The first half of a split chunk leaves the file's progress where it was: a
            // restart then resends that half rather than skip the second.
            if last_part && let Some(key) = key {
                let entry = self.state.files.entry(key.to_owned()).or_default();
                entry.offset = chunk.end_offset;
                entry.lines = chunk.end_lines;
                self.save_state()?;
            }
        }
    }

    async fn file(&mut self, input: &Input) -> anyhow::Result<()> {
        let path = &input.path;
        let name = path.display().to_string();
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()).display().to_string();
        let meta = std::fs::metadata(path).with_context(|| format!("reading {name}"))?;
        let (mtime_s, mtime_ns) = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or((0, 0), |d| (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos()));
        let evtx_file = input.format == Format::Evtx;
        let previous = self.state.files.get(&key).cloned();
        let unchanged =
            previous.as_ref().is_some_and(|p| p.size == meta.len() && p.mtime_s == mtime_s && p.mtime_ns == mtime_ns);
        // A text file that only grew is resumed (logs are appended to); any other change
        // starts the file over.
        let grown = previous.as_ref().is_some_and(|p| !evtx_file && !input.gzip && meta.len() > p.size);
        let (offset, lines) = match &previous {
            Some(p) if unchanged && p.done => {
                self.progress(meta.len());
                return Ok(());
            }
            Some(p) if unchanged || grown => (p.offset, p.lines),
            _ => (0, 0),
        };
        self.state
            .files
            .insert(key.clone(), FileState { size: meta.len(), mtime_s, mtime_ns, offset, lines, done: false });
        self.summary.files += 1;
        if let Some(bar) = &self.bar {
            bar.inc(offset.min(meta.len()));
        }
        let limit = self.args.chunk_bytes.clamp(1, MAX_BODY / 2);
        if evtx_file {
            let file = std::fs::File::open(path).with_context(|| format!("opening {name}"))?;
            let mut items = evtx::read_all(std::io::BufReader::new(file), Source::file(name.clone()));
            let mut record = 0u64;
            let mut bad = 0u64;
            self.ship(&name, Some(&key), true, Some("json"), || {
                let mut body = Vec::new();
                let mut first = 0;
                let mut n = 0;
                while body.len() < limit {
                    match items.next() {
                        None => break,
                        Some(Item::Diagnostic(d)) => {
                            bad += 1;
                            eprintln!("warning: {d}");
                        }
                        Some(Item::Event(e)) => {
                            record += 1;
                            // Acknowledged by an earlier run.
                            if record <= lines {
                                continue;
                            }
                            if n == 0 {
                                first = record;
                            }
                            body.extend_from_slice(e.raw.as_bytes());
                            body.push(b'\n');
                            n += 1;
                        }
                    }
                }
                Ok((n > 0).then_some(Chunk {
                    body,
                    lines: n,
                    header_lines: 0,
                    first,
                    end_offset: 0,
                    end_lines: record,
                }))
            })
            .await?;
            if bad > 0 {
                self.summary.skipped.push(format!("{name}: {bad} records or chunks could not be read"));
            }
            self.progress(meta.len());
        } else {
            let header = if self.args.format.is_none_or(|f| f == Format::ZeekTsv) && input.format == Format::ZeekTsv {
                zeek_header(input).with_context(|| format!("reading {name}"))?
            } else {
                None
            };
            let mut reader = inputs::open_text(&input.path, input.gzip).with_context(|| format!("opening {name}"))?;
            // Skip what was acknowledged before (decompressed bytes, so this works for gzip).
            std::io::copy(&mut (&mut reader).take(offset), &mut std::io::sink())
                .with_context(|| format!("reading {name}"))?;
            let mut chunks = TextChunks { reader, offset, line: lines, header, pending: Vec::new() };
            let format = self.args.format.map(Format::name);
            self.ship(&name, Some(&key), false, format, || {
                chunks.next_chunk(limit).with_context(|| format!("reading {name}"))
            })
            .await?;
        }
        if let Some(entry) = self.state.files.get_mut(&key) {
            entry.done = true;
            self.save_state()?;
        }
        Ok(())
    }

    async fn stdin(&mut self) -> anyhow::Result<()> {
        let limit = self.args.chunk_bytes.clamp(1, MAX_BODY / 2);
        let reader: Box<dyn BufRead + Send> = Box::new(std::io::BufReader::new(std::io::stdin()));
        let mut chunks = TextChunks { reader, offset: 0, line: 0, header: None, pending: Vec::new() };
        let format = self.args.format.map(Format::name);
        self.summary.files += 1;
        self.ship("stdin", None, false, format, || chunks.next_chunk(limit).context("reading standard input")).await?;
        Ok(())
    }
}

fn position_first(evtx: bool) -> &'static str {
    if evtx { "a record" } else { "a line" }
}

pub fn run(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: IngestArgs) -> anyhow::Result<ExitCode> {
    // reqwest is built without a default crypto provider (ring, not aws-lc): install ring's.
    // An error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut base = reqwest::Url::parse(&args.server).with_context(|| format!("`{}` is not a URL", args.server))?;
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let url = base.join("api/v1/ingest").context("building the ingest URL")?;
    let mut http =
        reqwest::Client::builder().connect_timeout(Duration::from_secs(30)).timeout(Duration::from_secs(600));
    if let Some(ca) = &args.ca_cert {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).with_context(|| format!("reading {}", ca.display()))? {
            http = http.add_root_certificate(cert);
        }
    }
    let client = Client {
        http: http.build().context("setting up the HTTP client")?,
        url,
        token: args.token.clone(),
        retries: args.retries,
    };

    let stdin = args.paths.iter().any(|p| p.as_os_str() == "-");
    let files: Vec<PathBuf> = args.paths.iter().filter(|p| p.as_os_str() != "-").cloned().collect();
    let (found, skipped) = if files.is_empty() { Default::default() } else { inputs::discover(&files, args.format) };
    // The state file may sit in a folder being sent: it is not a log.
    let (found, skipped) = match &args.state {
        Some(state) => {
            let own = |p: &Path| {
                let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
                let name = state.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                canon(p) == canon(state) || p.file_name().is_some_and(|n| n.to_string_lossy() == format!(".{name}.tmp"))
            };
            (found.retain(|i| !own(i.path)), skipped.into_iter().filter(|s| !own(&s.path)).collect::<Vec<_>>())
        }
        None => (found, skipped),
    };
    let state = match &args.state {
        Some(p) => State::load(p)?,
        None => State::default(),
    };
    let tty = std::io::stderr().is_terminal() && !args.quiet;
    let total: u64 = found.total_size();
    let bar = tty.then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut run = Run { client, args: &args, state, summary: Summary::default(), bar, started: Instant::now() };
    for s in skipped {
        run.summary.skipped.push(format!("{}: {}", s.path.display(), s.reason));
    }
    let mut outcome = Ok(());
    for input in found.iter().map(inputs::InputRef::to_owned) {
        if input.format == Format::Eml {
            run.summary.skipped.push(format!("{}: e-mail messages are not sent line by line", input.path.display()));
            continue;
        }
        outcome = run.file(&input).await;
        if outcome.is_err() {
            break;
        }
    }
    if outcome.is_ok() && stdin {
        outcome = run.stdin().await;
    }
    if let Some(bar) = &run.bar {
        bar.finish_and_clear();
    }
    let s = &run.summary;
    if !args.quiet {
        eprintln!(
            "files: {}, chunks: {}, accepted: {}, rejected: {}{}",
            s.files,
            s.chunks,
            s.accepted,
            s.rejected,
            if s.refused_chunks > 0 { format!(", chunks refused: {}", s.refused_chunks) } else { String::new() }
        );
        for e in &s.errors {
            eprintln!("  {e}");
        }
        for sk in &s.skipped {
            eprintln!("skipped {sk}");
        }
    }
    outcome?;
    Ok(if s.rejected > 0 || s.refused_chunks > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
