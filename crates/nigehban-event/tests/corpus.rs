//! Real and vendor-schema data from the shared corpus (`NIGEHBAN_CORPUS`, by default
//! `../shared/corpus` beside the workspace): without it the tests print a notice and pass,
//! unless `CI=true`, where a missing corpus fails.

use std::path::{Path, PathBuf};

use nigehban_event::read::json::{JsonReader, event_from_json};
use nigehban_event::read::{detect_format, read_text};
use nigehban_event::{Event, Format, Item, Position, Source, Value};

fn corpus() -> Option<PathBuf> {
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

fn text(e: &Event, name: &str) -> Option<String> {
    e.get_exact(name).and_then(|v| v.as_text()).map(|t| t.into_owned())
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == ext) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn texts(e: &Event, name: &str) -> Vec<String> {
    match e.get_exact(name) {
        Some(Value::List(items)) => items.iter().filter_map(|v| v.as_text()).map(|t| t.into_owned()).collect(),
        Some(v) => v.as_text().map(|t| vec![t.into_owned()]).unwrap_or_default(),
        None => Vec::new(),
    }
}

#[test]
fn every_phishing_pot_message_parses() {
    let Some(corpus) = corpus() else { return };
    let dir = corpus.join("email-spoofing-phishing-pot-sample");
    let paths = files(&dir, "eml");
    assert!(paths.len() >= 80, "{} messages", paths.len());
    for path in &paths {
        let name = path.strip_prefix(&dir).unwrap_or(path).display().to_string();
        let data = std::fs::read(path).expect("read message");
        assert_eq!(detect_format(&data[..data.len().min(4096)]), Some(Format::Eml), "{name}");
        let mut events = Vec::new();
        for item in read_text(Format::Eml, &data[..], Source::file(name.clone())) {
            match item {
                Item::Event(e) => events.push(e),
                Item::Diagnostic(d) => panic!("{name}: {d}"),
            }
        }
        assert_eq!(events.len(), 1, "{name}");
        let e = &events[0];
        assert_eq!(e.position, Position::Line(1));
        assert!(e.timestamp.is_some(), "{name}: no date");
        assert!(!texts(e, "email.from.address").is_empty(), "{name}: no From address");
        assert!(text(e, "email.sender.address").is_some(), "{name}: no Return-Path");
        assert!(text(e, "email.message_id").is_some() || e.get("Message-ID").is_none(), "{name}");
        let origin: std::net::IpAddr = text(e, "email.origin.ip")
            .unwrap_or_else(|| panic!("{name}: no origin"))
            .parse()
            .expect("origin is an address");
        assert!(!origin.is_loopback(), "{name}");
        assert!(matches!(e.get_exact("email.received.count"), Some(Value::Int(n)) if *n >= 1), "{name}");
        let spf = text(e, "email.auth.spf").unwrap_or_default();
        let dkim = text(e, "email.auth.dkim").unwrap_or_default();
        let dmarc = text(e, "email.auth.dmarc").unwrap_or_default();
        if name.starts_with("auth_fail") {
            // Chosen because an SPF, DKIM or DMARC check failed.
            assert!(
                matches!(spf.as_str(), "fail" | "softfail") || dkim == "fail" || dmarc == "fail",
                "{name}: spf={spf} dkim={dkim} dmarc={dmarc}"
            );
        } else {
            // Chosen because the From header names the recipient's own address.
            let from = text(e, "From").unwrap_or_default().to_lowercase();
            assert!(from.contains("phishing@pot"), "{name}: From: {from}");
        }
    }
}

/// The Panther rule tests: `{test_name, expected_alert, …, event}` per line.
fn rule_tests(path: &Path) -> Vec<(String, serde_json::Value)> {
    let data = std::fs::read_to_string(path).expect("read rule tests");
    data.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("rule test line");
            (v["test_name"].as_str().unwrap_or_default().to_owned(), v["event"].clone())
        })
        .collect()
}

#[test]
fn vendor_schema_deletions_are_normalized() {
    let Some(corpus) = corpus() else { return };
    let dir = corpus.join("vm-deletion-cloud-audit-events");
    let source = Source::file("rule-tests");
    let mut deletions = 0;
    let mut seen = 0;
    for path in files(&dir, "jsonl") {
        for (test, record) in rule_tests(&path) {
            let e = event_from_json(&record, record.to_string(), &source, Position::Line(1));
            let dataset = text(&e, "event.dataset").unwrap_or_else(|| panic!("{test}: not recognised"));
            assert!(["aws.cloudtrail", "azure.activitylogs", "gcp.audit"].contains(&dataset.as_str()), "{test}");
            assert!(e.timestamp.is_some(), "{test}: no time");
            seen += 1;
            let action = text(&e, "event.action").unwrap_or_default().to_ascii_lowercase();
            let deletion = action == "terminateinstances"
                || action == "deletedbinstance"
                || action == "deletedbcluster"
                || action == "microsoft.compute/virtualmachines/delete"
                || action.ends_with("compute.instances.delete");
            if !deletion {
                assert_ne!(text(&e, "event.type").as_deref(), Some("deletion"), "{test}");
                continue;
            }
            deletions += 1;
            let category = if action.contains("db") { "database" } else { "vm" };
            assert_eq!(text(&e, "event.category").as_deref(), Some(category), "{test}");
            assert_eq!(text(&e, "event.type").as_deref(), Some("deletion"), "{test}");
            assert!(text(&e, "target.name").is_some() || e.get_exact("target.name").is_some(), "{test}");
            let provider = &dataset[..dataset.find('.').unwrap_or(dataset.len())];
            assert_eq!(text(&e, "cloud.provider").as_deref(), Some(provider), "{test}");
            assert!(text(&e, "cloud.account.id").is_some(), "{test}");
            // Panther's Azure test records carry no caller, claims or authorization at all.
            if provider != "azure" {
                assert!(text(&e, "user.name").is_some(), "{test}: no user");
            }
        }
    }
    assert!(seen >= 20, "{seen} records");
    assert!(deletions >= 8, "{deletions} deletions");
}

