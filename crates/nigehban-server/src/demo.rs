//! The demo constituency: nCERT, six provincial and three sectoral CERTs, about twenty
//! organisations (an oil & gas company, a telecom, an IT board, ministries, banks, utilities),
//! a registered audit firm, one user per role with a fresh password and API token, and sample
//! incidents, alerts, indicators and an audit engagement at every TLP level — so that each role
//! sees something different.

use nigehban_policy::{Kind, OrgKind, Role, Scope, Share, ShareTarget, Tlp};
use nigehban_store::{Actor, NewObject, NewOrg, NewToken, NewUser, OrgProfile, OrgUpdate, Store};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::ApiError;
use crate::auth::{TOKEN_PREFIX, hash_password, new_secret, secret_hash};

/// A demo login, as written to `demo-credentials.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DemoUser {
    pub username: String,
    pub password: String,
    pub role: String,
    pub organisation: String,
    pub organisation_id: Uuid,
    /// What this user sees, in a sentence.
    pub sees: String,
    /// An API token acting for the user's organisation with the user's role.
    pub api_token: String,
}

struct OrgSpec {
    short: &'static str,
    name: &'static str,
    kind: OrgKind,
    parents: &'static [&'static str],
    sector: Option<&'static str>,
    province: Option<&'static str>,
    domains: &'static [&'static str],
    ranges: &'static [&'static str],
}

const fn org(
    short: &'static str,
    name: &'static str,
    kind: OrgKind,
    parents: &'static [&'static str],
    sector: Option<&'static str>,
    province: Option<&'static str>,
) -> OrgSpec {
    OrgSpec { short, name, kind, parents, sector, province, domains: &[], ranges: &[] }
}

use OrgKind::{AuditFirm, National, Organisation as O, ProvincialCert as P, SectoralCert as S};

/// The tree, parents before children. Addresses are documentation ranges (RFC 5737).
const ORGS: &[OrgSpec] = &[
    org("ncert", "National CERT", National, &[], Some("government"), None),
    org("cert-capital", "Capital Territory CERT", P, &["ncert"], None, Some("Capital Territory")),
    org("cert-north", "Northern Province CERT", P, &["ncert"], None, Some("Northern Province")),
    org("cert-south", "Southern Province CERT", P, &["ncert"], None, Some("Southern Province")),
    org("cert-east", "Eastern Province CERT", P, &["ncert"], None, Some("Eastern Province")),
    org("cert-west", "Western Province CERT", P, &["ncert"], None, Some("Western Province")),
    org("cert-highlands", "Highlands Province CERT", P, &["ncert"], None, Some("Highlands Province")),
    org("cert-telecom", "Telecom Sector CERT", S, &["ncert"], Some("telecom"), None),
    org("cert-banking", "Banking and Finance CERT", S, &["ncert"], Some("finance"), None),
    org("cert-power", "Power Sector CERT", S, &["ncert"], Some("energy"), None),
    OrgSpec {
        domains: &["mofa.gov.example"],
        ranges: &["192.0.2.0/26"],
        ..org(
            "mofa",
            "Ministry of Foreign Affairs",
            O,
            &["cert-capital"],
            Some("government"),
            Some("Capital Territory"),
        )
    },
    org(
        "mof",
        "Ministry of Finance",
        O,
        &["cert-capital", "cert-banking"],
        Some("government"),
        Some("Capital Territory"),
    ),
    org("moi", "Ministry of Interior", O, &["cert-capital"], Some("government"), Some("Capital Territory")),
    org("moh", "Ministry of Health", O, &["cert-capital"], Some("government"), Some("Capital Territory")),
    org("moe", "Ministry of Energy", O, &["cert-capital", "cert-power"], Some("government"), Some("Capital Territory")),
    OrgSpec {
        domains: &["itboard.gov.example"],
        ranges: &["192.0.2.64/26"],
        ..org("itboard", "National IT Board", O, &["cert-capital"], Some("government"), Some("Capital Territory"))
    },
    OrgSpec {
        domains: &["ntc.example"],
        ranges: &["198.51.100.0/24"],
        ..org(
            "ntc",
            "National Telecom Corporation",
            O,
            &["cert-capital", "cert-telecom"],
            Some("telecom"),
            Some("Capital Territory"),
        )
    },
    org(
        "mobilink",
        "Northern Mobile Networks",
        O,
        &["cert-north", "cert-telecom"],
        Some("telecom"),
        Some("Northern Province"),
    ),
    OrgSpec {
        domains: &["sogc.example"],
        ranges: &["203.0.113.0/25"],
        ..org(
            "sogc",
            "State Oil and Gas Company",
            O,
            &["cert-south", "cert-power"],
            Some("energy"),
            Some("Southern Province"),
        )
    },
    org(
        "pipeline",
        "National Gas Pipelines",
        O,
        &["cert-east", "cert-power"],
        Some("energy"),
        Some("Eastern Province"),
    ),
    org(
        "north-power",
        "Northern Electric Supply",
        O,
        &["cert-north", "cert-power"],
        Some("energy"),
        Some("Northern Province"),
    ),
    org(
        "central-bank",
        "Central Bank",
        O,
        &["cert-capital", "cert-banking"],
        Some("finance"),
        Some("Capital Territory"),
    ),
    org(
        "national-bank",
        "National Bank",
        O,
        &["cert-south", "cert-banking"],
        Some("finance"),
        Some("Southern Province"),
    ),
    org(
        "stock-exchange",
        "Stock Exchange",
        O,
        &["cert-south", "cert-banking"],
        Some("finance"),
        Some("Southern Province"),
    ),
    org(
        "revenue-north",
        "Northern Revenue Authority",
        O,
        &["cert-north"],
        Some("government"),
        Some("Northern Province"),
    ),
    org("water-west", "Western Water and Sanitation", O, &["cert-west"], Some("utilities"), Some("Western Province")),
    org("health-east", "Eastern Health Department", O, &["cert-east"], Some("health"), Some("Eastern Province")),
    org(
        "highlands-univ",
        "Highlands University",
        O,
        &["cert-highlands"],
        Some("education"),
        Some("Highlands Province"),
    ),
    org("crescent-audit", "Crescent Assurance (registered audit firm)", AuditFirm, &[], None, None),
];

