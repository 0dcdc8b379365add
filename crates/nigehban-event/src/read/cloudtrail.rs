//! AWS CloudTrail records.
//!
//! A record is recognised by `eventSource` and `eventName` together with `eventVersion` or
//! `awsRegion`. Records arrive one per line (most shippers), as the elements of the S3 file
//! shape `{"Records": […]}` or of a top-level array; the JSON reader unwraps both and hands
//! each record here. The record keeps its own fields (`userIdentity.arn`, `requestParameters.…`)
//! and gains the normalized ones of `docs/fields.md`:
//!
//! - `event.dataset` `aws.cloudtrail`, `event.action` = `eventName`, `cloud.provider` `aws`,
//!   `cloud.region` = `awsRegion`, `cloud.account.id` = `recipientAccountId` (else
//!   `userIdentity.accountId`);
//! - `user.name` = `userIdentity.arn` (for an assumed role, the session's
//!   `arn:aws:sts::…:assumed-role/Role/session`), else `userName`, `principalId`, `invokedBy`;
//! - `source.ip` = `sourceIPAddress` when it is an address (not `AWS Internal` or a service);
//! - `event.outcome` `failure` with `error.code` / `error.message` when `errorCode` is set,
//!   else `success` (console sign-ins: `responseElements.ConsoleLogin`);
//! - EC2 instance life cycle (`RunInstances`, `TerminateInstances`, `StopInstances`,
//!   `StartInstances`, `ModifyInstanceAttribute`): `event.category` `vm`, `target.name` the
//!   instance id(s); RDS instances and clusters: `event.category` `database`; IAM changes:
//!   `event.category` `iam`; `ConsoleLogin`: `authentication`.

use serde_json::Value as Json;

use super::cloud::{self, Kind, set};
use crate::event::Event;
use crate::value::Value;

/// Whether a JSON object is a CloudTrail record.
pub fn is_record(v: &Json) -> bool {
    let Some(o) = v.as_object() else {
        return false;
    };
    o.get("eventSource").is_some_and(Json::is_string)
        && o.get("eventName").is_some_and(Json::is_string)
        && (o.contains_key("eventVersion") || o.contains_key("awsRegion"))
}

/// Adds the normalized fields to an event already holding the record's own. Returns false
/// (and changes nothing) when `record` is not a CloudTrail record.
pub fn normalize(event: &mut Event, record: &Json) -> bool {
    if !is_record(record) {
        return false;
    }
    let service = cloud::text(record, &["eventSource"]).unwrap_or_default();
    let name = cloud::text(record, &["eventName"]).unwrap_or_default();
    set(event, "event.dataset", "aws.cloudtrail");
    set(event, "event.action", name);
    set(event, "cloud.provider", "aws");
    if let Some(region) = cloud::text(record, &["awsRegion"]) {
        set(event, "cloud.region", region);
    }
    if let Some(account) = cloud::first_text(record, &[&["recipientAccountId"], &["userIdentity", "accountId"]]) {
        set(event, "cloud.account.id", account);
    }
    if let Some(user) = user_name(record) {
        set(event, "user.name", user);
    }
    cloud::set_ip(event, "source.ip", cloud::text(record, &["sourceIPAddress"]));
    if let Some(agent) = cloud::text(record, &["userAgent"]) {
        set(event, "user_agent.original", agent);
    }

    let error = cloud::at(record, &["errorCode"]).and_then(cloud::scalar_text);
    let console_failed = name == "ConsoleLogin"
        && cloud::text(record, &["responseElements", "ConsoleLogin"])
            .is_some_and(|r| r.eq_ignore_ascii_case("failure"));
    if error.is_some() || console_failed {
        set(event, "event.outcome", "failure");
        if let Some(code) = &error {
            set(event, "error.code", code);
        }
        if let Some(message) = cloud::text(record, &["errorMessage"]) {
            set(event, "error.message", message);
        }
    } else {
        set(event, "event.outcome", "success");
    }

    if let Some((kind, target)) = classify(service, name, record) {
        cloud::set_kind(event, kind, target);
    }
    if let Some(target) = iam_target_user(service, record) {
        set(event, "user.target.name", target);
    }
    if event.timestamp.is_none() {
        event.timestamp = cloud::timestamp(record, &[&["eventTime"], &["@timestamp"]]);
    }
    true
}

/// The acting principal: the ARN (for an assumed role the ARN of the session), else the user
/// name, the principal id, or the service that acted.
fn user_name(record: &Json) -> Option<&str> {
    cloud::first_text(
        record,
        &[
            &["userIdentity", "arn"],
            &["userIdentity", "userName"],
            &["userIdentity", "sessionContext", "sessionIssuer", "arn"],
            &["userIdentity", "principalId"],
            &["userIdentity", "invokedBy"],
        ],
    )
}

