//! The decision: may this principal do this action on this object?

use serde::{Deserialize, Serialize};

use crate::{Action, Kind, OrgId, OrgKind, Principal, Relation, Role, Tlp, Tree, UserId};

/// Where a share makes an object visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "to", content = "org", rename_all = "snake_case")]
pub enum ShareTarget {
    /// One organisation.
    Org(OrgId),
    /// Every member organisation of the platform (TLP:GREEN or CLEAR).
    Community,
    /// Anyone, without authentication (TLP:CLEAR only).
    Public,
}

/// A share a CERT recorded for an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Share {
    /// The CERT that shared it.
    pub by: OrgId,
    /// With whom.
    pub target: ShareTarget,
}

/// What the policy needs to know of an object.
#[derive(Debug, Clone, Copy)]
pub struct Marking<'a> {
    /// What it is.
    pub kind: Kind,
    /// The organisation that owns it (that reported it, or whose data it came from).
    pub owner: OrgId,
    /// Its TLP level.
    pub tlp: Tlp,
    /// Who created it (always among the readers of its own TLP:RED object).
    pub created_by: Option<UserId>,
    /// TLP:RED: the named individuals who may see it.
    pub recipients: &'a [UserId],
    /// The shares recorded for it.
    pub shares: &'a [Share],
    /// Audit engagements: the auditors assigned to it.
    pub assignees: &'a [UserId],
}

/// Why a principal may not do something it can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("your role cannot do this")]
    Role,
    #[error("this API token's scopes do not allow it")]
    Scope,
    #[error("TLP:RED and TLP:AMBER+STRICT material cannot be shared")]
    NotShareable,
    #[error("TLP:RED material cannot be exported")]
    NotExportable,
    #[error("only the owner's chain can change it")]
    NotInChain,
    #[error("log events are evidence and cannot be amended")]
    Evidence,
    #[error("the TLP level does not allow a share to that recipient")]
    TargetNotAllowed,
    #[error("only a CERT in the owner's chain can share it")]
    NotSharer,
    #[error("objects are created for one's own organisation")]
    NotOwnOrganisation,
}

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// The principal sees the object but may not do this (HTTP 403).
    Forbidden(Refusal),
    /// The principal may not even know the object exists (HTTP 404, absent from lists).
    Hidden,
}

