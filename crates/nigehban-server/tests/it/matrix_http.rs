//! Every cell of `docs/visibility-matrix.tsv` through HTTP, on every back end.
//!
//! The fixture is the one `crates/nigehban-policy/tests/it/matrix.rs` describes: an owner M under
//! a provincial CERT P and a sectoral CERT S, a sibling M2 under P, an unrelated U under another
//! provincial CERT P2, nCERT N and an audit firm F. Each (role, relation) row of the matrix gets
//! its own user, signed in with a session cookie. M's security lead (no viewer) creates through
//! the API one object per kind × TLP × {plain, shared}, naming every `*_named` viewer (and one
//! other user of P) on it — F's named auditor on engagements only, the only kind the store lets
//! an assigned auditor outside the chain be named on — and assigning every `assigned*` auditor
//! to it; P's CERT manager (no
//! viewer either) then tries to share each "shared" copy with M2, with U, with the community and
//! publicly, and the shares the TLP refuses must answer 403 (404 for TLP:RED, which that manager
//! cannot see). Then every viewer lists, searches, reads, exports, amends and shares every object
//! of its cells, and each answer is compared with the matrix — and only the matrix.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use nigehban_policy::matrix::ExpectedMatrix;
use nigehban_policy::{Action, Kind, OrgKind, Role, Tlp};
use nigehban_server::ServerConfig;
use nigehban_store::{Actor, NewOrg, NewUser, OrgProfile, Store};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::common::{Backend, TestServer, backends, browser};

const PASSWORD: &str = "matrix-password-0123";
/// Requests in flight at once.
const PARALLEL: usize = 24;

