//! Windows EVTX files, read chunk by chunk.
//!
//! An EVTX file is a 4 KiB header followed by 64 KiB chunks, each self-contained (its own
//! string and template tables). The caller reads the chunks (see [`ChunkReader`]) and hands
//! each one to [`parse_chunk`], possibly on another thread; a corrupt chunk or record becomes
//! a diagnostic naming the file and byte offset, and the rest of the file is still read.

use std::io::Read;
use std::sync::{Arc, OnceLock};

use evtx::{EvtxChunkData, ParserSettings};

use super::node::Node;
use super::{Diagnostic, Item, windows};
use crate::event::{Event, Position, Product, Source};

pub const FILE_MAGIC: &[u8] = b"ElfFile\0";
pub const CHUNK_MAGIC: &[u8] = b"ElfChnk\0";
pub const HEADER_SIZE: usize = 4096;
pub const CHUNK_SIZE: usize = 65536;

fn settings() -> Arc<ParserSettings> {
    static SETTINGS: OnceLock<Arc<ParserSettings>> = OnceLock::new();
    SETTINGS.get_or_init(|| Arc::new(ParserSettings::new().indent(false).separate_json_attributes(false))).clone()
}

/// One chunk's bytes and where it was in the file.
pub struct RawChunk {
    pub data: Vec<u8>,
    /// Byte offset of the chunk in the file.
    pub offset: u64,
}

impl RawChunk {
    /// A chunk that is all zeros: Windows leaves unused chunks that way.
    pub fn is_empty(&self) -> bool {
        self.data.iter().all(|b| *b == 0)
    }
}

/// Splits an EVTX stream into chunks. Checks the file header magic first.
pub struct ChunkReader<R> {
    reader: R,
    offset: u64,
    done: bool,
    source: Arc<Source>,
}

impl<R: Read> ChunkReader<R> {
    /// Reads and checks the file header. An error names what is wrong with it.
    pub fn new(mut reader: R, source: Arc<Source>) -> Result<Self, Diagnostic> {
        let mut header = vec![0u8; HEADER_SIZE];
        let n = read_full(&mut reader, &mut header).map_err(|e| diag(&source, Some(0), format!("read error: {e}")))?;
        if n < FILE_MAGIC.len() || &header[..FILE_MAGIC.len()] != FILE_MAGIC {
            return Err(diag(&source, Some(0), "not an EVTX file (bad file header magic)".into()));
        }
        if n < HEADER_SIZE {
            return Err(diag(&source, Some(0), format!("truncated EVTX header ({n} of {HEADER_SIZE} bytes)")));
        }
        Ok(ChunkReader { reader, offset: HEADER_SIZE as u64, done: false, source })
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
pub fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn diag(source: &Source, offset: Option<u64>, message: String) -> Diagnostic {
    Diagnostic { source: source.name.clone(), position: offset.map(Position::Offset), message }
}

impl<R: Read> Iterator for ChunkReader<R> {
    type Item = Result<RawChunk, Diagnostic>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut data = vec![0u8; CHUNK_SIZE];
        let offset = self.offset;
        match read_full(&mut self.reader, &mut data) {
            Ok(0) => {
                self.done = true;
                None
            }
            Ok(n) if n < CHUNK_SIZE => {
                self.done = true;
                if data[..n].iter().all(|b| *b == 0) {
                    return None;
                }
                Some(Err(diag(
                    &self.source,
                    Some(offset),
                    format!("truncated chunk ({n} of {CHUNK_SIZE} bytes) skipped"),
                )))
            }
            Ok(_) => {
                self.offset += CHUNK_SIZE as u64;
                Some(Ok(RawChunk { data, offset }))
            }
            Err(e) => {
                self.done = true;
                Some(Err(diag(&self.source, Some(offset), format!("read error: {e}"))))
            }
        }
    }
}

/// Parses one chunk into events. Empty chunks give nothing; a chunk with a bad header gives
/// one diagnostic; a record that fails to parse gives a diagnostic and the chunk's other
/// records are still read.
pub fn parse_chunk(chunk: RawChunk, source: &Arc<Source>, out: &mut Vec<Item>) {
    for_each_in_chunk(chunk, source, |item| out.push(item));
}

/// [`parse_chunk`], handing each event to `f` as soon as it is read: only one of the chunk's
/// events is in memory at a time.
pub fn for_each_in_chunk(chunk: RawChunk, source: &Arc<Source>, mut f: impl FnMut(Item)) {
    if chunk.is_empty() {
        return;
    }
    let offset = chunk.offset;
    if !chunk.data.starts_with(CHUNK_MAGIC) {
        f(Item::Diagnostic(diag(source, Some(offset), "bad chunk magic: chunk skipped".into())));
        return;
    }
    let mut data = match EvtxChunkData::new(chunk.data, false) {
        Ok(d) => d,
        Err(e) => {
            f(Item::Diagnostic(diag(source, Some(offset), format!("corrupt chunk header skipped: {e}"))));
            return;
        }
    };
    let mut parsed = match data.parse(settings()) {
        Ok(p) => p,
        Err(e) => {
            f(Item::Diagnostic(diag(source, Some(offset), format!("corrupt chunk skipped: {e}"))));
            return;
        }
    };
    for record in parsed.iter() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                f(Item::Diagnostic(diag(source, Some(offset), format!("corrupt record skipped: {e}"))));
                continue;
            }
        };
        let record_id = record.event_record_id;
        let position = Position::EvtxRecord { record_id, chunk_offset: offset };
        let json = match record.into_json() {
            Ok(r) => r.data,
            Err(e) => {
                f(Item::Diagnostic(Diagnostic {
                    source: source.name.clone(),
                    position: Some(position),
                    message: format!("record could not be rendered: {e}"),
                }));
                continue;
            }
        };
        let mut event = Event::new(source.clone(), position, Product::Windows, "evtx");
        match serde_json::from_str::<Node>(&json).map(|node| windows::from_evtx_node(&mut event, &node)) {
            Ok(_) => {
                event.raw = json.into_boxed_str();
                f(Item::Event(Box::new(event)));
            }
            Err(e) => f(Item::Diagnostic(Diagnostic {
                source: source.name.clone(),
                position: Some(position),
                message: format!("record rendered to invalid JSON: {e}"),
            })),
        }
    }
}

/// Reads a whole EVTX stream on the calling thread. For parallel reading use
/// [`ChunkReader`] and [`parse_chunk`] directly.
pub fn read_all<R: Read>(reader: R, source: Arc<Source>) -> impl Iterator<Item = Item> {
    let (chunks, first) = match ChunkReader::new(reader, source.clone()) {
        Ok(c) => (Some(c), None),
        Err(d) => (None, Some(Item::Diagnostic(d))),
    };
    let parsed = chunks.into_iter().flatten().flat_map(move |chunk| {
        let mut out = Vec::new();
        match chunk {
            Ok(c) => parse_chunk(c, &source, &mut out),
            Err(d) => out.push(Item::Diagnostic(d)),
        }
        out
    });
    first.into_iter().chain(parsed)
}
