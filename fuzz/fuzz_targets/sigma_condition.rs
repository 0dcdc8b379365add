#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_sigma::condition;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let names: Vec<String> = ["selection", "filter_main", "filter_optional", "sel_1", "_hidden"].iter().map(|s| s.to_string()).collect();
    let _ = condition::parse(text, &names);
});
