//! Finding input files and recognising their formats by content.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nigehban_event::Format;
use nigehban_event::read::detect_format;

/// A file to read.
#[derive(Clone, Debug)]
pub struct Input {
    pub path: PathBuf,
    pub size: u64,
    pub format: Format,
    pub gzip: bool,
}

/// A file that was found but will not be read, and why.
#[derive(Clone, Debug)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// Walks `paths` (files and folders, recursively, following no symlinked folders) and
/// recognises each file's format. Files in no known format are returned as skipped.
pub fn discover(paths: &[PathBuf], forced: Option<Format>) -> (Vec<Input>, Vec<Skipped>) {
    let mut inputs = Vec::new();
    let mut skipped = Vec::new();
    for root in paths {
        if !root.exists() {
            skipped.push(Skipped { path: root.clone(), reason: "no such file or folder".into() });
            continue;
        }
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            match entry {
                Ok(e) if e.file_type().is_file() => files.push(e.into_path()),
                Ok(_) => {}
                Err(e) => skipped.push(Skipped {
                    path: e.path().map(Path::to_path_buf).unwrap_or_else(|| root.clone()),
                    reason: e.to_string(),
                }),
            }
        }
        for path in files {
            match probe(&path, forced) {
                Ok(input) => inputs.push(input),
                Err(reason) => skipped.push(Skipped { path, reason }),
            }
        }
    }
    (inputs, skipped)
}

/// Opens a file and recognises its format from its first bytes (after gzip, if gzipped).
pub fn probe(path: &Path, forced: Option<Format>) -> Result<Input, String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut head = Vec::with_capacity(4096);
    file.take(4096).read_to_end(&mut head).map_err(|e| format!("cannot read: {e}"))?;
    let gzip = head.starts_with(GZIP_MAGIC);
    if gzip {
        let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        head.clear();
        MultiGzDecoder::new(file).take(4096).read_to_end(&mut head).map_err(|e| format!("gzip: {e}"))?;
    }
    let format = match forced {
        Some(f) => f,
        None => detect_format(&head).ok_or_else(|| "format not recognised".to_string())?,
    };
    if gzip && format == Format::Evtx {
        return Err("gzipped EVTX files must be decompressed first".into());
    }
    Ok(Input { path: path.to_path_buf(), size, format, gzip })
}

/// A buffered reader over a text input, decompressing it if needed.
pub fn open_text(input: &Input) -> std::io::Result<Box<dyn BufRead + Send>> {
    let file = File::open(&input.path)?;
    Ok(if input.gzip {
        Box::new(BufReader::with_capacity(256 << 10, MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::with_capacity(256 << 10, file))
    })
}
