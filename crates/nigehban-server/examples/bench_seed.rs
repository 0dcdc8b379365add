//! Seeds a store for the Platform API benchmark (`bench/api.sh`).
//!
//! ```text
//! bench_seed (--sqlite DIR | --postgres URL) [--objects N] [--token-file PATH] [--shipper-token-file PATH]
//! ```
//!
//! The constituency: nCERT; a provincial CERT "P" (the benchmark's viewer is a CERT analyst
//! there) with 16 organisations, some of them also under a sectoral CERT; two other provincial
//! CERTs with 6 organisations between them. Objects (default 100,000): 40% incidents, 25%
//! alerts, 15% events, 10% indicators, 5% sightings, 5% engagements; 80% owned inside P's
//! constituency, the rest elsewhere; TLP 10% CLEAR, 30% GREEN, 40% AMBER, 15% AMBER+STRICT, 5%
//! RED (naming another analyst, so hidden from the viewer); a tenth of the objects of other
//! constituencies shared with the community. The accounts and the analyst's API token
//! (`*:read`) go through the store's API; the objects are written in multi-row INSERTs (the
//! store's per-object path appends an audit entry per object, which a benchmark of reads does
//! not need). The token's secret is written to `--token-file` (default `bench-token.txt`).

use std::path::PathBuf;
use std::time::Instant;

use nigehban_policy::{Kind, OrgKind, Role, Tlp};
use nigehban_store::testing::{execute_unchecked, refresh_all_markings};
use nigehban_store::{Actor, NewOrg, NewToken, NewUser, OrgProfile, Store};
use uuid::Uuid;

struct Args {
    sqlite: Option<PathBuf>,
    postgres: Option<String>,
    objects: usize,
    token_file: PathBuf,
    shipper_token_file: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        sqlite: None,
        postgres: None,
        objects: 100_000,
        token_file: "bench-token.txt".into(),
        shipper_token_file: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--sqlite" => a.sqlite = Some(value().into()),
            "--postgres" => a.postgres = Some(value()),
            "--objects" => a.objects = value().parse().expect("--objects N"),
            "--token-file" => a.token_file = value().into(),
            "--shipper-token-file" => a.shipper_token_file = Some(value().into()),
            other => panic!(
                "unknown argument {other}; usage: bench_seed (--sqlite DIR | --postgres URL) [--objects N] [--token-file PATH] [--shipper-token-file PATH]"
            ),
        }
    }
    a
}

