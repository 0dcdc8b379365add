//! The bus on NATS JetStream: one stream `<prefix>_events` with file storage and work-queue
//! retention over the subjects `<prefix>.events.>`, and durable pull consumers.
//!
//! A publish is acknowledged once the server's PubAck says the message is stored. The stream
//! refuses new messages when it holds `max_messages` or `max_bytes` (discard policy "new"), so
//! a full stream pushes back on publishers instead of losing old messages.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::stream::{
    Config as StreamConfig, ConsumerErrorKind, DiscardPolicy, RetentionPolicy, StorageType,
};
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::{Acker, BusConfig, BusError, ConsumerName, Delivery, Fill, Filter, OrgId, PublishAck, Subjects};

/// JetStream's error codes for a store that is at its limits (10077, "maximum messages/bytes
/// exceeded") and for consumers that would share a work-queue subject (10099, 10100).
const STORE_FAILED: u64 = 10077;
const WORK_QUEUE_CONFLICTS: [u64; 2] = [10099, 10100];

/// Waits between publishes retried on a full stream.
const FULL_RETRY_FIRST: Duration = Duration::from_millis(20);
const FULL_RETRY_MAX: Duration = Duration::from_secs(1);

/// The bus on NATS JetStream. Clones share one connection.
#[derive(Clone)]
pub struct JetStreamBus {
    inner: Arc<Inner>,
}

struct Inner {
    subjects: Subjects,
    config: BusConfig,
    stream: String,
    context: jetstream::Context,
    in_flight: Semaphore,
}

impl fmt::Debug for JetStreamBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamBus").field("stream", &self.inner.stream).finish_non_exhaustive()
    }
}

/// The server's JetStream error code and description inside a client error, if any.
fn server_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a jetstream::Error> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<jetstream::Error>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

impl JetStreamBus {
    /// Connects to the NATS server at `url` (e.g. `nats://127.0.0.1:4222`) and creates the
    /// events stream if missing (updating its limits to `config`'s otherwise). The URL is
    /// never logged: it may carry credentials.
    pub async fn connect(url: &str, config: BusConfig) -> Result<Self, BusError> {
        Subjects::new(&config.prefix)?;
        let client = async_nats::ConnectOptions::new()
            .name("nigehban")
            .connection_timeout(config.request_timeout)
            .connect(url)
            .await
            .map_err(|err| BusError::jetstream("connecting to the NATS server", err))?;
        Self::with_client(client, config).await
    }

    /// Uses an existing client; creates or updates the events stream like [`Self::connect`].
    pub async fn with_client(client: async_nats::Client, config: BusConfig) -> Result<Self, BusError> {
        let subjects = Subjects::new(&config.prefix)?;
        let max_in_flight = config.max_in_flight.max(1);
        let context = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .max_ack_inflight(max_in_flight)
            .backpressure_on_inflight(true)
            .build(client);
        let stream = subjects.stream_name();
        let stream_config = StreamConfig {
            name: stream.clone(),
            subjects: vec![subjects.filter(&Filter::All)],
            retention: RetentionPolicy::WorkQueue,
            discard: DiscardPolicy::New,
            storage: StorageType::File,
            max_messages: i64::try_from(config.max_messages).unwrap_or(i64::MAX),
            max_bytes: i64::try_from(config.max_bytes).unwrap_or(i64::MAX),
            max_age: config.max_age,
            max_message_size: i32::try_from(config.max_message_bytes).unwrap_or(i32::MAX),
            num_replicas: 1,
            ..StreamConfig::default()
        };
        context
            .create_or_update_stream(stream_config)
            .await
            .map_err(|err| BusError::jetstream("creating the events stream", err))?;
        tracing::info!(%stream, "JetStream events stream ready");
        Ok(JetStreamBus {
            inner: Arc::new(Inner { subjects, config, stream, context, in_flight: Semaphore::new(max_in_flight) }),
        })
    }

    /// The bus's subjects.
    pub fn subjects(&self) -> &Subjects {
        &self.inner.subjects
    }

