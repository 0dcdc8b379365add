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

/// Every SigmaHQ rule file reads to the same JSON values on each YAML fast path as through
/// serde-saphyr, and the fast paths take nearly all of them, the line reader most (else
/// loading is slow again).
#[test]
fn sigmahq_rule_files_read_the_same_on_the_yaml_fast_path() {
    let Some(corpus) = corpus() else { return };
    let (mut files, mut fast, mut by_lines, mut by_events) = (0, 0, 0, 0);
    for entry in walkdir::WalkDir::new(corpus.join("sigma")).sort_by_file_name() {
        let entry = entry.expect("walk the corpus");
        if !entry.file_type().is_file() || !entry.path().extension().is_some_and(|e| e == "yml" || e == "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("read a rule file");
        files += 1;
        let general = nigehban_sigma::yaml::parse_general(&text);
        let block = nigehban_sigma::yaml::block_documents(&text);
        let events = nigehban_sigma::yaml::event_documents(&text);
        for (reader, docs, taken) in [("line", &block, &mut by_lines), ("event", &events, &mut by_events)] {
            if let Some(docs) = docs {
                *taken += 1;
                let docs: Vec<_> = docs.iter().filter(|d| !d.is_null()).cloned().collect();
                assert_eq!(Ok(docs), general, "{} ({reader} reader)", entry.path().display());
            }
        }
        if block.is_some() || events.is_some() {
            fast += 1;
        }
    }
    eprintln!(
        "{fast} of {files} YAML files on a fast path ({by_lines} by the line reader, {by_events} by the event reader)"
    );
    assert!(files > 3000, "only {files} YAML files under the corpus's sigma folder");
    assert!(fast * 100 >= files * 95, "only {fast} of {files} YAML files on a fast path");
    assert!(by_lines * 100 >= files * 90, "only {by_lines} of {files} YAML files read by the line reader");
}
