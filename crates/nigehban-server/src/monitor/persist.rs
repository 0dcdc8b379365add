//! Scale-out detection nodes, first stage: store what the bus carries in the event log.
//!
//! Every detection node reads the bus through one shared durable consumer, so each message
//! goes to one of them. A message is acknowledged once its events are committed; a message
//! delivered again (a node died before its ack, or the ack was lost) carries the same batch
//! key and is not stored twice. While detection is behind by more than `max_backlog`, messages
//! stay on the bus, which fills up and makes ingest nodes push back on their senders.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nigehban_bus::{Bus, ConsumerName, Filter};

use super::{Monitor, batch, pause};

/// The name of the detection nodes' shared consumer.
pub(crate) const CONSUMER: &str = "store";

/// Messages fetched at once.
const FETCH: usize = 16;

/// Runs until `shutdown` says stop.
pub(crate) async fn run(monitor: Arc<Monitor>, bus: Bus, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let consumer = loop {
        let opened = match ConsumerName::new(CONSUMER) {
            Ok(name) => bus.consumer(&name, Filter::All).await,
            Err(e) => Err(e),
        };
        match opened {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(message = "The event bus's consumer could not be opened; retrying.", error = %e);
                if pause(&mut shutdown, Duration::from_secs(2)).await {
                    return;
                }
            }
        }
    };
    tracing::info!(message = "Storing what the event bus carries.", node = %monitor.node.name);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let backlog = monitor.backlog();
        if backlog > monitor.config.max_backlog {
            tracing::debug!(message = "Detection is behind; the bus keeps the events for now.", backlog);
            if pause(&mut shutdown, Duration::from_millis(500)).await {
                break;
            }
            continue;
        }
        let deliveries = tokio::select! {
            d = consumer.fetch(FETCH, Duration::from_secs(1)) => d,
            _ = shutdown.changed() => break,
        };
        let deliveries = match deliveries {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(message = "Reading the event bus failed; retrying.", error = %e);
                if pause(&mut shutdown, Duration::from_secs(1)).await {
                    break;
                }
                continue;
            }
        };
        for delivery in deliveries {
            let batch = match batch::decode(delivery.payload()) {
                Ok(b) if b.org.to_string() == delivery.org().as_str() => b,
                Ok(b) => {
                    monitor.metrics.bus_unreadable.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        message = "A bus message names another organisation than its subject; it is not stored.",
                        sequence = delivery.sequence(), subject_org = %delivery.org(), batch_org = %b.org
                    );
                    let _ = delivery.ack().await;
                    continue;
                }
                Err(e) => {
                    // It can never be read: delivering it again would not help.
                    monitor.metrics.bus_unreadable.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        message = "A bus message could not be read; it is not stored.",
                        sequence = delivery.sequence(), org = %delivery.org(), error = %e
                    );
                    let _ = delivery.ack().await;
                    continue;
                }
            };
            let n = batch.events.len() as u64;
            match monitor.store.append_events(&batch.events, Some(&batch.key.to_string())).await {
                Ok(Some((_, last))) => {
                    monitor.stored.fetch_max(last, Ordering::Relaxed);
                    monitor.metrics.bus_stored.fetch_add(n, Ordering::Relaxed);
                    monitor.arrivals.notify_one();
                }
                Ok(None) => {
                    monitor.metrics.bus_duplicates.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    // Not acknowledged: the bus delivers it again after its ack wait.
                    tracing::error!(
                        message = "Events from the bus could not be stored; the bus will deliver them again.",
                        sequence = delivery.sequence(), error = %e
                    );
                    monitor.metrics.detect_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            if let Err(e) = delivery.ack().await {
                // Stored already: a redelivery is recognised by its batch key.
                tracing::warn!(message = "A bus message could not be acknowledged.", sequence = delivery.sequence(), error = %e);
            }
        }
    }
    tracing::info!(message = "Stopped storing from the event bus.", node = %monitor.node.name);
}
