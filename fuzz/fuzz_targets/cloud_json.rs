#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_event::Source;
use nigehban_event::read::json::JsonReader;

// The JSON reader with cloud audit records in mind: the seeds are CloudTrail, Azure Activity
// Log, Entra ID sign-in and Google Cloud audit records (single lines and `Records` / `records`
// / Graph `value` wrappers), so that mutations reach the normalizers behind `event_from_json`.
fuzz_target!(|data: &[u8]| {
    for _ in JsonReader::new(data, Source::file("fuzz.json")) {}
});
