//! Writing the timeline (table, JSON, JSON lines, CSV) and the run summary.

use std::collections::HashMap;
use std::io::{self, Write};

use nigehban_detect::Detection;
use nigehban_sigma::Level;
use serde_json::json;

use crate::run::HuntStats;

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

fn time_text(d: &Detection) -> String {
    d.timestamp.map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()).unwrap_or_else(|| "-".into())
}

fn details_text(d: &Detection) -> String {
    d.fields.iter().map(|(k, v)| format!("{k}: {}", v.replace(['\r', '\n', '\t'], " "))).collect::<Vec<_>>().join(" ¦ ")
}

/// One detection as a JSON object.
pub fn detection_json(d: &Detection) -> serde_json::Value {
    let fields: serde_json::Map<String, serde_json::Value> =
        d.fields.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    json!({
        "timestamp": d.timestamp.map(|t| t.to_string()),
        "rule_id": d.rule.id,
        "rule_title": d.rule.title,
        "level": d.rule.level.as_str(),
        "engine": d.rule.engine,
        "tags": d.rule.tags,
        "rule_path": d.rule.path,
        "host": d.host,
        "source": &*d.source,
        "position": d.position.to_string(),
        "fields": fields,
    })
}

/// Writes the detections in `format`.
pub fn write_detections(out: &mut dyn Write, format: OutputFormat, detections: &[Detection]) -> io::Result<()> {
    match format {
        OutputFormat::Table => write_table(out, detections),
        OutputFormat::Json => {
            let all: Vec<_> = detections.iter().map(detection_json).collect();
            serde_json::to_writer_pretty(&mut *out, &all).map_err(io::Error::other)?;
            writeln!(out)
        }
        OutputFormat::Jsonl => {
            for d in detections {
                serde_json::to_writer(&mut *out, &detection_json(d)).map_err(io::Error::other)?;
                writeln!(out)?;
            }
            Ok(())
        }
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
            for d in detections {
                w.write_record([
                    time_text(d),
                    d.rule.level.as_str().to_owned(),
                    d.rule.title.clone(),
                    d.rule.id.clone(),
                    d.rule.tags.join(" "),
                    d.host.clone().unwrap_or_default(),
                    d.source.to_string(),
                    d.position.to_string(),
                    details_text(d),
                ])?;
            }
            w.flush()
        }
    }
}

fn write_table(out: &mut dyn Write, detections: &[Detection]) -> io::Result<()> {
    let host_w =
        detections.iter().map(|d| d.host.as_deref().unwrap_or("-").chars().count()).max().unwrap_or(4).clamp(4, 24);
    let title_w = detections.iter().map(|d| d.rule.title.chars().count()).max().unwrap_or(4).clamp(4, 60);
    writeln!(out, "{:<24} {:<13} {:<host_w$} {:<title_w$} Details", "Timestamp", "Level", "Host", "Rule")?;
    for d in detections {
        writeln!(
            out,
            "{:<24} {:<13} {:<host_w$} {:<title_w$} {}",
            time_text(d),
            d.rule.level.as_str(),
            clip(d.host.as_deref().unwrap_or("-"), host_w),
            clip(&d.rule.title, title_w),
            details_text(d),
        )?;
    }
    Ok(())
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
    detections: &[Detection],
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
            format!(", {} below --min-level", rules.below_min_level)
        } else {
            String::new()
        }
    )?;
    let mut by_level: HashMap<Level, usize> = HashMap::new();
    let mut by_rule: HashMap<(&str, &str, Level), usize> = HashMap::new();
    let mut by_host: HashMap<&str, usize> = HashMap::new();
    for d in detections {
        *by_level.entry(d.rule.level).or_default() += 1;
        *by_rule.entry((&d.rule.title, &d.rule.id, d.rule.level)).or_default() += 1;
        *by_host.entry(d.host.as_deref().unwrap_or("-")).or_default() += 1;
    }
    let levels: Vec<String> =
        Level::ALL.iter().rev().map(|l| format!("{} {}", l, by_level.get(l).unwrap_or(&0))).collect();
    writeln!(out, "  detections: {} ({})", detections.len(), levels.join(", "))?;
    let mut rules_sorted: Vec<_> = by_rule.into_iter().collect();
    rules_sorted.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.2.cmp(&a.0.2)).then(a.0.0.cmp(b.0.0)));
    if !rules_sorted.is_empty() {
        writeln!(out, "  top rules:")?;
        for ((title, _, level), n) in rules_sorted.iter().take(10) {
            writeln!(out, "    {n:>6}  {level:<13} {title}")?;
        }
    }
    let mut hosts: Vec<_> = by_host.into_iter().collect();
    hosts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
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
