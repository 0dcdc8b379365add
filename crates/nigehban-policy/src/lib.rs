//! Who may see and do what.
//!
//! Every query and every route of the platform asks this crate, and only this crate, whether a
//! principal (a user, or a machine acting through an API token) may list, read, search, export,
//! write or share an object. The answer combines three things:
//!
//! - the **constituency tree** ([`Tree`]): nCERT → provincial and sectoral CERTs → organisations;
//!   what an organisation reports flows up its *chain* (itself, its parent CERTs, nCERT);
//! - the principal's **role** ([`Role`]) inside its organisation, narrowed for API tokens by
//!   their [`Scope`]s;
//! - the object's **marking** ([`Marking`]): its owner, its [`Tlp`] level, the named recipients
//!   of a TLP:RED object, and the shares CERTs have recorded for it.
//!
//! The rules are written out in `docs/visibility.md`; `docs/visibility-matrix.tsv` states the
//! expected answer for every role × relation × TLP × action, and the tests check this crate (and
//! the HTTP API, in the server's tests) against it. The crate is pure: no I/O, no clock, no
//! database. The store turns a [`ReadScope`] into SQL so that lists are filtered in the database,
//! and re-checks each row here.

pub mod admin;
mod decide;
pub mod matrix;
mod role;
mod tlp;
mod tree;

pub use decide::{
    Decision, Marking, ReadScope, Refusal, Share, ShareTarget, can, can_create, check_share, read_scope, shares_kept,
};
pub use role::{Action, Kind, Principal, Role, Scope, Verb};
pub use tlp::{Tlp, TlpError};
pub use tree::{OrgKind, OrgNode, Relation, Tree, TreeError};

/// Identifier of an organisation (nCERT, a CERT, an organisation or an audit firm).
pub type OrgId = uuid::Uuid;
/// Identifier of a user account.
pub type UserId = uuid::Uuid;
