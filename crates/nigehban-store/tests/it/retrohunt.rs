//! Retro-hunts in the store: the scoped, time-ordered read of a window, the hunts' records and
//! audit, and the claims that make a detection count once across hunts and crashes.

use std::collections::HashSet;

use nigehban_policy::{OrgKind, Principal, Role, Tlp};
use nigehban_store::{
    Actor, AlertHit, AuditQuery, CursorUpdate, Evidence, NewEvent, NewRetroHunt, RetroHuntProgress, RetroHuntRead,
    RetroHuntRelation, RetroHuntStatus, TIME_SPAN_MICROS, retrohunt_cursor,
};
use uuid::Uuid;

use crate::Backends;
use crate::tree_and_users::{org, user};

fn event(org: Uuid, ts: i64, tlp: Tlp) -> NewEvent {
    NewEvent {
        org,
        tlp,
        ts: Some(ts),
        source: "zeek".into(),
        dataset: Some("zeek.conn".into()),
        host: Some("gw".into()),
        record: br#"{"v":1}"#.to_vec(),
    }
}

fn new_hunt(org: Uuid, by: Uuid) -> NewRetroHunt {
    NewRetroHunt {
        title: "C2 from a peer CERT".into(),
        org,
        created_by: Some(by),
        token: None,
        from: 0,
        to: 10_000,
        orgs: None,
        definition: serde_json::json!({"indicators": ["203.0.113.9"]}),
        rules: 0,
        correlations: 0,
        indicators: 1,
        warnings: vec![],
    }
}

fn hit(owner: Uuid, key: &str, event_id: i64) -> AlertHit {
    AlertHit {
        owner,
        tlp: Tlp::Amber,
        dedup_key: key.into(),
        rule_id: "indicator:ip:203.0.113.9".into(),
        rule_title: "Retro-hunt: Indicator match".into(),
        engine: "indicator".into(),
        level: "high".into(),
        level_rank: 3,
        tags: vec!["retrohunt".into()],
        entity: "gw".into(),
        ts: 100,
        evidence: Evidence {
            event_id: Some(event_id),
            ts: Some(100),
            source: "zeek".into(),
            position: format!("event {event_id}"),
            fields: "{}".into(),
        },
    }
}

#[tokio::test]
async fn the_window_is_read_per_organisation_in_time_order_within_the_read_scope() {
    let b = Backends::new().await;
    for s in &b.stores {
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let m = org(s, OrgKind::Organisation, "ministry", &[p]).await;
        let m2 = org(s, OrgKind::Organisation, "ministry2", &[p]).await;
        let lead = user(s, m, "lead", Role::OrgSecurityLead).await;
        let analyst = user(s, p, "analyst", Role::CertAnalyst).await;
        let tree = s.tree().await.unwrap();
        let lead = Principal { user: Some(lead), org: m, role: Role::OrgSecurityLead, scopes: None };
        let analyst = Principal { user: Some(analyst), org: p, role: Role::CertAnalyst, scopes: None };

        // Stored out of time order, with ties on the time, one RED event, one outside the
        // window and another ministry's events.
        let mut batch: Vec<NewEvent> = (0..25).map(|i| event(m, 1_000 + (24 - i) / 2 * 10, Tlp::Amber)).collect();
        batch.push(event(m, 1_005, Tlp::Red));
        batch.push(event(m, 20_000, Tlp::Amber));
        batch.extend((0..3).map(|i| event(m2, 1_000 + i, Tlp::AmberStrict)));
        s.append_events(&batch, None).await.unwrap();

        assert_eq!(s.count_retrohunt_events(&lead, &tree, &[m, m2], 0, 10_000).await.unwrap(), 25);
        assert_eq!(s.count_retrohunt_events(&analyst, &tree, &[m, m2], 0, 10_000).await.unwrap(), 28);

        // Pages of 10; within one time span (these are all in the first), each page in (time,
        // id) order, every event once.
        let pages = read_all(s, &lead, &tree, m, 0, 10_000, 10).await;
        let seen: Vec<(i64, i64)> = pages.concat();
        assert_eq!(seen.len(), 25, "{seen:?}");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
        for page in &pages {
            assert!(page.is_sorted(), "a page in (time, id) order: {page:?}");
        }

        // Another ministry's events are simply not read by the lead; its CERT reads them.
        let read = RetroHuntRead { org: m2, from: 0, to: 10_000, after: None, limit: 10 };
        assert!(s.retrohunt_events(&lead, &tree, &read).await.unwrap().0.is_empty());
        assert_eq!(s.retrohunt_events(&analyst, &tree, &read).await.unwrap().0.len(), 3);
        let reporter = Principal { user: None, org: m, role: Role::OrgReporter, scopes: None };
        let read = RetroHuntRead { org: m, ..read };
        assert!(s.retrohunt_events(&reporter, &tree, &read).await.unwrap().0.is_empty());
    }
    b.cleanup().await;
}

