#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_event::Source;
use nigehban_event::read::{detect_format, eml};

fuzz_target!(|data: &[u8]| {
    let _ = detect_format(data);
    let _ = eml::parse_message(data, &Source::file("fuzz.eml"));
    for _ in eml::EmlReader::new(data, Source::file("fuzz.eml")) {}
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = eml::decode_words(s);
        let _ = eml::parse_date(s);
    }
});
