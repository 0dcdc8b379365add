//! What templates show: labels, TLP badges, times, rows of objects. Everything a template
//! prints is prepared here as plain strings (askama escapes them).

use std::collections::HashMap;

use nigehban_policy::admin::visible_orgs;
use nigehban_policy::{Kind, OrgKind, Tlp};
use nigehban_store::{Object, Org};
use uuid::Uuid;

use super::Viewer;

/// A TLP label as FIRST TLP 2.0 shows it (coloured text on black; the CSS class sets the colour).
pub(crate) struct TlpBadge {
    pub label: String,
    pub class: &'static str,
    pub meaning: &'static str,
}

pub(crate) fn tlp_badge(t: Tlp) -> TlpBadge {
    let class = match t {
        Tlp::Clear => "tlp-clear",
        Tlp::Green => "tlp-green",
        Tlp::Amber => "tlp-amber",
        Tlp::AmberStrict => "tlp-amber-strict",
        Tlp::Red => "tlp-red",
    };
    TlpBadge { label: t.to_string(), class, meaning: tlp_meaning(t) }
}

/// What a TLP level allows, in a sentence.
pub(crate) fn tlp_meaning(t: Tlp) -> &'static str {
    match t {
        Tlp::Clear => "Public: may be shared without restriction.",
        Tlp::Green => "Community: may be shared with member organisations of the platform, never publicly.",
        Tlp::Amber => {
            "Limited disclosure: the owner's organisation and the CERTs it reports to, and organisations a CERT of \
             that chain shares it with on a need-to-know basis."
        }
        Tlp::AmberStrict => {
            "Limited disclosure, strict: the owner's organisation and the CERTs it reports to only; no onward \
             sharing."
        }
        Tlp::Red => "For the named recipients only; nobody else, the owner's colleagues included.",
    }
}

pub(crate) fn kind_label(k: Kind) -> &'static str {
    match k {
        Kind::Event => "Event",
        Kind::Alert => "Alert",
        Kind::Incident => "Incident",
        Kind::Indicator => "Indicator",
        Kind::Sighting => "Sighting",
        Kind::Engagement => "Audit engagement",
    }
}

pub(crate) fn kind_plural_label(k: Kind) -> &'static str {
    match k {
        Kind::Event => "Events",
        Kind::Alert => "Alerts",
        Kind::Incident => "Incidents",
        Kind::Indicator => "Indicators",
        Kind::Sighting => "Sightings",
        Kind::Engagement => "Audit engagements",
    }
}

pub(crate) fn org_kind_label(k: OrgKind) -> &'static str {
    match k {
        OrgKind::National => "National CERT",
        OrgKind::ProvincialCert => "Provincial CERT",
        OrgKind::SectoralCert => "Sectoral CERT",
        OrgKind::Organisation => "Organisation",
        OrgKind::AuditFirm => "Registered audit firm",
    }
}

/// A time for people (UTC, to the minute) and for machines (RFC 3339).
pub(crate) struct When {
    pub text: String,
    pub iso: String,
}

pub(crate) fn when(micros: i64) -> When {
    let t = nigehban_store::timestamp(micros);
    When { text: t.strftime("%Y-%m-%d %H:%M UTC").to_string(), iso: t.to_string() }
}

/// A link, or plain text when there is nowhere to go.
pub(crate) struct Link {
    pub text: String,
    pub href: Option<String>,
}

/// The organisations by id, with which of them the viewer may open.
pub(crate) struct OrgNames {
    orgs: HashMap<Uuid, Org>,
    visible: Vec<Uuid>,
}

impl OrgNames {
    pub(crate) fn new(orgs: Vec<Org>, v: &Viewer) -> OrgNames {
        OrgNames {
            orgs: orgs.into_iter().map(|o| (o.id, o)).collect(),
            visible: visible_orgs(&v.auth.principal, &v.tree),
        }
    }

    pub(crate) fn get(&self, id: Uuid) -> Option<&Org> {
        self.orgs.get(&id)
    }

    pub(crate) fn name(&self, id: Uuid) -> String {
        self.orgs.get(&id).map_or_else(|| "an organisation no longer on the platform".to_owned(), |o| o.name.clone())
    }

    /// A link to the organisation's page when the viewer may see it.
    pub(crate) fn link(&self, id: Uuid) -> Link {
        Link { text: self.name(id), href: self.visible.contains(&id).then(|| format!("/orgs/{id}")) }
    }
}

/// One object in a list.
pub(crate) struct ObjectRow {
    pub href: String,
    pub title: String,
    pub kind: &'static str,
    pub tlp: TlpBadge,
    pub owner: Link,
    pub created: When,
}

pub(crate) fn object_row(o: &Object, names: &OrgNames) -> ObjectRow {
    ObjectRow {
        href: format!("/objects/{}/{}", o.kind.plural(), o.id),
        title: o.title.clone(),
        kind: kind_label(o.kind),
        tlp: tlp_badge(o.tlp),
        owner: names.link(o.owner),
        created: when(o.created_at),
    }
}

/// An option of a `<select>`.
pub(crate) struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// The TLP levels as choices (with "any" first when `any` is given).
pub(crate) fn tlp_choices(selected: &str, any: Option<&str>) -> Vec<Choice> {
    let mut out = Vec::new();
    if let Some(label) = any {
        out.push(Choice { value: String::new(), label: label.to_owned(), selected: selected.is_empty() });
    }
    for t in Tlp::ALL {
        out.push(Choice { value: t.as_str().to_owned(), label: t.to_string(), selected: selected == t.as_str() });
    }
    out
}

/// Percent-encodes a query string value.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON value as text: strings as they are, the rest as compact JSON.
pub(crate) fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) if items.iter().all(|i| i.is_string() || i.is_number()) => {
            items.iter().map(value_text).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

/// A field name for people: `rto_hours` → `Rto hours`.
pub(crate) fn field_label(key: &str) -> String {
    let spaced = key.replace(['_', '-'], " ");
    let mut c = spaced.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_labels() {
        assert_eq!(
            url_encode("/objects/incidents?q=a b&tlp=AMBER+STRICT"),
            "/objects/incidents%3Fq%3Da%20b%26tlp%3DAMBER%2BSTRICT"
        );
        assert_eq!(field_label("rto_hours"), "Rto hours");
        assert_eq!(value_text(&serde_json::json!(["a", 1])), "a, 1");
        assert_eq!(value_text(&serde_json::json!({"a": 1})), "{\"a\":1}");
        assert_eq!(tlp_badge(Tlp::AmberStrict).label, "TLP:AMBER+STRICT");
    }
}
