//! Plain indicator lists and MISP warninglists on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_intel::{IndicatorMeta, IndicatorSet, Tlp, Warninglists, load_plain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut w = Warninglists::new();
    let _ = w.add_json("fuzz-list.json", text);
    let mut set = IndicatorSet::new();
    let src = set.add_source("fuzz.txt");
    let _ = load_plain(&mut set, "fuzz.txt", text, IndicatorMeta::new(src, Tlp::Green), Some(&w));
    let m = set.build();
    for line in text.lines().take(64) {
        let _ = m.match_value(line, 0);
    }
});
