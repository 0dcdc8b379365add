//! What travels on the bus between ingest and detection nodes: a batch of one organisation's
//! parsed events, with the key that makes a redelivered message stored once.
//!
//! Layout (little-endian): `NGB1`, the batch key (16 bytes), the organisation (16 bytes), the
//! number of events (u32), then per event: TLP (a length-prefixed name), the event time (a
//! flag byte, then i64 µs when present), source, dataset and host (length-prefixed; dataset and
//! host after a presence byte) and the encoded event (`nigehban_event::codec`), each length
//! a u32.

use nigehban_policy::Tlp;
use nigehban_store::NewEvent;
use uuid::Uuid;

const MAGIC: &[u8; 4] = b"NGB1";

/// Bytes a message needs besides its events.
const HEADER: usize = 4 + 16 + 16 + 4;

/// A batch read back from a message.
#[derive(Debug)]
pub struct Batch {
    pub key: Uuid,
    pub org: Uuid,
    pub events: Vec<NewEvent>,
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("not an event batch (the message does not start with NGB1)")]
    Magic,
    #[error("the message ends inside event {0}")]
    Truncated(usize),
    #[error("event {index}: {what}")]
    Invalid { index: usize, what: String },
}

/// The bytes `event` takes in a message.
pub(crate) fn encoded_len(event: &NewEvent) -> usize {
    let opt = |s: &Option<String>| 1 + s.as_ref().map_or(0, |s| 4 + s.len());
    4 + event.tlp.as_str().len()
        + 9
        + 4
        + event.source.len()
        + opt(&event.dataset)
        + opt(&event.host)
        + 4
        + event.record.len()
}

/// Cuts `events` (one organisation's) into runs whose messages fit in `max_bytes`. `Err` names
/// the first event that does not fit in a message on its own.
pub(crate) fn split(events: &[NewEvent], max_bytes: usize) -> Result<Vec<&[NewEvent]>, (usize, usize)> {
    let mut runs = Vec::new();
    let (mut start, mut size) = (0, HEADER);
    for (i, e) in events.iter().enumerate() {
        let len = encoded_len(e);
        if HEADER + len > max_bytes {
            return Err((i, len));
        }
        if size + len > max_bytes {
            runs.push(&events[start..i]);
            (start, size) = (i, HEADER);
        }
        size += len;
    }
    if start < events.len() {
        runs.push(&events[start..]);
    }
    Ok(runs)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Lengths fit: a message is far smaller than 4 GiB (`split` keeps it under the bus's limit).
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, s: &Option<String>) {
    match s {
        Some(s) => {
            out.push(1);
            put_bytes(out, s.as_bytes());
        }
        None => out.push(0),
    }
}

/// The message for a batch of `org`'s events.
pub fn encode(key: Uuid, org: Uuid, events: &[NewEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + events.iter().map(encoded_len).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(org.as_bytes());
    out.extend_from_slice(&u32::try_from(events.len()).unwrap_or(u32::MAX).to_le_bytes());
    for e in events {
        put_bytes(&mut out, e.tlp.as_str().as_bytes());
        match e.ts {
            Some(ts) => {
                out.push(1);
                out.extend_from_slice(&ts.to_le_bytes());
            }
            None => {
                out.push(0);
                out.extend_from_slice(&0i64.to_le_bytes());
            }
        }
        put_bytes(&mut out, e.source.as_bytes());
        put_opt(&mut out, &e.dataset);
        put_opt(&mut out, &e.host);
        put_bytes(&mut out, &e.record);
    }
    out
}

struct Reader<'a> {
    rest: &'a [u8],
    index: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        if self.rest.len() < n {
            return Err(BatchError::Truncated(self.index));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BatchError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn bytes(&mut self) -> Result<&'a [u8], BatchError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }

    fn text(&mut self, field: &str) -> Result<String, BatchError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec())
            .map_err(|_| BatchError::Invalid { index: self.index, what: format!("{field} is not UTF-8") })
    }

    fn opt_text(&mut self, field: &str) -> Result<Option<String>, BatchError> {
        match self.array::<1>()?[0] {
            0 => Ok(None),
            1 => self.text(field).map(Some),
            other => Err(BatchError::Invalid { index: self.index, what: format!("{field}: presence byte {other}") }),
        }
    }
}

