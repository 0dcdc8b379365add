//! The bus's errors.

/// What can go wrong on the bus. Messages name the value or limit involved and never carry
/// payloads or connection credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// A name given to the bus (organisation id, consumer name, prefix) is not a safe token.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// Which kind of name: "organisation id", "consumer name", "prefix".
        what: &'static str,
        /// The value, cut to 80 characters.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// The bus holds as many unacknowledged messages or bytes as it may, or as many publishes
    /// await their acknowledgement as allowed (`try_publish` only: `publish` waits instead).
    #[error("the bus is full: {0}")]
    Full(&'static str),
    /// One message is larger than the bus accepts.
    #[error("a message of {size} bytes exceeds the bus's limit of {limit} bytes per message")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The largest payload accepted.
        limit: usize,
    },
    /// A consumer cannot be opened with this name and filter.
    #[error("consumer {name:?}: {reason}")]
    ConsumerConflict {
        /// The consumer's name.
        name: String,
        /// Why it conflicts.
        reason: String,
    },
    /// A message on the stream has a subject this bus did not write.
    #[error("unexpected subject {0:?} on the events stream")]
    UnexpectedSubject(String),
    /// The bus was shut down.
    #[error("the bus is closed")]
    Closed,
    /// The NATS server or the connection to it failed.
    #[error("NATS JetStream: {context}: {source}")]
    JetStream {
        /// What the bus was doing.
        context: &'static str,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BusError {
    pub(crate) fn jetstream(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        BusError::JetStream { context, source: source.into() }
    }
}