/// (username, display name, role, organisation, what the role sees).
const USERS: &[(&str, &str, Role, &str, &str)] = &[
    (
        "admin",
        "Platform Administrator",
        Role::PlatformAdmin,
        "ncert",
        "accounts, tokens, the tree and the audit log; no incident content",
    ),
    (
        "national.analyst",
        "Nadia Qureshi (nCERT)",
        Role::NationalAnalyst,
        "ncert",
        "everything reported up from the whole country",
    ),
    (
        "capital.analyst",
        "Bilal Ahmed (Capital CERT)",
        Role::CertAnalyst,
        "cert-capital",
        "the Capital Territory CERT's constituency",
    ),
    (
        "capital.manager",
        "Sana Malik (Capital CERT)",
        Role::CertManager,
        "cert-capital",
        "the constituency, and can share it onward",
    ),
    (
        "mofa.lead",
        "Omar Farooq (Foreign Affairs)",
        Role::OrgSecurityLead,
        "mofa",
        "the Foreign Ministry's own material and what was shared with it",
    ),
    (
        "mofa.reporter",
        "Hina Raza (Foreign Affairs)",
        Role::OrgReporter,
        "mofa",
        "the Foreign Ministry's incident reports",
    ),
    (
        "telecom.lead",
        "Kamran Shah (National Telecom)",
        Role::OrgSecurityLead,
        "ntc",
        "National Telecom's own material and shared indicators",
    ),
    (
        "auditor",
        "Ayesha Siddiqui (Crescent Assurance)",
        Role::Auditor,
        "crescent-audit",
        "only the audit engagement assigned to her",
    ),
];

