//! The shared literal prefilter is an optimisation only: over every event of the shared EVTX
//! corpus and every SigmaHQ rule, matching with it gives exactly what matching without it does.

use std::fs::File;
use std::io::BufReader;

use nigehban_event::Item;
use nigehban_event::read::evtx::{ChunkReader, parse_chunk};
use nigehban_hunt::rules;

use crate::corpus::corpus;

#[test]
fn prefilter_never_changes_a_result() {
    let Some(corpus) = corpus() else { return };
    let loaded = rules::load(&[corpus.join("sigma/rules")]);
    let rules = loaded.rules;
    let mut events = 0;
    let mut matched = 0;
    for entry in walkdir::WalkDir::new(corpus.join("evtx")).sort_by_file_name() {
        let entry = entry.expect("walk");
        if entry.path().extension().is_none_or(|e| e != "evtx") {
            continue;
        }
        let source = nigehban_event::Source::file(entry.path().display().to_string());
        let Ok(reader) = ChunkReader::new(BufReader::new(File::open(entry.path()).expect("open")), source.clone())
        else {
            continue;
        };
        for chunk in reader.flatten() {
            let mut items = Vec::new();
            parse_chunk(chunk, &source, &mut items);
            for item in items {
                let Item::Event(event) = item else { continue };
                events += 1;
                let (mut a, mut b) = (Vec::new(), Vec::new());
                rules.matches(&event, &mut a);
                rules.matches_unfiltered(&event, &mut b);
                a.sort();
                b.sort();
                assert_eq!(a, b, "prefilter changed the result for {} {}", source.name, event.position);
                matched += a.len();
            }
        }
    }
    eprintln!("{events} events, {matched} matches, identical with and without the prefilter");
    assert!(events > 9000 && matched > 1000);
}