impl Decision {
    /// Whether it is [`Decision::Allow`].
    pub fn allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// Whether a share is allowed by the object's TLP (and so whether it still counts after the
/// level was raised).
fn share_valid(tree: &Tree, owner: OrgId, tlp: Tlp, share: &Share) -> bool {
    let by_in_chain = tree.is_cert(share.by) && tree.chain(owner).contains(&share.by);
    if !by_in_chain {
        return false;
    }
    match (tlp, share.target) {
        (Tlp::Red | Tlp::AmberStrict, _) => false,
        (Tlp::Amber, ShareTarget::Org(o)) => tree.get(o).is_some() && tree.in_constituency(share.by, o),
        (Tlp::Amber, _) => false,
        (Tlp::Green, ShareTarget::Org(o)) => is_member(tree, o),
        (Tlp::Green, ShareTarget::Community) => true,
        (Tlp::Green, ShareTarget::Public) => false,
        (Tlp::Clear, ShareTarget::Org(o)) => tree.get(o).is_some(),
        (Tlp::Clear, ShareTarget::Community | ShareTarget::Public) => true,
    }
}

/// Members of the community: every organisation of the tree (audit firms are outside it).
fn is_member(tree: &Tree, org: OrgId) -> bool {
    tree.get(org).is_some_and(|n| n.kind != OrgKind::AuditFirm)
}

fn reaches(tree: &Tree, viewer: OrgId, share: &Share) -> bool {
    match share.target {
        ShareTarget::Org(o) => o == viewer,
        ShareTarget::Community => is_member(tree, viewer),
        ShareTarget::Public => true,
    }
}

/// Whether the principal may know the object exists (list, read, search).
fn visible(p: &Principal, tree: &Tree, m: &Marking<'_>) -> bool {
    if !p.role.reads(m.kind) || !p.scoped(m.kind, Action::Read) {
        return false;
    }
    let named = p.user.is_some_and(|u| m.created_by == Some(u) || m.recipients.contains(&u));
    if m.tlp == Tlp::Red {
        // Named individuals only, whatever their organisation's relation (the owner names them
        // among its chain). An auditor must also be assigned.
        return named && (p.role != Role::Auditor || p.user.is_some_and(|u| m.assignees.contains(&u)));
    }
    if p.role == Role::Auditor {
        return p.user.is_some_and(|u| m.assignees.contains(&u));
    }
    if tree.relation(p.org, m.owner).in_chain() {
        return true;
    }
    m.shares.iter().any(|s| reaches(tree, p.org, s) && share_valid(tree, m.owner, m.tlp, s))
}

/// May the principal do the action on the object?
pub fn can(p: &Principal, tree: &Tree, m: &Marking<'_>, action: Action) -> Decision {
    if !visible(p, tree, m) {
        return Decision::Hidden;
    }
    let relation = tree.relation(p.org, m.owner);
    let refuse = |r| Decision::Forbidden(r);
    match action {
        Action::List | Action::Read | Action::Search => Decision::Allow,
        Action::Export => {
            if p.role == Role::OrgReporter {
                refuse(Refusal::Role)
            } else if m.tlp == Tlp::Red {
                refuse(Refusal::NotExportable)
            } else {
                Decision::Allow
            }
        }
        Action::Write => {
            if m.kind == Kind::Event {
                return refuse(Refusal::Evidence);
            }
            if !p.scoped(m.kind, Action::Write) {
                return refuse(Refusal::Scope);
            }
            let assigned = p.user.is_some_and(|u| m.assignees.contains(&u));
            let ok = match p.role {
                Role::OrgSecurityLead | Role::OrgReporter => relation == Relation::Same,
                Role::NationalAnalyst | Role::CertAnalyst | Role::CertManager => relation.in_chain(),
                Role::Auditor => assigned,
                Role::PlatformAdmin => false,
            };
            if ok { Decision::Allow } else { refuse(Refusal::NotInChain) }
        }
        Action::Share => {
            if p.role != Role::CertManager {
                return refuse(Refusal::Role);
            }
            if !p.scoped(m.kind, Action::Share) {
                return refuse(Refusal::Scope);
            }
            if !(relation.in_chain() && tree.is_cert(p.org)) {
                return refuse(Refusal::NotSharer);
            }
            if matches!(m.tlp, Tlp::Red | Tlp::AmberStrict) {
                return refuse(Refusal::NotShareable);
            }
            Decision::Allow
        }
    }
}

/// May the principal share the object with that target? [`can`] with [`Action::Share`], then
/// the target checked against the TLP: AMBER only to organisations in the sharing CERT's
/// constituency; GREEN to any member organisation or the community; CLEAR also publicly.
pub fn check_share(p: &Principal, tree: &Tree, m: &Marking<'_>, target: ShareTarget) -> Decision {
    match can(p, tree, m, Action::Share) {
        Decision::Allow => {}
        other => return other,
    }
    if share_valid(tree, m.owner, m.tlp, &Share { by: p.org, target }) {
        Decision::Allow
    } else {
        Decision::Forbidden(Refusal::TargetNotAllowed)
    }
}

/// Which shares of an object survive a change of its TLP level (raising it withdraws the shares
/// the new level does not allow).
pub fn shares_kept(tree: &Tree, owner: OrgId, tlp: Tlp, shares: &[Share]) -> Vec<Share> {
    shares.iter().copied().filter(|s| share_valid(tree, owner, tlp, s)).collect()
}

/// May the principal create an object of this kind owned by `owner`?
pub fn can_create(p: &Principal, kind: Kind, owner: OrgId) -> Decision {
    if owner != p.org {
        return Decision::Forbidden(Refusal::NotOwnOrganisation);
    }
    if !p.scoped(kind, Action::Write) {
        return Decision::Forbidden(Refusal::Scope);
    }
    let ok = match kind {
        // Events come in through ingestion: a machine (token) with events:write, or the
        // organisation's security lead uploading logs.
        Kind::Event => p.scopes.is_some() || p.role == Role::OrgSecurityLead,
        _ => p.role.reads(kind) && p.role != Role::Auditor && p.role != Role::PlatformAdmin,
    };
    if ok { Decision::Allow } else { Decision::Forbidden(Refusal::Role) }
}

/// The set of objects a principal may list, in a form a store turns into a query. Rows it
/// returns are re-checked with [`can`]; the two must agree (the matrix tests check both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadScope {
    /// Kinds the principal reads at all.
    pub kinds: Vec<Kind>,
    /// Owners whose objects below TLP:RED it sees through the chain (its own organisation and,
    /// for a CERT, its constituency). Empty for auditors.
    pub chain_owners: Vec<OrgId>,
    /// The user, for TLP:RED objects naming them (and objects it created).
    pub user: Option<UserId>,
    /// The organisation, for shares to it.
    pub org: OrgId,
    /// Whether shares to the community reach it.
    pub community: bool,
    /// Auditors: only engagements assigned to this user.
    pub assigned_only: bool,
}

/// The [`ReadScope`] of a principal.
pub fn read_scope(p: &Principal, tree: &Tree) -> ReadScope {
    let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| p.role.reads(*k) && p.scoped(*k, Action::Read)).collect();
    let assigned_only = p.role == Role::Auditor;
    let chain_owners = if assigned_only || kinds.is_empty() { Vec::new() } else { tree.constituency(p.org) };
    ReadScope { kinds, chain_owners, user: p.user, org: p.org, community: is_member(tree, p.org), assigned_only }
}

impl ReadScope {
    /// Whether the scope admits the object: the reference for the query a store builds from it.
    /// Stores keep only shares the object's TLP allows (see [`shares_kept`]), so shares are taken
    /// as valid here; [`can`] re-checks them.
    pub fn admits(&self, m: &Marking<'_>) -> bool {
        if !self.kinds.contains(&m.kind) {
            return false;
        }
        let named = self.user.is_some_and(|u| m.created_by == Some(u) || m.recipients.contains(&u));
        if self.assigned_only {
            return self.user.is_some_and(|u| m.assignees.contains(&u)) && (m.tlp != Tlp::Red || named);
        }
        if m.tlp == Tlp::Red {
            return named;
        }
        if self.chain_owners.contains(&m.owner) {
            return true;
        }
        m.tlp != Tlp::AmberStrict
            && m.shares.iter().any(|s| match s.target {
                ShareTarget::Org(o) => o == self.org,
                ShareTarget::Community => self.community,
                ShareTarget::Public => true,
            })
    }
}
