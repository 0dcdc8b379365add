//! Every cell of `docs/visibility-matrix.tsv` against [`nigehban_policy::can`], and the list
//! scope a store queries with ([`nigehban_policy::ReadScope`]) against the list decision.

use nigehban_policy::matrix::ExpectedMatrix;
use nigehban_policy::{
    Action, Decision, Kind, Marking, OrgKind, OrgNode, Principal, Role, Share, ShareTarget, Tlp, Tree, can,
    check_share, read_scope, shares_kept,
};
use uuid::Uuid;

const N: Uuid = Uuid::from_u128(1);
const P: Uuid = Uuid::from_u128(2);
const S: Uuid = Uuid::from_u128(3);
const P2: Uuid = Uuid::from_u128(4);
const M: Uuid = Uuid::from_u128(10);
const M2: Uuid = Uuid::from_u128(11);
const U: Uuid = Uuid::from_u128(12);
const F: Uuid = Uuid::from_u128(20);
const AUTHOR: Uuid = Uuid::from_u128(100);
const SOMEONE_ELSE: Uuid = Uuid::from_u128(101);
const P_MANAGER: Uuid = Uuid::from_u128(102);

fn tree() -> Tree {
    let n = |id, kind, parents: &[Uuid]| OrgNode { id, kind, parents: parents.to_vec() };
    Tree::new([
        n(N, OrgKind::National, &[]),
        n(P, OrgKind::ProvincialCert, &[N]),
        n(S, OrgKind::SectoralCert, &[N]),
        n(P2, OrgKind::ProvincialCert, &[N]),
        n(M, OrgKind::Organisation, &[P, S]),
        n(M2, OrgKind::Organisation, &[P]),
        n(U, OrgKind::Organisation, &[P2]),
        n(F, OrgKind::AuditFirm, &[]),
    ])
    .unwrap()
}

fn matrix() -> ExpectedMatrix {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/visibility-matrix.tsv");
    let text = std::fs::read_to_string(path).unwrap();
    ExpectedMatrix::parse(&text).unwrap()
}

/// The viewer's organisation for a relation of the matrix.
fn viewer_org(role: Role, relation: &str) -> Uuid {
    let base = relation.trim_end_matches("_named").trim_end_matches("_shared");
    match base {
        "same" => M,
        "parent_cert" => P,
        "national" => N,
        "sibling" => M2,
        "unrelated" if role.is_cert_role() => P2,
        "unrelated" => U,
        "assigned" | "unassigned" => F,
        other => panic!("unknown relation {other}"),
    }
}

