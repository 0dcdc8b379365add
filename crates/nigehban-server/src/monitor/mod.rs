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
//!
//! The scale-out mode ([`Node`] with a bus, on PostgreSQL): ingest nodes parse and publish on
//! the bus (`batch`), answering once the bus has the events; detection nodes store what the
//! bus carries in the event log, once per batch (`persist`), and detect over the slots of the
//! log whose leases they hold (`slots`), with the same detection code as the embedded worker;
//! the rules owned by CERTs run over the whole log in a lane of their own (`certlane`).

pub(crate) mod batch;
pub(crate) mod certlane;
pub mod certs;
pub mod demo_stream;
pub(crate) mod detect;
pub mod notify;
pub(crate) mod parse;
pub(crate) mod persist;
pub(crate) mod retention;
pub(crate) mod retro;
pub(crate) mod slots;
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
    /// Scale-out: how long a detection node's lease on a slot lasts without renewal (a node
    /// that dies loses its slots after this); renewed every fifth of it.
    pub lease_ttl: Duration,
    /// Retro-hunts that run at once; more wait, queued.
    pub max_retrohunts: usize,
    /// Rules owned by CERTs, run over each CERT's whole constituency (`certs`); none by default.
    pub cert_rules: certs::CertRules,
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
            lease_ttl: Duration::from_secs(10),
            max_retrohunts: 2,
            cert_rules: certs::CertRules::default(),
        }
    }
}

/// What this node does in live monitoring, and how its nodes talk.
///
/// Embedded (no bus): one process stores what it receives in the event log and detects over
/// the whole log. Scale-out (a bus, PostgreSQL): ingest nodes publish parsed batches on the
/// bus; detection nodes store them in the event log (once, by batch key) and detect over the
/// slots whose leases they hold.
#[derive(Debug, Clone)]
pub struct Node {
    /// The bus between ingest and detection nodes; `None` in the embedded mode.
    pub bus: Option<nigehban_bus::Bus>,
    /// Receives events (HTTP ingest, the syslog and file sources).
    pub ingest: bool,
    /// Stores what the bus carries and detects (scale-out), or detects over the log (embedded).
    pub detect: bool,
    /// This node's name among detection nodes (unique per process).
    pub name: String,
}

impl Default for Node {
    /// The embedded mode: everything in this process, no bus.
    fn default() -> Self {
        Node { bus: None, ingest: true, detect: true, name: default_node_name() }
    }
}

/// `host:pid:random`, unique per process.
pub fn default_node_name() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "node".to_owned());
    let random = uuid::Uuid::now_v7().simple().to_string();
    let random = &random[random.len() - 8..];
    format!("{host}:{}:{random}", std::process::id())
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct MonitorMetrics {
    pub(crate) events_stored: AtomicU64,
    pub(crate) records_rejected: AtomicU64,
    pub(crate) batches_refused: AtomicU64,
    pub(crate) pushed_back: AtomicU64,
    pub(crate) events_detected: AtomicU64,
    pub(crate) events_read_back: AtomicU64,
    pub(crate) detections: AtomicU64,
    pub(crate) alerts_created: AtomicU64,
    pub(crate) detect_errors: AtomicU64,
    pub(crate) events_expired: AtomicU64,
    pub(crate) notify_sent: AtomicU64,
    pub(crate) notify_failed: AtomicU64,
    pub(crate) notify_gave_up: AtomicU64,
    pub(crate) notify_skipped: AtomicU64,
    pub(crate) bus_published: AtomicU64,
    pub(crate) bus_stored: AtomicU64,
    pub(crate) bus_duplicates: AtomicU64,
    pub(crate) bus_unreadable: AtomicU64,
    pub(crate) slots_held: AtomicU64,
    pub(crate) leases_lost: AtomicU64,
}

/// About how many bytes of parsed events ingest may hand to the embedded detection worker
/// before it reads the log back instead (when detection is behind).
const FRESH_MAX_BYTES: usize = 96 << 20;

