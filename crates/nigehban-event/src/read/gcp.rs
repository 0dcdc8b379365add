//! Google Cloud audit logs: `LogEntry` records whose `protoPayload` is an `AuditLog`
//! (`protoPayload.@type` `type.googleapis.com/google.cloud.audit.AuditLog`, or a
//! `cloudaudit.googleapis.com` log name with a `protoPayload.methodName`).
//!
//! Normalized: `event.dataset` `gcp.audit`, `event.action` = `protoPayload.methodName`,
//! `cloud.provider` `gcp`, `user.name` = `authenticationInfo.principalEmail`, `source.ip` =
//! `requestMetadata.callerIp` when it is an address (it may read `private` or
//! `gce-internal-ip`), `cloud.account.id` = `resource.labels.project_id` (else the project of
//! `logName`), `cloud.region` (the region, location, or the zone's region), `event.outcome`
//! `failure` with `error.code` / `error.message` when `protoPayload.status.code` is not 0.
//! Compute Engine instance methods (`v1.compute.instances.delete`,
//! `beta.compute.instances.insert`, `…stop`, `…start` …) get `event.category` `vm` and
//! `target.name` = the instance (last segment of `resourceName`); Cloud SQL instances
//! `database`. `timestamp` may use a space for `T` and carry nanoseconds.

use serde_json::Value as Json;

use super::cloud::{self, Kind, set};
use crate::event::Event;
use crate::value::Value;

/// Whether a JSON object is a Cloud Audit Logs entry.
pub fn is_audit_log(record: &Json) -> bool {
    let Some(payload) = record.get("protoPayload").filter(|p| p.is_object()) else {
        return false;
    };
    let typed = cloud::text(payload, &["@type"]).is_some_and(|t| t.ends_with("google.cloud.audit.AuditLog"));
    typed
        || (cloud::text(payload, &["methodName"]).is_some()
            && cloud::text(record, &["logName"]).is_some_and(|l| l.contains("cloudaudit.googleapis.com")))
}

/// Adds the normalized fields to an event already holding the record's own. Returns false
/// when `record` is not an audit log entry.
pub fn normalize(event: &mut Event, record: &Json) -> bool {
    if !is_audit_log(record) {
        return false;
    }
    let p = &record["protoPayload"];
    let method = cloud::text(p, &["methodName"]).unwrap_or_default();
    set(event, "event.dataset", "gcp.audit");
    set(event, "cloud.provider", "gcp");
    if !method.is_empty() {
        set(event, "event.action", method);
    }
    if let Some(user) = cloud::first_text(
        p,
        &[
            &["authenticationInfo", "principalEmail"],
            &["authenticationInfo", "principalSubject"],
            &["authenticationInfo", "serviceAccountKeyName"],
        ],
    ) {
        set(event, "user.name", user);
    }
    cloud::set_ip(
        event,
        "source.ip",
        cloud::first_text(p, &[&["requestMetadata", "callerIp"], &["requestMetadata", "callerIP"]]),
    );
    if let Some(agent) = cloud::text(p, &["requestMetadata", "callerSuppliedUserAgent"]) {
        set(event, "user_agent.original", agent);
    }
    let project = cloud::text(record, &["resource", "labels", "project_id"])
        .or_else(|| cloud::text(record, &["logName"]).and_then(project_of));
    if let Some(project) = project {
        set(event, "cloud.account.id", project);
    }
    let region = cloud::first_text(record, &[&["resource", "labels", "region"], &["resource", "labels", "location"]])
        .or_else(|| cloud::text(record, &["resource", "labels", "zone"]).map(zone_region));
    if let Some(region) = region {
        set(event, "cloud.region", region);
    }
    let code = cloud::at(p, &["status", "code"]).and_then(Json::as_i64).unwrap_or(0);
    if code != 0 {
        set(event, "event.outcome", "failure");
        set(event, "error.code", &code.to_string());
        if let Some(message) = cloud::text(p, &["status", "message"]) {
            set(event, "error.message", message);
        }
    } else {
        set(event, "event.outcome", "success");
    }
    if let Some(kind) = classify(method) {
        let target = cloud::text(p, &["resourceName"]).and_then(cloud::last_segment).map(Value::str);
        cloud::set_kind(event, kind, target);
    }
    if event.timestamp.is_none() {
        event.timestamp = cloud::timestamp(record, &[&["timestamp"], &["receiveTimestamp"]]);
    }
    true
}

/// `projects/<id>/logs/…` → `<id>`.
fn project_of(log_name: &str) -> Option<&str> {
    log_name.strip_prefix("projects/")?.split('/').next().filter(|s| !s.is_empty())
}

/// `europe-north1-a` → `europe-north1`.
fn zone_region(zone: &str) -> &str {
    match zone.rsplit_once('-') {
        Some((region, suffix)) if suffix.len() == 1 && region.contains('-') => region,
        _ => zone,
    }
}

