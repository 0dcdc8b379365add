//! The event bus's batch messages, as a detection node reads them from NATS JetStream: any
//! bytes must give a batch or an error, never a panic or an allocation the message does not
//! pay for. A message that reads is written again and must read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nigehban_server::fuzzing::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = decode(data) else { return };
    let again = encode(batch.key, batch.org, &batch.events);
    let Ok(back) = decode(&again) else { panic!("a batch that was read could not be read again once written") };
    assert_eq!((back.key, back.org, back.events.len()), (batch.key, batch.org, batch.events.len()));
    for (a, b) in batch.events.iter().zip(&back.events) {
        assert_eq!(
            (a.org, a.tlp, a.ts, &a.source, &a.dataset, &a.host, &a.record),
            (b.org, b.tlp, b.ts, &b.source, &b.dataset, &b.host, &b.record)
        );
    }
});
