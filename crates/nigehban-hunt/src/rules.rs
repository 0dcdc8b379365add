//! Loading Sigma rules from files and folders.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use nigehban_sigma::ruleset::{Prepared, prepare};
use nigehban_sigma::{RuleSet, RuleSetBuilder};
use rayon::prelude::*;

/// The rule set and the files that could not be read.
pub struct LoadedRules {
    pub rules: RuleSet,
    /// Files or folders that could not be read at all (path, reason).
    pub unreadable: Vec<(PathBuf, String)>,
}

fn is_rule_file(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml"))
}

/// The display name of a rule file: relative to the folder it was found under, prefixed by
/// that folder's name, so that reports stay short and stable across machines.
fn display_name(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => {
            let base = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if base.is_empty() { rel.display().to_string() } else { format!("{base}/{}", rel.display()) }
        }
        _ => path.display().to_string(),
    }
}

/// A key that orders paths as a walk of the tree in name order visits them: the path's bytes
/// with each separator made the lowest byte, so that `a/x` comes before `a-b` as folder `a`
/// does (no name holds a NUL byte).
fn tree_order(path: &Path) -> Vec<u8> {
    let mut key = path.as_os_str().as_encoded_bytes().to_vec();
    for b in &mut key {
        if std::path::is_separator(char::from(*b)) {
            *b = 0;
        }
    }
    key
}

thread_local! {
    /// A loading thread's buffer for the text of one rule file after another.
    static TEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The text of the file at `path`, read into `buf` (kept from one file to the next).
/// Unlike `fs::read_to_string` it asks neither for the file's size (a system call per file,
/// and rule files are small) nor for a new buffer per file.
fn read_text<'b>(path: &Path, buf: &'b mut Vec<u8>) -> io::Result<&'b str> {
    let mut file = File::open(path)?;
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize((buf.len() * 2).max(READ_CHUNK), 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let bytes = &buf[..len];
    std::str::from_utf8(bytes).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidData, format!("not UTF-8 text (byte {} is not)", e.valid_up_to()))
    })
}

/// The first size of a loading thread's buffer: larger than nearly every rule file.
const READ_CHUNK: usize = 64 << 10;

/// Reads every `.yml`/`.yaml` file under `paths` (recursively). Files are parsed and compiled
/// in parallel and added in path order, so rule ids are the same on every run.
pub fn load(paths: &[PathBuf]) -> LoadedRules {
    load_with(paths, Vec::new())
}

/// [`load`], after the rules already prepared in `first` (the built-in pack:
/// `nigehban_detect::pack::prepared()`). Correlation rules may refer to rules of either.
pub fn load_with(paths: &[PathBuf], first: Vec<Prepared>) -> LoadedRules {
    let mut unreadable = Vec::new();
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for root in paths {
        if root.is_file() {
            files.push((root.clone(), root.display().to_string()));
            continue;
        }
        if !root.exists() {
            unreadable.push((root.clone(), "no such file or folder".into()));
            continue;
        }
        // Sorted once found rather than as the folders are read (where each comparison takes
        // the names apart again), in the same order: a folder's entries by name, each folder's
        // files right after it.
        let first = files.len();
        for entry in walkdir::WalkDir::new(root) {
            match entry {
                Ok(e) if e.file_type().is_file() && is_rule_file(e.path()) => {
                    let name = display_name(root, e.path());
                    files.push((e.into_path(), name));
                }
                Ok(_) => {}
                Err(e) => {
                    unreadable.push((e.path().map(Path::to_path_buf).unwrap_or_else(|| root.clone()), e.to_string()))
                }
            }
        }
        files[first..].sort_by_cached_key(|(path, _)| tree_order(path));
    }
    let prepared: Vec<Result<Prepared, (PathBuf, String)>> = files
        .par_iter()
        .with_max_len(1)
        .map(|(path, name)| {
            TEXT.with_borrow_mut(|buf| match read_text(path, buf) {
                Ok(text) => Ok(prepare(name, text)),
                Err(e) => Err((path.clone(), e.to_string())),
            })
        })
        .collect();
    let mut builder = RuleSetBuilder::new();
    builder.reserve_for(first.iter().chain(prepared.iter().flatten()));
    for p in first {
        builder.add_prepared(p);
    }
    for p in prepared {
        match p {
            Ok(p) => builder.add_prepared(p),
            Err(e) => unreadable.push(e),
        }
    }
    LoadedRules { rules: builder.build(), unreadable }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule file is read whole whatever its size against the buffer's, and a file that is
    /// not UTF-8 is refused with where it stops being so; the buffer carries nothing of one
    /// file into the next.
    #[test]
    fn rule_files_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = Vec::new();
        let long: String = (0..READ_CHUNK * 3 + 17).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let path = dir.path().join("long.yml");
        std::fs::write(&path, &long).unwrap();
        assert_eq!(read_text(&path, &mut buf).unwrap(), long);
        let path = dir.path().join("short.yml");
        std::fs::write(&path, "title: t\n").unwrap();
        assert_eq!(read_text(&path, &mut buf).unwrap(), "title: t\n");
        let path = dir.path().join("empty.yml");
        std::fs::write(&path, "").unwrap();
        assert_eq!(read_text(&path, &mut buf).unwrap(), "");
        let path = dir.path().join("latin1.yml");
        std::fs::write(&path, b"title: caf\xe9\n").unwrap();
        let err = read_text(&path, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("byte 10"), "{err}");
        assert!(read_text(&dir.path().join("missing.yml"), &mut buf).is_err());
    }

    /// Rule files are taken in the order of a walk of the tree with each folder's entries
    /// sorted by name (which fixes the rules' ids), whatever order the folders list them in.
    #[test]
    fn files_in_tree_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        for f in ["a/y.yml", "a-b/x.yml", "a.yml", "b.yml", "a/z/w.yml", "a/ab.yml", "B.yml", "a b.yml"] {
            let path = root.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "title: t\n").unwrap();
        }
        let walked: Vec<PathBuf> = walkdir::WalkDir::new(&root)
            .sort_by_file_name()
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .filter(|p| p.is_file())
            .collect();
        let mut sorted = walked.clone();
        sorted.reverse();
        sorted.sort_by_cached_key(|p| tree_order(p));
        assert_eq!(sorted, walked);
        let rel: Vec<_> = walked.iter().map(|p| p.strip_prefix(&root).unwrap().to_str().unwrap().to_owned()).collect();
        assert_eq!(rel, ["B.yml", "a/ab.yml", "a/y.yml", "a/z/w.yml", "a b.yml", "a-b/x.yml", "a.yml", "b.yml"]);
    }
}
