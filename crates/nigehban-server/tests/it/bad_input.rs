//! Bad input on every kind of endpoint answers a 4xx whose JSON `{"error": {"code", "message"}}`
//! names the problem, never a 500; the request decoders hold under arbitrary bytes and JSON
//! (proptest, through the real router); authentication, CSRF, token revocation and expiry and
//! account lockout hold; the OpenAPI document lists every route the router serves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use nigehban_policy::{OrgKind, Role, Scope};
use nigehban_server::{AppState, ServerConfig};
use nigehban_store::{Actor, NewOrg, NewToken, NewUser, OrgProfile, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use crate::common::{Backend, TestServer, backends, browser, client};

const PASSWORD: &str = "bad-input-password-0123";
const KINDS: [&str; 6] = ["incidents", "alerts", "events", "indicators", "sightings", "engagements"];

// ---------------------------------------------------------------------------------------------
// Fixture

struct World {
    server: TestServer,
    p: Uuid,
    m: Uuid,
    /// A reporter of M (a target for account routes).
    reporter: Uuid,
    /// An object of each kind owned by M, GREEN.
    objects: BTreeMap<&'static str, Uuid>,
    /// A token of M's security lead (`*:read`, `*:write`).
    lead_token: String,
    lead_token_id: Uuid,
}

async fn add_org(store: &Store, kind: OrgKind, short: &str, parents: Vec<Uuid>) -> Uuid {
    let new = NewOrg {
        kind,
        name: format!("Bad input {short}"),
        short_name: short.to_owned(),
        sector: None,
        province: None,
        parents,
        profile: OrgProfile::default(),
    };
    store.create_org(&Actor::system(), new).await.unwrap().id
}

async fn add_user(store: &Store, hash: &str, org: Uuid, role: Role, username: &str) -> Uuid {
    let new = NewUser {
        org,
        username: username.to_owned(),
        display_name: username.to_owned(),
        email: None,
        role,
        password_hash: hash.to_owned(),
    };
    store.create_user(&Actor::system(), new).await.unwrap().id
}

async fn add_token(store: &Store, org: Uuid, role: Role, scopes: &[&str], expires_at: Option<i64>) -> (Uuid, String) {
    let secret = format!("ngb_{}", nigehban_server::new_secret());
    let token = store
        .create_token(
            &Actor::system(),
            NewToken {
                org,
                created_by: None,
                name: "test".into(),
                role,
                scopes: scopes.iter().map(|s| s.parse::<Scope>().unwrap()).collect(),
                token_hash: nigehban_server::auth::secret_hash(&secret),
                prefix: secret.chars().take(10).collect(),
                expires_at,
            },
        )
        .await
        .unwrap();
    (token.id, secret)
}

/// The fixture on a server with the default configuration (20 sign-in attempts a minute from
/// one address).
async fn world(backend: Backend) -> World {
    world_on(TestServer::start(backend).await).await
}

async fn world_on(server: TestServer) -> World {
    let store = server.store().clone();
    let n = add_org(&store, OrgKind::National, "bi-ncert", vec![]).await;
    let p = add_org(&store, OrgKind::ProvincialCert, "bi-p", vec![n]).await;
    let m = add_org(&store, OrgKind::Organisation, "bi-m", vec![p]).await;
    let hash = tokio::task::spawn_blocking(|| nigehban_server::hash_password(PASSWORD).unwrap()).await.unwrap();
    add_user(&store, &hash, n, Role::PlatformAdmin, "bi-admin").await;
    add_user(&store, &hash, m, Role::OrgSecurityLead, "bi-lead").await;
    add_user(&store, &hash, p, Role::CertManager, "bi-manager").await;
    add_user(&store, &hash, m, Role::OrgSecurityLead, "bi-lockme").await;
    let reporter = add_user(&store, &hash, m, Role::OrgReporter, "bi-reporter").await;
    let (lead_token_id, lead_token) = add_token(&store, m, Role::OrgSecurityLead, &["*:read", "*:write"], None).await;
    let lead = Browser::login(&server.base, "bi-lead").await;
    let mut objects = BTreeMap::new();
    for kind in KINDS {
        let r = lead
            .send("POST", &format!("/api/v1/{kind}"), json_body(json!({"title": "Bad input target", "tlp": "GREEN"})))
            .await;
        assert_eq!(r.status, 201, "creating a {kind}: {:?}", r.json);
        objects.insert(kind, r.json["id"].as_str().unwrap().parse().unwrap());
    }
    World { server, p, m, reporter, objects, lead_token, lead_token_id }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    json: Value,
    raw: Vec<u8>,
}

impl Answer {
    /// `Some(problem)` unless this is a JSON `{"error": {"code", "message"}}` whose message
    /// contains `needle` (case-insensitive).
    fn error_problem(&self, needle: &str) -> Option<String> {
        if !self.content_type.as_deref().is_some_and(|c| c.starts_with("application/json")) {
            return Some(format!(
                "content type {:?}, body {:?}",
                self.content_type,
                String::from_utf8_lossy(&self.raw)
            ));
        }
        let (Some(code), Some(message)) = (self.json["error"]["code"].as_str(), self.json["error"]["message"].as_str())
        else {
            return Some(format!("not an error object: {}", String::from_utf8_lossy(&self.raw)));
        };
        if code.is_empty() || message.is_empty() {
            return Some(format!("empty code or message: {}", self.json));
        }
        if !message.to_lowercase().contains(&needle.to_lowercase()) {
            return Some(format!("message {message:?} does not name {needle:?}"));
        }
        None
    }
}

/// A body with its content type.
struct Payload {
    content_type: Option<&'static str>,
    bytes: Vec<u8>,
}

fn json_body(v: Value) -> Option<Payload> {
    Some(Payload { content_type: Some("application/json"), bytes: serde_json::to_vec(&v).unwrap() })
}

fn raw_json(bytes: impl Into<Vec<u8>>) -> Option<Payload> {
    Some(Payload { content_type: Some("application/json"), bytes: bytes.into() })
}

async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let raw = r.bytes().await.unwrap().to_vec();
    let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Answer { status, content_type, json, raw }
}

/// A signed-in browser (session cookie and CSRF token).
#[derive(Clone)]
struct Browser {
    http: reqwest::Client,
    base: String,
    csrf: String,
}

impl Browser {
    async fn login(base: &str, username: &str) -> Browser {
        let http = browser();
        let r = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": username, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "sign-in of {username}");
        let v: Value = r.json().await.unwrap();
        Browser { http, base: base.to_owned(), csrf: v["csrf_token"].as_str().unwrap().to_owned() }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Payload>) -> Answer {
        let method: reqwest::Method = method.parse().unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base)).header("X-CSRF-Token", &self.csrf);
        if let Some(b) = body {
            if let Some(ct) = b.content_type {
                req = req.header("content-type", ct);
            }
            req = req.body(b.bytes);
        }
        answer(req.send().await.unwrap()).await
    }
}

/// Who sends a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Nobody,
    Admin,
    Lead,
    Manager,
    LeadToken,
}

struct Callers {
    base: String,
    admin: Browser,
    lead: Browser,
    manager: Browser,
    lead_token: String,
}

