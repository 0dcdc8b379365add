use nigehban_intel::{IndicatorMeta, IndicatorSet, IndicatorType, Tlp, Warninglists, load_plain, load_stix_bundle};

fn t(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_microsecond()
}

fn testdata(name: &str) -> String {
    std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn warninglists() -> Warninglists {
    let mut w = Warninglists::new();
    w.add_json("warninglist-public-resolvers.json", &testdata("warninglist-public-resolvers.json")).unwrap();
    w.add_json("warninglist-hosts.json", &testdata("warninglist-hosts.json")).unwrap();
    w
}

#[test]
fn stix_bundle_loads_simple_patterns_and_reports_the_rest() {
    let mut set = IndicatorSet::new();
    let w = warninglists();
    let report =
        load_stix_bundle(&mut set, "c2-bundle.json", &testdata("c2-bundle.json"), Tlp::Amber, Some(&w)).unwrap();
    assert_eq!(report.loaded, 5, "{report:?}");
    assert_eq!(report.suppressed, vec![("Public DNS resolvers (test list)".to_string(), 1)]);
    let reasons: Vec<&str> = report.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(report.skipped_total, 3, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("FOLLOWEDBY")));
    assert!(reasons.iter().any(|r| r.contains("yara")));
    assert!(reasons.contains(&"revoked"));
    assert!(report.skipped.iter().all(|s| s.location.contains("c2-bundle.json indicator--")));
    let m = set.build();
    let nov = t("2026-11-20T10:00:00Z");
    let hit = m.match_ip("203.0.113.77".parse().unwrap(), nov).unwrap();
    assert_eq!(hit.meta.tlp, Tlp::Amber);
    assert!(hit.meta.stix_id.is_some());
    assert_eq!(m.source(hit.meta.source), "c2-bundle.json");
    // Outside its validity window it does not match.
    assert!(m.match_ip("203.0.113.77".parse().unwrap(), t("2027-03-01T00:00:00Z")).is_none());
    assert!(m.match_ip("203.0.113.77".parse().unwrap(), t("2026-10-15T00:00:00Z")).is_none());
    let hit = m.match_domain("beacon.update-check.example", nov).unwrap();
    assert_eq!((hit.indicator.as_str(), hit.meta.tlp), ("update-check.example", Tlp::Green));
    assert_eq!(m.match_ip("198.51.100.200".parse().unwrap(), nov).unwrap().indicator, "198.51.100.0/24");
    assert_eq!(m.match_ip("198.51.100.200".parse().unwrap(), nov).unwrap().meta.tlp, Tlp::Amber, "default TLP");
    assert!(m.match_hash("5E884898DA28047151D0E56F8DC6292773603D0D6AABBDD62A11EF721D1542D8", nov).is_some());
    assert!(m.match_ip("8.8.8.8".parse().unwrap(), nov).is_none(), "suppressed by the warninglist");
}

#[test]
fn not_a_bundle_is_an_error_naming_the_file() {
    let mut set = IndicatorSet::new();
    let e = load_stix_bundle(&mut set, "x.json", r#"{"type": "indicator"}"#, Tlp::Amber, None).unwrap_err();
    assert!(e.contains("x.json") && e.contains("bundle"), "{e}");
    let e = load_stix_bundle(&mut set, "y.json", r#"{"type": "bundle", "objects": [{"type": 5}]}"#, Tlp::Amber, None)
        .unwrap_err();
    assert!(e.contains("y.json") && e.contains("line 1"), "{e}");
}

#[test]
fn plain_lists_recognise_types_and_name_bad_lines() {
    let text = "# C2 list from a peer CERT\n203.0.113.0/24\nevil.example  # the operator's domain\n\
                domain:login-mofa.example\nhttps://evil.example/Gate.php\nphish@evil.example\n\
                d41d8cd98f00b204e9800998ecf8427e\nnot a value\nntp.example\n";
    let mut set = IndicatorSet::new();
    let src = set.add_source("peer.txt");
    let w = warninglists();
    let r = load_plain(&mut set, "peer.txt", text, IndicatorMeta::new(src, Tlp::Green), Some(&w));
    assert_eq!(r.loaded, 6);
    assert_eq!(r.skipped_total, 1);
    assert_eq!(r.skipped[0].location, "peer.txt:8");
    assert_eq!(r.suppressed_total(), 1, "ntp.example is on the hostname list");
    let m = set.build();
    let at = 0;
    assert_eq!(m.match_value("https://EVIL.example:443/Gate.php#x", at).unwrap().kind, IndicatorType::Url);
    assert_eq!(m.match_value("https://evil.example/other", at).unwrap().kind, IndicatorType::Domain);
    assert_eq!(m.match_value("PHISH@evil.example", at).unwrap().kind, IndicatorType::Email);
    assert_eq!(m.match_value("203.0.113.9", at).unwrap().indicator, "203.0.113.0/24");
    assert!(m.match_value("login-mofa.example", at).is_some());
    assert!(m.match_value("mofa.example", at).is_none());
}

#[test]
fn unsupported_warninglists_are_refused_by_name() {
    let mut w = Warninglists::new();
    let e = w.add_json("re.json", r#"{"name": "Regexes", "type": "regex", "list": ["^a"]}"#).unwrap_err();
    assert!(e.to_string().contains("re.json") && e.to_string().contains("regex"));
}
