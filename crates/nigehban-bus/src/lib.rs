//! The event bus between ingest and detection.
//!
//! Ingest publishes batches of events (opaque bytes: NDJSON or normalized records) on one
//! subject per organisation, `<prefix>.events.<org-id>`; detection reads them through durable
//! named consumers. Two implementations share one behaviour:
//!
//! - [`InProcessBus`]: a bounded queue inside the process (the embedded mode). A publish is
//!   acknowledged once the message is in the queue: durable only as long as the process lives.
//! - [`JetStreamBus`]: a NATS JetStream stream with file storage. A publish is acknowledged
//!   once the server's PubAck says the message is stored.
//!
//! Both keep a message until a consumer acknowledges it (work-queue retention): every message
//! goes to the one named consumer whose filter selects it, and is delivered again when it is
//! not acknowledged within the ack wait (at-least-once). Several workers fetching from the same
//! named consumer share its messages; two consumers whose filters overlap are refused.
//!
//! Nothing is dropped silently: when the bus holds its limit of messages or bytes, or as many
//! publishes as allowed await their acknowledgement, [`Bus::publish`] waits and
//! [`Bus::try_publish`] returns [`BusError::Full`].

mod error;
mod in_process;
mod jetstream;
mod subject;

use std::time::Duration;

use bytes::Bytes;

pub use error::BusError;
pub use in_process::{InProcessBus, InProcessConsumer};
pub use jetstream::{JetStreamBus, JetStreamConsumer};
pub use subject::{ConsumerName, Filter, MAX_TOKEN_LEN, OrgId, Subjects};

/// Limits and timings of a bus.
#[derive(Clone, Debug)]
pub struct BusConfig {
    /// Prefix of subjects and the stream name (`nigehban` in production; unique per test run).
    pub prefix: String,
    /// The most messages the bus holds unacknowledged (in process: the queue's capacity;
    /// JetStream: the stream's `max_msgs`).
    pub max_messages: usize,
    /// The most payload bytes the bus holds unacknowledged (JetStream: the stream's
    /// `max_bytes`, which also counts subjects and headers).
    pub max_bytes: u64,
    /// The largest payload of one message (JetStream also applies the server's `max_payload`).
    pub max_message_bytes: usize,
    /// JetStream: the most publishes awaiting their PubAck at once.
    pub max_in_flight: usize,
    /// JetStream: the age after which the server removes a message, acknowledged or not.
    /// The in-process bus keeps a message until it is acknowledged.
    pub max_age: Duration,
    /// How long a delivered message may stay unacknowledged before it is delivered again.
    pub ack_wait: Duration,
    /// JetStream: the timeout of API requests and PubAcks.
    pub request_timeout: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            prefix: "nigehban".to_owned(),
            max_messages: 100_000,
            max_bytes: 1 << 30,
            max_message_bytes: 1 << 20,
            max_in_flight: 256,
            max_age: Duration::from_secs(7 * 24 * 3600),
            ack_wait: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The acknowledgement of a publish: the message is durable (see the implementations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishAck {
    /// The message's sequence number in the stream (in process: in the queue), from 1.
    pub sequence: u64,
}

/// How full a bus is: what it holds unacknowledged and its limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    pub messages: u64,
    pub bytes: u64,
    pub max_messages: u64,
    pub max_bytes: u64,
}

impl Fill {
    /// The larger of the two fractions (messages, bytes) of their limits, 0.0 to 1.0.
    pub fn ratio(&self) -> f64 {
        let m = self.messages as f64 / self.max_messages.max(1) as f64;
        let b = self.bytes as f64 / self.max_bytes.max(1) as f64;
        m.max(b).min(1.0)
    }
}

/// One of the two implementations, chosen at run time.
#[derive(Clone, Debug)]
pub enum Bus {
    /// The bus inside this process.
    InProcess(InProcessBus),
    /// NATS JetStream.
    JetStream(JetStreamBus),
}

impl Bus {
    /// The subjects and stream names of this bus.
    pub fn subjects(&self) -> &Subjects {
        match self {
            Bus::InProcess(bus) => bus.subjects(),
            Bus::JetStream(bus) => bus.subjects(),
        }
    }

