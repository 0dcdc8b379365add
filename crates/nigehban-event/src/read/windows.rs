//! Windows events in their JSON shapes, normalized to the field names Sigma rules use.
//!
//! - The EVTX rendering (`{"Event": {"System": …, "EventData": …}}`, attributes under
//!   `#attributes`), as the EVTX reader and `evtx_dump` produce it.
//! - Winlogbeat / Elastic Common Schema (`winlog.event_id`, `winlog.event_data.*`).
//! - Flat NXLog-style objects (`EventID`, `Channel`, `Hostname`, data fields at the top).
//!
//! In all three, System values become `EventID`, `Channel`, `Provider_Name`, `Computer`, … and
//! each named EventData / UserData value becomes a field of its own name.

use serde_json::{Map, Value as Json};

use super::node::{self, Members, Node};
use crate::event::{Event, Product};
use crate::value::Value;

/// Fills `event` from the EVTX JSON rendering of one record. Returns false if the object is
/// not in that shape (no `Event` object).
pub fn from_evtx_json(event: &mut Event, root: &Json) -> bool {
    let Some(ev) = root.get("Event").and_then(Json::as_object) else {
        return false;
    };
    event.product = Product::Windows;
    if let Some(system) = ev.get("System").and_then(Json::as_object) {
        push_system(event, system);
    }
    if let Some(data) = ev.get("EventData") {
        push_event_data(event, data, None);
    }
    if let Some(Json::Object(user_data)) = ev.get("UserData") {
        // UserData holds one element named after the event (e.g. `LogFileCleared`) whose
        // children are the values; each is also kept under `LogFileCleared.<name>`.
        for (name, inner) in user_data {
            push_event_data(event, inner, Some(name));
        }
    }
    true
}

fn push_system(event: &mut Event, system: &Map<String, Json>) {
    for (key, value) in system {
        match key.as_str() {
            "Provider" => {
                if let Some(attrs) = attributes(value) {
                    for (k, v) in attrs {
                        let name = match k.as_str() {
                            "Name" => "Provider_Name",
                            "Guid" => "Provider_Guid",
                            "EventSourceName" => "EventSourceName",
                            _ => continue,
                        };
                        event.set(name, Value::from_json(v));
                    }
                }
            }
            "TimeCreated" => {
                if let Some(t) = attributes(value).and_then(|a| a.get("SystemTime")).and_then(Json::as_str) {
                    event.timestamp = parse_windows_time(t);
                    event.set("TimeCreated", Value::str(t));
                }
            }
            "Execution" => {
                if let Some(attrs) = attributes(value) {
                    for (k, v) in attrs {
                        event.set(format!("Execution_{k}"), Value::from_json(v));
                    }
                }
            }
            "Security" => {
                if let Some(uid) = attributes(value).and_then(|a| a.get("UserID")) {
                    event.set("UserID", Value::from_json(uid));
                }
            }
            "Correlation" => {
                if let Some(attrs) = attributes(value) {
                    for (k, v) in attrs {
                        event.set(format!("Correlation_{k}"), Value::from_json(v));
                    }
                }
            }
            _ => {
                // `EventID` may carry attributes: {"#attributes": {"Qualifiers": …}, "#text": 4624}
                let v = match value {
                    Json::Object(m) => match m.get("#text") {
                        Some(t) => t,
                        None => continue,
                    },
                    other => other,
                };
                event.set(key.as_str(), Value::from_json(v));
            }
        }
    }
}

/// An XML element rendered as JSON, as a plain value: an element with text is its text;
/// attributes (`#attributes`) are dropped, at every depth.
fn element_value(v: &Json) -> Json {
    match v {
        Json::Object(m) => match m.get("#text") {
            Some(text) => text.clone(),
            None => Json::Object(
                m.iter().filter(|(k, _)| !k.starts_with('#')).map(|(k, v)| (k.clone(), element_value(v))).collect(),
            ),
        },
        Json::Array(items) => Json::Array(items.iter().map(element_value).collect()),
        other => other.clone(),
    }
}

fn attributes(value: &Json) -> Option<&Map<String, Json>> {
    value.get("#attributes").and_then(Json::as_object)
}