impl Callers {
    async fn new(w: &World) -> Callers {
        let base = w.server.base.clone();
        Callers {
            admin: Browser::login(&base, "bi-admin").await,
            lead: Browser::login(&base, "bi-lead").await,
            manager: Browser::login(&base, "bi-manager").await,
            lead_token: w.lead_token.clone(),
            base,
        }
    }

    async fn send(&self, who: Who, method: &str, path: &str, body: Option<Payload>) -> Answer {
        match who {
            Who::Admin => self.admin.send(method, path, body).await,
            Who::Lead => self.lead.send(method, path, body).await,
            Who::Manager => self.manager.send(method, path, body).await,
            Who::Nobody | Who::LeadToken => {
                let mut req = client().request(method.parse().unwrap(), format!("{}{path}", self.base));
                if who == Who::LeadToken {
                    req = req.bearer_auth(&self.lead_token);
                }
                if let Some(b) = body {
                    if let Some(ct) = b.content_type {
                        req = req.header("content-type", ct);
                    }
                    req = req.body(b.bytes);
                }
                answer(req.send().await.unwrap()).await
            }
        }
    }
}

/// One bad request and what it must answer.
struct Case {
    what: String,
    who: Who,
    method: &'static str,
    path: String,
    body: Option<Payload>,
    status: u16,
    /// A word the error message must contain.
    needle: String,
}

fn case(what: impl Into<String>, who: Who, method: &'static str, path: impl Into<String>) -> Case {
    Case { what: what.into(), who, method, path: path.into(), body: None, status: 400, needle: String::new() }
}