/// Reads a message back.
pub fn decode(bytes: &[u8]) -> Result<Batch, BatchError> {
    let mut r = Reader { rest: bytes, index: 0 };
    if r.take(4).map_err(|_| BatchError::Magic)? != MAGIC {
        return Err(BatchError::Magic);
    }
    let key = Uuid::from_bytes(r.array()?);
    let org = Uuid::from_bytes(r.array()?);
    let count = u32::from_le_bytes(r.array()?) as usize;
    // The count comes from the message: do not trust it with an allocation.
    let mut events = Vec::with_capacity(count.min(bytes.len() / 16));
    for index in 0..count {
        r.index = index;
        let tlp: Tlp = r
            .text("tlp")?
            .parse()
            .map_err(|e: nigehban_policy::TlpError| BatchError::Invalid { index, what: format!("tlp: {e}") })?;
        let present = r.array::<1>()?[0];
        let ts = i64::from_le_bytes(r.array()?);
        let ts = match present {
            0 => None,
            1 => Some(ts),
            other => return Err(BatchError::Invalid { index, what: format!("time: presence byte {other}") }),
        };
        let source = r.text("source")?;
        let dataset = r.opt_text("dataset")?;
        let host = r.opt_text("host")?;
        let record = r.bytes()?.to_vec();
        events.push(NewEvent { org, tlp, ts, source, dataset, host, record });
    }
    if !r.rest.is_empty() {
        return Err(BatchError::Invalid { index: count, what: format!("{} bytes after the last event", r.rest.len()) });
    }
    Ok(Batch { key, org, events })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(org: Uuid, i: usize) -> NewEvent {
        NewEvent {
            org,
            tlp: if i.is_multiple_of(2) { Tlp::Green } else { Tlp::AmberStrict },
            ts: (!i.is_multiple_of(3)).then_some(i as i64 * 1_000_000),
            source: format!("source {i}"),
            dataset: i.is_multiple_of(4).then(|| "linux.auth".to_owned()),
            host: (!i.is_multiple_of(5)).then(|| format!("host{i}")),
            record: vec![i as u8; i * 7],
        }
    }

    #[test]
    fn a_batch_reads_back_as_written() {
        let org = Uuid::now_v7();
        let key = Uuid::now_v7();
        let events: Vec<NewEvent> = (0..40).map(|i| event(org, i)).collect();
        let bytes = encode(key, org, &events);
        assert_eq!(bytes.len(), HEADER + events.iter().map(encoded_len).sum::<usize>());
        let back = decode(&bytes).unwrap();
        assert_eq!((back.key, back.org, back.events.len()), (key, org, 40));
        for (a, b) in events.iter().zip(&back.events) {
            assert_eq!(
                (a.org, a.tlp, a.ts, &a.source, &a.dataset, &a.host, &a.record),
                (b.org, b.tlp, b.ts, &b.source, &b.dataset, &b.host, &b.record)
            );
        }
    }

    #[test]
    fn every_cut_of_a_message_is_an_error_not_a_panic() {
        let org = Uuid::now_v7();
        let events: Vec<NewEvent> = (0..6).map(|i| event(org, i)).collect();
        let bytes = encode(Uuid::now_v7(), org, &events);
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "a message cut at {n} bytes was read");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut flipped = bytes;
        flipped[0] = b'X';
        assert!(matches!(decode(&flipped), Err(BatchError::Magic)));
    }

    #[test]
    fn runs_fit_the_limit_and_keep_every_event_in_order() {
        let org = Uuid::now_v7();
        let events: Vec<NewEvent> = (0..200).map(|i| event(org, i)).collect();
        let limit = 4096;
        let runs = split(&events, limit).unwrap();
        assert!(runs.len() > 1);
        let mut n = 0;
        for run in &runs {
            assert!(!run.is_empty());
            assert!(encode(Uuid::nil(), org, run).len() <= limit);
            for e in *run {
                assert_eq!(e.source, format!("source {n}"));
                n += 1;
            }
        }
        assert_eq!(n, 200);
        let huge = vec![NewEvent { record: vec![0; 10_000], ..event(org, 1) }];
        assert_eq!(split(&huge, limit).unwrap_err().0, 0);
    }
}
