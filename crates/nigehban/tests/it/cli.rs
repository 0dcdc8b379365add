use std::path::Path;
use std::process::{Command, Output};

fn nigehban(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nigehban")).args(args).current_dir(dir).output().expect("run nigehban")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes the demo files into a fresh folder and returns it.
fn demo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = nigehban(&["demo", "hunt", "--dir", "d"], dir.path());
    assert!(out.status.success(), "demo failed: {}", text(&out.stderr));
    dir
}

#[test]
fn demo_finds_the_attack_chain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = nigehban(&["demo", "hunt"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for title in [
        "Office Application Starts a Shell or Script Host",
        "Hidden PowerShell With an Encoded Command",
        "Domain Admins Group Listed With net.exe",
        "LSASS Memory Dumped With comsvcs.dll MiniDump",
        "Password Spraying From One Address",
        "Account Added to the Local Administrators Group",
        "Security Event Log Cleared",
        "SSH Brute Force Against One Host",
        // The built-in pack's own rule sees the spraying too.
        "Password spraying from one source",
    ] {
        assert!(stdout.contains(title), "missing {title} in:\n{stdout}");
    }
    // The base rules that only feed correlation rules are not reported alone.
    assert!(!stdout.contains("Failed Network Logon"), "{stdout}");
    assert!(text(&out.stderr).contains("detections: 9 (critical 1, high 6, medium 2"), "{}", text(&out.stderr));
}

#[test]
fn every_output_format_holds_the_same_detections() {
    let dir = demo();
    let p = dir.path();
    let json = nigehban(&["hunt", "d/logs", "-r", "d/rules", "-f", "json", "-q"], p);
    assert!(json.status.success());
    let all: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json output");
    let all = all.as_array().expect("array");
    assert_eq!(all.len(), 9);
    let times: Vec<&str> = all.iter().map(|d| d["timestamp"].as_str().unwrap_or("")).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "the timeline is in time order");
    assert!(all.iter().any(|d| d["tags"].as_array().is_some_and(|t| t.iter().any(|x| x == "attack.t1003.001"))));

    let jsonl = nigehban(&["hunt", "d/logs", "-r", "d/rules", "-f", "jsonl", "-q"], p);
    let lines: Vec<serde_json::Value> =
        text(&jsonl.stdout).lines().map(|l| serde_json::from_str(l).expect("jsonl line")).collect();
    assert_eq!(&lines[..], &all[..]);

    let csv = nigehban(&["hunt", "d/logs", "-r", "d/rules", "-f", "csv", "-o", "out.csv", "-q"], p);
    assert!(csv.status.success());
    let csv = std::fs::read_to_string(p.join("out.csv")).expect("csv file");
    assert_eq!(csv.lines().count(), 10, "header and 9 rows:\n{csv}");
    assert!(csv.starts_with("timestamp,level,rule_title,rule_id,tags,host,source,position,details"));
}

#[test]
fn min_level_and_time_window_filter() {
    let dir = demo();
    let p = dir.path();
    let out = nigehban(&["hunt", "d/logs", "-r", "d/rules", "-f", "jsonl", "-q", "--min-level", "critical"], p);
    assert_eq!(text(&out.stdout).lines().count(), 1);
    let out = nigehban(
        &[
            "hunt",
            "d/logs",
            "-r",
            "d/rules",
            "-f",
            "jsonl",
            "-q",
            "--from",
            "2026-11-27T09:05:00Z",
            "--to",
            "2026-11-27T09:20:00Z",
        ],
        p,
    );
    let titles: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("line")["rule_title"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    assert_eq!(titles, ["Account Added to the Local Administrators Group", "Security Event Log Cleared"]);
    let bad = nigehban(&["hunt", "d/logs", "-r", "d/rules", "--from", "yesterday"], p);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("is not a time"), "{}", text(&bad.stderr));
}

#[test]
fn bad_input_is_reported_and_the_rest_is_read() {
    let dir = demo();
    let p = dir.path();
    std::fs::create_dir_all(p.join("bad")).expect("mkdir");
    // An EVTX file whose header is fine but whose only chunk is garbage.
    let mut evtx = b"ElfFile\0".to_vec();
    evtx.resize(4096, 0);
    evtx.extend_from_slice(b"ElfChnk\0");
    evtx.extend((0..65536 - 8).map(|i| (i * 7 % 251) as u8));
    std::fs::write(p.join("bad/broken.evtx"), evtx).expect("write evtx");
    // NDJSON with one malformed line between two good ones.
    let good = std::fs::read_to_string(p.join("d/logs/dc01-security.ndjson")).expect("read");
    let mut lines = good.lines();
    let (first, second) = (lines.next().expect("line"), lines.next().expect("line"));
    std::fs::write(p.join("bad/mixed.ndjson"), format!("{first}\n{{\"Event\": oops\n{second}\n")).expect("write");
    // A rule that cannot compile next to one that can.
    std::fs::create_dir_all(p.join("badrules")).expect("mkdir");
    std::fs::write(
        p.join("badrules/broken.yml"),
        "title: Broken\nlogsource: {product: windows}\ndetection:\n  sel: {A|nosuchmodifier: x}\n  condition: sel\n",
    )
    .expect("write");
    std::fs::copy(p.join("d/rules/sec_member_added_to_administrators.yml"), p.join("badrules/ok.yml")).expect("copy");

    let out = nigehban(&["hunt", "bad", "-r", "badrules", "-f", "jsonl"], p);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("broken.evtx: offset 4096"), "{stderr}");
    assert!(stderr.contains("mixed.ndjson: line 2: malformed JSON"), "{stderr}");
    assert!(stderr.contains("events by format: evtx 0, json 2"), "{stderr}");
    assert!(stderr.contains("1 rule(s) could not be loaded"), "{stderr}");

    let check = nigehban(&["rules", "check", "badrules"], p);
    assert_eq!(check.status.code(), Some(1));
    let report = text(&check.stdout);
    assert!(report.contains("FAILED badrules/broken.yml (Broken): detection `sel`: `A|nosuchmodifier`: unknown modifier `nosuchmodifier`"), "{report}");
    assert!(report.contains("2 files: 1 rules loaded"), "{report}");
}

#[test]
fn scale_out_roles_are_checked_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    for (args, says) in [
        (vec!["serve", "--data", data, "--role", "detect"], "need the event bus"),
        (vec!["serve", "--data", data, "--role", "ingest,api"], "need the event bus"),
        (vec!["serve", "--data", data, "--role", "watch"], "unknown role \"watch\""),
        (vec!["serve", "--data", data, "--bus", "nats://127.0.0.1:4222"], "needs PostgreSQL"),
    ] {
        let out = nigehban(&args, dir.path());
        assert!(!out.status.success(), "{args:?} started");
        assert!(text(&out.stderr).contains(says), "{args:?}: {}", text(&out.stderr));
    }
    assert!(!Path::new(data).exists(), "a refused start created the data directory");
}
