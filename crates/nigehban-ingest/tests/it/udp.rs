use std::time::Duration;

use nigehban_ingest::{SourceKind, SyslogUdpConfig, spawn_syslog_udp};
use tokio::net::UdpSocket;

use crate::{eventually, harness, loopback_is, next_batch, nobody, texts};

fn config() -> SyslogUdpConfig {
    SyslogUdpConfig::new("127.0.0.1:0".parse().expect("addr"))
}

#[tokio::test]
async fn datagrams_arrive_as_records() {
    let mut h = harness(16);
    let s = spawn_syslog_udp(&config(), loopback_is("org-a"), h.tx.clone(), h.metrics.clone(), h.shutdown.clone())
        .await
        .expect("listen");
    let addr = s.local_addr.expect("bound");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    for m in ["<13>one\n", "<13>two\0", "<13>three", "\n"] {
        client.send_to(m.as_bytes(), addr).await.expect("send");
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let b = next_batch(&mut h.rx).await;
        assert_eq!(b.origin.org, "org-a");
        assert_eq!(b.origin.source, "syslog-udp 127.0.0.1");
        assert_eq!(b.format.as_deref(), Some("syslog"));
        assert!(b.ack.is_none());
        got.extend(texts(&b));
    }
    assert_eq!(got, ["<13>one", "<13>two", "<13>three"]);
    assert_eq!(h.metrics.records(SourceKind::SyslogUdp), 3);
    h.stop.send(true).expect("stop");
    tokio::time::timeout(Duration::from_secs(5), s.task).await.expect("stops").expect("no panic");
}

#[tokio::test]
async fn unmapped_senders_are_dropped_and_counted() {
    let mut h = harness(16);
    let s = spawn_syslog_udp(&config(), nobody(), h.tx.clone(), h.metrics.clone(), h.shutdown.clone())
        .await
        .expect("listen");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    client.send_to(b"<13>who am I", s.local_addr.expect("bound")).await.expect("send");
    let m = h.metrics.clone();
    eventually("the refusal to be counted", || m.unmapped_refused(SourceKind::SyslogUdp) == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(h.rx.try_recv().is_err(), "nothing handed over");
}

#[tokio::test]
async fn a_full_channel_drops_and_counts_instead_of_blocking() {
    // Nobody receives: the channel (capacity 1) fills after the first batch.
    let h = harness(1);
    let mut cfg = config();
    cfg.batch_records = 1;
    let s = spawn_syslog_udp(&cfg, loopback_is("org-a"), h.tx.clone(), h.metrics.clone(), h.shutdown.clone())
        .await
        .expect("listen");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    for i in 0..20 {
        client.send_to(format!("<13>m{i}").as_bytes(), s.local_addr.expect("bound")).await.expect("send");
    }
    let m = h.metrics.clone();
    eventually("drops to be counted", || m.records(SourceKind::SyslogUdp) + m.udp_dropped() == 20).await;
    assert_eq!(h.metrics.records(SourceKind::SyslogUdp), 1);
    assert!(h.metrics.render_prometheus().contains("nigehban_ingest_udp_dropped_total 19\n"));
}
