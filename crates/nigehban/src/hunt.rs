use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use nigehban_event::Format;
use nigehban_hunt::detectors::{self, DetectorOptions};
use nigehban_hunt::output::{self, OutputFormat, RuleFigures};
use nigehban_hunt::run::{HuntOptions, Progress};
use nigehban_hunt::{hunt, inputs};
use nigehban_sigma::Level;

#[derive(Args)]
pub struct HuntArgs {
    /// Files and folders to read (recursively).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Sigma rule files or folders (recursively), in addition to the built-in pack.
    #[arg(long, short = 'r')]
    rules: Vec<PathBuf>,
    /// Leave the built-in pack out (its Sigma rules, beaconing and first-seen detectors).
    #[arg(long)]
    no_builtin: bool,
    /// Indicator files or folders: STIX 2.1 bundles or plain lists (one value per line).
    #[arg(long, short = 'i')]
    indicators: Vec<PathBuf>,
    /// MISP warninglist files or folders: listed values are not loaded as indicators.
    #[arg(long, short = 'w')]
    warninglists: Vec<PathBuf>,
    /// Only rules of this level or above: informational, low, medium, high, critical.
    #[arg(long, value_parser = parse_level)]
    min_level: Option<Level>,
    /// Only events at or after this time (RFC 3339, or a date / date-time taken as UTC).
    #[arg(long, value_parser = parse_time)]
    from: Option<jiff::Timestamp>,
    /// Only events at or before this time.
    #[arg(long, value_parser = parse_time)]
    to: Option<jiff::Timestamp>,
    /// Output format: table, json, jsonl or csv.
    #[arg(long, short = 'f', default_value = "table", value_parser = parse_format)]
    format: OutputFormat,
    /// Write detections to this file instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// Read every input as this format instead of recognising it: evtx, json, syslog, zeek, eml, access, squid, zimbra.
    #[arg(long, value_parser = parse_input_format)]
    input_format: Option<Format>,
    /// Worker threads (default: one per core).
    #[arg(long, short = 'j')]
    threads: Option<usize>,
    /// No progress bar and no summary.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn parse_level(s: &str) -> Result<Level, String> {
    Level::parse(s).ok_or_else(|| format!("`{s}` is not a level (informational, low, medium, high, critical)"))
}

fn parse_format(s: &str) -> Result<OutputFormat, String> {
    OutputFormat::parse(s).ok_or_else(|| format!("`{s}` is not an output format (table, json, jsonl, csv)"))
}

pub fn parse_input_format(s: &str) -> Result<Format, String> {
    Format::from_name(s)
        .ok_or_else(|| format!("`{s}` is not an input format (evtx, json, syslog, zeek, eml, access, squid, zimbra)"))
}

/// RFC 3339 (`2024-05-01T10:00:00Z`), or a civil date-time / date taken as UTC.
pub fn parse_time(s: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return dt.to_zoned(jiff::tz::TimeZone::UTC).map(|z| z.timestamp()).map_err(|e| e.to_string());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return d.to_zoned(jiff::tz::TimeZone::UTC).map(|z| z.timestamp()).map_err(|e| e.to_string());
    }
    Err(format!("`{s}` is not a time (use RFC 3339 such as 2024-05-01T10:00:00Z, or a date such as 2024-05-01)"))
}

impl HuntArgs {
    /// A hunt over `paths` with `rules`, everything else at its default: a table on standard
    /// output and the summary.
    pub fn new(paths: Vec<PathBuf>, rules: Vec<PathBuf>) -> HuntArgs {
        HuntArgs {
            paths,
            rules,
            no_builtin: false,
            indicators: Vec::new(),
            warninglists: Vec::new(),
            min_level: None,
            from: None,
            to: None,
            format: OutputFormat::Table,
            output: None,
            input_format: None,
            threads: None,
            quiet: false,
        }
    }
}

