//! The cloud audit-log and e-mail fixtures of `testdata/`, read the way `hunt` reads files:
//! format recognised from the first bytes, then `read_text`.

use std::path::Path;

use nigehban_event::read::{detect_format, read_text};
use nigehban_event::{Diagnostic, Event, Format, Item, Position, Source, Value};

fn read(name: &str) -> (Format, Vec<Event>, Vec<Diagnostic>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let format = detect_format(&data[..data.len().min(4096)]).expect("format recognised");
    let mut events = Vec::new();
    let mut diagnostics = Vec::new();
    for item in read_text(format, &data[..], Source::file(name)) {
        match item {
            Item::Event(e) => events.push(*e),
            Item::Diagnostic(d) => diagnostics.push(d),
        }
    }
    (format, events, diagnostics)
}

fn text(e: &Event, name: &str) -> Option<String> {
    e.get_exact(name).and_then(|v| v.as_text()).map(|t| t.into_owned())
}

#[test]
fn cloudtrail_s3_file_yields_one_event_per_record() {
    let (format, events, diagnostics) = read("cloud/cloudtrail-sample.json");
    assert_eq!(format, Format::Json);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.position == Position::Line(1)));
    assert!(events.iter().all(|e| text(e, "event.dataset").as_deref() == Some("aws.cloudtrail")));
    // Each event's raw record is its own element, not the wrapper.
    assert!(events[0].raw.starts_with("{\"eventVersion\""));
    assert!(!events[0].raw.contains("RunInstances"));

    let terminate = &events[0];
    assert_eq!(text(terminate, "event.category").as_deref(), Some("vm"));
    assert_eq!(text(terminate, "event.type").as_deref(), Some("deletion"));
    assert_eq!(
        text(terminate, "user.name").as_deref(),
        Some("arn:aws:sts::111122223333:assumed-role/OpsAdmin/ops-session")
    );
    assert_eq!(
        terminate.get_exact("target.name"),
        Some(&Value::List(vec![Value::str("i-0a1b2c3d4e5f60001"), Value::str("i-0a1b2c3d4e5f60002")]))
    );
    assert_eq!(text(terminate, "cloud.region").as_deref(), Some("ap-south-1"));
    assert_eq!(terminate.timestamp, "2024-06-10T10:00:01Z".parse().ok());
    assert_eq!(text(terminate, "userIdentity.sessionContext.sessionIssuer.userName").as_deref(), Some("OpsAdmin"));

    assert_eq!(text(&events[1], "event.type").as_deref(), Some("creation"));
    assert_eq!(text(&events[1], "target.name").as_deref(), Some("i-0a1b2c3d4e5f60003"));

    let login = &events[2];
    assert_eq!(text(login, "event.category").as_deref(), Some("authentication"));
    assert_eq!(text(login, "event.outcome").as_deref(), Some("failure"));
    assert_eq!(text(login, "source.ip").as_deref(), Some("192.0.2.99"));
}

#[test]
fn cloudtrail_lines_with_a_broken_one() {
    let (_, events, diagnostics) = read("cloud/cloudtrail.ndjson");
    assert_eq!(events.len(), 3);
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0].position, Some(Position::Line(3)));
    assert_eq!(text(&events[0], "event.type").as_deref(), Some("stop"));
    assert_eq!(text(&events[0], "user.name").as_deref(), Some("arn:aws:iam::111122223333:root"));
    assert_eq!(text(&events[1], "event.category").as_deref(), Some("database"));
    assert_eq!(text(&events[1], "target.name").as_deref(), Some("payments-db"));
    let denied = &events[2];
    assert_eq!(denied.position, Position::Line(4));
    assert_eq!(text(denied, "event.outcome").as_deref(), Some("failure"));
    assert_eq!(text(denied, "error.code").as_deref(), Some("Client.UnauthorizedOperation"));
    assert_eq!(denied.get_exact("source.ip"), None);
}

