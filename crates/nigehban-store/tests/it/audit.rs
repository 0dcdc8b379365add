use nigehban_policy::{OrgKind, Role};
use nigehban_store::testing::execute_unchecked;
use nigehban_store::{Actor, AuditEntry, Store};

use crate::Backends;
use crate::tree_and_users::{org, user};

async fn populated(s: &Store) {
    let n = org(s, OrgKind::National, "ncert", &[]).await;
    let p = org(s, OrgKind::ProvincialCert, "pcert", &[n]).await;
    user(s, p, "analyst", Role::CertAnalyst).await;
    for i in 0..5 {
        s.audit(
            &Actor { ip: Some("127.0.0.1".into()), ..Actor::system() },
            AuditEntry::new("test.entry", "test", i, serde_json::json!({ "i": i })),
        )
        .await
        .unwrap();
    }
    let r = s.verify_audit().await.unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.entries, 8);
}

#[tokio::test]
async fn verify_audit_catches_an_edited_entry() {
    let b = Backends::new().await;
    for s in &b.stores {
        populated(s).await;
        execute_unchecked(s, "UPDATE audit_log SET detail = '{\"i\":99}' WHERE seq = 5").await.unwrap();
        let r = s.verify_audit().await.unwrap();
        assert!(!r.ok());
        assert!(r.problems.iter().any(|p| p.starts_with("entry 5") && p.contains("edited")), "{:?}", r.problems);
        // Recomputing the edited entry's own hash does not help: the next entry no longer links.
        let fixed = s.audit_entries(&Default::default()).await.unwrap();
        let mut e5 = fixed.into_iter().find(|e| e.seq == 5).unwrap();
        e5.hash = nigehban_store::chain_hash(&e5);
        execute_unchecked(s, &format!("UPDATE audit_log SET hash = '{}' WHERE seq = 5", e5.hash)).await.unwrap();
        let r = s.verify_audit().await.unwrap();
        assert!(r.problems.iter().any(|p| p.starts_with("entry 6") && p.contains("does not link")), "{:?}", r.problems);
    }
    b.cleanup().await;
}

#[tokio::test]
async fn verify_audit_catches_a_deleted_entry() {
    let b = Backends::new().await;
    for s in &b.stores {
        populated(s).await;
        execute_unchecked(s, "DELETE FROM audit_log WHERE seq = 4").await.unwrap();
        let r = s.verify_audit().await.unwrap();
        assert!(r.problems.iter().any(|p| p.starts_with("entry 5")), "{:?}", r.problems);
    }
    b.cleanup().await;
}

#[tokio::test]
async fn verify_audit_catches_the_newest_entry_deleted() {
    let b = Backends::new().await;
    for s in &b.stores {
        populated(s).await;
        execute_unchecked(s, "DELETE FROM audit_log WHERE seq = 8").await.unwrap();
        let r = s.verify_audit().await.unwrap();
        assert!(r.problems.iter().any(|p| p.contains("stored head")), "{:?}", r.problems);
    }
    b.cleanup().await;
}

#[tokio::test]
async fn verify_audit_catches_reordered_entries() {
    let b = Backends::new().await;
    for s in &b.stores {
        populated(s).await;
        // Swap entries 5 and 6 (their sequence numbers).
        execute_unchecked(s, "UPDATE audit_log SET seq = 1000 WHERE seq = 5").await.unwrap();
        execute_unchecked(s, "UPDATE audit_log SET seq = 5 WHERE seq = 6").await.unwrap();
        execute_unchecked(s, "UPDATE audit_log SET seq = 6 WHERE seq = 1000").await.unwrap();
        let r = s.verify_audit().await.unwrap();
        assert!(!r.ok());
        assert!(r.problems.iter().any(|p| p.starts_with("entry 5")), "{:?}", r.problems);
    }
    b.cleanup().await;
}

#[tokio::test]
async fn concurrent_changes_keep_one_chain() {
    let b = Backends::new().await;
    for s in &b.stores {
        let s = std::sync::Arc::new(s.clone());
        let mut tasks = Vec::new();
        for i in 0..40 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.audit(&Actor::system(), AuditEntry::new("test.concurrent", "test", i, serde_json::json!({}))).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let r = s.verify_audit().await.unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.entries, 40);
    }
    b.cleanup().await;
}
