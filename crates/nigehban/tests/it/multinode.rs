//! Scale-out for real: two ingest nodes, two detection nodes and an API node, each its own
//! `nigehban serve` process, on NATS JetStream and PostgreSQL; one detection node is killed
//! (SIGKILL) mid-run. Every event must be stored once and detected, and the alerts must be
//! exactly those an embedded server raises for the same events, the alerts of a rule the
//! provincial CERT owns (run by one detection node at a time, the CERT lane) included. Runs
//! when `NIGEHBAN_TEST_PG`
//! and `NIGEHBAN_TEST_NATS` are set (`.ci/run` sets both).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nigehban_policy::{OrgKind, Role};
use nigehban_store::testing::FreshDatabase;
use nigehban_store::{Actor, NewOrg, NewToken, OrgProfile, Store};
use serde_json::Value;

use crate::net::{free_port, request};

const RULES: &str = r#"
title: Failed log-on (multi-node test)
id: 7b1d9c20-4e3f-4a8b-b6d2-1c0e5f7a9d01
name: mn_failed_logon
status: test
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 4625
  condition: sel
level: medium
---
title: Burst of failed log-ons from one address (multi-node test)
id: 7b1d9c20-4e3f-4a8b-b6d2-1c0e5f7a9d02
status: test
correlation:
  type: event_count
  rules: [mn_failed_logon]
  group-by: [IpAddress]
  timespan: 5m
  condition:
    gte: 4
  generate: true
level: high
"#;

/// A rule the provincial CERT owns (`monitoring.cert_rules`): its alerts are the CERT's, over
/// the events of every organisation below it.
const CERT_RULE: &str = r#"
title: Failed log-on of user0 anywhere in the province (multi-node test, CERT rule)
id: 7b1d9c20-4e3f-4a8b-b6d2-1c0e5f7a9d03
status: test
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 4625
    TargetUserName: user0
  condition: sel
level: medium
"#;

const ORGS: [&str; 4] = ["ministry", "telecom", "power", "bank"];
const HOSTS: usize = 8;
const PER_HOST: usize = 30;

/// An organisation's events in the order they are sent: per host, failed log-ons from one
/// address among successful ones, two events a minute.
fn events(org: usize) -> Vec<String> {
    let mut out = Vec::new();
    for host in 0..HOSTS {
        let failures = 2 + (org * 3 + host) % 7;
        for i in 0..PER_HOST {
            let failed = i % 3 == 1 && i / 3 < failures;
            let minute = (host * 5 + i / 2) % 60;
            out.push(
                serde_json::json!({
                    "EventID": if failed { 4625 } else { 4624 },
                    "Channel": "Security",
                    "Computer": format!("{}-ws{host}", ORGS[org]),
                    "TargetUserName": format!("user{}", i % 4),
                    "IpAddress": format!("10.{org}.{host}.9"),
                    "TimeCreated": format!("2026-11-28T{:02}:{minute:02}:{:02}Z", 8 + (host * 5 + i / 2) / 60, (i * 17) % 60),
                })
                .to_string(),
            );
        }
    }
    out
}

/// An event a day after the others, which no rule matches.
fn tick(org: usize) -> String {
    serde_json::json!({
        "EventID": 4634,
        "Channel": "Security",
        "Computer": format!("{}-dc", ORGS[org]),
        "TimeCreated": "2026-11-29T12:00:00Z",
    })
    .to_string()
}

/// One request with an NDJSON body (or none).
fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> Option<(u16, String)> {
    request(port, method, path, token, "application/x-ndjson", body)
}

/// The processes of a run, killed when it ends (also when an assertion fails).
#[derive(Default)]
struct Nodes(Vec<(String, Child)>);