/// Compute Engine and Cloud SQL instance methods. Method names carry a version prefix
/// (`v1.`, `beta.`) or none; the service is compared from `compute.` / `cloudsql.` on.
fn classify(method: &str) -> Option<Kind> {
    let m = method.to_ascii_lowercase();
    let (category, verb) = if let Some(at) = m.find("compute.instances.") {
        ("vm", &m[at + "compute.instances.".len()..])
    } else if let Some(at) = m.find("cloudsql.instances.") {
        ("database", &m[at + "cloudsql.instances.".len()..])
    } else {
        return None;
    };
    let kind = match verb {
        "delete" => "deletion",
        "insert" | "bulkinsert" | "create" => "creation",
        "stop" | "suspend" => "stop",
        "start" | "resume" | "startwithencryptionkey" => "start",
        v if v.starts_with("set") || v.starts_with("update") || v == "patch" => "change",
        _ => return None,
    };
    Some(Kind::new(category, kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Position, Product, Source};

    fn event(record: &Json) -> Event {
        let mut e = Event::new(Source::file("t.json"), Position::Line(1), Product::Other, "json");
        e.push_json("", record);
        assert!(normalize(&mut e, record), "not recognised: {record}");
        e
    }

    fn text(e: &Event, name: &str) -> Option<String> {
        e.get_exact(name).and_then(|v| v.as_text()).map(|t| t.into_owned())
    }

    #[test]
    fn instance_delete() {
        let record = serde_json::json!({
            "logName": "projects/p-1/logs/cloudaudit.googleapis.com%2Factivity",
            "resource": {"type": "gce_instance", "labels": {"project_id": "p-1", "zone": "asia-south1-c"}},
            "timestamp": "2024-01-02 03:04:05.123456789",
            "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                "methodName": "v1.compute.instances.delete",
                "resourceName": "projects/p-1/zones/asia-south1-c/instances/web-7",
                "authenticationInfo": {"principalEmail": "ops@example.org"},
                "requestMetadata": {"callerIp": "198.51.100.3"}}
        });
        let e = event(&record);
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("gcp.audit"));
        assert_eq!(text(&e, "event.category").as_deref(), Some("vm"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("deletion"));
        assert_eq!(text(&e, "target.name").as_deref(), Some("web-7"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("ops@example.org"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("198.51.100.3"));
        assert_eq!(text(&e, "cloud.account.id").as_deref(), Some("p-1"));
        assert_eq!(text(&e, "cloud.region").as_deref(), Some("asia-south1"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        assert_eq!(e.timestamp, "2024-01-02T03:04:05.123456789Z".parse().ok());
    }

    #[test]
    fn methods_and_failures() {
        for (method, kind) in [
            ("beta.compute.instances.insert", Some(Kind::new("vm", "creation"))),
            ("compute.instances.stop", Some(Kind::new("vm", "stop"))),
            ("v1.compute.instances.start", Some(Kind::new("vm", "start"))),
            ("v1.compute.instances.setMetadata", Some(Kind::new("vm", "change"))),
            ("cloudsql.instances.delete", Some(Kind::new("database", "deletion"))),
            ("v1.compute.instances.get", None),
            ("storage.buckets.delete", None),
        ] {
            assert_eq!(classify(method), kind, "{method}");
        }
        let record = serde_json::json!({
            "logName": "projects/p-2/logs/cloudaudit.googleapis.com%2Factivity",
            "timestamp": "2024-01-02T03:04:05Z",
            "protoPayload": {"methodName": "v1.compute.instances.delete",
                "status": {"code": 7, "message": "PERMISSION_DENIED"},
                "requestMetadata": {"callerIp": "private"}}
        });
        let e = event(&record);
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "error.code").as_deref(), Some("7"));
        assert_eq!(text(&e, "cloud.account.id").as_deref(), Some("p-2"));
        assert_eq!(e.get_exact("source.ip"), None);
        assert_eq!(e.get_exact("target.name"), None);
    }

    #[test]
    fn other_log_entries_are_left_alone() {
        let mut e = Event::new(Source::file("t"), Position::Line(1), Product::Other, "json");
        for v in [
            serde_json::json!({"protoPayload": {"@type": "type.googleapis.com/google.appengine.logging.v1.RequestLog"}}),
            serde_json::json!({"logName": "projects/p/logs/syslog", "protoPayload": {"methodName": "x"}}),
            serde_json::json!({"protoPayload": "AuditLog"}),
        ] {
            assert!(!normalize(&mut e, &v), "{v}");
        }
        assert_eq!(zone_region("us-central1-f"), "us-central1");
        assert_eq!(zone_region("global"), "global");
        assert_eq!(project_of("projects/x/logs/y"), Some("x"));
    }
}
