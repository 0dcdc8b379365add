//! The STIX 2.1 bundle loader (streamed JSON, the pattern parser, timestamps, markings) on
//! arbitrary text: errors and skipped indicators, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_intel::{IndicatorSet, Tlp, load_stix_bundle};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut set = IndicatorSet::new();
    let _ = load_stix_bundle(&mut set, "fuzz.json", text, Tlp::Amber, None);
    // A pattern on its own, wrapped in a minimal bundle.
    let bundle = format!(
        "{{\"type\":\"bundle\",\"objects\":[{{\"type\":\"indicator\",\"id\":\"indicator--x\",\"pattern_type\":\"stix\",\"pattern\":{}}}]}}",
        serde_json_string(text)
    );
    let _ = load_stix_bundle(&mut set, "fuzz.json", &bundle, Tlp::Amber, None);
    let _ = set.build();
});

fn serde_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