const EC2: &[(&str, Kind)] = &[
    ("RunInstances", Kind::new("vm", "creation")),
    ("TerminateInstances", Kind::new("vm", "deletion")),
    ("StopInstances", Kind::new("vm", "stop")),
    ("StartInstances", Kind::new("vm", "start")),
    ("ModifyInstanceAttribute", Kind::new("vm", "change")),
];

const RDS: &[(&str, Kind, &str)] = &[
    ("DeleteDBInstance", Kind::new("database", "deletion"), "dBInstanceIdentifier"),
    ("DeleteDBCluster", Kind::new("database", "deletion"), "dBClusterIdentifier"),
    ("CreateDBInstance", Kind::new("database", "creation"), "dBInstanceIdentifier"),
    ("CreateDBCluster", Kind::new("database", "creation"), "dBClusterIdentifier"),
    ("StopDBInstance", Kind::new("database", "stop"), "dBInstanceIdentifier"),
    ("StopDBCluster", Kind::new("database", "stop"), "dBClusterIdentifier"),
    ("StartDBInstance", Kind::new("database", "start"), "dBInstanceIdentifier"),
    ("StartDBCluster", Kind::new("database", "start"), "dBClusterIdentifier"),
    ("ModifyDBInstance", Kind::new("database", "change"), "dBInstanceIdentifier"),
    ("ModifyDBCluster", Kind::new("database", "change"), "dBClusterIdentifier"),
];

/// What the call does, and to what.
fn classify(service: &str, name: &str, record: &Json) -> Option<(Kind, Option<Value>)> {
    match service {
        "ec2.amazonaws.com" => {
            let kind = EC2.iter().find(|(n, _)| *n == name)?.1;
            Some((kind, instance_ids(record)))
        }
        "rds.amazonaws.com" => {
            let (_, kind, key) = RDS.iter().find(|(n, ..)| *n == name)?;
            let target = ["requestParameters", "responseElements"]
                .iter()
                .find_map(|part| cloud::get_ignore_case(record.get(part)?, key).and_then(cloud::scalar_text))
                .map(Value::str);
            Some((*kind, target))
        }
        "iam.amazonaws.com" => {
            let kind = iam_kind(name)?;
            Some((Kind::new("iam", kind), None))
        }
        "signin.amazonaws.com" if name == "ConsoleLogin" => Some((Kind::new("authentication", "start"), None)),
        _ => None,
    }
}

/// IAM calls that change something: `Create…`, `Delete…`, and the other writes (`Attach…`,
/// `Put…`, `Update…` …). Reads (`Get…`, `List…`, …) are not IAM changes.
fn iam_kind(name: &str) -> Option<&'static str> {
    const READS: &[&str] = &["Get", "List", "Generate", "Simulate", "Tag", "Untag"];
    if READS.iter().any(|p| name.starts_with(p)) {
        None
    } else if name.starts_with("Create") {
        Some("creation")
    } else if name.starts_with("Delete") {
        Some("deletion")
    } else {
        Some("change")
    }
}

/// The IAM user an IAM call acts on (`requestParameters.userName`).
fn iam_target_user<'a>(service: &str, record: &'a Json) -> Option<&'a str> {
    (service == "iam.amazonaws.com").then(|| cloud::text(record, &["requestParameters", "userName"]))?
}

