//! Agreement with pySigma (through Zircolite) on the shared EVTX corpus with SigmaHQ's
//! Windows rules: at least 99% of the oracle's (rule, file, count) rows reproduced exactly,
//! and every difference, either way, listed with its reason in
//! `docs/conformance/pysigma-oracle-differences.tsv`. A new or vanished difference fails the
//! test; `NIGEHBAN_UPDATE_EXPECTED=1` rewrites the file, marking new rows `UNEXPLAINED`.

use std::collections::{BTreeMap, BTreeSet};

use crate::corpus::{corpus, hunt_counts, repo_root};

const DIFFERENCES: &str = "docs/conformance/pysigma-oracle-differences.tsv";

#[derive(serde::Deserialize)]
struct OracleRow {
    sigma_rule_id: String,
    file: String,
    count: usize,
}

#[test]
fn agrees_with_the_pysigma_oracle() {
    let Some(corpus) = corpus() else { return };
    let evtx = corpus.join("evtx");
    let ours = hunt_counts(std::slice::from_ref(&evtx), &[corpus.join("sigma/rules/windows")], &evtx);

    let mut oracle: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut reader =
        csv::Reader::from_path(corpus.join("sigma-oracle/zircolite-pysigma_sigmahq-windows_shared-evtx.csv"))
            .expect("open oracle csv");
    for row in reader.deserialize::<OracleRow>() {
        let row = row.expect("oracle row");
        oracle.insert((row.sigma_rule_id, row.file), row.count);
    }

    let exact = oracle.iter().filter(|(k, v)| ours.get(*k) == Some(*v)).count();
    let share = exact as f64 / oracle.len() as f64;
    eprintln!("oracle rows: {}, reproduced exactly: {exact} ({:.2}%)", oracle.len(), share * 100.0);

    // Every difference: (rule, file, oracle count, our count).
    let keys: BTreeSet<&(String, String)> = oracle.keys().chain(ours.keys()).collect();
    let differences: BTreeSet<(String, String, usize, usize)> = keys
        .into_iter()
        .filter_map(|k| {
            let (o, u) = (oracle.get(k).copied().unwrap_or(0), ours.get(k).copied().unwrap_or(0));
            (o != u).then(|| (k.0.clone(), k.1.clone(), o, u))
        })
        .collect();

    let path = repo_root().join(DIFFERENCES);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let mut explained: BTreeMap<(String, String, usize, usize), String> = BTreeMap::new();
    for line in committed.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(cols.len() >= 5, "{DIFFERENCES}: malformed line: {line}");
        let key = (cols[0].to_owned(), cols[1].to_owned(), cols[2].parse().unwrap_or(0), cols[3].parse().unwrap_or(0));
        explained.insert(key, cols[4].to_owned());
    }

    if std::env::var("NIGEHBAN_UPDATE_EXPECTED").is_ok_and(|v| v == "1") {
        let mut out = String::from("rule_id\tfile\toracle_count\tour_count\treason\n");
        for d in &differences {
            let reason = explained.get(d).cloned().unwrap_or_else(|| "UNEXPLAINED".into());
            out.push_str(&format!("{}\t{}\t{}\t{}\t{reason}\n", d.0, d.1, d.2, d.3));
        }
        std::fs::write(&path, out).expect("write differences");
        eprintln!("wrote {}", path.display());
    }

    let new: Vec<_> = differences.iter().filter(|d| !explained.contains_key(*d)).collect();
    let gone: Vec<_> = explained.keys().filter(|d| !differences.contains(*d)).collect();
    let unexplained: Vec<_> = explained.iter().filter(|(_, r)| r.trim().is_empty() || *r == "UNEXPLAINED").collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "differences from the oracle changed.\nnew (not in {DIFFERENCES}):\n{}\nno longer differing:\n{}",
        new.iter().map(|d| format!("  {d:?}")).collect::<Vec<_>>().join("\n"),
        gone.iter().map(|d| format!("  {d:?}")).collect::<Vec<_>>().join("\n"),
    );
    assert!(unexplained.is_empty(), "{} difference(s) have no reason in {DIFFERENCES}", unexplained.len());
    assert!(share >= 0.99, "only {:.2}% of the oracle's rows reproduced exactly (target 99%)", share * 100.0);
}
