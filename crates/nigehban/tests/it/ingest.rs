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
