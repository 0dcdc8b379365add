//! Roles, the kinds of objects they act on, the actions, and the scopes that narrow API tokens.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{OrgId, OrgKind, UserId};

/// What a user does inside its organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Works at nCERT: sees what is reported up to it.
    NationalAnalyst,
    /// Works what a CERT can see: triage, escalation.
    CertAnalyst,
    /// A CERT analyst who also shares and administers the CERT.
    CertManager,
    /// An organisation's designated senior security lead: manages its reports.
    OrgSecurityLead,
    /// Creates and reads its organisation's reports.
    OrgReporter,
    /// Sees only the audit engagements assigned to them.
    Auditor,
    /// Manages accounts and configuration; reads no incident or intelligence content.
    PlatformAdmin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 7] = [
        Role::NationalAnalyst,
        Role::CertAnalyst,
        Role::CertManager,
        Role::OrgSecurityLead,
        Role::OrgReporter,
        Role::Auditor,
        Role::PlatformAdmin,
    ];

    /// The role's name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::NationalAnalyst => "national_analyst",
            Role::CertAnalyst => "cert_analyst",
            Role::CertManager => "cert_manager",
            Role::OrgSecurityLead => "org_security_lead",
            Role::OrgReporter => "org_reporter",
            Role::Auditor => "auditor",
            Role::PlatformAdmin => "platform_admin",
        }
    }

    /// A human-readable name.
    pub fn label(self) -> &'static str {
        match self {
            Role::NationalAnalyst => "National analyst",
            Role::CertAnalyst => "CERT analyst",
            Role::CertManager => "CERT manager",
            Role::OrgSecurityLead => "Security lead",
            Role::OrgReporter => "Reporter",
            Role::Auditor => "Auditor",
            Role::PlatformAdmin => "Platform administrator",
        }
    }

    /// Whether a user of this role may belong to an organisation of that kind.
    pub fn fits(self, kind: OrgKind) -> bool {
        match self {
            Role::NationalAnalyst => kind == OrgKind::National,
            Role::CertAnalyst | Role::CertManager => kind.is_cert(),
            Role::OrgSecurityLead | Role::OrgReporter => kind == OrgKind::Organisation,
            Role::Auditor => kind == OrgKind::AuditFirm || kind.is_cert(),
            Role::PlatformAdmin => true,
        }
    }

    /// The kinds of objects the role reads at all (where the marking then allows it).
    pub fn reads(self, kind: Kind) -> bool {
        match self {
            Role::NationalAnalyst | Role::CertAnalyst | Role::CertManager | Role::OrgSecurityLead => true,
            Role::OrgReporter => matches!(kind, Kind::Incident | Kind::Sighting),
            Role::Auditor => kind == Kind::Engagement,
            Role::PlatformAdmin => false,
        }
    }

    /// Whether the role works for a CERT (triage, escalation, sharing).
    pub fn is_cert_role(self) -> bool {
        matches!(self, Role::NationalAnalyst | Role::CertAnalyst | Role::CertManager)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
            format!("unknown role {s:?}: expected one of {}", names.join(", "))
        })
    }
}

/// The kinds of marked objects the platform keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A log event collected from an organisation (evidence: never amended).
    Event,
    /// What monitoring raised on an organisation's data.
    Alert,
    /// A reported incident.
    Incident,
    /// An indicator of compromise.
    Indicator,
    /// A sighting of an indicator by an organisation.
    Sighting,
    /// An audit engagement of an organisation.
    Engagement,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] =
        [Kind::Event, Kind::Alert, Kind::Incident, Kind::Indicator, Kind::Sighting, Kind::Engagement];

    /// The kind's singular name (database, audit log).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Alert => "alert",
            Kind::Incident => "incident",
            Kind::Indicator => "indicator",
            Kind::Sighting => "sighting",
            Kind::Engagement => "engagement",
        }
    }

    /// The kind's plural name (API paths).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Event => "events",
            Kind::Alert => "alerts",
            Kind::Incident => "incidents",
            Kind::Indicator => "indicators",
            Kind::Sighting => "sightings",
            Kind::Engagement => "engagements",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;

    /// Reads the singular or the plural name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s || k.plural() == s)
            .ok_or_else(|| format!("unknown object kind {s:?}"))
    }
}

