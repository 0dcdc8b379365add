//! Which events a rule applies to: the log source table (`data/logsources.yml`), kept as
//! data so that adding a channel or a field mapping is an edit to the table, not to code.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use nigehban_event::{Event, Product};
use serde::Deserialize;

use crate::rule::LogSource;

const TABLE: &str = include_str!("../data/logsources.yml");

#[derive(Deserialize)]
struct Table {
    windows_services: BTreeMap<String, Vec<String>>,
    windows_categories: BTreeMap<String, Vec<VariantSpec>>,
    other: Vec<OtherEntry>,
}

#[derive(Deserialize, Clone)]
struct VariantSpec {
    #[serde(default)]
    conditions: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum OneOrMany {
    One(Scalar),
    Many(Vec<Scalar>),
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Str(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Str(s) => s.clone(),
        }
    }
}

#[derive(Deserialize)]
struct OtherEntry {
    logsource: BTreeMap<String, String>,
    variants: Vec<VariantSpec>,
}

/// One way a rule's log source appears in events: conditions on fields, and the renames
/// that turn the rule's field names into this source's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Variant {
    /// Field → accepted values (lowercase text); every field must have one of its values.
    /// Shared by the rules of the log source, as are the renames.
    pub conditions: Arc<[(String, Vec<String>)]>,
    pub fields: Arc<BTreeMap<String, String>>,
}

impl Variant {
    pub fn channels(&self) -> Option<&[String]> {
        self.conditions.iter().find(|(f, _)| f == "Channel").map(|(_, v)| v.as_slice())
    }

    pub fn event_ids(&self) -> Option<Vec<i64>> {
        self.conditions
            .iter()
            .find(|(f, _)| f == "EventID")
            .map(|(_, v)| v.iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Whether the rule-set index (by channel, then by event id) already ensures every
    /// condition, so that `accepts` need not be called for events taken from the index.
    pub fn index_guarantees_conditions(&self) -> bool {
        self.channels().is_some()
            && self.conditions.iter().all(|(field, values)| match field.as_str() {
                "Channel" => true,
                "EventID" => values.iter().all(|v| v.parse::<i64>().is_ok_and(|n| n.to_string() == *v)),
                _ => false,
            })
    }

    pub fn accepts(&self, event: &Event) -> bool {
        self.conditions.iter().all(|(field, values)| {
            event.get(field).and_then(|v| v.as_lower_text()).is_some_and(|t| values.iter().any(|v| *v == *t))
        })
    }

    pub fn map_field(&self, name: &str) -> String {
        self.fields.get(name).cloned().unwrap_or_else(|| name.to_owned())
    }
}

impl From<&VariantSpec> for Variant {
    fn from(spec: &VariantSpec) -> Variant {
        let conditions = spec
            .conditions
            .iter()
            .map(|(k, v)| {
                let values = match v {
                    OneOrMany::One(s) => vec![s.text().to_lowercase()],
                    OneOrMany::Many(items) => items.iter().map(|s| s.text().to_lowercase()).collect(),
                };
                (k.clone(), values)
            })
            .collect();
        Variant { conditions, fields: Arc::new(spec.fields.clone()) }
    }
}

/// What the table says about one rule's log source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Products of the events the rule applies to; `None`: any.
    pub products: Option<Vec<Product>>,
    pub variants: Vec<Variant>,
    /// Set when the category or service is not in the table: the rule is evaluated against
    /// every event of its product.
    pub unmapped: Option<String>,
}

/// The parsed log source table.
pub struct LogSourceTable {
    table: Table,
    /// The variants of each Windows category, of each Windows service, and of each entry of
    /// `other`, built once: the rules of one log source share them.
    categories: BTreeMap<String, Vec<Variant>>,
    services: BTreeMap<String, Variant>,
    others: Vec<Vec<Variant>>,
}

impl LogSourceTable {
    /// The built-in table.
    pub fn builtin() -> &'static LogSourceTable {
        static T: OnceLock<LogSourceTable> = OnceLock::new();
        T.get_or_init(|| {
            // The table is part of the source tree and checked by a unit test, so a failure
            // here is a build defect, not an input error.
            let table = serde_saphyr::from_str::<Table>(TABLE).unwrap_or_else(|e| panic!("data/logsources.yml: {e}"));
            let categories = table
                .windows_categories
                .iter()
                .map(|(name, specs)| (name.clone(), specs.iter().map(Variant::from).collect()))
                .collect();
            let services = table
                .windows_services
                .iter()
                .map(|(name, channels)| {
                    let channels = channels.iter().map(|c| c.to_lowercase()).collect();
                    let variant =
                        Variant { conditions: Arc::new([("Channel".into(), channels)]), fields: Arc::default() };
                    (name.clone(), variant)
                })
                .collect();
            let others = table.other.iter().map(|e| e.variants.iter().map(Variant::from).collect()).collect();
            LogSourceTable { table, categories, services, others }
        })
    }

