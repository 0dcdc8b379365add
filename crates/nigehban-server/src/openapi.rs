//! The OpenAPI 3.1 document at `/api/v1/openapi.json`, built from the API's own types (their
//! schemas come from `utoipa::ToSchema`) and one table of operations, so it lists every route.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use nigehban_policy::Kind;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder, Paths, Ref, Required,
    ResponseBuilder, Type,
};

use crate::api::*;

struct Op {
    method: HttpMethod,
    path: String,
    tag: &'static str,
    summary: String,
    body: Option<&'static str>,
    ok: (&'static str, Option<&'static str>),
    path_id: bool,
    query: &'static [(&'static str, &'static str)],
    public: bool,
}

fn op(method: HttpMethod, path: impl Into<String>, tag: &'static str, summary: impl Into<String>) -> Op {
    let path = path.into();
    let path_id = path.contains("{id}");
    Op { method, path, tag, summary: summary.into(), body: None, ok: ("200", None), path_id, query: &[], public: false }
}

impl Op {
    fn body(mut self, schema: &'static str) -> Op {
        self.body = Some(schema);
        self
    }
    fn ok(mut self, status: &'static str, schema: Option<&'static str>) -> Op {
        self.ok = (status, schema);
        self
    }
    fn query(mut self, q: &'static [(&'static str, &'static str)]) -> Op {
        self.query = q;
        self
    }
    fn public(mut self) -> Op {
        self.public = true;
        self
    }
}

const LIST_QUERY: &[(&str, &str)] = &[
    ("tlp", "Only this TLP level (CLEAR, GREEN, AMBER, AMBER+STRICT, RED)"),
    ("owner", "Only objects of this organisation (id)"),
    ("q", "Words in the title (case-insensitive)"),
    ("cursor", "next_cursor of the previous page"),
    ("limit", "Page size, 1 to 500 (default 50)"),
];

