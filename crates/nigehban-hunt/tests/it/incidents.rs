//! The four motivating incidents on data the rules were not written from: the shared corpus.
//! Each test says what it proves; expected results that need an explanation (a beacon or an
//! indicator hit on benign traffic) are in committed files under `tests/it/expected/`, one
//! line per result with the reason, and the test fails when the results and the file differ.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use nigehban_hunt::detectors::{self, DetectorOptions};
use nigehban_hunt::inputs;
use nigehban_hunt::run::{HuntOptions, Progress};
use nigehban_hunt::store::Record;

use crate::corpus::{corpus, repo_root};

fn hunt(inputs: &[PathBuf], options: &DetectorOptions) -> Vec<Record> {
    let (detector, _) = detectors::build(options).expect("detectors");
    let (found, skipped) = inputs::discover(inputs, None);
    assert!(!found.is_empty(), "no input under {inputs:?}");
    let (store, _) =
        nigehban_hunt::hunt(found, skipped, &detector, &HuntOptions::default(), &Progress::default()).expect("hunt");
    let mut out = Vec::new();
    store
        .for_each_sorted(|raw| {
            out.push(serde_json::from_slice::<Record>(raw).expect("stored record"));
            Ok(())
        })
        .expect("read detections");
    out
}

fn field<'r>(r: &'r Record, name: &str) -> &'r str {
    r.fields.get(name).and_then(|v| v.as_str()).unwrap_or("")
}

/// Lines of a committed expectation file: tab-separated, the key columns then an explanation
/// (for the verdict file, the verdict is the explanation); `#` comments. Returns the key
/// columns of each line.
fn expected(name: &str, key_columns: usize) -> BTreeSet<Vec<String>> {
    expected_lines(name, key_columns, true)
}

fn expected_lines(name: &str, key_columns: usize, explained: bool) -> BTreeSet<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/expected").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(
            if explained {
                cols.len() > key_columns && !cols[key_columns].trim().is_empty()
            } else {
                cols.len() == key_columns
            },
            "{}:{}: {key_columns} key columns and an explanation expected",
            path.display(),
            i + 1
        );
        out.insert(cols[..key_columns].iter().map(|c| c.to_string()).collect());
    }
    out
}

fn beacons(records: &[Record]) -> Vec<&Record> {
    records.iter().filter(|r| r.rule_id == "nigehban-beaconing").collect()
}

fn describe(r: &Record) -> String {
    format!(
        "{} -> {} {} [{}] {} conns, median {} s, {}",
        field(r, "source.ip"),
        field(r, "destination.ip"),
        field(r, "destination.port"),
        field(r, "destination.names"),
        field(r, "connections"),
        field(r, "median_interval_s"),
        field(r, "score")
    )
}

#[test]
fn beaconing_finds_the_apt29_c2_server() {
    let Some(c) = corpus() else { return };
    let records = hunt(&[c.join("c2-otrf-apt29-zeek")], &DetectorOptions::default());
    let found = beacons(&records);
    for r in &found {
        eprintln!("beacon: {}", describe(r));
    }
    let pairs: BTreeSet<(String, String, String)> = found
        .iter()
        .map(|r| (field(r, "source.ip").into(), field(r, "destination.ip").into(), field(r, "destination.port").into()))
        .collect();
    // Day 1: 10.0.1.6 to 192.168.0.4:8443; day 2: 10.0.1.5 to 192.168.0.4:443. Nothing else:
    // the domain controller's Kerberos, LDAP and SMB traffic is not periodic enough.
    let want: BTreeSet<(String, String, String)> = [
        ("10.0.1.6".to_string(), "192.168.0.4".to_string(), "8443/tcp".to_string()),
        ("10.0.1.5".to_string(), "192.168.0.4".to_string(), "443/tcp".to_string()),
    ]
    .into_iter()
    .collect();
    assert_eq!(pairs, want);
}

#[test]
fn beaconing_on_benign_internet_traffic_is_rare_and_explained() {
    let Some(c) = corpus() else { return };
    let dir = c.join("benign-rita-internet-sensor-zeek");
    let days = std::fs::read_dir(&dir).unwrap().filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir())).count();
    let records = hunt(&[dir], &DetectorOptions::default());
    let found = beacons(&records);
    for r in &found {
        eprintln!("beacon: {}", describe(r));
    }
    assert!(found.len() < 5 * days, "{} beacon alerts over {days} day(s)", found.len());
    let got: BTreeSet<Vec<String>> = found
        .iter()
        .map(|r| {
            vec![field(r, "source.ip").into(), field(r, "destination.ip").into(), field(r, "destination.port").into()]
        })
        .collect();
    assert_eq!(got, expected("beaconing-benign-rita.tsv", 3), "update tests/it/expected/beaconing-benign-rita.tsv");
}

