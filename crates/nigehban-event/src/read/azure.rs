//! Azure Activity Log records and Microsoft Entra ID sign-in logs.
//!
//! Activity Log shapes (each record keeps its own fields; the JSON reader unwraps the
//! `{"records": […]}` wrapper of the storage-account and Event Hub exports):
//!
//! - storage account / Event Hub export (the resource-log schema): `time`, `resourceId`,
//!   `operationName`, `category`, `resultType`, `callerIpAddress`, `identity.claims.*`,
//!   `identity.authorization.evidence.*`, `properties.*`;
//! - the REST API / portal JSON: `eventTimestamp`, `operationName.value`, `status.value`,
//!   `caller`, `claims.*`, `httpRequest.clientIpAddress`, `subscriptionId`;
//! - the Log Analytics `AzureActivity` table: `TimeGenerated`, `OperationNameValue`,
//!   `ActivityStatusValue`, `Caller`, `CallerIpAddress`, `SubscriptionId`.
//!
//! Normalized: `event.dataset` `azure.activitylogs`, `event.action` = the operation name,
//! `event.outcome` from the result (`Success`/`Succeeded` → `success`, `Failure`/`Failed` →
//! `failure`; `Start`, `Accept` and the like → `unknown`: an operation under way),
//! `user.name` = `caller`, else the UPN or name claim, else the principal id of the role
//! assignment; `source.ip`; `cloud.account.id` = the subscription in `resourceId`. Virtual
//! machine operations (`Microsoft.Compute/virtualMachines/delete`, `/write`, `/start/action`,
//! `/deallocate/action`, `/powerOff/action`, and scale sets; names compared without regard to
//! case) get `event.category` `vm` and `target.name` = the VM name.
//!
//! Sign-in logs: the Azure Monitor export (`category` `SignInLogs`,
//! `NonInteractiveUserSignInLogs`, `ServicePrincipalSignInLogs`, `ManagedIdentitySignInLogs`,
//! values under `properties.*`), the Microsoft Graph `signIn` resource (top-level
//! `userPrincipalName`, `ipAddress`, `status.errorCode`, `location.countryOrRegion`,
//! `createdDateTime`) and the Log Analytics `SigninLogs` table. Normalized: `event.dataset`
//! `azure.signinlogs`, `event.category` `authentication`, `event.type` `start`, outcome from
//! the error code (0 is success), `user.name` = UPN, `source.ip`,
//! `source.geo.country_iso_code`, `error.code` / `error.message` on failure.

use serde_json::Value as Json;

use super::cloud::{self, Kind, set};
use crate::event::Event;
use crate::value::Value;

const SIGNIN_CATEGORIES: &[&str] =
    &["signinlogs", "noninteractiveusersigninlogs", "serviceprincipalsigninlogs", "managedidentitysigninlogs"];

/// Activity Log categories, as the REST API names them and as the storage export names
/// Administrative records (`Write`, `Delete`, `Action`).
const ACTIVITY_CATEGORIES: &[&str] = &[
    "administrative",
    "security",
    "servicehealth",
    "alert",
    "recommendation",
    "policy",
    "autoscale",
    "resourcehealth",
    "write",
    "delete",
    "action",
];

/// Adds the normalized fields to an event already holding the record's own. Returns false
/// when `record` is neither an Activity Log record nor a sign-in.
pub fn normalize(event: &mut Event, record: &Json) -> bool {
    if is_signin(record) {
        signin(event, record);
        true
    } else if is_activity(record) {
        activity(event, record);
        true
    } else {
        false
    }
}

fn category(record: &Json) -> Option<&str> {
    cloud::first_text(record, &[&["category"], &["category", "value"], &["Category"], &["CategoryValue"]])
}

/// Whether a JSON object is an Entra ID sign-in.
pub fn is_signin(record: &Json) -> bool {
    if !record.is_object() {
        return false;
    }
    if let Some(c) = category(record) {
        return SIGNIN_CATEGORIES.iter().any(|s| c.eq_ignore_ascii_case(s));
    }
    // The Graph resource carries no category.
    cloud::text(record, &["createdDateTime"]).is_some()
        && cloud::at(record, &["status", "errorCode"]).is_some_and(|c| c.is_number())
        && (cloud::text(record, &["userPrincipalName"]).is_some() || cloud::text(record, &["ipAddress"]).is_some())
}

fn operation(record: &Json) -> Option<&str> {
    cloud::first_text(record, &[&["operationName"], &["operationName", "value"], &["OperationNameValue"]])
}

fn resource_id(record: &Json) -> Option<&str> {
    cloud::first_text(record, &[&["resourceId"], &["ResourceId"], &["_ResourceId"]])
}

