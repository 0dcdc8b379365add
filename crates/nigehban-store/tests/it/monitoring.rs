use nigehban_policy::{OrgKind, Principal, Role, Tlp};
use nigehban_store::{Actor, AlertHit, AlertStatus, CursorUpdate, EventQuery, Evidence, NewEvent, ObjectFilter};

use crate::Backends;
use crate::tree_and_users::{org, user};

fn event(org: uuid::Uuid, ts: i64, host: &str, text: &str) -> NewEvent {
    NewEvent {
        org,
        tlp: Tlp::AmberStrict,
        ts: Some(ts),
        source: "syslog-tcp 10.0.0.1".into(),
        dataset: Some("linux.auth".into()),
        host: Some(host.into()),
        record: format!(r#"{{"v":1,"r":"{text}"}}"#).into_bytes(),
    }
}

fn hit(owner: uuid::Uuid, key: &str, ts: i64, tlp: Tlp, event_id: i64) -> AlertHit {
    AlertHit {
        owner,
        tlp,
        dedup_key: key.into(),
        rule_id: "rule-1".into(),
        rule_title: "Brute force".into(),
        engine: "sigma".into(),
        level: "high".into(),
        level_rank: 3,
        tags: vec!["attack.t1110".into()],
        entity: "web01".into(),
        ts,
        evidence: Evidence {
            event_id: Some(event_id),
            ts: Some(ts),
            source: "s".into(),
            position: "line 1".into(),
            fields: "{}".into(),
        },
    }
}

#[tokio::test]
async fn events_are_a_log_with_idempotent_batches_and_a_scoped_search() {
    let b = Backends::new().await;
    for s in &b.stores {
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let m = org(s, OrgKind::Organisation, "ministry", &[p]).await;
        let m2 = org(s, OrgKind::Organisation, "ministry2", &[p]).await;
        let lead = user(s, m, "lead", Role::OrgSecurityLead).await;
        let lead2 = user(s, m2, "lead2", Role::OrgSecurityLead).await;
        let analyst = user(s, p, "analyst", Role::CertAnalyst).await;
        let tree = s.tree().await.unwrap();

        let batch: Vec<NewEvent> = (0..4500).map(|i| event(m, 1_000 + i, "web01", &format!("n{i}"))).collect();
        let (first, last) = s.append_events(&batch, Some("stream:1")).await.unwrap().unwrap();
        assert_eq!(last - first + 1, 4500);
        assert_eq!(
            s.append_events(&batch, Some("stream:1")).await.unwrap(),
            None,
            "a redelivered batch is stored once"
        );
        assert_eq!(s.count_events().await.unwrap(), 4500);
        let (_, last2) =
            s.append_events(&[event(m2, 50, "db01", "Failed password for root")], None).await.unwrap().unwrap();
        assert_eq!(s.last_event_id().await.unwrap(), last2);
        let after = s.events_after(last, 10).await.unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].org_id, m2);
        assert_eq!(s.events_after(0, 100).await.unwrap().len(), 100);

        let who = |user, org, role| Principal { user: Some(user), org, role, scopes: None };
        let q = EventQuery { text: Some("FAILED PASSWORD".into()), limit: 10, ..EventQuery::default() };
        assert_eq!(s.search_events(&who(analyst, p, Role::CertAnalyst), &tree, &q).await.unwrap().items.len(), 1);
        assert_eq!(s.search_events(&who(lead2, m2, Role::OrgSecurityLead), &tree, &q).await.unwrap().items.len(), 1);
        assert!(s.search_events(&who(lead, m, Role::OrgSecurityLead), &tree, &q).await.unwrap().items.is_empty());
        assert!(
            s.event(&who(lead, m, Role::OrgSecurityLead), &tree, last2).await.unwrap().is_none(),
            "another ministry's"
        );
        assert!(s.event(&who(analyst, p, Role::CertAnalyst), &tree, last2).await.unwrap().is_some());

        // Pages by id, newest first, with a time window.
        let q = EventQuery { org: Some(m), from: Some(2_000), to: Some(3_000), limit: 600, ..EventQuery::default() };
        let page = s.search_events(&who(lead, m, Role::OrgSecurityLead), &tree, &q).await.unwrap();
        assert_eq!(page.items.len(), 600);
        let q2 = EventQuery { before: page.next, ..q };
        assert_eq!(s.search_events(&who(lead, m, Role::OrgSecurityLead), &tree, &q2).await.unwrap().items.len(), 400);

        // Retention never passes a consumer's position.
        assert_eq!(s.delete_events(m, i64::MAX, first + 10).await.unwrap(), 10);
        // More than one statement's worth: all of the organisation's, nobody else's.
        let more: Vec<NewEvent> = (0..6000).map(|i| event(m, 5_000 + i, "web01", &format!("m{i}"))).collect();
        s.append_events(&more, None).await.unwrap().unwrap();
        assert_eq!(s.delete_events(m, i64::MAX, i64::MAX).await.unwrap(), 4490 + 6000);
        assert_eq!(s.count_events().await.unwrap(), 1, "the other ministry's event is kept");
        // Nothing received before the cut-off: nothing deleted.
        assert_eq!(s.delete_events(m2, 0, i64::MAX).await.unwrap(), 0);
    }
    b.cleanup().await;
}