#[test]
fn indicator_hits_on_benign_traffic_are_explained() {
    let Some(c) = corpus() else { return };
    let options = DetectorOptions {
        no_builtin: true,
        indicators: vec![c.join("ioc-maltrail-c2-apt")],
        warninglists: vec![c.join("warninglist-misp")],
        ..DetectorOptions::default()
    };
    let records = hunt(&[c.join("benign-rita-internet-sensor-zeek")], &options);
    let mut hits: BTreeMap<Vec<String>, (usize, BTreeSet<String>)> = BTreeMap::new();
    for r in records.iter().filter(|r| r.engine == "indicator") {
        let source = field(r, "indicator_source");
        let list = Path::new(source).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let e = hits.entry(vec![field(r, "indicator").to_string(), list]).or_default();
        e.0 += 1;
        // Where it was seen: the field and the kind of log.
        if let Some((name, _)) = r.fields.iter().next() {
            let log = Path::new(&r.source).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            e.1.insert(format!("{name} in {}", log.split('.').next().unwrap_or("")));
        }
    }
    for (k, (n, seen)) in &hits {
        eprintln!("indicator hit: {}\t{}\tx{n}\t{}", k[0], k[1], seen.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    let got: BTreeSet<Vec<String>> = hits.into_keys().collect();
    assert_eq!(got, expected("indicators-benign-rita.tsv", 2), "update tests/it/expected/indicators-benign-rita.tsv");
}

#[test]
fn spoofed_messages_are_flagged_each_with_its_verdict() {
    let Some(c) = corpus() else { return };
    let dir = c.join("email-spoofing-phishing-pot-sample");
    let records = hunt(std::slice::from_ref(&dir), &DetectorOptions::default());
    let mut verdicts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for folder in ["auth_fail", "self_spoof_internal_sender"] {
        for e in std::fs::read_dir(dir.join(folder)).unwrap() {
            let p = e.unwrap().path();
            verdicts.entry(format!("{folder}/{}", p.file_name().unwrap().to_string_lossy())).or_default();
        }
    }
    for r in &records {
        let rel = Path::new(&r.source).strip_prefix(&dir).map(|p| p.display().to_string()).unwrap_or_default();
        if let Some(v) = verdicts.get_mut(&rel) {
            v.insert(r.rule_title.clone());
        }
    }
    let mut lines = Vec::new();
    let mut missed = Vec::new();
    for (msg, v) in &verdicts {
        let flagged = if msg.starts_with("auth_fail/") {
            v.iter().any(|t| t.starts_with("Message fails sender authentication"))
        } else {
            v.iter().any(|t| t.starts_with("Message impersonates the recipient"))
        };
        let verdict = if flagged {
            v.iter().cloned().collect::<Vec<_>>().join("; ")
        } else {
            // A message From: the mailbox's own address that passed DMARC was sent by that
            // mailbox (the honeypot's owner forwarding what it caught): not a spoof.
            let (dmarc, subject) = dmarc_and_subject(&dir.join(msg));
            if msg.starts_with("self_spoof_internal_sender/") && dmarc == "pass" {
                format!("not a spoof: DMARC pass, sent by the mailbox itself (subject {subject:?})")
            } else {
                missed.push(msg.clone());
                "NOT FLAGGED".into()
            }
        };
        lines.push(format!("{msg}\t{verdict}"));
    }
    eprintln!("{}", lines.join("\n"));
    assert_eq!(verdicts.len(), 80);
    assert!(missed.is_empty(), "not flagged as their folder says: {missed:?}");
    let committed = expected_lines("phishing-pot-verdicts.tsv", 2, false);
    let got: BTreeSet<Vec<String>> = lines.iter().map(|l| l.split('\t').map(str::to_owned).collect()).collect();
    assert_eq!(got, committed, "update tests/it/expected/phishing-pot-verdicts.tsv");
}

/// The DMARC result and the subject of a message, as the reader sees them.
fn dmarc_and_subject(path: &Path) -> (String, String) {
    let bytes = std::fs::read(path).unwrap();
    let source = nigehban_event::Source::file(path.display().to_string());
    for item in nigehban_event::read::read_text(nigehban_event::Format::Eml, &bytes[..], source) {
        if let nigehban_event::Item::Event(e) = item {
            let get = |n: &str| e.get(n).and_then(|v| v.as_text()).map(|t| t.into_owned()).unwrap_or_default();
            let subject: String = get("email.subject").chars().take(12).collect();
            return (get("email.auth.dmarc"), subject);
        }
    }
    (String::new(), String::new())
}

/// A platform's deletion event from the corpus, and where its time is.
struct Template {
    platform: &'static str,
    file: &'static str,
    test_name: &'static str,
    time_field: &'static [&'static str],
}

const TEMPLATES: &[Template] = &[
    Template {
        platform: "aws",
        file: "aws_modify_cloud_compute_infrastructure.tests.jsonl",
        test_name: "Terminate Instance from AssumedRole",
        time_field: &["eventTime"],
    },
    Template {
        platform: "azure",
        file: "azure_vm_deleted.tests.jsonl",
        test_name: "Virtual Machine Deleted",
        time_field: &["time"],
    },
    Template {
        platform: "gcp",
        file: "gcp_unused_regions.tests.jsonl",
        test_name: "GCE Instance Terminated",
        time_field: &["timestamp"],
    },
];

#[test]
fn a_mass_vm_deletion_raises_one_alert_per_platform() {
    let Some(c) = corpus() else { return };
    let dir = c.join("vm-deletion-cloud-audit-events");
    let tmp = tempfile::tempdir().unwrap();
    let mut background = String::new();
    let mut templates: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if !p.to_string_lossy().ends_with(".tests.jsonl") {
            continue;
        }
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let name = case["test_name"].as_str().unwrap_or("");
            let file = p.file_name().unwrap().to_string_lossy();
            match TEMPLATES.iter().find(|t| t.file == file && t.test_name == name) {
                Some(t) => {
                    templates.insert(t.platform, case["event"].clone());
                }
                // Everything else is normal activity, once.
                None => {
                    background.push_str(&case["event"].to_string());
                    background.push('\n');
                }
            }
        }
    }
    assert_eq!(templates.len(), 3, "templates found: {:?}", templates.keys());
    std::fs::write(tmp.path().join("background.json"), background).unwrap();
    for t in TEMPLATES {
        let template = &templates[t.platform];
        let start = jiff::Timestamp::from_second(1_767_261_600).unwrap(); // 2026-01-01T10:00:00Z
        let mut out = String::new();
        // 21 deletions by the template's principal, one every 20 s, among the platform's
        // other activity.
        for i in 0..21 {
            let mut e = template.clone();
            let t_i = start + jiff::SignedDuration::from_secs(20 * i);
            let mut slot = &mut e;
            for (k, name) in t.time_field.iter().enumerate() {
                if k + 1 == t.time_field.len() {
                    slot[*name] = serde_json::Value::String(t_i.to_string());
                } else {
                    slot = &mut slot[*name];
                }
            }
            // The Azure test event names no caller; a replay by one principal gives it one.
            if t.platform == "azure" && e.get("caller").is_none() {
                e["caller"] = serde_json::Value::String("ops-admin@ministry.example".into());
            }
            out.push_str(&e.to_string());
            out.push('\n');
        }
        std::fs::write(tmp.path().join(format!("{}-deletions.json", t.platform)), out).unwrap();
    }
    let records = hunt(&[tmp.path().to_path_buf(), dir.join("otrf-aws")], &DetectorOptions::default());
    let mass: Vec<&Record> =
        records.iter().filter(|r| r.rule_title.starts_with("Mass deletion of virtual machines")).collect();
    for r in &mass {
        eprintln!("mass deletion: {:?}", r.fields);
    }
    let platforms: Vec<&str> = mass.iter().map(|r| field(r, "cloud.provider")).collect();
    assert_eq!(platforms.iter().copied().collect::<BTreeSet<_>>(), BTreeSet::from(["aws", "azure", "gcp"]));
    assert_eq!(mass.len(), 3, "exactly one alert per platform");
    for r in &mass {
        assert_eq!(field(r, "count"), "10", "{:?}", r.fields);
        assert!(!field(r, "user.name").is_empty());
    }
}

#[test]
fn repo_has_the_expectation_files() {
    for f in ["beaconing-benign-rita.tsv", "indicators-benign-rita.tsv", "phishing-pot-verdicts.tsv"] {
        assert!(repo_root().join("crates/nigehban-hunt/tests/it/expected").join(f).is_file(), "{f}");
    }
}
