//! The stored and bus encoding of events (`nigehban_event::codec`), as detection, search and
//! retro-hunts read it back: any bytes must give an event or an error, never a panic. An event
//! that decodes is encoded again (with its fields) and must decode to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_event::{Source, codec};

fuzz_target!(|data: &[u8]| {
    let source = Source::file("fuzz");
    let Ok(event) = codec::decode(data, source.clone()) else { return };
    let mut again = Vec::new();
    codec::encode(&event, &mut again);
    let Ok(back) = codec::decode(&again, source) else { panic!("a decoded event could not be read again once encoded") };
    assert_eq!((back.position, back.format, back.product, &back.raw), (event.position, event.format, event.product, &event.raw));
    assert_eq!(back.fields().len(), event.fields().len());
});
