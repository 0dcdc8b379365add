//! The notification outbox: one row per created alert, written with it; claims, delivered
//! targets, back-off, giving up; leases; several claimers.

use std::collections::HashSet;
use std::time::Duration;

use nigehban_policy::{OrgKind, Tlp};
use nigehban_store::{AlertHit, Evidence, FailOutcome, Finished, NotificationState, NotifyRetry, Store};
use uuid::Uuid;

use crate::Backends;
use crate::tree_and_users::org;

fn hit(owner: Uuid, key: &str, entity: &str, ts: i64) -> AlertHit {
    AlertHit {
        owner,
        tlp: Tlp::AmberStrict,
        dedup_key: key.into(),
        rule_id: "rule-1".into(),
        rule_title: "Brute force".into(),
        engine: "sigma".into(),
        level: "high".into(),
        level_rank: 3,
        tags: vec!["attack.t1110".into()],
        entity: entity.into(),
        ts,
        evidence: Evidence {
            event_id: None,
            ts: Some(ts),
            source: "s".into(),
            position: "line 1".into(),
            fields: "{}".into(),
        },
    }
}

/// ncert → pcert → ministry; the ministry's id.
async fn ministry(s: &Store) -> Uuid {
    let n = org(s, OrgKind::National, "ncert", &[]).await;
    let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
    org(s, OrgKind::Organisation, "ministry", &[p]).await
}

/// Claims until nothing is due, with this store.
async fn drain(s: &Store, limit: u32) -> Vec<i64> {
    let mut ids = Vec::new();
    loop {
        let batch = s.claim_notifications(limit, Duration::from_secs(60)).await.unwrap();
        if batch.is_empty() {
            return ids;
        }
        ids.extend(batch.iter().map(|n| n.id));
    }
}

