//! Loading indicators and warninglists from files and folders for a hunt.
//!
//! An indicator file is a STIX 2.1 bundle (recognised by its content: a JSON object) or a
//! plain list, one value per line (Maltrail's trails, a CERT's own lists). A folder is read
//! recursively (`.json`, `.txt`, `.csv`, `.list`, `.ioc` and files without an extension).
//! Warninglists are MISP's `list.json` files; a folder is searched for them.

use std::path::{Path, PathBuf};

use nigehban_intel::{
    IndicatorMeta, IndicatorSet, LoadReport, Matcher, Tlp, Warninglists, load_plain, load_stix_bundle,
};

/// What was loaded, for the summary.
#[derive(Clone, Debug, Default)]
pub struct IntelReport {
    pub files: usize,
    pub loaded: usize,
    pub duplicates: usize,
    pub skipped: usize,
    /// Suppressed by warninglists, per list.
    pub suppressed: Vec<(String, usize)>,
    /// Up to 20 examples of skipped values (`file:line: reason`).
    pub skipped_examples: Vec<String>,
    pub warninglists: usize,
    pub warninglist_entries: usize,
}

/// A file or folder that could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum IntelError {
    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
}

fn unreadable(path: &Path, reason: impl ToString) -> IntelError {
    IntelError::Unreadable { path: path.to_path_buf(), reason: reason.to_string() }
}

fn files_under(root: &Path, wanted: &dyn Fn(&Path) -> bool) -> Result<Vec<PathBuf>, IntelError> {
    if root.is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    if !root.exists() {
        return Err(unreadable(root, "no such file or folder"));
    }
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.map_err(|e| unreadable(root, e))?;
        if entry.file_type().is_file() && wanted(entry.path()) {
            out.push(entry.into_path());
        }
    }
    Ok(out)
}

fn is_indicator_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with('.') || name.eq_ignore_ascii_case("SOURCE.md") || name.eq_ignore_ascii_case("README.md") {
        return false;
    }
    match p.extension().and_then(|e| e.to_str()) {
        None => true,
        Some(e) => matches!(e.to_ascii_lowercase().as_str(), "json" | "txt" | "csv" | "list" | "ioc" | "stix"),
    }
}

/// Reads the MISP warninglists under `paths`.
pub fn load_warninglists(paths: &[PathBuf], report: &mut IntelReport) -> Result<Warninglists, IntelError> {
    let mut lists = Warninglists::new();
    for root in paths {
        let files = files_under(root, &|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")))?;
        if files.is_empty() {
            return Err(unreadable(root, "no warninglist (list.json) found"));
        }
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| unreadable(&f, e))?;
            let list = lists.add_json(&f.display().to_string(), &text).map_err(|e| unreadable(&f, e))?;
            report.warninglists += 1;
            report.warninglist_entries += list.entries;
        }
    }
    Ok(lists)
}

fn merge(total: &mut IntelReport, file: &Path, r: LoadReport) {
    total.files += 1;
    total.loaded += r.loaded;
    total.duplicates += r.duplicates;
    total.skipped += r.skipped_total;
    for (list, n) in r.suppressed {
        match total.suppressed.iter_mut().find(|(l, _)| *l == list) {
            Some((_, m)) => *m += n,
            None => total.suppressed.push((list, n)),
        }
    }
    for s in r.skipped.into_iter().take(20usize.saturating_sub(total.skipped_examples.len())) {
        total.skipped_examples.push(format!("{}: {}: {}", file.display(), s.location, s.reason));
    }
}

/// Loads every indicator file under `paths`, leaving out what `warn` lists. Indicators of a
/// plain list are TLP:CLEAR unless the caller says otherwise; a STIX bundle's own markings
/// apply.
pub fn load_indicators(
    paths: &[PathBuf],
    warn: Option<&Warninglists>,
    default_tlp: Tlp,
    report: &mut IntelReport,
) -> Result<Matcher, IntelError> {
    let mut set = IndicatorSet::new();
    for root in paths {
        let files = files_under(root, &is_indicator_file)?;
        if files.is_empty() {
            return Err(unreadable(root, "no indicator file found"));
        }
        for f in files {
            let bytes = std::fs::read(&f).map_err(|e| unreadable(&f, e))?;
            let text = String::from_utf8_lossy(&bytes);
            let name = f.display().to_string();
            let first = text.trim_start_matches('\u{feff}').trim_start().as_bytes().first().copied();
            let r = if first == Some(b'{') {
                load_stix_bundle(&mut set, &name, &text, default_tlp, warn).map_err(|e| unreadable(&f, e))?
            } else {
                let src = set.add_source(&name);
                load_plain(&mut set, &name, &text, IndicatorMeta::new(src, default_tlp), warn)
            };
            merge(report, &f, r);
        }
    }
    Ok(set.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_bundles_and_warninglists_from_folders() {
        let dir = tempfile::tempdir().unwrap();
        let intel = dir.path().join("intel");
        std::fs::create_dir_all(intel.join("feeds")).unwrap();
        std::fs::write(intel.join("c2.txt"), "# C2\n192.168.0.4\nevil.example\n8.8.8.8\nnot a value\n").unwrap();
        std::fs::write(
            intel.join("feeds/bundle.json"),
            r#"{"type":"bundle","id":"bundle--5d0092c5-5f74-4287-9642-33f4c354e56d","objects":[
              {"type":"indicator","spec_version":"2.1","id":"indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
               "created":"2026-01-01T00:00:00Z","modified":"2026-01-01T00:00:00Z","pattern_type":"stix",
               "pattern":"[domain-name:value = 'c2.example']","valid_from":"2026-01-01T00:00:00Z"}]}"#,
        )
        .unwrap();
        std::fs::write(intel.join("SOURCE.md"), "not indicators").unwrap();
        let wl = dir.path().join("wl/public-dns");
        std::fs::create_dir_all(&wl).unwrap();
        std::fs::write(
            wl.join("list.json"),
            r#"{"name":"Public DNS","type":"cidr","version":1,"description":"d","matching_attributes":["ip-dst"],"list":["8.8.8.8/32"]}"#,
        )
        .unwrap();
        let mut report = IntelReport::default();
        let w = load_warninglists(&[dir.path().join("wl")], &mut report).unwrap();
        let m = load_indicators(std::slice::from_ref(&intel), Some(&w), Tlp::Clear, &mut report).unwrap();
        assert_eq!(report.files, 2);
        assert_eq!(report.loaded, 3, "{report:?}");
        assert_eq!(report.skipped, 1);
        assert_eq!(report.suppressed.iter().map(|s| s.1).sum::<usize>(), 1);
        assert!(report.skipped_examples[0].contains("c2.txt"));
        assert!(m.match_value("192.168.0.4", 0).is_some());
        assert!(m.match_value("www.c2.example", jiff::Timestamp::now().as_microsecond()).is_some());
        assert!(m.match_value("8.8.8.8", 0).is_none());
        assert!(load_indicators(&[dir.path().join("nope")], None, Tlp::Clear, &mut report).is_err());
    }
}
