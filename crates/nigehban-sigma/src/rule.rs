//! A Sigma rule document: metadata, log source and the raw detection, read from YAML.

use serde_json::Value as Json;

use crate::Error;

/// Severity, as Sigma's `level` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    Informational,
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "informational" | "info" => Level::Informational,
            "low" => Level::Low,
            "medium" | "med" => Level::Medium,
            "high" => Level::High,
            "critical" | "crit" => Level::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    pub const ALL: [Level; 5] = [Level::Informational, Level::Low, Level::Medium, Level::High, Level::Critical];
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// `logsource`: what kind of log a rule is written for. Values are kept lowercase.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LogSource {
    pub product: Option<String>,
    pub category: Option<String>,
    pub service: Option<String>,
}

impl std::fmt::Display for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = &self.product {
            parts.push(format!("product={p}"));
        }
        if let Some(c) = &self.category {
            parts.push(format!("category={c}"));
        }
        if let Some(s) = &self.service {
            parts.push(format!("service={s}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// A Sigma rule as written: the detection is kept as YAML data and compiled separately.
#[derive(Clone, Debug, Default)]
pub struct Rule {
    pub id: Option<String>,
    pub name: Option<String>,
    pub title: String,
    pub status: Option<String>,
    pub description: Option<String>,
    pub author: Option<String>,
    pub level: Level,
    pub tags: Vec<String>,
    pub references: Vec<String>,
    pub falsepositives: Vec<String>,
    /// Fields the rule's author suggests showing with a match.
    pub fields: Vec<String>,
    pub logsource: LogSource,
    /// The `detection` map (searches and `condition`). `Null` for correlation rules, and in a
    /// [`RuleSet`](crate::RuleSet), which keeps the detection compiled only.
    pub detection: Json,
    /// The fields the detection's searches name, in the order they are first named (without
    /// modifiers): what a match shows when the rule suggests no `fields`.
    pub detection_fields: Vec<String>,
    /// The `correlation` section of a correlation rule.
    pub correlation: Option<Json>,
}

impl Rule {
    /// ATT&CK technique and tactic tags (`attack.t1059.001`, `attack.execution`).
    pub fn attack_tags(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().map(String::as_str).filter(|t| t.starts_with("attack."))
    }

    /// Reads one rule from a YAML document already parsed to a JSON value.
    pub fn from_json(doc: &Json) -> Result<Rule, Error> {
        let Json::Object(map) = doc else {
            return Err(Error::Missing("rule (the document is not a map)"));
        };
        Self::from_map(map, map.get("detection").cloned(), map.get("correlation").cloned())
    }

    /// As [`Rule::from_json`], taking the document's detection rather than copying it.
    pub fn from_document(doc: Json) -> Result<Rule, Error> {
        let Json::Object(mut map) = doc else {
            return Err(Error::Missing("rule (the document is not a map)"));
        };
        let (detection, correlation) = (map.remove("detection"), map.remove("correlation"));
        Self::from_map(&map, detection, correlation)
    }

    /// The rule of a document's map, whose `detection` and `correlation` are given apart.
    fn from_map(
        map: &serde_json::Map<String, Json>,
        detection: Option<Json>,
        correlation: Option<Json>,
    ) -> Result<Rule, Error> {
        let text = |k: &str| map.get(k).and_then(scalar_text);
        let list = |k: &str| match map.get(k) {
            Some(Json::Array(items)) => items.iter().filter_map(scalar_text).collect(),
            Some(v) => scalar_text(v).into_iter().collect(),
            None => Vec::new(),
        };
        let title = text("title").ok_or(Error::Missing("title"))?;
        let level = match text("level") {
            Some(l) => Level::parse(&l)
                .ok_or(Error::Missing("level (not one of informational, low, medium, high, critical)"))?,
            None => Level::Medium,
        };
        let logsource = match map.get("logsource") {
            Some(Json::Object(ls)) => {
                let get = |k: &str| ls.get(k).and_then(scalar_text).map(|s| s.trim().to_lowercase());
                LogSource { product: get("product"), category: get("category"), service: get("service") }
            }
            Some(_) => return Err(Error::Missing("logsource (not a map)")),
            None => LogSource::default(),
        };
        let detection = detection.unwrap_or(Json::Null);
        if detection.is_null() && correlation.is_none() {
            if map.contains_key("filter") {
                return Err(Error::Unsupported("filter rules (meta filters) are not applied by themselves".into()));
            }
            return Err(Error::Missing("detection"));
        }
        Ok(Rule {
            id: text("id"),
            name: text("name"),
            title,
            status: text("status"),
            description: text("description"),
            author: text("author"),
            level,
            tags: list("tags").into_iter().map(|t| t.to_lowercase()).collect(),
            references: list("references"),
            falsepositives: list("falsepositives"),
            fields: list("fields"),
            logsource,
            detection_fields: detection_fields(&detection),
            detection,
            correlation,
        })
    }
}

/// The field names of a detection's searches (see [`Rule::detection_fields`]).
fn detection_fields(detection: &Json) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let add_map = |m: &serde_json::Map<String, Json>, out: &mut Vec<String>| {
        for key in m.keys() {
            let field = key.split('|').next().unwrap_or("").trim();
            if !field.is_empty() && !out.iter().any(|f| f == field) {
                out.push(field.to_owned());
            }
        }
    };
    if let Json::Object(searches) = detection {
        for (name, body) in searches {
            if name == "condition" {
                continue;
            }
            match body {
                Json::Object(m) => add_map(m, &mut out),
                Json::Array(items) => {
                    for i in items {
                        if let Json::Object(m) = i {
                            add_map(m, &mut out);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// The text of a scalar YAML value (strings, numbers and booleans).
pub fn scalar_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses YAML text into its documents (a file may hold several, separated by `---`).
pub fn parse_yaml_documents(text: &str) -> Result<Vec<Json>, Error> {
    crate::yaml::parse(text)
}

/// Parses all rules in one YAML file. Each document yields a rule or an error; the errors
/// say which document (1-based) they come from when there are several.
pub fn parse_rules(text: &str) -> Vec<Result<Rule, Error>> {
    let docs = match parse_yaml_documents(text) {
        Ok(d) => d,
        Err(e) => return vec![Err(e)],
    };
    let many = docs.len() > 1;
    // Sigma v1 "action: global" collections merge a global document into the others.
    let mut global: Option<serde_json::Map<String, Json>> = None;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        if let Some(Json::String(action)) = doc.get("action") {
            match action.as_str() {
                "global" => {
                    global = doc.as_object().cloned();
                    continue;
                }
                "reset" => {
                    global = None;
                    continue;
                }
                "repeat" => {}
                other => {
                    out.push(Err(Error::Unsupported(format!("document {}: action `{other}`", i + 1))));
                    continue;
                }
            }
        }
        let doc = match &global {
            Some(g) => {
                let mut m = g.clone();
                m.remove("action");
                if let Json::Object(own) = doc {
                    for (k, v) in own {
                        merge(&mut m, &k, v);
                    }
                }
                Json::Object(m)
            }
            None => doc,
        };
        out.push(Rule::from_document(doc).map_err(|e| if many { annotate(e, i + 1) } else { e }));
    }
    out
}

fn merge(map: &mut serde_json::Map<String, Json>, key: &str, value: Json) {
    match (map.get_mut(key), value) {
        (Some(Json::Object(existing)), Json::Object(new)) => {
            for (k, v) in new {
                merge(existing, &k, v);
            }
        }
        (_, value) => {
            map.insert(key.to_owned(), value);
        }
    }
}

fn annotate(e: Error, doc: usize) -> Error {
    match e {
        Error::Missing(what) => Error::Unsupported(format!("document {doc}: missing or invalid `{what}`")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_metadata_and_logsource() {
        let rules = parse_rules(
            "title: T\nid: 123\nlevel: HIGH\ntags: [attack.T1059, attack.execution]\nlogsource:\n  product: Windows\n  category: process_creation\ndetection:\n  sel:\n    Image|endswith: x\n  condition: sel\n",
        );
        let r = rules[0].as_ref().unwrap();
        assert_eq!(r.title, "T");
        assert_eq!(r.id.as_deref(), Some("123"));
        assert_eq!(r.level, Level::High);
        assert_eq!(r.logsource.product.as_deref(), Some("windows"));
        assert_eq!(r.attack_tags().collect::<Vec<_>>(), ["attack.t1059", "attack.execution"]);
    }

    #[test]
    fn bad_yaml_and_missing_parts_are_errors() {
        assert!(matches!(parse_rules("title: [unclosed\n")[0], Err(Error::Yaml(_))));
        assert_eq!(parse_rules("title: x\n")[0].as_ref().unwrap_err(), &Error::Missing("detection"));
        assert_eq!(parse_rules("detection: {}\n")[0].as_ref().unwrap_err(), &Error::Missing("title"));
    }

    #[test]
    fn several_documents_give_several_rules() {
        let rules = parse_rules(
            "title: a\ndetection: {s: {x: 1}, condition: s}\n---\ntitle: b\ndetection: {s: {x: 2}, condition: s}\n",
        );
        assert_eq!(rules.len(), 2);
        assert!(rules.iter().all(Result::is_ok));
    }

    /// The fields a detection names, each once, in order, without modifiers; the same whether
    /// the rule is read from a borrowed document or from one it takes.
    #[test]
    fn detection_fields_in_the_order_they_are_named() {
        let yaml = "title: t\ndetection:\n  a:\n    Image|endswith: x\n    CommandLine|contains|all: [y, z]\n  b:\n    - ParentImage: p\n    - Image: q\n  k: [kw]\n  condition: (a or b) and k\n";
        let rule = parse_rules(yaml).remove(0).unwrap();
        assert_eq!(rule.detection_fields, ["Image", "CommandLine", "ParentImage"]);
        let doc = parse_yaml_documents(yaml).unwrap().remove(0);
        let borrowed = Rule::from_json(&doc).unwrap();
        assert_eq!(borrowed.detection, rule.detection);
        assert_eq!(borrowed.detection_fields, rule.detection_fields);
        assert!(doc.get("detection").is_some(), "from_json leaves the document as it was");
    }
}