#[tokio::test]
async fn detections_fold_into_deduplicated_alerts_with_the_cursor() {
    let b = Backends::new().await;
    for s in &b.stores {
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let m = org(s, OrgKind::Organisation, "ministry", &[p]).await;
        let m2 = org(s, OrgKind::Organisation, "ministry2", &[p]).await;
        let lead = user(s, m, "lead", Role::OrgSecurityLead).await;
        let lead2 = user(s, m2, "lead2", Role::OrgSecurityLead).await;
        let analyst = user(s, p, "analyst", Role::CertAnalyst).await;
        let tree = s.tree().await.unwrap();

        let hits: Vec<AlertHit> = (0..60).map(|i| hit(m, "k1", 100 + i, Tlp::Amber, i)).collect();
        let cursor = CursorUpdate { name: "detect", position: 60, state: Some(b"state"), fence: None };
        let created = s.commit_detections(&hits, Some(cursor)).await.unwrap();
        assert_eq!(created.len(), 1);
        let again = s.commit_detections(&[hit(m, "k1", 50, Tlp::AmberStrict, 61)], None).await.unwrap();
        assert!(again.is_empty(), "same key, same alert");
        assert_eq!(s.cursor("detect").await.unwrap(), Some((60, Some(b"state".to_vec()))));

        let who = |user, org, role| Principal { user: Some(user), org, role, scopes: None };
        let page = s
            .list_alerts(&who(lead, m, Role::OrgSecurityLead), &tree, &ObjectFilter::default(), None, 50)
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
        let alert = &page.items[0];
        let d = alert.details.as_ref().unwrap();
        assert_eq!((d.count, d.first_seen, d.last_seen), (61, 50, 159));
        assert_eq!(alert.object.tlp, Tlp::AmberStrict, "the strictest marking of its events");
        assert_eq!(s.alert_evidence(alert.object.id).await.unwrap().len(), 50, "evidence is capped, the count is not");
        assert!(
            s.list_alerts(&who(lead2, m2, Role::OrgSecurityLead), &tree, &ObjectFilter::default(), None, 50)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        let cert = s
            .list_alerts(&who(analyst, p, Role::CertAnalyst), &tree, &ObjectFilter::default(), None, 50)
            .await
            .unwrap();
        assert_eq!(cert.items.len(), 1);

        let actor = Actor { user: Some(analyst), org: Some(p), ..Actor::system() };
        s.set_alert_status(&actor, alert.object.id, AlertStatus::Acknowledged).await.unwrap();
        let new_only = ObjectFilter { alert_status: Some(AlertStatus::New), ..ObjectFilter::default() };
        assert!(
            s.list_alerts(&who(analyst, p, Role::CertAnalyst), &tree, &new_only, None, 50)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        let high = ObjectFilter { min_level: Some(3), ..ObjectFilter::default() };
        assert_eq!(
            s.list_alerts(&who(analyst, p, Role::CertAnalyst), &tree, &high, None, 50).await.unwrap().items.len(),
            1
        );
        let critical = ObjectFilter { min_level: Some(4), ..ObjectFilter::default() };
        assert!(
            s.list_alerts(&who(analyst, p, Role::CertAnalyst), &tree, &critical, None, 50)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        assert!(s.verify_audit().await.unwrap().ok(), "alert creation, the TLP raise and the status are in the chain");
    }
    b.cleanup().await;
}

/// The CERT lane is one lease beside the slots: one node holds it at a time, sharing out the
/// slots neither gives it away nor hands it to another node, and a node that lost it (expired,
/// claimed by another at a new epoch) commits nothing more with it.
#[tokio::test]
async fn the_cert_lane_is_one_lease_apart_from_the_slots() {
    use nigehban_store::{CERT_CURSOR, CERT_LANE, Fence, SLOTS, StoreError};
    let b = Backends::new().await;
    for s in &b.stores {
        let long = 60_000_000;
        let a = s.cert_lane_lease("a", long).await.unwrap().expect("a free lane is claimed");
        assert_eq!(a.slot, CERT_LANE);
        assert_eq!(s.cert_lane_lease("b", long).await.unwrap(), None, "held by a");
        assert_eq!(s.cert_lane_lease("a", long).await.unwrap(), Some(a), "renewed, same epoch");

        // Slots are shared out without it: a node's share never counts or gives back the lane.
        let slots = s.detect_leases("a", usize::try_from(SLOTS).unwrap(), long).await.unwrap();
        assert_eq!(slots.len(), usize::try_from(SLOTS).unwrap());
        assert!(slots.iter().all(|l| l.slot < SLOTS));
        let slots = s.detect_leases("a", 1, long).await.unwrap();
        assert_eq!(slots.len(), 1);
        let holders = s.detect_lease_holders().await.unwrap();
        assert_eq!(holders.iter().find(|h| h.0 == CERT_LANE).and_then(|h| h.1.as_deref()), Some("a"));
        assert_eq!(s.detect_leases("b", 40, long).await.unwrap().len(), usize::try_from(SLOTS).unwrap() - 1);
        assert_eq!(s.cert_lane_lease("b", long).await.unwrap(), None, "still a's");

        // a's lease runs out (renewed with no time left); b claims the lane at a new epoch.
        assert_eq!(s.cert_lane_lease("a", 0).await.unwrap(), Some(a));
        let taken = s.cert_lane_lease("b", long).await.unwrap().expect("an expired lane is claimed");
        assert!(taken.epoch > a.epoch);
        let update = |lease, holder| CursorUpdate {
            name: CERT_CURSOR,
            position: 7,
            state: Some(b"{}"),
            fence: Some(Fence { holder, lease, ttl_micros: long }),
        };
        let lost = s.commit_detections(&[], Some(update(a, "a"))).await.unwrap_err();
        assert!(matches!(lost, StoreError::LeaseLost(CERT_LANE)), "{lost:?}");
        s.commit_detections(&[], Some(update(taken, "b"))).await.unwrap();
        assert_eq!(s.cursor(CERT_CURSOR).await.unwrap().map(|c| c.0), Some(7));
    }
    b.cleanup().await;
}
