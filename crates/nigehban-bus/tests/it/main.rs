//! The bus's behaviour, one suite run against both implementations. The JetStream runs need
//! `NIGEHBAN_TEST_NATS` (e.g. `nats://127.0.0.1:4222`); without it they print a notice and
//! pass. Each run uses its own prefix (so its own stream) and deletes the stream afterwards.

mod harness;
mod suite;
