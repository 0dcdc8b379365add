#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_event::Source;
use nigehban_event::read::TextReader;
use nigehban_event::read::zeek::ZeekTsvFormat;

fuzz_target!(|data: &[u8]| {
    for _ in TextReader::new(data, ZeekTsvFormat::default(), Source::file("fuzz.log")) {}
});