#[test]
fn real_cloudtrail_lines_read_cleanly() {
    let Some(corpus) = corpus() else { return };
    let dir = corpus.join("vm-deletion-cloud-audit-events/otrf-aws");
    let paths = files(&dir, "json");
    assert!(!paths.is_empty());
    for path in paths {
        let data = std::fs::read(&path).expect("read CloudTrail");
        let mut events = 0;
        for item in JsonReader::new(&data[..], Source::file(path.display().to_string())) {
            match item {
                Item::Event(e) => {
                    events += 1;
                    assert_eq!(text(&e, "event.dataset").as_deref(), Some("aws.cloudtrail"), "{}", e.position);
                    assert!(e.timestamp.is_some(), "{}", e.position);
                    assert!(text(&e, "user.name").is_some(), "{}", e.position);
                    assert!(text(&e, "cloud.account.id").is_some(), "{}", e.position);
                }
                Item::Diagnostic(d) => panic!("{d}"),
            }
        }
        assert!(events > 100, "{}: {events} events", path.display());
    }
}

/// Live ingest stores a JSON record without its fields (`codec::encode_parsed`) and reads them
/// again from the record when the event is decoded: for every JSON record of the corpus (the
/// EVTX records as `nigehban ingest` and Winlogbeat-style shippers send them, the cloud audit
/// events, the Zeek logs), the decoded event equals the one parsed at ingest.
#[test]
fn stored_json_records_decode_to_the_events_parsed_at_ingest() {
    use nigehban_event::codec;
    let Some(corpus) = corpus() else { return };
    let mut lines = Vec::new();
    for f in files(&corpus.join("evtx"), "evtx") {
        let file = std::fs::File::open(&f).unwrap();
        for item in nigehban_event::read::evtx::read_all(std::io::BufReader::new(file), Source::file("x")) {
            if let Item::Event(e) = item {
                lines.push(e.raw.to_string());
            }
        }
    }
    let evtx = lines.len();
    for dir in ["vm-deletion-cloud-audit-events", "c2-otrf-apt29-zeek"] {
        for ext in ["jsonl", "json", "log"] {
            for f in files(&corpus.join(dir), ext) {
                let text = std::fs::read_to_string(&f).unwrap();
                lines.extend(text.lines().filter(|l| l.trim_start().starts_with('{')).map(str::to_owned));
            }
        }
    }
    assert!(evtx > 1000 && lines.len() > evtx, "{evtx} EVTX records, {} lines", lines.len());
    let source = Source::file("s");
    let (mut checked, mut smaller) = (0, 0);
    for chunk in lines.chunks(500) {
        let body = chunk.join("\n");
        for item in read_text(Format::Json, std::io::Cursor::new(body.into_bytes()), source.clone()) {
            let Item::Event(e) = item else { continue };
            let (mut parsed, mut full) = (Vec::new(), Vec::new());
            codec::encode_parsed(&e, &mut parsed);
            codec::encode(&e, &mut full);
            smaller += usize::from(parsed.len() < full.len());
            let back = codec::decode(&parsed, source.clone()).unwrap();
            assert_eq!(back.fields(), e.fields(), "{}", e.raw);
            assert_eq!(
                (back.timestamp, back.product, back.format, back.position),
                (e.timestamp, e.product, e.format, e.position)
            );
            assert_eq!(back.raw, e.raw);
            checked += 1;
        }
    }
    assert_eq!(checked, lines.len());
    assert_eq!(smaller, checked, "every JSON record is stored without its fields");
}

/// The EVTX rendering is read in place (no `serde_json::Value`) by the EVTX reader, the JSON
/// reader and the stored encoding's decoder: every record of the corpus gives the same event as
/// reading its JSON as a value does.
#[test]
fn evtx_records_read_in_place_are_those_read_as_json_values() {
    let Some(corpus) = corpus() else { return };
    let source = Source::file("x");
    let mut records = Vec::new();
    for f in files(&corpus.join("evtx"), "evtx") {
        let file = std::fs::File::open(&f).unwrap();
        for item in nigehban_event::read::evtx::read_all(std::io::BufReader::new(file), source.clone()) {
            if let Item::Event(e) = item {
                records.push(e);
            }
        }
    }
    assert!(records.len() > 1000, "{} EVTX records", records.len());
    let body: String = records.iter().map(|e| format!("{}\n", e.raw)).collect();
    let read: Vec<Event> = read_text(Format::Json, std::io::Cursor::new(body.into_bytes()), source.clone())
        .filter_map(|i| if let Item::Event(e) = i { Some(*e) } else { None })
        .collect();
    assert_eq!(read.len(), records.len());
    for (line, (from_evtx, from_json)) in records.iter().zip(&read).enumerate() {
        let value: serde_json::Value = serde_json::from_str(&from_evtx.raw).unwrap();
        let slow = event_from_json(&value, from_evtx.raw.to_string(), &source, Position::Line(line as u64 + 1));
        assert_eq!(from_evtx.fields(), slow.fields(), "{}", from_evtx.raw);
        assert_eq!((from_evtx.timestamp, from_evtx.product), (slow.timestamp, slow.product));
        assert_eq!(from_json.fields(), slow.fields(), "{}", from_evtx.raw);
        assert_eq!(
            (from_json.timestamp, from_json.product, from_json.format, &from_json.raw),
            (slow.timestamp, slow.product, slow.format, &slow.raw)
        );
    }
}