/// Every page of `org`'s window, as (time, id) of the events read.
async fn read_all(
    s: &nigehban_store::Store,
    who: &Principal,
    tree: &nigehban_policy::Tree,
    org: Uuid,
    from: i64,
    to: i64,
    limit: u32,
) -> Vec<Vec<(i64, i64)>> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let read = RetroHuntRead { org, from, to, after, limit };
        let (events, next) = s.retrohunt_events(who, tree, &read).await.unwrap();
        assert!(events.len() <= limit as usize);
        pages.push(events.iter().map(|e| (e.ts.unwrap(), e.id)).collect());
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
        assert!(pages.len() < 10_000, "the pages do not end");
    }
    pages
}

/// Events are indexed by time span: a window over several spans, stored out of order, is read
/// whole and once, span after span, each page in time order; the window's bounds are exact
/// inside a span; events of one span split over two pages are apart by less than a span.
#[tokio::test]
async fn a_window_over_many_time_spans_is_read_span_after_span() {
    const W: i64 = TIME_SPAN_MICROS;
    let b = Backends::new().await;
    for s in &b.stores {
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let m = org(s, OrgKind::Organisation, "ministry", &[p]).await;
        let lead = user(s, m, "lead", Role::OrgSecurityLead).await;
        let tree = s.tree().await.unwrap();
        let lead = Principal { user: Some(lead), org: m, role: Role::OrgSecurityLead, scopes: None };

        // 8 spans, a third of a span apart, in a scrambled order, with ties; two batches.
        let base = 1_700_000_000_000_000 / W * W;
        let times: Vec<i64> = (0..200).map(|i: i64| base + (i * 37 % 200) / 8 * (W / 3) + (i % 3) * 1_000).collect();
        let (first, second) = times.split_at(120);
        for part in [first, second] {
            let batch: Vec<NewEvent> = part.iter().map(|t| event(m, *t, Tlp::Amber)).collect();
            s.append_events(&batch, None).await.unwrap();
        }
        // From and to inside spans (exclusive end): what is in the window, by the times.
        let (from, to) = (base + W + W / 2, base + 6 * W + W / 4);
        let expected = times.iter().filter(|t| (from..to).contains(*t)).count();
        assert!(expected > 50 && expected < 200);
        assert_eq!(s.count_retrohunt_events(&lead, &tree, &[m], from, to).await.unwrap() as usize, expected);

        for limit in [7, 30, 20_000] {
            let pages = read_all(s, &lead, &tree, m, from, to, limit).await;
            let seen: Vec<(i64, i64)> = pages.concat();
            assert_eq!(seen.len(), expected, "limit {limit}");
            assert_eq!(seen.iter().map(|(_, id)| id).collect::<HashSet<_>>().len(), expected, "each once");
            assert!(seen.iter().all(|(t, _)| (from..to).contains(t)));
            for page in &pages {
                assert!(page.is_sorted(), "a page in (time, id) order: {page:?}");
            }
            for pair in seen.windows(2) {
                let (a, b) = (pair[0].0, pair[1].0);
                assert!(b > a - W, "out of order by more than a span: {a} then {b}");
                assert!(a / W <= b / W, "spans in order: {a} then {b}");
            }
        }
    }
    b.cleanup().await;
}

