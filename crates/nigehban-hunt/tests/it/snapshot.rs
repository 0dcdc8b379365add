//! Per-rule detection counts over the shared EVTX corpus with every SigmaHQ rule: a change
//! in any count shows up as a snapshot difference (review with `cargo insta review`).

use crate::corpus::{corpus, hunt_counts};

#[test]
fn per_rule_counts_on_the_shared_evtx_corpus() {
    let Some(corpus) = corpus() else { return };
    let evtx = corpus.join("evtx");
    let counts = hunt_counts(std::slice::from_ref(&evtx), &[corpus.join("sigma/rules")], &evtx);
    let mut per_rule: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for ((rule, _file), n) in &counts {
        let e = per_rule.entry(rule.as_str()).or_default();
        e.0 += n;
        e.1 += 1;
    }
    let mut text = String::from("# rule_id\tdetections\tfiles\n");
    for (rule, (n, files)) in &per_rule {
        text.push_str(&format!("{rule}\t{n}\t{files}\n"));
    }
    insta::assert_snapshot!("sigmahq_rule_counts_on_shared_evtx", text);
}