fn matrix() -> ExpectedMatrix {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/visibility-matrix.tsv");
    ExpectedMatrix::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fixture's organisations.
#[derive(Debug, Clone, Copy)]
struct Orgs {
    n: Uuid,
    p: Uuid,
    p2: Uuid,
    m: Uuid,
    m2: Uuid,
    u: Uuid,
    f: Uuid,
}

impl Orgs {
    /// The viewer's organisation for a relation of the matrix (as the policy's matrix test).
    fn of(&self, role: Role, relation: &str) -> Uuid {
        match relation.trim_end_matches("_named").trim_end_matches("_shared") {
            "same" => self.m,
            "parent_cert" => self.p,
            "national" => self.n,
            "sibling" => self.m2,
            "unrelated" if role.is_cert_role() => self.p2,
            "unrelated" => self.u,
            "assigned" | "unassigned" => self.f,
            other => panic!("unknown relation {other}"),
        }
    }
}

async fn add_org(store: &Store, kind: OrgKind, short: &str, parents: Vec<Uuid>) -> Uuid {
    let new = NewOrg {
        kind,
        name: format!("Matrix {short}"),
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

/// A signed-in browser.
#[derive(Clone)]
struct Session {
    http: reqwest::Client,
    base: String,
    csrf: String,
}

impl Session {
    async fn login(base: &str, username: &str) -> Session {
        let http = browser();
        let r = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": username, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "sign-in of {username}");
        let v: Value = r.json().await.unwrap();
        let csrf = v["csrf_token"].as_str().unwrap().to_owned();
        Session { http, base: base.to_owned(), csrf }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if method != reqwest::Method::GET {
            req = req.header("X-CSRF-Token", &self.csrf);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
}

/// A (role, relation) row of the matrix and the user that plays it.
struct Viewer {
    role: Role,
    relation: String,
    session: Session,
}

impl Viewer {
    fn shared(&self) -> bool {
        self.relation.ends_with("_shared")
    }
}

/// An object of the fixture.
#[derive(Debug, Clone)]
struct Obj {
    id: Uuid,
    title: String,
    /// A word only its title contains.
    word: String,
}

fn tlp_word(t: Tlp) -> &'static str {
    match t {
        Tlp::Clear => "clear",
        Tlp::Green => "green",
        Tlp::Amber => "amber",
        Tlp::AmberStrict => "amberstrict",
        Tlp::Red => "red",
    }
}

/// (kind, TLP, shared copy?) → object.
type Objects = BTreeMap<(Kind, Tlp, bool), Obj>;

/// What P's CERT manager's shares of the "shared" copies must answer, by the rules of TLP 2.0
/// (docs/visibility.md): targets M2, U, the community, the public.
fn share_outcomes(tlp: Tlp) -> [u16; 4] {
    match tlp {
        Tlp::Clear => [201, 201, 201, 201],
        Tlp::Green => [201, 201, 201, 403],
        // AMBER: only inside P's constituency.
        Tlp::Amber => [201, 403, 403, 403],
        Tlp::AmberStrict => [403, 403, 403, 403],
        // P's manager is not named: the object does not exist for them.
        Tlp::Red => [404, 404, 404, 404],
    }
}

/// One checked cell.
struct Outcome {
    role: Role,
    relation: String,
    kind: Kind,
    tlp: Tlp,
    action: Action,
    expected: String,
    got: String,
}

impl Outcome {
    fn line(&self) -> String {
        format!(
            "{} / {} / {} / {} / {}: expected {}, got {}",
            self.role,
            self.relation,
            self.kind,
            self.tlp.as_str(),
            self.action.as_str(),
            self.expected,
            self.got
        )
    }
}

struct Fixture {
    server: TestServer,
    orgs: Orgs,
    viewers: Vec<Arc<Viewer>>,
    objects: Objects,
}

async fn build(backend: Backend, expected: &ExpectedMatrix) -> Fixture {
    // Every viewer signs in from 127.0.0.1: lift the per-address sign-in limit.
    let config = ServerConfig { login_attempts_per_minute: 10_000, ..ServerConfig::default() };
    let server = TestServer::start_with(backend, config).await;
    let store = server.store().clone();
    let n = add_org(&store, OrgKind::National, "mx-ncert", vec![]).await;
    let p = add_org(&store, OrgKind::ProvincialCert, "mx-p", vec![n]).await;
    let s = add_org(&store, OrgKind::SectoralCert, "mx-s", vec![n]).await;
    let p2 = add_org(&store, OrgKind::ProvincialCert, "mx-p2", vec![n]).await;
    let m = add_org(&store, OrgKind::Organisation, "mx-m", vec![p, s]).await;
    let m2 = add_org(&store, OrgKind::Organisation, "mx-m2", vec![p]).await;
    let u = add_org(&store, OrgKind::Organisation, "mx-u", vec![p2]).await;
    let f = add_org(&store, OrgKind::AuditFirm, "mx-f", vec![]).await;
    let orgs = Orgs { n, p, p2, m, m2, u, f };

    let hash = tokio::task::spawn_blocking(|| nigehban_server::hash_password(PASSWORD).unwrap()).await.unwrap();
    let author = "mx-author";
    add_user(&store, &hash, m, Role::OrgSecurityLead, author).await;
    let someone_else = add_user(&store, &hash, p, Role::CertAnalyst, "mx-someone-else").await;
    add_user(&store, &hash, p, Role::CertManager, "mx-p-manager").await;

    let rows = expected.rows();
    let mut named = vec![someone_else];
    // Auditors of the audit firm can be named on RED engagements they are assigned to, and on
    // nothing else (the store refuses them; auditors read no other kind anyway).
    let mut named_auditors = Vec::new();
    let mut assigned = Vec::new();
    let mut usernames = Vec::new();
    for (i, (role, relation)) in rows.iter().enumerate() {
        let username = format!("mx-{i}-{role}-{relation}");
        let org = orgs.of(*role, relation);
        let id = add_user(&store, &hash, org, *role, &username).await;
        if relation.contains("named") && org == f {
            named_auditors.push(id);
        } else if relation.contains("named") {
            named.push(id);
        }
        if relation.starts_with("assigned") {
            assigned.push(id);
        }
        usernames.push(username);
    }

    let base = server.base.clone();
    let mut logins = JoinSet::new();
    for (i, name) in usernames.into_iter().enumerate() {
        let base = base.clone();
        logins.spawn(async move { (i, Session::login(&base, &name).await) });
    }
    let mut sessions: Vec<Option<Session>> = vec![None; rows.len()];
    while let Some(r) = logins.join_next().await {
        let (i, s) = r.unwrap();
        sessions[i] = Some(s);
    }
    let viewers: Vec<Arc<Viewer>> = rows
        .into_iter()
        .zip(sessions)
        .map(|((role, relation), s)| Arc::new(Viewer { role, relation, session: s.unwrap() }))
        .collect();

    // The objects, created through the API by M's security lead.
    let creator = Session::login(&base, author).await;
    let firm_auditor = add_user(&store, &hash, f, Role::Auditor, "mx-firm-auditor").await;
    for (kind, assignees, what) in [
        ("engagements", json!([]), "on an engagement they are not assigned to"),
        ("incidents", json!([firm_auditor]), "on an incident"),
    ] {
        let (status, v) = creator
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/{kind}"),
                Some(json!({"title": "Matrix naming an outsider", "tlp": "RED", "recipients": [firm_auditor], "assignees": assignees})),
            )
            .await;
        assert_eq!(status, 422, "naming an auditor of an audit firm {what} ({backend:?}): {v}");
    }
    let mut objects = Objects::new();
    for kind in Kind::ALL {
        for tlp in Tlp::ALL {
            for shared in [false, true] {
                let word = format!("mx{}{}{}z", kind.as_str(), tlp_word(tlp), if shared { "shared" } else { "plain" });
                let title = format!("Matrix {word} object");
                let mut recipients = named.clone();
                if kind == Kind::Engagement {
                    recipients.extend(&named_auditors);
                }
                let (status, v) = creator
                    .call(
                        reqwest::Method::POST,
                        &format!("/api/v1/{}", kind.plural()),
                        Some(json!({
                            "title": title, "tlp": tlp.as_str(), "body": {"matrix": true},
                            "recipients": recipients, "assignees": assigned,
                        })),
                    )
                    .await;
                assert_eq!(status, 201, "creating {kind} {} ({backend:?}): {v}", tlp.as_str());
                let id: Uuid = v["id"].as_str().unwrap().parse().unwrap();
                objects.insert((kind, tlp, shared), Obj { id, title, word });
            }
        }
    }

    // P's CERT manager shares the "shared" copies as far as their TLP allows.
    let manager = Session::login(&base, "mx-p-manager").await;
    let targets = [
        json!({"to": "org", "org": m2}),
        json!({"to": "org", "org": u}),
        json!({"to": "community"}),
        json!({"to": "public"}),
    ];
    let mut share_failures = Vec::new();
    for ((kind, tlp, shared), o) in &objects {
        if !shared {
            continue;
        }
        for (target, want) in targets.iter().zip(share_outcomes(*tlp)) {
            let path = format!("/api/v1/{}/{}/shares", kind.plural(), o.id);
            let (got, v) = manager.call(reqwest::Method::POST, &path, Some(target.clone())).await;
            if got != want {
                share_failures.push(format!(
                    "P's manager sharing {kind} {} with {target}: expected {want}, got {got} {v}",
                    tlp.as_str()
                ));
            }
        }
    }
    assert!(share_failures.is_empty(), "{backend:?}: shares of the fixture:\n{}", share_failures.join("\n"));
    Fixture { server, orgs, viewers, objects }
}

fn status_text(allowed: bool, listed: bool, ok: u16) -> String {
    if allowed {
        ok.to_string()
    } else if listed {
        "403".into()
    } else {
        "404".into()
    }
}

/// Runs the futures at most [`PARALLEL`] at a time and gathers their outcomes.
async fn run_all(tasks: Vec<std::pin::Pin<Box<dyn Future<Output = Vec<Outcome>> + Send>>>) -> Vec<Outcome> {
    let permits = Arc::new(Semaphore::new(PARALLEL));
    let mut set = JoinSet::new();
    for t in tasks {
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            t.await
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.extend(r.unwrap());
    }
    out
}

async fn check(backend: Backend, expected: Arc<ExpectedMatrix>) -> (usize, Vec<String>) {
    let start = Instant::now();
    let fx = build(backend, &expected).await;
    let built = start.elapsed();
    let objects = Arc::new(fx.objects.clone());
    let owner = fx.orgs.m;
    type Task = std::pin::Pin<Box<dyn Future<Output = Vec<Outcome>> + Send>>;

    // Reads: list, search, read, export (no change to any object).
    let mut tasks: Vec<Task> = Vec::new();
    for v in &fx.viewers {
        for kind in Kind::ALL {
            let (lv, lobjects, lexpected) = (v.clone(), objects.clone(), expected.clone());
            // List: every page of the kind's list.
            tasks.push(Box::pin(async move {
                let (v, objects, expected) = (lv, lobjects, lexpected);
                let mut seen = HashSet::new();
                let mut cursor: Option<String> = None;
                let mut error = None;
                loop {
                    let mut path = format!("/api/v1/{}?limit=7", kind.plural());
                    if let Some(c) = &cursor {
                        path.push_str(&format!("&cursor={c}"));
                    }
                    let (status, page) = v.session.get(&path).await;
                    if status != 200 {
                        error = Some(format!("list answered {status}: {page}"));
                        break;
                    }
                    for item in page["items"].as_array().unwrap() {
                        seen.insert(item["id"].as_str().unwrap().parse::<Uuid>().unwrap());
                    }
                    match page["next_cursor"].as_str() {
                        Some(c) => cursor = Some(c.to_owned()),
                        None => break,
                    }
                }
                Tlp::ALL
                    .into_iter()
                    .map(|tlp| {
                        let o = &objects[&(kind, tlp, v.shared())];
                        let want = expected.allows(v.role, &v.relation, kind, tlp, Action::List).unwrap();
                        let listed = seen.contains(&o.id);
                        Outcome {
                            role: v.role,
                            relation: v.relation.clone(),
                            kind,
                            tlp,
                            action: Action::List,
                            expected: if want { "listed".into() } else { "absent".into() },
                            got: match &error {
                                Some(e) => e.clone(),
                                None if listed => "listed".into(),
                                None => "absent".into(),
                            },
                        }
                    })
                    .collect()
            }));
            for tlp in Tlp::ALL {
                let (v, objects, expected) = (v.clone(), objects.clone(), expected.clone());
                tasks.push(Box::pin(async move {
                    let o = &objects[&(kind, tlp, v.shared())];
                    let allows = |a| expected.allows(v.role, &v.relation, kind, tlp, a).unwrap();
                    let listed = allows(Action::List);
                    let outcome = |action, expected: String, got: String| Outcome {
                        role: v.role,
                        relation: v.relation.clone(),
                        kind,
                        tlp,
                        action,
                        expected,
                        got,
                    };
                    let mut out = Vec::new();
                    // Search: the object's own word finds it, and nothing else.
                    let (status, page) = v.session.get(&format!("/api/v1/{}?q={}", kind.plural(), o.word)).await;
                    let got = if status != 200 {
                        format!("search answered {status}: {page}")
                    } else {
                        let ids: Vec<&str> =
                            page["items"].as_array().unwrap().iter().filter_map(|i| i["id"].as_str()).collect();
                        match ids.as_slice() {
                            [] => "absent".into(),
                            [one] if *one == o.id.to_string() => "found".into(),
                            other => format!("unexpected results {other:?}"),
                        }
                    };
                    let want = if allows(Action::Search) { "found" } else { "absent" };
                    out.push(outcome(Action::Search, want.into(), got));
                    // Read.
                    let (status, body) = v.session.get(&format!("/api/v1/{}/{}", kind.plural(), o.id)).await;
                    let want = status_text(allows(Action::Read), listed, 200);
                    let mut got = status.to_string();
                    if status == 200 && body["title"] != o.title.as_str() {
                        got = format!("200 with another object: {body}");
                    }
                    out.push(outcome(Action::Read, want, got));
                    // Export.
                    let (status, _) = v.session.get(&format!("/api/v1/{}/{}/export", kind.plural(), o.id)).await;
                    out.push(outcome(
                        Action::Export,
                        status_text(allows(Action::Export), listed, 200),
                        status.to_string(),
                    ));
                    out
                }));
            }
        }
    }
    let mut outcomes = run_all(tasks).await;
    let reads = start.elapsed() - built;

    // Changes: amend (the same title again) and share (with the owner itself, a target every
    // shareable TLP allows and that changes no one's view). One object's changes run one after
    // another (concurrent changes of one object may conflict); objects in parallel.
    let mut tasks: Vec<Task> = Vec::new();
    for ((kind, tlp, shared), o) in fx.objects.iter() {
        let (kind, tlp, shared, o) = (*kind, *tlp, *shared, o.clone());
        let viewers: Vec<Arc<Viewer>> = fx.viewers.iter().filter(|v| v.shared() == shared).cloned().collect();
        let expected = expected.clone();
        tasks.push(Box::pin(async move {
            let mut out = Vec::new();
            for v in viewers {
                let allows = |a| expected.allows(v.role, &v.relation, kind, tlp, a).unwrap();
                let listed = allows(Action::List);
                let path = format!("/api/v1/{}/{}", kind.plural(), o.id);
                let (status, body) =
                    v.session.call(reqwest::Method::PATCH, &path, Some(json!({"title": o.title}))).await;
                let mut got = status.to_string();
                if !matches!(status, 200 | 403 | 404) {
                    got = format!("{status} {body}");
                }
                out.push(Outcome {
                    role: v.role,
                    relation: v.relation.clone(),
                    kind,
                    tlp,
                    action: Action::Write,
                    expected: status_text(allows(Action::Write), listed, 200),
                    got,
                });
                let (status, body) = v
                    .session
                    .call(reqwest::Method::POST, &format!("{path}/shares"), Some(json!({"to": "org", "org": owner})))
                    .await;
                let mut got = status.to_string();
                if !matches!(status, 201 | 403 | 404) {
                    got = format!("{status} {body}");
                }
                out.push(Outcome {
                    role: v.role,
                    relation: v.relation.clone(),
                    kind,
                    tlp,
                    action: Action::Share,
                    expected: status_text(allows(Action::Share), listed, 201),
                    got,
                });
            }
            out
        }));
    }
    outcomes.extend(run_all(tasks).await);
    let changes = start.elapsed() - built - reads;
    eprintln!(
        "matrix over HTTP ({backend:?}): {} cells, {} viewers, {} objects; fixture {:.1} s, reads {:.1} s, changes {:.1} s",
        outcomes.len(),
        fx.viewers.len(),
        fx.objects.len(),
        built.as_secs_f64(),
        reads.as_secs_f64(),
        changes.as_secs_f64()
    );
    let checked = outcomes.len();
    let mut failures: Vec<String> =
        outcomes.iter().filter(|o| o.expected != o.got).map(|o| format!("{backend:?}: {}", o.line())).collect();
    failures.sort();
    drop(fx.viewers);
    fx.server.stop().await;
    (checked, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_cell_of_the_matrix_holds_through_http() {
    let expected = Arc::new(matrix());
    let rows = expected.rows();
    assert!(rows.len() >= 30, "the matrix has {} rows", rows.len());
    let mut failures = Vec::new();
    for backend in backends() {
        let (checked, f) = check(backend, expected.clone()).await;
        // Every (row, kind, TLP, action) once.
        assert_eq!(checked, rows.len() * Kind::ALL.len() * Tlp::ALL.len() * Action::ALL.len());
        failures.extend(f);
    }
    assert!(failures.is_empty(), "{} cells differ from the matrix:\n{}", failures.len(), failures.join("\n"));
}
