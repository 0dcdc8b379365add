#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_event::Source;
use nigehban_event::read::TextReader;
use nigehban_event::read::syslog::SyslogFormat;

fuzz_target!(|data: &[u8]| {
    for _ in TextReader::new(data, SyslogFormat::with_year(2026), Source::file("fuzz.log")) {}
});
