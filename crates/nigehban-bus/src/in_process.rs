//! The bus inside one process: a bounded queue with named cursors.
//!
//! A publish is acknowledged once the message is in the queue. That is durable only as long
//! as the process lives: surviving a crash in the embedded mode is the store's job.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{
    Acker as DeliveryAcker, BusConfig, BusError, ConsumerName, Delivery, Fill, Filter, OrgId, PublishAck, Subjects,
};

/// The in-process bus. Clones share one queue.
#[derive(Clone)]
pub struct InProcessBus {
    shared: Arc<Shared>,
}

struct Shared {
    subjects: Subjects,
    config: BusConfig,
    state: Mutex<State>,
    /// Woken when an acknowledgement frees room in the queue.
    space: Notify,
    /// Woken when a message is published.
    arrivals: Notify,
}

#[derive(Default)]
struct State {
    next_sequence: u64,
    bytes: u64,
    messages: BTreeMap<u64, Stored>,
    consumers: HashMap<ConsumerName, Filter>,
}

struct Stored {
    org: OrgId,
    payload: Bytes,
    deliveries: u64,
    /// Set while the message is delivered and not yet acknowledged.
    redeliver_at: Option<Instant>,
}

impl fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessBus").field("prefix", &self.shared.subjects.prefix()).finish_non_exhaustive()
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; should one, the queue is still
        // consistent (every change is a single insert or remove).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts the message in the queue when there is room.
    fn insert(&self, org: &OrgId, payload: &Bytes) -> Option<u64> {
        let mut state = self.state();
        let size = payload.len() as u64;
        if state.messages.len() >= self.config.max_messages || state.bytes.saturating_add(size) > self.config.max_bytes
        {
            return None;
        }
        state.next_sequence += 1;
        let sequence = state.next_sequence;
        state.bytes += size;
        state
            .messages
            .insert(sequence, Stored { org: org.clone(), payload: payload.clone(), deliveries: 0, redeliver_at: None });
        drop(state);
        self.arrivals.notify_waiters();
        Some(sequence)
    }

    fn ack(&self, sequence: u64) {
        let mut state = self.state();
        if let Some(stored) = state.messages.remove(&sequence) {
            state.bytes -= stored.payload.len() as u64;
            drop(state);
            self.space.notify_waiters();
        }
    }
}

impl InProcessBus {
    /// A new, empty bus.
    pub fn new(config: BusConfig) -> Result<Self, BusError> {
        let subjects = Subjects::new(&config.prefix)?;
        Ok(InProcessBus {
            shared: Arc::new(Shared {
                subjects,
                config,
                state: Mutex::new(State::default()),
                space: Notify::new(),
                arrivals: Notify::new(),
            }),
        })
    }

    /// The bus's subjects.
    pub fn subjects(&self) -> &Subjects {
        &self.shared.subjects
    }

    /// How many messages the queue holds (delivered or not, until acknowledged).
    pub fn len(&self) -> usize {
        self.shared.state().messages.len()
    }

    /// How full the queue is.
    pub fn fill(&self) -> Fill {
        let state = self.shared.state();
        Fill {
            messages: state.messages.len() as u64,
            bytes: state.bytes,
            max_messages: self.shared.config.max_messages as u64,
            max_bytes: self.shared.config.max_bytes,
        }
    }

