use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nigehban_intel::{IndicatorMeta, IndicatorSet, IndicatorType, Tlp};
use proptest::prelude::*;

fn meta() -> IndicatorMeta {
    IndicatorMeta::new(0, Tlp::Amber)
}

fn contains(net: u32, len: u8, ip: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
    net & mask == ip & mask
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The longest matching prefix, against a linear scan over every network.
    #[test]
    fn cidr_longest_prefix_matches_a_linear_scan(
        nets in proptest::collection::vec((any::<u32>(), 0u8..=32), 1..60),
        probes in proptest::collection::vec(any::<u32>(), 1..60),
        near in any::<bool>(),
    ) {
        let mut set = IndicatorSet::new();
        let mut stored: Vec<(u32, u8)> = Vec::new();
        for (net, len) in &nets {
            let mask = if *len == 0 { 0 } else { u32::MAX << (32 - u32::from(*len)) };
            let v = format!("{}/{len}", Ipv4Addr::from(net & mask));
            set.add(IndicatorType::Ip, &v, meta()).unwrap();
            stored.push((net & mask, *len));
        }
        let m = set.build();
        for (i, p) in probes.iter().enumerate() {
            // Half the probes land inside a stored network.
            let ip = if near { stored[i % stored.len()].0 | (p & 0xff) } else { *p };
            let expected = stored.iter().filter(|(n, l)| contains(*n, *l, ip)).map(|(_, l)| *l).max();
            let got = m.match_ip(IpAddr::V4(Ipv4Addr::from(ip)), 0);
            let got_len = got.as_ref().map(|h| h.indicator.split('/').nth(1).map_or(32, |l| l.parse().unwrap()));
            prop_assert_eq!(got_len, expected);
        }
    }

    /// Parent-domain matching against a naive suffix check.
    #[test]
    fn domains_match_themselves_and_their_subdomains(
        labels in proptest::collection::vec("[a-c]{1,2}", 1..5),
        extra in proptest::collection::vec("[a-c]{1,2}", 0..3),
    ) {
        let indicator = labels.join(".") + ".example";
        let mut set = IndicatorSet::new();
        set.add(IndicatorType::Domain, &indicator, meta()).unwrap();
        let m = set.build();
        let mut host = extra.join(".");
        if !host.is_empty() { host.push('.'); }
        host.push_str(&indicator);
        prop_assert!(m.match_domain(&host.to_uppercase(), 0).is_some());
        let naive = |h: &str| h == indicator || h.ends_with(&format!(".{indicator}"));
        let other = format!("x{host}");
        prop_assert_eq!(m.match_domain(&other, 0).is_some(), naive(&other));
    }
}

#[test]
fn ipv6_and_mapped_addresses() {
    let mut set = IndicatorSet::new();
    set.add(IndicatorType::Ip, "2001:db8::/32", meta()).unwrap();
    set.add(IndicatorType::Ip, "203.0.113.5", meta()).unwrap();
    let m = set.build();
    assert_eq!(m.match_ip("2001:db8:1::9".parse().unwrap(), 0).unwrap().indicator, "2001:db8::/32");
    assert!(m.match_ip("2001:db9::1".parse().unwrap(), 0).is_none());
    let mapped: Ipv6Addr = "::ffff:203.0.113.5".parse().unwrap();
    assert_eq!(m.match_ip(IpAddr::V6(mapped), 0).unwrap().indicator, "203.0.113.5");
}

#[test]
fn the_same_value_from_two_sources_keeps_both_windows() {
    let mut set = IndicatorSet::new();
    let a = set.add_source("feed-a");
    let b = set.add_source("feed-b");
    let mut m1 = IndicatorMeta::new(a, Tlp::Green);
    m1.valid_until = 100;
    let mut m2 = IndicatorMeta::new(b, Tlp::Amber);
    m2.valid_from = 200;
    assert!(!set.add(IndicatorType::Domain, "evil.example", m1).unwrap().1);
    assert!(set.add(IndicatorType::Domain, "EVIL.example.", m2).unwrap().1);
    let m = set.build();
    assert_eq!(m.match_domain("evil.example", 50).unwrap().meta.source, a);
    assert!(m.match_domain("evil.example", 150).is_none());
    assert_eq!(m.match_domain("evil.example", 250).unwrap().meta.source, b);
}

#[test]
fn a_longer_prefix_out_of_its_window_falls_back_to_a_shorter_one() {
    let mut set = IndicatorSet::new();
    let mut narrow = meta();
    narrow.valid_until = 10;
    set.add(IndicatorType::Ip, "10.1.0.0/16", narrow).unwrap();
    set.add(IndicatorType::Ip, "10.0.0.0/8", meta()).unwrap();
    let m = set.build();
    assert_eq!(m.match_ip("10.1.2.3".parse().unwrap(), 5).unwrap().indicator, "10.1.0.0/16");
    assert_eq!(m.match_ip("10.1.2.3".parse().unwrap(), 50).unwrap().indicator, "10.0.0.0/8");
}
