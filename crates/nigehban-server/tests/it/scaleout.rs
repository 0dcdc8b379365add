//! Scale-out monitoring inside one process: an ingest-only node publishing on a bus, two
//! detection nodes sharing the slots of the event log, an API-only node; one detection node
//! dies mid-run. Every event must be stored once and the alerts must be exactly those the
//! embedded mode raises for the same events. (The same with NATS JetStream and separate
//! processes is `crates/nigehban/tests/it/multinode.rs`.)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nigehban_bus::{Bus, BusConfig, InProcessBus};
use nigehban_policy::{OrgKind, Role};
use nigehban_server::monitor::{Monitor, MonitorConfig, Node};
use nigehban_server::{AppState, ServerConfig};
use serde_json::Value;

use crate::common::{Backend, TestServer, backends, client, open_store, org, token};

const RULES: &str = r#"
title: Failed log-on (scale-out test)
id: 0c5e2a34-1f0b-4c1e-9a51-7d2f3b6c8e01
name: so_failed_logon
status: test
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 4625
  condition: sel
level: medium
---
title: Burst of failed log-ons from one address (scale-out test)
id: 0c5e2a34-1f0b-4c1e-9a51-7d2f3b6c8e02
status: test
correlation:
  type: event_count
  rules: [so_failed_logon]
  group-by: [IpAddress]
  timespan: 5m
  condition:
    gte: 4
  generate: true
level: high
"#;

const ORGS: [&str; 5] = ["ministry-a", "ministry-b", "telecom", "power", "bank"];

/// Each organisation's events in the order they are sent: per host, a burst of failed log-ons
/// from one address and a few successful ones, over half an hour of one hour.
fn events(org_index: usize) -> Vec<String> {
    let mut out = Vec::new();
    for host in 0..4 {
        let failures = 3 + (org_index + host) % 5;
        for i in 0..12 {
            let minute = host * 7 + i / 2;
            let failed = i < failures;
            out.push(
                serde_json::json!({
                    "EventID": if failed { 4625 } else { 4624 },
                    "Channel": "Security",
                    "Computer": format!("{}-ws{host}", ORGS[org_index]),
                    "TargetUserName": format!("user{}", i % 3),
                    "IpAddress": format!("10.{org_index}.{host}.7"),
                    "TimeCreated": format!("2026-11-28T09:{minute:02}:{:02}Z", (i * 13) % 60),
                })
                .to_string(),
            );
        }
    }
    out
}

