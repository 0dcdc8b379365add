//! Writing the timeline (table, JSON, JSON lines, CSV) and the run summary.

use std::io::{self, Write};

use nigehban_sigma::Level;

use crate::run::HuntStats;
use crate::store::{DetectionStore, Record, Tally};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
    Jsonl,
    Csv,
}

impl OutputFormat {
    pub fn parse(s: &str) -> Option<OutputFormat> {
        Some(match s {
            "table" => OutputFormat::Table,
            "json" => OutputFormat::Json,
            "jsonl" | "ndjson" => OutputFormat::Jsonl,
            "csv" => OutputFormat::Csv,
            _ => return None,
        })
    }
}

/// The most bytes one write to a file takes: larger writes are cut into pieces of this size.
///
/// Writing a file in pieces larger than this costs the kernel several times as much to take
/// in: on the benchmark machine (Linux 6.18, ext4), 87 MB written 1 MiB at a time took
/// 0.21-0.36 s of system time, 64 KiB at a time 0.02-0.04 s (BENCHMARKS.md); a timeline of
/// some hundred thousand detections is tens of megabytes.
pub const WRITE_PIECE: usize = 64 << 10;

/// A writer that hands its inner writer at most [`WRITE_PIECE`] bytes at a time, for files
/// written in large parts (the timeline, the detection store's records).
#[derive(Debug)]
pub struct SmallWrites<W>(pub W);

impl<W> SmallWrites<W> {
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.0
    }
}

impl<W: Write> Write for SmallWrites<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(&buf[..buf.len().min(WRITE_PIECE)])
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn record(raw: &[u8]) -> io::Result<Record> {
    serde_json::from_slice(raw).map_err(io::Error::other)
}

fn time_text(r: &Record) -> String {
    match r.timestamp.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok()) {
        Some(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => "-".into(),
    }
}

fn details_text(r: &Record) -> String {
    r.fields
        .iter()
        .map(|(k, v)| {
            let v = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
            format!("{k}: {}", v.replace(['\r', '\n', '\t'], " "))
        })
        .collect::<Vec<_>>()
        .join(" ¦ ")
}

/// Writes the detections in `format`, in timeline order.
pub fn write_detections(out: &mut dyn Write, format: OutputFormat, store: DetectionStore) -> io::Result<()> {
    match format {
        OutputFormat::Table => {
            let tally = store.tally();
            let host_w = tally.by_host.keys().map(|h| h.chars().count()).max().unwrap_or(4).clamp(4, 24);
            let title_w = tally.by_rule.keys().map(|(t, _, _)| t.chars().count()).max().unwrap_or(4).clamp(4, 60);
            writeln!(out, "{:<24} {:<13} {:<host_w$} {:<title_w$} Details", "Timestamp", "Level", "Host", "Rule")?;
            store.for_each_sorted(|raw| {
                let r = record(raw)?;
                writeln!(
                    out,
                    "{:<24} {:<13} {:<host_w$} {:<title_w$} {}",
                    time_text(&r),
                    r.level,
                    clip(r.host.as_deref().unwrap_or("-"), host_w),
                    clip(&r.rule_title, title_w),
                    details_text(&r),
                )
            })
        }
        OutputFormat::Json => {
            let mut first = true;
            out.write_all(b"[")?;
            store.for_each_sorted(|raw| {
                out.write_all(if first { b"\n  " } else { b",\n  " })?;
                first = false;
                out.write_all(raw)
            })?;
            out.write_all(if first { b"]\n" } else { b"\n]\n" })
        }
        OutputFormat::Jsonl => store.write_lines(out),
        OutputFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "timestamp",
                "level",
                "rule_title",
                "rule_id",
                "tags",
                "host",
                "source",
                "position",
                "details",
            ])?;
            store.for_each_sorted(|raw| {
                let r = record(raw)?;
                w.write_record([
                    time_text(&r),
                    r.level.clone(),
                    r.rule_title.clone(),
                    r.rule_id.clone(),
                    r.tags.join(" "),
                    r.host.clone().unwrap_or_default(),
                    r.source.clone(),
                    r.position.clone(),
                    details_text(&r),
                ])
                .map_err(io::Error::other)
            })?;
            w.flush()
        }
    }
}

fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Rule-loading figures for the summary.
#[derive(Clone, Debug, Default)]
pub struct RuleFigures {
    pub loaded: usize,
    pub correlations: usize,
    pub failed: usize,
    pub below_min_level: usize,
}

/// The summary printed after a hunt.
pub fn write_summary(
    out: &mut dyn Write,
    stats: &HuntStats,
    rules: &RuleFigures,
    tally: &Tally,
    elapsed: std::time::Duration,
) -> io::Result<()> {
    let secs = elapsed.as_secs_f64().max(1e-9);
    writeln!(out, "Summary")?;
    writeln!(
        out,
        "  files: {} read, {} skipped; {:.1} MiB; {} events ({:.0} events/s) in {:.2} s",
        stats.files,
        stats.skipped.len(),
        stats.bytes as f64 / (1024.0 * 1024.0),
        stats.events,
        stats.events as f64 / secs,
        secs
    )?;
    if !stats.events_per_format.is_empty() {
        let per: Vec<String> = stats.events_per_format.iter().map(|(f, n)| format!("{} {n}", f.name())).collect();
        writeln!(out, "  events by format: {}", per.join(", "))?;
    }
    if stats.events_filtered > 0 {
        writeln!(out, "  events outside --from/--to: {}", stats.events_filtered)?;
    }
    writeln!(
        out,
        "  rules: {} loaded, {} correlation, {} failed{}",
        rules.loaded,
        rules.correlations,
        rules.failed,
        if rules.below_min_level > 0 {
            format!(", {} below --min-level (run, not reported)", rules.below_min_level)
        } else {
            String::new()
        }
    )?;
    let levels: Vec<String> =
        Level::ALL.iter().rev().map(|l| format!("{} {}", l, tally.by_level.get(l).unwrap_or(&0))).collect();
    writeln!(out, "  detections: {} ({})", tally.total, levels.join(", "))?;
    let mut rules_sorted: Vec<_> = tally.by_rule.iter().collect();
    rules_sorted.sort_by(|a, b| b.1.cmp(a.1).then(b.0.2.cmp(&a.0.2)).then(a.0.0.cmp(&b.0.0)));
    if !rules_sorted.is_empty() {
        writeln!(out, "  top rules:")?;
        for ((title, _, level), n) in rules_sorted.iter().take(10) {
            writeln!(out, "    {n:>6}  {level:<13} {title}")?;
        }
    }
    let mut hosts: Vec<_> = tally.by_host.iter().collect();
    hosts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    if !hosts.is_empty() {
        writeln!(out, "  top hosts:")?;
        for (host, n) in hosts.iter().take(10) {
            writeln!(out, "    {n:>6}  {host}")?;
        }
    }
    if stats.diagnostics_total > 0 {
        writeln!(out, "  input problems: {} (records or lines skipped; first ones below)", stats.diagnostics_total)?;
        for d in stats.diagnostics.iter().take(10) {
            writeln!(out, "    {d}")?;
        }
    }
    for s in stats.skipped.iter().take(10) {
        writeln!(out, "  skipped {}: {}", s.path.display(), s.reason)?;
    }
    if stats.skipped.len() > 10 {
        writeln!(out, "  … and {} more skipped files", stats.skipped.len() - 10)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the size of every write it is handed.
    #[derive(Default)]
    struct Sizes {
        writes: Vec<usize>,
        bytes: Vec<u8>,
    }

    impl Write for Sizes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes.push(buf.len());
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn large_writes_reach_the_file_in_pieces() {
        let data: Vec<u8> = (0..WRITE_PIECE * 5 / 2 + 7).map(|i| (i % 251) as u8).collect();
        let mut w = io::BufWriter::with_capacity(WRITE_PIECE, SmallWrites(Sizes::default()));
        w.write_all(b"head ").unwrap();
        w.write_all(&data).unwrap();
        w.write_all(b" tail").unwrap();
        w.flush().unwrap();
        let inner = w.into_inner().map_err(|e| e.into_error()).unwrap().0;
        assert!(inner.writes.iter().all(|&n| n <= WRITE_PIECE), "{:?}", inner.writes);
        assert!(inner.writes.len() >= 3, "{:?}", inner.writes);
        let mut want = b"head ".to_vec();
        want.extend_from_slice(&data);
        want.extend_from_slice(b" tail");
        assert_eq!(inner.bytes, want);
    }
}