#[tokio::test]
async fn hunts_are_recorded_audited_listed_and_cancelled() {
    let b = Backends::new().await;
    for s in &b.stores {
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let analyst = user(s, p, "analyst", Role::CertAnalyst).await;
        let actor = Actor { user: Some(analyst), org: Some(p), ..Actor::default() };

        let h = s.create_retrohunt(&actor, new_hunt(p, analyst)).await.unwrap();
        assert_eq!(h.status, RetroHuntStatus::Queued);
        assert_eq!(h.definition["indicators"][0], "203.0.113.9");
        let bad = NewRetroHunt { to: 0, ..new_hunt(p, analyst) };
        assert!(s.create_retrohunt(&actor, bad).await.is_err(), "an empty window");

        assert!(s.start_retrohunt(h.id, 42).await.unwrap());
        assert!(!s.start_retrohunt(h.id, 42).await.unwrap(), "started once");
        let progress = RetroHuntProgress { scanned: 10, matches: 2, ..RetroHuntProgress::default() };
        assert!(s.retrohunt_progress(h.id, &progress).await.unwrap());
        let got = s.retrohunt(h.id).await.unwrap().unwrap();
        assert_eq!((got.status, got.progress.total, got.progress.scanned), (RetroHuntStatus::Running, 42, 10));

        assert_eq!(s.cancel_retrohunt(&actor, h.id).await.unwrap(), RetroHuntStatus::Running);
        assert!(s.cancel_retrohunt(&actor, h.id).await.is_err(), "already ended");
        assert!(!s.retrohunt_progress(h.id, &progress).await.unwrap(), "a cancelled hunt stops");
        assert!(!s.finish_retrohunt(h.id, RetroHuntStatus::Done, None).await.unwrap());
        assert_eq!(s.retrohunt(h.id).await.unwrap().unwrap().status, RetroHuntStatus::Cancelled);

        let h2 = s.create_retrohunt(&actor, new_hunt(p, analyst)).await.unwrap();
        let page = s.list_retrohunts(p, None, 1).await.unwrap();
        assert_eq!(page.items[0].id, h2.id, "newest first");
        let page = s.list_retrohunts(p, page.next, 1).await.unwrap();
        assert_eq!((page.items[0].id, page.next), (h.id, None));
        assert!(s.list_retrohunts(n, None, 10).await.unwrap().items.is_empty(), "per organisation");

        let audit = s.audit_entries(&AuditQuery { limit: 50, ..AuditQuery::default() }).await.unwrap();
        let actions: Vec<&str> = audit.iter().map(|r| r.action.as_str()).collect();
        assert!(actions.contains(&"retrohunt.create") && actions.contains(&"retrohunt.cancel"), "{actions:?}");
        assert!(s.verify_audit().await.unwrap().problems.is_empty());
    }
    b.cleanup().await;
}