pub fn run(args: HuntArgs) -> anyhow::Result<ExitCode> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global().context("starting worker threads")?;
    }
    if let (Some(f), Some(t)) = (args.from, args.to)
        && f > t
    {
        bail!("--from ({f}) is after --to ({t})");
    }
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal() && !args.quiet;

    let options = DetectorOptions {
        rules: args.rules.clone(),
        no_builtin: args.no_builtin,
        indicators: args.indicators.clone(),
        warninglists: args.warninglists.clone(),
        min_level: args.min_level,
        undated: None,
        live: false,
    };
    let t0 = Instant::now();
    // The input files are found and probed while the rules load: one walks folders and reads
    // file heads, the other is work for every core.
    let ((detector, loaded), (found, skipped)) = std::thread::scope(|scope| {
        let discovery = scope.spawn(|| inputs::discover(&args.paths, args.input_format));
        let built = detectors::build(&options);
        let discovered = discovery.join().map_err(|_| anyhow::anyhow!("finding the input files failed"))?;
        anyhow::Ok((built?, discovered))
    })?;
    for (path, reason) in &loaded.unreadable {
        eprintln!("warning: rules: {}: {reason}", path.display());
    }
    let report = &loaded.rules;
    if !args.quiet && !report.failed.is_empty() {
        eprintln!(
            "warning: {} rule(s) could not be loaded (run `nigehban rules check` for the list)",
            report.failed.len()
        );
    }
    if !args.quiet
        && let Some(intel) = &loaded.intel
    {
        eprintln!(
            "indicators: {} loaded from {} file(s) ({} skipped, {} left out by {} warninglist(s)); ready in {:.1} s",
            intel.loaded,
            intel.files,
            intel.skipped,
            intel.suppressed.iter().map(|s| s.1).sum::<usize>(),
            intel.warninglists,
            t0.elapsed().as_secs_f64()
        );
        for example in intel.skipped_examples.iter().take(5) {
            eprintln!("  skipped {example}");
        }
    }
    let figures = RuleFigures {
        loaded: report.loaded,
        correlations: report.correlations,
        failed: report.failed.len(),
        below_min_level: loaded.below_min_level,
    };

    if found.is_empty() {
        for s in &skipped {
            eprintln!("skipped {}: {}", s.path.display(), s.reason);
        }
        bail!("nothing to read: no file in a recognised format");
    }
    let total: u64 = found.total_size();
    let progress = Progress::default();
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

    let options = HuntOptions { from: args.from, to: args.to };
    let done = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        if let Some(bar) = &bar {
            let progress = &progress;
            let done = &done;
            scope.spawn(move || {
                let t0 = Instant::now();
                while !done.load(Ordering::Relaxed) {
                    let events = progress.events.load(Ordering::Relaxed);
                    bar.set_position(progress.bytes.load(Ordering::Relaxed));
                    bar.set_message(format!(
                        "{events} events ({:.0}/s), {} detections",
                        events as f64 / t0.elapsed().as_secs_f64().max(0.001),
                        progress.detections.load(Ordering::Relaxed)
                    ));
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        let result = hunt(found, skipped, &detector, &options, &progress);
        done.store(true, Ordering::Relaxed);
        result
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let (store, stats) = result.context("keeping detections in a temporary file")?;
    let tally = store.tally();
    // The compiled rules are no longer needed (the detections hold their rules' descriptions):
    // freed now, and their pages given back, so that writing the timeline starts from a small
    // footprint rather than adding to the largest.
    drop(detector);
    crate::release_freed_memory();

    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            let mut w = std::io::BufWriter::with_capacity(output::WRITE_PIECE, output::SmallWrites(file));
            output::write_detections(&mut w, args.format, store)?;
            w.flush()?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::with_capacity(output::WRITE_PIECE, output::SmallWrites(stdout.lock()));
            if let Err(e) = output::write_detections(&mut w, args.format, store).and_then(|_| w.flush())
                && e.kind() != std::io::ErrorKind::BrokenPipe
            {
                return Err(e.into());
            }
        }
    }
    if !args.quiet {
        let mut err = std::io::stderr().lock();
        output::write_summary(&mut err, &stats, &figures, &tally, started.elapsed())?;
    }
    Ok(ExitCode::SUCCESS)
}
