//! The behaviour both implementations share.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nigehban_bus::{
    Bus, BusConfig, BusError, Consumer, ConsumerName, Delivery, Filter, InProcessBus, JetStreamBus, OrgId,
};

use crate::both;
use crate::harness::{Env, Kind, config};

both!(
    publish_consume_ack,
    fetch_returns_when_a_message_arrives,
    unacknowledged_messages_are_delivered_again,
    full_bus_pushes_back,
    too_large_is_refused,
    subjects_per_organisation,
    overlapping_consumers_are_refused,
    restarted_consumer_continues,
    concurrent_publishers_and_workers_lose_nothing,
);

fn org(id: &str) -> OrgId {
    OrgId::new(id).unwrap()
}

fn name(name: &str) -> ConsumerName {
    ConsumerName::new(name).unwrap()
}

fn payload(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn texts(batch: &[Delivery]) -> Vec<String> {
    batch.iter().map(|d| String::from_utf8(d.payload().to_vec()).unwrap()).collect()
}

async fn ack_all(batch: &[Delivery]) {
    for delivery in batch {
        delivery.ack().await.unwrap();
    }
}

/// Fetches until `want` messages arrived or `within` passed.
async fn fetch_n(consumer: &Consumer, want: usize, within: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + within;
    let mut all = Vec::new();
    while all.len() < want && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = consumer.fetch(want - all.len(), left.min(Duration::from_millis(500))).await.unwrap();
        all.extend(batch);
    }
    all
}

async fn publish_consume_ack(env: Env) {
    let bus = env.bus(config()).await;
    let a = org("org-a");
    let mut sequences = Vec::new();
    for text in ["one", "two", "three"] {
        sequences.push(bus.publish(&a, payload(text)).await.unwrap().sequence);
    }
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");

    let consumer = bus.consumer(&name("detect"), Filter::All).await.unwrap();
    let batch = consumer.fetch(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(texts(&batch), ["one", "two", "three"]);
    assert_eq!(batch.iter().map(Delivery::sequence).collect::<Vec<_>>(), sequences);
    assert!(batch.iter().all(|d| d.org() == &a && d.attempt() == 1));
    ack_all(&batch).await;

    // Nothing left: an empty fetch returns after about its wait.
    let started = Instant::now();
    let batch = consumer.fetch(10, Duration::from_millis(300)).await.unwrap();
    assert!(batch.is_empty(), "{:?}", texts(&batch));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(7), "{waited:?}");
    // Not even after the ack wait.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(consumer.fetch(10, Duration::from_millis(200)).await.unwrap().is_empty());

    // A batch is cut at `max`.
    for i in 0..5 {
        bus.publish(&a, payload(&format!("m{i}"))).await.unwrap();
    }
    let first = consumer.fetch(2, Duration::from_secs(2)).await.unwrap();
    assert_eq!(texts(&first), ["m0", "m1"]);
    ack_all(&first).await;
    let rest = fetch_n(&consumer, 3, Duration::from_secs(3)).await;
    assert_eq!(texts(&rest), ["m2", "m3", "m4"]);
    ack_all(&rest).await;
}

async fn fetch_returns_when_a_message_arrives(env: Env) {
    let bus = env.bus(config()).await;
    let consumer = bus.consumer(&name("detect"), Filter::All).await.unwrap();
    let publisher = bus.clone();
    let started = Instant::now();
    let publish = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        publisher.publish(&org("org-a"), payload("late")).await.unwrap();
    });
    let batch = consumer.fetch(100, Duration::from_secs(10)).await.unwrap();
    let waited = started.elapsed();
    publish.await.unwrap();
    assert_eq!(texts(&batch), ["late"]);
    assert!(waited < Duration::from_secs(5), "fetch waited {waited:?}");
    ack_all(&batch).await;
}

