//! Loading all of SigmaHQ: at least 3,110 of the 3,141 rules compile, and the report of
//! what does not (and what loads with a caveat) matches `docs/conformance/sigmahq-load-report.txt`.
//! `NIGEHBAN_UPDATE_EXPECTED=1` rewrites the file.

use nigehban_hunt::rules;

use crate::corpus::{corpus, repo_root};

const REPORT: &str = "docs/conformance/sigmahq-load-report.txt";

#[test]
fn sigmahq_rules_load_with_a_committed_report() {
    let Some(corpus) = corpus() else { return };
    let loaded = rules::load(&[corpus.join("sigma/rules")]);
    let report = loaded.rules.report();
    assert!(loaded.unreadable.is_empty(), "unreadable rule files: {:?}", loaded.unreadable);
    let mut text = format!(
        "# SigmaHQ rules @8eaafff: {} files, {} rules loaded, {} failed, {} loaded with a warning\n",
        report.files,
        report.loaded,
        report.failed.len(),
        report.warnings.len()
    );
    for f in &report.failed {
        text.push_str(&format!("FAILED\t{}\t{}\n", f.path, f.error));
    }
    for (path, w) in &report.warnings {
        text.push_str(&format!("WARNING\t{path}\t{w}\n"));
    }
    let path = repo_root().join(REPORT);
    if std::env::var("NIGEHBAN_UPDATE_EXPECTED").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &text).expect("write load report");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(committed, text, "the load report differs from {REPORT} (NIGEHBAN_UPDATE_EXPECTED=1 rewrites it)");
    assert!(report.loaded >= 3110, "only {} SigmaHQ rules compile (target 3,110 of 3,141)", report.loaded);
}