    /// Deletes the events stream, its messages and its consumers (for tests and
    /// decommissioning).
    pub async fn delete_stream(&self) -> Result<(), BusError> {
        self.inner
            .context
            .delete_stream(&self.inner.stream)
            .await
            .map_err(|err| BusError::jetstream("deleting the events stream", err))?;
        tracing::info!(stream = %self.inner.stream, "JetStream events stream deleted");
        Ok(())
    }

    /// How full the events stream is (one request to the server).
    pub async fn fill(&self) -> Result<Fill, BusError> {
        let mut stream = self
            .inner
            .context
            .get_stream(&self.inner.stream)
            .await
            .map_err(|err| BusError::jetstream("reading the events stream", err))?;
        let info = stream.info().await.map_err(|err| BusError::jetstream("reading the events stream", err))?;
        Ok(Fill {
            messages: info.state.messages,
            bytes: info.state.bytes,
            max_messages: self.inner.config.max_messages as u64,
            max_bytes: self.inner.config.max_bytes,
        })
    }

    /// The largest payload a publish takes: the configured limit or the server's
    /// `max_payload`, whichever is smaller (headers and subject need a little room too).
    pub fn max_message_bytes(&self) -> usize {
        let server = self.inner.context.client().server_info().max_payload;
        let server = if server == 0 { usize::MAX } else { server.saturating_sub(1024) };
        self.inner.config.max_message_bytes.min(server)
    }

    fn check_size(&self, payload: &Bytes) -> Result<(), BusError> {
        let limit = self.inner.config.max_message_bytes;
        if payload.len() > limit {
            return Err(BusError::TooLarge { size: payload.len(), limit });
        }
        Ok(())
    }

    fn publish_error(&self, size: usize, err: PublishError) -> BusError {
        match err.kind() {
            PublishErrorKind::MaxPayloadExceeded => {
                BusError::TooLarge { size, limit: self.inner.context.client().server_info().max_payload }
            }
            _ => match server_error(&err) {
                Some(server) if server.error_code().0 == STORE_FAILED => {
                    BusError::Full("the JetStream stream is at its limit")
                }
                _ => BusError::jetstream("publishing", err),
            },
        }
    }

    /// Publishes once and waits for the PubAck.
    async fn publish_once(&self, subject: &str, payload: Bytes) -> Result<PublishAck, BusError> {
        let size = payload.len();
        let ack = self
            .inner
            .context
            .publish(subject.to_owned(), payload)
            .await
            .map_err(|err| self.publish_error(size, err))?
            .await
            .map_err(|err| self.publish_error(size, err))?;
        Ok(PublishAck { sequence: ack.sequence })
    }

    /// Publishes a message and returns once the server has stored it. Waits while
    /// `max_in_flight` publishes await their PubAck, and retries while the stream is full.
    pub async fn publish(&self, org: &OrgId, payload: Bytes) -> Result<PublishAck, BusError> {
        self.check_size(&payload)?;
        let subject = self.inner.subjects.events(org);
        let _permit = self.inner.in_flight.acquire().await.map_err(|_| BusError::Closed)?;
        let mut wait = FULL_RETRY_FIRST;
        loop {
            match self.publish_once(&subject, payload.clone()).await {
                Err(BusError::Full(_)) => {
                    tracing::debug!(%org, ?wait, "events stream full; publish waits");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(FULL_RETRY_MAX);
                }
                result => return result,
            }
        }
    }

    /// Publishes a message, or returns [`BusError::Full`] at once when `max_in_flight`
    /// publishes await their PubAck or the stream is full.
    pub async fn try_publish(&self, org: &OrgId, payload: Bytes) -> Result<PublishAck, BusError> {
        self.check_size(&payload)?;
        let _permit = self
            .inner
            .in_flight
            .try_acquire()
            .map_err(|_| BusError::Full("too many publishes await their acknowledgement"))?;
        self.publish_once(&self.inner.subjects.events(org), payload).await
    }

