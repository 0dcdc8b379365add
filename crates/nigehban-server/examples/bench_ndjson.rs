//! Writes the records of EVTX files as NDJSON chunk files (each record's JSON rendering, one per
//! line), the load of the ingest benchmark (`bench/ingest.sh`).
//!
//! ```text
//! bench_ndjson OUT_DIR LINES_PER_CHUNK COPIES EVTX_PATH...
//! ```
//!
//! Every record is written COPIES times (the corpus repeated), in chunks of LINES_PER_CHUNK
//! lines named `chunk-00001.ndjson`…; a folder is read recursively.

use std::io::Write;
use std::path::{Path, PathBuf};

use nigehban_event::{Item, Source};

fn evtx_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(path).expect("read folder").filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for e in entries {
            evtx_files(&e, out);
        }
    } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("evtx")) {
        out.push(path.to_path_buf());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, lines, copies, paths @ ..] = args.as_slice() else {
        eprintln!("usage: bench_ndjson OUT_DIR LINES_PER_CHUNK COPIES EVTX_PATH...");
        std::process::exit(2);
    };
    let lines: usize = lines.parse().expect("LINES_PER_CHUNK");
    let copies: usize = copies.parse().expect("COPIES");
    let mut files = Vec::new();
    for p in paths {
        evtx_files(Path::new(p), &mut files);
    }
    let mut records = Vec::new();
    for f in &files {
        let file = std::fs::File::open(f).expect("open EVTX");
        for item in
            nigehban_event::read::evtx::read_all(std::io::BufReader::new(file), Source::file(f.display().to_string()))
        {
            if let Item::Event(e) = item {
                records.push(e.raw.to_string());
            }
        }
    }
    std::fs::create_dir_all(out).expect("create OUT_DIR");
    let (mut chunk, mut in_chunk, mut written) = (0usize, 0usize, 0usize);
    let mut w: Option<std::io::BufWriter<std::fs::File>> = None;
    for _ in 0..copies {
        for r in &records {
            if w.is_none() || in_chunk == lines {
                chunk += 1;
                in_chunk = 0;
                let path = Path::new(out).join(format!("chunk-{chunk:05}.ndjson"));
                w = Some(std::io::BufWriter::new(std::fs::File::create(path).expect("create chunk")));
            }
            if let Some(w) = w.as_mut() {
                w.write_all(r.as_bytes()).expect("write");
                w.write_all(b"\n").expect("write");
            }
            in_chunk += 1;
            written += 1;
        }
    }
    if let Some(mut w) = w {
        w.flush().expect("flush");
    }
    eprintln!("{written} records from {} files in {chunk} chunks", files.len());
}