/// Named data values become fields. Unnamed `<Data>` values (classic event log sources)
/// are kept as a list in `Data`, which Sigma keyword rules and `Data|contains` search.
fn push_event_data(event: &mut Event, data: &Json, prefix: Option<&str>) {
    let Json::Object(map) = data else {
        if !data.is_null() {
            event.set("Data", Value::from_json(data));
        }
        return;
    };
    for (key, value) in map {
        if key == "#attributes" {
            continue;
        }
        // Some providers (Windows Defender) name data with spaces (`Threat Name`); Sigma
        // rules write those names without them (`ThreatName`). Both names are kept.
        if key.contains(' ') {
            let compact: String = key.chars().filter(|c| *c != ' ').collect();
            let v = match value {
                Json::Object(inner) => inner.get("#text").cloned().unwrap_or(Json::Null),
                other => other.clone(),
            };
            if !v.is_null() {
                event.set_default(&compact, Value::from_json(&v));
            }
        }
        let value = match value {
            Json::Object(inner) if inner.contains_key("#text") => inner.get("#text").unwrap_or(&Json::Null),
            Json::Object(inner) => {
                push_nested(event, key, inner, prefix);
                continue;
            }
            other => other,
        };
        // A data value never replaces a System value of the same name: event 104 ("log
        // cleared") carries the cleared log's name as `Channel`, but the event itself is in
        // the System channel, and that is what routes it to rules.
        let v = Value::from_json(value);
        if let Some(p) = prefix {
            event.set(format!("{p}.{key}"), v.clone());
        }
        event.set_default(key, v);
    }
}

/// A nested element of EventData / UserData: each leaf by its own name, and by its dotted path.
fn push_nested(event: &mut Event, key: &str, inner: &Map<String, Json>, prefix: Option<&str>) {
    let path = match prefix {
        Some(p) => format!("{p}.{key}"),
        None => key.to_owned(),
    };
    let mut nested = Event::new(event.source.clone(), event.position, event.product, event.format);
    for (k, v) in inner.iter().filter(|(k, _)| !k.starts_with('#')) {
        nested.push_json(&format!("{path}.{k}"), &element_value(v));
    }
    for f in nested.fields() {
        let leaf = f.name.rsplit('.').next().unwrap_or(&f.name);
        event.set_default(leaf, f.value.clone());
        event.set(f.name.clone(), f.value.clone());
    }
}

/// [`from_evtx_json`] over a [`Node`] read in place: the same fields, in the same order, without
/// building a `serde_json::Value` of the record first.
pub(crate) fn from_evtx_node(event: &mut Event, root: &Node<'_>) -> bool {
    let Some(ev) = root.get("Event").and_then(Node::as_object) else {
        return false;
    };
    event.product = Product::Windows;
    if let Some(system) = node::member(ev, "System").and_then(Node::as_object) {
        push_system_node(event, system);
    }
    if let Some(data) = node::member(ev, "EventData") {
        push_event_data_node(event, data, None);
    }
    if let Some(Node::Object(user_data)) = node::member(ev, "UserData") {
        for (name, inner) in user_data {
            push_event_data_node(event, inner, Some(name));
        }
    }
    true
}

fn node_attributes<'n, 'a>(value: &'n Node<'a>) -> Option<&'n Members<'a>> {
    value.get("#attributes").and_then(Node::as_object)
}

/// [`push_system`] over a [`Node`].
fn push_system_node(event: &mut Event, system: &Members<'_>) {
    for (key, value) in system {
        match &**key {
            "Provider" => {
                if let Some(attrs) = node_attributes(value) {
                    for (k, v) in attrs {
                        let name = match &**k {
                            "Name" => "Provider_Name",
                            "Guid" => "Provider_Guid",
                            "EventSourceName" => "EventSourceName",
                            _ => continue,
                        };
                        event.set(name, v.to_value());
                    }
                }
            }
            "TimeCreated" => {
                if let Some(t) =
                    node_attributes(value).and_then(|a| node::member(a, "SystemTime")).and_then(Node::as_str)
                {
                    event.timestamp = parse_windows_time(t);
                    event.set("TimeCreated", Value::str(t));
                }
            }
            "Execution" => {
                if let Some(attrs) = node_attributes(value) {
                    for (k, v) in attrs {
                        event.set(format!("Execution_{k}"), v.to_value());
                    }
                }
            }
            "Security" => {
                if let Some(uid) = node_attributes(value).and_then(|a| node::member(a, "UserID")) {
                    event.set("UserID", uid.to_value());
                }
            }
            "Correlation" => {
                if let Some(attrs) = node_attributes(value) {
                    for (k, v) in attrs {
                        event.set(format!("Correlation_{k}"), v.to_value());
                    }
                }
            }
            _ => {
                let v = match value {
                    Node::Object(m) => match node::member(m, "#text") {
                        Some(t) => t,
                        None => continue,
                    },
                    other => other,
                };
                event.set(&**key, v.to_value());
            }
        }
    }
}

