//! The constituency tree: nCERT at the root, provincial and sectoral CERTs below it, and the
//! organisations they serve as leaves. Registered audit firms are parties outside the tree.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::OrgId;

/// What kind of party an organisation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    /// The national CERT (root of the tree; runs the National SOC).
    National,
    /// A provincial CERT (parent: nCERT).
    ProvincialCert,
    /// A sectoral CERT such as telecom, banking or power (parent: nCERT).
    SectoralCert,
    /// An organisation served by CERTs: a ministry, a state company, a telecom (parents: at most
    /// one provincial and one sectoral CERT).
    Organisation,
    /// A registered audit firm: outside the tree; its auditors see only the engagements assigned
    /// to them.
    AuditFirm,
}

impl OrgKind {
    /// Every kind.
    pub const ALL: [OrgKind; 5] =
        [OrgKind::National, OrgKind::ProvincialCert, OrgKind::SectoralCert, OrgKind::Organisation, OrgKind::AuditFirm];

    /// The kind's name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            OrgKind::National => "national",
            OrgKind::ProvincialCert => "provincial_cert",
            OrgKind::SectoralCert => "sectoral_cert",
            OrgKind::Organisation => "organisation",
            OrgKind::AuditFirm => "audit_firm",
        }
    }

    /// nCERT and the provincial and sectoral CERTs.
    pub fn is_cert(self) -> bool {
        matches!(self, OrgKind::National | OrgKind::ProvincialCert | OrgKind::SectoralCert)
    }
}

impl fmt::Display for OrgKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrgKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrgKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!("unknown organisation kind {s:?}: expected national, provincial_cert, sectoral_cert, organisation or audit_firm")
        })
    }
}

/// One party of the tree with its parent CERTs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgNode {
    /// Its identifier.
    pub id: OrgId,
    /// What it is.
    pub kind: OrgKind,
    /// Its parent CERTs: none for nCERT and audit firms, nCERT for a CERT, at most one
    /// provincial and one sectoral CERT for an organisation.
    pub parents: Vec<OrgId>,
}

/// How a viewer's organisation stands to an object owner's organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// The same organisation.
    Same,
    /// The viewer is a provincial or sectoral CERT above the owner.
    ParentCert,
    /// The viewer is nCERT (and the owner is not).
    National,
    /// The viewer is inside the owner's constituency (the owner is a CERT above the viewer).
    Constituent,
    /// The two share a parent CERT.
    Sibling,
    /// None of the above.
    Unrelated,
}

impl Relation {
    /// Whether the viewer is in the owner's chain (the owner itself, its parent CERTs, nCERT):
    /// where reports flow up.
    pub fn in_chain(self) -> bool {
        matches!(self, Relation::Same | Relation::ParentCert | Relation::National)
    }
}

/// A tree that breaks the rules of the constituency.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("there must be exactly one national CERT, found {0}")]
    NationalCount(usize),
    #[error("organisation {0} appears twice")]
    Duplicate(OrgId),
    #[error("organisation {org} names parent {parent}, which is not in the tree")]
    UnknownParent { org: OrgId, parent: OrgId },
    #[error("{kind} {org} needs a parent CERT (reports flow up through it)")]
    NoParent { org: OrgId, kind: OrgKind },
    #[error("{kind} {org} cannot have parent {parent} ({parent_kind}): {rule}")]
    BadParent { org: OrgId, kind: OrgKind, parent: OrgId, parent_kind: OrgKind, rule: &'static str },
}

/// The whole constituency, checked: one nCERT; CERTs under nCERT; organisations under at most
/// one provincial and one sectoral CERT; audit firms outside.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    nodes: OrgMap<OrgNode>,
    /// Each organisation's chain, computed once: the policy asks for an owner's chain for every
    /// object of every page it decides on.
    chains: OrgMap<Box<[OrgId]>>,
    national: Option<OrgId>,
}

/// Organisations by id, hashed with foldhash: ids are the platform's own (not chosen by
/// clients), and SipHash was a visible share of deciding on a page of objects.
type OrgMap<V> = HashMap<OrgId, V, foldhash::fast::RandomState>;