#[tokio::test]
async fn an_alert_is_notified_once_at_its_creation() {
    let b = Backends::new().await;
    for s in &b.stores {
        let m = ministry(s).await;
        let created = s
            .commit_detections(&[hit(m, "k1", "web01", 10), hit(m, "k1", "web01", 20), hit(m, "k2", "db01", 30)], None)
            .await
            .unwrap();
        assert_eq!(created.len(), 2);
        for id in &created {
            let r = s.notification_of(*id).await.unwrap().expect("a notification per created alert");
            assert_eq!(r.state, NotificationState::Pending);
            assert_eq!(r.attempts, 0);
            assert!(r.delivered.is_empty());
        }
        // Later hits of the same alerts, and the same batch detected again after a crash, add
        // to the counts but notify nobody again.
        assert!(s.commit_detections(&[hit(m, "k1", "web01", 40)], None).await.unwrap().is_empty());
        assert!(
            s.commit_detections(&[hit(m, "k1", "web01", 10), hit(m, "k2", "db01", 30)], None).await.unwrap().is_empty()
        );
        assert_eq!(s.notifications(NotificationState::Pending, 100).await.unwrap().len(), 2);

        // A claim carries what a message needs of the alert, as it is now.
        let claimed = s.claim_notifications(10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(claimed.len(), 2);
        let web = claimed.iter().find(|c| c.alert_id == created[0]).unwrap();
        assert_eq!(web.owner, m);
        assert_eq!(web.tlp, Tlp::AmberStrict);
        let d = web.details.as_ref().unwrap();
        assert_eq!((d.rule_title.as_str(), d.entity.as_str(), d.level_rank), ("Brute force", "web01", 3));
        assert_eq!(d.count, 4, "two hits, one more, then one of the batch detected again");
        assert_eq!(d.first_seen, 10);
        assert!(s.claim_notifications(10, Duration::from_secs(60)).await.unwrap().is_empty(), "claimed rows wait");
    }
    b.cleanup().await;
}

#[tokio::test]
async fn delivered_targets_back_off_and_giving_up_are_recorded() {
    let b = Backends::new().await;
    for s in &b.stores {
        let m = ministry(s).await;
        let created = s
            .commit_detections(&[hit(m, "a", "web01", 1), hit(m, "b", "web02", 2), hit(m, "c", "web03", 3)], None)
            .await
            .unwrap();
        let (sent, failing, skipped) = (created[0], created[1], created[2]);
        let retry = NotifyRetry {
            max_attempts: 3,
            first_delay: Duration::from_millis(300),
            max_delay: Duration::from_secs(60),
        };

        let claimed = s.claim_notifications(10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(claimed.len(), 3);
        let row = |alert: Uuid| claimed.iter().find(|c| c.alert_id == alert).unwrap().clone();

        // Sent: the targets reached are kept; another claim's changes are refused.
        let r = row(sent);
        assert!(s.notification_delivered(r.id, r.claim, "mail:soc@ministry.example").await.unwrap());
        assert!(!s.notification_delivered(r.id, Uuid::now_v7(), "mail:x@y.example").await.unwrap(), "not its claim");
        assert!(!s.finish_notification(r.id, Uuid::now_v7(), Finished::Sent).await.unwrap());
        assert!(s.finish_notification(r.id, r.claim, Finished::Sent).await.unwrap());
        let rec = s.notification_of(sent).await.unwrap().unwrap();
        assert_eq!(rec.state, NotificationState::Sent);
        assert_eq!(rec.delivered, ["mail:soc@ministry.example"]);

        // Skipped, with the reason.
        let r = row(skipped);
        assert!(s.finish_notification(r.id, r.claim, Finished::Skipped("level low".into())).await.unwrap());
        let rec = s.notification_of(skipped).await.unwrap().unwrap();
        assert_eq!((rec.state, rec.last_error.as_deref()), (NotificationState::Skipped, Some("level low")));

        // Failing: due again after 300 ms, then 600 ms, then given up after the third attempt,
        // keeping what it had reached and its last error.
        let r = row(failing);
        assert!(s.notification_delivered(r.id, r.claim, "webhook:default").await.unwrap());
        let before = jiff::Timestamp::now().as_microsecond();
        let outcome = s.fail_notification(r.id, r.claim, "mail:soc@x: 451 try later", &retry).await.unwrap();
        let Some(FailOutcome::RetryAt(at)) = outcome else { panic!("{outcome:?}") };
        assert!(at - before >= 300_000 && at - before < 5_000_000, "{}", at - before);
        assert!(s.claim_notifications(10, Duration::from_secs(60)).await.unwrap().is_empty(), "not due yet");
        let mut next = Vec::new();
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            next = s.claim_notifications(10, Duration::from_secs(60)).await.unwrap();
            if !next.is_empty() {
                break;
            }
        }
        assert_eq!(next.len(), 1);
        assert_eq!((next[0].attempts, next[0].delivered.as_slice()), (1, ["webhook:default".to_owned()].as_slice()));
        assert_eq!(s.fail_notification(r.id, r.claim, "stale claim", &retry).await.unwrap(), None, "old claim");
        let before = jiff::Timestamp::now().as_microsecond();
        let outcome = s.fail_notification(next[0].id, next[0].claim, "second", &retry).await.unwrap();
        let Some(FailOutcome::RetryAt(at)) = outcome else { panic!("{outcome:?}") };
        assert!(at - before >= 600_000, "the wait doubles: {}", at - before);
        tokio::time::sleep(Duration::from_millis(700)).await;
        let third = s.claim_notifications(10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(third.len(), 1);
        assert_eq!(third[0].attempts, 2);
        let outcome = s.fail_notification(third[0].id, third[0].claim, "mail:soc@x: 550 no such user", &retry).await;
        assert_eq!(outcome.unwrap(), Some(FailOutcome::GaveUp));
        let rec = s.notification_of(failing).await.unwrap().unwrap();
        assert_eq!(rec.state, NotificationState::GaveUp);
        assert_eq!(rec.attempts, 3);
        assert_eq!(rec.last_error.as_deref(), Some("mail:soc@x: 550 no such user"));
        assert_eq!(rec.delivered, ["webhook:default"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(s.claim_notifications(10, Duration::from_secs(60)).await.unwrap().is_empty(), "given up for good");
        assert_eq!(s.notifications(NotificationState::GaveUp, 10).await.unwrap().len(), 1);
    }
    b.cleanup().await;
}

#[tokio::test]
async fn a_lapsed_claim_is_taken_over() {
    let b = Backends::new().await;
    for s in &b.stores {
        let m = ministry(s).await;
        let created = s.commit_detections(&[hit(m, "a", "web01", 1)], None).await.unwrap();
        let first = s.claim_notifications(10, Duration::from_millis(200)).await.unwrap();
        assert_eq!(first.len(), 1);
        assert!(s.claim_notifications(10, Duration::from_secs(60)).await.unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The first sender stopped (or hung): after its lease the row is claimed again.
        let second = s.claim_notifications(10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].alert_id, created[0]);
        assert_ne!(second[0].claim, first[0].claim);
        assert!(!s.finish_notification(first[0].id, first[0].claim, Finished::Sent).await.unwrap(), "lapsed");
        assert!(s.finish_notification(second[0].id, second[0].claim, Finished::Sent).await.unwrap());
    }
    b.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_claiming_at_once_never_get_the_same_row() {
    let b = Backends::new().await;
    for (i, s) in b.stores.iter().enumerate() {
        let m = ministry(s).await;
        let hits: Vec<AlertHit> = (0..60).map(|k| hit(m, &format!("k{k}"), &format!("host{k}"), k)).collect();
        assert_eq!(s.commit_detections(&hits, None).await.unwrap().len(), 60);
        let other = b.second_node(i).await;
        let (a, c) = tokio::join!(drain(s, 3), drain(&other, 3));
        let all: HashSet<i64> = a.iter().chain(&c).copied().collect();
        assert_eq!(all.len(), a.len() + c.len(), "a row was claimed by both nodes");
        assert_eq!(all.len(), 60, "every row was claimed");
        if s.backend_name() == "postgres" {
            assert!(!a.is_empty() && !c.is_empty(), "both nodes claimed rows ({} and {})", a.len(), c.len());
        }
        other.close().await;
    }
    b.cleanup().await;
}