/// What a principal wants to do with an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// See it in a list.
    List,
    /// Open it.
    Read,
    /// Find it by a search.
    Search,
    /// Take a copy out of the platform (a download, a STIX bundle).
    Export,
    /// Amend it (an owner) or triage it (a CERT).
    Write,
    /// Share it beyond the owner's chain.
    Share,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 6] =
        [Action::List, Action::Read, Action::Search, Action::Export, Action::Write, Action::Share];

    /// The action's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::List => "list",
            Action::Read => "read",
            Action::Search => "search",
            Action::Export => "export",
            Action::Write => "write",
            Action::Share => "share",
        }
    }
}

/// The verb part of a token scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    /// List, read, search and export.
    Read,
    /// Create and amend (for events: ingest).
    Write,
    /// Share.
    Share,
}

/// A permission an API token carries: `incidents:read`, `events:write` (a log shipper),
/// `*:read`. A token can never do more than its role allows; scopes only narrow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The kind it applies to; `None` for every kind (`*`).
    pub kind: Option<Kind>,
    /// What it allows.
    pub verb: Verb,
}

impl Scope {
    /// Whether this scope covers the action on the kind.
    pub fn allows(self, kind: Kind, action: Action) -> bool {
        if self.kind.is_some_and(|k| k != kind) {
            return false;
        }
        match action {
            Action::List | Action::Read | Action::Search | Action::Export => self.verb == Verb::Read,
            Action::Write => self.verb == Verb::Write,
            Action::Share => self.verb == Verb::Share,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind.map_or("*", Kind::plural);
        let verb = match self.verb {
            Verb::Read => "read",
            Verb::Write => "write",
            Verb::Share => "share",
        };
        write!(f, "{kind}:{verb}")
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, verb) = s
            .split_once(':')
            .ok_or_else(|| format!("scope {s:?} is not KIND:VERB (e.g. incidents:read, events:write)"))?;
        let kind = if kind == "*" { None } else { Some(kind.parse::<Kind>()?) };
        let verb = match verb {
            "read" => Verb::Read,
            "write" => Verb::Write,
            "share" => Verb::Share,
            _ => return Err(format!("scope {s:?}: unknown verb {verb:?} (expected read, write or share)")),
        };
        Ok(Scope { kind, verb })
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Who is asking: a signed-in user, or a machine acting through an API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user; `None` for an API token (tokens act for an organisation, never as a named
    /// individual, so they never read TLP:RED).
    pub user: Option<UserId>,
    /// The organisation it acts for.
    pub org: OrgId,
    /// Its role (for a token: the role it was issued with, at most its creator's).
    pub role: Role,
    /// For a token, what it may do; `None` for a user (the role alone decides).
    pub scopes: Option<Vec<Scope>>,
}

impl Principal {
    /// Whether the token scopes (if any) allow the action on the kind.
    pub fn scoped(&self, kind: Kind, action: Action) -> bool {
        self.scopes.as_ref().is_none_or(|s| s.iter().any(|s| s.allows(kind, action)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_narrow() {
        let s: Scope = "events:write".parse().unwrap();
        assert_eq!(s.to_string(), "events:write");
        assert!(s.allows(Kind::Event, Action::Write));
        assert!(!s.allows(Kind::Event, Action::Read));
        assert!(!s.allows(Kind::Alert, Action::Write));
        let all: Scope = "*:read".parse().unwrap();
        assert!(all.allows(Kind::Indicator, Action::Export));
        assert!("incidents".parse::<Scope>().is_err());
        assert!("incidents:delete".parse::<Scope>().is_err());
    }

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse(), Ok(r));
        }
        for k in Kind::ALL {
            assert_eq!(k.plural().parse(), Ok(k));
            assert_eq!(k.as_str().parse(), Ok(k));
        }
    }
}