impl Case {
    fn body(mut self, b: Option<Payload>) -> Case {
        self.body = b;
        self
    }
    fn json(self, v: Value) -> Case {
        self.body(json_body(v))
    }
    fn want(mut self, status: u16, needle: &str) -> Case {
        self.status = status;
        self.needle = needle.to_owned();
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Bad bodies, queries and ids on every kind of endpoint

/// An endpoint that takes a JSON body.
struct BodyEndpoint {
    name: String,
    who: Who,
    method: &'static str,
    path: String,
    /// A body it accepts.
    valid: Value,
    /// Fields that must be present.
    required: &'static [&'static str],
    /// A field and a value of the wrong type for it.
    mistyped: (&'static str, Value),
}

fn body_endpoints(w: &World) -> Vec<BodyEndpoint> {
    let e = |name: &str, who, method, path: String, valid, required, mistyped| BodyEndpoint {
        name: name.to_owned(),
        who,
        method,
        path,
        valid,
        required,
        mistyped,
    };
    let mut out = vec![
        e(
            "login",
            Who::Nobody,
            "POST",
            "/api/v1/auth/login".into(),
            json!({"username": "bi-nobody", "password": "whatever-it-is"}),
            &["username", "password"],
            ("password", json!(12345)),
        ),
        e(
            "create org",
            Who::Admin,
            "POST",
            "/api/v1/orgs".into(),
            json!({"kind": "organisation", "name": "Bad input new org", "short_name": "bi-new", "parents": [w.p]}),
            &["kind", "name", "short_name"],
            ("parents", json!("not-a-list")),
        ),
        e(
            "update org",
            Who::Admin,
            "PATCH",
            format!("/api/v1/orgs/{}", w.m),
            json!({"name": "Bad input bi-m"}),
            &[],
            ("name", json!(["a", "list"])),
        ),
        e(
            "create user",
            Who::Admin,
            "POST",
            "/api/v1/users".into(),
            json!({"org": w.m, "username": "bi-new-user", "display_name": "New", "role": "org_reporter", "password": PASSWORD}),
            &["org", "username", "display_name", "role", "password"],
            ("org", json!(42)),
        ),
        e(
            "update user",
            Who::Admin,
            "PATCH",
            format!("/api/v1/users/{}", w.reporter),
            json!({"display_name": "Reporter"}),
            &[],
            ("disabled", json!("yes")),
        ),
        e(
            "create token",
            Who::Lead,
            "POST",
            "/api/v1/tokens".into(),
            json!({"name": "shipper", "scopes": ["events:write"]}),
            &["name", "scopes"],
            ("expires_in_days", json!("ten")),
        ),
    ];
    for kind in KINDS {
        let id = w.objects[kind];
        out.push(e(
            &format!("create {kind}"),
            Who::Lead,
            "POST",
            format!("/api/v1/{kind}"),
            json!({"title": "Bad input", "tlp": "GREEN"}),
            &["title", "tlp"],
            ("recipients", json!("everyone")),
        ));
        out.push(e(
            &format!("update {kind}"),
            Who::Lead,
            "PATCH",
            format!("/api/v1/{kind}/{id}"),
            json!({"title": "Bad input target"}),
            &[],
            ("version", json!("latest")),
        ));
        out.push(e(
            &format!("share {kind}"),
            Who::Manager,
            "POST",
            format!("/api/v1/{kind}/{id}/shares"),
            json!({"to": "community"}),
            &["to"],
            ("org", json!(true)),
        ));
    }
    out
}

fn with(valid: &Value, field: &str, value: Value) -> Value {
    let mut v = valid.clone();
    v[field] = value;
    v
}

fn without(valid: &Value, field: &str) -> Value {
    let mut v = valid.clone();
    v.as_object_mut().unwrap().remove(field);
    v
}

fn body_cases(w: &World) -> Vec<Case> {
    let mut cases = Vec::new();
    for ep in body_endpoints(w) {
        let c = |what: &str| case(format!("{}: {what}", ep.name), ep.who, ep.method, ep.path.clone());
        // A field the endpoint knows, so that the decoder gets as far as the bad syntax.
        let first = ep.valid.as_object().unwrap().keys().next().unwrap().clone();
        cases.push(c("malformed JSON").body(raw_json(format!(r#"{{"{first}": "#))).want(400, "JSON"));
        cases.push(c("JSON with trailing garbage").body(raw_json(format!("{} x", ep.valid))).want(400, "JSON"));
        cases.push(c("empty body").body(raw_json("")).want(400, "JSON"));
        let mut bad_utf8 = format!(r#"{{"{first}": ""#).into_bytes();
        bad_utf8.extend_from_slice(b"\xff\xfe\"}");
        cases.push(c("invalid UTF-8").body(raw_json(bad_utf8)).want(400, "unicode"));
        let deep = format!(r#"{{"{first}": {}"#, "[".repeat(10_000));
        cases.push(c("nested too deep").body(raw_json(deep)).want(400, "expected"));
        cases.push(c("an array, not an object").json(json!([1, 2])).want(400, "invalid type"));
        cases.push(c("a string, not an object").json(json!("hello")).want(400, "invalid type"));
        cases.push(c("null").json(Value::Null).want(400, "invalid type"));
        cases
            .push(c("unknown field").json(with(&ep.valid, "zz_unknown_field", json!(1))).want(400, "zz_unknown_field"));
        let (field, wrong) = &ep.mistyped;
        cases.push(c(&format!("wrong type for {field}")).json(with(&ep.valid, field, wrong.clone())).want(400, field));
        for field in ep.required {
            cases.push(c(&format!("missing {field}")).json(without(&ep.valid, field)).want(400, field));
        }
        cases.push(
            c("text/plain content type")
                .body(Some(Payload { content_type: Some("text/plain"), bytes: ep.valid.to_string().into_bytes() }))
                .want(415, "Content-Type"),
        );
        cases.push(
            c("form content type")
                .body(Some(Payload {
                    content_type: Some("application/x-www-form-urlencoded"),
                    bytes: b"title=x&tlp=GREEN".to_vec(),
                }))
                .want(415, "Content-Type"),
        );
        cases.push(
            c("no content type")
                .body(Some(Payload { content_type: None, bytes: ep.valid.to_string().into_bytes() }))
                .want(415, "Content-Type"),
        );
        let mut big = String::from(r#"{"title": ""#);
        big.push_str(&"a".repeat(1024 * 1024 + 1));
        big.push_str(r#""}"#);
        cases.push(c("body over 1 MiB").body(raw_json(big)).want(413, "larger"));
    }
    cases
}

fn value_cases(w: &World) -> Vec<Case> {
    let ghost = Uuid::now_v7();
    let mut cases = Vec::new();
    for kind in KINDS {
        let id = w.objects[kind];
        let base = format!("/api/v1/{kind}");
        let item = format!("{base}/{id}");
        let shares = format!("{item}/shares");
        let create = |what: &str, body: Value| {
            case(format!("create {kind}: {what}"), Who::Lead, "POST", base.clone()).json(body)
        };
        cases.push(create("unknown TLP", json!({"title": "x", "tlp": "PURPLE"})).want(400, "PURPLE"));
        cases.push(create("TLP 1.0 spelling with a typo", json!({"title": "x", "tlp": "TLP:AMBR"})).want(400, "TLP"));
        cases.push(create("empty TLP", json!({"title": "x", "tlp": ""})).want(400, "TLP"));
        cases.push(create("TLP as a number", json!({"title": "x", "tlp": 3})).want(400, "tlp"));
        cases.push(create("body not an object", json!({"title": "x", "tlp": "GREEN", "body": [1]})).want(400, "body"));
        cases.push(
            create("body nested too deep", json!({}))
                .body(raw_json(format!(r#"{{"title": "x", "tlp": "GREEN", "body": {}"#, "[".repeat(10_000))))
                .want(400, "recursion"),
        );
        cases.push(create("empty title", json!({"title": "  ", "tlp": "GREEN"})).want(422, "title"));
        cases.push(
            create("unknown recipient", json!({"title": "x", "tlp": "RED", "recipients": [ghost]}))
                .want(422, "recipient"),
        );
        cases.push(
            create("recipient not a UUID", json!({"title": "x", "tlp": "RED", "recipients": ["bob"]}))
                .want(400, "recipients"),
        );
        cases.push(
            create("unknown assignee", json!({"title": "x", "tlp": "GREEN", "assignees": [ghost]}))
                .want(422, "assignee"),
        );
        let update = |what: &str, body: Value| {
            case(format!("update {kind}: {what}"), Who::Lead, "PATCH", item.clone()).json(body)
        };
        cases.push(update("unknown TLP", json!({"tlp": "amber-ish"})).want(400, "amber-ish"));
        cases.push(update("body not an object", json!({"body": "text"})).want(400, "body"));
        if kind == "events" {
            // Events are evidence: any amendment is refused, however well-formed.
            cases.push(update("a new title", json!({"title": "changed"})).want(403, "evidence"));
        } else {
            cases.push(update("empty title", json!({"title": ""})).want(422, "title"));
            cases.push(
                update("stale version", json!({"title": "Bad input target", "version": 999_999})).want(409, "version"),
            );
            cases.push(update("unknown recipient", json!({"recipients": [ghost]})).want(422, "recipient"));
        }
        let share = |what: &str, body: Value| {
            case(format!("share {kind}: {what}"), Who::Manager, "POST", shares.clone()).json(body)
        };
        cases.push(share("unknown target", json!({"to": "everyone"})).want(400, "everyone"));
        cases.push(share("org without its id", json!({"to": "org"})).want(400, "org"));
        cases.push(share("unknown org", json!({"to": "org", "org": ghost})).want(400, "org"));
        cases.push(share("org that is not a UUID", json!({"to": "org", "org": "bi-m"})).want(400, "org"));
        cases.push(share("community with an org", json!({"to": "community", "org": w.m})).want(400, "org"));
    }
    let user =
        |what: &str, body: Value| case(format!("create user: {what}"), Who::Admin, "POST", "/api/v1/users").json(body);
    let valid_user =
        json!({"org": w.m, "username": "bi-x", "display_name": "X", "role": "org_reporter", "password": PASSWORD});
    cases.push(user("unknown role", with(&valid_user, "role", json!("king"))).want(400, "king"));
    cases.push(user("short password", with(&valid_user, "password", json!("short"))).want(422, "12"));
    cases.push(user("bad username", with(&valid_user, "username", json!("a b"))).want(422, "username"));
    cases.push(user("unknown organisation", with(&valid_user, "org", json!(ghost))).want(422, "organisation"));
    cases.push(user("role that does not fit", with(&valid_user, "role", json!("national_analyst"))).want(422, "fit"));
    let token =
        |what: &str, body: Value| case(format!("create token: {what}"), Who::Lead, "POST", "/api/v1/tokens").json(body);
    cases.push(token("no scopes", json!({"name": "t", "scopes": []})).want(400, "scopes"));
    cases.push(token("unknown verb", json!({"name": "t", "scopes": ["incidents:delete"]})).want(400, "delete"));
    cases.push(token("unknown kind", json!({"name": "t", "scopes": ["widgets:read"]})).want(400, "widgets"));
    cases.push(token("scope without a verb", json!({"name": "t", "scopes": ["incidents"]})).want(400, "scope"));
    cases.push(
        token("zero days", json!({"name": "t", "scopes": ["*:read"], "expires_in_days": 0}))
            .want(400, "expires_in_days"),
    );
    cases.push(
        token("negative days", json!({"name": "t", "scopes": ["*:read"], "expires_in_days": -1}))
            .want(400, "expires_in_days"),
    );
    cases.push(
        token("too many days", json!({"name": "t", "scopes": ["*:read"], "expires_in_days": 100_000}))
            .want(400, "expires_in_days"),
    );
    let org =
        |what: &str, body: Value| case(format!("create org: {what}"), Who::Admin, "POST", "/api/v1/orgs").json(body);
    cases.push(org("unknown kind", json!({"kind": "galaxy", "name": "G", "short_name": "g"})).want(400, "galaxy"));
    cases.push(
        org("unknown parent", json!({"kind": "organisation", "name": "G", "short_name": "g", "parents": [ghost]}))
            .want(422, "parent"),
    );
    cases.push(
        org(
            "an organisation without a parent CERT",
            json!({"kind": "organisation", "name": "Orphan", "short_name": "orphan"}),
        )
        .want(422, "parent"),
    );
    cases.push(
        org("a second national CERT", json!({"kind": "national", "name": "G", "short_name": "g"}))
            .want(422, "national"),
    );
    cases.push(
        org(
            "taken name",
            json!({"kind": "organisation", "name": "Bad input bi-p", "short_name": "bi-p2", "parents": [w.p]}),
        )
        .want(409, "Bad input bi-p"),
    );
    cases.push(user("taken username", with(&valid_user, "username", json!("bi-lead"))).want(409, "taken"));
    cases.push(
        case("login: wrong password", Who::Nobody, "POST", "/api/v1/auth/login")
            .json(json!({"username": "bi-admin", "password": "not the password"}))
            .want(401, "password"),
    );
    cases.push(
        case("login: unknown user", Who::Nobody, "POST", "/api/v1/auth/login")
            .json(json!({"username": "bi-nobody", "password": "not the password"}))
            .want(401, "password"),
    );
    cases
}

fn query_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let long = "A".repeat(4000);
    let bad_cursor_bytes = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1u8, 2, 3])
    };
    for kind in KINDS {
        let q = |what: &str, query: &str| {
            case(format!("list {kind}: {what}"), Who::Lead, "GET", format!("/api/v1/{kind}?{query}"))
        };
        cases.push(q("unknown parameter", "zz_bogus=1").want(400, "zz_bogus"));
        cases.push(q("limit 0", "limit=0").want(400, "limit"));
        cases.push(q("limit 501", "limit=501").want(400, "limit"));
        cases.push(q("limit not a number", "limit=abc").want(400, "limit"));
        cases.push(q("negative limit", "limit=-1").want(400, "limit"));
        cases.push(q("limit beyond u32", "limit=99999999999").want(400, "limit"));
        cases.push(q("limit twice", "limit=10&limit=20").want(400, "limit"));
        cases.push(q("owner not a UUID", "owner=bi-m").want(400, "owner"));
        cases.push(q("unknown TLP", "tlp=PURPLE").want(400, "PURPLE"));
        cases.push(q("empty TLP", "tlp=").want(400, "TLP"));
        cases.push(q("cursor not base64", "cursor=!!!").want(400, "cursor"));
        cases.push(q("cursor of the wrong size", &format!("cursor={bad_cursor_bytes}")).want(400, "cursor"));
        cases.push(q("very long cursor", &format!("cursor={long}")).want(400, "cursor"));
    }
    let audit =
        |what: &str, query: &str| case(format!("audit: {what}"), Who::Admin, "GET", format!("/api/v1/audit?{query}"));
    cases.push(audit("cursor not a number", "cursor=abc").want(400, "cursor"));
    cases.push(audit("cursor 0", "cursor=0").want(400, "cursor"));
    cases.push(audit("negative cursor", "cursor=-5").want(400, "cursor"));
    cases.push(audit("limit 0", "limit=0").want(400, "limit"));
    cases.push(audit("unknown parameter", "zz_bogus=1").want(400, "zz_bogus"));
    let users =
        |what: &str, query: &str| case(format!("users: {what}"), Who::Admin, "GET", format!("/api/v1/users?{query}"));
    cases.push(users("org not a UUID", "org=bi-m").want(400, "org"));
    cases.push(users("unknown parameter", "zz_bogus=1").want(400, "zz_bogus"));
    cases
}

fn id_cases(w: &World) -> Vec<Case> {
    let mut cases = Vec::new();
    let bad_ids = ["not-a-uuid", "12345", "0000000-0000-0000-0000-00000000000", "%7Bid%7D", "a%2Fb", "%00", "%FF%FE"];
    let mut routes: Vec<(Who, &'static str, String, Option<Value>)> = vec![
        (Who::Admin, "GET", "/api/v1/orgs/{}".into(), None),
        (Who::Admin, "PATCH", "/api/v1/orgs/{}".into(), Some(json!({"name": "x"}))),
        (Who::Admin, "GET", "/api/v1/users/{}".into(), None),
        (Who::Admin, "PATCH", "/api/v1/users/{}".into(), Some(json!({"display_name": "x"}))),
        (Who::Lead, "DELETE", "/api/v1/tokens/{}".into(), None),
    ];
    for kind in KINDS {
        routes.push((Who::Lead, "GET", format!("/api/v1/{kind}/{{}}"), None));
        routes.push((Who::Lead, "PATCH", format!("/api/v1/{kind}/{{}}"), Some(json!({"title": "x"}))));
        routes.push((Who::Lead, "GET", format!("/api/v1/{kind}/{{}}/export"), None));
        routes.push((Who::Manager, "POST", format!("/api/v1/{kind}/{{}}/shares"), Some(json!({"to": "community"}))));
    }
    for (who, method, pattern, body) in routes {
        for bad in bad_ids {
            let path = pattern.replace("{}", bad);
            let mut c = case(format!("{method} {pattern} with id {bad:?}"), who, method, path);
            if let Some(b) = &body {
                c = c.json(b.clone());
            }
            // The message names the identifier, or says what is wrong with the URL.
            let needle = if bad.starts_with("%FF") { "" } else { "identifier" };
            cases.push(c.want(400, needle));
        }
        let ghost = Uuid::now_v7().to_string();
        let mut c = case(format!("{method} {pattern} with an unknown id"), who, method, pattern.replace("{}", &ghost));
        if let Some(b) = &body {
            c = c.json(b.clone());
        }
        cases.push(c.want(404, "not found"));
    }
    // The objects exist, but under another kind: not found, never another kind's object.
    for (kind, other) in KINDS.iter().zip(KINDS.iter().cycle().skip(1)) {
        cases.push(
            case(
                format!("read a {other} under /{kind}"),
                Who::Lead,
                "GET",
                format!("/api/v1/{kind}/{}", w.objects[other]),
            )
            .want(404, "not found"),
        );
    }
    cases
}

fn auth_header_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (what, value) in [
        ("unknown token", "Bearer ngb_not-a-token"),
        ("empty bearer", "Bearer "),
        ("basic auth", "Basic YWRtaW46YWRtaW4="),
        ("no scheme", "ngb_whatever"),
    ] {
        let mut c = case(format!("Authorization: {what}"), Who::Nobody, "GET", "/api/v1/incidents").want(401, "token");
        c.what = format!("{}|{value}", c.what);
        cases.push(c);
    }
    cases
}

async fn run_cases(callers: &Callers, cases: Vec<Case>) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let (what, authz) = match c.what.split_once('|') {
            Some((w, a)) => (w.to_owned(), Some(a.to_owned())),
            None => (c.what.clone(), None),
        };
        let a = match authz {
            Some(value) => {
                let r = client().get(format!("{}{}", callers.base, c.path)).header("authorization", value);
                answer(r.send().await.unwrap()).await
            }
            None => callers.send(c.who, c.method, &c.path, c.body).await,
        };
        if a.status != c.status {
            failures.push(format!(
                "{what} ({} {}): expected {}, got {} {}",
                c.method,
                c.path.chars().take(120).collect::<String>(),
                c.status,
                a.status,
                String::from_utf8_lossy(&a.raw).chars().take(300).collect::<String>()
            ));
        } else if let Some(problem) = a.error_problem(&c.needle) {
            failures.push(format!("{what} ({} {}): {problem}", c.method, c.path.chars().take(120).collect::<String>()));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_that_names_the_problem() {
    let mut failures = Vec::new();
    for backend in backends() {
        let w = world(backend).await;
        let callers = Callers::new(&w).await;
        let mut cases = body_cases(&w);
        cases.extend(value_cases(&w));
        cases.extend(query_cases());
        cases.extend(id_cases(&w));
        cases.extend(auth_header_cases());
        let n = cases.len();
        let f = run_cases(&callers, cases).await;
        eprintln!("bad input ({:?}): {n} requests, {} wrong", w.server.backend, f.len());
        failures.extend(f.into_iter().map(|f| format!("{backend:?}: {f}")));
        w.server.stop().await;
    }
    assert!(
        failures.is_empty(),
        "{} bad requests were not answered as they should:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Text the databases cannot store

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_never_cause_a_server_error() {
    let mut failures = Vec::new();
    for backend in backends() {
        let w = world(backend).await;
        let callers = Callers::new(&w).await;
        let id = w.objects["incidents"];
        let requests: Vec<(Who, &str, String, Option<Value>)> = vec![
            (
                Who::Nobody,
                "POST",
                "/api/v1/auth/login".into(),
                Some(json!({"username": "bi-\u{0}admin", "password": "x\u{0}"})),
            ),
            (Who::Lead, "POST", "/api/v1/incidents".into(), Some(json!({"title": "nul \u{0} title", "tlp": "GREEN"}))),
            (
                Who::Lead,
                "POST",
                "/api/v1/incidents".into(),
                Some(json!({"title": "nul body", "tlp": "GREEN", "body": {"k\u{0}": "v\u{0}"}})),
            ),
            (Who::Lead, "PATCH", format!("/api/v1/incidents/{id}"), Some(json!({"title": "nul \u{0} title"}))),
            (Who::Lead, "GET", "/api/v1/incidents?q=%00".into(), None),
            (Who::Lead, "GET", "/api/v1/incidents?tlp=%00".into(), None),
            (Who::Admin, "GET", "/api/v1/audit?action=%00".into(), None),
            (Who::Lead, "POST", "/api/v1/tokens".into(), Some(json!({"name": "nul\u{0}", "scopes": ["*:read"]}))),
            (
                Who::Admin,
                "POST",
                "/api/v1/users".into(),
                Some(
                    json!({"org": w.m, "username": "bi-nul", "display_name": "N\u{0}", "role": "org_reporter", "password": PASSWORD}),
                ),
            ),
            (
                Who::Admin,
                "POST",
                "/api/v1/orgs".into(),
                Some(json!({"kind": "organisation", "name": "Nul\u{0}", "short_name": "bi-nul", "parents": [w.p]})),
            ),
            (Who::Admin, "PATCH", format!("/api/v1/orgs/{}", w.m), Some(json!({"sector": "nul\u{0}"}))),
            (Who::Admin, "PATCH", format!("/api/v1/users/{}", w.reporter), Some(json!({"display_name": "nul\u{0}"}))),
        ];
        for (who, method, path, body) in requests {
            let a = callers.send(who, method, &path, body.and_then(json_body)).await;
            if a.status >= 500 {
                failures.push(format!(
                    "{backend:?}: {method} {path}: {} {}",
                    a.status,
                    String::from_utf8_lossy(&a.raw)
                ));
            } else if a.status >= 400
                && let Some(p) = a.error_problem("")
            {
                failures.push(format!("{backend:?}: {method} {path}: {p}"));
            }
        }
        w.server.stop().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// Every operation of the OpenAPI document: (method, path).
fn documented_operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            if ["get", "post", "patch", "put", "delete"].contains(&method.as_str()) {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_csrf_tokens_and_lockout() {
    for backend in backends() {
        let w = world(backend).await;
        let base = w.server.base.clone();
        let doc: Value =
            client().get(format!("{base}/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();

        // Without credentials: 401 on every route but sign-in and the document itself.
        let mut failures = Vec::new();
        let ops = documented_operations(&doc);
        assert!(ops.len() >= 50, "{} operations documented", ops.len());
        for (method, path) in &ops {
            let url = format!("{base}{}", path.replace("{id}", &Uuid::now_v7().to_string()));
            let mut req = client().request(method.parse().unwrap(), &url);
            if method != "GET" && method != "DELETE" {
                req = req.json(&json!({}));
            }
            let a = answer(req.send().await.unwrap()).await;
            let want = match path.as_str() {
                "/api/v1/auth/login" => 400,
                "/api/v1/openapi.json" => 200,
                _ => 401,
            };
            if a.status != want {
                failures.push(format!("{method} {path} without credentials: expected {want}, got {}", a.status));
            } else if want == 401
                && let Some(p) = a.error_problem("sign in")
            {
                failures.push(format!("{method} {path} without credentials: {p}"));
            }
        }
        assert!(failures.is_empty(), "{backend:?}:\n{}", failures.join("\n"));

        // A signed-in browser changing something must send its CSRF token.
        let lead = Browser::login(&base, "bi-lead").await;
        let create = json!({"title": "CSRF check", "tlp": "GREEN"});
        let r = lead.http.post(format!("{base}/api/v1/incidents")).json(&create).send().await.unwrap();
        let a = answer(r).await;
        assert_eq!(a.status, 403, "{backend:?}: POST without X-CSRF-Token");
        assert_eq!(a.error_problem("CSRF"), None);
        let r = lead
            .http
            .patch(format!("{base}/api/v1/incidents/{}", w.objects["incidents"]))
            .header("X-CSRF-Token", "not-the-token")
            .json(&json!({"title": "changed"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{backend:?}: PATCH with a wrong X-CSRF-Token");
        let r = lead.http.post(format!("{base}/api/v1/auth/logout")).send().await.unwrap();
        assert_eq!(r.status(), 403, "{backend:?}: sign-out without X-CSRF-Token");
        let a = lead.send("POST", "/api/v1/incidents", json_body(create)).await;
        assert_eq!(a.status, 201, "{backend:?}: POST with the CSRF token");
        // Reading needs no CSRF token; a bearer token needs none either.
        assert_eq!(lead.http.get(format!("{base}/api/v1/incidents")).send().await.unwrap().status(), 200);
        let r = client()
            .post(format!("{base}/api/v1/incidents"))
            .bearer_auth(&w.lead_token)
            .json(&json!({"title": "Token check", "tlp": "GREEN"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{backend:?}: POST with a bearer token");

        // Revoked and expired tokens: 401.
        let with_token = |t: String| {
            let base = base.clone();
            async move { answer(client().get(format!("{base}/api/v1/me")).bearer_auth(t).send().await.unwrap()).await }
        };
        assert_eq!(with_token(w.lead_token.clone()).await.status, 200);
        let r = lead.send("DELETE", &format!("/api/v1/tokens/{}", w.lead_token_id), None).await;
        assert_eq!(r.status, 204, "{backend:?}: revoking the token: {:?}", r.json);
        let a = with_token(w.lead_token.clone()).await;
        assert_eq!(a.status, 401, "{backend:?}: a revoked token");
        assert_eq!(a.error_problem("revoked"), None);
        let past = jiff::Timestamp::now().as_microsecond() - 1_000_000;
        let (_, expired) = add_token(w.server.store(), w.m, Role::OrgSecurityLead, &["*:read"], Some(past)).await;
        let a = with_token(expired).await;
        assert_eq!(a.status, 401, "{backend:?}: an expired token");
        assert_eq!(a.error_problem("expired"), None);

        // Sign-out ends the session.
        let r = lead.send("POST", "/api/v1/auth/logout", None).await;
        assert_eq!(r.status, 204);
        assert_eq!(lead.http.get(format!("{base}/api/v1/me")).send().await.unwrap().status(), 401);

        // Five failed sign-ins lock the account; the right password is then refused too.
        let login = |password: &'static str| {
            let base = base.clone();
            async move {
                let r = client()
                    .post(format!("{base}/api/v1/auth/login"))
                    .json(&json!({"username": "bi-lockme", "password": password}))
                    .send()
                    .await
                    .unwrap();
                answer(r).await
            }
        };
        for i in 1..=5 {
            let a = login("wrong password!!").await;
            assert_eq!(a.status, 401, "{backend:?}: failed sign-in {i}");
        }
        let a = login(PASSWORD).await;
        assert_eq!(a.status, 403, "{backend:?}: sign-in after 5 failures: {:?}", a.json);
        assert_eq!(a.error_problem("locked"), None);
        assert_eq!(a.json["error"]["code"], "locked");
        // Another account is not affected.
        assert!(!Browser::login(&base, "bi-admin").await.csrf.is_empty());
        w.server.stop().await;
    }
}

/// Tokens and sessions are cached for a while (here a minute) to spare the database; a change
/// made through the server still takes effect on the next request, and expiry is never cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_credentials_end_at_once() {
    for backend in backends() {
        let config = ServerConfig { auth_cache_ttl: std::time::Duration::from_secs(60), ..ServerConfig::default() };
        let w = world_on(TestServer::start_with(backend, config).await).await;
        let base = w.server.base.clone();
        let get = |path: &'static str, token: Option<String>, session: Option<Browser>| {
            let base = base.clone();
            async move {
                let req = match (&session, token) {
                    (Some(b), _) => b.http.get(format!("{base}{path}")),
                    (None, Some(t)) => client().get(format!("{base}{path}")).bearer_auth(t),
                    (None, None) => client().get(format!("{base}{path}")),
                };
                answer(req.send().await.unwrap()).await
            }
        };
        let admin = Browser::login(&base, "bi-admin").await;

        // A token used (so cached), then revoked through the web UI's form: refused at once.
        let (id, secret) = add_token(w.server.store(), w.m, Role::OrgSecurityLead, &["*:read"], None).await;
        for _ in 0..2 {
            assert_eq!(get("/api/v1/incidents", Some(secret.clone()), None).await.status, 200, "{backend:?}");
        }
        let r = admin
            .http
            .post(format!("{base}/admin/tokens/{id}/revoke"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={}", admin.csrf))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_redirection() || r.status().is_success(), "{backend:?}: revoking: {}", r.status());
        let a = get("/api/v1/incidents", Some(secret), None).await;
        assert_eq!((a.status, a.json["error"]["code"].as_str()), (401, Some("token_expired")), "{backend:?}: revoked");

        // A token that expires while cached: refused once its time is up.
        let soon = jiff::Timestamp::now().as_microsecond() + 1_500_000;
        let (_, secret) = add_token(w.server.store(), w.m, Role::OrgSecurityLead, &["*:read"], Some(soon)).await;
        assert_eq!(get("/api/v1/incidents", Some(secret.clone()), None).await.status, 200, "{backend:?}");
        tokio::time::sleep(std::time::Duration::from_millis(1_700)).await;
        let a = get("/api/v1/incidents", Some(secret), None).await;
        assert_eq!((a.status, a.json["error"]["code"].as_str()), (401, Some("token_expired")), "{backend:?}: expired");

        // A session used (so cached): a role change shows at once; disabling the account ends it.
        let reporter_path = format!("/api/v1/users/{}", w.reporter);
        let reporter = Browser::login(&base, "bi-reporter").await;
        for _ in 0..2 {
            let a = get("/api/v1/me", None, Some(reporter.clone())).await;
            assert_eq!((a.status, a.json["role"].as_str()), (200, Some("org_reporter")), "{backend:?}");
        }
        let r = admin.send("PATCH", &reporter_path, json_body(json!({"role": "org_security_lead"}))).await;
        assert_eq!(r.status, 200, "{backend:?}: {:?}", r.json);
        let a = get("/api/v1/me", None, Some(reporter.clone())).await;
        assert_eq!(a.json["role"].as_str(), Some("org_security_lead"), "{backend:?}: the new role at once");
        let r = admin.send("PATCH", &reporter_path, json_body(json!({"disabled": true}))).await;
        assert_eq!(r.status, 200, "{backend:?}: {:?}", r.json);
        assert_eq!(get("/api/v1/me", None, Some(reporter)).await.status, 401, "{backend:?}: disabled");

        // Signing out ends the session at once.
        for _ in 0..2 {
            assert_eq!(get("/api/v1/me", None, Some(admin.clone())).await.status, 200);
        }
        assert_eq!(admin.send("POST", "/api/v1/auth/logout", None).await.status, 204);
        assert_eq!(get("/api/v1/me", None, Some(admin)).await.status, 401, "{backend:?}: signed out");
        w.server.stop().await;
    }
}

/// With the cache turned off every request reads its token; everything works the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_without_the_cache() {
    let config = ServerConfig { auth_cache_ttl: std::time::Duration::ZERO, ..ServerConfig::default() };
    let w = world_on(TestServer::start_with(Backend::Sqlite, config).await).await;
    let base = w.server.base.clone();
    let get = || client().get(format!("{base}/api/v1/incidents")).bearer_auth(&w.lead_token).send();
    assert_eq!(get().await.unwrap().status(), 200);
    w.server.store().revoke_token(&Actor::system(), w.lead_token_id).await.unwrap();
    assert_eq!(get().await.unwrap().status(), 401);
    w.server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The OpenAPI document

/// The API routes the router declares, read from the source of `src/api` (`.route("…")` and
/// the per-kind `format!("{base}…")` routes).
fn routes_in_source() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices(".route(") {
            let rest = &text[i + ".route(".len()..];
            let Some(start) = rest.find('"') else { continue };
            let lit = &rest[start + 1..];
            let Some(end) = lit.find('"') else { continue };
            let route = lit[..end].replace("{{", "{").replace("}}", "}");
            if route.starts_with("/api/") {
                out.insert(route);
            } else if let Some(suffix) = route.strip_prefix("{base}") {
                for kind in KINDS {
                    out.insert(format!("/api/v1/{kind}{suffix}"));
                }
            } else if route == "&base" || route.is_empty() {
                continue;
            }
        }
        // `.route(&base, …)`: the per-kind collection route.
        if text.contains(".route(&base,") {
            for kind in KINDS {
                out.insert(format!("/api/v1/{kind}"));
            }
        }
    }
    out
}

/// Checks the document's structure as OpenAPI 3 (what the specification requires of it), and
/// that every `$ref` resolves.
fn openapi_problems(doc: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if !doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")) {
        p.push(format!("openapi is {:?}, not 3.x", doc["openapi"]));
    }
    if !doc["info"]["title"].is_string() || !doc["info"]["version"].is_string() {
        p.push("info.title and info.version are required".into());
    }
    let schemes = doc["components"]["securitySchemes"].as_object().cloned().unwrap_or_default();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        if !path.starts_with('/') {
            p.push(format!("path {path} does not start with /"));
        }
        let templated: Vec<&str> = path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
        for (method, op) in item.as_object().unwrap() {
            let here = format!("{method} {path}");
            if !["get", "put", "post", "delete", "options", "head", "patch", "trace"].contains(&method.as_str()) {
                continue;
            }
            let responses = op["responses"].as_object();
            if responses.is_none_or(|r| r.is_empty()) {
                p.push(format!("{here}: no responses"));
            }
            for (code, _) in responses.into_iter().flatten() {
                if !(code == "default" || (code.len() == 3 && code.chars().all(|c| c.is_ascii_digit() || c == 'X'))) {
                    p.push(format!("{here}: response code {code}"));
                }
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for t in &templated {
                let declared = params.iter().any(|x| x["name"] == *t && x["in"] == "path" && x["required"] == true);
                if !declared {
                    p.push(format!("{here}: path parameter {t} is not declared as required"));
                }
            }
            for x in &params {
                if !["query", "header", "path", "cookie"].contains(&x["in"].as_str().unwrap_or("")) {
                    p.push(format!("{here}: parameter {} has in = {}", x["name"], x["in"]));
                }
            }
            for req in op["security"].as_array().into_iter().flatten() {
                for name in req.as_object().unwrap().keys() {
                    if !schemes.contains_key(name) {
                        p.push(format!("{here}: security scheme {name} is not defined"));
                    }
                }
            }
        }
    }
    // Every reference resolves.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        if let Some(s) = x.as_str() {
                            out.push(s);
                        }
                    } else {
                        refs(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(doc, &mut all);
    for r in all {
        let target = r.strip_prefix("#/").map(|path| path.split('/').fold(doc, |v, k| &v[k]));
        if target.is_none_or(Value::is_null) {
            p.push(format!("$ref {r} does not resolve"));
        }
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route() {
    let backend = Backend::Sqlite;
    let w = world(backend).await;
    let text = client().get(w.server.url("/api/v1/openapi.json")).send().await.unwrap().text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let typed: Result<utoipa::openapi::OpenApi, _> = serde_json::from_str(&text);
    assert!(typed.is_ok(), "the document does not read as OpenAPI: {:?}", typed.err());
    let problems = openapi_problems(&doc);
    assert!(problems.is_empty(), "the document is not valid OpenAPI 3:\n{}", problems.join("\n"));

    // Every route the router declares is documented …
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let declared = routes_in_source();
    assert!(declared.len() >= 20, "found only {} routes in the source: {declared:?}", declared.len());
    let missing: Vec<&String> = declared.difference(&documented).collect();
    assert!(missing.is_empty(), "routes the router serves but the document does not list: {missing:?}");

    // … and every documented operation is served (an unknown id is the handler's 404, never the
    // router's), while methods the document does not list are not.
    let callers = Callers::new(&w).await;
    let ops = documented_operations(&doc);
    let mut failures = Vec::new();
    let by_path: BTreeMap<&str, Vec<&str>> = ops.iter().fold(BTreeMap::new(), |mut m, (method, path)| {
        m.entry(path.as_str()).or_default().push(method.as_str());
        m
    });
    for (method, path) in &ops {
        if path == "/api/v1/auth/logout" {
            continue; // would end the session used below; checked in the authentication test
        }
        let concrete = path.replace("{id}", &Uuid::now_v7().to_string());
        let body = (method == "POST" || method == "PATCH").then(|| json_body(json!({}))).flatten();
        let a = callers.send(Who::Admin, method, &concrete, body).await;
        if a.status == 405 || (a.status == 404 && a.json["error"]["message"] == "route not found") {
            failures.push(format!("{method} {path}: the router does not serve it ({})", a.status));
        }
        if a.status >= 500 {
            failures.push(format!("{method} {path}: {}", a.status));
        }
    }
    for (path, methods) in &by_path {
        for method in ["GET", "POST", "PATCH", "PUT", "DELETE"] {
            if methods.contains(&method) {
                continue;
            }
            let concrete = path.replace("{id}", &Uuid::now_v7().to_string());
            let a = callers.send(Who::Admin, method, &concrete, None).await;
            if a.status != 405 {
                failures.push(format!("{method} {path} is not documented, but answers {}", a.status));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    w.server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Arbitrary input at the decoders, through the real router (no network)

/// A JSON value of any shape, with strings the API gives meaning to mixed in.
fn json_value(known: Vec<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[ -~]{0,16}".prop_map(Value::from),
        // Text with NUL and other control characters, which some databases refuse.
        proptest::collection::vec(prop_oneof![Just('\u{0}'), Just('\u{1b}'), any::<char>()], 0..8)
            .prop_map(|c| Value::from(String::from_iter(c))),
        proptest::sample::select(known).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request body to try.
#[derive(Debug, Clone)]
enum BodyInput {
    /// Sent as it is.
    Raw(Vec<u8>),
    /// The decoder's valid template with these fields replaced (so that decoding gets far, into
    /// the handler and the store).
    Mutate(Vec<(String, Value)>),
}

impl BodyInput {
    fn bytes(&self, template: &Value) -> Vec<u8> {
        match self {
            BodyInput::Raw(b) => b.clone(),
            BodyInput::Mutate(changes) => {
                let mut v = template.clone();
                for (k, x) in changes {
                    v[k.as_str()] = x.clone();
                }
                serde_json::to_vec(&v).unwrap()
            }
        }
    }
}

/// A body: arbitrary bytes, an arbitrary JSON value, an object with the decoder's own field
/// names holding arbitrary values, or its valid template with a few fields changed.
fn body_strategy(
    fields: &'static [&'static str],
    known: Vec<String>,
) -> impl Strategy<Value = (BodyInput, &'static str)> {
    let key = prop_oneof![
        4 => proptest::sample::select(fields.to_vec()).prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
    ];
    let near = proptest::collection::btree_map(key.clone(), json_value(known.clone()), 0..7)
        .prop_map(|m| serde_json::to_vec(&Value::Object(m.into_iter().collect())).unwrap());
    // Mostly strings (the type most fields have), so that the change is often decoded.
    let text = prop_oneof![
        any::<String>(),
        proptest::collection::vec(prop_oneof![Just('\u{0}'), Just('\u{1b}'), any::<char>()], 0..8)
            .prop_map(String::from_iter),
        proptest::sample::select(known.clone()),
    ];
    let value = prop_oneof![3 => text.prop_map(Value::from), 1 => json_value(known.clone())];
    let field = proptest::sample::select(fields.to_vec()).prop_map(str::to_owned);
    let mutate = proptest::collection::vec((field, value), 1..3).prop_map(BodyInput::Mutate);
    let body = prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(BodyInput::Raw),
        1 => json_value(known).prop_map(|v| BodyInput::Raw(serde_json::to_vec(&v).unwrap())),
        2 => near.prop_map(BodyInput::Raw),
        4 => mutate,
    ];
    let content_type = prop_oneof![
        8 => Just("application/json"),
        1 => Just("application/json; charset=utf-8"),
        1 => Just("text/plain"),
        1 => Just(""),
    ];
    (body, content_type)
}

/// A query string: known and unknown parameters with arbitrary values, percent-encoded, or raw
/// characters that are legal in a URI.
fn query_strategy(known: Vec<String>) -> impl Strategy<Value = String> {
    let key = prop_oneof![
        4 => proptest::sample::select(vec!["tlp", "owner", "q", "cursor", "limit"]).prop_map(str::to_owned),
        1 => "[a-z_]{1,8}",
    ];
    let value = prop_oneof![
        any::<String>(),
        "[ -~]{0,20}",
        any::<i64>().prop_map(|n| n.to_string()),
        proptest::sample::select(known),
    ];
    let encoded = proptest::collection::vec((key, value), 0..5).prop_map(|pairs| {
        pairs.into_iter().map(|(k, v)| format!("{}={}", percent(&k), percent(&v))).collect::<Vec<_>>().join("&")
    });
    prop_oneof![encoded, "[A-Za-z0-9%&=+._~!$'()*,;:@/?-]{0,40}"]
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A signed-in session for requests through the router: (cookie header, CSRF token).
async fn router_session(app: &axum::Router, username: &str) -> (String, String) {
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/api/v1/auth/login")
        .header("content-type", "application/json")
        .body(Body::from(json!({"username": username, "password": PASSWORD}).to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    (cookie, v["csrf_token"].as_str().unwrap().to_owned())
}

/// Sends a request through the router; `Err` unless the answer is below 500 and, when it is an
/// error, the JSON error object.
async fn through_router(
    app: &axum::Router,
    method: &str,
    uri: &str,
    session: Option<&(String, String)>,
    content_type: &str,
    body: Vec<u8>,
) -> Result<u16, String> {
    let mut req = axum::http::Request::builder().method(method).uri(uri);
    if let Some((cookie, csrf)) = session {
        req = req.header("cookie", cookie).header("x-csrf-token", csrf);
    }
    if !content_type.is_empty() {
        req = req.header("content-type", content_type);
    }
    let shown = String::from_utf8_lossy(&body).chars().take(200).collect::<String>();
    let resp = app.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let raw = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec();
    let a = Answer { status, content_type: ct, json: serde_json::from_slice(&raw).unwrap_or(Value::Null), raw };
    if status >= 500 {
        return Err(format!("{method} {uri} with {shown:?}: {status} {}", String::from_utf8_lossy(&a.raw)));
    }
    if status >= 400
        && let Some(p) = a.error_problem("")
    {
        return Err(format!("{method} {uri} with {shown:?}: {status}: {p}"));
    }
    Ok(status)
}

#[test]
fn decoders_hold_under_arbitrary_input() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cases: u32 = std::env::var("NIGEHBAN_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(128);
    for backend in rt.block_on(async { backends() }) {
        // Arbitrary sign-ins go as far as the account lookup instead of meeting the limit.
        let config = ServerConfig { login_attempts_per_minute: 10_000, ..ServerConfig::default() };
        let w = rt.block_on(async { world_on(TestServer::start_with(backend, config).await).await });
        let state: Arc<AppState> = w.server.state.clone();
        let app = nigehban_server::router(state);
        let lead = rt.block_on(router_session(&app, "bi-lead"));
        let manager = rt.block_on(router_session(&app, "bi-manager"));
        let mut known: Vec<String> = ["GREEN", "RED", "AMBER+STRICT", "tlp:clear", "org", "community", "public"]
            .into_iter()
            .chain(["incidents:read", "*:write", "events:share", "org_reporter", "cert_manager", "auditor"])
            .chain(["bi-lead", PASSWORD, "AAAAAAAAAAAAAAAAAAAAAA", "", "\u{0}"])
            .map(str::to_owned)
            .collect();
        known.extend([w.m, w.p, w.reporter].iter().map(Uuid::to_string));
        known.extend(w.objects.values().map(Uuid::to_string));
        let kinds = proptest::sample::select(KINDS.to_vec());
        let config = PropConfig { cases, failure_persistence: None, ..PropConfig::default() };

        // (name, method, path for a kind, session (manager's?), the decoder's field names, a
        // body it accepts)
        type Target = (
            &'static str,
            &'static str,
            fn(&World, &str) -> String,
            Option<bool>,
            &'static [&'static str],
            fn(&World) -> Value,
        );
        let targets: [Target; 6] = [
            (
                "login",
                "POST",
                |_, _| "/api/v1/auth/login".into(),
                None,
                &["username", "password"],
                |_| json!({"username": "bi-reporter", "password": "not the password"}),
            ),
            (
                "create object",
                "POST",
                |_, k| format!("/api/v1/{k}"),
                Some(false),
                &["title", "tlp", "body", "recipients", "assignees"],
                |_| json!({"title": "Proptest", "tlp": "AMBER", "body": {"k": 1}}),
            ),
            (
                "update object",
                "PATCH",
                |w, k| format!("/api/v1/{k}/{}", w.objects[k]),
                Some(false),
                &["title", "tlp", "body", "recipients", "assignees", "version"],
                |_| json!({"title": "Bad input target"}),
            ),
            (
                "share",
                "POST",
                |w, k| format!("/api/v1/{k}/{}/shares", w.objects[k]),
                Some(true),
                &["to", "org"],
                |w| json!({"to": "org", "org": w.m}),
            ),
            (
                "create user",
                "POST",
                |_, _| "/api/v1/users".into(),
                Some(false),
                &["org", "username", "display_name", "email", "role", "password"],
                |w| {
                    json!({"org": w.m, "username": format!("bi-p-{}", Uuid::now_v7().simple()), "display_name": "P",
                           "role": "org_reporter", "password": PASSWORD})
                },
            ),
            (
                "create token",
                "POST",
                |_, _| "/api/v1/tokens".into(),
                Some(false),
                &["name", "scopes", "expires_in_days"],
                |_| json!({"name": "proptest", "scopes": ["incidents:read"], "expires_in_days": 3}),
            ),
        ];
        for (name, method, path, session, fields, template) in targets {
            let mut runner = TestRunner::new(config.clone());
            let statuses = std::sync::Mutex::new(BTreeMap::<u16, u32>::new());
            let result = runner.run(&(kinds.clone(), body_strategy(fields, known.clone())), |(kind, (body, ct))| {
                let session = session.map(|manager_session| if manager_session { &manager } else { &lead });
                let body = body.bytes(&template(&w));
                let status = rt
                    .block_on(through_router(&app, method, &path(&w, kind), session, ct, body))
                    .map_err(TestCaseError::fail)?;
                *statuses.lock().unwrap().entry(status).or_default() += 1;
                Ok(())
            });
            if let Err(e) = result {
                panic!("{backend:?}: {name}: {e}");
            }
            eprintln!("decoders ({backend:?}): {name}: answers {:?}", statuses.into_inner().unwrap());
        }
        let mut runner = TestRunner::new(config.clone());
        let result = runner.run(&(kinds.clone(), query_strategy(known.clone())), |(kind, query)| {
            let uri = format!("/api/v1/{kind}?{query}");
            if uri.parse::<axum::http::Uri>().is_err() {
                return Ok(());
            }
            rt.block_on(through_router(&app, "GET", &uri, Some(&lead), "", Vec::new()))
                .map(|_| ())
                .map_err(TestCaseError::fail)
        });
        if let Err(e) = result {
            panic!("{backend:?}: list query: {e}");
        }
        rt.block_on(w.server.stop());
    }
}
