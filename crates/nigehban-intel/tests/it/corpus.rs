//! The loaders on the shared corpus: Maltrail's C2/APT lists, MISP's warninglists, OASIS's
//! STIX 2.1 examples. Skips with a notice when the corpus is absent; fails under CI=true.

use std::path::PathBuf;

use nigehban_intel::{IndicatorMeta, IndicatorSet, Tlp, Warninglists, load_plain, load_stix_bundle};

fn corpus() -> Option<PathBuf> {
    let dir = std::env::var("NIGEHBAN_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus")));
    if dir.join("ioc-maltrail-c2-apt").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the shared corpus is missing at {} (CI=true)",
        dir.display()
    );
    eprintln!("notice: shared corpus not found at {}; intel corpus tests skipped", dir.display());
    None
}

fn files(dir: PathBuf, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_misp_warninglist_loads() {
    let Some(c) = corpus() else { return };
    let mut w = Warninglists::new();
    for f in files(c.join("warninglist-misp"), "json") {
        let text = std::fs::read_to_string(&f).unwrap();
        w.add_json(&f.display().to_string(), &text).unwrap();
    }
    assert_eq!(w.lists().len(), 26);
    let entries: usize = w.lists().iter().map(|l| l.entries).sum();
    assert!(entries > 230_000, "{entries}");
}

#[test]
fn maltrail_lists_load_and_the_rest_is_explained() {
    let Some(c) = corpus() else { return };
    let mut set = IndicatorSet::new();
    let mut loaded = 0;
    let mut skipped = 0;
    let mut others = Vec::new();
    for f in files(c.join("ioc-maltrail-c2-apt"), "txt") {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.display().to_string();
        let src = set.add_source(&name);
        let r = load_plain(&mut set, &name, &text, IndicatorMeta::new(src, Tlp::Clear), None);
        loaded += r.loaded;
        skipped += r.skipped_total;
        for s in &r.skipped {
            if !s.reason.contains("path without a host") {
                others.push(format!("{}: {}", s.location, s.reason));
            }
        }
    }
    assert!(loaded > 540_000, "{loaded} loaded, {skipped} skipped");
    // Apart from bare URL paths, only a handful of malformed lines may be skipped.
    assert!(others.len() < 5, "{} other skips:\n{}", others.len(), others.join("\n"));
    let m = set.build();
    assert!(m.match_value("178.128.110.214", 0).is_some(), "an ip:port entry matches its address");
    assert!(m.match_value("http://141.108.2.157/", 0).is_some());
}

#[test]
fn oasis_stix_examples_load() {
    let Some(c) = corpus() else { return };
    let mut total = 0;
    for f in files(c.join("stix"), "json") {
        let name = f.display().to_string();
        if name.contains("misp-core") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let mut set = IndicatorSet::new();
        let r = load_stix_bundle(&mut set, &name, &text, Tlp::Amber, None);
        if name.contains("INVALID") || name.contains("interop-objectmarking-test") {
            assert!(r.is_err(), "{name} is not a bundle");
            continue;
        }
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        total += r.loaded;
        for s in &r.skipped {
            assert!(!s.reason.is_empty(), "{}", s.location);
        }
    }
    assert!(total >= 5, "{total} indicators from the OASIS examples");
}