/// Whether a JSON object is an Azure Activity Log record.
pub fn is_activity(record: &Json) -> bool {
    if operation(record).is_none() || resource_id(record).is_none() {
        return false;
    }
    if cloud::first_text(record, &[&["time"], &["eventTimestamp"], &["TimeGenerated"]]).is_none() {
        return false;
    }
    match category(record) {
        Some(c) => ACTIVITY_CATEGORIES.iter().any(|a| c.eq_ignore_ascii_case(a)),
        None => result(record).is_some(),
    }
}

fn result(record: &Json) -> Option<&str> {
    cloud::first_text(record, &[&["resultType"], &["status", "value"], &["ActivityStatusValue"], &["ActivityStatus"]])
}

const UPN_CLAIM: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn";
const NAME_CLAIM: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name";

fn activity(event: &mut Event, record: &Json) {
    let op = operation(record).unwrap_or_default();
    set(event, "event.dataset", "azure.activitylogs");
    set(event, "event.action", op);
    set(event, "cloud.provider", "azure");
    let outcome = match result(record).map(str::to_ascii_lowercase).as_deref() {
        Some("success" | "succeeded") => "success",
        Some("failure" | "failed") => "failure",
        _ => "unknown",
    };
    set(event, "event.outcome", outcome);
    if let Some(user) = cloud::first_text(
        record,
        &[
            &["caller"],
            &["Caller"],
            &["identity", "claims", UPN_CLAIM],
            &["claims", UPN_CLAIM],
            &["identity", "claims", NAME_CLAIM],
            &["claims", NAME_CLAIM],
            &["identity", "authorization", "evidence", "principalId"],
            &["authorization", "evidence", "principalId"],
        ],
    ) {
        set(event, "user.name", user);
    }
    cloud::set_ip(
        event,
        "source.ip",
        cloud::first_text(record, &[&["callerIpAddress"], &["CallerIpAddress"], &["httpRequest", "clientIpAddress"]]),
    );
    let resource = resource_id(record).unwrap_or_default();
    if let Some(subscription) =
        subscription(resource).or_else(|| cloud::first_text(record, &[&["subscriptionId"], &["SubscriptionId"]]))
    {
        set(event, "cloud.account.id", subscription);
    }
    if let Some(region) = cloud::text(record, &["location"]).filter(|l| !l.eq_ignore_ascii_case("global")) {
        set(event, "cloud.region", region);
    }
    if outcome == "failure"
        && let Some(code) = cloud::first_text(
            record,
            &[
                &["properties", "statusCode"],
                &["resultSignature"],
                &["subStatus", "value"],
                &["ActivitySubstatusValue"],
            ],
        )
    {
        set(event, "error.code", code);
    }
    if let Some(kind) = vm_kind(op, record) {
        let target = cloud::last_segment(resource).map(Value::str);
        cloud::set_kind(event, kind, target);
    }
    if event.timestamp.is_none() {
        event.timestamp = cloud::timestamp(record, &[&["time"], &["eventTimestamp"], &["TimeGenerated"]]);
    }
}

/// The subscription id of `/subscriptions/<id>/…` (any case).
fn subscription(resource_id: &str) -> Option<&str> {
    let mut parts = resource_id.split('/').filter(|p| !p.is_empty());
    while let Some(p) = parts.next() {
        if p.eq_ignore_ascii_case("subscriptions") {
            return parts.next();
        }
    }
    None
}

/// Virtual machine (and scale set) operations.
fn vm_kind(op: &str, record: &Json) -> Option<Kind> {
    let op = op.to_ascii_lowercase();
    let rest = op
        .strip_prefix("microsoft.compute/virtualmachines/")
        .or_else(|| op.strip_prefix("microsoft.compute/virtualmachinescalesets/virtualmachines/"))
        .or_else(|| op.strip_prefix("microsoft.compute/virtualmachinescalesets/"))?;
    let kind = match rest {
        "delete" | "delete/action" => "deletion",
        "write" => {
            // The same operation creates and updates; the status says which it was.
            let status = cloud::first_text(record, &[&["properties", "statusCode"], &["resultSignature"]])
                .unwrap_or_default()
                .to_ascii_lowercase();
            if status.ends_with("created") { "creation" } else { "change" }
        }
        "start/action" => "start",
        "deallocate/action" | "poweroff/action" => "stop",
        _ => return None,
    };
    Some(Kind::new("vm", kind))
}

