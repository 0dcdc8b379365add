//! Names on the bus: organisation ids, consumer names, the prefix, and the subjects built
//! from them (`<prefix>.events.<org-id>`).

use std::fmt;
use std::sync::Arc;

use crate::BusError;

/// The longest token accepted (a UUID has 36 characters).
pub const MAX_TOKEN_LEN: usize = 64;

/// Checks that `value` is a safe subject token: 1 to 64 ASCII letters, digits, `-` or `_`
/// (so no dots, spaces, wildcards `*` / `>`, or `$`).
fn check_token(what: &'static str, value: &str) -> Result<(), BusError> {
    let reason = if value.is_empty() {
        Some("must not be empty")
    } else if value.len() > MAX_TOKEN_LEN {
        Some("must have at most 64 characters")
    } else if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Some("only ASCII letters, digits, '-' and '_' are allowed (no dots, spaces or wildcards)")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(BusError::Invalid { what, value: value.chars().take(80).collect(), reason }),
    }
}

/// An organisation's id as it appears in subjects: a UUID or another safe token.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgId(Arc<str>);

impl OrgId {
    /// Validates `id` (1–64 ASCII letters, digits, `-`, `_`).
    pub fn new(id: &str) -> Result<Self, BusError> {
        check_token("organisation id", id)?;
        Ok(OrgId(Arc::from(id)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgId({})", &self.0)
    }
}

/// A durable consumer's name (same rule as organisation ids).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConsumerName(Arc<str>);

impl ConsumerName {
    /// Validates `name` (1–64 ASCII letters, digits, `-`, `_`).
    pub fn new(name: &str) -> Result<Self, BusError> {
        check_token("consumer name", name)?;
        Ok(ConsumerName(Arc::from(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConsumerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which messages a consumer receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Every organisation's events.
    All,
    /// One organisation's events.
    Organisation(OrgId),
}

impl Filter {
    /// Whether a message of `org` passes the filter.
    pub fn matches(&self, org: &OrgId) -> bool {
        match self {
            Filter::All => true,
            Filter::Organisation(own) => own == org,
        }
    }

    /// Whether some organisation's messages pass both filters.
    pub fn overlaps(&self, other: &Filter) -> bool {
        match (self, other) {
            (Filter::Organisation(a), Filter::Organisation(b)) => a == b,
            _ => true,
        }
    }
}

/// The validated prefix of a bus's subjects and stream: `<prefix>.events.<org-id>` and the
/// stream `<prefix>_events`. Production uses `nigehban`; test runs use a unique prefix so that
/// they never see each other's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: Arc<str>,
}

impl Subjects {
    /// Validates `prefix` (1–64 ASCII letters, digits, `-`, `_`).
    pub fn new(prefix: &str) -> Result<Self, BusError> {
        check_token("prefix", prefix)?;
        Ok(Subjects { prefix: Arc::from(prefix) })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The JetStream stream that holds the events: `<prefix>_events`.
    pub fn stream_name(&self) -> String {
        format!("{}_events", self.prefix)
    }

    /// The subject of one organisation's events: `<prefix>.events.<org-id>`.
    pub fn events(&self, org: &OrgId) -> String {
        format!("{}.events.{}", self.prefix, org)
    }

    /// The subject a filter selects (`<prefix>.events.>` for every organisation).
    pub fn filter(&self, filter: &Filter) -> String {
        match filter {
            Filter::All => format!("{}.events.>", self.prefix),
            Filter::Organisation(org) => self.events(org),
        }
    }

    /// The organisation of an events subject written by this bus.
    pub fn org_of(&self, subject: &str) -> Result<OrgId, BusError> {
        subject
            .strip_prefix(&*self.prefix)
            .and_then(|rest| rest.strip_prefix(".events."))
            .and_then(|org| OrgId::new(org).ok())
            .ok_or_else(|| BusError::UnexpectedSubject(subject.chars().take(200).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(OrgId::new("0190b2a4-7c1e-7c3d-9a5e-0123456789ab").is_ok());
        assert!(OrgId::new("ministry_of-finance2").is_ok());
        for bad in ["", "a.b", "a b", "*", ">", "a*", "org>", "$SYS", "ä", "a\tb", "a\n"] {
            assert!(OrgId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(OrgId::new(&"a".repeat(64)).is_ok());
        assert!(OrgId::new(&"a".repeat(65)).is_err());
        assert!(ConsumerName::new("detect").is_ok());
        assert!(ConsumerName::new("de.tect").is_err());
        assert!(Subjects::new("nigehban").is_ok());
        assert!(Subjects::new("a.b").is_err());
    }

    #[test]
    fn subjects_round_trip() {
        let subjects = Subjects::new("nigehban").unwrap();
        let org = OrgId::new("org-1").unwrap();
        assert_eq!(subjects.events(&org), "nigehban.events.org-1");
        assert_eq!(subjects.stream_name(), "nigehban_events");
        assert_eq!(subjects.filter(&Filter::All), "nigehban.events.>");
        assert_eq!(subjects.org_of("nigehban.events.org-1").unwrap(), org);
        assert!(subjects.org_of("other.events.org-1").is_err());
        assert!(subjects.org_of("nigehban.events.a.b").is_err());
        assert!(subjects.org_of("nigehban.eventsX.a").is_err());
    }

    #[test]
    fn filters() {
        let a = Filter::Organisation(OrgId::new("a").unwrap());
        let b = Filter::Organisation(OrgId::new("b").unwrap());
        assert!(!a.overlaps(&b));
        assert!(a.overlaps(&a));
        assert!(Filter::All.overlaps(&a));
        assert!(a.matches(&OrgId::new("a").unwrap()));
        assert!(!a.matches(&OrgId::new("b").unwrap()));
    }
}
