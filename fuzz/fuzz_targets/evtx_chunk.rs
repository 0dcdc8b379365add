//! The EVTX adapter on arbitrary chunk bytes: corrupt chunks and records must become
//! diagnostics, never panics. Inputs shorter than a chunk are padded with zeros; inputs that
//! start with the chunk magic exercise the record parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_event::Source;
use nigehban_event::read::evtx::{CHUNK_MAGIC, CHUNK_SIZE, RawChunk, parse_chunk};

fuzz_target!(|data: &[u8]| {
    let mut chunk = vec![0u8; CHUNK_SIZE];
    chunk[..CHUNK_MAGIC.len()].copy_from_slice(CHUNK_MAGIC);
    let n = data.len().min(CHUNK_SIZE);
    chunk[..n].copy_from_slice(&data[..n]);
    let source = Source::file("fuzz.evtx");
    let mut out = Vec::new();
    parse_chunk(RawChunk { data: chunk, offset: 4096 }, &source, &mut out);
});
