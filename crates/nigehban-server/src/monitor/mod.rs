//! Live monitoring inside the server: events in (HTTP ingest and the sources of
//! `nigehban-ingest`), stored durably, detected, folded into alerts.
//!
//! The embedded mode's path:
//! 1. A request or a source's batch is parsed where it arrives (`parse`): the readers of
//!    `nigehban-event` recognise the format, each record becomes a normalized event, and bad
//!    records become line-numbered errors while the rest go on.
//! 2. The events are stored in one transaction ([`nigehban_store::Store::append_events`]); only
//!    then is the batch acknowledged (HTTP 200, a source's ack). The event store is the durable
//!    log: nothing acknowledged is lost when the process is killed.
//! 3. The detection worker (`detect`) follows the log with a cursor, runs the detectors over each
//!    batch and commits the alerts and the new cursor position in one transaction, so after a
//!    crash it goes on from the last committed position and counts nothing twice.
//!
//! Back-pressure: when stored events wait for detection beyond `max_backlog`, or too many
//! writes are in flight, ingest answers 429 (with `Retry-After`) and sources wait for their
//! acknowledgement, so a sender faster than detection is slowed down instead of dropped.

pub mod demo_stream;
pub(crate) mod detect;
pub mod notify;
pub(crate) mod parse;
pub(crate) mod retention;
pub(crate) mod sources;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use nigehban_detect::DetectorSet;
use nigehban_policy::Tlp;
use nigehban_store::{NewEvent, Store, StoreError};
use tokio::sync::{Notify, Semaphore};

/// The detection cursor's name in the store.
pub(crate) const CURSOR: &str = "detect";

/// Settings of live monitoring.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The TLP given to ingested events unless the request says otherwise.
    pub default_tlp: Tlp,
    /// Events stored and not yet detected beyond which ingest pushes back (429).
    pub max_backlog: i64,
    /// Largest ingest request body (compressed).
    pub max_request_bytes: usize,
    /// Largest ingest request body once decompressed.
    pub max_decompressed_bytes: usize,
    /// Ingest writes in flight at once; more wait up to `write_wait`, then get a 429.
    pub max_concurrent_writes: usize,
    pub write_wait: Duration,
    /// Detections of one rule about one entity within one window are one alert.
    pub dedup_window: Duration,
    /// Events the detection worker reads per batch.
    pub detect_batch: u32,
    /// How late (in event time, behind the newest event of its organisation) an event may
    /// arrive and still count in correlation windows.
    pub lateness: Duration,
    /// Days stored events are kept (by the time they were received); 0 keeps them for ever.
    pub retention_days: u32,
    /// Per organisation (short name): days its events are kept, instead of `retention_days`.
    pub retention_by_org: std::collections::HashMap<String, u32>,
    /// Alert notifications by e-mail and webhook (`notify`); `None`: none are sent.
    pub notify: Option<notify::NotifyConfig>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            default_tlp: Tlp::AmberStrict,
            max_backlog: 1_000_000,
            max_request_bytes: 16 << 20,
            max_decompressed_bytes: 64 << 20,
            max_concurrent_writes: 8,
            write_wait: Duration::from_secs(2),
            dedup_window: Duration::from_secs(3600),
            detect_batch: 20_000,
            lateness: Duration::from_secs(300),
            retention_days: 30,
            retention_by_org: std::collections::HashMap::new(),
            notify: None,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct MonitorMetrics {
    pub(crate) events_stored: AtomicU64,
    pub(crate) records_rejected: AtomicU64,
    pub(crate) batches_refused: AtomicU64,
    pub(crate) pushed_back: AtomicU64,
    pub(crate) events_detected: AtomicU64,
    pub(crate) detections: AtomicU64,
    pub(crate) alerts_created: AtomicU64,
    pub(crate) detect_errors: AtomicU64,
    pub(crate) events_expired: AtomicU64,
    pub(crate) notify_sent: AtomicU64,
    pub(crate) notify_failed: AtomicU64,
    pub(crate) notify_gave_up: AtomicU64,
    pub(crate) notify_skipped: AtomicU64,
}

