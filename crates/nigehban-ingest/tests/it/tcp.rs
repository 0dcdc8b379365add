use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nigehban_ingest::{SourceKind, Spawned, SyslogTcpConfig, spawn_syslog_tcp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::{Harness, ack, collect, eventually, harness, loopback_is, next_batch, nobody};

async fn listen(h: &Harness, cfg: SyslogTcpConfig) -> Spawned {
    spawn_syslog_tcp(&cfg, loopback_is("org-a"), h.tx.clone(), h.metrics.clone(), h.shutdown.clone())
        .await
        .expect("listen")
}

fn config() -> SyslogTcpConfig {
    SyslogTcpConfig::new("127.0.0.1:0".parse().expect("addr"))
}

/// True when the server has closed the connection (read gives end of stream or an error).
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn octet_counted_and_newline_framed_messages_in_one_stream() {
    let mut h = harness(16);
    let s = listen(&h, config()).await;
    let mut c = TcpStream::connect(s.local_addr.expect("bound")).await.expect("connect");
    // An embedded newline under octet counting, CRLF, then a message split across reads.
    c.write_all(b"16 <13>first\nsecond<13>crlf\r\n<13>spl").await.expect("write");
    c.flush().await.expect("flush");
    let first = next_batch(&mut h.rx).await;
    assert_eq!(first.origin.org, "org-a");
    assert_eq!(first.origin.source, "syslog-tcp 127.0.0.1");
    assert!(first.ack.is_some(), "TCP batches carry an ack");
    let mut got = ack(first);
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.write_all(b"it\n24 <13>octets again\nwith LF").await.expect("write");
    c.shutdown().await.expect("close");
    got.extend(collect(&mut h.rx, 4 - got.len()).await);
    assert_eq!(got, ["<13>first\nsecond", "<13>crlf", "<13>split", "<13>octets again\nwith LF"]);
    assert_eq!(h.metrics.records(SourceKind::SyslogTcp), 4);
}

#[tokio::test]
async fn a_fast_sender_stalls_until_batches_are_acknowledged() {
    let mut h = harness(4);
    let s = listen(&h, config()).await;
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_send_buffer_size(16 * 1024).expect("send buffer");
    let mut c = socket.connect(s.local_addr.expect("bound")).await.expect("connect");
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, stop) = (written.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 2_000_000 {
                let line = format!("<13>line {n:08} {}\n", "x".repeat(1000));
                c.write_all(line.as_bytes()).await.expect("write");
                n += 1;
                written.store(n, Ordering::Relaxed);
            }
            c.shutdown().await.expect("close");
            n
        })
    };
    // Take the first batch and do not acknowledge it.
    let held = next_batch(&mut h.rx).await;
    let mut received = held.records.len() as u64;
    // The writer stalls: the source reads nothing more until the ack.
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = written.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        assert!(now < 1_000_000, "the writer never stalled ({now} lines written)");
        last = now;
    }
    assert!(h.rx.try_recv().is_err(), "no batch is read before the ack");
    let stalled_at = last;
    let _ = held.ack.expect("ack").send(Ok(()));
    // Acknowledged, the source reads on and the writer resumes.
    let more = next_batch(&mut h.rx).await;
    // The batch after the stall takes what waited in the socket's buffer, beyond one read
    // (64 KiB: 64 of these lines).
    assert!(more.records.len() > 64, "{} records in the batch after the stall", more.records.len());
    received += more.records.len() as u64;
    let _ = more.ack.expect("ack").send(Ok(()));
    let w = written.clone();
    let drain = tokio::spawn(async move {
        let mut n = 0;
        while let Some(b) = h.rx.recv().await {
            n += b.records.len() as u64;
            if let Some(a) = b.ack {
                let _ = a.send(Ok(()));
            }
        }
        n
    });
    eventually("the writer to resume", || w.load(Ordering::Relaxed) > stalled_at + 1000).await;
    stop.store(true, Ordering::Relaxed);
    let total = writer.await.expect("writer");
    // Everything written arrives once: nothing lost, nothing read ahead of its ack.
    let m = h.metrics.clone();
    eventually("every line to arrive", || m.records(SourceKind::SyslogTcp) == total).await;
    h.stop.send(true).expect("stop");
    drop(s);
    let _ = tokio::time::timeout(Duration::from_millis(200), drain).await;
    assert!(received <= total);
}

#[tokio::test]
async fn a_refused_batch_closes_the_connection() {
    let mut h = harness(16);
    let s = listen(&h, config()).await;
    let mut c = TcpStream::connect(s.local_addr.expect("bound")).await.expect("connect");
    c.write_all(b"<13>refuse me\n").await.expect("write");
    let b = next_batch(&mut h.rx).await;
    let _ = b.ack.expect("ack").send(Err("organisation over quota".into()));
    assert!(closed_by_server(&mut c).await);
    assert_eq!(h.metrics.batches_refused(SourceKind::SyslogTcp), 1);
}

#[tokio::test]
async fn unmapped_senders_and_connections_over_the_limit_are_closed() {
    let h = harness(16);
    let s = spawn_syslog_tcp(&config(), nobody(), h.tx.clone(), h.metrics.clone(), h.shutdown.clone())
        .await
        .expect("listen");
    let mut c = TcpStream::connect(s.local_addr.expect("bound")).await.expect("connect");
    assert!(closed_by_server(&mut c).await);
    assert_eq!(h.metrics.unmapped_refused(SourceKind::SyslogTcp), 1);

    let mut h = harness(16);
    let mut cfg = config();
    cfg.max_connections = 1;
    let s = listen(&h, cfg).await;
    let addr = s.local_addr.expect("bound");
    let mut first = TcpStream::connect(addr).await.expect("connect");
    first.write_all(b"<13>hello\n").await.expect("write");
    assert_eq!(ack(next_batch(&mut h.rx).await), ["<13>hello"]);
    let mut second = TcpStream::connect(addr).await.expect("connect");
    assert!(closed_by_server(&mut second).await);
    assert_eq!(h.metrics.connections_over_limit(SourceKind::SyslogTcp), 1);
    assert_eq!(h.metrics.connections_open(SourceKind::SyslogTcp), 1);
    drop(first);
    let m = h.metrics.clone();
    eventually("the connection to close", || m.connections_open(SourceKind::SyslogTcp) == 0).await;
}