async fn serve(state: Arc<AppState>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        nigehban_server::serve(state, listener, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (format!("http://{addr}"), tx)
}

/// Sends every organisation's events in chunks, each organisation in order; returns how many
/// requests were answered 429 (and sent again).
async fn send(base: &str, tokens: &[String], part: std::ops::Range<usize>) -> usize {
    let mut busy = 0;
    for (i, token) in tokens.iter().enumerate() {
        let all = events(i);
        let (from, to) = (all.len() * part.start / 2, all.len() * part.end / 2);
        for chunk in all[from..to].chunks(5) {
            let body = chunk.join("\n") + "\n";
            loop {
                let resp = client()
                    .post(format!("{base}/api/v1/ingest?source=so"))
                    .bearer_auth(token)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                match resp.status().as_u16() {
                    200 => break,
                    429 => {
                        busy += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    s => panic!("ingest answered {s}: {}", resp.text().await.unwrap_or_default()),
                }
            }
        }
    }
    busy
}

/// One event per organisation a day after the others (no rule matches it): sent once every
/// other event has arrived, it closes every correlation window.
async fn tick(base: &str, tokens: &[String]) {
    for (i, token) in tokens.iter().enumerate() {
        let body = serde_json::json!({
            "EventID": 4634, "Channel": "Security", "Computer": format!("{}-dc", ORGS[i]),
            "TimeCreated": "2026-11-29T12:00:00Z",
        })
        .to_string();
        let resp = client()
            .post(format!("{base}/api/v1/ingest?source=so"))
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}

/// The events are replayed far faster than they happened: a message a dead node took comes
/// back after the ack wait behind much event time, which the lateness covers (as in a real
/// deployment, where the lateness exceeds the ack wait).
fn config() -> MonitorConfig {
    MonitorConfig { lateness: Duration::from_secs(7200), ..Default::default() }
}

/// Every alert the token sees, by (organisation short name, rule, entity) → (count, level).
async fn alerts(
    base: &str,
    token: &str,
    names: &BTreeMap<String, String>,
) -> BTreeMap<(String, String, String), (i64, String)> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/alerts?limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client().get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            let a = &item["alert"];
            let owner = names[item["owner"].as_str().unwrap()].clone();
            let key = (owner, a["rule_id"].as_str().unwrap().to_owned(), a["entity"].as_str().unwrap().to_owned());
            let previous =
                out.insert(key.clone(), (a["count"].as_i64().unwrap(), a["level"].as_str().unwrap().to_owned()));
            assert!(previous.is_none(), "two alerts for {key:?}");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    out
}

async fn metric(base: &str, name: &str) -> i64 {
    let text = client().get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// The reference: the embedded mode over the same events.
async fn embedded(backend: Backend, rules: &std::path::Path) -> BTreeMap<(String, String, String), (i64, String)> {
    let server = TestServer::start_monitored(backend, config(), vec![rules.to_path_buf()], true).await;
    let s = server.store();
    let n = org(s, OrgKind::National, "ncert", &[]).await;
    let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
    let mut names = BTreeMap::new();
    let mut tokens = Vec::new();
    for short in ORGS {
        let id = org(s, OrgKind::Organisation, short, &[p]).await;
        names.insert(id.to_string(), short.to_owned());
        tokens.push(token(s, id, Role::OrgSecurityLead, &["events:write"]).await);
    }
    let reader = token(s, n, Role::NationalAnalyst, &["*:read"]).await;
    send(&server.base, &tokens, 0..2).await;
    tick(&server.base, &tokens).await;
    let t = Instant::now();
    while metric(&server.base, "nigehban_detect_backlog").await > 0 {
        assert!(t.elapsed() < Duration::from_secs(60), "embedded detection did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = alerts(&server.base, &reader, &names).await;
    server.stop().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_detection_nodes_share_the_log_and_one_dying_loses_nothing() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("so.yml"), RULES).unwrap();
    let options = nigehban_hunt::detectors::DetectorOptions {
        rules: vec![rules.path().to_path_buf()],
        live: true,
        ..Default::default()
    };
    for backend in backends() {
        let expected = embedded(backend, rules.path()).await;
        let total_failed: usize =
            (0..ORGS.len()).map(|i| events(i).iter().filter(|e| e.contains("4625")).count()).sum();
        let simple: i64 = expected.iter().filter(|(k, _)| k.1.ends_with("8e01")).map(|(_, v)| v.0).sum();
        assert_eq!(simple as usize, total_failed, "the embedded reference itself is wrong: {expected:#?}");
        assert!(expected.keys().any(|k| k.1.ends_with("8e02")), "no correlation alert in the reference");

        let dir = tempfile::tempdir().unwrap();
        let (store, pg) = open_store(backend, dir.path()).await;
        let n = org(&store, OrgKind::National, "ncert", &[]).await;
        let p = org(&store, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let mut names = BTreeMap::new();
        let mut tokens = Vec::new();
        for short in ORGS {
            let id = org(&store, OrgKind::Organisation, short, &[p]).await;
            names.insert(id.to_string(), short.to_owned());
            tokens.push(token(&store, id, Role::OrgSecurityLead, &["events:write"]).await);
        }
        let reader = token(&store, n, Role::NationalAnalyst, &["*:read"]).await;

        let bus = Bus::InProcess(
            InProcessBus::new(BusConfig {
                prefix: "so".into(),
                ack_wait: Duration::from_secs(2),
                ..Default::default()
            })
            .unwrap(),
        );
        let config = MonitorConfig { lease_ttl: Duration::from_secs(1), detect_batch: 40, ..config() };
        let node =
            |name: &str, ingest: bool, detect: bool| Node { bus: Some(bus.clone()), ingest, detect, name: name.into() };

        // The ingest-only node: HTTP ingest publishes on the bus; the API is not served there.
        let ingest_monitor = Monitor::new_node(
            store.clone(),
            nigehban_detect::DetectorSet::new(),
            config.clone(),
            node("in", true, false),
        )
        .await
        .unwrap();
        let ingest_state = AppState::new(store.clone(), ServerConfig { serve_api: false, ..ServerConfig::default() });
        assert!(ingest_state.set_monitor(ingest_monitor));
        let (ingest_base, stop_ingest) = serve(ingest_state).await;
        let resp = client().get(format!("{ingest_base}/api/v1/alerts")).bearer_auth(&reader).send().await.unwrap();
        assert_eq!(resp.status(), 404, "an ingest-only node serves the API");
        assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "not_on_this_node");

        // The API-only node: no ingest there.
        let api_state = AppState::new(store.clone(), ServerConfig { serve_ingest: false, ..ServerConfig::default() });
        let (api_base, stop_api) = serve(api_state).await;
        let resp = client()
            .post(format!("{api_base}/api/v1/ingest"))
            .bearer_auth(&tokens[0])
            .body("{}\n")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "an API-only node takes events");

        // Two detection nodes.
        let mut nodes = Vec::new();
        for name in ["a", "b"] {
            let (set, _) = nigehban_hunt::detectors::build(&options).unwrap();
            let monitor = Monitor::new_node(store.clone(), set, config.clone(), node(name, false, true)).await.unwrap();
            let (stop, rx) = tokio::sync::watch::channel(false);
            let (_, tasks) = monitor.start(rx);
            nodes.push((stop, tasks));
        }

        // The first half, then the second half while node `a` dies (its tasks end where they
        // are, as a killed process: no lease given back, messages taken and not acknowledged).
        send(&ingest_base, &tokens, 0..1).await;
        let t = Instant::now();
        loop {
            let holders = store.detect_lease_holders().await.unwrap();
            let a = holders.iter().filter(|h| h.1.as_deref() == Some("a")).count();
            let b = holders.iter().filter(|h| h.1.as_deref() == Some("b")).count();
            if a > 0 && b > 0 && a + b == 32 {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "the nodes did not share the slots: {holders:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let second_half = {
            let (base, tokens) = (ingest_base.clone(), tokens.clone());
            tokio::spawn(async move { send(&base, &tokens, 1..2).await })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (_stop_a, tasks_a) = nodes.remove(0);
        for t in &tasks_a {
            t.abort();
        }
        second_half.await.unwrap();
        let want = (0..ORGS.len()).map(|i| events(i).len()).sum::<usize>() as i64;
        let t = Instant::now();
        while store.count_events().await.unwrap() < want {
            assert!(t.elapsed() < Duration::from_secs(60), "the events did not all arrive");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tick(&ingest_base, &tokens).await;
        let want = want + ORGS.len() as i64;

        // Everything is stored once and detected; node `b` has every slot.
        let t = Instant::now();
        loop {
            let stored = store.count_events().await.unwrap();
            assert!(stored <= want, "{stored} events stored for {want} sent");
            // The dead node's slots move once its leases expire (slots without events too).
            let holders = store.detect_lease_holders().await.unwrap();
            let moved = holders.iter().all(|h| h.1.as_deref() == Some("b"));
            if stored == want
                && moved
                && store.slot_backlog().await.unwrap() == 0
                && bus.fill().await.unwrap().messages == 0
            {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "scale-out did not catch up: {stored} of {want} stored");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let got = alerts(&api_base, &reader, &names).await;
        assert_eq!(got, expected, "scale-out alerts differ from the embedded mode's");

        for (stop, tasks) in nodes {
            let _ = stop.send(true);
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
            }
        }
        let _ = stop_ingest.send(());
        let _ = stop_api.send(());
        store.close().await;
        if let Some(db) = pg {
            db.drop_now().await.unwrap();
        }
    }
}
