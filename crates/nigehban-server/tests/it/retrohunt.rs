//! Retro-hunts through HTTP: indicators, Sigma rules and correlation rules over stored past
//! events, raising alerts owned by the organisation whose events matched; the read scope; a
//! detection counted once however often it is hunted; live alerts untouched; bad rules named;
//! cancelling; the UI's pages and form.

use std::time::Duration;

use nigehban_policy::{OrgKind, Role};
use nigehban_server::monitor::MonitorConfig;
use nigehban_store::{Actor, AuditQuery, NewUser, Store};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestServer, backends, client, org, token};

/// A live rule, also hunted again in a retro-hunt (same id).
const WHOAMI_RULE: &str = r#"
title: Reconnaissance with whoami
id: 0b0e7e4c-5d8a-4f71-a9a6-3c0c2a9d1e01
status: test
logsource: {product: windows, category: process_creation}
detection:
  sel:
    Image|endswith: '\whoami.exe'
  condition: sel
level: high
"#;

/// Three failed log-ons from one address within five minutes (with its base rule).
const CORRELATION: &str = r#"
title: Failed log-on (hunt)
name: hunt_failed_logon
status: test
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 4625
  condition: sel
level: informational
---
title: Three failed log-ons from one address
id: 6f3f0d1a-8e2b-4c55-9d71-2a4b7c9e0f02
status: test
correlation:
  type: event_count
  rules: [hunt_failed_logon]
  group-by: [IpAddress]
  timespan: 5m
  condition:
    gte: 3
level: high
"#;

const C2: &str = "203.0.113.9";
const FROM: &str = "2026-11-01T00:00:00Z";
const TO: &str = "2026-12-01T00:00:00Z";
const PASSWORD: &str = "a long test password for retro-hunts";

fn connection(host: &str, dest: &str, minute: u32) -> String {
    json!({
        "EventID": 3, "Channel": "Microsoft-Windows-Sysmon/Operational", "Computer": host,
        "Image": r"C:\Windows\System32\rundll32.exe", "DestinationIp": dest, "DestinationPort": 443,
        "UtcTime": format!("2026-11-20 09:{minute:02}:00.000"), "EventTime": format!("2026-11-20T09:{minute:02}:00Z"),
    })
    .to_string()
}

fn process(host: &str, image: &str, second: u32) -> String {
    json!({
        "EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Computer": host,
        "Image": image, "CommandLine": image, "UtcTime": format!("2026-11-20 10:00:{second:02}.000"),
        "EventTime": format!("2026-11-20T10:00:{second:02}Z"),
    })
    .to_string()
}

fn failed_logon(ip: &str, second: u32) -> String {
    json!({
        "EventTime": format!("2026-11-20T11:00:{second:02}Z"), "Hostname": "DC01.ministry.example",
        "EventID": 4625, "Channel": "Security", "ProviderName": "Microsoft-Windows-Security-Auditing",
        "TargetUserName": format!("user{second}"), "IpAddress": ip, "LogonType": 3,
    })
    .to_string()
}

