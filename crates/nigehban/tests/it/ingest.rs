//! `nigehban ingest` against a small hand-written HTTP server that records each request and
//! answers from a script.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One request as the server saw it (body decompressed).
#[derive(Clone, Debug)]
struct Request {
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// (status, extra headers, body) for the n-th request.
type Script = Box<dyn Fn(usize, &Request) -> (u16, Vec<(&'static str, String)>, String) + Send + Sync>;

struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

/// Accepts everything: 200 with every line accepted.
fn accept_all() -> Script {
    Box::new(|_, r| {
        (200, vec![], format!("{{\"accepted\": {}, \"rejected\": 0, \"errors\": []}}", r.body.lines().count()))
    })
}

fn serve(script: Script) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            let target = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let mut headers = Vec::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((n, v)) = line.split_once(':') {
                    headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let len: usize =
                headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
            let mut raw = vec![0u8; len];
            reader.read_exact(&mut raw).expect("body");
            let gzip = headers.iter().any(|(n, v)| n == "content-encoding" && v == "gzip");
            let body = if gzip {
                let mut s = String::new();
                flate2::read::GzDecoder::new(&raw[..]).read_to_string(&mut s).expect("gzip body");
                s
            } else {
                String::from_utf8_lossy(&raw).into_owned()
            };
            let request = Request { target, headers, body };
            let index = {
                let mut all = seen.lock().expect("lock");
                all.push(request.clone());
                all.len() - 1
            };
            let (status, extra, body) = script(index, &request);
            let mut response = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (n, v) in extra {
                response.push_str(&format!("{n}: {v}\r\n"));
            }
            response.push_str("\r\n");
            response.push_str(&body);
            let _ = stream.write_all(response.as_bytes());
        }
    });
    Server { port, requests }
}

fn ingest(server: &Server, args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nigehban"))
        .arg("ingest")
        .args(["--server", &server.url()])
        .args(args)
        .env("NIGEHBAN_TOKEN", "secret-token")
        .current_dir(dir)
        .output()
        .expect("run nigehban")
}

/// A syslog file of `n` lines.
fn syslog_file(dir: &Path, name: &str, n: usize) -> String {
    let content: String =
        (1..=n).map(|i| format!("<13>Jan  1 00:00:{:02} host app[1]: line {i:03} padding padding\n", i % 60)).collect();
    std::fs::write(dir.join(name), &content).expect("write");
    content
}

#[test]
fn chunks_are_cut_at_lines_gzipped_and_errors_name_file_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let content = syslog_file(dir.path(), "a.log", 100);
    let server = serve(Box::new(|i, r| {
        let n = r.body.lines().count();
        if i == 1 {
            (
                200,
                vec![],
                format!(
                    "{{\"accepted\": {}, \"rejected\": 1, \"errors\": [{{\"line\": 2, \"message\": \"bad record\"}}]}}",
                    n - 1
                ),
            )
        } else {
            (200, vec![], format!("{{\"accepted\": {n}, \"rejected\": 0, \"errors\": []}}"))
        }
    }));
    let out = ingest(&server, &["--chunk-bytes", "1000", "--source", "fw-logs", "a.log"], dir.path());
    let requests = server.requests();
    assert!(requests.len() > 2, "{} requests", requests.len());
    for r in &requests {
        assert!(r.target.starts_with("/api/v1/ingest?source=fw-logs"), "{}", r.target);
        assert_eq!(r.header("authorization"), Some("Bearer secret-token"));
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(r.body.ends_with('\n') && r.body.len() <= 1000, "{:?}", r.body);
    }
    let joined: String = requests.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(joined, content, "every line once, in order");
    let stderr = text(&out.stderr);
    let line = requests[0].body.lines().count() + 2;
    assert!(stderr.contains(&format!("a.log: line {line}: bad record")), "{stderr}");
    assert!(stderr.contains("accepted: 99, rejected: 1"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "rejected lines make exit code 1");
}