/// A small deterministic generator (xorshift), so that every run seeds the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// 0..100
    fn percent(&mut self) -> u64 {
        self.next() % 100
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

async fn org(store: &Store, kind: OrgKind, short: &str, parents: Vec<Uuid>) -> Uuid {
    let new = NewOrg {
        kind,
        name: format!("Bench {short}"),
        short_name: short.to_owned(),
        sector: None,
        province: None,
        parents,
        profile: OrgProfile::default(),
    };
    store.create_org(&Actor::system(), new).await.expect("create org").id
}

async fn user(store: &Store, org: Uuid, role: Role, username: &str) -> Uuid {
    let hash = nigehban_server::hash_password("bench-password-0123").expect("hash");
    let new = NewUser {
        org,
        username: username.into(),
        display_name: username.into(),
        email: None,
        role,
        password_hash: hash,
    };
    store.create_user(&Actor::system(), new).await.expect("create user").id
}

fn weighted<T: Copy>(rng: &mut Rng, table: &[(u64, T)]) -> T {
    let mut p = rng.percent();
    for (w, v) in table {
        if p < *w {
            return *v;
        }
        p -= w;
    }
    table[table.len() - 1].1
}

#[tokio::main]
async fn main() {
    let a = args();
    let store = match (&a.sqlite, &a.postgres) {
        (Some(dir), None) => Store::open_sqlite(dir).await.expect("open SQLite"),
        (None, Some(url)) => Store::open_postgres(url).await.expect("open PostgreSQL"),
        _ => panic!("give one of --sqlite DIR or --postgres URL"),
    };
    let sqlite = store.backend_name() == "sqlite";
    let start = Instant::now();

    let n = org(&store, OrgKind::National, "ncert", vec![]).await;
    let p = org(&store, OrgKind::ProvincialCert, "cert-p", vec![n]).await;
    let s = org(&store, OrgKind::SectoralCert, "cert-s", vec![n]).await;
    let p2 = org(&store, OrgKind::ProvincialCert, "cert-p2", vec![n]).await;
    let p3 = org(&store, OrgKind::ProvincialCert, "cert-p3", vec![n]).await;
    let mut inside = vec![p];
    for i in 0..16 {
        let parents = if i % 4 == 0 { vec![p, s] } else { vec![p] };
        inside.push(org(&store, OrgKind::Organisation, &format!("org-p-{i}"), parents).await);
    }
    // Organisations of other constituencies, with the CERT that may share their objects.
    let mut outside = vec![(p2, p2), (p3, p3)];
    for i in 0..6 {
        let parent = if i % 2 == 0 { p2 } else { p3 };
        outside.push((org(&store, OrgKind::Organisation, &format!("org-x-{i}"), vec![parent]).await, parent));
    }

    let analyst = user(&store, p, Role::CertAnalyst, "bench-analyst").await;
    let other = user(&store, p, Role::CertAnalyst, "bench-other-analyst").await;
    let secret = format!("ngb_{}", nigehban_server::new_secret());
    store
        .create_token(
            &Actor::system(),
            NewToken {
                org: p,
                created_by: Some(analyst),
                name: "bench".into(),
                role: Role::CertAnalyst,
                scopes: vec!["*:read".parse().unwrap()],
                token_hash: nigehban_server::auth::secret_hash(&secret),
                prefix: secret.chars().take(10).collect(),
                expires_at: None,
            },
        )
        .await
        .expect("create token");
    std::fs::write(&a.token_file, &secret).expect("write the token file");
    if let Some(path) = &a.shipper_token_file {
        // A log shipper of the first organisation of P: `events:write` only (bench/ingest.sh).
        let secret = format!("ngb_{}", nigehban_server::new_secret());
        store
            .create_token(
                &Actor::system(),
                NewToken {
                    org: inside[1],
                    created_by: None,
                    name: "bench shipper".into(),
                    role: Role::OrgSecurityLead,
                    scopes: vec!["events:write".parse().unwrap()],
                    token_hash: nigehban_server::auth::secret_hash(&secret),
                    prefix: secret.chars().take(10).collect(),
                    expires_at: None,
                },
            )
            .await
            .expect("create the shipper token");
        std::fs::write(path, &secret).expect("write the shipper token file");
    }

    let uuid = |id: Uuid| if sqlite { format!("X'{}'", id.simple()) } else { format!("'{id}'") };
    let kinds = [
        (40, Kind::Incident),
        (25, Kind::Alert),
        (15, Kind::Event),
        (10, Kind::Indicator),
        (5, Kind::Sighting),
        (5, Kind::Engagement),
    ];
    let tlps = [(10, Tlp::Clear), (30, Tlp::Green), (40, Tlp::Amber), (15, Tlp::AmberStrict), (5, Tlp::Red)];
    let words = ["phishing", "ransomware", "beacon", "credential", "scan", "defacement", "exfiltration", "ddos"];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let now = jiff::Timestamp::now().as_microsecond();
    let batch = 500;
    let mut done = 0;
    while done < a.objects {
        let count = batch.min(a.objects - done);
        let mut objects = Vec::with_capacity(count);
        let mut recipients = Vec::new();
        let mut shares = Vec::new();
        for i in 0..count {
            let id = Uuid::now_v7();
            let kind = weighted(&mut rng, &kinds);
            let tlp = weighted(&mut rng, &tlps);
            let in_p = rng.percent() < 80;
            let (owner, cert) = if in_p { (*rng.pick(&inside), p) } else { *rng.pick(&outside) };
            let title = format!("{} {} #{}", rng.pick(&words), kind.as_str(), done + i);
            let at = now - ((a.objects - done - i) as i64) * 1_000_000;
            objects.push(format!(
                "({}, '{}', {}, '{}', '{}', '{{\"summary\":\"seeded for the benchmark\",\"severity\":{}}}', {}, {at}, {at}, 1)",
                uuid(id),
                kind.as_str(),
                uuid(owner),
                tlp.as_str(),
                title,
                rng.next() % 5,
                uuid(other),
            ));
            if tlp == Tlp::Red {
                recipients.push(format!("({}, {})", uuid(id), uuid(other)));
            }
            if !in_p && matches!(tlp, Tlp::Clear | Tlp::Green) && rng.percent() < 10 {
                shares.push(format!("({}, {}, 'community', NULL, NULL, {at})", uuid(id), uuid(cert)));
            }
        }
        let sql = format!(
            "INSERT INTO objects (id, kind, owner_org, tlp, title, body, created_by, created_at, updated_at, version) VALUES {}",
            objects.join(", ")
        );
        execute_unchecked(&store, &sql).await.expect("insert objects");
        if !recipients.is_empty() {
            let sql = format!("INSERT INTO object_recipients (object_id, user_id) VALUES {}", recipients.join(", "));
            execute_unchecked(&store, &sql).await.expect("insert recipients");
        }
        if !shares.is_empty() {
            let sql = format!(
                "INSERT INTO object_shares (object_id, by_org, target, target_org, created_by, created_at) VALUES {}",
                shares.join(", ")
            );
            execute_unchecked(&store, &sql).await.expect("insert shares");
        }
        done += count;
    }
    refresh_all_markings(&store).await.expect("markings on the objects' rows");
    execute_unchecked(&store, "ANALYZE").await.expect("ANALYZE");
    store.close().await;
    eprintln!(
        "seeded {} objects ({}) in {:.1} s; token in {}",
        a.objects,
        if sqlite { "SQLite" } else { "PostgreSQL" },
        start.elapsed().as_secs_f64(),
        a.token_file.display()
    );
}