async fn unacknowledged_messages_are_delivered_again(env: Env) {
    let bus = env.bus(config()).await;
    let a = org("org-a");
    bus.publish(&a, payload("acked")).await.unwrap();
    bus.publish(&a, payload("dropped")).await.unwrap();
    let consumer = bus.consumer(&name("detect"), Filter::All).await.unwrap();
    let batch = consumer.fetch(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(texts(&batch), ["acked", "dropped"]);
    let delivered = Instant::now();
    batch[0].ack().await.unwrap();
    let dropped_sequence = batch[1].sequence();
    drop(batch);

    // Not before the ack wait (1 s)...
    let early = consumer.fetch(10, Duration::from_millis(300)).await.unwrap();
    if delivered.elapsed() < config().ack_wait {
        assert!(early.is_empty(), "{:?}", texts(&early));
    } else {
        eprintln!("the machine was too slow to check that nothing comes before the ack wait");
        ack_all(&early).await;
        return;
    }
    // ...but after it, as a second attempt.
    let again = fetch_n(&consumer, 1, Duration::from_secs(5)).await;
    assert_eq!(texts(&again), ["dropped"]);
    assert_eq!(again[0].sequence(), dropped_sequence);
    assert_eq!(again[0].attempt(), 2);
    ack_all(&again).await;

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let after = consumer.fetch(10, Duration::from_millis(300)).await.unwrap();
    assert!(after.is_empty(), "{:?}", texts(&after));
}

async fn full_bus_pushes_back(env: Env) {
    let bus = env.bus(BusConfig { max_messages: 3, ..config() }).await;
    let a = org("org-a");
    for i in 0..3 {
        bus.try_publish(&a, payload(&format!("m{i}"))).await.unwrap();
    }
    match bus.try_publish(&a, payload("m3")).await {
        Err(BusError::Full(_)) => {}
        other => panic!("expected Full, got {other:?}"),
    }

    // `publish` waits for room...
    let publisher = bus.clone();
    let waiting = tokio::spawn(async move { publisher.publish(&org("org-a"), payload("m3")).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "publish did not wait for room");

    // ...which an acknowledgement makes.
    let consumer = bus.consumer(&name("detect"), Filter::All).await.unwrap();
    let first = consumer.fetch(1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(texts(&first), ["m0"]);
    // Delivered but unacknowledged messages still take room.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "room was made before the acknowledgement");
    ack_all(&first).await;
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("publish still waiting after an acknowledgement")
        .unwrap()
        .unwrap();

    // Nothing was dropped.
    let rest = fetch_n(&consumer, 3, Duration::from_secs(3)).await;
    assert_eq!(texts(&rest), ["m1", "m2", "m3"]);
    ack_all(&rest).await;
}

async fn too_large_is_refused(env: Env) {
    let bus = env.bus(config()).await;
    let big = Bytes::from(vec![b'x'; (64 << 10) + 1]);
    for result in [bus.publish(&org("org-a"), big.clone()).await, bus.try_publish(&org("org-a"), big).await] {
        match result {
            Err(BusError::TooLarge { size, limit }) => {
                assert_eq!((size, limit), ((64 << 10) + 1, 64 << 10));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
    // The limit itself fits.
    let fits = Bytes::from(vec![b'x'; 64 << 10]);
    bus.publish(&org("org-a"), fits).await.unwrap();
}

async fn subjects_per_organisation(env: Env) {
    let bus = env.bus(config()).await;
    let (a, b) = (org("0190b2a4-7c1e-7c3d-9a5e-0123456789ab"), org("org-b"));
    assert_eq!(bus.subjects().events(&a), format!("{}.events.{a}", bus.subjects().prefix()));
    bus.publish(&a, payload("a1")).await.unwrap();
    bus.publish(&b, payload("b1")).await.unwrap();
    bus.publish(&a, payload("a2")).await.unwrap();

    let only_a = bus.consumer(&name("detect-a"), Filter::Organisation(a.clone())).await.unwrap();
    let only_b = bus.consumer(&name("detect-b"), Filter::Organisation(b.clone())).await.unwrap();
    let from_a = fetch_n(&only_a, 2, Duration::from_secs(3)).await;
    assert_eq!(texts(&from_a), ["a1", "a2"]);
    assert!(from_a.iter().all(|d| d.org() == &a));
    let from_b = fetch_n(&only_b, 1, Duration::from_secs(3)).await;
    assert_eq!(texts(&from_b), ["b1"]);
    assert_eq!(from_b[0].org(), &b);
    ack_all(&from_a).await;
    ack_all(&from_b).await;
    assert!(only_a.fetch(10, Duration::from_millis(200)).await.unwrap().is_empty());

    // Invalid names never reach the bus.
    for bad in ["a.b", "a b", "*", ">", "org.>", "", "$JS"] {
        assert!(matches!(OrgId::new(bad), Err(BusError::Invalid { .. })), "{bad:?}");
        assert!(ConsumerName::new(bad).is_err(), "{bad:?}");
    }
    let bad_prefix = BusConfig { prefix: "nigehban.test".into(), ..config() };
    assert!(matches!(InProcessBus::new(bad_prefix.clone()), Err(BusError::Invalid { .. })));
    if let Some(url) = env.url() {
        assert!(matches!(JetStreamBus::connect(url, bad_prefix).await, Err(BusError::Invalid { .. })));
    }
}

async fn overlapping_consumers_are_refused(env: Env) {
    let bus = env.bus(config()).await;
    let a = org("org-a");
    let _only_a = bus.consumer(&name("detect-a"), Filter::Organisation(a.clone())).await.unwrap();
    // The same consumer again is fine (several workers share it).
    bus.consumer(&name("detect-a"), Filter::Organisation(a.clone())).await.unwrap();
    // Another filter under the same name, or another consumer over the same subjects, is not.
    for (consumer, filter) in [
        ("detect-a", Filter::Organisation(org("org-b"))),
        ("detect-a", Filter::All),
        ("all", Filter::All),
        ("again-a", Filter::Organisation(a.clone())),
    ] {
        match bus.consumer(&name(consumer), filter.clone()).await {
            Err(BusError::ConsumerConflict { .. }) => {}
            other => panic!("{consumer} {filter:?}: expected a conflict, got {other:?}"),
        }
    }
    // A disjoint filter is fine.
    bus.consumer(&name("detect-b"), Filter::Organisation(org("org-b"))).await.unwrap();
}

async fn restarted_consumer_continues(env: Env) {
    let a = org("org-a");
    {
        let bus = env.bus(config()).await;
        for i in 1..=5 {
            bus.publish(&a, payload(&format!("m{i}"))).await.unwrap();
        }
        let consumer = bus.consumer(&name("detect"), Filter::All).await.unwrap();
        let done = fetch_n(&consumer, 2, Duration::from_secs(3)).await;
        assert_eq!(texts(&done), ["m1", "m2"]);
        ack_all(&done).await;
        let unfinished = consumer.fetch(1, Duration::from_secs(2)).await.unwrap();
        assert_eq!(texts(&unfinished), ["m3"]);
        // The worker stops here without acknowledging m3; for JetStream its client goes.
    }

    let bus = env.bus(config()).await;
    let consumer = bus.consumer(&name("detect"), Filter::All).await.unwrap();
    // m4 and m5 come at once; m3 after its ack wait; m1 and m2 never.
    let batch = fetch_n(&consumer, 3, Duration::from_secs(6)).await;
    let got: BTreeSet<String> = texts(&batch).into_iter().collect();
    assert_eq!(got, ["m3", "m4", "m5"].map(String::from).into());
    let m3 = batch.iter().find(|d| d.payload().as_ref() == b"m3").unwrap();
    assert_eq!(m3.attempt(), 2);
    ack_all(&batch).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let after = consumer.fetch(10, Duration::from_millis(300)).await.unwrap();
    assert!(after.is_empty(), "{:?}", texts(&after));
}

async fn concurrent_publishers_and_workers_lose_nothing(env: Env) {
    const PUBLISHERS: usize = 4;
    const EACH: usize = 100;
    // Redelivery is not what this case is about: a long ack wait.
    let config = BusConfig { max_messages: 40, max_in_flight: 8, ack_wait: Duration::from_secs(10), ..config() };
    let bus: Bus = env.bus(config).await;
    let consumer_name = name("detect");
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let bus = bus.clone();
        publishers.push(tokio::spawn(async move {
            let org = OrgId::new(&format!("org-{p}")).unwrap();
            for i in 0..EACH {
                bus.publish(&org, payload(&format!("{p}:{i}"))).await.unwrap();
            }
        }));
    }
    // Three workers share the consumer until every message has been seen once, publishers
    // are done, and the bus stays empty for one more fetch.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let consumer = bus.consumer(&consumer_name, Filter::All).await.unwrap();
        let (seen, stop) = (seen.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let batch = consumer.fetch(16, Duration::from_millis(300)).await.unwrap();
                if batch.is_empty() && stop.load(Ordering::SeqCst) {
                    return;
                }
                for delivery in &batch {
                    let text = String::from_utf8(delivery.payload().to_vec()).unwrap();
                    seen.lock().unwrap().push(text);
                    delivery.ack().await.unwrap();
                }
            }
        }));
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let distinct = seen.lock().unwrap().iter().collect::<BTreeSet<_>>().len();
        if distinct == PUBLISHERS * EACH {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), PUBLISHERS * EACH, "messages lost");
    // At-least-once: a duplicate is allowed only if a message outlived its ack wait.
    if seen.len() != distinct.len() {
        eprintln!("{} duplicates delivered", seen.len() - distinct.len());
    }
    if env.kind == Kind::InProcess {
        assert_eq!(seen.len(), distinct.len());
    }
}
