//! Threat intelligence, pure: the indicator matcher and the formats it is loaded from.
//!
//! [`IndicatorSet`] collects indicators — IPv4/IPv6 addresses and CIDR ranges, domains, URLs,
//! e-mail addresses, MD5/SHA-1/SHA-256 hashes — each with a validity window, a TLP marking and
//! where it came from; [`IndicatorSet::build`] freezes them into a [`Matcher`] answering
//! "is this value (or its network, or its parent domain) a known indicator at this time?"
//! without allocating. Sources: plain lists ([`load_plain`]) and STIX 2.1 bundles
//! ([`load_stix_bundle`]); MISP warninglists ([`Warninglists`]) keep known-good values out.
//! A new set is built aside and swapped in whole ([`SharedMatcher`]).
//!
//! **Architecture invariant:** no I/O: loaders take text. **Invariant:** nothing is dropped
//! silently: every value that is not loaded is in the [`LoadReport`] with its line or object and
//! the reason.

mod ipset;
mod load;
mod matcher;
mod strset;
mod value;
mod warninglist;

pub use load::{LoadReport, Skipped, load_plain, load_stix_bundle};
pub use matcher::{Hit, IndicatorMeta, IndicatorSet, Matcher, SharedMatcher};
pub use nigehban_policy::Tlp;
pub use value::{IndicatorType, Normalized, ValueError, classify, normalize};
pub use warninglist::{Warninglist, WarninglistError, Warninglists};