/// [`push_event_data`] over a [`Node`]; a nested element (rare) goes through the JSON value.
fn push_event_data_node(event: &mut Event, data: &Node<'_>, prefix: Option<&str>) {
    let Node::Object(map) = data else {
        if !data.is_null() {
            event.set("Data", data.to_value());
        }
        return;
    };
    for (key, value) in map {
        if key == "#attributes" {
            continue;
        }
        if key.contains(' ') {
            let compact: String = key.chars().filter(|c| *c != ' ').collect();
            let v = match value {
                Node::Object(inner) => node::member(inner, "#text"),
                other => Some(other),
            };
            if let Some(v) = v.filter(|v| !v.is_null()) {
                event.set_default(&compact, v.to_value());
            }
        }
        let value = match value {
            Node::Object(inner) if node::member(inner, "#text").is_some() => {
                node::member(inner, "#text").unwrap_or(&node::NULL)
            }
            Node::Object(_) => {
                if let Json::Object(inner) = value.to_json() {
                    push_nested(event, key, &inner, prefix);
                }
                continue;
            }
            other => other,
        };
        let v = value.to_value();
        if let Some(p) = prefix {
            event.set(format!("{p}.{key}"), v.clone());
        }
        event.set_default(key, v);
    }
}

/// Reads the timestamps Windows exports use: RFC 3339 (`2019-03-19T23:38:10.123456Z`) or
/// `2019-03-19 23:38:10.123` (assumed UTC).
pub fn parse_windows_time(s: &str) -> Option<jiff::Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t);
    }
    let civil: jiff::civil::DateTime = s.trim().replace(' ', "T").parse().ok()?;
    civil.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp())
}

/// Winlogbeat's field names for the Windows System values.
const WINLOGBEAT_SYSTEM: &[(&str, &str)] = &[
    ("winlog.event_id", "EventID"),
    ("winlog.channel", "Channel"),
    ("winlog.provider_name", "Provider_Name"),
    ("winlog.provider_guid", "Provider_Guid"),
    ("winlog.computer_name", "Computer"),
    ("winlog.record_id", "EventRecordID"),
    ("winlog.task", "Task"),
    ("winlog.opcode", "Opcode"),
    ("winlog.version", "Version"),
    ("winlog.keywords", "Keywords"),
    ("winlog.process.pid", "Execution_ProcessID"),
    ("winlog.process.thread.id", "Execution_ThreadID"),
    ("winlog.user.identifier", "UserID"),
    ("event.code", "EventID"),
    ("host.name", "Computer"),
];

/// Adds the Sigma names to an event already flattened from Winlogbeat / ECS JSON. Returns
/// false when the object is not in that shape.
pub fn normalize_winlogbeat(event: &mut Event) -> bool {
    if event.get_exact("winlog.channel").is_none() && event.get_exact("winlog.event_id").is_none() {
        return false;
    }
    event.product = Product::Windows;
    for (from, to) in WINLOGBEAT_SYSTEM {
        if let Some(v) = event.get_exact(from).cloned() {
            // ECS writes the event id as text in `event.code` and as a number in `winlog`.
            let v = match v {
                Value::Str(ref t) if *to == "EventID" => t.as_str().parse::<i64>().map(Value::Int).unwrap_or(v),
                v => v,
            };
            event.set_default(to, v);
        }
    }
    let data: Vec<(Box<str>, Value)> = event
        .fields()
        .iter()
        .filter_map(|f| {
            let name =
                f.name.strip_prefix("winlog.event_data.").or_else(|| f.name.strip_prefix("winlog.user_data."))?;
            Some((name.into(), f.value.clone()))
        })
        .collect();
    for (name, value) in data {
        event.set_default(&name, value);
    }
    if event.timestamp.is_none() {
        event.timestamp = event.get_text("@timestamp").and_then(|t| parse_windows_time(&t));
    }
    true
}

/// NXLog's names for the System values in its flat JSON (`im_msvistalog` + `to_json()`).
const NXLOG_SYSTEM: &[(&str, &str)] = &[
    ("Hostname", "Computer"),
    ("SourceName", "Provider_Name"),
    ("ProviderGuid", "Provider_Guid"),
    ("RecordNumber", "EventRecordID"),
    ("ExecutionProcessID", "Execution_ProcessID"),
    ("ExecutionThreadID", "Execution_ThreadID"),
    ("UserID", "UserID"),
];