    /// The largest payload a publish takes.
    pub fn max_message_bytes(&self) -> usize {
        let config = &self.shared.config;
        config.max_message_bytes.min(usize::try_from(config.max_bytes).unwrap_or(usize::MAX))
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_size(&self, payload: &Bytes) -> Result<(), BusError> {
        let config = &self.shared.config;
        let limit = config.max_message_bytes.min(usize::try_from(config.max_bytes).unwrap_or(usize::MAX));
        if payload.len() > limit {
            return Err(BusError::TooLarge { size: payload.len(), limit });
        }
        Ok(())
    }

    /// Puts a message in the queue, waiting for room while the queue is full. Acknowledged
    /// once queued: durable only as long as the process lives.
    pub async fn publish(&self, org: &OrgId, payload: Bytes) -> Result<PublishAck, BusError> {
        self.check_size(&payload)?;
        loop {
            let space = self.shared.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            if let Some(sequence) = self.shared.insert(org, &payload) {
                return Ok(PublishAck { sequence });
            }
            space.await;
        }
    }

    /// Puts a message in the queue, or returns [`BusError::Full`] when it is full.
    pub fn try_publish(&self, org: &OrgId, payload: Bytes) -> Result<PublishAck, BusError> {
        self.check_size(&payload)?;
        match self.shared.insert(org, &payload) {
            Some(sequence) => Ok(PublishAck { sequence }),
            None => Err(BusError::Full("the in-process queue is at its limit")),
        }
    }

    /// Opens the named cursor `name`. The same name with the same filter shares the cursor
    /// (its messages are spread over the fetchers); a different filter for that name, or a
    /// filter overlapping another consumer's, is a [`BusError::ConsumerConflict`].
    pub fn consumer(&self, name: &ConsumerName, filter: Filter) -> Result<InProcessConsumer, BusError> {
        let mut state = self.shared.state();
        if let Some(existing) = state.consumers.get(name) {
            if *existing != filter {
                return Err(BusError::ConsumerConflict {
                    name: name.to_string(),
                    reason: format!("exists with filter {existing:?}, not {filter:?}"),
                });
            }
        } else {
            if let Some((other, _)) = state.consumers.iter().find(|(_, other)| other.overlaps(&filter)) {
                return Err(BusError::ConsumerConflict {
                    name: name.to_string(),
                    reason: format!("its filter overlaps consumer {other:?}'s"),
                });
            }
            state.consumers.insert(name.clone(), filter.clone());
            tracing::debug!(consumer = %name, ?filter, "in-process consumer created");
        }
        Ok(InProcessConsumer { shared: self.shared.clone(), name: name.clone(), filter })
    }
}

/// A named cursor on the in-process bus.
pub struct InProcessConsumer {
    shared: Arc<Shared>,
    name: ConsumerName,
    filter: Filter,
}

impl fmt::Debug for InProcessConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessConsumer")
            .field("name", &self.name)
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl InProcessConsumer {
    /// Takes up to `max` deliverable messages (new ones, and delivered ones whose ack wait
    /// has passed); also returns when the next delivered message becomes due again.
    fn take(&self, max: usize, now: Instant) -> (Vec<Delivery>, Option<Instant>) {
        let ack_wait = self.shared.config.ack_wait;
        let mut state = self.shared.state();
        let mut batch = Vec::new();
        let mut next_due: Option<Instant> = None;
        for (&sequence, stored) in state.messages.iter_mut() {
            if batch.len() >= max {
                break;
            }
            if !self.filter.matches(&stored.org) {
                continue;
            }
            match stored.redeliver_at {
                Some(due) if due > now => {
                    next_due = Some(next_due.map_or(due, |next| next.min(due)));
                    continue;
                }
                Some(_) => tracing::debug!(
                    consumer = %self.name,
                    sequence,
                    "delivering again: not acknowledged within the ack wait"
                ),
                None => {}
            }
            stored.deliveries += 1;
            stored.redeliver_at = Some(now + ack_wait);
            batch.push(Delivery {
                org: stored.org.clone(),
                payload: stored.payload.clone(),
                sequence,
                attempt: stored.deliveries,
                acker: DeliveryAcker::InProcess(Acker { shared: self.shared.clone() }),
            });
        }
        (batch, next_due)
    }

    /// Fetches up to `max` messages: returns as soon as at least one is available, or an
    /// empty list after `max_wait`.
    pub async fn fetch(&self, max: usize, max_wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let deadline = Instant::now() + max_wait;
        loop {
            let arrivals = self.shared.arrivals.notified();
            tokio::pin!(arrivals);
            arrivals.as_mut().enable();
            let now = Instant::now();
            let (batch, next_due) = self.take(max, now);
            if !batch.is_empty() || max == 0 || now >= deadline {
                return Ok(batch);
            }
            let wake = next_due.map_or(deadline, |due| due.min(deadline));
            tokio::select! {
                () = &mut arrivals => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// Acknowledges deliveries of the in-process bus.
pub(crate) struct Acker {
    shared: Arc<Shared>,
}

impl fmt::Debug for Acker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Acker")
    }
}

impl Acker {
    pub(crate) fn ack(&self, sequence: u64) {
        self.shared.ack(sequence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus(max_messages: usize, max_bytes: u64) -> InProcessBus {
        InProcessBus::new(BusConfig { max_messages, max_bytes, max_message_bytes: 100, ..BusConfig::default() })
            .unwrap()
    }

    #[tokio::test]
    async fn bytes_are_bounded_and_freed_by_acknowledgements() {
        let bus = bus(100, 250);
        let org = OrgId::new("org").unwrap();
        let hundred = Bytes::from(vec![b'x'; 100]);
        bus.try_publish(&org, hundred.clone()).unwrap();
        bus.try_publish(&org, hundred.clone()).unwrap();
        assert!(matches!(bus.try_publish(&org, hundred.clone()), Err(BusError::Full(_))));
        // A smaller message still fits.
        bus.try_publish(&org, Bytes::from(vec![b'y'; 50])).unwrap();
        assert_eq!(bus.len(), 3);

        let consumer = bus.consumer(&ConsumerName::new("c").unwrap(), Filter::All).unwrap();
        let batch = consumer.fetch(1, Duration::ZERO).await.unwrap();
        assert_eq!(batch.len(), 1);
        batch[0].ack().await.unwrap();
        // Acknowledging twice changes nothing.
        batch[0].ack().await.unwrap();
        assert_eq!(bus.len(), 2);
        bus.try_publish(&org, hundred).unwrap();
    }

    #[tokio::test]
    async fn a_message_larger_than_the_queue_is_refused_not_awaited() {
        let bus = bus(100, 60);
        let org = OrgId::new("org").unwrap();
        let result = bus.publish(&org, Bytes::from(vec![b'x'; 61])).await;
        assert!(matches!(result, Err(BusError::TooLarge { size: 61, limit: 60 })), "{result:?}");
    }

    #[tokio::test]
    async fn messages_without_a_matching_consumer_wait_for_one() {
        let bus = bus(100, 1000);
        let (a, b) = (OrgId::new("a").unwrap(), OrgId::new("b").unwrap());
        bus.try_publish(&b, Bytes::from_static(b"for b")).unwrap();
        let only_a = bus.consumer(&ConsumerName::new("a").unwrap(), Filter::Organisation(a)).unwrap();
        assert!(only_a.fetch(10, Duration::from_millis(10)).await.unwrap().is_empty());
        let only_b = bus.consumer(&ConsumerName::new("b").unwrap(), Filter::Organisation(b)).unwrap();
        let batch = only_b.fetch(10, Duration::ZERO).await.unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].payload().as_ref(), b"for b");
    }
}
