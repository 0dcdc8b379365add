use nigehban_policy::{Action, Kind, OrgKind, Principal, Role, Share, ShareTarget, Tlp, can, check_share};
use nigehban_store::{Actor, NewObject, ObjectFilter, ObjectUpdate, StoreError};

use crate::Backends;
use crate::tree_and_users::{org, user};

#[tokio::test]
async fn lists_follow_the_policy_and_raising_the_tlp_withdraws_shares() {
    let b = Backends::new().await;
    for s in &b.stores {
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let p2 = org(s, OrgKind::ProvincialCert, "pcert2", &[n]).await;
        let m = org(s, OrgKind::Organisation, "ministry", &[p]).await;
        let m2 = org(s, OrgKind::Organisation, "ministry2", &[p]).await;
        let u = org(s, OrgKind::Organisation, "utility", &[p2]).await;
        let reporter = user(s, m, "reporter", Role::OrgReporter).await;
        let manager = user(s, p, "manager", Role::CertManager).await;
        let lead2 = user(s, m2, "lead2", Role::OrgSecurityLead).await;
        let lead_u = user(s, u, "leadu", Role::OrgSecurityLead).await;
        let national = user(s, n, "national", Role::NationalAnalyst).await;
        let tree = s.tree().await.unwrap();
        let who = |user, org, role| Principal { user: Some(user), org, role, scopes: None };
        let actor = Actor { user: Some(reporter), org: Some(m), ..Actor::system() };
        let mut ids = Vec::new();
        for (i, tlp) in Tlp::ALL.into_iter().enumerate() {
            let o = s
                .create_object(
                    &actor,
                    &tree,
                    NewObject {
                        kind: Kind::Incident,
                        owner: m,
                        tlp,
                        title: format!("Phishing wave {i}"),
                        body: serde_json::json!({"description": "x"}),
                        created_by: Some(reporter),
                        recipients: if tlp == Tlp::Red { vec![national] } else { vec![] },
                        assignees: vec![],
                    },
                )
                .await
                .unwrap();
            ids.push(o.id);
        }
        let list = |pr: Principal| {
            let tree = tree.clone();
            async move {
                s.list_objects(&pr, &tree, &ObjectFilter::default(), None, 100)
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .map(|o| o.tlp)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(list(who(reporter, m, Role::OrgReporter)).await.len(), 5, "the reporter created the RED one");
        assert_eq!(list(who(manager, p, Role::CertManager)).await.len(), 4);
        assert_eq!(list(who(national, n, Role::NationalAnalyst)).await.len(), 5, "named on RED");
        assert!(list(who(lead2, m2, Role::OrgSecurityLead)).await.is_empty());
        // The manager shares the AMBER incident with ministry2 and the GREEN one with everyone.
        let mgr = who(manager, p, Role::CertManager);
        let mgr_actor = Actor { user: Some(manager), org: Some(p), ..Actor::system() };
        for (id, target) in [(ids[2], ShareTarget::Org(m2)), (ids[1], ShareTarget::Community)] {
            let o = s.object(id).await.unwrap().unwrap();
            assert!(check_share(&mgr, &tree, &o.marking(), target).allowed());
            s.share_object(&mgr_actor, id, Share { by: p, target }).await.unwrap();
        }
        let seen = list(who(lead2, m2, Role::OrgSecurityLead)).await;
        assert_eq!(seen, vec![Tlp::Amber, Tlp::Green]);
        assert_eq!(list(who(lead_u, u, Role::OrgSecurityLead)).await, vec![Tlp::Green]);
        // Search and cursor pagination.
        let page = s
            .list_objects(&mgr, &tree, &ObjectFilter { q: Some("WAVE 3".into()), ..Default::default() }, None, 10)
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
        let first = s.list_objects(&mgr, &tree, &ObjectFilter::default(), None, 3).await.unwrap();
        assert_eq!(first.items.len(), 3);
        let second = s.list_objects(&mgr, &tree, &ObjectFilter::default(), first.next, 3).await.unwrap();
        assert_eq!(second.items.len(), 1);
        assert_eq!(second.next, None);
        // Raising the AMBER incident to AMBER+STRICT withdraws the share to ministry2.
        let o = s.object(ids[2]).await.unwrap().unwrap();
        assert!(can(&mgr, &tree, &o.marking(), Action::Write).allowed());
        let up = s
            .update_object(
                &mgr_actor,
                &tree,
                ids[2],
                ObjectUpdate { tlp: Some(Tlp::AmberStrict), expected_version: Some(1), ..Default::default() },
            )
            .await
            .unwrap();
        assert!(up.shares.is_empty());
        assert_eq!(list(who(lead2, m2, Role::OrgSecurityLead)).await, vec![Tlp::Green]);
        // A stale version is refused.
        let r = s
            .update_object(
                &mgr_actor,
                &tree,
                ids[2],
                ObjectUpdate { title: Some("x".into()), expected_version: Some(1), ..Default::default() },
            )
            .await;
        assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
        // RED recipients come from the owner's chain only.
        let r = s
            .create_object(
                &actor,
                &tree,
                NewObject {
                    kind: Kind::Incident,
                    owner: m,
                    tlp: Tlp::Red,
                    title: "x".into(),
                    body: serde_json::json!({}),
                    created_by: Some(reporter),
                    recipients: vec![lead_u],
                    assignees: vec![],
                },
            )
            .await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
        let audit = s.verify_audit().await.unwrap();
        assert!(audit.ok(), "{:?}", audit.problems);
        let actions: Vec<String> =
            s.audit_entries(&Default::default()).await.unwrap().into_iter().map(|e| e.action).collect();
        assert!(actions.contains(&"object.unshare".to_string()));
        assert!(actions.contains(&"object.share".to_string()));
    }
    b.cleanup().await;
}

#[tokio::test]
async fn a_page_carries_each_objects_recipients_assignees_and_shares() {
    let b = Backends::new().await;
    for s in &b.stores {
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let m = org(s, OrgKind::Organisation, "ministry", &[p]).await;
        let m2 = org(s, OrgKind::Organisation, "ministry2", &[p]).await;
        let firm = org(s, OrgKind::AuditFirm, "auditco", &[]).await;
        let lead = user(s, m, "lead", Role::OrgSecurityLead).await;
        let manager = user(s, p, "manager", Role::CertManager).await;
        let analyst = user(s, p, "analyst", Role::CertAnalyst).await;
        let aud1 = user(s, firm, "aud1", Role::Auditor).await;
        let aud2 = user(s, firm, "aud2", Role::Auditor).await;
        let tree = s.tree().await.unwrap();
        let actor = Actor { user: Some(lead), org: Some(m), ..Actor::system() };
        let new = |kind, tlp, recipients: Vec<_>, assignees: Vec<_>| NewObject {
            kind,
            owner: m,
            tlp,
            title: "t".into(),
            body: serde_json::json!({"n": 1, "nested": {"a": [1, 2]}}),
            created_by: Some(lead),
            recipients,
            assignees,
        };
        let red = s
            .create_object(&actor, &tree, new(Kind::Engagement, Tlp::Red, vec![manager, analyst], vec![aud2, aud1]))
            .await
            .unwrap();
        let green = s.create_object(&actor, &tree, new(Kind::Engagement, Tlp::Green, vec![], vec![])).await.unwrap();
        let bare = s.create_object(&actor, &tree, new(Kind::Engagement, Tlp::Amber, vec![], vec![aud1])).await.unwrap();
        let mgr_actor = Actor { user: Some(manager), org: Some(p), ..Actor::system() };
        let shares = [ShareTarget::Org(m2), ShareTarget::Community, ShareTarget::Public];
        for target in shares {
            s.share_object(&mgr_actor, green.id, Share { by: p, target }).await.unwrap();
        }
        let sorted = |mut v: Vec<uuid::Uuid>| {
            v.sort();
            v
        };
        let chain_manager = Principal { user: Some(manager), org: p, role: Role::CertManager, scopes: None };
        let page = s.list_objects(&chain_manager, &tree, &ObjectFilter::default(), None, 10).await.unwrap();
        let ids: Vec<_> = page.items.iter().map(|o| o.id).collect();
        assert_eq!(ids, vec![bare.id, green.id, red.id]);
        for listed in &page.items {
            let single = s.object(listed.id).await.unwrap().unwrap();
            assert_eq!(&single, listed, "a page and a read agree");
        }
        let [l_bare, l_green, l_red] = &page.items[..] else { unreachable!() };
        assert_eq!(l_red.recipients, sorted(vec![manager, analyst]));
        assert_eq!(l_red.assignees, sorted(vec![aud1, aud2]));
        assert!(l_red.shares.is_empty());
        assert_eq!(l_red.body.to_value(), serde_json::json!({"n": 1, "nested": {"a": [1, 2]}}));
        assert!(l_green.recipients.is_empty() && l_green.assignees.is_empty());
        let want: Vec<Share> = shares.iter().map(|&target| Share { by: p, target }).collect();
        assert_eq!(l_green.shares, want, "in the order they were made");
        assert_eq!(l_bare.assignees, vec![aud1]);
        // An assigned auditor's list (filtered on assignments) carries the same markings.
        let auditor = Principal { user: Some(aud1), org: firm, role: Role::Auditor, scopes: None };
        let page = s.list_objects(&auditor, &tree, &ObjectFilter::default(), None, 10).await.unwrap();
        let ids: Vec<_> = page.items.iter().map(|o| o.id).collect();
        assert_eq!(ids, vec![bare.id], "not named on the RED one");
        assert_eq!(page.items[0].assignees, vec![aud1]);
        assert!(s.object(uuid::Uuid::now_v7()).await.unwrap().is_none());
    }
    b.cleanup().await;
}

#[tokio::test]
async fn an_engagements_assigned_auditors_may_be_named_on_red() {
    let b = Backends::new().await;
    for s in &b.stores {
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let m = org(s, OrgKind::Organisation, "ministry", &[p]).await;
        let firm = org(s, OrgKind::AuditFirm, "auditco", &[]).await;
        let lead = user(s, m, "lead", Role::OrgSecurityLead).await;
        let aud = user(s, firm, "aud", Role::Auditor).await;
        let other_aud = user(s, firm, "aud2", Role::Auditor).await;
        let tree = s.tree().await.unwrap();
        let actor = Actor { user: Some(lead), org: Some(m), ..Actor::system() };
        let new = |kind, recipients: Vec<_>, assignees: Vec<_>| NewObject {
            kind,
            owner: m,
            tlp: Tlp::Red,
            title: "Audit of the payment gateway".into(),
            body: serde_json::json!({}),
            created_by: Some(lead),
            recipients,
            assignees,
        };
        // Named and assigned on an engagement: accepted, and the auditor sees it.
        let e = s.create_object(&actor, &tree, new(Kind::Engagement, vec![aud], vec![aud])).await.unwrap();
        let auditor = Principal { user: Some(aud), org: firm, role: Role::Auditor, scopes: None };
        assert!(can(&auditor, &tree, &e.marking(), Action::Read).allowed());
        let page = s.list_objects(&auditor, &tree, &ObjectFilter::default(), None, 10).await.unwrap();
        assert_eq!(page.items.iter().map(|o| o.id).collect::<Vec<_>>(), vec![e.id]);
        // Not assigned, or not an engagement: refused.
        for (kind, assignees) in [(Kind::Engagement, vec![other_aud]), (Kind::Incident, vec![aud])] {
            let r = s.create_object(&actor, &tree, new(kind, vec![aud], assignees)).await;
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{kind:?}: {r:?}");
        }
        // Unassigning a named auditor without unnaming them is refused; both together are not.
        let unassign = ObjectUpdate { assignees: Some(vec![other_aud]), ..Default::default() };
        let r = s.update_object(&actor, &tree, e.id, unassign).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
        let both = ObjectUpdate { assignees: Some(vec![other_aud]), recipients: Some(vec![]), ..Default::default() };
        let up = s.update_object(&actor, &tree, e.id, both).await.unwrap();
        assert!(!can(&auditor, &tree, &up.marking(), Action::Read).allowed());
    }
    b.cleanup().await;
}

/// Each object keeps a copy of its recipients, assignees and shares on its row; every change
/// rewrites it from the tables, so concurrent changes to one object must leave it equal to what
/// the tables hold (on PostgreSQL the changes take the object's row lock first).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_markings_on_an_objects_row_follow_concurrent_changes() {
    let b = Backends::new().await;
    for s in &b.stores {
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let m = org(s, OrgKind::Organisation, "ministry", &[p]).await;
        let mut others = Vec::new();
        for i in 0..8 {
            others.push(org(s, OrgKind::Organisation, &format!("other{i}"), &[p]).await);
        }
        let lead = user(s, m, "lead", Role::OrgSecurityLead).await;
        let analyst = user(s, p, "analyst", Role::CertAnalyst).await;
        let tree = s.tree().await.unwrap();
        let actor = Actor { user: Some(lead), org: Some(m), ..Actor::system() };
        let o = s
            .create_object(
                &actor,
                &tree,
                NewObject {
                    kind: Kind::Incident,
                    owner: m,
                    tlp: Tlp::Green,
                    title: "Defacement of the ministry's portal".into(),
                    body: serde_json::json!({}),
                    created_by: Some(lead),
                    recipients: vec![],
                    assignees: vec![],
                },
            )
            .await
            .unwrap();
        // Eight shares and eight edits at once.
        let mut tasks = tokio::task::JoinSet::new();
        for (i, &other) in others.iter().enumerate() {
            let (s1, a1) = (s.clone(), actor.clone());
            tasks.spawn(async move {
                s1.share_object(&a1, o.id, Share { by: m, target: ShareTarget::Org(other) }).await.map(|_| ())
            });
            let (s, tree, actor) = (s.clone(), tree.clone(), actor.clone());
            tasks.spawn(async move {
                let edit = ObjectUpdate { title: Some(format!("Defacement, edit {i}")), ..Default::default() };
                match s.update_object(&actor, &tree, o.id, edit).await {
                    Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        let mut want: Vec<Share> = others.iter().map(|&o| Share { by: m, target: ShareTarget::Org(o) }).collect();
        let read = s.object(o.id).await.unwrap().unwrap();
        let mut got = read.shares.clone();
        got.sort_by_key(|s| format!("{s:?}"));
        want.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(got, want, "every share is on the row");
        // The row's copy is what the tables say.
        nigehban_store::testing::refresh_all_markings(s).await.unwrap();
        assert_eq!(s.object(o.id).await.unwrap().unwrap(), read);
        // Naming a recipient and raising the TLP (which withdraws the shares) in one change.
        let up = ObjectUpdate { tlp: Some(Tlp::Red), recipients: Some(vec![analyst]), ..Default::default() };
        s.update_object(&actor, &tree, o.id, up).await.unwrap();
        let read = s.object(o.id).await.unwrap().unwrap();
        assert!(read.shares.is_empty(), "{:?}", read.shares);
        assert_eq!(read.recipients, vec![analyst]);
        nigehban_store::testing::refresh_all_markings(s).await.unwrap();
        assert_eq!(s.object(o.id).await.unwrap().unwrap(), read);
        let named = Principal { user: Some(analyst), org: p, role: Role::CertAnalyst, scopes: None };
        let page = s.list_objects(&named, &tree, &ObjectFilter::default(), None, 10).await.unwrap();
        assert_eq!(page.items, vec![read], "the named recipient lists it");
    }
    b.cleanup().await;
}
