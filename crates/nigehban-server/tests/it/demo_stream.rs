//! The demo's live feed on a monitored server over the demo constituency: its events are
//! stored and detected, and its attacks become alerts that the national analyst sees.

use std::time::{Duration, Instant};

use nigehban_server::demo;
use nigehban_server::monitor::MonitorConfig;
use nigehban_server::monitor::demo_stream::{self, StreamSettings};
use serde_json::Value;

use crate::common::{TestServer, backends, client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_stream_raises_alerts_on_a_monitored_server() {
    for backend in backends() {
        // Event time runs ten times faster than real time: a lateness of 5 s of event time is
        // half a second of waiting.
        let config = MonitorConfig { lateness: Duration::from_secs(5), ..MonitorConfig::default() };
        let server = TestServer::start_monitored(backend, config, Vec::new(), true).await;
        let users = demo::seed(server.store()).await.unwrap();
        let token = users.iter().find(|u| u.username == "national.analyst").unwrap().api_token.clone();
        let orgs = demo_stream::sources(server.store()).await.unwrap();
        let shorts: Vec<&str> = orgs.iter().map(|o| o.short.as_str()).collect();
        assert_eq!(shorts, ["sogc", "ntc", "itboard", "mofa", "mof", "moi"]);
        let monitor = server.state.monitor().unwrap().clone();
        let settings = StreamSettings {
            seed: 9,
            events_per_second: 20,
            first_attack: (Duration::from_secs(5), Duration::from_secs(10)),
            tick: Duration::from_millis(100),
            speed: 10,
            keep_events: None,
            ..StreamSettings::default()
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let stream = tokio::spawn(demo_stream::run(monitor, orgs, settings, stopped));
        let started = Instant::now();
        let mut alerts = Vec::new();
        while started.elapsed() < Duration::from_secs(15) {
            let page: Value = client()
                .get(server.url("/api/v1/alerts?min_level=medium"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            alerts = page["items"].as_array().cloned().unwrap_or_default();
            if !alerts.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = stop.send(true);
        tokio::time::timeout(Duration::from_secs(5), stream).await.expect("the stream stops").unwrap();
        let events = server.store().count_events().await.unwrap();
        assert!(!alerts.is_empty(), "{backend:?}: no alert at medium or above in 15 s ({events} events stored)");
        assert!(events > 100, "{backend:?}: {events} events stored");
        let alert = &alerts[0]["alert"];
        assert!(alert["rule_title"].is_string() && alert["level"].is_string(), "{alert}");
        eprintln!(
            "{backend:?}: after {:.1} s, {} alert(s), the first {:?} ({})",
            started.elapsed().as_secs_f64(),
            alerts.len(),
            alert["rule_title"],
            alert["level"]
        );
        server.stop().await;
    }
}