fn operations() -> Vec<Op> {
    use HttpMethod::*;
    let mut ops = vec![
        op(Post, "/api/v1/auth/login", "auth", "Sign in (sets the session cookie)")
            .body("LoginRequest")
            .ok("200", Some("LoginResponse"))
            .public(),
        op(Post, "/api/v1/auth/logout", "auth", "Sign out").ok("204", None),
        op(Get, "/api/v1/me", "auth", "The caller: user or token, organisation, role").ok("200", Some("MeOut")),
        op(Get, "/api/v1/orgs", "constituency", "Organisations the caller may see").ok("200", Some("OrgList")),
        op(Post, "/api/v1/orgs", "constituency", "Add an organisation (platform administrator)")
            .body("CreateOrg")
            .ok("201", Some("OrgOut")),
        op(Get, "/api/v1/orgs/{id}", "constituency", "One organisation").ok("200", Some("OrgOut")),
        op(Patch, "/api/v1/orgs/{id}", "constituency", "Change an organisation's profile")
            .body("UpdateOrg")
            .ok("200", Some("OrgOut")),
        op(Get, "/api/v1/users", "accounts", "Accounts the caller manages")
            .query(&[("org", "Only this organisation (id)")])
            .ok("200", Some("UserList")),
        op(Post, "/api/v1/users", "accounts", "Create an account").body("CreateUser").ok("201", Some("UserOut")),
        op(Get, "/api/v1/users/{id}", "accounts", "One account").ok("200", Some("UserOut")),
        op(Patch, "/api/v1/users/{id}", "accounts", "Change an account (or one's own password)")
            .body("UpdateUser")
            .ok("200", Some("UserOut")),
        op(Get, "/api/v1/tokens", "accounts", "API tokens the caller manages").ok("200", Some("TokenList")),
        op(
            Post,
            "/api/v1/tokens",
            "accounts",
            "Issue an API token for the caller's organisation (the secret is shown once)",
        )
        .body("CreateToken")
        .ok("201", Some("TokenOut")),
        op(Delete, "/api/v1/tokens/{id}", "accounts", "Revoke an API token").ok("204", None),
        op(Get, "/api/v1/audit", "audit", "The audit log, newest first")
            .query(&[
                ("cursor", "next_cursor of the previous page"),
                ("action", "Only this action"),
                ("limit", "Page size, 1 to 500"),
            ])
            .ok("200", Some("AuditPage")),
        op(Get, "/api/v1/audit/verify", "audit", "Verify the audit log's hash chain (platform administrator)"),
        op(Get, "/api/v1/openapi.json", "meta", "This document").public(),
        op(
            Post,
            "/api/v1/ingest",
            "monitoring",
            "Send records (NDJSON, syslog, Zeek TSV, access logs, or a whole EVTX or .eml file; gzip accepted) for the \
             caller's organisation; answered once stored durably, 429 with Retry-After when the server is behind",
        )
        .query(&[
            ("source", "Where the records come from (a host, a file)"),
            ("format", "json, syslog, zeek, access, squid, zimbra, eml or evtx (recognised by content when absent)"),
            ("tlp", "The events' TLP, CLEAR to AMBER+STRICT (default AMBER+STRICT)"),
        ])
        .ok("200", Some("IngestOut")),
        op(Get, "/api/v1/events/search", "monitoring", "Search stored events the caller may see, newest first")
            .query(&[
                ("from", "At or after this time (RFC 3339)"),
                ("to", "Before this time (RFC 3339)"),
                ("org", "Only this organisation (id)"),
                ("dataset", "event.dataset, channel or format"),
                ("host", "Host name"),
                ("source", "Source name"),
                ("q", "Text anywhere in the event (case-insensitive)"),
                ("cursor", "next_cursor of the previous page"),
                ("limit", "Page size, 1 to 1000 (default 100)"),
            ])
            .ok("200", Some("EventPageOut")),
        op(Get, "/api/v1/events/log/{number}", "monitoring", "One stored event").ok("200", Some("EventOut")),
        op(Get, "/api/v1/alerts/{id}/evidence", "alerts", "An alert's evidence: the matching events"),
        op(Post, "/api/v1/alerts/{id}/status", "alerts", "Acknowledge, close or reopen an alert").body("AlertStatusIn"),
        op(
            Post,
            "/api/v1/retrohunts",
            "retrohunts",
            "Start a retro-hunt: Sigma rules and/or indicators over a stored window of events the caller may read, \
             raising alerts for past matches (400 naming a rule that does not compile)",
        )
        .body("CreateRetroHunt")
        .ok("202", Some("RetroHuntOut")),
        op(Get, "/api/v1/retrohunts", "retrohunts", "The retro-hunts of the caller's organisation, newest first")
            .query(&[("cursor", "next_cursor of the previous page"), ("limit", "Page size, 1 to 500 (default 50)")])
            .ok("200", Some("RetroHuntList")),
        op(Get, "/api/v1/retrohunts/{id}", "retrohunts", "One retro-hunt: status, progress, the alerts it found")
            .ok("200", Some("RetroHuntOut")),
        op(Post, "/api/v1/retrohunts/{id}/cancel", "retrohunts", "Cancel a queued or running retro-hunt")
            .ok("200", Some("RetroHuntOut")),
    ];
    for kind in Kind::ALL {
        let base = format!("/api/v1/{}", kind.plural());
        let k = kind.as_str();
        ops.push(
            op(Get, base.clone(), kind.plural(), format!("List or search {k}s the caller may see"))
                .query(LIST_QUERY)
                .ok("200", Some("ObjectPage")),
        );
        ops.push(
            op(Post, base.clone(), kind.plural(), format!("Create a {k} owned by the caller's organisation"))
                .body("CreateObject")
                .ok("201", Some("ObjectOut")),
        );
        ops.push(op(Get, format!("{base}/{{id}}"), kind.plural(), format!("Read a {k}")).ok("200", Some("ObjectOut")));
        ops.push(
            op(Patch, format!("{base}/{{id}}"), kind.plural(), format!("Amend or triage a {k}"))
                .body("UpdateObject")
                .ok("200", Some("ObjectOut")),
        );
        ops.push(op(
            Get,
            format!("{base}/{{id}}/export"),
            kind.plural(),
            format!("Export a {k} (JSON with its TLP marking)"),
        ));
        ops.push(
            op(
                Post,
                format!("{base}/{{id}}/shares"),
                kind.plural(),
                format!("Share a {k} beyond the owner's chain, as its TLP allows"),
            )
            .body("ShareRequest")
            .ok("201", Some("ObjectOut")),
        );
    }
    ops
}