    /// Opens the durable pull consumer `name`, creating it when missing (explicit acks,
    /// `ack_wait` from the configuration). An existing consumer with another filter, or a
    /// filter overlapping another consumer's, is a [`BusError::ConsumerConflict`]. An existing
    /// consumer keeps the ack wait it was created with.
    pub async fn consumer(&self, name: &ConsumerName, filter: Filter) -> Result<JetStreamConsumer, BusError> {
        let filter_subject = self.inner.subjects.filter(&filter);
        let stream = self
            .inner
            .context
            .get_stream(&self.inner.stream)
            .await
            .map_err(|err| BusError::jetstream("opening the events stream", err))?;
        let config = PullConfig {
            durable_name: Some(name.to_string()),
            filter_subject: filter_subject.clone(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: self.inner.config.ack_wait,
            ..PullConfig::default()
        };
        let consumer: PullConsumer =
            stream.get_or_create_consumer(name.as_str(), config).await.map_err(|err| match err.kind() {
                ConsumerErrorKind::JetStream(server) if WORK_QUEUE_CONFLICTS.contains(&server.error_code().0) => {
                    BusError::ConsumerConflict { name: name.to_string(), reason: server.to_string() }
                }
                _ => BusError::jetstream("creating a consumer", err),
            })?;
        let existing = &consumer.cached_info().config.filter_subject;
        if *existing != filter_subject {
            return Err(BusError::ConsumerConflict {
                name: name.to_string(),
                reason: format!("exists with filter subject {existing:?}, not {filter_subject:?}"),
            });
        }
        tracing::debug!(consumer = %name, ?filter, "JetStream consumer ready");
        Ok(JetStreamConsumer {
            subjects: self.inner.subjects.clone(),
            name: name.clone(),
            consumer: Box::new(consumer),
        })
    }
}

/// A JetStream durable pull consumer.
pub struct JetStreamConsumer {
    subjects: Subjects,
    name: ConsumerName,
    /// Boxed: the client's consumer holds its whole configuration (about 1 KiB).
    consumer: Box<PullConsumer>,
}

impl fmt::Debug for JetStreamConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamConsumer").field("name", &self.name).finish_non_exhaustive()
    }
}

impl JetStreamConsumer {
    /// Fetches up to `max` messages: returns as soon as at least one is available, or an
    /// empty list after `max_wait` (a pull request with `no_wait` and `expires`).
    pub async fn fetch(&self, max: usize, max_wait: Duration) -> Result<Vec<Delivery>, BusError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut request = self.consumer.fetch().max_messages(max);
        if !max_wait.is_zero() {
            request = request.expires(max_wait);
        }
        let mut messages = request.messages().await.map_err(|err| BusError::jetstream("fetching messages", err))?;
        let mut batch = Vec::new();
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                Err(err) if batch.is_empty() => {
                    return Err(BusError::jetstream("fetching messages", err));
                }
                Err(err) => {
                    // The messages already received are returned; the rest come next time.
                    tracing::warn!(consumer = %self.name, error = %err, "fetch ended early");
                    break;
                }
            };
            let (sequence, attempt) = match message.info() {
                Ok(info) => (info.stream_sequence, u64::try_from(info.delivered).unwrap_or(0)),
                Err(err) => return Err(BusError::jetstream("reading a message's metadata", err)),
            };
            let org = match self.subjects.org_of(message.subject.as_str()) {
                Ok(org) => org,
                Err(err) => {
                    // Not written by this bus: it would block the consumer forever if left
                    // unacknowledged, so it is terminated (never delivered again) and logged.
                    tracing::warn!(consumer = %self.name, sequence, error = %err, "message refused");
                    message
                        .ack_with(AckKind::Term)
                        .await
                        .map_err(|err| BusError::jetstream("refusing a message", err))?;
                    continue;
                }
            };
            batch.push(Delivery {
                org,
                payload: message.payload.clone(),
                sequence,
                attempt,
                acker: Acker::JetStream(Box::new(message)),
            });
        }
        Ok(batch)
    }
}
