//! API tokens and sessions through the in-process cache: changes made through the store take
//! effect at once, expiry is never cached, and another node sees a change within the TTL.

use std::time::Duration;

use nigehban_policy::{OrgKind, Role};
use nigehban_store::{Actor, NewToken, Session, UserUpdate};
use uuid::Uuid;

use crate::Backends;
use crate::tree_and_users::{org, user};

fn now() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

fn new_token(org: Uuid, hash: &str, expires_at: Option<i64>) -> NewToken {
    NewToken {
        org,
        created_by: None,
        name: "feed".into(),
        role: Role::CertAnalyst,
        scopes: vec!["*:read".parse().unwrap()],
        token_hash: hash.into(),
        prefix: "ngb_abc".into(),
        expires_at,
    }
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_and_an_expired_one_is_never_usable() {
    let b = Backends::new().await;
    for s in &b.stores {
        s.set_auth_cache_ttl(Duration::from_secs(60));
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let t = s.create_token(&Actor::system(), new_token(n, "h1", None)).await.unwrap();
        let cached = s.token_by_hash("h1").await.unwrap().unwrap();
        assert!(cached.usable(now()));
        // Read again (from the cache), then revoked: the next read says so.
        assert_eq!(s.token_by_hash("h1").await.unwrap().unwrap().id, t.id);
        s.revoke_token(&Actor::system(), t.id).await.unwrap();
        let after = s.token_by_hash("h1").await.unwrap().unwrap();
        assert!(after.revoked_at.is_some() && !after.usable(now()));
        // A clone of the store shares the cache.
        assert!(!s.clone().token_by_hash("h1").await.unwrap().unwrap().usable(now()));

        // A token cached while valid is not usable once its time is up.
        let expires = now() + 300_000;
        s.create_token(&Actor::system(), new_token(n, "h2", Some(expires))).await.unwrap();
        assert!(s.token_by_hash("h2").await.unwrap().unwrap().usable(now()));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let t2 = s.token_by_hash("h2").await.unwrap().unwrap();
        assert!(!t2.usable(now()), "expired while cached");

        // Unknown secrets are not remembered: a token created later is found.
        assert!(s.token_by_hash("h3").await.unwrap().is_none());
        s.create_token(&Actor::system(), new_token(n, "h3", None)).await.unwrap();
        assert!(s.token_by_hash("h3").await.unwrap().is_some());
    }
    b.cleanup().await;
}

#[tokio::test]
async fn sessions_end_at_once_on_sign_out_disable_and_expiry() {
    let b = Backends::new().await;
    for s in &b.stores {
        s.set_auth_cache_ttl(Duration::from_secs(60));
        let n = org(s, OrgKind::National, "ncert", &[]).await;
        let u = user(s, n, "analyst", Role::NationalAnalyst).await;
        let session = |hash: &str, expires_at| Session {
            token_hash: hash.into(),
            user: u,
            csrf_token: "csrf".into(),
            created_at: now(),
            expires_at,
        };
        s.create_session(&session("s1", now() + 3_600_000_000), None).await.unwrap();
        s.create_session(&session("s2", now() + 3_600_000_000), None).await.unwrap();
        s.create_session(&session("s3", now() + 300_000), None).await.unwrap();
        for h in ["s1", "s2", "s3"] {
            assert!(s.session(h).await.unwrap().is_some(), "{h}");
        }
        // Sign-out.
        s.delete_session("s1").await.unwrap();
        assert!(s.session("s1").await.unwrap().is_none());
        // Expiry, while cached.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(s.session("s3").await.unwrap().is_none());
        // A role change shows at once; disabling the account ends its sessions.
        let up = UserUpdate { role: Some(Role::PlatformAdmin), ..Default::default() };
        s.update_user(&Actor::system(), u, up).await.unwrap();
        assert_eq!(s.session("s2").await.unwrap().unwrap().1.role, Role::PlatformAdmin);
        s.update_user(&Actor::system(), u, UserUpdate { disabled: Some(true), ..Default::default() }).await.unwrap();
        assert!(s.session("s2").await.unwrap().is_none());
    }
    b.cleanup().await;
}

#[tokio::test]
async fn another_node_sees_a_revocation_within_its_ttl() {
    let b = Backends::new().await;
    for (i, a) in b.stores.iter().enumerate() {
        let n = org(a, OrgKind::National, "ncert", &[]).await;
        let t = a.create_token(&Actor::system(), new_token(n, "h1", None)).await.unwrap();
        let node_b = b.second_node(i).await;
        let node_c = b.second_node(i).await;
        node_b.set_auth_cache_ttl(Duration::from_millis(500));
        node_c.set_auth_cache_ttl(Duration::ZERO);
        assert!(node_b.token_by_hash("h1").await.unwrap().unwrap().usable(now()));
        assert!(node_c.token_by_hash("h1").await.unwrap().unwrap().usable(now()));
        a.revoke_token(&Actor::system(), t.id).await.unwrap();
        // Without a cache, at once; with one, once its copy is older than the TTL.
        assert!(!node_c.token_by_hash("h1").await.unwrap().unwrap().usable(now()));
        assert!(node_b.token_by_hash("h1").await.unwrap().unwrap().usable(now()), "cached on the other node");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!node_b.token_by_hash("h1").await.unwrap().unwrap().usable(now()));
        node_b.close().await;
        node_c.close().await;
    }
    b.cleanup().await;
}
