#![no_main]

//! The syslog parsers for known programs (Postfix, vCenter, ESXi, Proxmox VE, sshd/sudo …):
//! each input line becomes the message of a syslog line from one of those programs (chosen by
//! the line's first byte), so that fuzzing reaches them instead of the syslog header parser.

use libfuzzer_sys::fuzz_target;
use nigehban_event::Source;
use nigehban_event::read::TextReader;
use nigehban_event::read::syslog::SyslogFormat;

const APPS: [&str; 16] = [
    "postfix/smtpd", "postfix/qmgr", "postfix/smtp", "postfix/submission/smtpd", "vpxd", "Hostd", "Vpxa", "shell",
    "pvedaemon", "qm", "sshd", "sudo", "su", "useradd", "login", "passwd",
];

fuzz_target!(|data: &[u8]| {
    let mut input = Vec::with_capacity(data.len() * 2);
    for line in data.split(|b| *b == b'\n') {
        let Some((&selector, message)) = line.split_first() else { continue };
        let app = APPS[usize::from(selector) % APPS.len()];
        input.extend_from_slice(b"Mar  1 10:00:00 host ");
        input.extend_from_slice(app.as_bytes());
        input.extend_from_slice(b"[1]: ");
        input.extend_from_slice(message);
        input.push(b'\n');
        // The same message in an RFC 5424 line (vCenter and ESXi 8 send those).
        input.extend_from_slice(b"<14>1 2024-03-01T10:00:00Z host ");
        input.extend_from_slice(app.as_bytes());
        input.extend_from_slice(b" 1 - - ");
        input.extend_from_slice(message);
        input.push(b'\n');
    }
    for _ in TextReader::new(&input[..], SyslogFormat::with_year(2024), Source::file("fuzz.log")) {}
});
