//! Rules owned by a CERT in the embedded mode: a correlation over the events of every
//! organisation of the CERT's constituency fires once, as the CERT's alert, seen by the CERT
//! and its chain and by none of the ministries; the organisations' own rules still give their
//! own alerts; the CERT's stream survives a restart between the events it correlates. In the
//! scale-out mode the same, with the CERT lane held by one of two detection nodes, which dies
//! between the events the CERT's rule correlates.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nigehban_policy::{OrgKind, Role};
use nigehban_server::monitor::certs::{CertRules, CertSet};
use nigehban_server::monitor::{Monitor, MonitorConfig, Node};
use nigehban_server::{AppState, ServerConfig};
use nigehban_store::Store;
use serde_json::Value;
use uuid::Uuid;

use crate::common::{backends, client, get_json, open_store, org, token};

/// The organisations' own rule: every failed log-on is an alert of its organisation.
const ORG_RULE: &str = r#"
title: Failed log-on (organisation rule)
id: 6f0d3c2e-8a41-4b6e-9d15-3c7b2a9e4f10
status: test
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 4625
  condition: sel
level: medium
"#;

const CERT_CORRELATION: &str = "6f0d3c2e-8a41-4b6e-9d15-3c7b2a9e4f02";

fn cert_rules_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/cert-rules")
}

fn failed_logon(host: &str, ip: &str, time: &str) -> String {
    serde_json::json!({
        "EventID": 4625, "Channel": "Security", "Computer": host,
        "TargetUserName": "administrator", "IpAddress": ip, "TimeCreated": time,
    })
    .to_string()
}

