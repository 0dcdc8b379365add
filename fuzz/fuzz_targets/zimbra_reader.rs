#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_event::Source;
use nigehban_event::read::TextReader;
use nigehban_event::read::zimbra::{self, ZimbraFormat};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = zimbra::looks_like_zimbra(text.lines().next().unwrap_or(""));
    }
    for _ in TextReader::new(data, ZimbraFormat::default(), Source::file("zimbra.log")) {}
});
