#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_event::Source;
use nigehban_event::read::TextReader;
use nigehban_event::read::squid::{self, SquidFormat};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = squid::looks_like_squid(text.lines().next().unwrap_or(""));
    }
    for _ in TextReader::new(data, SquidFormat, Source::file("access.log")) {}
});
