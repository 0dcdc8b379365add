use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nigehban_detect::SigmaDetector;
use nigehban_hunt::inputs;
use nigehban_hunt::rules;
use nigehban_hunt::run::{HuntOptions, Progress};
use nigehban_hunt::store::Record;

/// The shared corpus, or `None` (with a notice) when it is absent outside CI.
pub fn corpus() -> Option<PathBuf> {
    let path = match std::env::var_os("NIGEHBAN_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
    };
    if path.join("README.md").exists() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the shared corpus is missing at {} (set NIGEHBAN_CORPUS)", path.display());
    }
    eprintln!("notice: shared corpus not found at {}; test skipped", path.display());
    None
}

/// The repository root (for committed expectation files).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Hunts `inputs` with the rules under `rule_dirs`; returns detection counts per
/// (rule id, file path relative to `relative_to`).
pub fn hunt_counts(inputs: &[PathBuf], rule_dirs: &[PathBuf], relative_to: &Path) -> BTreeMap<(String, String), usize> {
    let loaded = rules::load(rule_dirs);
    let detector = SigmaDetector::new(Arc::new(loaded.rules));
    let (found, skipped) = inputs::discover(inputs, None);
    let (store, _) =
        nigehban_hunt::hunt(found, skipped, &detector, &HuntOptions::default(), &Progress::default()).expect("hunt");
    let mut counts = BTreeMap::new();
    store
        .for_each_sorted(|raw| {
            let r: Record = serde_json::from_slice(raw).expect("stored record");
            let rel = Path::new(&r.source)
                .strip_prefix(relative_to)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| r.source.clone());
            *counts.entry((r.rule_id, rel)).or_insert(0) += 1;
            Ok(())
        })
        .expect("read detections");
    counts
}
