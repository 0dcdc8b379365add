//! `nigehban parse`: what the readers make of a log file — each event's format, time and
//! fields (vendor and normalized names), as JSON lines. For writing and checking rules.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use nigehban_event::read::{self, evtx};
use nigehban_event::{Format, Item, Source};
use nigehban_hunt::inputs;

#[derive(Args)]
pub struct ParseArgs {
    /// Files or folders to read.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Read every input as this format instead of recognising it.
    #[arg(long, value_parser = crate::hunt::parse_input_format)]
    input_format: Option<Format>,
    /// At most this many events per file.
    #[arg(long, short = 'n', default_value_t = 20)]
    limit: usize,
    /// Also print the original record of each event.
    #[arg(long)]
    raw: bool,
}

pub fn run(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let (found, skipped) = inputs::discover(&args.paths, args.input_format);
    for s in &skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for input in found.iter() {
        let source = Source::file(input.path.display().to_string());
        let items: Box<dyn Iterator<Item = Item>> = if input.format == Format::Evtx {
            let data = std::fs::read(input.path).with_context(|| format!("reading {}", input.path.display()))?;
            let mut items = Vec::new();
            let mut offset = evtx::HEADER_SIZE;
            while offset + evtx::CHUNK_SIZE <= data.len() && items.len() < args.limit {
                let chunk =
                    evtx::RawChunk { data: data[offset..offset + evtx::CHUNK_SIZE].to_vec(), offset: offset as u64 };
                evtx::parse_chunk(chunk, &source, &mut items);
                offset += evtx::CHUNK_SIZE;
            }
            Box::new(items.into_iter())
        } else {
            let reader = inputs::open_text(input.path, input.gzip)
                .with_context(|| format!("opening {}", input.path.display()))?;
            read::read_text(input.format, reader, source.clone())
        };
        for item in items.take(args.limit) {
            match item {
                Item::Event(e) => {
                    let mut doc = serde_json::json!({
                        "source": e.source.name,
                        "position": e.position.to_string(),
                        "format": e.format,
                        "product": e.product.as_str(),
                        "timestamp": e.timestamp.map(|t| t.to_string()),
                        "fields": e.fields_json(),
                    });
                    if args.raw {
                        doc["raw"] = serde_json::Value::String(e.raw.to_string());
                    }
                    if serde_json::to_writer(&mut out, &doc).is_err() || writeln!(out).is_err() {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                Item::Diagnostic(d) => eprintln!("{d}"),
            }
        }
    }
    out.flush().ok();
    Ok(ExitCode::SUCCESS)
}