#[test]
fn azure_activity_export() {
    let (_, events, diagnostics) = read("cloud/azure-activity.json");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(events.len(), 4);
    assert!(events.iter().all(|e| text(e, "event.dataset").as_deref() == Some("azure.activitylogs")));
    let (start, done) = (&events[0], &events[1]);
    for e in [start, done] {
        assert_eq!(text(e, "event.type").as_deref(), Some("deletion"));
        assert_eq!(text(e, "target.name").as_deref(), Some("APP-VM-01"));
        assert_eq!(text(e, "user.name").as_deref(), Some("ops.admin@contoso.example"));
        assert_eq!(text(e, "cloud.account.id").as_deref(), Some("6F1C2D3E-0000-4000-8000-00000000A001"));
    }
    assert_eq!(text(start, "event.outcome").as_deref(), Some("unknown"));
    assert_eq!(text(done, "event.outcome").as_deref(), Some("success"));
    let created = &events[2];
    assert_eq!(text(created, "event.type").as_deref(), Some("creation"));
    assert_eq!(text(created, "user.name").as_deref(), Some("5e5e5e5e-0000-4000-8000-00000000c003"));
    let listkeys = &events[3];
    assert_eq!(listkeys.get_exact("event.category"), None);
    assert_eq!(text(listkeys, "event.outcome").as_deref(), Some("failure"));
    assert_eq!(text(listkeys, "error.code").as_deref(), Some("Forbidden"));
    assert_eq!(listkeys.get_exact("cloud.region"), None);

    // Storage-account blobs hold one record per line.
    let (_, lines, diagnostics) = read("cloud/azure-activity.ndjson");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1].position, Position::Line(2));
    assert_eq!(text(&lines[1], "event.type").as_deref(), Some("deletion"));
}

#[test]
fn entra_signins_both_shapes() {
    let (_, events, diagnostics) = read("cloud/entra-signins.ndjson");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(events.len(), 2);
    let failed = &events[0];
    assert_eq!(text(failed, "event.dataset").as_deref(), Some("azure.signinlogs"));
    assert_eq!(text(failed, "event.outcome").as_deref(), Some("failure"));
    assert_eq!(text(failed, "error.code").as_deref(), Some("50126"));
    assert_eq!(text(failed, "user.name").as_deref(), Some("hina.ahmed@contoso.example"));
    assert_eq!(text(failed, "source.geo.country_iso_code").as_deref(), Some("DE"));
    assert_eq!(text(failed, "user_agent.original").as_deref(), Some("Mozilla/5.0 (X11; Linux x86_64)"));
    assert_eq!(text(&events[1], "event.outcome").as_deref(), Some("success"));

    let (_, events, diagnostics) = read("cloud/entra-graph-signins.json");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(events.len(), 2);
    assert_eq!(text(&events[0], "error.code").as_deref(), Some("50053"));
    assert_eq!(text(&events[0], "source.ip").as_deref(), Some("2001:db8:4::10"));
    assert_eq!(text(&events[0], "source.geo.country_iso_code").as_deref(), Some("NL"));
    assert_eq!(text(&events[1], "event.outcome").as_deref(), Some("success"));
    assert!(events.iter().all(|e| e.timestamp.is_some()));
}

#[test]
fn gcp_audit_lines() {
    let (_, events, diagnostics) = read("cloud/gcp-audit.ndjson");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(events.len(), 3);
    let kinds: Vec<_> = events.iter().map(|e| text(e, "event.type").unwrap_or_default()).collect();
    assert_eq!(kinds, ["deletion", "deletion", "creation"]);
    assert_eq!(text(&events[0], "target.name").as_deref(), Some("web-1"));
    assert_eq!(text(&events[0], "cloud.region").as_deref(), Some("asia-south1"));
    assert_eq!(text(&events[1], "event.outcome").as_deref(), Some("failure"));
    assert_eq!(text(&events[1], "user.name").as_deref(), Some("intern@example.org"));
    assert_eq!(events[1].timestamp, "2024-06-13T08:01:00Z".parse().ok());
    assert_eq!(events[2].get_exact("source.ip"), None);
}

#[test]
fn eml_fixtures_through_read_text() {
    for name in ["folded-encoded.eml", "spoofed-from.eml", "m365-relayed.eml", "bad-encodings.eml"] {
        let (format, events, diagnostics) = read(&format!("eml/{name}"));
        assert_eq!(format, Format::Eml, "{name}");
        assert_eq!(events.len(), 1, "{name}");
        assert!(diagnostics.is_empty(), "{name}: {diagnostics:?}");
        assert_eq!(text(&events[0], "event.dataset").as_deref(), Some("email.message"));
        assert!(events[0].timestamp.is_some(), "{name}");
    }
}