fn json_content(schema: &str) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build()
}

/// The document.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    for o in operations() {
        let mut b = OperationBuilder::new().summary(Some(o.summary)).tag(o.tag);
        if o.path.contains("{number}") {
            b = b.parameter(
                ParameterBuilder::new()
                    .name("number")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer))),
            );
        }
        if o.path_id {
            b =
                b.parameter(
                    ParameterBuilder::new().name("id").parameter_in(ParameterIn::Path).required(Required::True).schema(
                        Some(ObjectBuilder::new().schema_type(Type::String).format(Some(
                            utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Uuid),
                        ))),
                    ),
                );
        }
        for (name, desc) in o.query {
            b = b.parameter(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(*desc))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        if let Some(body) = o.body {
            b = b.request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", json_content(body))
                    .required(Some(Required::True))
                    .build(),
            ));
        }
        let mut ok = ResponseBuilder::new().description("Success");
        if let Some(schema) = o.ok.1 {
            ok = ok.content("application/json", json_content(schema));
        }
        b = b.response(o.ok.0, ok.build());
        for (status, what) in [
            ("400", "Malformed request: the message names the field"),
            ("401", "Not signed in, or the API token is not valid"),
            ("403", "Visible, but the caller may not do this"),
            ("404", "Not found, or not visible to the caller"),
        ] {
            if o.public && status != "400" {
                continue;
            }
            b = b.response(
                status,
                ResponseBuilder::new().description(what).content("application/json", json_content("Error")).build(),
            );
        }
        if !o.public {
            b = b
                .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
                .security(SecurityRequirement::new("session", Vec::<String>::new()));
        }
        paths.add_path_operation(o.path, vec![o.method], b.build());
    }
    let error_schema = ObjectBuilder::new()
        .property(
            "error",
            ObjectBuilder::new()
                .property("code", ObjectBuilder::new().schema_type(Type::String))
                .property("message", ObjectBuilder::new().schema_type(Type::String))
                .required("code")
                .required("message"),
        )
        .required("error");
    let components = ComponentsBuilder::new()
        .schema("Error", error_schema)
        .schema_from::<LoginRequest>()
        .schema_from::<IngestOut>()
        .schema_from::<EventOut>()
        .schema_from::<EventPageOut>()
        .schema_from::<AlertStatusIn>()
        .schema_from::<CreateRetroHunt>()
        .schema_from::<RetroHuntOut>()
        .schema_from::<RetroHuntList>()
        .schema_from::<RetroHuntProgressOut>()
        .schema_from::<RetroHuntAlertOut>()
        .schema_from::<LoginResponse>()
        .schema_from::<UserOut>()
        .schema_from::<MeOut>()
        .schema_from::<OrgOut>()
        .schema_from::<OrgList>()
        .schema_from::<CreateOrg>()
        .schema_from::<UpdateOrg>()
        .schema_from::<UserList>()
        .schema_from::<CreateUser>()
        .schema_from::<UpdateUser>()
        .schema_from::<TokenOut>()
        .schema_from::<TokenList>()
        .schema_from::<CreateToken>()
        .schema_from::<AuditOut>()
        .schema_from::<AuditPage>()
        .schema_from::<ObjectOut>()
        .schema_from::<ObjectPage>()
        .schema_from::<CreateObject>()
        .schema_from::<UpdateObject>()
        .schema_from::<ShareRequest>()
        .security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)))
        .security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::SESSION_COOKIE))),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Nigehban API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The platform's REST API. Authenticate with a bearer API token, or with the session \
                     cookie from /api/v1/auth/login (then send X-CSRF-Token with changes). Objects you may \
                     not see answer 404.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

pub(crate) async fn openapi_json() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC.get_or_init(|| document().to_json().unwrap_or_else(|_| "{}".into()));
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}
