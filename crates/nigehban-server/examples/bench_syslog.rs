//! The load of the syslog TCP benchmark (`bench/ingest-syslog.sh`): sends records over several
//! TCP connections to a syslog TCP listener, newline-framed (RFC 6587), and waits until the
//! server has closed each connection.
//!
//! ```text
//! bench_syslog ADDR EVENTS CONNECTIONS RECORDS_FILE
//! ```
//!
//! RECORDS_FILE holds one record per line (e.g. `bench_ndjson`'s NDJSON: EVTX records rendered
//! as JSON); its records are sent in turn, again from the first once all were sent, until EVENTS
//! records went out, spread over CONNECTIONS connections (record `i` on connection
//! `i % CONNECTIONS`). Each connection is written through a large buffer, shut down for writing
//! at its end, and then read until the server closes it: the listener reads a connection's end
//! only after every batch before it was stored, so when this program returns every record it
//! sent is stored. Prints the number of records sent.

use std::io::{BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_syslog: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, events, connections, file] = args.as_slice() else {
        return Err("usage: bench_syslog ADDR EVENTS CONNECTIONS RECORDS_FILE".into());
    };
    let addr: SocketAddr = addr.parse().map_err(|e| format!("ADDR {addr:?}: {e}"))?;
    let events: usize = events.parse().map_err(|e| format!("EVENTS {events:?}: {e}"))?;
    let connections: usize = connections.parse().map_err(|e| format!("CONNECTIONS {connections:?}: {e}"))?;
    let connections = connections.max(1);
    let text = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let records: Arc<Vec<Vec<u8>>> = Arc::new(
        text.split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty())
            .map(|l| {
                // One record is one line: a line break inside it would split it in two.
                let mut r: Vec<u8> = l.iter().map(|&b| if b == b'\r' { b' ' } else { b }).collect();
                r.push(b'\n');
                r
            })
            .collect(),
    );
    if records.is_empty() {
        return Err(format!("{file}: no records").into());
    }
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let records = records.clone();
            std::thread::spawn(move || send(addr, &records, c, connections, events))
        })
        .collect();
    let mut sent = 0;
    for t in threads {
        sent += t.join().map_err(|_| "a sender thread panicked")??;
    }
    println!("{sent}");
    Ok(())
}

/// Sends records `c`, `c + step`, `c + 2 * step`… below `events` on one connection; returns
/// how many once the server has closed it.
fn send(addr: SocketAddr, records: &[Vec<u8>], c: usize, step: usize, events: usize) -> Result<usize, Error> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let mut w = BufWriter::with_capacity(256 * 1024, stream);
    let mut sent = 0;
    for i in (c..events).step_by(step) {
        w.write_all(&records[i % records.len()])?;
        sent += 1;
    }
    let mut stream = w.into_inner().map_err(|e| e.into_error())?;
    stream.shutdown(Shutdown::Write)?;
    // The server sends nothing; it closes the connection once it has stored everything.
    let mut sink = [0u8; 64];
    while stream.read(&mut sink)? > 0 {}
    Ok(sent)
}