impl Tree {
    /// Builds and checks a tree.
    pub fn new(nodes: impl IntoIterator<Item = OrgNode>) -> Result<Tree, TreeError> {
        let mut map = OrgMap::default();
        for n in nodes {
            let id = n.id;
            if map.insert(id, n).is_some() {
                return Err(TreeError::Duplicate(id));
            }
        }
        let nationals: Vec<OrgId> = map.values().filter(|n| n.kind == OrgKind::National).map(|n| n.id).collect();
        if nationals.len() > 1 || (nationals.is_empty() && !map.is_empty()) {
            return Err(TreeError::NationalCount(nationals.len()));
        }
        for n in map.values() {
            let mut provincial = 0;
            let mut sectoral = 0;
            for p in &n.parents {
                let parent = map.get(p).ok_or(TreeError::UnknownParent { org: n.id, parent: *p })?;
                let bad =
                    |rule| TreeError::BadParent { org: n.id, kind: n.kind, parent: *p, parent_kind: parent.kind, rule };
                match (n.kind, parent.kind) {
                    (OrgKind::ProvincialCert | OrgKind::SectoralCert, OrgKind::National) => {}
                    (OrgKind::Organisation, OrgKind::ProvincialCert) => provincial += 1,
                    (OrgKind::Organisation, OrgKind::SectoralCert) => sectoral += 1,
                    (OrgKind::National | OrgKind::AuditFirm, _) => return Err(bad("it has no parent CERT")),
                    (OrgKind::ProvincialCert | OrgKind::SectoralCert, _) => {
                        return Err(bad("a CERT's parent is the national CERT"));
                    }
                    (OrgKind::Organisation, _) => {
                        return Err(bad("an organisation's parents are a provincial and/or a sectoral CERT"));
                    }
                }
            }
            let orphan = match n.kind {
                OrgKind::Organisation => provincial + sectoral == 0,
                OrgKind::ProvincialCert | OrgKind::SectoralCert => n.parents.is_empty(),
                OrgKind::National | OrgKind::AuditFirm => false,
            };
            if orphan {
                return Err(TreeError::NoParent { org: n.id, kind: n.kind });
            }
            if provincial > 1 || sectoral > 1 {
                return Err(TreeError::BadParent {
                    org: n.id,
                    kind: n.kind,
                    parent: n.parents[0],
                    parent_kind: OrgKind::Organisation,
                    rule: "an organisation has at most one provincial and one sectoral parent",
                });
            }
        }
        let chains = map.keys().map(|&id| (id, walk_chain(&map, id).into_boxed_slice())).collect();
        Ok(Tree { nodes: map, chains, national: nationals.first().copied() })
    }

    /// The national CERT, if the tree has one.
    pub fn national(&self) -> Option<OrgId> {
        self.national
    }

    /// One organisation.
    pub fn get(&self, org: OrgId) -> Option<&OrgNode> {
        self.nodes.get(&org)
    }

    /// Every organisation, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &OrgNode> {
        self.nodes.values()
    }

    /// Whether the organisation is a CERT (nCERT included).
    pub fn is_cert(&self, org: OrgId) -> bool {
        self.nodes.get(&org).is_some_and(|n| n.kind.is_cert())
    }

    /// The organisation's chain: itself, its parent CERTs and nCERT (each once); empty for an
    /// organisation not in the tree.
    pub fn chain(&self, org: OrgId) -> &[OrgId] {
        self.chains.get(&org).map_or(&[], |c| c)
    }

    /// Whether `org` is `cert` or below it.
    pub fn in_constituency(&self, cert: OrgId, org: OrgId) -> bool {
        self.chain(org).contains(&cert)
    }

    /// Every organisation whose chain contains `cert` (`cert` included).
    pub fn constituency(&self, cert: OrgId) -> Vec<OrgId> {
        let mut out: Vec<OrgId> = self.nodes.keys().copied().filter(|o| self.in_constituency(cert, *o)).collect();
        out.sort();
        out
    }

    /// How `viewer` stands to `owner`.
    pub fn relation(&self, viewer: OrgId, owner: OrgId) -> Relation {
        if viewer == owner {
            return Relation::Same;
        }
        let owner_chain = self.chain(owner);
        if owner_chain.contains(&viewer) {
            return if Some(viewer) == self.national { Relation::National } else { Relation::ParentCert };
        }
        let viewer_chain = self.chain(viewer);
        if viewer_chain.contains(&owner) {
            return Relation::Constituent;
        }
        let (Some(v), Some(o)) = (self.nodes.get(&viewer), self.nodes.get(&owner)) else {
            return Relation::Unrelated;
        };
        if v.parents.iter().any(|p| o.parents.contains(p)) {
            return Relation::Sibling;
        }
        Relation::Unrelated
    }
}