async fn ingest(server: &TestServer, token: &str, lines: &[String]) {
    let r = client()
        .post(server.url("/api/v1/ingest?source=past-logs&tlp=AMBER"))
        .bearer_auth(token)
        .body(lines.join("\n"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let out: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["accepted"], lines.len(), "{out}");
}

/// Until live detection has passed every stored event.
async fn wait_detected(server: &TestServer) {
    let monitor = server.state.monitor().unwrap();
    for _ in 0..400 {
        if monitor.backlog() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("detection did not catch up");
}

async fn post(server: &TestServer, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = client().post(server.url(path)).bearer_auth(token).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(server: &TestServer, token: &str, path: &str) -> (u16, Value) {
    let r = client().get(server.url(path)).bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Starts a hunt (202) and waits for its end; returns the hunt as `GET` shows it.
async fn hunt(server: &TestServer, token: &str, body: Value) -> Value {
    let (status, started) = post(server, token, "/api/v1/retrohunts", &body).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    wait_end(server, token, &id).await
}

async fn wait_end(server: &TestServer, token: &str, id: &str) -> Value {
    for _ in 0..400 {
        let (status, h) = get(server, token, &format!("/api/v1/retrohunts/{id}")).await;
        assert_eq!(status, 200, "{h}");
        if ["done", "failed", "cancelled"].contains(&h["status"].as_str().unwrap_or("")) {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("retro-hunt {id} did not end");
}

async fn alerts(server: &TestServer, token: &str) -> Vec<Value> {
    let (status, page) = get(server, token, "/api/v1/alerts?limit=500").await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

fn retro(alerts: &[Value]) -> Vec<&Value> {
    alerts.iter().filter(|a| a["alert"]["tags"].as_array().is_some_and(|t| t.contains(&json!("retrohunt")))).collect()
}

struct World {
    server: TestServer,
    /// The provincial CERT, its ministry (which talked to the C2) and another ministry.
    cert: Uuid,
    ministry: Uuid,
    other: Uuid,
    analyst: String,
    lead: String,
    other_lead: String,
}

async fn world(backend: crate::common::Backend, config: MonitorConfig) -> World {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("whoami.yml"), WHOAMI_RULE).unwrap();
    let server = TestServer::start_monitored(backend, config, vec![rules.path().to_path_buf()], true).await;
    let s = server.store();
    let n = org(s, OrgKind::National, "ncert", &[]).await;
    let cert = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
    let ministry = org(s, OrgKind::Organisation, "ministry", &[cert]).await;
    let other = org(s, OrgKind::Organisation, "otherministry", &[cert]).await;
    let hunter = ["*:read", "alerts:write"];
    let analyst = token(s, cert, Role::CertAnalyst, &hunter).await;
    let lead = token(s, ministry, Role::OrgSecurityLead, &hunter).await;
    let other_lead = token(s, other, Role::OrgSecurityLead, &hunter).await;
    let shipper = token(s, ministry, Role::OrgSecurityLead, &["events:write"]).await;
    let other_shipper = token(s, other, Role::OrgSecurityLead, &["events:write"]).await;
    ingest(
        &server,
        &shipper,
        &[
            connection("ws7", C2, 1),
            connection("ws7", "198.51.100.1", 2),
            connection("ws8", C2, 3),
            process("ws1", r"C:\Windows\System32\whoami.exe", 1),
            process("ws1", r"C:\Windows\System32\whoami.exe", 2),
            process("ws1", r"C:\Windows\System32\notepad.exe", 3),
            failed_logon("198.51.100.20", 1),
            failed_logon("198.51.100.20", 20),
            failed_logon("198.51.100.20", 40),
            failed_logon("198.51.100.21", 50),
        ],
    )
    .await;
    ingest(&server, &other_shipper, &[connection("srv1", "198.51.100.2", 1), connection("srv2", "198.51.100.3", 2)])
        .await;
    wait_detected(&server).await;
    World { server, cert, ministry, other, analyst, lead, other_lead }
}

#[tokio::test]
async fn an_indicator_retro_hunt_finds_who_talked_to_a_new_c2_and_counts_once() {
    for backend in backends() {
        let w = world(backend, MonitorConfig::default()).await;
        let s = &w.server;
        let live_before = alerts(s, &w.analyst).await;
        assert!(retro(&live_before).is_empty());

        let body = json!({"title": "C2 from a peer CERT", "indicators": [C2], "from": FROM, "to": TO});
        let h = hunt(s, &w.analyst, body.clone()).await;
        assert_eq!(h["status"], "done", "{h}");
        let p = &h["progress"];
        assert_eq!(p["total"], 12, "both ministries' events are the CERT's to read: {h}");
        assert_eq!(p["scanned"], 12);
        assert_eq!((p["matches"].as_i64(), p["alerts_created"].as_i64()), (Some(2), Some(2)), "{h}");
        assert_eq!(h["indicators"], 1);
        let found = h["alerts"].as_array().unwrap();
        assert_eq!(found.len(), 2, "{h}");
        assert!(found.iter().all(|a| a["owner"] == w.ministry.to_string() && a["relation"] == "created"), "{h}");

        // The ministry's alerts (one per host), owned by it, seen by it and its CERT, not by the
        // other ministry; marked as a retro-hunt's.
        let mine = alerts(s, &w.lead).await;
        let ours = retro(&mine);
        assert_eq!(ours.len(), 2, "{mine:?}");
        for a in &ours {
            assert_eq!(a["owner"], w.ministry.to_string());
            assert_eq!(a["tlp"], "AMBER");
            assert!(a["alert"]["rule_title"].as_str().unwrap().starts_with("Retro-hunt: Indicator match"), "{a}");
            let tag = format!("retrohunt:{}", h["id"].as_str().unwrap());
            assert!(a["alert"]["tags"].as_array().unwrap().contains(&json!(tag)), "{a}");
            assert_eq!(a["alert"]["count"], 1);
        }
        assert_eq!(retro(&alerts(s, &w.analyst).await).len(), 2);
        assert!(retro(&alerts(s, &w.other_lead).await).is_empty(), "not another ministry's business");
        let id = ours[0]["id"].as_str().unwrap();
        assert_eq!(get(s, &w.other_lead, &format!("/api/v1/alerts/{id}")).await.0, 404);
        let (_, ev) = get(s, &w.lead, &format!("/api/v1/alerts/{id}/evidence")).await;
        assert_eq!(ev["items"][0]["fields"]["indicator"], C2, "{ev}");

        // The same hunt again: found again, counted nothing twice.
        let again = hunt(s, &w.analyst, body).await;
        let p = &again["progress"];
        assert_eq!((p["matches"].as_i64(), p["already_counted"].as_i64()), (Some(2), Some(2)), "{again}");
        assert_eq!((p["alerts_created"].as_i64(), p["alerts_known"].as_i64()), (Some(0), Some(2)), "{again}");
        let after = alerts(s, &w.lead).await;
        assert_eq!(retro(&after).len(), 2);
        assert!(retro(&after).iter().all(|a| a["alert"]["count"] == 1), "{after:?}");

        // The list shows both hunts, newest first; the other ministry sees neither.
        let (_, list) = get(s, &w.analyst, "/api/v1/retrohunts").await;
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["id"], again["id"]);
        assert!(items[0].get("definition").is_none(), "the list is light");
        let (_, list) = get(s, &w.other_lead, "/api/v1/retrohunts").await;
        assert!(list["items"].as_array().unwrap().is_empty());
        let (status, _) = get(s, &w.other_lead, &format!("/api/v1/retrohunts/{}", h["id"].as_str().unwrap())).await;
        assert_eq!(status, 404);

        // A STIX bundle from a peer CERT: the indicator is valid from today, and still finds the
        // past connections (unless asked to respect valid_from).
        let bundle = json!({"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "objects": [
            {"type": "indicator", "spec_version": "2.1", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
             "created": "2026-12-10T00:00:00Z", "modified": "2026-12-10T00:00:00Z", "pattern_type": "stix",
             "pattern": format!("[ipv4-addr:value = '{C2}']"), "valid_from": "2026-12-10T00:00:00Z"}]});
        let h = hunt(s, &w.analyst, json!({"title": "STIX", "stix": bundle, "from": FROM, "to": TO})).await;
        assert_eq!(h["progress"]["matches"], 2, "{h}");
        let h = hunt(
            s,
            &w.analyst,
            json!({"title": "STIX, strict", "stix": bundle, "respect_valid_from": true, "from": FROM, "to": TO}),
        )
        .await;
        assert_eq!(h["progress"]["matches"], 0, "{h}");
        w.server.stop().await;
    }
}

#[tokio::test]
async fn sigma_and_correlation_retro_hunts_leave_live_alerts_alone() {
    for backend in backends() {
        let w = world(backend, MonitorConfig::default()).await;
        let s = &w.server;
        let live: Vec<Value> = alerts(s, &w.lead).await;
        let whoami_live = live
            .iter()
            .find(|a| a["alert"]["rule_title"] == "Reconnaissance with whoami")
            .cloned()
            .expect("live detection raised the whoami alert");
        assert_eq!(whoami_live["alert"]["count"], 2);

        // The live rule hunted again over the same events: a retro-hunt alert of its own.
        let body = json!({"title": "whoami, again", "rules": WHOAMI_RULE, "from": FROM, "to": TO});
        let h = hunt(s, &w.lead, body.clone()).await;
        assert_eq!(h["status"], "done", "{h}");
        assert_eq!((h["rules"].as_i64(), h["progress"]["matches"].as_i64()), (Some(1), Some(2)), "{h}");
        assert_eq!(h["progress"]["total"], 10, "the lead reads its own ministry's events only: {h}");
        let now = alerts(s, &w.lead).await;
        let live_now = now.iter().find(|a| a["id"] == whoami_live["id"]).unwrap();
        assert_eq!(live_now["alert"]["count"], 2, "a retro-hunt never adds to a live alert");
        let r: Vec<&Value> = retro(&now);
        assert_eq!(r.len(), 1, "{now:?}");
        assert_eq!(r[0]["alert"]["count"], 2);
        assert_eq!(r[0]["alert"]["rule_title"], "Retro-hunt: Reconnaissance with whoami");
        hunt(s, &w.lead, body).await;
        let again = alerts(s, &w.lead).await;
        assert_eq!(again.iter().find(|a| a["id"] == r[0]["id"]).unwrap()["alert"]["count"], 2, "not doubled");
        assert_eq!(again.iter().find(|a| a["id"] == whoami_live["id"]).unwrap()["alert"]["count"], 2);

        // A correlation rule: three failed log-ons from one address, decided at the window's end.
        let h = hunt(s, &w.analyst, json!({"title": "Spraying", "rules": CORRELATION, "from": FROM, "to": TO})).await;
        assert_eq!(h["status"], "done", "{h}");
        assert_eq!((h["rules"].as_i64(), h["correlations"].as_i64()), (Some(1), Some(1)), "{h}");
        assert_eq!(h["progress"]["matches"], 1, "the base rule is not reported alone: {h}");
        let found = h["alerts"].as_array().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0]["title"].as_str().unwrap().split(" — ").next(),
            Some("Retro-hunt: Three failed log-ons from one address")
        );
        assert_eq!(found[0]["owner"], w.ministry.to_string());
        w.server.stop().await;
    }
}

#[tokio::test]
async fn who_may_hunt_and_over_which_events() {
    for backend in backends() {
        let w = world(backend, MonitorConfig::default()).await;
        let s = &w.server;
        let store = s.store();

        // The other ministry's lead asks for the ministry's events: they are simply not read.
        let body = json!({"title": "Peek", "indicators": [C2], "from": FROM, "to": TO, "orgs": [w.ministry]});
        let h = hunt(s, &w.other_lead, body).await;
        assert_eq!(h["status"], "done", "{h}");
        assert_eq!((h["progress"]["total"].as_i64(), h["progress"]["scanned"].as_i64()), (Some(0), Some(0)), "{h}");
        let h = hunt(s, &w.other_lead, json!({"title": "Own", "indicators": [C2], "from": FROM, "to": TO})).await;
        assert_eq!((h["progress"]["total"].as_i64(), h["progress"]["matches"].as_i64()), (Some(2), Some(0)), "{h}");
        assert!(retro(&alerts(s, &w.lead).await).is_empty(), "nothing raised on the ministry");
        // Their CERT may limit a hunt to one of its organisations.
        let body = json!({"title": "One", "indicators": [C2], "from": FROM, "to": TO, "orgs": [w.other]});
        let h = hunt(s, &w.analyst, body).await;
        assert_eq!((h["progress"]["total"].as_i64(), h["orgs"][0].as_str()), (Some(2), Some(&*w.other.to_string())));

        // Roles that do not hunt, and tokens without the scopes.
        let reporter = token(store, w.ministry, Role::OrgReporter, &["*:read"]).await;
        let reader = token(store, w.cert, Role::CertAnalyst, &["*:read"]).await;
        let body = json!({"title": "x", "indicators": [C2], "from": FROM, "to": TO});
        for t in [&reporter, &reader] {
            let (status, out) = post(s, t, "/api/v1/retrohunts", &body).await;
            assert_eq!(status, 403, "{out}");
            assert_eq!(get(s, t, "/api/v1/retrohunts").await.0, 403);
        }

        // Bad requests name what is wrong, before anything runs.
        let broken = format!(
            "{WHOAMI_RULE}---\ntitle: Broken rule\nid: b-1\nlogsource: {{product: windows}}\ndetection:\n  sel:\n    \
             Image|nosuchmodifier: x\n  condition: sel\n"
        );
        let cases = [
            (json!({"title": "x", "rules": broken, "from": FROM, "to": TO}), "Broken rule"),
            (json!({"title": "x", "indicators": [C2, "not a value"], "from": FROM, "to": TO}), "indicators[1]"),
            (json!({"title": "x", "from": FROM, "to": TO}), "nothing to hunt with"),
            (json!({"title": "x", "indicators": [C2], "from": TO, "to": FROM}), "from < to"),
            (json!({"title": "x", "indicators": [C2], "from": "yesterday", "to": TO}), "from"),
            (json!({"title": " ", "indicators": [C2], "from": FROM, "to": TO}), "title"),
            (json!({"title": "x", "indicators": [C2], "from": FROM, "to": TO, "orgs": [Uuid::nil()]}), "orgs"),
            (json!({"title": "x", "indicators": [C2], "from": FROM, "to": TO, "bogus": 1}), "bogus"),
        ];
        let before = store.list_retrohunts(w.cert, None, 100).await.unwrap().items.len();
        for (body, named) in cases {
            let (status, out) = post(s, &w.analyst, "/api/v1/retrohunts", &body).await;
            assert_eq!(status, 400, "{body}: {out}");
            let message = out["error"]["message"].as_str().unwrap_or("");
            assert!(message.contains(named), "{body}: {message}");
        }
        assert_eq!(store.list_retrohunts(w.cert, None, 100).await.unwrap().items.len(), before, "nothing recorded");
        w.server.stop().await;
    }
}

#[tokio::test]
async fn hunts_queue_and_cancel_and_need_monitoring() {
    for backend in backends() {
        let config = MonitorConfig { max_retrohunts: 1, ..MonitorConfig::default() };
        let w = world(backend, config).await;
        let s = &w.server;
        let monitor = s.state.monitor().unwrap().clone();
        let slots = monitor.hold_retrohunt_slots_for_tests().await;
        let body = json!({"title": "Waits", "indicators": [C2], "from": FROM, "to": TO});
        let (status, h) = post(s, &w.analyst, "/api/v1/retrohunts", &body).await;
        assert_eq!(status, 202, "{h}");
        assert_eq!(h["status"], "queued");
        let id = h["id"].as_str().unwrap().to_owned();
        let (_, h) = get(s, &w.analyst, &format!("/api/v1/retrohunts/{id}")).await;
        assert_eq!(h["status"], "queued", "no free slot");

        let (status, other) = post(s, &w.other_lead, &format!("/api/v1/retrohunts/{id}/cancel"), &json!({})).await;
        assert_eq!(status, 404, "another organisation's hunt: {other}");
        let (status, c) = post(s, &w.analyst, &format!("/api/v1/retrohunts/{id}/cancel"), &json!({})).await;
        assert_eq!((status, c["status"].as_str()), (200, Some("cancelled")), "{c}");
        let (status, _) = post(s, &w.analyst, &format!("/api/v1/retrohunts/{id}/cancel"), &json!({})).await;
        assert_eq!(status, 409, "already ended");
        drop(slots);
        let h = wait_end(s, &w.analyst, &id).await;
        assert_eq!((h["status"].as_str(), h["progress"]["scanned"].as_i64()), (Some("cancelled"), Some(0)), "{h}");
        assert!(retro(&alerts(s, &w.lead).await).is_empty());
        let audit = s.store().audit_entries(&AuditQuery { limit: 200, ..AuditQuery::default() }).await.unwrap();
        for action in ["retrohunt.create", "retrohunt.cancel"] {
            assert!(audit.iter().any(|r| r.action == action && r.target_id == id), "{action} audited");
        }
        // The slot is free again: the next hunt runs.
        assert_eq!(hunt(s, &w.analyst, body.clone()).await["status"], "done");
        w.server.stop().await;

        // Without monitoring on the node: 404 monitoring_off (after the policy).
        let plain = TestServer::start(backend).await;
        let n = org(plain.store(), OrgKind::National, "ncert", &[]).await;
        let t = token(plain.store(), n, Role::NationalAnalyst, &["*:read", "alerts:write"]).await;
        let (status, out) = post(&plain, &t, "/api/v1/retrohunts", &body).await;
        assert_eq!((status, out["error"]["code"].as_str()), (404, Some("monitoring_off")), "{out}");
        plain.stop().await;
    }
}

/// An `application/x-www-form-urlencoded` body.
fn form_body(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

async fn sign_in(server: &TestServer, store: &Store, hash: &str, org: Uuid, role: Role, name: &str) -> reqwest::Client {
    let new = NewUser {
        org,
        username: name.to_owned(),
        display_name: name.to_owned(),
        email: None,
        role,
        password_hash: hash.to_owned(),
    };
    store.create_user(&Actor::system(), new).await.unwrap();
    crate::common::tls_provider();
    let http =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http
        .post(server.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("username", name), ("password", PASSWORD)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "sign-in of {name}");
    http
}

async fn page(http: &reqwest::Client, server: &TestServer, path: &str) -> (u16, String) {
    let r = http.get(server.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn submit(http: &reqwest::Client, server: &TestServer, path: &str, pairs: &[(&str, &str)]) -> (u16, String) {
    let r = http
        .post(server.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(pairs))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    match r.headers().get("location") {
        Some(l) => (status, l.to_str().unwrap().to_owned()),
        None => (status, r.text().await.unwrap()),
    }
}

#[tokio::test]
async fn the_ui_lists_starts_and_shows_retro_hunts() {
    let hash = tokio::task::spawn_blocking(|| nigehban_server::hash_password(PASSWORD).unwrap()).await.unwrap();
    for backend in backends() {
        let w = world(backend, MonitorConfig::default()).await;
        let s = &w.server;
        let analyst = sign_in(s, s.store(), &hash, w.cert, Role::CertAnalyst, "analyst").await;
        let reporter = sign_in(s, s.store(), &hash, w.ministry, Role::OrgReporter, "reporter").await;

        let (status, list) = page(&analyst, s, "/retrohunts").await;
        assert_eq!(status, 200, "{list}");
        assert!(list.contains("<a href=\"/retrohunts\" aria-current=\"page\">Retro-hunts</a>"), "in the navigation");
        assert!(list.contains("Start a retro-hunt") && list.contains("No retro-hunt yet"), "{list}");
        assert!(list.contains("The ministry") && list.contains("The otherministry"), "organisations to choose");
        let csrf = list.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

        // A bad rule is named on the form, which keeps what was typed.
        let broken = "title: Broken rule\nlogsource: {product: windows}\ndetection:\n  sel:\n    Image|nosuchmodifier: x\n  condition: sel\n";
        let (status, body) = submit(
            &analyst,
            s,
            "/retrohunts",
            &[
                ("csrf", &csrf),
                ("title", "Broken"),
                ("rules", broken),
                ("from", "2026-11-01T00:00"),
                ("to", "2026-12-01T00:00"),
            ],
        )
        .await;
        assert_eq!(status, 422, "{body}");
        assert!(body.contains("class=\"error\"") && body.contains("Broken rule"), "{body}");
        let (status, _) = submit(&analyst, s, "/retrohunts", &[("csrf", "wrong"), ("title", "x")]).await;
        assert_eq!(status, 403, "the CSRF token is checked");

        // The form starts a hunt over one organisation, then shows it with its alerts.
        let ministry = w.ministry.to_string();
        let (status, location) = submit(
            &analyst,
            s,
            "/retrohunts",
            &[
                ("csrf", &csrf),
                ("title", "C2 <from> a peer"),
                ("rules", ""),
                ("indicators", &format!("# from the peer CERT\n{C2}\n")),
                ("from", "2026-11-01T00:00"),
                ("to", "2026-12-01T00:00"),
                ("org", &ministry),
            ],
        )
        .await;
        assert_eq!(status, 303, "{location}");
        assert!(location.starts_with("/retrohunts/"), "{location}");
        let mut detail = String::new();
        for _ in 0..400 {
            detail = page(&analyst, s, &location).await.1;
            if detail.contains("id=\"status\">Done<") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(detail.contains("id=\"status\">Done<"), "{detail}");
        assert!(detail.contains("C2 &#60;from&#62; a peer") && !detail.contains("C2 <from>"), "escaped: {detail}");
        assert!(detail.contains("id=\"alerts-created\">2<"), "{detail}");
        assert_eq!(detail.matches("<td><a href=\"/alerts/").count(), 2, "{detail}");
        assert!(detail.contains("Raised") && detail.contains(C2), "{detail}");
        let (_, list) = page(&analyst, s, "/retrohunts").await;
        assert!(list.contains(&format!("href=\"{location}\"")) && list.contains(">Done<"), "{list}");

        // A reporter does not hunt: no page, no link.
        let (status, _) = page(&reporter, s, "/retrohunts").await;
        assert_eq!(status, 403);
        assert!(!page(&reporter, s, "/").await.1.contains("href=\"/retrohunts\""));
        let (status, _) = page(&reporter, s, &location).await;
        assert_eq!(status, 404);
        w.server.stop().await;
    }
}