#[test]
fn overload_is_retried_after_the_time_the_server_asks() {
    let dir = tempfile::tempdir().expect("temp dir");
    syslog_file(dir.path(), "a.log", 5);
    let accept = accept_all();
    let server = serve(Box::new(move |i, r| {
        if i == 0 { (429, vec![("Retry-After", "1".to_owned())], "{}".to_owned()) } else { accept(i, r) }
    }));
    let start = Instant::now();
    let out = ingest(&server, &["a.log"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(start.elapsed() >= Duration::from_secs(1));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, requests[1].body);
    assert!(text(&out.stderr).contains("accepted: 5, rejected: 0"), "{}", text(&out.stderr));
}

#[test]
fn a_refused_token_stops_the_run_and_a_rerun_resumes_from_the_state_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let content = syslog_file(dir.path(), "a.log", 100);
    let accept = accept_all();
    let first = serve(Box::new(move |i, r| if i < 2 { accept(i, r) } else { (401, vec![], "{}".to_owned()) }));
    let args = ["--chunk-bytes", "1000", "--state", "state.json", "a.log"];
    let out = ingest(&first, &args, dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    let sent = first.requests();
    assert_eq!(sent.len(), 3, "no retry after 401");

    let second = serve(accept_all());
    let out = ingest(&second, &args, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let resent = second.requests();
    assert_eq!(resent[0].body, sent[2].body, "the unacknowledged chunk is sent again");
    let joined: String = sent[..2].iter().chain(&resent).map(|r| r.body.as_str()).collect();
    assert_eq!(joined, content, "nothing acknowledged is sent twice, nothing is lost");

    let third = serve(accept_all());
    let out = ingest(&third, &args, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(third.requests().is_empty(), "a finished file is not sent again");
}

#[test]
fn zeek_chunks_repeat_the_header() {
    let dir = tempfile::tempdir().expect("temp dir");
    let header = "#separator \\x09\n#set_separator\t,\n#fields\tts\tuid\tid.orig_h\n#types\ttime\tstring\taddr\n";
    let data: String = (1..=60).map(|i| format!("{i}.0\tC{i:04}\t10.0.0.{i}\n")).collect();
    std::fs::write(dir.path().join("conn.log"), format!("{header}{data}")).expect("write");
    let server = serve(accept_all());
    let out = ingest(&server, &["--chunk-bytes", "400", "conn.log"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let requests = server.requests();
    assert!(requests.len() > 2);
    let mut lines = String::new();
    for r in &requests {
        let body = r.body.strip_prefix(header).unwrap_or_else(|| panic!("chunk without the header: {:?}", r.body));
        assert!(!body.starts_with('#'));
        lines.push_str(body);
    }
    assert_eq!(lines, data);
}

#[test]
fn standard_input_is_sent_as_source_stdin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = serve(accept_all());
    let mut child = Command::new(env!("CARGO_BIN_EXE_nigehban"))
        .args(["ingest", "--server", &server.url(), "--format", "syslog", "-"])
        .env("NIGEHBAN_TOKEN", "secret-token")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run nigehban");
    child.stdin.take().expect("stdin").write_all(b"<13>one\n<13>two").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].target, "/api/v1/ingest?source=stdin&format=syslog");
    assert_eq!(requests[0].body, "<13>one\n<13>two\n");
}

/// A small EVTX file of the shared corpus, or None (with a notice) outside CI.
fn corpus_evtx() -> Option<std::path::PathBuf> {
    let root = match std::env::var_os("NIGEHBAN_CORPUS") {
        Some(p) => std::path::PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
    };
    let file = root.join("evtx/EVTX-to-MITRE-Attack/TA0008-Lateral Movement/T1021.002-SMB Windows Admin Shares/ID4688-4648 Lateral movement with net use.evtx");
    if file.exists() {
        return Some(file);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the shared corpus EVTX file is missing at {} (set NIGEHBAN_CORPUS)", file.display());
    }
    eprintln!("notice: shared corpus not found at {}; test skipped", root.display());
    None
}

#[test]
fn evtx_records_are_sent_as_json_lines() {
    let Some(sample) = corpus_evtx() else { return };
    let expected = nigehban_event::read::evtx::read_all(
        std::fs::File::open(&sample).expect("open"),
        nigehban_event::Source::file("sample"),
    )
    .filter(|i| matches!(i, nigehban_event::Item::Event(_)))
    .count();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(&sample, dir.path().join("Security.evtx")).expect("copy");
    let server = serve(accept_all());
    let out = ingest(&server, &["--chunk-bytes", "4096", "--state", "state.json", "."], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let requests = server.requests();
    let mut lines = 0;
    for r in &requests {
        assert!(r.target.ends_with("&format=json"), "{}", r.target);
        for line in r.body.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("one JSON record per line");
            assert!(v.get("Event").is_some(), "{line}");
            lines += 1;
        }
    }
    assert_eq!(lines, expected);
    assert!(text(&out.stderr).contains(&format!("accepted: {expected}")), "{}", text(&out.stderr));
    // Done: a rerun sends nothing.
    let again = serve(accept_all());
    let out = ingest(&again, &["--state", "state.json", "."], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(again.requests().is_empty());
}

#[test]
fn too_large_chunks_are_split_and_bad_requests_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let content = syslog_file(dir.path(), "a.log", 10);
    let accept = accept_all();
    let server =
        serve(Box::new(
            move |i, r| {
                if r.body.lines().count() > 3 { (413, vec![], "{}".to_owned()) } else { accept(i, r) }
            },
        ));
    let out = ingest(&server, &["a.log"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let accepted: String =
        server.requests().iter().filter(|r| r.body.lines().count() <= 3).map(|r| r.body.as_str()).collect();
    assert_eq!(accepted, content, "every line once, in order");

    let server = serve(Box::new(|_, _| (400, vec![], "{\"error\": \"format: unknown\"}".to_owned())));
    let out = ingest(&server, &["a.log"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("a.log: lines 1–10 refused: 400"), "{stderr}");
    assert_eq!(server.requests().len(), 1, "a bad request is not retried");
}