/// The instance ids of an EC2 call, from the request (or, for `RunInstances`, whose request
/// names none, from the response).
fn instance_ids(record: &Json) -> Option<Value> {
    let mut ids = Vec::new();
    for part in ["requestParameters", "responseElements"] {
        let items = cloud::at(record, &[part, "instancesSet", "items"]).and_then(Json::as_array);
        for item in items.into_iter().flatten() {
            if let Some(id) = cloud::text(item, &["instanceId"]) {
                ids.push(id.to_owned());
            }
        }
        if !ids.is_empty() {
            break;
        }
    }
    cloud::one_or_list(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Position, Product, Source};

    fn event(record: &Json) -> Event {
        let mut e = Event::new(Source::file("t.json"), Position::Line(1), Product::Other, "json");
        e.push_json("", record);
        assert!(normalize(&mut e, record));
        e
    }

    fn text(e: &Event, name: &str) -> Option<String> {
        e.get_exact(name).and_then(|v| v.as_text()).map(|t| t.into_owned())
    }

    #[test]
    fn terminate_instances_is_a_vm_deletion_by_the_session() {
        let record = serde_json::json!({
            "eventVersion": "1.08",
            "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:alice",
                "arn": "arn:aws:sts::111122223333:assumed-role/Admin/alice", "accountId": "111122223333",
                "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::111122223333:role/Admin"}}},
            "eventTime": "2024-03-01T10:00:00Z",
            "eventSource": "ec2.amazonaws.com",
            "eventName": "TerminateInstances",
            "awsRegion": "eu-west-1",
            "sourceIPAddress": "203.0.113.7",
            "requestParameters": {"instancesSet": {"items": [{"instanceId": "i-1"}, {"instanceId": "i-2"}]}},
            "recipientAccountId": "111122223333"
        });
        let e = event(&record);
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("aws.cloudtrail"));
        assert_eq!(text(&e, "event.category").as_deref(), Some("vm"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("deletion"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("arn:aws:sts::111122223333:assumed-role/Admin/alice"));
        assert_eq!(text(&e, "cloud.region").as_deref(), Some("eu-west-1"));
        assert_eq!(text(&e, "cloud.account.id").as_deref(), Some("111122223333"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("203.0.113.7"));
        assert_eq!(text(&e, "target.type").as_deref(), Some("vm"));
        assert_eq!(e.get_exact("target.name"), Some(&Value::List(vec![Value::str("i-1"), Value::str("i-2")])));
        assert_eq!(e.timestamp, "2024-03-01T10:00:00Z".parse().ok());
        // The record's own fields stay.
        assert_eq!(text(&e, "userIdentity.type").as_deref(), Some("AssumedRole"));
    }

    #[test]
    fn run_instances_takes_ids_from_the_response_and_errors_fail() {
        let record = serde_json::json!({
            "eventVersion": "1.08", "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
            "awsRegion": "us-east-1", "sourceIPAddress": "AWS Internal",
            "userIdentity": {"type": "IAMUser", "userName": "bob", "accountId": "1"},
            "requestParameters": {"instancesSet": {"items": [{"imageId": "ami-1"}]}},
            "responseElements": {"instancesSet": {"items": [{"instanceId": "i-9"}]}},
            "errorCode": "Client.UnauthorizedOperation", "errorMessage": "You are not authorized"
        });
        let e = event(&record);
        assert_eq!(text(&e, "event.type").as_deref(), Some("creation"));
        assert_eq!(text(&e, "target.name").as_deref(), Some("i-9"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("bob"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "error.code").as_deref(), Some("Client.UnauthorizedOperation"));
        assert_eq!(text(&e, "cloud.account.id").as_deref(), Some("1"));
        assert_eq!(e.get_exact("source.ip"), None);
    }

    #[test]
    fn rds_iam_and_console_login() {
        let rds = serde_json::json!({
            "eventVersion": "1.08", "eventSource": "rds.amazonaws.com", "eventName": "DeleteDBCluster",
            "awsRegion": "us-east-1", "requestParameters": {"dBClusterIdentifier": "aurora-prod"}
        });
        let e = event(&rds);
        assert_eq!(text(&e, "event.category").as_deref(), Some("database"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("deletion"));
        assert_eq!(text(&e, "target.name").as_deref(), Some("aurora-prod"));
        assert_eq!(text(&e, "target.type").as_deref(), Some("database"));

        let iam = serde_json::json!({
            "eventVersion": "1.08", "eventSource": "iam.amazonaws.com", "eventName": "AttachUserPolicy",
            "awsRegion": "us-east-1", "requestParameters": {"userName": "carol", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}
        });
        let e = event(&iam);
        assert_eq!(text(&e, "event.category").as_deref(), Some("iam"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("change"));
        assert_eq!(text(&e, "user.target.name").as_deref(), Some("carol"));

        let list =
            serde_json::json!({"eventVersion": "1.08", "eventSource": "iam.amazonaws.com", "eventName": "ListUsers"});
        assert_eq!(event(&list).get_exact("event.category"), None);

        let login = serde_json::json!({
            "eventVersion": "1.08", "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
            "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.4",
            "userIdentity": {"type": "IAMUser", "principalId": "AIDA", "accountId": "1", "userName": "dave"},
            "responseElements": {"ConsoleLogin": "Failure"}, "errorMessage": "Failed authentication"
        });
        let e = event(&login);
        assert_eq!(text(&e, "event.category").as_deref(), Some("authentication"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("start"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "error.message").as_deref(), Some("Failed authentication"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("dave"));
    }

    #[test]
    fn a_record_field_of_the_same_name_is_kept() {
        let record = serde_json::json!({
            "eventVersion": "1.08", "eventSource": "ec2.amazonaws.com", "eventName": "StopInstances",
            "awsRegion": "us-east-1", "user.name": "as-the-record-says"
        });
        let e = event(&record);
        assert_eq!(text(&e, "user.name").as_deref(), Some("as-the-record-says"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("stop"));
        assert_eq!(e.get_exact("target.name"), None);
    }

    #[test]
    fn other_objects_are_not_cloudtrail() {
        let mut e = Event::new(Source::file("t"), Position::Line(1), Product::Other, "json");
        for v in [
            serde_json::json!({"eventName": "x", "eventSource": "y"}),
            serde_json::json!({"eventName": 1, "eventSource": "y", "awsRegion": "r"}),
            serde_json::json!([1]),
        ] {
            assert!(!normalize(&mut e, &v));
        }
        assert!(e.fields().is_empty());
    }
}