#[tokio::test]
async fn a_detection_counts_once_across_hunts_and_crashes() {
    let b = Backends::new().await;
    for s in &b.stores {
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let m = org(s, OrgKind::Organisation, "ministry", &[p]).await;
        let analyst = user(s, p, "analyst", Role::CertAnalyst).await;
        let actor = Actor { user: Some(analyst), org: Some(p), ..Actor::default() };
        let tree = s.tree().await.unwrap();
        let who = Principal { user: Some(analyst), org: p, role: Role::CertAnalyst, scopes: None };

        // Hunt 1 claims page 1 and commits it with its cursor; claims page 2 and "crashes".
        let h1 = s.create_retrohunt(&actor, new_hunt(p, analyst)).await.unwrap();
        assert!(s.start_retrohunt(h1.id, 3).await.unwrap());
        let keys1 = vec!["k-a".to_owned(), "k-b".to_owned()];
        let claimed = s.claim_retrohunt_matches(h1.id, 1, &keys1).await.unwrap();
        assert_eq!(claimed.len(), 2);
        let cursor = retrohunt_cursor(h1.id);
        let update = CursorUpdate { name: &cursor, position: 1, state: None, fence: None };
        let created = s.commit_detections(&[hit(m, "retrohunt|a", 1), hit(m, "retrohunt|a", 2)], Some(update)).await;
        let created = created.unwrap();
        let counted: HashSet<String> = ["retrohunt|a".to_owned()].into();
        s.link_retrohunt_alerts(h1.id, &["retrohunt|a".to_owned()], &counted, &created).await.unwrap();
        assert_eq!(s.claim_retrohunt_matches(h1.id, 2, &["k-c".to_owned()]).await.unwrap().len(), 1);

        // A second hunt meanwhile finds k-a again (already counted) and k-d (new).
        let h2 = s.create_retrohunt(&actor, new_hunt(p, analyst)).await.unwrap();
        let claimed = s.claim_retrohunt_matches(h2.id, 1, &["k-a".to_owned(), "k-d".to_owned()]).await.unwrap();
        assert_eq!(claimed, ["k-d".to_owned()].into());

        // The restart: hunt 1 failed, its uncommitted page 2 released, page 1 kept; hunt 2
        // (queued) failed too.
        assert_eq!(s.recover_retrohunts().await.unwrap(), 2);
        let got = s.retrohunt(h1.id).await.unwrap().unwrap();
        assert_eq!(got.status, RetroHuntStatus::Failed);
        assert!(got.error.unwrap().contains("server stopped"));
        assert!(s.cursor(&cursor).await.unwrap().is_none(), "the cursor goes with the hunt");
        assert_eq!(s.recover_retrohunts().await.unwrap(), 0, "settled once");
        let again = s.claim_retrohunt_matches(h2.id, 2, &["k-a".into(), "k-b".into(), "k-c".into()]).await.unwrap();
        assert_eq!(again, ["k-c".to_owned()].into(), "page 1 stays counted; page 2's claim was released");
        // Hunt 2 was queued, never committed: its claim of k-d went too.
        assert_eq!(s.retrohunt(h2.id).await.unwrap().unwrap().status, RetroHuntStatus::Failed);
        assert_eq!(s.claim_retrohunt_matches(h1.id, 9, &["k-d".to_owned()]).await.unwrap().len(), 1);

        // A failed commit's claims are released by page.
        assert_eq!(s.release_retrohunt_matches(h1.id, 8).await.unwrap(), 1);

        // The hunt's alerts, as the CERT sees them, with what the hunt did to them.
        let alerts = s.retrohunt_alerts(&who, &tree, h1.id, 10).await.unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].1, RetroHuntRelation::Created);
        assert_eq!(alerts[0].0.details.as_ref().map(|d| d.count), Some(2));
        let other = org(s, OrgKind::Organisation, "other", &[p]).await;
        let tree = s.tree().await.unwrap();
        let outsider = Principal { user: None, org: other, role: Role::OrgSecurityLead, scopes: None };
        assert!(s.retrohunt_alerts(&outsider, &tree, h1.id, 10).await.unwrap().is_empty(), "re-checked with can");
        // Links only strengthen: found again after created stays created.
        s.link_retrohunt_alerts(h1.id, &["retrohunt|a".to_owned()], &HashSet::new(), &[]).await.unwrap();
        assert_eq!(s.retrohunt_alerts(&who, &tree, h1.id, 10).await.unwrap()[0].1, RetroHuntRelation::Created);
    }
    b.cleanup().await;
}

#[tokio::test]
async fn only_hunts_nobody_keeps_alive_are_recovered() {
    let b = Backends::new().await;
    for s in &b.stores {
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let analyst = user(s, p, "analyst", Role::CertAnalyst).await;
        let actor = Actor { user: Some(analyst), org: Some(p), ..Actor::default() };
        // Two nodes: one keeps its running hunt alive, the other stopped with its hunt.
        let alive = s.create_retrohunt(&actor, new_hunt(p, analyst)).await.unwrap();
        assert!(s.start_retrohunt(alive.id, 3).await.unwrap());
        let dead = s.create_retrohunt(&actor, new_hunt(p, analyst)).await.unwrap();
        assert!(s.start_retrohunt(dead.id, 3).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let cutoff = jiff::Timestamp::now().as_microsecond();
        s.retrohunts_keepalive(&[alive.id]).await.unwrap();

        // Another node starting (or sweeping) recovers the stale hunt only.
        assert_eq!(s.recover_stale_retrohunts(cutoff).await.unwrap(), 1);
        assert_eq!(s.retrohunt(dead.id).await.unwrap().unwrap().status, RetroHuntStatus::Failed);
        assert_eq!(s.retrohunt(alive.id).await.unwrap().unwrap().status, RetroHuntStatus::Running);
        assert_eq!(s.recover_stale_retrohunts(cutoff).await.unwrap(), 0, "settled once");
    }
    b.cleanup().await;
}