/// How long ingest, having stored a batch, waits for room to hand it to detection before it
/// answers without (detection then reads it back from the log).
const HANDOVER_WAIT: Duration = Duration::from_secs(1);

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
    /// What this node does (embedded, or its roles in a scale-out deployment).
    pub(crate) node: Node,
    /// Scale-out: events stored and not yet detected, as last estimated (slots' heads and
    /// cursors, every few seconds).
    pub(crate) backlog_estimate: AtomicI64,
    /// Scale-out ingest: how full the bus was, and when that was read.
    pub(crate) bus_fill: std::sync::Mutex<Option<(std::time::Instant, f64)>>,
    /// The retro-hunts this process runs.
    pub(crate) retrohunts: retro::Running,
    /// Embedded mode: batches just stored, handed to the detection worker as parsed.
    pub(crate) fresh: detect::Fresh,
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
    /// The batch can never be taken as it is (an event larger than a bus message).
    #[error("{0}")]
    Rejected(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Monitor {
    /// Monitoring over `store` with these detectors.
    pub async fn new(store: Store, detectors: DetectorSet, config: MonitorConfig) -> Result<Arc<Monitor>, StoreError> {
        Monitor::new_node(store, detectors, config, Node::default()).await
    }

    /// Monitoring over `store` with these detectors, doing what `node` says.
    pub async fn new_node(
        store: Store,
        detectors: DetectorSet,
        config: MonitorConfig,
        node: Node,
    ) -> Result<Arc<Monitor>, StoreError> {
        let stored = store.last_event_id().await?;
        let detected = store.cursor(CURSOR).await?.map_or(0, |(p, _)| p);
        // Retro-hunts of processes that stopped are marked failed (now, and every minute by
        // `retro::maintain`: several nodes may run hunts on one database).
        let stale = jiff::Timestamp::now().as_microsecond() - 180_000_000;
        store.recover_stale_retrohunts(stale).await?;
        Ok(Arc::new(Monitor {
            retrohunts: retro::Running::new(config.max_retrohunts),
            writes: Semaphore::new(config.max_concurrent_writes.max(1)),
            config,
            store,
            detectors: Arc::new(detectors),
            arrivals: Notify::new(),
            stored: AtomicI64::new(stored),
            detected: AtomicI64::new(detected),
            metrics: MonitorMetrics::default(),
            ingest_metrics: Arc::default(),
            node,
            backlog_estimate: AtomicI64::new(0),
            bus_fill: std::sync::Mutex::new(None),
            fresh: detect::Fresh::new(FRESH_MAX_BYTES),
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

    /// Events stored and not yet through detection (scale-out: as last estimated).
    pub fn backlog(&self) -> i64 {
        if self.node.bus.is_some() {
            return self.backlog_estimate.load(Ordering::Relaxed);
        }
        (self.stored.load(Ordering::Relaxed) - self.detected.load(Ordering::Relaxed)).max(0)
    }

    /// What this node does.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Stores parsed events durably; returns the ids of the first and last. Refuses (without
    /// storing anything) when detection is too far behind or writes wait too long.
    pub async fn store(&self, events: &[NewEvent]) -> Result<(i64, i64), IngestRefusal> {
        self.store_parsed(events, &mut Vec::new()).await
    }

    /// [`Monitor::store`], with the events as parsed (`parsed[i]` is `events[i]` before
    /// encoding, or `parsed` is empty): once stored, the embedded mode hands them to detection
    /// as they are (taking them out of `parsed`), so that it need not read them back.
    pub(crate) async fn store_parsed(
        &self,
        events: &[NewEvent],
        parsed: &mut Vec<nigehban_event::Event>,
    ) -> Result<(i64, i64), IngestRefusal> {
        if events.is_empty() {
            return Ok((0, 0));
        }
        if let Some(bus) = &self.node.bus {
            return self.publish(bus, events).await.map(|()| (0, 0));
        }
        let backlog = self.backlog();
        if backlog > self.config.max_backlog {
            self.metrics.pushed_back.fetch_add(1, Ordering::Relaxed);
            return Err(IngestRefusal::Busy(format!("{backlog} events are waiting for detection")));
        }
        let Ok(Ok(permit)) = tokio::time::timeout(self.config.write_wait, self.writes.acquire()).await else {
            self.metrics.pushed_back.fetch_add(1, Ordering::Relaxed);
            return Err(IngestRefusal::Busy("too many writes in flight".into()));
        };
        let received_at = jiff::Timestamp::now().as_microsecond();
        let (first, last) = self.store.append_events_at(events, None, received_at).await?.unwrap_or((0, 0));
        drop(permit);
        self.stored.fetch_max(last, Ordering::Relaxed);
        self.metrics.events_stored.fetch_add(events.len() as u64, Ordering::Relaxed);
        self.arrivals.notify_one();
        if parsed.len() == events.len() && usize::try_from(last - first + 1).ok() == Some(events.len()) {
            let fresh = (first..=last)
                .zip(events)
                .zip(parsed.drain(..))
                .map(|((id, e), event)| detect::FreshEvent {
                    id,
                    org: e.org,
                    tlp: e.tlp,
                    ts: e.ts,
                    received_at,
                    source: event.source.clone(),
                    event: Some(event),
                })
                .collect();
            self.fresh.put_or_wait(fresh, HANDOVER_WAIT).await;
        }
        Ok((first, last))
    }

    /// Scale-out ingest: publishes the events on the bus, one message per run that fits, on
    /// their organisations' subjects; returns once every message is durable on the bus.
    /// Refuses before publishing anything when the bus is over 80% full (its consumers, the
    /// detection nodes, are behind). A failure after part of the batch was published leaves
    /// that part on the bus: a sender that sends again may store it twice.
    async fn publish(&self, bus: &nigehban_bus::Bus, events: &[NewEvent]) -> Result<(), IngestRefusal> {
        let fill = self.bus_fill(bus).await;
        if fill > 0.8 {
            self.metrics.pushed_back.fetch_add(1, Ordering::Relaxed);
            return Err(IngestRefusal::Busy(format!("the event bus is {:.0}% full", fill * 100.0)));
        }
        let max = bus.max_message_bytes();
        let mut start = 0;
        while start < events.len() {
            let org = events[start].org;
            let end = events[start..].iter().position(|e| e.org != org).map_or(events.len(), |n| start + n);
            let subject = nigehban_bus::OrgId::new(&org.to_string())
                .map_err(|e| IngestRefusal::Rejected(format!("organisation {org}: {e}")))?;
            let runs = batch::split(&events[start..end], max).map_err(|(i, len)| {
                IngestRefusal::Rejected(format!(
                    "event {} takes {len} bytes, more than a bus message carries ({max})",
                    start + i + 1
                ))
            })?;
            for run in runs {
                let payload = batch::encode(uuid::Uuid::now_v7(), org, run);
                let publish = bus.publish(&subject, payload.into());
                match tokio::time::timeout(self.config.write_wait, publish).await {
                    Ok(Ok(_)) => {
                        self.metrics.bus_published.fetch_add(run.len() as u64, Ordering::Relaxed);
                    }
                    Ok(Err(nigehban_bus::BusError::Full(_))) | Err(_) => {
                        self.metrics.pushed_back.fetch_add(1, Ordering::Relaxed);
                        return Err(IngestRefusal::Busy("the event bus did not take the events in time".into()));
                    }
                    Ok(Err(e)) => return Err(IngestRefusal::Busy(format!("the event bus failed: {e}"))),
                }
            }
            start = end;
        }
        self.metrics.events_stored.fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// How full the bus is, read at most every 250 ms (a full bus reads as 1.0 when it cannot
    /// be read, so that ingest pushes back rather than piles up).
    async fn bus_fill(&self, bus: &nigehban_bus::Bus) -> f64 {
        let now = std::time::Instant::now();
        if let Ok(guard) = self.bus_fill.lock()
            && let Some((at, fill)) = *guard
            && now.duration_since(at) < Duration::from_millis(250)
        {
            return fill;
        }
        let fill = match bus.fill().await {
            Ok(f) => f.ratio(),
            Err(e) => {
                tracing::warn!(message = "How full the event bus is could not be read.", error = %e);
                1.0
            }
        };
        if let Ok(mut guard) = self.bus_fill.lock() {
            *guard = Some((now, fill));
        }
        fill
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
            (
                "nigehban_detect_read_back_total",
                "Events detection read back from the event log (not handed over by ingest).",
                &m.events_read_back,
            ),
            ("nigehban_detections_total", "Detections folded into alerts.", &m.detections),
            ("nigehban_alerts_created_total", "Alerts created.", &m.alerts_created),
            ("nigehban_detect_errors_total", "Detection batches that failed and were retried.", &m.detect_errors),
            ("nigehban_events_expired_total", "Stored events deleted by retention.", &m.events_expired),
            ("nigehban_notify_sent_total", "Alert e-mails and webhook calls delivered.", &m.notify_sent),
            ("nigehban_notify_failed_total", "Alert e-mails and webhook calls that failed.", &m.notify_failed),
            ("nigehban_notify_gave_up_total", "Alert notifications given up at last.", &m.notify_gave_up),
            ("nigehban_notify_skipped_total", "New alerts not notified (level, TLP, no target).", &m.notify_skipped),
            (
                "nigehban_bus_published_events_total",
                "Events published on the event bus (ingest nodes).",
                &m.bus_published,
            ),
            ("nigehban_bus_stored_events_total", "Events from the bus stored in the event log.", &m.bus_stored),
            (
                "nigehban_bus_duplicate_events_total",
                "Events of bus messages delivered again and already stored (not stored twice).",
                &m.bus_duplicates,
            ),
            ("nigehban_bus_unreadable_total", "Bus messages that could not be read (not stored).", &m.bus_unreadable),
            ("nigehban_detect_leases_lost_total", "Detection slots this node lost to another node.", &m.leases_lost),
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
        if self.node.bus.is_some() && self.node.detect {
            out.push_str(&format!(
                "# HELP nigehban_detect_slots_held Detection slots this node holds leases on.\n\
                 # TYPE nigehban_detect_slots_held gauge\nnigehban_detect_slots_held {}\n",
                m.slots_held.load(Ordering::Relaxed)
            ));
        }
        out.push_str(&self.ingest_metrics.render_prometheus());
    }
}

/// One retention pass now (it also runs every ten minutes once started); returns how many
/// events were deleted.
pub async fn sweep_retention(monitor: &Monitor) -> Result<u64, StoreError> {
    retention::sweep(monitor).await
}

/// Sleeps `d` or until `shutdown` changes; `true` when it did (the workers' pause between
/// retries and polls).
pub(crate) async fn pause(shutdown: &mut tokio::sync::watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.changed() => true,
    }
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
        let mut tasks = Vec::new();
        match &self.node.bus {
            // Embedded: one worker detects over the whole log.
            None => tasks.push(tokio::spawn(detect::run(self.clone(), shutdown.clone()))),
            // Scale-out: store what the bus carries, detect over the leased slots.
            Some(bus) if self.node.detect => {
                tasks.push(tokio::spawn(persist::run(self.clone(), bus.clone(), shutdown.clone())));
                tasks.push(tokio::spawn(slots::run(self.clone(), shutdown.clone())));
                if !self.config.cert_rules.is_empty() {
                    tasks.push(tokio::spawn(certlane::run(self.clone(), shutdown.clone())));
                }
            }
            Some(_) => {}
        }
        tasks.push(tokio::spawn(retro::maintain(self.clone(), shutdown.clone())));
        if self.node.detect {
            tasks.push(tokio::spawn(retention::run(self.clone(), shutdown)));
        }
        if self.node.ingest {
            tasks.push(tokio::spawn(sources::run(self.clone(), rx)));
        }
        tasks.extend(notify);
        (tx, tasks)
    }
}
