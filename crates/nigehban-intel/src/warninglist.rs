//! MISP warninglists: lists of known-good values (public resolvers, big CDNs, top domains) that
//! keep false positives out of an indicator set. Format: MISP's `list.json`
//! (`name`, `type`: `string` | `substring` | `hostname` | `cidr` | `regex`, `list`).

use std::net::IpAddr;

use serde::Deserialize;

use crate::ipset::IpSet;
use crate::strset::StrSet;
use crate::value::{Normalized, normalize_domain};

/// A warninglist that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarninglistError {
    #[error("{file}: not a MISP warninglist: {reason}")]
    Format { file: String, reason: String },
    #[error(
        "{file}: warninglist {name:?} has type {kind:?}, which is not supported (string, substring, hostname, cidr)"
    )]
    Unsupported { file: String, name: String, kind: String },
}

#[derive(Deserialize)]
struct ListFile {
    name: String,
    #[serde(rename = "type", default = "default_type")]
    kind: String,
    list: Vec<String>,
}

fn default_type() -> String {
    "string".into()
}

/// One loaded list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warninglist {
    pub name: String,
    pub kind: String,
    pub entries: usize,
}

/// Several warninglists, checked together.
#[derive(Default)]
pub struct Warninglists {
    lists: Vec<Warninglist>,
    exact: StrSet,
    hostnames: StrSet,
    substrings: Vec<(String, u32)>,
    cidrs: IpSet,
}

impl Warninglists {
    /// No lists.
    pub fn new() -> Warninglists {
        Warninglists::default()
    }

    /// The loaded lists.
    pub fn lists(&self) -> &[Warninglist] {
        &self.lists
    }

    /// Adds a list from its JSON text (`file` names it in errors).
    pub fn add_json(&mut self, file: &str, text: &str) -> Result<&Warninglist, WarninglistError> {
        let parsed: ListFile = serde_json::from_str(text)
            .map_err(|e| WarninglistError::Format { file: file.to_owned(), reason: e.to_string() })?;
        let id = self.lists.len() as u32;
        let mut entries = 0;
        match parsed.kind.as_str() {
            "string" => {
                for v in &parsed.list {
                    self.exact.insert(&v.trim().to_lowercase(), id);
                    entries += 1;
                }
            }
            "hostname" => {
                for v in &parsed.list {
                    if let Some(d) = normalize_domain(v.trim_start_matches("*.").trim_start_matches('.')) {
                        self.hostnames.insert(&d, id);
                        entries += 1;
                    }
                }
            }
            "substring" => {
                for v in &parsed.list {
                    self.substrings.push((v.to_lowercase(), id));
                    entries += 1;
                }
            }
            "cidr" => {
                for v in &parsed.list {
                    if let Ok(Normalized::Net(ip, len)) = crate::value::normalize(crate::IndicatorType::Ip, v) {
                        self.cidrs.insert(ip, len, id);
                        entries += 1;
                    }
                }
            }
            other => {
                return Err(WarninglistError::Unsupported {
                    file: file.to_owned(),
                    name: parsed.name,
                    kind: other.to_owned(),
                });
            }
        }
        self.lists.push(Warninglist { name: parsed.name, kind: parsed.kind, entries });
        Ok(&self.lists[id as usize])
    }

    fn name(&self, id: u32) -> Option<&str> {
        self.lists.get(id as usize).map(|l| l.name.as_str())
    }

    fn domain_listed(&self, d: &str) -> Option<&str> {
        let mut cur = d;
        loop {
            if let Some(id) = self.hostnames.get(cur) {
                return self.name(id);
            }
            match cur.find('.') {
                Some(i) => cur = &cur[i + 1..],
                None => return None,
            }
        }
    }

    /// The list a normalized indicator value is on, if any.
    pub(crate) fn check(&self, n: &Normalized, raw: &str) -> Option<&str> {
        let lowered = raw.trim().to_lowercase();
        if let Some(id) = self.exact.get(&lowered) {
            return self.name(id);
        }
        match n {
            Normalized::Net(ip, len) => {
                if let Some(id) = self.exact.get(&ip.to_string()) {
                    return self.name(id);
                }
                let full = if ip.is_ipv4() { 32 } else { 128 };
                if *len == full {
                    let mut found = None;
                    self.cidrs.lookup(*ip, |id, _| {
                        found = Some(id);
                        true
                    });
                    if let Some(id) = found {
                        return self.name(id);
                    }
                }
            }
            Normalized::Domain(d) => {
                if let Some(name) = self.domain_listed(d) {
                    return Some(name);
                }
            }
            Normalized::Url(u) => {
                if let Some(id) = self.exact.get(u) {
                    return self.name(id);
                }
                let host = u.split_once("://").map(|(_, r)| r.split(['/', ':']).next().unwrap_or(""));
                if let Some(h) = host {
                    if let Ok(ip) = h.parse::<IpAddr>() {
                        if let Some(id) = self.exact.get(&ip.to_string()) {
                            return self.name(id);
                        }
                    } else if let Some(name) = self.domain_listed(h) {
                        return Some(name);
                    }
                }
            }
            Normalized::Email(e) => {
                if let Some((_, d)) = e.rsplit_once('@')
                    && let Some(name) = self.domain_listed(d)
                {
                    return Some(name);
                }
            }
            _ => {}
        }
        self.substrings.iter().find(|(s, _)| lowered.contains(s.as_str())).and_then(|(_, id)| self.name(*id))
    }
}
