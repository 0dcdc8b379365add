#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_event::Source;
use nigehban_event::read::TextReader;
use nigehban_event::read::access::{self, AccessLogFormat};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = access::looks_like_access_log(text.lines().next().unwrap_or(""));
    }
    // The file name decides the flavour; try the three.
    for name in ["fuzz.log", "/var/log/pveproxy/access.log", "/opt/zimbra/log/nginx.access.log"] {
        for _ in TextReader::new(data, AccessLogFormat::default(), Source::file(name)) {}
    }
});