impl Nodes {
    fn start(&mut self, name: &str, port: u16, args: &[&str]) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nigehban"))
            .arg("serve")
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--node-name", name])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let label = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{label}] {line}");
            }
        });
        self.0.push((name.to_owned(), child));
        let t = Instant::now();
        while http(port, "GET", "/healthz", None, "").is_none_or(|(s, _)| s != 200) {
            assert!(t.elapsed() < Duration::from_secs(60), "node {name} did not answer /healthz within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self, name: &str) {
        let i = self.0.iter().position(|(n, _)| n == name).unwrap();
        let (_, mut child) = self.0.remove(i);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The same constituency in a store: returns (id → short name, a shipper token per
/// organisation, a national analyst's reading token, a national analyst's hunting token).
async fn prepare(store: &Store) -> (BTreeMap<String, String>, Vec<String>, String, String) {
    async fn org(store: &Store, kind: OrgKind, short: &str, parents: Vec<uuid::Uuid>) -> uuid::Uuid {
        let new = NewOrg {
            kind,
            name: format!("The {short}"),
            short_name: short.into(),
            sector: None,
            province: None,
            parents,
            profile: OrgProfile::default(),
        };
        store.create_org(&Actor::system(), new).await.unwrap().id
    }
    async fn token(store: &Store, org: uuid::Uuid, role: Role, scopes: &[&str]) -> String {
        let secret = nigehban_server::new_secret();
        let new = NewToken {
            org,
            created_by: None,
            name: format!("{role:?}"),
            role,
            scopes: scopes.iter().map(|s| s.parse().unwrap()).collect(),
            token_hash: nigehban_server::auth::secret_hash(&secret),
            prefix: secret[..8].to_owned(),
            expires_at: None,
        };
        store.create_token(&Actor::system(), new).await.unwrap();
        secret
    }
    let n = org(store, OrgKind::National, "ncert", vec![]).await;
    let p = org(store, OrgKind::ProvincialCert, "pcert", vec![n]).await;
    let mut names = BTreeMap::from([(p.to_string(), "pcert".to_owned())]);
    let mut shippers = Vec::new();
    for short in ORGS {
        let id = org(store, OrgKind::Organisation, short, vec![p]).await;
        names.insert(id.to_string(), short.to_owned());
        shippers.push(token(store, id, Role::OrgSecurityLead, &["events:write"]).await);
    }
    let reader = token(store, n, Role::NationalAnalyst, &["*:read"]).await;
    let hunter = token(store, n, Role::NationalAnalyst, &["events:read", "alerts:write"]).await;
    (names, shippers, reader, hunter)
}

/// Sends an organisation's events in order, in chunks, sending again what is refused.
fn ship(port: u16, token: &str, events: &[String]) -> u64 {
    let mut busy = 0;
    for chunk in events.chunks(6) {
        let body = chunk.join("\n") + "\n";
        loop {
            match http(port, "POST", "/api/v1/ingest?source=multinode", Some(token), &body) {
                Some((200, _)) => break,
                Some((429, _)) => {
                    busy += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => panic!("ingest on port {port} answered {other:?}"),
            }
        }
    }
    busy
}

type Alerts = BTreeMap<(String, String, String), (i64, String)>;

/// Every alert the token sees: (organisation, rule, entity) → (count, level).
fn alerts(port: u16, token: &str, names: &BTreeMap<String, String>) -> Alerts {
    let (status, body) = http(port, "GET", "/api/v1/alerts?limit=500", Some(token), "").unwrap();
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert!(page["next_cursor"].is_null(), "more than one page of alerts");
    let mut out = Alerts::new();
    for item in page["items"].as_array().unwrap() {
        let a = &item["alert"];
        let key = (
            names[item["owner"].as_str().unwrap()].clone(),
            a["rule_id"].as_str().unwrap().to_owned(),
            a["entity"].as_str().unwrap().to_owned(),
        );
        let value = (a["count"].as_i64().unwrap(), a["level"].as_str().unwrap().to_owned());
        assert!(out.insert(key.clone(), value).is_none(), "two alerts for {key:?}");
    }
    out
}

fn metric(port: u16, name: &str) -> Option<i64> {
    let (_, text) = http(port, "GET", "/metrics", None, "")?;
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn two_ingest_and_two_detection_nodes_lose_nothing_when_one_is_killed() {
    let (Ok(pg), Ok(nats)) = (std::env::var("NIGEHBAN_TEST_PG"), std::env::var("NIGEHBAN_TEST_NATS")) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "NIGEHBAN_TEST_PG and NIGEHBAN_TEST_NATS must be set under CI=true"
        );
        eprintln!("notice: NIGEHBAN_TEST_PG or NIGEHBAN_TEST_NATS not set; the multi-node test is skipped");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("mn.yml"), RULES).unwrap();
    // Short leases and ack waits, so that a killed node's slots and messages move on quickly.
    // The events are replayed far faster than they happened (hours of event time in seconds):
    // a message the killed node took comes back after the ack wait, behind an hour of event
    // time, so the lateness (as in a real deployment, where it exceeds the ack wait) covers it.
    let cert_rules = dir.path().join("cert-rules");
    std::fs::create_dir(&cert_rules).unwrap();
    std::fs::write(cert_rules.join("pcert.yml"), CERT_RULE).unwrap();
    let config = dir.path().join("node.yml");
    std::fs::write(
        &config,
        format!(
            "bus:\n  ack_wait_seconds: 2\nmonitoring:\n  detect_lease_seconds: 2\n  lateness_seconds: 7200\n  \
             cert_rules:\n    pcert: [{}]\n",
            cert_rules.display()
        ),
    )
    .unwrap();
    let reference_data = dir.path().join("reference");

    let db = rt.block_on(FreshDatabase::create(&pg)).unwrap();
    let (names, shippers, reader, hunter, ref_names, ref_shippers, ref_reader) = rt.block_on(async {
        let store = Store::open_postgres(&db.url).await.unwrap();
        let (names, shippers, reader, hunter) = prepare(&store).await;
        store.close().await;
        let store = Store::open_sqlite(&reference_data).await.unwrap();
        let (ref_names, ref_shippers, ref_reader, _) = prepare(&store).await;
        store.close().await;
        (names, shippers, reader, hunter, ref_names, ref_shippers, ref_reader)
    });
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let prefix = format!("mn{}_{nanos}", std::process::id());
    let rules_arg = rules.to_str().unwrap();
    let config_arg = config.to_str().unwrap();
    let scale_out =
        ["--database", db.url.as_str(), "--bus", nats.as_str(), "--bus-prefix", &prefix, "--config", config_arg];

    let mut nodes = Nodes::default();
    let ports: BTreeMap<&str, u16> =
        ["d1", "d2", "i1", "i2", "api", "reference"].into_iter().map(|n| (n, free_port())).collect();
    for d in ["d1", "d2"] {
        nodes.start(d, ports[d], &[&scale_out[..], &["--role", "detect", "--rules", rules_arg]].concat());
    }
    for i in ["i1", "i2"] {
        nodes.start(i, ports[i], &[&scale_out[..], &["--role", "ingest"]].concat());
    }
    nodes.start("api", ports["api"], &[&scale_out[..], &["--role", "api"]].concat());
    nodes.start(
        "reference",
        ports["reference"],
        &["--data", reference_data.to_str().unwrap(), "--rules", rules_arg, "--config", config_arg],
    );
    // Roles: an ingest node does not serve the API, the API node takes no events.
    let (status, body) = http(ports["i1"], "GET", "/api/v1/alerts", Some(&reader), "").unwrap();
    assert!(status == 404 && body.contains("not_on_this_node"), "{status} {body}");
    let (status, _) = http(ports["api"], "POST", "/api/v1/ingest", Some(&shippers[0]), "{}\n").unwrap();
    assert_eq!(status, 404);

    // Each organisation ships through one of the two ingest nodes (and the same events to the
    // reference); the first detection node is killed while they do.
    let senders: Vec<_> = (0..ORGS.len())
        .map(|o| {
            let (port, token, ref_port, ref_token) = (
                ports[if o % 2 == 0 { "i1" } else { "i2" }],
                shippers[o].clone(),
                ports["reference"],
                ref_shippers[o].clone(),
            );
            std::thread::spawn(move || {
                let events = events(o);
                ship(port, &token, &events) + ship(ref_port, &ref_token, &events)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let holders = rt.block_on(async {
        let store = Store::open_postgres(&db.url).await.unwrap();
        let h = store.detect_lease_holders().await.unwrap();
        store.close().await;
        h
    });
    let d1 = holders.iter().filter(|h| h.0 < nigehban_store::SLOTS && h.1.as_deref() == Some("d1")).count();
    assert!(d1 > 0 && d1 < 32, "the two detection nodes do not share the slots: {holders:?}");
    nodes.kill("d1");
    let busy: u64 = senders.into_iter().map(|s| s.join().unwrap()).sum();
    let want = (0..ORGS.len()).map(|o| events(o).len() as i64).sum::<i64>();
    let store = rt.block_on(Store::open_postgres(&db.url)).unwrap();
    let t = Instant::now();
    while rt.block_on(store.count_events()).unwrap() < want {
        assert!(t.elapsed() < Duration::from_secs(60), "the events did not all arrive");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Once everything has arrived, a day later in event time, one event per organisation
    // closes every correlation window, in both deployments.
    for (o, (shipper, ref_shipper)) in shippers.iter().zip(&ref_shippers).enumerate() {
        let tick = vec![tick(o)];
        ship(ports[if o % 2 == 0 { "i1" } else { "i2" }], shipper, &tick);
        ship(ports["reference"], ref_shipper, &tick);
    }
    let want = want + ORGS.len() as i64;

    // Everything arrives, once, and is detected; the surviving node holds every slot.
    let t = Instant::now();
    loop {
        let (stored, backlog, lane_behind) = rt.block_on(async {
            let lane = store.cursor(nigehban_store::CERT_CURSOR).await.unwrap().map_or(0, |c| c.0);
            let last = store.last_event_id().await.unwrap();
            (store.count_events().await.unwrap(), store.slot_backlog().await.unwrap(), last - lane)
        });
        assert!(stored <= want, "{stored} events stored for {want} sent");
        let reference_done = metric(ports["reference"], "nigehban_detect_backlog ") == Some(0);
        // The dead node's slots (and the CERT lane, if it held it) move once its leases
        // expire (slots without events too).
        let holders = rt.block_on(store.detect_lease_holders()).unwrap();
        let moved = holders.iter().all(|h| h.1.as_deref() == Some("d2"));
        if stored == want && backlog == 0 && lane_behind == 0 && reference_done && moved {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "not caught up: {stored} of {want} stored, backlog {backlog}, the CERT lane {lane_behind} behind"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let got = alerts(ports["api"], &reader, &names);
    let expected = alerts(ports["reference"], &ref_reader, &ref_names);
    let failures: i64 = (0..ORGS.len()).map(|o| events(o).iter().filter(|e| e.contains("4625")).count() as i64).sum();
    let simple: i64 = expected.iter().filter(|(k, _)| k.1.ends_with("9d01")).map(|(_, v)| v.0).sum();
    assert_eq!(simple, failures, "the reference is wrong");
    assert!(expected.keys().any(|k| k.1.ends_with("9d02")), "no correlation alert in the reference");
    let user0_failures = (0..ORGS.len())
        .flat_map(events)
        .filter(|e| e.contains("4625") && e.contains(r#""TargetUserName":"user0""#))
        .count() as i64;
    let cert: i64 = expected.iter().filter(|(k, _)| k.0 == "pcert" && k.1.ends_with("9d03")).map(|(_, v)| v.0).sum();
    assert_eq!(cert, user0_failures, "the reference's CERT alerts: {expected:#?}");
    assert!(user0_failures > 0);
    assert_eq!(got, expected, "the scale-out alerts differ from the embedded server's");
    eprintln!(
        "multi-node: {want} events through 2 ingest and 2 detection nodes (one killed), {} alerts as the \
         embedded server's, {busy} requests pushed back",
        got.len()
    );

    // A retro-hunt through the API node (which runs them in the scale-out mode): who talked to
    // the ministry's first workstation's address.
    let body = r#"{"title": "multi-node", "indicators": ["10.0.0.9"], "from": "2026-11-28T00:00:00Z", "to": "2026-11-30T00:00:00Z"}"#;
    let (status, created) =
        request(ports["api"], "POST", "/api/v1/retrohunts", Some(&hunter), "application/json", body).unwrap();
    assert_eq!(status, 202, "{created}");
    let id = serde_json::from_str::<Value>(&created).unwrap()["id"].as_str().unwrap().to_owned();
    let t = Instant::now();
    let hunt = loop {
        let (_, body) = http(ports["api"], "GET", &format!("/api/v1/retrohunts/{id}"), Some(&hunter), "").unwrap();
        let hunt: Value = serde_json::from_str(&body).unwrap();
        if hunt["status"] != "queued" && hunt["status"] != "running" {
            break hunt;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "the retro-hunt did not end: {hunt}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(hunt["status"], "done", "{hunt}");
    assert_eq!(hunt["progress"]["matches"], PER_HOST as i64, "{hunt}");

    drop(nodes);
    rt.block_on(async {
        store.close().await;
        if let Ok(bus) = nigehban_bus::JetStreamBus::connect(
            &nats,
            nigehban_bus::BusConfig { prefix: prefix.clone(), ..Default::default() },
        )
        .await
        {
            let _ = bus.delete_stream().await;
        }
        db.drop_now().await.unwrap();
    });
}