/// Live monitoring's shared state.
pub struct Monitor {
    pub(crate) config: MonitorConfig,
    pub(crate) store: Store,
    pub(crate) detectors: Arc<DetectorSet>,
    /// Woken when events are stored.
    pub(crate) arrivals: Notify,
    /// The newest stored event id this process knows of.
    pub(crate) stored: AtomicI64,
    /// The detection cursor's position.
    pub(crate) detected: AtomicI64,
    pub(crate) writes: Semaphore,
    pub(crate) metrics: MonitorMetrics,
    pub(crate) ingest_metrics: Arc<nigehban_ingest::IngestMetrics>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestRefusal {
    #[error("the server is busy: {0}")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Monitor {
    /// Monitoring over `store` with these detectors.
    pub async fn new(store: Store, detectors: DetectorSet, config: MonitorConfig) -> Result<Arc<Monitor>, StoreError> {
        let stored = store.last_event_id().await?;
        let detected = store.cursor(CURSOR).await?.map_or(0, |(p, _)| p);
        Ok(Arc::new(Monitor {
            writes: Semaphore::new(config.max_concurrent_writes.max(1)),
            config,
            store,
            detectors: Arc::new(detectors),
            arrivals: Notify::new(),
            stored: AtomicI64::new(stored),
            detected: AtomicI64::new(detected),
            metrics: MonitorMetrics::default(),
            ingest_metrics: Arc::default(),
        }))
    }

    /// The settings.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// The counters of the ingest sources (shared with `nigehban_ingest::spawn_all`).
    pub fn ingest_metrics(&self) -> Arc<nigehban_ingest::IngestMetrics> {
        self.ingest_metrics.clone()
    }

    /// Events stored and not yet through detection.
    pub fn backlog(&self) -> i64 {
        (self.stored.load(Ordering::Relaxed) - self.detected.load(Ordering::Relaxed)).max(0)
    }

    /// Stores parsed events durably; returns the ids of the first and last. Refuses (without
    /// storing anything) when detection is too far behind or writes wait too long.
    pub async fn store(&self, events: &[NewEvent]) -> Result<(i64, i64), IngestRefusal> {
        if events.is_empty() {
            return Ok((0, 0));
        }
        let backlog = self.backlog();
        if backlog > self.config.max_backlog {
            self.metrics.pushed_back.fetch_add(1, Ordering::Relaxed);
            return Err(IngestRefusal::Busy(format!("{backlog} events are waiting for detection")));
        }
        let Ok(Ok(_permit)) = tokio::time::timeout(self.config.write_wait, self.writes.acquire()).await else {
            self.metrics.pushed_back.fetch_add(1, Ordering::Relaxed);
            return Err(IngestRefusal::Busy("too many writes in flight".into()));
        };
        let (first, last) = self.store.append_events(events, None).await?.unwrap_or((0, 0));
        self.stored.fetch_max(last, Ordering::Relaxed);
        self.metrics.events_stored.fetch_add(events.len() as u64, Ordering::Relaxed);
        self.arrivals.notify_one();
        Ok((first, last))
    }

    /// Moves the detection position as if detection had passed `position` (tests of what
    /// depends on it, without running detection).
    #[doc(hidden)]
    pub fn set_detected_for_tests(&self, position: i64) {
        self.detected.store(position, Ordering::Relaxed);
    }

    /// The monitoring part of `/metrics`.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        let m = &self.metrics;
        let counters = [
            ("nigehban_events_stored_total", "Events stored by ingest.", &m.events_stored),
            (
                "nigehban_records_rejected_total",
                "Records ingest could not parse (reported to the sender).",
                &m.records_rejected,
            ),
            (
                "nigehban_ingest_batches_refused_total",
                "Source batches refused (unknown organisation, store errors).",
                &m.batches_refused,
            ),
            ("nigehban_ingest_pushed_back_total", "Ingest requests and batches answered busy (429).", &m.pushed_back),
            ("nigehban_events_detected_total", "Events through detection.", &m.events_detected),
            ("nigehban_detections_total", "Detections folded into alerts.", &m.detections),
            ("nigehban_alerts_created_total", "Alerts created.", &m.alerts_created),
            ("nigehban_detect_errors_total", "Detection batches that failed and were retried.", &m.detect_errors),
            ("nigehban_events_expired_total", "Stored events deleted by retention.", &m.events_expired),
            ("nigehban_notify_sent_total", "Alert e-mails and webhook calls delivered.", &m.notify_sent),
            ("nigehban_notify_failed_total", "Alert e-mails and webhook calls that failed.", &m.notify_failed),
            ("nigehban_notify_gave_up_total", "Alert notifications given up at last.", &m.notify_gave_up),
            ("nigehban_notify_skipped_total", "New alerts not notified (level, TLP, no target).", &m.notify_skipped),
        ];
        for (name, help, c) in counters {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                c.load(Ordering::Relaxed)
            ));
        }
        out.push_str(&format!(
            "# HELP nigehban_detect_backlog Events stored and not yet through detection.\n\
             # TYPE nigehban_detect_backlog gauge\nnigehban_detect_backlog {}\n",
            self.backlog()
        ));
        out.push_str(&self.ingest_metrics.render_prometheus());
    }
}

/// One retention pass now (it also runs every ten minutes once started); returns how many
/// events were deleted.
pub async fn sweep_retention(monitor: &Monitor) -> Result<u64, StoreError> {
    retention::sweep(monitor).await
}

/// Batches the ingest sources may queue before they wait (TCP, TLS, files) or drop (UDP).
pub const SOURCE_QUEUE: usize = 64;

impl Monitor {
    /// Starts the detection worker, retention and the receiver of the ingest sources' batches. Returns the
    /// sender to give the sources (`nigehban_ingest::spawn_all`) and the tasks, which end when
    /// `shutdown` becomes `true` (detection) or every sender is dropped (the receiver).
    pub fn start(
        self: &Arc<Self>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> (tokio::sync::mpsc::Sender<nigehban_ingest::RawBatch>, Vec<tokio::task::JoinHandle<()>>) {
        let (tx, rx) = tokio::sync::mpsc::channel(SOURCE_QUEUE);
        let notify = self.config.notify.is_some().then(|| tokio::spawn(notify::run(self.clone(), shutdown.clone())));
        let mut tasks = vec![
            tokio::spawn(detect::run(self.clone(), shutdown.clone())),
            tokio::spawn(retention::run(self.clone(), shutdown)),
            tokio::spawn(sources::run(self.clone(), rx)),
        ];
        tasks.extend(notify);
        (tx, tasks)
    }
}
