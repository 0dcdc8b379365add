//! Loading Sigma rules from files and folders.

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
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
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
    }
    let prepared: Vec<Result<Prepared, (PathBuf, String)>> = files
        .par_iter()
        .with_max_len(1)
        .map(|(path, name)| match std::fs::read_to_string(path) {
            Ok(text) => Ok(prepare(name, &text)),
            Err(e) => Err((path.clone(), e.to_string())),
        })
        .collect();
    let mut builder = RuleSetBuilder::new();
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