/// The chain of `org` (itself first, then its parents' chains, each organisation once).
fn walk_chain(nodes: &OrgMap<OrgNode>, org: OrgId) -> Vec<OrgId> {
    let mut out = Vec::with_capacity(4);
    let mut stack = vec![org];
    while let Some(o) = stack.pop() {
        if out.contains(&o) {
            continue;
        }
        let Some(n) = nodes.get(&o) else { continue };
        out.push(o);
        stack.extend(n.parents.iter().copied());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn id(n: u128) -> OrgId {
        Uuid::from_u128(n)
    }

    fn sample() -> Tree {
        Tree::new([
            OrgNode { id: id(1), kind: OrgKind::National, parents: vec![] },
            OrgNode { id: id(2), kind: OrgKind::ProvincialCert, parents: vec![id(1)] },
            OrgNode { id: id(3), kind: OrgKind::SectoralCert, parents: vec![id(1)] },
            OrgNode { id: id(4), kind: OrgKind::ProvincialCert, parents: vec![id(1)] },
            OrgNode { id: id(10), kind: OrgKind::Organisation, parents: vec![id(2), id(3)] },
            OrgNode { id: id(11), kind: OrgKind::Organisation, parents: vec![id(2)] },
            OrgNode { id: id(12), kind: OrgKind::Organisation, parents: vec![id(4)] },
            OrgNode { id: id(20), kind: OrgKind::AuditFirm, parents: vec![] },
        ])
        .unwrap()
    }

    #[test]
    fn chains_and_relations() {
        let t = sample();
        let mut chain = t.chain(id(10)).to_vec();
        chain.sort();
        assert_eq!(chain, vec![id(1), id(2), id(3), id(10)]);
        assert_eq!(t.relation(id(10), id(10)), Relation::Same);
        assert_eq!(t.relation(id(2), id(10)), Relation::ParentCert);
        assert_eq!(t.relation(id(3), id(10)), Relation::ParentCert);
        assert_eq!(t.relation(id(1), id(10)), Relation::National);
        assert_eq!(t.relation(id(10), id(2)), Relation::Constituent);
        assert_eq!(t.relation(id(11), id(10)), Relation::Sibling);
        assert_eq!(t.relation(id(12), id(10)), Relation::Unrelated);
        assert_eq!(t.relation(id(4), id(10)), Relation::Unrelated);
        assert_eq!(t.relation(id(20), id(10)), Relation::Unrelated);
        assert_eq!(t.constituency(id(2)), vec![id(2), id(10), id(11)]);
    }

    #[test]
    fn rejects_trees_that_break_the_rules() {
        let n = |i, kind, parents| OrgNode { id: id(i), kind, parents };
        assert!(matches!(
            Tree::new([n(1, OrgKind::National, vec![]), n(2, OrgKind::National, vec![])]),
            Err(TreeError::NationalCount(2))
        ));
        assert!(matches!(
            Tree::new([n(1, OrgKind::National, vec![]), n(5, OrgKind::Organisation, vec![id(1)])]),
            Err(TreeError::BadParent { .. })
        ));
        assert!(matches!(
            Tree::new([
                n(1, OrgKind::National, vec![]),
                n(2, OrgKind::ProvincialCert, vec![id(1)]),
                n(3, OrgKind::ProvincialCert, vec![id(1)]),
                n(5, OrgKind::Organisation, vec![id(2), id(3)])
            ]),
            Err(TreeError::BadParent { .. })
        ));
        assert!(matches!(
            Tree::new([n(1, OrgKind::National, vec![]), n(5, OrgKind::Organisation, vec![id(9)])]),
            Err(TreeError::UnknownParent { .. })
        ));
        assert!(matches!(
            Tree::new([n(1, OrgKind::National, vec![]), n(5, OrgKind::Organisation, vec![])]),
            Err(TreeError::NoParent { .. })
        ));
        assert!(matches!(
            Tree::new([n(1, OrgKind::National, vec![]), n(2, OrgKind::SectoralCert, vec![])]),
            Err(TreeError::NoParent { .. })
        ));
    }
}
