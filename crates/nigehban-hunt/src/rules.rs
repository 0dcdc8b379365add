//! Loading Sigma rules from files and folders.

use std::path::{Path, PathBuf};

use nigehban_sigma::rule::Level;
use nigehban_sigma::{RuleSet, RuleSetBuilder};

/// Rules below `min_level` are left out (and counted).
#[derive(Clone, Debug, Default)]
pub struct RuleOptions {
    pub min_level: Option<Level>,
}

/// The rule set and what loading it left out.
pub struct LoadedRules {
    pub rules: RuleSet,
    /// Rules not loaded because their level is below the minimum.
    pub below_min_level: usize,
    /// Files that could not be read at all (path, reason).
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

/// Reads every `.yml`/`.yaml` file under `paths` (recursively, in name order).
pub fn load(paths: &[PathBuf], options: &RuleOptions) -> LoadedRules {
    let mut builder = RuleSetBuilder::new();
    let mut unreadable = Vec::new();
    let mut below = 0;
    for root in paths {
        let mut files = Vec::new();
        if root.is_file() {
            files.push(root.clone());
        } else {
            for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
                match entry {
                    Ok(e) if e.file_type().is_file() && is_rule_file(e.path()) => files.push(e.into_path()),
                    Ok(_) => {}
                    Err(e) => unreadable.push((root.clone(), e.to_string())),
                }
            }
        }
        if files.is_empty() && !root.exists() {
            unreadable.push((root.clone(), "no such file or folder".into()));
        }
        for path in files {
            let name = if root.is_file() { path.display().to_string() } else { display_name(root, &path) };
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    if let Some(min) = options.min_level {
                        below += builder.add_yaml_min_level(&name, &text, min);
                    } else {
                        builder.add_yaml(&name, &text);
                    }
                }
                Err(e) => unreadable.push((path, e.to_string())),
            }
        }
    }
    LoadedRules { rules: builder.build(), below_min_level: below, unreadable }
}
