//! Live monitoring through HTTP: ingest, detection, alerts, evidence, triage, event search and
//! push-back.

use std::time::Duration;

use nigehban_policy::{OrgKind, Role};
use nigehban_server::monitor::MonitorConfig;
use serde_json::Value;

use crate::common::{TestServer, backends, client, org, token};

const RULE: &str = r#"
title: Reconnaissance with whoami
id: 5b6f0a6e-2f8c-4d53-9a4a-2f1f6c7f1a01
status: test
logsource: {product: windows, category: process_creation}
detection:
  sel:
    Image|endswith: '\whoami.exe'
  condition: sel
level: high
tags: [attack.discovery, attack.t1033]
"#;

fn sysmon(host: &str, image: &str, second: u32) -> String {
    serde_json::json!({
        "EventID": 1,
        "Channel": "Microsoft-Windows-Sysmon/Operational",
        "Computer": host,
        "Image": image,
        "CommandLine": image,
        "UtcTime": format!("2026-11-28 10:00:{:02}.000", second % 60),
    })
    .to_string()
}

async fn wait_for_alerts(server: &TestServer, token: &str, want: usize) -> Vec<Value> {
    for _ in 0..200 {
        let page: Value =
            client().get(server.url("/api/v1/alerts")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= want {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {want} alerts in time");
}

#[tokio::test]
async fn ingested_events_become_deduplicated_alerts_visible_per_the_policy() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("whoami.yml"), RULE).unwrap();
    for backend in backends() {
        let server =
            TestServer::start_monitored(backend, MonitorConfig::default(), vec![rules.path().to_path_buf()], true)
                .await;
        let s = server.store();
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let m = org(s, OrgKind::Organisation, "ministry", &[p]).await;
        let m2 = org(s, OrgKind::Organisation, "ministry2", &[p]).await;
        let shipper = token(s, m, Role::OrgSecurityLead, &["events:write"]).await;
        let reader = token(s, m, Role::OrgSecurityLead, &["*:read"]).await;
        let other = token(s, m2, Role::OrgSecurityLead, &["*:read"]).await;
        let cert = token(s, p, Role::CertAnalyst, &["*:read"]).await;

        // 3 matches on one host (one alert, count 3), 1 on another, 1 benign, 1 malformed line.
        let mut body = String::new();
        for (i, (host, image)) in [
            ("ws1", r"C:\Windows\System32\whoami.exe"),
            ("ws1", r"C:\Windows\System32\whoami.exe"),
            ("ws2", r"C:\Windows\System32\whoami.exe"),
            ("ws1", r"C:\Windows\System32\notepad.exe"),
            ("ws1", r"C:\Windows\System32\whoami.exe"),
        ]
        .iter()
        .enumerate()
        {
            body.push_str(&sysmon(host, image, i as u32));
            body.push('\n');
            if i == 2 {
                body.push_str("{\"broken\": \n");
            }
        }
        // Gzip, as shippers send it.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, body.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        let resp = client()
            .post(server.url("/api/v1/ingest?source=ws-fleet"))
            .bearer_auth(&shipper)
            .header("content-encoding", "gzip")
            .header("content-type", "application/x-ndjson")
            .body(gz)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let out: Value = resp.json().await.unwrap();
        assert_eq!(out["accepted"], 5, "{out}");
        assert_eq!(out["rejected"], 1);
        assert_eq!(out["errors"][0]["line"], 4, "the malformed line is named");

        let alerts = wait_for_alerts(&server, &reader, 2).await;
        assert_eq!(alerts.len(), 2, "{alerts:?}");
        let ws1 = alerts.iter().find(|a| a["alert"]["entity"] == "ws1").unwrap();
        assert_eq!(ws1["alert"]["count"], 3);
        assert_eq!(ws1["alert"]["level"], "high");
        assert_eq!(ws1["tlp"], "AMBER+STRICT");
        assert_eq!(ws1["owner"], m.to_string());
        let id = ws1["id"].as_str().unwrap();

        // The CERT sees it; another ministry does not, not even by id.
        assert_eq!(wait_for_alerts(&server, &cert, 2).await.len(), 2);
        let page: Value =
            client().get(server.url("/api/v1/alerts")).bearer_auth(&other).send().await.unwrap().json().await.unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 0);
        let r = client()
            .get(server.url(&format!("/api/v1/alerts/{id}/evidence")))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        // Evidence names the events; each opens in the event store.
        let ev: Value = client()
            .get(server.url(&format!("/api/v1/alerts/{id}/evidence")))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = ev["items"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        let event_id = items[0]["event_id"].as_i64().unwrap();
        let e: Value = client()
            .get(server.url(&format!("/api/v1/events/log/{event_id}")))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(e["host"], "ws1");
        assert_eq!(e["fields"]["Image"], r"C:\Windows\System32\whoami.exe");
        assert!(e["raw"].as_str().unwrap().contains("whoami"));
        let r = client()
            .get(server.url(&format!("/api/v1/events/log/{event_id}")))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        // Search: text, host; filters alerts by level and status.
        let found: Value = client()
            .get(server.url("/api/v1/events/search?q=notepad"))
            .bearer_auth(&cert)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(found["items"].as_array().unwrap().len(), 1);
        let high: Value = client()
            .get(server.url("/api/v1/alerts?min_level=critical"))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(high["items"].as_array().unwrap().len(), 0);

        // Triage needs write: a read-only token is refused; the CERT analyst's session would do.
        let r = client()
            .post(server.url(&format!("/api/v1/alerts/{id}/status")))
            .bearer_auth(&reader)
            .json(&serde_json::json!({"status": "acknowledged"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let triage = token(s, p, Role::CertAnalyst, &["alerts:write", "alerts:read"]).await;
        let r = client()
            .post(server.url(&format!("/api/v1/alerts/{id}/status")))
            .bearer_auth(&triage)
            .json(&serde_json::json!({"status": "acknowledged"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let new_only: Value = client()
            .get(server.url("/api/v1/alerts?status=new"))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(new_only["items"].as_array().unwrap().len(), 1);

        // A token without events:write cannot ingest; RED is refused; unknown formats are a 400.
        let r = client().post(server.url("/api/v1/ingest")).bearer_auth(&reader).body("{}\n").send().await.unwrap();
        assert_eq!(r.status(), 403);
        let r = client()
            .post(server.url("/api/v1/ingest?tlp=RED"))
            .bearer_auth(&shipper)
            .body("{}\n")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = client()
            .post(server.url("/api/v1/ingest"))
            .bearer_auth(&shipper)
            .body("\u{1}\u{2}garbage")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = client().post(server.url("/api/v1/ingest")).body("{}\n").send().await.unwrap();
        assert_eq!(r.status(), 401);

        let metrics = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("nigehban_events_stored_total 5"), "{metrics}");
        assert!(metrics.contains("nigehban_records_rejected_total 1"));
        assert!(s.verify_audit().await.unwrap().ok());
        server.stop().await;
    }
}

#[tokio::test]
async fn ingest_pushes_back_when_detection_is_behind_and_stores_nothing_it_refuses() {
    for backend in backends() {
        let config = MonitorConfig { max_backlog: 3, ..MonitorConfig::default() };
        // Detection is not running: stored events wait.
        let server = TestServer::start_monitored(backend, config, Vec::new(), false).await;
        let s = server.store();
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let shipper = token(s, n, Role::NationalAnalyst, &["events:write"]).await;
        let batch = |k: usize| (0..k).map(|i| sysmon("h", "x.exe", i as u32) + "\n").collect::<String>();
        let r = client().post(server.url("/api/v1/ingest")).bearer_auth(&shipper).body(batch(4)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = client().post(server.url("/api/v1/ingest")).bearer_auth(&shipper).body(batch(2)).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(s.count_events().await.unwrap(), 4, "a refused batch is not stored");
        server.stop().await;
    }
}

#[tokio::test]
async fn correlation_counts_across_requests_and_fires_once_the_window_is_decided() {
    for backend in backends() {
        let server = TestServer::start_monitored(backend, MonitorConfig::default(), Vec::new(), true).await;
        let s = server.store();
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::SectoralCert, "telecom-cert", &[n]).await;
        let m = org(s, OrgKind::Organisation, "telecom", &[p]).await;
        let shipper = token(s, m, Role::OrgSecurityLead, &["events:write"]).await;
        let reader = token(s, m, Role::OrgSecurityLead, &["*:read"]).await;
        let line = |minute: u32, second: u32, msg: &str| {
            format!("<38>1 2026-11-28T10:{minute:02}:{second:02}Z bastion sshd 4242 - - {msg}\n")
        };
        let fail = |second: u32| line(0, second, "Failed password for root from 203.0.113.9 port 50022 ssh2");
        // Twelve failures for one account, sent in two requests.
        for part in [0..6u32, 6..12] {
            let body: String = part.map(fail).collect();
            let r = client()
                .post(server.url("/api/v1/ingest?source=bastion"))
                .bearer_auth(&shipper)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
        // Later events move the organisation's watermark past the window.
        let later = line(20, 0, "Accepted publickey for deploy from 198.51.100.7 port 40000 ssh2");
        let r = client()
            .post(server.url("/api/v1/ingest?source=bastion"))
            .bearer_auth(&shipper)
            .body(later)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut found = None;
        for _ in 0..200 {
            let page: Value = client()
                .get(server.url("/api/v1/alerts?min_level=medium"))
                .bearer_auth(&reader)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            found = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["alert"]["rule_title"] == "Brute force against one account")
                .cloned();
            if found.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let alert = found.expect("the brute-force correlation fired");
        assert_eq!(alert["alert"]["engine"], "correlation", "{alert}");
        assert_eq!(alert["alert"]["count"], 1, "one correlation hit, not one per failure: {alert}");
        let metrics = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("nigehban_detect_backlog 0"), "{metrics}");
        server.stop().await;
    }
}

#[tokio::test]
async fn retention_deletes_old_events_per_organisation_but_never_undetected_ones() {
    for backend in backends() {
        let mut config = MonitorConfig { retention_days: 30, ..MonitorConfig::default() };
        config.retention_by_org.insert("keepall".into(), 0);
        let server = TestServer::start_monitored(backend, config, Vec::new(), false).await;
        let s = server.store();
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let a = org(s, OrgKind::Organisation, "short", &[p]).await;
        let b = org(s, OrgKind::Organisation, "keepall", &[p]).await;
        let old = |org| nigehban_store::NewEvent {
            org,
            tlp: nigehban_policy::Tlp::AmberStrict,
            ts: Some(0),
            source: "s".into(),
            dataset: None,
            host: None,
            record: b"{}".to_vec(),
        };
        s.append_events(&[old(a), old(b)], None).await.unwrap();
        // Received now, so not old yet: nothing goes.
        let monitor = server.state.monitor().unwrap().clone();
        assert_eq!(nigehban_server::monitor::sweep_retention(&monitor).await.unwrap(), 0);
        // Pretend they were received 40 days ago.
        let forty_days_ago = jiff::Timestamp::now().as_microsecond() - 40 * 86_400_000_000;
        nigehban_store::testing::execute_unchecked(s, &format!("UPDATE events SET received_at = {forty_days_ago}"))
            .await
            .unwrap();
        assert_eq!(
            nigehban_server::monitor::sweep_retention(&monitor).await.unwrap(),
            0,
            "detection has not passed them"
        );
        monitor.set_detected_for_tests(i64::MAX - 1);
        assert_eq!(
            nigehban_server::monitor::sweep_retention(&monitor).await.unwrap(),
            1,
            "only the 30-day organisation's"
        );
        assert_eq!(s.count_events().await.unwrap(), 1);
        server.stop().await;
    }
}
