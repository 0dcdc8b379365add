//! Lookups of arbitrary values (URLs, hosts, addresses, hashes) in a small fixed set.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nigehban_intel::{IndicatorMeta, IndicatorSet, Matcher, Tlp};

fn matcher() -> &'static Matcher {
    static M: OnceLock<Matcher> = OnceLock::new();
    M.get_or_init(|| {
        let mut set = IndicatorSet::new();
        for v in ["10.0.0.0/8", "2001:db8::/32", "evil.example", "https://x.example/a", "a@b.example", "d41d8cd98f00b204e9800998ecf8427e"] {
            let _ = set.add_value(v, IndicatorMeta::new(0, Tlp::Amber));
        }
        set.build()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = std::str::from_utf8(data) else { return };
    let m = matcher();
    let _ = m.match_value(v, 0);
    let _ = m.match_url(v, 0);
    let _ = m.match_domain(v, 0);
    let _ = m.match_email(v, 0);
    let _ = m.match_hash(v, 0);
});