#[test]
fn every_cell_of_the_matrix_holds() {
    let tree = tree();
    let expected = matrix();
    let rows = expected.rows();
    assert!(rows.len() >= 30, "the matrix has {} rows", rows.len());
    let manager = Principal { user: Some(P_MANAGER), org: P, role: Role::CertManager, scopes: None };
    let mut failures = Vec::new();
    let mut checked = 0;
    for (i, (role, relation)) in rows.iter().enumerate() {
        let viewer_id = Uuid::from_u128(1000 + i as u128);
        let viewer = Principal { user: Some(viewer_id), org: viewer_org(*role, relation), role: *role, scopes: None };
        let named = relation.contains("named");
        let assigned = relation.starts_with("assigned");
        let shared = relation.ends_with("_shared");
        let recipients = if named { vec![viewer_id, SOMEONE_ELSE] } else { vec![SOMEONE_ELSE] };
        let assignees = if assigned { vec![viewer_id] } else { vec![] };
        let scope = read_scope(&viewer, &tree);
        for kind in Kind::ALL {
            for tlp in Tlp::ALL {
                let mut marking = Marking {
                    kind,
                    owner: M,
                    tlp,
                    created_by: Some(AUTHOR),
                    recipients: &recipients,
                    shares: &[],
                    assignees: &assignees,
                };
                let mut shares = Vec::new();
                if shared {
                    for target in
                        [ShareTarget::Org(M2), ShareTarget::Org(U), ShareTarget::Community, ShareTarget::Public]
                    {
                        if check_share(&manager, &tree, &marking, target).allowed() {
                            shares.push(Share { by: P, target });
                        }
                    }
                }
                marking.shares = &shares;
                for action in Action::ALL {
                    checked += 1;
                    let want = expected.allows(*role, relation, kind, tlp, action).unwrap();
                    let got = can(&viewer, &tree, &marking, action);
                    if got.allowed() != want {
                        failures.push(format!(
                            "{role} / {relation} / {kind} / {tlp} / {}: expected {}, policy says {got:?}",
                            action.as_str(),
                            if want { "allow" } else { "deny" }
                        ));
                    }
                }
                let listed = can(&viewer, &tree, &marking, Action::List).allowed();
                if scope.admits(&marking) != listed {
                    failures.push(format!(
                        "{role} / {relation} / {kind} / {tlp}: read scope says {}, list decision {listed}",
                        scope.admits(&marking)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} cells differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn hidden_and_forbidden_are_told_apart() {
    let tree = tree();
    let reporter = Principal { user: Some(Uuid::from_u128(500)), org: M, role: Role::OrgReporter, scopes: None };
    let m = Marking {
        kind: Kind::Incident,
        owner: M,
        tlp: Tlp::Amber,
        created_by: None,
        recipients: &[],
        shares: &[],
        assignees: &[],
    };
    assert_eq!(can(&reporter, &tree, &m, Action::Read), Decision::Allow);
    assert!(matches!(can(&reporter, &tree, &m, Action::Share), Decision::Forbidden(_)));
    let outsider = Principal { org: U, ..reporter.clone() };
    assert_eq!(can(&outsider, &tree, &m, Action::Share), Decision::Hidden);
}

#[test]
fn raising_the_tlp_withdraws_the_shares_it_no_longer_allows() {
    let tree = tree();
    let shares = [
        Share { by: P, target: ShareTarget::Public },
        Share { by: P, target: ShareTarget::Community },
        Share { by: P, target: ShareTarget::Org(M2) },
        Share { by: P, target: ShareTarget::Org(U) },
    ];
    assert_eq!(shares_kept(&tree, M, Tlp::Clear, &shares).len(), 4);
    assert_eq!(shares_kept(&tree, M, Tlp::Green, &shares).len(), 3);
    assert_eq!(shares_kept(&tree, M, Tlp::Amber, &shares), vec![shares[2]]);
    assert!(shares_kept(&tree, M, Tlp::AmberStrict, &shares).is_empty());
    // A share by a CERT outside the owner's chain never counts.
    assert!(shares_kept(&tree, M, Tlp::Clear, &[Share { by: P2, target: ShareTarget::Public }]).is_empty());
}

#[test]
fn tokens_never_exceed_their_scopes() {
    let tree = tree();
    let token = Principal {
        user: None,
        org: P,
        role: Role::CertManager,
        scopes: Some(vec!["incidents:read".parse().unwrap()]),
    };
    let m = Marking {
        kind: Kind::Incident,
        owner: M,
        tlp: Tlp::Green,
        created_by: None,
        recipients: &[],
        shares: &[],
        assignees: &[],
    };
    assert_eq!(can(&token, &tree, &m, Action::Read), Decision::Allow);
    assert!(matches!(can(&token, &tree, &m, Action::Write), Decision::Forbidden(_)));
    assert!(matches!(can(&token, &tree, &m, Action::Share), Decision::Forbidden(_)));
    assert_eq!(can(&token, &tree, &Marking { kind: Kind::Alert, ..m }, Action::Read), Decision::Hidden);
    // A token is no named individual: TLP:RED stays closed to it.
    assert_eq!(can(&token, &tree, &Marking { tlp: Tlp::Red, ..m }, Action::Read), Decision::Hidden);
}