/// Creates the demo constituency, users and sample material in an empty store.
pub async fn seed(store: &Store) -> Result<Vec<DemoUser>, ApiError> {
    let system = Actor::system();
    let mut ids: Vec<(&str, Uuid)> = Vec::new();
    let id_of = |ids: &[(&str, Uuid)], short: &str| ids.iter().find(|(s, _)| *s == short).map(|(_, id)| *id);
    for o in ORGS {
        let parents = o.parents.iter().filter_map(|p| id_of(&ids, p)).collect();
        let created = store
            .create_org(
                &system,
                NewOrg {
                    kind: o.kind,
                    name: o.name.into(),
                    short_name: o.short.into(),
                    sector: o.sector.map(Into::into),
                    province: o.province.map(Into::into),
                    parents,
                    profile: OrgProfile {
                        description: String::new(),
                        contacts: vec![format!("soc@{}.example", o.short)],
                        ip_ranges: o.ranges.iter().map(|s| s.to_string()).collect(),
                        asns: Vec::new(),
                        domains: o.domains.iter().map(|s| s.to_string()).collect(),
                    },
                },
            )
            .await?;
        ids.push((o.short, created.id));
    }
    let org = |s: &str| id_of(&ids, s).ok_or_else(ApiError::internal);
    let mut out = Vec::new();
    let mut user_ids = Vec::new();
    for (username, display, role, short, sees) in USERS {
        let password = new_secret()[..16].to_owned();
        let pw = password.clone();
        let hash =
            tokio::task::spawn_blocking(move || hash_password(&pw)).await.map_err(|_| ApiError::internal())??;
        let org_id = org(short)?;
        let user = store
            .create_user(
                &system,
                NewUser {
                    org: org_id,
                    username: (*username).into(),
                    display_name: (*display).into(),
                    email: Some(format!("{username}@{short}.example")),
                    role: *role,
                    password_hash: hash,
                },
            )
            .await?;
        let secret = format!("{TOKEN_PREFIX}{}", new_secret());
        let scopes: Vec<Scope> = match role {
            Role::CertManager => vec!["*:read".parse(), "*:write".parse(), "*:share".parse()],
            _ => vec!["*:read".parse(), "*:write".parse()],
        }
        .into_iter()
        .collect::<Result<_, String>>()
        .map_err(|_| ApiError::internal())?;
        store
            .create_token(
                &Actor { user: Some(user.id), org: Some(org_id), ..Actor::system() },
                NewToken {
                    org: org_id,
                    created_by: Some(user.id),
                    name: format!("demo token of {username}"),
                    role: *role,
                    scopes,
                    token_hash: secret_hash(&secret),
                    prefix: secret.chars().take(10).collect(),
                    expires_at: None,
                },
            )
            .await?;
        let org_name = ORGS.iter().find(|o| o.short == *short).map_or("", |o| o.name);
        out.push(DemoUser {
            username: (*username).into(),
            password,
            role: role.as_str().into(),
            organisation: org_name.into(),
            organisation_id: org_id,
            sees: (*sees).into(),
            api_token: secret,
        });
        user_ids.push((*username, user.id));
    }
    let user = |name: &str| user_ids.iter().find(|(u, _)| *u == name).map(|(_, id)| *id).ok_or_else(ApiError::internal);
    for (short, lead) in [("mofa", "mofa.lead"), ("ntc", "telecom.lead")] {
        store
            .update_org(
                &system,
                org(short)?,
                OrgUpdate { security_lead: Some(Some(user(lead)?)), ..Default::default() },
            )
            .await?;
    }
    let tree = store.tree().await?;
    struct Sample {
        kind: Kind,
        owner: &'static str,
        by: &'static str,
        tlp: Tlp,
        title: &'static str,
        body: serde_json::Value,
        recipients: &'static [&'static str],
        assignees: &'static [&'static str],
        shares: &'static [(&'static str, Option<&'static str>)],
    }
    let samples = [
        Sample {
            kind: Kind::Incident,
            owner: "mofa",
            by: "mofa.reporter",
            tlp: Tlp::Amber,
            title: "Persistent outbound connections to known C2 infrastructure",
            body: json!({"category": "malicious-code/c2-server", "severity": "high", "status": "triage", "description": "Proxy logs show workstations calling 203.0.113.77 every 60 seconds since mid-month."}),
            recipients: &[],
            assignees: &[],
            shares: &[],
        },
        Sample {
            kind: Kind::Alert,
            owner: "mofa",
            by: "mofa.lead",
            tlp: Tlp::AmberStrict,
            title: "Beaconing: 10.20.4.17 → 203.0.113.77:443 every 60 s",
            body: json!({"rule": "beaconing", "severity": "high", "count": 1440}),
            recipients: &[],
            assignees: &[],
            shares: &[],
        },
        Sample {
            kind: Kind::Incident,
            owner: "mofa",
            by: "mofa.lead",
            tlp: Tlp::Red,
            title: "Ambassador's mailbox accessed from abroad",
            body: json!({"category": "intrusions/system-compromise", "severity": "critical", "status": "open"}),
            recipients: &["national.analyst", "capital.manager"],
            assignees: &[],
            shares: &[],
        },
        Sample {
            kind: Kind::Incident,
            owner: "sogc",
            by: "national.analyst",
            tlp: Tlp::Amber,
            title: "21 virtual servers deleted in the core data centre",
            body: json!({"category": "availability/sabotage", "severity": "critical", "status": "recovery", "rto_hours": 24}),
            recipients: &[],
            assignees: &[],
            shares: &[],
        },
        Sample {
            kind: Kind::Incident,
            owner: "ntc",
            by: "telecom.lead",
            tlp: Tlp::Amber,
            title: "Zimbra mail platform compromised; internal users impersonated",
            body: json!({"category": "intrusions/system-compromise", "severity": "critical", "status": "containment"}),
            recipients: &[],
            assignees: &[],
            shares: &[("capital.manager", Some("mof"))],
        },
        Sample {
            kind: Kind::Indicator,
            owner: "ntc",
            by: "telecom.lead",
            tlp: Tlp::Green,
            title: "Zimbra web shell upload path /opt/zimbra/jetty/webapps/zimbra/public/ico.jsp",
            body: json!({"type": "file-path", "value": "/opt/zimbra/jetty/webapps/zimbra/public/ico.jsp"}),
            recipients: &[],
            assignees: &[],
            shares: &[("capital.manager", None)],
        },
        Sample {
            kind: Kind::Incident,
            owner: "itboard",
            by: "national.analyst",
            tlp: Tlp::AmberStrict,
            title: "Senior accounts compromised across several federal ministries",
            body: json!({"category": "intrusions/privileged-account-compromise", "severity": "high", "status": "open"}),
            recipients: &[],
            assignees: &[],
            shares: &[],
        },
        Sample {
            kind: Kind::Indicator,
            owner: "ncert",
            by: "national.analyst",
            tlp: Tlp::Clear,
            title: "C2 server 203.0.113.77",
            body: json!({"type": "ipv4-addr", "value": "203.0.113.77", "pattern": "[ipv4-addr:value = '203.0.113.77']"}),
            recipients: &[],
            assignees: &[],
            // nCERT publishes it to every member organisation.
            shares: &[("national.analyst", None)],
        },
        Sample {
            kind: Kind::Engagement,
            owner: "mofa",
            by: "mofa.lead",
            tlp: Tlp::Amber,
            title: "Annual information security audit 2026 (Foreign Affairs)",
            body: json!({"framework": "national baseline controls", "status": "fieldwork"}),
            recipients: &[],
            assignees: &["auditor"],
            shares: &[],
        },
    ];
    for s in samples {
        let by = user(s.by)?;
        let by_org = store.user(by).await?.map(|u| u.org).ok_or_else(ApiError::internal)?;
        let recipients = s.recipients.iter().map(|r| user(r)).collect::<Result<Vec<_>, _>>()?;
        let assignees = s.assignees.iter().map(|r| user(r)).collect::<Result<Vec<_>, _>>()?;
        let o = store
            .create_object(
                &Actor { user: Some(by), org: Some(by_org), ..Actor::system() },
                &tree,
                NewObject {
                    kind: s.kind,
                    owner: org(s.owner)?,
                    tlp: s.tlp,
                    title: s.title.into(),
                    body: s.body,
                    created_by: Some(by),
                    recipients,
                    assignees,
                },
            )
            .await?;
        for (sharer, target) in s.shares {
            let sharer_id = user(sharer)?;
            let sharer_org = store.user(sharer_id).await?.map(|u| u.org).ok_or_else(ApiError::internal)?;
            let target = match target {
                Some(t) => ShareTarget::Org(org(t)?),
                None => ShareTarget::Community,
            };
            store
                .share_object(
                    &Actor { user: Some(sharer_id), org: Some(sharer_org), ..Actor::system() },
                    o.id,
                    Share { by: sharer_org, target },
                )
                .await?;
        }
    }
    Ok(out)
}
