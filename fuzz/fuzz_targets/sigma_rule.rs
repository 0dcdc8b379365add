//! Sigma rule YAML: parse, compile and evaluate against a fixed event; any input must give
//! rules or load-report entries, never a panic. Where a YAML fast path reads the text, it
//! must read it as serde-saphyr does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_event::{Event, Position, Product, Source, Value};
use nigehban_sigma::RuleSetBuilder;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for read in [nigehban_sigma::yaml::block_documents, nigehban_sigma::yaml::event_documents] {
        if let Some(docs) = read(text) {
            let docs: Vec<_> = docs.into_iter().filter(|d| !d.is_null()).collect();
            assert_eq!(Ok(docs), nigehban_sigma::yaml::parse_general(text), "a YAML fast path differs");
        }
    }
    let mut builder = RuleSetBuilder::new();
    builder.add_yaml("fuzz.yml", text);
    let rules = builder.build();
    let mut event = Event::new(Source::file("e"), Position::Line(1), Product::Windows, "fuzz");
    event.set("Channel", Value::str("Security"));
    event.set("EventID", Value::Int(4688));
    event.set("CommandLine", Value::str("cmd.exe /c whoami"));
    let mut out = Vec::new();
    rules.matches(&event, &mut out);
});
