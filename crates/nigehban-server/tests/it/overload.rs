//! Overload, end to end: senders faster than detection are pushed back (429 with Retry-After)
//! and send again; at the end every event is stored exactly once, detection has caught up and
//! the alerts count every matching event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nigehban_policy::{OrgKind, Role};
use nigehban_server::monitor::MonitorConfig;
use serde_json::Value;

use crate::common::{TestServer, backends, client, org, token};

const RULE: &str = r#"
title: Failed log-on (overload test)
id: 3e0b8f51-6a2d-4f7c-9b1e-0d4c5a6f7e01
status: test
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 4625
  condition: sel
level: low
"#;

const SENDERS: u64 = 4;
const REQUESTS: u64 = 15;
const PER_REQUEST: u64 = 200;

fn body(sender: u64, request: u64) -> String {
    (0..PER_REQUEST)
        .map(|i| {
            let n = (sender * REQUESTS + request) * PER_REQUEST + i;
            serde_json::json!({
                "seq": n.to_string(),
                "EventID": if n.is_multiple_of(10) { 4625 } else { 4624 },
                "Channel": "Security",
                "Computer": format!("ws{}", n % 7),
                "TargetUserName": format!("user{}", n % 13),
                "TimeCreated": format!("2026-11-28T10:{:02}:{:02}Z", (n / 60) % 60, n % 60),
            })
            .to_string()
                + "\n"
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn senders_faster_than_detection_are_pushed_back_and_nothing_acknowledged_is_lost() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("overload.yml"), RULE).unwrap();
    for backend in backends() {
        // A small backlog allowance and small detection batches: detection (with the built-in
        // pack) falls behind four senders at once.
        let config = MonitorConfig { max_backlog: 1_000, detect_batch: 100, ..MonitorConfig::default() };
        let server = TestServer::start_monitored(backend, config, vec![rules.path().to_path_buf()], true).await;
        let s = server.store();
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let m = org(s, OrgKind::Organisation, "ministry", &[p]).await;
        let shipper = token(s, m, Role::OrgSecurityLead, &["events:write"]).await;
        let reader = token(s, m, Role::OrgSecurityLead, &["*:read"]).await;

        let pushed_back = Arc::new(AtomicU64::new(0));
        let senders: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let (url, shipper, pushed_back) =
                    (server.url("/api/v1/ingest?source=flood"), shipper.clone(), pushed_back.clone());
                tokio::spawn(async move {
                    let mut accepted = 0;
                    for request in 0..REQUESTS {
                        let body = body(sender, request);
                        loop {
                            let resp =
                                client().post(&url).bearer_auth(&shipper).body(body.clone()).send().await.unwrap();
                            match resp.status().as_u16() {
                                200 => {
                                    let out: Value = resp.json().await.unwrap();
                                    accepted += out["accepted"].as_u64().unwrap();
                                    break;
                                }
                                429 => {
                                    assert!(resp.headers().contains_key("retry-after"));
                                    pushed_back.fetch_add(1, Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                                other => panic!("ingest answered {other}"),
                            }
                        }
                    }
                    accepted
                })
            })
            .collect();
        let mut accepted = 0;
        for s in senders {
            accepted += s.await.unwrap();
        }
        let want = SENDERS * REQUESTS * PER_REQUEST;
        assert_eq!(accepted, want);
        assert!(pushed_back.load(Ordering::Relaxed) > 0, "no sender was pushed back: the test did not overload");

        // Detection catches up; every event is stored once.
        let t = Instant::now();
        loop {
            let metrics = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
            if metrics.lines().any(|l| l == "nigehban_detect_backlog 0") {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(120), "detection did not catch up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(s.count_events().await.unwrap() as u64, want);
        let mut seen = std::collections::HashSet::new();
        let mut after = 0;
        loop {
            let page = s.events_after(after, 10_000).await.unwrap();
            let Some(last) = page.last().map(|e| e.id) else { break };
            for e in &page {
                let ev = nigehban_event::codec::decode(&e.record, nigehban_event::Source::file("x")).unwrap();
                let seq: String = ev.get("seq").and_then(|v| v.as_text()).map(|t| t.to_string()).unwrap();
                assert!(seen.insert(seq.clone()), "event {seq} stored twice");
            }
            after = last;
        }
        assert_eq!(seen.len() as u64, want);

        // Every failed log-on is counted in the alerts of the rule (one per host and hour).
        let page: Value = client()
            .get(server.url("/api/v1/alerts?limit=500"))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let counted: i64 = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["alert"]["rule_id"] == "3e0b8f51-6a2d-4f7c-9b1e-0d4c5a6f7e01")
            .map(|a| a["alert"]["count"].as_i64().unwrap())
            .sum();
        assert_eq!(counted as u64, want / 10);
        eprintln!(
            "overload ({backend:?}): {want} events from {SENDERS} senders, {} requests pushed back, all stored once",
            pushed_back.load(Ordering::Relaxed)
        );
        server.stop().await;
    }
}
