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

/// The files found, kept compactly: a hunt over a share of a million small logs holds this
/// list for the whole run, so each file costs its path's bytes and a small entry rather than
/// several allocations of its own.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// The UTF-8 paths, one after the other.
    names: String,
    /// The paths that are not UTF-8 (rare), each on its own.
    other: Vec<PathBuf>,
    files: Vec<Entry>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Where the path starts in `names`, or its index in `other` if `len` is [`OTHER`].
    start: usize,
    len: u32,
    size: u64,
    format: Format,
    gzip: bool,
}

/// The `len` of an entry whose path is in `Inputs::other`.
const OTHER: u32 = u32::MAX;

/// A file of [`Inputs`], borrowed.
#[derive(Clone, Copy, Debug)]
pub struct InputRef<'a> {
    pub path: &'a Path,
    pub size: u64,
    pub format: Format,
    pub gzip: bool,
}

impl InputRef<'_> {
    pub fn to_owned(self) -> Input {
        Input { path: self.path.to_path_buf(), size: self.size, format: self.format, gzip: self.gzip }
    }
}

impl Inputs {
    pub fn push(&mut self, input: Input) {
        self.push_parts(&input.path, input.size, input.format, input.gzip);
    }

    fn push_parts(&mut self, path: &Path, size: u64, format: Format, gzip: bool) {
        let (start, len) = match path.to_str() {
            Some(name) if name.len() < OTHER as usize => {
                self.names.push_str(name);
                (self.names.len() - name.len(), name.len() as u32)
            }
            _ => {
                self.other.push(path.to_path_buf());
                (self.other.len() - 1, OTHER)
            }
        };
        self.files.push(Entry { start, len, size, format, gzip });
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The `i`-th file, in the order they were found.
    pub fn get(&self, i: usize) -> Option<InputRef<'_>> {
        let e = self.files.get(i)?;
        let path = if e.len == OTHER {
            self.other.get(e.start)?.as_path()
        } else {
            Path::new(self.names.get(e.start..e.start + e.len as usize)?)
        };
        Some(InputRef { path, size: e.size, format: e.format, gzip: e.gzip })
    }

    pub fn iter(&self) -> impl Iterator<Item = InputRef<'_>> {
        (0..self.files.len()).filter_map(|i| self.get(i))
    }

    /// The bytes of all the files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|e| e.size).sum()
    }

    /// Gives back what the buffers hold beyond their contents (they grew by doubling).
    pub fn shrink_to_fit(&mut self) {
        self.names.shrink_to_fit();
        self.other.shrink_to_fit();
        self.files.shrink_to_fit();
    }

    /// Keeps the files `keep` says yes to.
    pub fn retain(self, mut keep: impl FnMut(InputRef<'_>) -> bool) -> Inputs {
        let mut kept = Inputs::default();
        for input in self.iter() {
            if keep(input) {
                kept.push_parts(input.path, input.size, input.format, input.gzip);
            }
        }
        kept.shrink_to_fit();
        kept
    }
}

impl FromIterator<Input> for Inputs {
    fn from_iter<I: IntoIterator<Item = Input>>(iter: I) -> Inputs {
        let mut inputs = Inputs::default();
        for input in iter {
            inputs.push(input);
        }
        inputs
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// Walks `paths` (files and folders, recursively, following no symlinked folders) and
/// recognises each file's format. Files in no known format are returned as skipped.
pub fn discover(paths: &[PathBuf], forced: Option<Format>) -> (Inputs, Vec<Skipped>) {
    let mut inputs = Inputs::default();
    let mut skipped = Vec::new();
    for root in paths {
        if !root.exists() {
            skipped.push(Skipped { path: root.clone(), reason: "no such file or folder".into() });
            continue;
        }
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            match entry {
                Ok(e) if e.file_type().is_file() => match probe(e.path(), forced) {
                    Ok((size, format, gzip)) => inputs.push_parts(e.path(), size, format, gzip),
                    Err(reason) => skipped.push(Skipped { path: e.into_path(), reason }),
                },
                Ok(_) => {}
                Err(e) => skipped.push(Skipped {
                    path: e.path().map(Path::to_path_buf).unwrap_or_else(|| root.clone()),
                    reason: e.to_string(),
                }),
            }
        }
    }
    inputs.shrink_to_fit();
    (inputs, skipped)
}

/// Opens a file and recognises its format from its first bytes (after gzip, if gzipped): its
/// size, its format and whether it is gzipped.
fn probe(path: &Path, forced: Option<Format>) -> Result<(u64, Format, bool), String> {
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
    Ok((size, format, gzip))
}

/// A buffered reader over a text input, decompressing it if needed.
pub fn open_text(path: &Path, gzip: bool) -> std::io::Result<Box<dyn BufRead + Send>> {
    let file = File::open(path)?;
    Ok(if gzip {
        Box::new(BufReader::with_capacity(256 << 10, MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::with_capacity(256 << 10, file))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(path: PathBuf, size: u64) -> Input {
        Input { path, size, format: Format::Json, gzip: size % 2 == 1 }
    }

    #[test]
    fn the_compact_list_gives_back_every_path_and_figure() {
        let mut paths = vec![PathBuf::from("/logs/a.json"), PathBuf::from("relative/ünïcode.log"), PathBuf::from("")];
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            // Not UTF-8: kept on its own, byte for byte.
            paths.insert(1, PathBuf::from(std::ffi::OsStr::from_bytes(b"/logs/\xff\xfe.log")));
        }
        let inputs: Inputs = paths.iter().enumerate().map(|(i, p)| input(p.clone(), i as u64 + 10)).collect();
        assert_eq!(inputs.len(), paths.len());
        for (i, p) in paths.iter().enumerate() {
            let got = inputs.get(i).expect("every file is there");
            assert_eq!(got.path, p.as_path());
            assert_eq!(got.size, i as u64 + 10);
            assert_eq!(got.gzip, (i as u64 + 10) % 2 == 1);
            assert_eq!(got.to_owned().path, *p);
        }
        assert!(inputs.get(paths.len()).is_none());
        assert_eq!(inputs.total_size(), (0..paths.len() as u64).map(|i| i + 10).sum::<u64>());

        let kept = inputs.retain(|i| i.size % 2 == 0);
        let expected: Vec<&Path> =
            paths.iter().enumerate().filter(|(i, _)| i % 2 == 0).map(|(_, p)| p.as_path()).collect();
        assert_eq!(kept.iter().map(|i| i.path).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn discovery_lists_files_in_name_order_and_skips_the_unknown() {
        let dir = std::env::temp_dir().join(format!("nigehban-inputs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("temporary folder");
        std::fs::write(dir.join("b.json"), "{\"a\":1}\n").expect("write");
        std::fs::write(dir.join("sub/a.json"), "{\"a\":2}\n").expect("write");
        std::fs::write(dir.join("a.bin"), [0u8, 1, 2, 3, 0xff]).expect("write");
        let (found, skipped) = discover(std::slice::from_ref(&dir), None);
        let names: Vec<PathBuf> =
            found.iter().map(|i| i.path.strip_prefix(&dir).unwrap_or(i.path).to_path_buf()).collect();
        assert_eq!(names, [PathBuf::from("b.json"), PathBuf::from("sub/a.json")]);
        assert!(found.iter().all(|i| i.format == Format::Json && i.size == 8));
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].path.ends_with("a.bin"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
