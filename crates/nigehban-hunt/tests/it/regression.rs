//! SigmaHQ's regression cases: each names a rule, an EVTX file and the minimum number of
//! matches. Every case whose file is in the corpus must pass; the test names each failure.

use std::path::PathBuf;

use crate::corpus::{corpus, hunt_counts};

#[derive(serde::Deserialize)]
struct Info {
    rule_metadata: Vec<RuleMeta>,
    #[serde(default)]
    regression_tests_info: Option<Vec<TestInfo>>,
}

#[derive(serde::Deserialize)]
struct RuleMeta {
    id: String,
}

#[derive(serde::Deserialize)]
struct TestInfo {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    match_count: Option<usize>,
}

#[test]
fn sigmahq_regression_cases_pass() {
    let Some(corpus) = corpus() else { return };
    let sigma = corpus.join("sigma");
    let rule_dirs: Vec<PathBuf> =
        ["rules", "rules-emerging-threats", "rules-threat-hunting"].iter().map(|d| sigma.join(d)).collect();
    let counts = hunt_counts(&[sigma.join("regression_data")], &rule_dirs, &sigma);

    let mut cases = 0;
    let mut passed = 0;
    let mut absent = Vec::new();
    let mut failures = Vec::new();
    for entry in walkdir::WalkDir::new(sigma.join("regression_data")).sort_by_file_name() {
        let entry = entry.expect("walk regression data");
        if entry.file_name() != "info.yml" {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("read info.yml");
        let info: Info = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
        let rule_id = &info.rule_metadata[0].id;
        for test in info.regression_tests_info.unwrap_or_default() {
            if test.kind != "evtx" {
                continue;
            }
            cases += 1;
            if !sigma.join(&test.path).exists() {
                absent.push(test.path.clone());
                continue;
            }
            let want = test.match_count.unwrap_or(1);
            let got = counts.get(&(rule_id.clone(), test.path.clone())).copied().unwrap_or(0);
            if got >= want {
                passed += 1;
            } else {
                failures.push(format!("{rule_id} on {}: expected at least {want} matches, got {got}", test.path));
            }
        }
    }
    eprintln!("regression cases: {cases}, passed {passed}, evtx absent from the corpus {}", absent.len());
    for a in &absent {
        eprintln!("  absent (removed from the corpus on purpose, see its SOURCE.md): {a}");
    }
    assert!(failures.is_empty(), "{} regression case(s) failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(cases, 202, "the corpus should hold 202 EVTX regression cases");
    assert!(absent.len() <= 1, "more regression files missing than the corpus documents: {absent:?}");
}
