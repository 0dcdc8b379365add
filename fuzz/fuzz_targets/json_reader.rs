#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_event::Source;
use nigehban_event::read::json::JsonReader;

fuzz_target!(|data: &[u8]| {
    for _ in JsonReader::new(data, Source::file("fuzz.json")) {}
});
