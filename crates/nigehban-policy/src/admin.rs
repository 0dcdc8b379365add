//! Who may administer what: organisations, accounts, tokens, the audit log. (Content — marked
//! objects — is decided by [`crate::can`].) A platform administrator manages accounts and
//! configuration but reads no incident or intelligence content by virtue of being one.

use crate::{OrgId, Principal, Role, Tree};

/// The organisations the principal may see in the directory: its chain and, for a CERT, its
/// constituency; everything for a platform administrator.
pub fn visible_orgs(p: &Principal, tree: &Tree) -> Vec<OrgId> {
    if p.role == Role::PlatformAdmin {
        let mut all: Vec<OrgId> = tree.nodes().map(|n| n.id).collect();
        all.sort();
        return all;
    }
    let mut out = tree.chain(p.org).to_vec();
    out.extend(tree.constituency(p.org));
    out.sort();
    out.dedup();
    out
}

/// May the principal add organisations to the tree?
pub fn can_create_org(p: &Principal) -> bool {
    p.role == Role::PlatformAdmin && p.scopes.is_none()
}

/// May the principal edit this organisation's profile?
pub fn can_edit_org(p: &Principal, tree: &Tree, org: OrgId) -> bool {
    if p.scopes.is_some() {
        return false;
    }
    match p.role {
        Role::PlatformAdmin => true,
        Role::OrgSecurityLead => org == p.org,
        Role::CertManager => tree.in_constituency(p.org, org),
        _ => false,
    }
}

/// May the principal create or change an account of `role` in `org`?
pub fn can_manage_user(p: &Principal, tree: &Tree, org: OrgId, role: Role) -> bool {
    if p.scopes.is_some() {
        return false;
    }
    match p.role {
        Role::PlatformAdmin => true,
        Role::CertManager if org == p.org => role.is_cert_role() || role == Role::Auditor,
        Role::CertManager => {
            tree.in_constituency(p.org, org) && matches!(role, Role::OrgSecurityLead | Role::OrgReporter)
        }
        Role::OrgSecurityLead => org == p.org && matches!(role, Role::OrgSecurityLead | Role::OrgReporter),
        _ => false,
    }
}

/// The organisations whose accounts the principal may list (`None`: all).
pub fn user_directory(p: &Principal, tree: &Tree) -> Option<Vec<OrgId>> {
    match p.role {
        Role::PlatformAdmin => None,
        Role::CertManager => Some(tree.constituency(p.org)),
        _ => Some(vec![p.org]),
    }
}

/// The organisations whose actions the principal may read in the audit log (`None`: all;
/// an empty list: none).
pub fn audit_scope(p: &Principal, tree: &Tree) -> Option<Vec<OrgId>> {
    if p.scopes.is_some() {
        return Some(Vec::new());
    }
    match p.role {
        Role::PlatformAdmin => None,
        Role::CertManager => Some(tree.constituency(p.org)),
        Role::OrgSecurityLead => Some(vec![p.org]),
        _ => Some(Vec::new()),
    }
}