/// Adds the Sigma names to a flat NXLog-style Windows event (top-level `EventID` and
/// `Channel`, or `EventID` and `SourceName`). Returns false when the object is not one.
pub fn normalize_flat(event: &mut Event) -> bool {
    let has_id = event.get_exact("EventID").is_some();
    let has_origin = event.get_exact("Channel").is_some() || event.get_exact("SourceName").is_some();
    if !(has_id && has_origin) {
        return false;
    }
    event.product = Product::Windows;
    if let Some(Value::Str(t)) = event.get_exact("EventID").cloned()
        && let Ok(id) = t.as_str().trim().parse::<i64>()
    {
        event.set("EventID", Value::Int(id));
    }
    for (from, to) in NXLOG_SYSTEM {
        if let Some(v) = event.get_exact(from).cloned() {
            event.set_default(to, v);
        }
    }
    if event.timestamp.is_none() {
        event.timestamp = ["EventTime", "TimeCreated", "EventReceivedTime", "@timestamp"]
            .iter()
            .find_map(|n| event.get_text(n).and_then(|t| parse_windows_time(&t)));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Position, Source};

    fn blank() -> Event {
        Event::new(Source::file("t"), Position::Line(1), Product::Other, "json")
    }

    /// Reads `text` both ways (in place and as a JSON value) and checks they agree.
    fn read_both(text: &str) -> Event {
        let (mut fast, mut slow) = (blank(), blank());
        let node: Node = serde_json::from_str(text).unwrap();
        let json: Json = serde_json::from_str(text).unwrap();
        assert_eq!(from_evtx_node(&mut fast, &node), from_evtx_json(&mut slow, &json));
        assert_eq!(fast.fields(), slow.fields(), "{text}");
        assert_eq!((fast.timestamp, fast.product), (slow.timestamp, slow.product));
        fast
    }

    #[test]
    fn the_evtx_rendering_reads_the_same_in_place() {
        let e = read_both(
            r##"{"Event": {"#attributes": {"xmlns": "x"}, "System": {
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing", "Guid": "{5}", "Other": 1}},
                "EventID": {"#attributes": {"Qualifiers": 16384}, "#text": 4624}, "Version": 2, "Level": 0,
                "TimeCreated": {"#attributes": {"SystemTime": "2024-05-01T10:00:00.123456Z"}},
                "Execution": {"#attributes": {"ProcessID": 4, "ThreadID": 8}},
                "Security": {"#attributes": {"UserID": "S-1-5-18"}}, "Security2": {"#attributes": {}},
                "Correlation": {"#attributes": {"ActivityID": "{A}"}}, "Channel": "Security", "Computer": "dc1",
                "EventID": 4625},
              "EventData": {"#attributes": {"Name": "x"}, "SubjectUserName": "admin", "Threat Name": {"#text": "Eicar"},
                "Path Name": {"#attributes": {"a": 1}}, "Empty": null, "List": ["a", 1, {"o": true}],
                "Nested": {"Inner": {"#text": "v", "#attributes": {"k": 1}}, "Deeper": {"Leaf": [1, 2]}},
                "Channel": "Application", "Big": 18446744073709551615, "F": 1.5}}}"##,
        );
        assert_eq!(e.get("EventID"), Some(&Value::Int(4625)));
        assert_eq!(e.get("Channel"), Some(&Value::str("Security")));
        assert_eq!(e.get("ThreatName"), Some(&Value::str("Eicar")));
        assert_eq!(e.get("Inner"), Some(&Value::str("v")));
        read_both(
            r##"{"Event": {"System": {"EventID": 104}, "UserData": {"LogFileCleared": {"SubjectUserName": "u",
            "Channel": "System", "X": {"Y": "z"}}, "Second": "text"}}}"##,
        );
        read_both(r##"{"Event": {"System": {"EventID": 1}, "EventData": {"Data": ["a", "b"], "Binary": "00"}}}"##);
        read_both(r##"{"Event": {"System": {"EventID": 1}, "EventData": "just text"}}"##);
        read_both(r##"{"Event": {"System": {"EventID": 1}, "EventData": ["a", {"b": 1}]}}"##);
        read_both(r##"{"Event": {"EventData": null, "UserData": null}}"##);
        read_both(r##"{"Event": 5}"##);
        read_both(r##"{"Other": {}}"##);
    }

    #[test]
    fn evtx_rendering_is_flattened_like_sigma_names_it() {
        let v: Json = serde_json::json!({"Event": {
            "System": {
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing", "Guid": "{54849625}"}},
                "EventID": {"#attributes": {"Qualifiers": 0}, "#text": 4688},
                "TimeCreated": {"#attributes": {"SystemTime": "2019-03-19T23:38:10.123456Z"}},
                "Channel": "Security", "Computer": "PC01"
            },
            "EventData": {"NewProcessName": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd /c whoami", "Threat Name": "EICAR"}
        }});
        let mut e = blank();
        assert!(from_evtx_json(&mut e, &v));
        assert_eq!(e.product, Product::Windows);
        assert_eq!(e.get("EventID"), Some(&Value::Int(4688)));
        assert_eq!(e.get("Provider_Name"), Some(&Value::str("Microsoft-Windows-Security-Auditing")));
        assert_eq!(e.get("Computer"), Some(&Value::str("PC01")));
        assert_eq!(e.get("CommandLine"), Some(&Value::str("cmd /c whoami")));
        assert_eq!(e.get("ThreatName"), Some(&Value::str("EICAR")));
        assert_eq!(e.get("Threat Name"), Some(&Value::str("EICAR")));
        assert_eq!(e.timestamp.map(|t| t.as_second()), Some(1553038690));
    }

    #[test]
    fn user_data_children_become_fields() {
        let v: Json = serde_json::json!({"Event": {
            "System": {"EventID": 104, "Channel": "System"},
            "UserData": {"LogFileCleared": {"#attributes": {"xmlns": "x"}, "SubjectUserName": "bob", "Channel": "Application"}}
        }});
        let mut e = blank();
        assert!(from_evtx_json(&mut e, &v));
        assert_eq!(e.get("SubjectUserName"), Some(&Value::str("bob")));
        assert_eq!(e.get("Channel"), Some(&Value::str("System")));
        assert_eq!(e.get("LogFileCleared.Channel"), Some(&Value::str("Application")));
    }

    #[test]
    fn nested_elements_with_text_become_plain_values() {
        let v: Json = serde_json::json!({"Event": {
            "System": {"EventID": 1, "Channel": "X"},
            "EventData": {"Outer": {"Inner": {"#attributes": {"a": 1}, "#text": "value"}}}
        }});
        let mut e = blank();
        assert!(from_evtx_json(&mut e, &v));
        assert_eq!(e.get("Outer.Inner"), Some(&Value::str("value")));
        assert_eq!(e.get("Inner"), Some(&Value::str("value")));
        assert!(e.fields().iter().all(|f| !f.name.contains('#')), "{:?}", e.fields());
    }

    #[test]
    fn winlogbeat_fields_get_sigma_names() {
        let v: Json = serde_json::json!({
            "@timestamp": "2024-05-01T10:00:00.000Z",
            "event": {"code": "1"},
            "winlog": {"channel": "Microsoft-Windows-Sysmon/Operational", "event_id": 1,
                        "computer_name": "ws1", "event_data": {"Image": "C:\\x.exe"}}
        });
        let mut e = blank();
        e.push_json("", &v);
        assert!(normalize_winlogbeat(&mut e));
        assert_eq!(e.get("EventID"), Some(&Value::Int(1)));
        assert_eq!(e.get("Channel"), Some(&Value::str("Microsoft-Windows-Sysmon/Operational")));
        assert_eq!(e.get("Image"), Some(&Value::str("C:\\x.exe")));
        assert_eq!(e.get("Computer"), Some(&Value::str("ws1")));
        assert!(e.timestamp.is_some());
    }

    #[test]
    fn flat_nxlog_events_get_sigma_names() {
        let v: Json = serde_json::json!({"EventTime": "2024-05-01 10:00:00", "Hostname": "dc1",
            "EventID": 4625, "SourceName": "Microsoft-Windows-Security-Auditing", "Channel": "Security",
            "TargetUserName": "admin"});
        let mut e = blank();
        e.push_json("", &v);
        assert!(normalize_flat(&mut e));
        assert_eq!(e.get("Computer"), Some(&Value::str("dc1")));
        assert_eq!(e.get("Provider_Name"), Some(&Value::str("Microsoft-Windows-Security-Auditing")));
        assert!(e.timestamp.is_some());
    }
}