fn signin(event: &mut Event, record: &Json) {
    // The Azure Monitor export puts the sign-in under `properties`; Graph at the top.
    let p = record.get("properties").filter(|p| p.is_object()).unwrap_or(record);
    set(event, "event.dataset", "azure.signinlogs");
    set(event, "event.category", "authentication");
    set(event, "event.type", "start");
    set(event, "cloud.provider", "azure");
    let action = cloud::first_text(record, &[&["operationName"], &["OperationName"]]).unwrap_or("Sign-in activity");
    set(event, "event.action", action);
    if let Some(user) =
        cloud::first_text(p, &[&["userPrincipalName"], &["UserPrincipalName"], &["servicePrincipalName"]])
            .or_else(|| cloud::first_text(record, &[&["identity"], &["Identity"]]))
    {
        set(event, "user.name", user);
    }
    cloud::set_ip(
        event,
        "source.ip",
        cloud::first_text(p, &[&["ipAddress"], &["IPAddress"]])
            .or_else(|| cloud::first_text(record, &[&["callerIpAddress"], &["CallerIpAddress"]])),
    );
    let country = cloud::first_text(p, &[&["location", "countryOrRegion"], &["LocationDetails", "countryOrRegion"]])
        .or_else(|| cloud::text(record, &["location"]).filter(|l| l.len() == 2));
    if let Some(country) = country {
        set(event, "source.geo.country_iso_code", country);
    }
    if let Some(agent) = cloud::first_text(p, &[&["userAgent"], &["UserAgent"]]) {
        set(event, "user_agent.original", agent);
    }
    if let Some(tenant) = cloud::first_text(record, &[&["tenantId"], &["TenantId"], &["AADTenantId"]]) {
        set(event, "cloud.account.id", tenant);
    }
    let code = [&["status", "errorCode"][..], &["Status", "errorCode"]]
        .iter()
        .find_map(|path| cloud::at(p, path).and_then(cloud::scalar_text))
        .or_else(|| cloud::first_text(record, &[&["resultType"], &["ResultType"]]).map(str::to_owned));
    match code.as_deref() {
        Some("0") => set(event, "event.outcome", "success"),
        Some(code) => {
            set(event, "event.outcome", "failure");
            set(event, "error.code", code);
            if let Some(reason) = cloud::first_text(p, &[&["status", "failureReason"], &["Status", "failureReason"]])
                .or_else(|| cloud::first_text(record, &[&["resultDescription"], &["ResultDescription"]]))
            {
                set(event, "error.message", reason);
            }
        }
        None => set(event, "event.outcome", "unknown"),
    }
    if event.timestamp.is_none() {
        event.timestamp = cloud::timestamp(record, &[&["time"], &["createdDateTime"], &["TimeGenerated"]])
            .or_else(|| cloud::timestamp(p, &[&["createdDateTime"]]));
    }
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
    fn vm_delete_from_the_storage_export() {
        let record = serde_json::json!({
            "time": "2024-05-02T08:01:02.1234567Z",
            "resourceId": "/SUBSCRIPTIONS/0000-11/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.COMPUTE/VIRTUALMACHINES/WEB-01",
            "operationName": "MICROSOFT.COMPUTE/VIRTUALMACHINES/DELETE",
            "category": "Administrative",
            "resultType": "Success",
            "callerIpAddress": "203.0.113.9",
            "identity": {"claims": {UPN_CLAIM: "eve@contoso.example"},
                         "authorization": {"evidence": {"principalId": "p-1"}}},
            "location": "westeurope"
        });
        let e = event(&record);
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("azure.activitylogs"));
        assert_eq!(text(&e, "event.category").as_deref(), Some("vm"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("deletion"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("eve@contoso.example"));
        assert_eq!(text(&e, "target.name").as_deref(), Some("WEB-01"));
        assert_eq!(text(&e, "target.type").as_deref(), Some("vm"));
        assert_eq!(text(&e, "cloud.account.id").as_deref(), Some("0000-11"));
        assert_eq!(text(&e, "cloud.region").as_deref(), Some("westeurope"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("203.0.113.9"));
        assert_eq!(text(&e, "cloud.provider").as_deref(), Some("azure"));
        assert_eq!(e.timestamp, "2024-05-02T08:01:02.1234567Z".parse().ok());
    }

    #[test]
    fn other_vm_operations_and_outcomes() {
        let base = |op: &str, result: &str, status: &str| {
            serde_json::json!({
                "time": "2024-05-02T08:01:02Z",
                "resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
                "operationName": op, "category": "Administrative", "resultType": result,
                "properties": {"statusCode": status},
                "identity": {"authorization": {"evidence": {"principalId": "p-1"}}}
            })
        };
        for (op, result, status, kind, outcome) in [
            ("Microsoft.Compute/virtualMachines/write", "Success", "Created", "creation", "success"),
            ("Microsoft.Compute/virtualMachines/write", "Success", "OK", "change", "success"),
            ("Microsoft.Compute/virtualMachines/start/action", "Start", "", "start", "unknown"),
            ("Microsoft.Compute/virtualMachines/deallocate/action", "Accept", "Accepted", "stop", "unknown"),
            ("Microsoft.Compute/virtualMachines/powerOff/action", "Failure", "Conflict", "stop", "failure"),
        ] {
            let e = event(&base(op, result, status));
            assert_eq!(text(&e, "event.type").as_deref(), Some(kind), "{op} {status}");
            assert_eq!(text(&e, "event.outcome").as_deref(), Some(outcome), "{op} {result}");
            assert_eq!(text(&e, "user.name").as_deref(), Some("p-1"));
        }
        let e = event(&base("Microsoft.Compute/virtualMachines/powerOff/action", "Failure", "Conflict"));
        assert_eq!(text(&e, "error.code").as_deref(), Some("Conflict"));
        let e = event(&base("Microsoft.Compute/virtualMachines/extensions/write", "Success", "OK"));
        assert_eq!(e.get_exact("event.category"), None);
        assert_eq!(e.get_exact("target.name"), None);
    }

    #[test]
    fn rest_api_shape() {
        let record = serde_json::json!({
            "caller": "admin@contoso.example",
            "eventTimestamp": "2024-05-02T08:01:02Z",
            "operationName": {"value": "Microsoft.Compute/virtualMachines/delete", "localizedValue": "Delete Virtual Machine"},
            "status": {"value": "Succeeded"},
            "category": {"value": "Administrative"},
            "resourceId": "/subscriptions/abc/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/db1",
            "httpRequest": {"clientIpAddress": "198.51.100.1"}
        });
        let e = event(&record);
        assert_eq!(text(&e, "event.type").as_deref(), Some("deletion"));
        assert_eq!(text(&e, "event.action").as_deref(), Some("Microsoft.Compute/virtualMachines/delete"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("admin@contoso.example"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("198.51.100.1"));
        assert_eq!(text(&e, "cloud.account.id").as_deref(), Some("abc"));
    }

    #[test]
    fn signins_from_the_monitor_export_and_from_graph() {
        let monitor = serde_json::json!({
            "time": "2024-05-02T08:01:02Z", "resourceId": "/tenants/t-1/providers/Microsoft.aadiam",
            "operationName": "Sign-in activity", "category": "SignInLogs", "tenantId": "t-1",
            "resultType": "50126", "resultDescription": "Invalid username or password.",
            "callerIpAddress": "192.0.2.50", "identity": "Frank", "location": "PK",
            "properties": {"userPrincipalName": "frank@contoso.example", "ipAddress": "192.0.2.50",
                "status": {"errorCode": 50126, "failureReason": "Invalid username or password."},
                "location": {"countryOrRegion": "PK"}, "appDisplayName": "Azure Portal"}
        });
        let e = event(&monitor);
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("azure.signinlogs"));
        assert_eq!(text(&e, "event.category").as_deref(), Some("authentication"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "error.code").as_deref(), Some("50126"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("frank@contoso.example"));
        assert_eq!(text(&e, "source.geo.country_iso_code").as_deref(), Some("PK"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("192.0.2.50"));

        let graph = serde_json::json!({
            "id": "1", "createdDateTime": "2024-05-02T08:01:02Z", "userPrincipalName": "grace@contoso.example",
            "appDisplayName": "Office 365", "ipAddress": "2001:db8::5",
            "status": {"errorCode": 0, "failureReason": null}, "location": {"countryOrRegion": "AE"}
        });
        let e = event(&graph);
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        assert_eq!(e.get_exact("error.code"), None);
        assert_eq!(text(&e, "source.ip").as_deref(), Some("2001:db8::5"));
        assert_eq!(text(&e, "source.geo.country_iso_code").as_deref(), Some("AE"));
        assert_eq!(e.timestamp, "2024-05-02T08:01:02Z".parse().ok());
    }

    #[test]
    fn other_azure_resource_logs_are_left_alone() {
        let mut e = Event::new(Source::file("t"), Position::Line(1), Product::Other, "json");
        for v in [
            serde_json::json!({"time": "2024-05-02T08:01:02Z", "resourceId": "/SUBSCRIPTIONS/S/x", "operationName": "VaultGet", "category": "AuditEvent", "resultType": "Success"}),
            serde_json::json!({"operationName": "x", "resourceId": "/subscriptions/s"}),
            serde_json::json!({"createdDateTime": "2024-05-02T08:01:02Z", "status": {"errorCode": "x"}}),
            serde_json::json!("text"),
        ] {
            assert!(!normalize(&mut e, &v), "{v}");
        }
    }
}