/// A running node: the HTTP server and its monitor, and what stops them.
struct Running {
    base: String,
    monitor: Arc<Monitor>,
    stop_http: tokio::sync::oneshot::Sender<()>,
    stop_detection: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The organisations' detectors and the monitoring settings with the CERT's rules.
fn detectors_and_config(cert: Uuid, org_rules: &std::path::Path) -> (nigehban_detect::DetectorSet, MonitorConfig) {
    let options = nigehban_hunt::detectors::DetectorOptions {
        rules: vec![org_rules.to_path_buf()],
        no_builtin: true,
        live: true,
        ..Default::default()
    };
    let (set, _) = nigehban_hunt::detectors::build(&options).unwrap();
    let cert_options = nigehban_hunt::detectors::DetectorOptions {
        rules: vec![cert_rules_dir()],
        no_builtin: true,
        live: true,
        ..Default::default()
    };
    let (cert_set, loaded) = nigehban_hunt::detectors::build(&cert_options).unwrap();
    assert!(loaded.rules.failed.is_empty(), "{:?}", loaded.rules.failed);
    let config = MonitorConfig {
        lateness: Duration::from_secs(60),
        cert_rules: CertRules::new(vec![CertSet { cert, name: "gov-cert".into(), detectors: cert_set }]),
        ..MonitorConfig::default()
    };
    (set, config)
}

async fn start(store: &Store, cert: Uuid, org_rules: &std::path::Path) -> Running {
    let (set, config) = detectors_and_config(cert, org_rules);
    let monitor = Monitor::new(store.clone(), set, config).await.unwrap();
    let state = AppState::new(store.clone(), ServerConfig::default());
    assert!(state.set_monitor(monitor.clone()));
    let (stop_detection, rx) = tokio::sync::watch::channel(false);
    let (_, tasks) = monitor.start(rx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        nigehban_server::serve(state, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Running { base: format!("http://{addr}"), monitor, stop_http, stop_detection, tasks }
}

impl Running {
    async fn send(&self, token: &str, lines: &[String]) {
        let resp = client()
            .post(format!("{}/api/v1/ingest?source=winlogbeat", self.base))
            .bearer_auth(token)
            .body(lines.join("\n") + "\n")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
    }

    /// Waits until detection has passed every stored event.
    async fn caught_up(&self) {
        let t = Instant::now();
        while self.monitor.backlog() > 0 {
            assert!(t.elapsed() < Duration::from_secs(30), "detection did not catch up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops detection (it commits what it has) and the server.
    async fn stop(self) {
        let _ = self.stop_http.send(());
        let _ = self.stop_detection.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// The alerts a token sees: (owner, rule id, entity) → the alert's item.
async fn alerts(base: &str, token: &str) -> BTreeMap<(String, String, String), Value> {
    let page: Value = get_json(&format!("{base}/api/v1/alerts?limit=500"), token).await;
    let mut out = BTreeMap::new();
    for item in page["items"].as_array().unwrap() {
        let a = &item["alert"];
        let key = (
            item["owner"].as_str().unwrap().to_owned(),
            a["rule_id"].as_str().unwrap().to_owned(),
            a["entity"].as_str().unwrap().to_owned(),
        );
        assert!(out.insert(key.clone(), item.clone()).is_none(), "two alerts for {key:?}");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cert_correlation_across_three_ministries_is_one_cert_alert_through_a_restart() {
    let org_rules = tempfile::tempdir().unwrap();
    std::fs::write(org_rules.path().join("failed.yml"), ORG_RULE).unwrap();
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pg) = open_store(backend, dir.path()).await;
        let ncert = org(&store, OrgKind::National, "ncert", &[]).await;
        let gov = org(&store, OrgKind::SectoralCert, "gov-cert", &[ncert]).await;
        let north = org(&store, OrgKind::ProvincialCert, "north-cert", &[ncert]).await;
        let ministries = [
            org(&store, OrgKind::Organisation, "mofa", &[gov]).await,
            org(&store, OrgKind::Organisation, "mod", &[gov]).await,
            org(&store, OrgKind::Organisation, "moi", &[gov]).await,
        ];
        // Under another CERT: its events are not in the government CERT's constituency.
        let telecom = org(&store, OrgKind::Organisation, "telecom", &[north]).await;
        let mut shippers = Vec::new();
        for m in ministries.iter().chain([&telecom]) {
            shippers.push(token(&store, *m, Role::OrgSecurityLead, &["events:write"]).await);
        }
        let cert_analyst = token(&store, gov, Role::CertAnalyst, &["*:read"]).await;
        let national = token(&store, ncert, Role::NationalAnalyst, &["*:read"]).await;
        let north_analyst = token(&store, north, Role::CertAnalyst, &["*:read"]).await;
        let mofa_lead = token(&store, ministries[0], Role::OrgSecurityLead, &["*:read"]).await;

        let ip = "203.0.113.9";
        let node = start(&store, gov, org_rules.path()).await;
        node.send(&shippers[0], &[failed_logon("mofa-dc", ip, "2026-11-28T09:00:00Z")]).await;
        node.send(&shippers[3], &[failed_logon("telecom-dc", ip, "2026-11-28T09:01:00Z")]).await;
        node.send(&shippers[1], &[failed_logon("mod-dc", ip, "2026-11-28T09:02:00Z")]).await;
        // Another address in two ministries only: no CERT alert.
        node.send(&shippers[0], &[failed_logon("mofa-ws", "198.51.100.4", "2026-11-28T09:03:00Z")]).await;
        node.send(&shippers[1], &[failed_logon("mod-ws", "198.51.100.4", "2026-11-28T09:03:30Z")]).await;
        node.caught_up().await;
        node.stop().await;

        // A restart: the CERT's stream comes back from the state saved with the cursor.
        let node = start(&store, gov, org_rules.path()).await;
        node.send(&shippers[2], &[failed_logon("moi-dc", ip, "2026-11-28T09:04:00Z")]).await;
        // A day later in one ministry: the CERT's watermark passes every window.
        let tick = serde_json::json!({
            "EventID": 4634, "Channel": "Security", "Computer": "mofa-dc", "TimeCreated": "2026-11-29T09:00:00Z",
        })
        .to_string();
        node.send(&shippers[0], &[tick]).await;
        node.caught_up().await;

        let seen = alerts(&node.base, &national).await;
        let cert_alerts: Vec<&Value> = seen
            .values()
            .filter(|a| a["alert"]["rule_id"] == CERT_CORRELATION && a["owner"] == gov.to_string())
            .collect();
        assert_eq!(cert_alerts.len(), 1, "one CERT alert: {seen:#?}");
        let cert_alert = cert_alerts[0];
        assert_eq!(cert_alert["owner"], gov.to_string(), "owned by the CERT");
        assert_eq!(cert_alert["tlp"], "AMBER+STRICT", "the strictest of its events");
        assert_eq!(cert_alert["alert"]["count"], 1, "counted once across the restart");
        assert_eq!(cert_alert["alert"]["entity"], format!("IpAddress={ip}"));
        let id = cert_alert["id"].as_str().unwrap();

        // The evidence names the three ministries, and not the organisation of another CERT.
        let ev: Value = get_json(&format!("{}/api/v1/alerts/{id}/evidence", node.base), &cert_analyst).await;
        let items = ev["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{ev}");
        let fields = match &items[0]["fields"] {
            Value::String(s) => serde_json::from_str(s).unwrap(),
            other => other.clone(),
        };
        let mut values: Vec<&str> = fields["values"].as_str().unwrap().split(", ").collect();
        values.sort_unstable();
        assert_eq!(values, ["mod", "mofa", "moi"], "{fields}");
        let evidence = fields["evidence"].as_str().unwrap();
        for name in ["mofa/winlogbeat", "mod/winlogbeat", "moi/winlogbeat"] {
            assert!(evidence.contains(name), "{evidence}");
        }
        assert!(!evidence.contains("telecom"), "{evidence}");
        assert!(items[0]["event_id"].as_i64().is_some());

        // The organisations' own rule: one alert per organisation and host, the telecom's too.
        let own: Vec<_> = seen.keys().filter(|k| k.1.ends_with("4f10")).collect();
        assert_eq!(own.len(), 6, "{own:#?}");
        for m in ministries.iter().chain([&telecom]) {
            assert!(own.iter().any(|k| k.0 == m.to_string()), "no alert of {m}");
        }
        assert!(!seen.keys().any(|k| k.0 == gov.to_string() && k.1 != CERT_CORRELATION), "{seen:#?}");

        // Who sees the CERT's alert: the CERT and nCERT; not a ministry, not another CERT.
        assert!(alerts(&node.base, &cert_analyst).await.values().any(|a| a["id"] == id));
        for (who, t) in [("a ministry", &mofa_lead), ("another CERT", &north_analyst)] {
            let listed = alerts(&node.base, t).await;
            assert!(!listed.values().any(|a| a["id"] == id), "{who} lists the CERT alert");
            let r =
                client().get(format!("{}/api/v1/alerts/{id}/evidence", node.base)).bearer_auth(t).send().await.unwrap();
            assert_eq!(r.status(), 404, "{who} reads the CERT alert");
        }
        assert_eq!(
            alerts(&node.base, &mofa_lead).await.keys().filter(|k| k.0 == ministries[0].to_string()).count(),
            3,
            "the ministry sees its own two alerts and its part of the CERT's"
        );

        // VISIBILITY rule 7: each ministry whose events the CERT's detection counted sees its
        // part — its own event, the address, no other ministry's name; the telecom (under
        // another CERT) has none.
        let names = ["mofa", "mod", "moi"];
        for (i, m) in ministries.iter().enumerate() {
            let lead = token(&store, *m, Role::OrgSecurityLead, &["*:read"]).await;
            let listed = alerts(&node.base, &lead).await;
            let parts: Vec<&Value> = listed.values().filter(|a| a["alert"]["rule_id"] == CERT_CORRELATION).collect();
            assert_eq!(parts.len(), 1, "{}: {listed:#?}", names[i]);
            let part = parts[0];
            assert_eq!(part["owner"], m.to_string());
            assert_eq!(part["alert"]["count"], 1);
            assert_eq!(part["alert"]["entity"], format!("IpAddress={ip}"));
            let ev: Value =
                get_json(&format!("{}/api/v1/alerts/{}/evidence", node.base, part["id"].as_str().unwrap()), &lead)
                    .await;
            let text = format!("{part} {ev}");
            assert!(text.contains(&format!("{}/winlogbeat", names[i])), "its own event: {text}");
            for (j, other) in names.iter().enumerate() {
                if j != i {
                    assert!(!text.contains(&format!("{other}/")) && !text.contains(&format!("{other}-dc")), "{text}");
                }
            }
            assert!(!text.contains("\"values\""), "{text}");
        }
        let telecom_lead = token(&store, telecom, Role::OrgSecurityLead, &["*:read"]).await;
        assert!(!alerts(&node.base, &telecom_lead).await.values().any(|a| a["alert"]["rule_id"] == CERT_CORRELATION));
        node.stop().await;
        store.close().await;
        if let Some(db) = pg {
            db.drop_now().await.unwrap();
        }
    }
}

/// Scale-out: an ingest node publishing on a bus, two detection nodes with the same CERT rules.
/// One of them holds the CERT lane; it dies (no lease given back) between the events the
/// CERT's rule correlates, the other takes the lane over from its last commit: still one CERT
/// alert, counted once, and every organisation's own alerts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_the_scale_out_mode_the_cert_lane_moves_to_another_node_when_its_node_dies() {
    use nigehban_bus::{Bus, BusConfig, InProcessBus};
    use nigehban_store::{CERT_CURSOR, CERT_LANE};
    let org_rules = tempfile::tempdir().unwrap();
    std::fs::write(org_rules.path().join("failed.yml"), ORG_RULE).unwrap();
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pg) = open_store(backend, dir.path()).await;
        let ncert = org(&store, OrgKind::National, "ncert", &[]).await;
        let gov = org(&store, OrgKind::SectoralCert, "gov-cert", &[ncert]).await;
        let ministries = [
            org(&store, OrgKind::Organisation, "mofa", &[gov]).await,
            org(&store, OrgKind::Organisation, "mod", &[gov]).await,
            org(&store, OrgKind::Organisation, "moi", &[gov]).await,
        ];
        let mut shippers = Vec::new();
        for m in &ministries {
            shippers.push(token(&store, *m, Role::OrgSecurityLead, &["events:write"]).await);
        }
        let national = token(&store, ncert, Role::NationalAnalyst, &["*:read"]).await;

        let bus = Bus::InProcess(
            InProcessBus::new(BusConfig {
                prefix: "lane".into(),
                ack_wait: Duration::from_secs(2),
                ..Default::default()
            })
            .unwrap(),
        );
        let node =
            |name: &str, detect: bool| Node { bus: Some(bus.clone()), ingest: !detect, detect, name: name.into() };
        let (_, config) = detectors_and_config(gov, org_rules.path());
        let config = MonitorConfig { lease_ttl: Duration::from_secs(1), ..config };
        let ingest =
            Monitor::new_node(store.clone(), nigehban_detect::DetectorSet::new(), config.clone(), node("in", false))
                .await
                .unwrap();
        let state = AppState::new(store.clone(), ServerConfig::default());
        assert!(state.set_monitor(ingest.clone()));
        let (stop_ingest, ingest_rx) = tokio::sync::watch::channel(false);
        let (_, ingest_tasks) = ingest.start(ingest_rx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            nigehban_server::serve(state, listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let mut nodes = BTreeMap::new();
        for name in ["a", "b"] {
            let (set, _) = detectors_and_config(gov, org_rules.path());
            let monitor = Monitor::new_node(store.clone(), set, config.clone(), node(name, true)).await.unwrap();
            let (stop, rx) = tokio::sync::watch::channel(false);
            let (_, tasks) = monitor.start(rx);
            nodes.insert(name.to_owned(), (stop, tasks));
        }
        let post = |token: String, line: String| {
            let base = base.clone();
            async move {
                let resp = client()
                    .post(format!("{base}/api/v1/ingest?source=winlogbeat"))
                    .bearer_auth(token)
                    .body(line + "\n")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
            }
        };
        // `n` events are stored (the bus carries them to the detection nodes, which store
        // them) and the lane has passed every one.
        let lane_caught_up = |n: i64| {
            let store = store.clone();
            async move {
                let t = Instant::now();
                loop {
                    let stored = store.count_events().await.unwrap();
                    let last = store.last_event_id().await.unwrap();
                    let lane = store.cursor(CERT_CURSOR).await.unwrap().map_or(0, |c| c.0);
                    if stored == n && lane == last {
                        return;
                    }
                    assert!(
                        t.elapsed() < Duration::from_secs(30),
                        "the CERT lane did not catch up: {stored} of {n} stored, at {lane} of {last}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };

        let ip = "203.0.113.9";
        post(shippers[0].clone(), failed_logon("mofa-dc", ip, "2026-11-28T09:00:00Z")).await;
        post(shippers[1].clone(), failed_logon("mod-dc", ip, "2026-11-28T09:02:00Z")).await;
        lane_caught_up(2).await;
        let holders = store.detect_lease_holders().await.unwrap();
        let (_, holder, epoch) = holders.iter().find(|h| h.0 == CERT_LANE).cloned().expect("the lane is held");
        let holder = holder.expect("a node holds the lane");
        // The lane's node dies as a killed process would: its tasks end where they are.
        let (_stop, tasks) = nodes.remove(&holder).unwrap();
        for t in &tasks {
            t.abort();
        }

        post(shippers[2].clone(), failed_logon("moi-dc", ip, "2026-11-28T09:04:00Z")).await;
        let tick = serde_json::json!({
            "EventID": 4634, "Channel": "Security", "Computer": "mofa-dc", "TimeCreated": "2026-11-29T09:00:00Z",
        })
        .to_string();
        post(shippers[0].clone(), tick).await;
        lane_caught_up(4).await;
        let holders = store.detect_lease_holders().await.unwrap();
        let (_, now_holder, now_epoch) = holders.iter().find(|h| h.0 == CERT_LANE).cloned().unwrap();
        assert_ne!(now_holder.as_deref(), Some(holder.as_str()), "the lane moved");
        assert!(now_epoch > epoch);

        // The organisations' own alerts come from the slots, the CERT's from the lane: one,
        // counted once across the move. Wait for both: the lane's cursor may pass the events
        // before its alert is stored.
        let t = Instant::now();
        let seen = loop {
            let seen = alerts(&base, &national).await;
            let cert = seen.values().filter(|a| a["alert"]["rule_id"] == CERT_CORRELATION).count();
            if seen.keys().filter(|k| k.1.ends_with("4f10")).count() == 3 && cert >= 4 {
                break seen;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "the organisations' and the CERT's alerts: {seen:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let cert_alerts: Vec<&Value> = seen
            .values()
            .filter(|a| a["alert"]["rule_id"] == CERT_CORRELATION && a["owner"] == gov.to_string())
            .collect();
        assert_eq!(cert_alerts.len(), 1, "one CERT alert: {seen:#?}");
        // And each ministry's part of it, once.
        let parts: Vec<&Value> = seen
            .values()
            .filter(|a| a["alert"]["rule_id"] == CERT_CORRELATION && a["owner"] != gov.to_string())
            .collect();
        assert_eq!(parts.len(), 3, "{seen:#?}");
        assert!(parts.iter().all(|p| p["alert"]["count"] == 1), "{parts:#?}");
        assert_eq!(cert_alerts[0]["alert"]["count"], 1, "counted once across the move");
        assert!(!seen.keys().any(|k| k.0 == gov.to_string() && k.1 != CERT_CORRELATION), "{seen:#?}");
        let id = cert_alerts[0]["id"].as_str().unwrap();
        let ev: Value = get_json(&format!("{base}/api/v1/alerts/{id}/evidence"), &national).await;
        let fields = match &ev["items"][0]["fields"] {
            Value::String(s) => serde_json::from_str(s).unwrap(),
            other => other.clone(),
        };
        let mut values: Vec<&str> = fields["values"].as_str().unwrap().split(", ").collect();
        values.sort_unstable();
        assert_eq!(values, ["mod", "mofa", "moi"], "{fields}");

        for (_, (stop, tasks)) in nodes {
            let _ = stop.send(true);
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
            }
        }
        let _ = stop_ingest.send(true);
        for t in ingest_tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        let _ = stop_http.send(());
        store.close().await;
        if let Some(db) = pg {
            db.drop_now().await.unwrap();
        }
    }
}

/// Scale-out retention with CERT rules: an old event is deleted only once both its slot and
/// the CERT lane have passed it.
#[tokio::test]
async fn scale_out_retention_keeps_what_the_cert_lane_has_not_passed() {
    use nigehban_bus::{Bus, BusConfig, InProcessBus};
    use nigehban_store::{CERT_CURSOR, CursorUpdate, slot_cursor, slot_of};
    let org_rules = tempfile::tempdir().unwrap();
    std::fs::write(org_rules.path().join("failed.yml"), ORG_RULE).unwrap();
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pg) = open_store(backend, dir.path()).await;
        let ncert = org(&store, OrgKind::National, "ncert", &[]).await;
        let gov = org(&store, OrgKind::SectoralCert, "gov-cert", &[ncert]).await;
        let mofa = org(&store, OrgKind::Organisation, "mofa", &[gov]).await;
        let bus = Bus::InProcess(InProcessBus::new(BusConfig { prefix: "ret".into(), ..Default::default() }).unwrap());
        let (set, config) = detectors_and_config(gov, org_rules.path());
        let node = Node { bus: Some(bus), ingest: false, detect: true, name: "d".into() };
        let monitor = Monitor::new_node(store.clone(), set, config, node).await.unwrap();
        let event = nigehban_store::NewEvent {
            org: mofa,
            tlp: nigehban_policy::Tlp::AmberStrict,
            ts: Some(0),
            source: "s".into(),
            dataset: None,
            host: None,
            record: b"{}".to_vec(),
        };
        let (_, id) = store.append_events(&[event], None).await.unwrap().unwrap();
        let forty_days_ago = jiff::Timestamp::now().as_microsecond() - 40 * 86_400_000_000;
        nigehban_store::testing::execute_unchecked(
            &store,
            &format!("UPDATE events SET received_at = {forty_days_ago}"),
        )
        .await
        .unwrap();
        let pass = |name: String| {
            let store = store.clone();
            async move {
                let update = CursorUpdate { name: &name, position: id, state: None, fence: None };
                store.commit_detections(&[], Some(update)).await.unwrap();
            }
        };
        pass(slot_cursor(slot_of(mofa))).await;
        assert_eq!(
            nigehban_server::monitor::sweep_retention(&monitor).await.unwrap(),
            0,
            "the slot has passed it, the CERT lane has not"
        );
        pass(CERT_CURSOR.to_owned()).await;
        assert_eq!(nigehban_server::monitor::sweep_retention(&monitor).await.unwrap(), 1);
        assert_eq!(store.count_events().await.unwrap(), 0);
        store.close().await;
        if let Some(db) = pg {
            db.drop_now().await.unwrap();
        }
    }
}
