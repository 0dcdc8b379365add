use nigehban_policy::{OrgKind, Role};
use nigehban_store::{Actor, NewOrg, NewUser, OrgProfile, OrgUpdate, Store, StoreError, UserUpdate};
use uuid::Uuid;

use crate::Backends;

pub async fn org(s: &Store, kind: OrgKind, short: &str, parents: &[Uuid]) -> Uuid {
    s.create_org(
        &Actor::system(),
        NewOrg {
            kind,
            name: format!("{short} full name"),
            short_name: short.to_owned(),
            sector: None,
            province: None,
            parents: parents.to_vec(),
            profile: OrgProfile::default(),
        },
    )
    .await
    .unwrap()
    .id
}

pub async fn user(s: &Store, org: Uuid, name: &str, role: Role) -> Uuid {
    s.create_user(
        &Actor::system(),
        NewUser {
            org,
            username: name.to_owned(),
            display_name: name.to_owned(),
            email: None,
            role,
            password_hash: "$argon2id$not-a-real-hash".into(),
        },
    )
    .await
    .unwrap()
    .id
}

#[tokio::test]
async fn the_tree_keeps_its_rules() {
    let b = Backends::new().await;
    for s in &b.stores {
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
        let t = org(s, OrgKind::SectoralCert, "telecom-cert", &[n]).await;
        let m = org(s, OrgKind::Organisation, "ministry", &[p, t]).await;
        let tree = s.tree().await.unwrap();
        assert_eq!(tree.chain(m).len(), 4, "{s:?}");
        // A second national CERT, an organisation directly under nCERT, a duplicate name.
        for (kind, short, parents) in [
            (OrgKind::National, "ncert2", vec![]),
            (OrgKind::Organisation, "orphan", vec![n]),
            (OrgKind::Organisation, "ministry", vec![p]),
        ] {
            let r = s
                .create_org(
                    &Actor::system(),
                    NewOrg {
                        kind,
                        name: format!("{short} x"),
                        short_name: short.into(),
                        sector: None,
                        province: None,
                        parents,
                        profile: OrgProfile::default(),
                    },
                )
                .await;
            assert!(matches!(r, Err(StoreError::Invalid(_) | StoreError::Conflict(_))), "{s:?} {short}: {r:?}");
        }
        let lead = user(s, m, "lead", Role::OrgSecurityLead).await;
        let updated = s
            .update_org(
                &Actor::system(),
                m,
                OrgUpdate {
                    security_lead: Some(Some(lead)),
                    profile: Some(OrgProfile { domains: vec!["ministry.example".into()], ..OrgProfile::default() }),
                    ..OrgUpdate::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(updated.security_lead, Some(lead));
        assert_eq!(s.org(m).await.unwrap().unwrap().profile.domains, vec!["ministry.example".to_string()]);
        // A CERT analyst cannot belong to a ministry; a lead from another organisation is refused.
        let r = s
            .create_user(
                &Actor::system(),
                NewUser {
                    org: m,
                    username: "analyst".into(),
                    display_name: "x".into(),
                    email: None,
                    role: Role::CertAnalyst,
                    password_hash: "h".into(),
                },
            )
            .await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
        let other = user(s, p, "panalyst", Role::CertAnalyst).await;
        let r = s
            .update_org(&Actor::system(), m, OrgUpdate { security_lead: Some(Some(other)), ..Default::default() })
            .await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    }
    b.cleanup().await;
}

#[tokio::test]
async fn repeated_failures_lock_an_account_and_a_new_password_unlocks_it() {
    let b = Backends::new().await;
    for s in &b.stores {
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let u = user(s, n, "analyst", Role::NationalAnalyst).await;
        for i in 1..=4 {
            assert!(!s.record_login_failure(&Actor::system(), u, 5, 60_000_000).await.unwrap(), "failure {i}");
        }
        assert!(s.record_login_failure(&Actor::system(), u, 5, 60_000_000).await.unwrap());
        let locked = s.user_by_username("analyst").await.unwrap().unwrap();
        assert!(locked.locked_until.is_some());
        let u2 = s
            .update_user(&Actor::system(), u, UserUpdate { password_hash: Some("new".into()), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(u2.locked_until, None);
        assert_eq!(s.user(u).await.unwrap().unwrap().locked_until, None);
        // Every step is in the audit log, and the chain holds.
        let report = s.verify_audit().await.unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.entries, 8);
    }
    b.cleanup().await;
}