    /// How full the bus is.
    pub async fn fill(&self) -> Result<Fill, BusError> {
        match self {
            Bus::InProcess(bus) => Ok(bus.fill()),
            Bus::JetStream(bus) => bus.fill().await,
        }
    }

    /// The largest payload one message may carry.
    pub fn max_message_bytes(&self) -> usize {
        match self {
            Bus::InProcess(bus) => bus.max_message_bytes(),
            Bus::JetStream(bus) => bus.max_message_bytes(),
        }
    }

    /// Publishes one message for `org`, waiting while the bus is full; returns once the
    /// message is durable. The wait has no end of its own: a caller that must answer (an HTTP
    /// ingest, say) puts a timeout around it and pushes back on its own sender. Retrying after
    /// an error may store the message twice (at-least-once).
    pub async fn publish(&self, org: &OrgId, payload: Bytes) -> Result<PublishAck, BusError> {
        match self {
            Bus::InProcess(bus) => bus.publish(org, payload).await,
            Bus::JetStream(bus) => bus.publish(org, payload).await,
        }
    }

    /// Publishes one message for `org`, or returns [`BusError::Full`] at once when the bus
    /// is full.
    pub async fn try_publish(&self, org: &OrgId, payload: Bytes) -> Result<PublishAck, BusError> {
        match self {
            Bus::InProcess(bus) => bus.try_publish(org, payload),
            Bus::JetStream(bus) => bus.try_publish(org, payload).await,
        }
    }

    /// Opens the durable consumer `name` (created when missing) receiving what `filter`
    /// selects. Reopening a consumer continues where it was left: acknowledged messages are
    /// not delivered again, unacknowledged ones are after the ack wait.
    pub async fn consumer(&self, name: &ConsumerName, filter: Filter) -> Result<Consumer, BusError> {
        match self {
            Bus::InProcess(bus) => bus.consumer(name, filter).map(Consumer::InProcess),
            Bus::JetStream(bus) => bus.consumer(name, filter).await.map(Consumer::JetStream),
        }
    }
}

/// A durable named consumer of either implementation.
#[derive(Debug)]
pub enum Consumer {
    /// A named cursor of the in-process bus.
    InProcess(InProcessConsumer),
    /// A JetStream durable pull consumer.
    JetStream(JetStreamConsumer),
}

impl Consumer {
    /// Fetches up to `max` messages: returns as soon as at least one is available, or an empty
    /// list after `max_wait`.
    pub async fn fetch(&self, max: usize, max_wait: Duration) -> Result<Vec<Delivery>, BusError> {
        match self {
            Consumer::InProcess(consumer) => consumer.fetch(max, max_wait).await,
            Consumer::JetStream(consumer) => consumer.fetch(max, max_wait).await,
        }
    }
}

/// A delivered message. Acknowledge it once it has been processed; otherwise it is delivered
/// again after the ack wait.
#[derive(Debug)]
pub struct Delivery {
    org: OrgId,
    payload: Bytes,
    sequence: u64,
    attempt: u64,
    acker: Acker,
}

#[derive(Debug)]
enum Acker {
    InProcess(in_process::Acker),
    JetStream(Box<async_nats::jetstream::Message>),
}

impl Delivery {
    /// The organisation whose subject the message was published on.
    pub fn org(&self) -> &OrgId {
        &self.org
    }

    /// The payload as published.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The message's sequence number (as in its [`PublishAck`]).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// How many times the message has been delivered, this time included (1 the first time).
    pub fn attempt(&self) -> u64 {
        self.attempt
    }

    /// Acknowledges the message: once this returns `Ok`, it is not delivered again.
    pub async fn ack(&self) -> Result<(), BusError> {
        match &self.acker {
            Acker::InProcess(acker) => {
                acker.ack(self.sequence);
                Ok(())
            }
            Acker::JetStream(message) => {
                message.double_ack().await.map_err(|err| BusError::jetstream("acknowledging a message", err))
            }
        }
    }
}
