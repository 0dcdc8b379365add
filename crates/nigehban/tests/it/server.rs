//! `nigehban demo` and `nigehban admin verify-audit` as a user runs them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::free_port;

/// A plain HTTP/1.1 request on loopback; returns (status, body).
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_demo(data: &Path, port: u16) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_nigehban"))
        .args(["demo", "--data"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let stderr = running.0.stderr.take().unwrap();
    // Keep draining standard error so the server never blocks on it.
    std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() && http(port, "GET", "/healthz", &[], "").0 == 200 {
            return running;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the demo server did not answer /healthz within 60 s");
}

#[test]
fn demo_starts_and_every_demo_login_and_token_works() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let port = free_port();
    let server = start_demo(&data, port);
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("demo-credentials.json")).unwrap()).unwrap();
    let users = creds["users"].as_array().unwrap();
    let roles: Vec<&str> = users.iter().map(|u| u["role"].as_str().unwrap()).collect();
    for role in [
        "national_analyst",
        "cert_analyst",
        "cert_manager",
        "org_security_lead",
        "org_reporter",
        "auditor",
        "platform_admin",
    ] {
        assert!(roles.contains(&role), "no demo user with role {role}");
    }
    for u in users {
        let login = serde_json::json!({"username": u["username"], "password": u["password"]}).to_string();
        let (status, body) = http(port, "POST", "/api/v1/auth/login", &[("Content-Type", "application/json")], &login);
        assert_eq!(status, 200, "{}: {body}", u["username"]);
        let bearer = format!("Bearer {}", u["api_token"].as_str().unwrap());
        let (status, body) = http(port, "GET", "/api/v1/me", &[("Authorization", &bearer)], "");
        assert_eq!(status, 200, "{body}");
        let me: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(me["role"], u["role"]);
        assert_eq!(me["org"]["id"], u["organisation_id"]);
    }
    // Each role sees its own share of the sample incidents.
    let token = |name: &str| {
        let u = users.iter().find(|u| u["username"] == name).unwrap();
        format!("Bearer {}", u["api_token"].as_str().unwrap())
    };
    let titles = |name: &str| -> Vec<String> {
        let (status, body) = http(port, "GET", "/api/v1/incidents", &[("Authorization", &token(name))], "");
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        page["items"].as_array().unwrap().iter().map(|i| i["title"].as_str().unwrap().to_owned()).collect()
    };
    let reporter = titles("mofa.reporter");
    assert!(reporter.iter().any(|t| t.contains("C2 infrastructure")), "{reporter:?}");
    assert!(!reporter.iter().any(|t| t.contains("Zimbra")), "{reporter:?}");
    assert!(titles("admin").is_empty(), "a platform administrator reads no incident content");
    assert!(titles("auditor").is_empty());
    let national = titles("national.analyst");
    assert!(national.iter().any(|t| t.contains("virtual servers")), "{national:?}");
    drop(server);

    // The audit log of everything the demo did verifies; an edited entry is caught.
    let verify = |data: &Path| {
        Command::new(env!("CARGO_BIN_EXE_nigehban"))
            .args(["admin", "verify-audit", "--data"])
            .arg(data)
            .output()
            .unwrap()
    };
    let out = verify(&data);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit log intact"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = nigehban_store::Store::open_sqlite(&data).await.unwrap();
        nigehban_store::testing::execute_unchecked(&store, "UPDATE audit_log SET ip = '10.9.9.9' WHERE seq = 7")
            .await
            .unwrap();
        store.close().await;
    });
    let out = verify(&data);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("entry 7"), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn the_demo_continues_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let port = free_port();
    let first = start_demo(&data, port);
    drop(first);
    let creds = std::fs::read(data.join("demo-credentials.json")).unwrap();
    let port = free_port();
    let _second = start_demo(&data, port);
    assert_eq!(std::fs::read(data.join("demo-credentials.json")).unwrap(), creds, "same users, same passwords");
    let c: serde_json::Value = serde_json::from_slice(&creds).unwrap();
    let u = &c["users"][1];
    let login = serde_json::json!({"username": u["username"], "password": u["password"]}).to_string();
    assert_eq!(http(port, "POST", "/api/v1/auth/login", &[("Content-Type", "application/json")], &login).0, 200);
}

#[test]
fn serve_first_start_config_file_and_tls() {
    if Command::new("openssl").arg("version").output().is_err()
        || Command::new("curl").arg("--version").output().is_err()
    {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "openssl and curl are needed under CI=true");
        eprintln!("notice: openssl or curl missing; TLS serve test skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let port = free_port();
    let config = dir.path().join("nigehban.yml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\ndata: {}\ntls_cert: {}\ntls_key: {}\nnational_cert_name: Test National CERT\n",
            dir.path().join("data").display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_nigehban"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("NIGEHBAN_ADMIN_PASSWORD", "correct horse battery staple")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Running(child);
    let stderr = server.0.stderr.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
    let curl = |args: &[&str]| {
        let out = Command::new("curl").args(["-sk", "--max-time", "10"]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let base = format!("https://127.0.0.1:{port}");
    let start = Instant::now();
    while curl(&[&format!("{base}/healthz")]) != "ok\n" {
        assert!(start.elapsed() < Duration::from_secs(60), "no answer over TLS");
        std::thread::sleep(Duration::from_millis(200));
    }
    let login = curl(&[
        "-i",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"username":"admin","password":"correct horse battery staple"}"#,
        &format!("{base}/api/v1/auth/login"),
    ]);
    assert!(login.starts_with("HTTP/2 200") || login.starts_with("HTTP/1.1 200"), "{login}");
    let cookie = login.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Secure"), "{cookie}");
    let session = cookie.split_once(':').unwrap().1.split(';').next().unwrap().trim().to_owned();
    let me = curl(&["-H", &format!("Cookie: {session}"), &format!("{base}/api/v1/me")]);
    assert!(me.contains("Test National CERT") && me.contains("platform_admin"), "{me}");
    // Plain HTTP to the TLS port is not served.
    assert_ne!(curl(&[&format!("http://127.0.0.1:{port}/healthz")]), "ok\n");
}