    pub fn resolve(&self, ls: &LogSource) -> Resolved {
        let products = ls.product.as_deref().map(|p| {
            vec![match p {
                "windows" => Product::Windows,
                "linux" => Product::Linux,
                "zeek" => Product::Zeek,
                _ => Product::Other,
            }]
        });
        let plain = |unmapped: Option<String>| Resolved {
            products: products.clone(),
            variants: vec![Variant::default()],
            unmapped,
        };
        if ls.product.as_deref() == Some("windows") {
            if let Some(cat) = &ls.category {
                return match self.categories.get(cat) {
                    Some(variants) => {
                        let mut variants = variants.clone();
                        // The service's channels, lowercased once with its variant.
                        if let Some(ch) =
                            ls.service.as_ref().and_then(|s| self.services.get(s)).and_then(Variant::channels)
                        {
                            variants.retain(|v| v.channels().is_none_or(|c| c.iter().any(|x| ch.contains(x))));
                        }
                        Resolved { products, variants, unmapped: None }
                    }
                    None => plain(Some(format!("category `{cat}`"))),
                };
            }
            if let Some(service) = &ls.service {
                return match self.services.get(service) {
                    Some(variant) => Resolved { products, variants: vec![variant.clone()], unmapped: None },
                    None => plain(Some(format!("service `{service}`"))),
                };
            }
            return plain(None);
        }
        for (entry, variants) in self.table.other.iter().zip(&self.others) {
            let get = |k: &str| entry.logsource.get(k).map(|s| s.to_lowercase());
            if get("product") == ls.product && get("category") == ls.category && get("service") == ls.service {
                // A data set names its parser, whatever product the reader gave the event
                // (vCenter, ESXi and Proxmox lines arrive over syslog as Linux events).
                let by_dataset = entry.variants.iter().all(|v| v.conditions.keys().any(|k| k == "event.dataset"));
                return Resolved {
                    products: if by_dataset { None } else { products },
                    variants: variants.clone(),
                    unmapped: None,
                };
            }
        }
        // A rule for any product whose category or service the table knows for no product
        // (a Windows category such as `file_event` also describes Sysmon for Linux's events).
        if ls.product.is_none() {
            if let Some(cat) = ls.category.as_ref().filter(|c| !self.table.windows_categories.contains_key(*c)) {
                return plain(Some(format!("category `{cat}`")));
            }
            if ls.category.is_none()
                && let Some(service) = ls.service.as_ref().filter(|s| !self.table.windows_services.contains_key(*s))
            {
                return plain(Some(format!("service `{service}`")));
            }
        }
        plain(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(p: &str, c: Option<&str>, s: Option<&str>) -> LogSource {
        LogSource { product: Some(p.into()), category: c.map(Into::into), service: s.map(Into::into) }
    }

    #[test]
    fn builtin_table_parses() {
        let t = LogSourceTable::builtin();
        let r = t.resolve(&ls("windows", Some("process_creation"), None));
        assert_eq!(r.variants.len(), 2);
        assert_eq!(r.variants[0].event_ids(), Some(vec![1]));
        assert_eq!(r.variants[1].map_field("Image"), "NewProcessName");
        let r = t.resolve(&ls("windows", None, Some("security")));
        assert_eq!(r.variants[0].channels(), Some(&["security".to_string()][..]));
        let r = t.resolve(&ls("windows", None, Some("no-such-service")));
        assert!(r.unmapped.is_some());
        let r = t.resolve(&ls("zeek", None, Some("dns")));
        assert_eq!(r.products, Some(vec![Product::Zeek]));
        assert_eq!(&r.variants[0].conditions[..], &[("_path".to_string(), vec!["dns".to_string()])]);
    }
}
