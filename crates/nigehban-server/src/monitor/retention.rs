//! Retention: stored events older than their organisation's retention period are deleted,
//! never one that detection has not passed yet.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Monitor;

/// How often retention runs.
const EVERY: Duration = Duration::from_secs(600);

/// Runs until `shutdown` says stop: at start, then every ten minutes.
pub(crate) async fn run(monitor: Arc<Monitor>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = sweep(&monitor).await {
            tracing::warn!(message = "Retention could not delete old events; it tries again later.", error = %e);
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// One pass over every organisation. Returns how many events were deleted.
pub(crate) async fn sweep(monitor: &Monitor) -> Result<u64, nigehban_store::StoreError> {
    let now = jiff::Timestamp::now().as_microsecond();
    // Events at or after the detection cursor wait for detection: they are never deleted.
    let embedded_keep_from = monitor.detected.load(Ordering::Relaxed) + 1;
    // Scale-out with CERT rules: the CERT lane follows the whole log, and keeps what it has
    // not passed.
    let lane_keep_from = if monitor.node.bus.is_some() && !monitor.config.cert_rules.is_empty() {
        Some(monitor.store.cursor(nigehban_store::CERT_CURSOR).await?.map_or(0, |(p, _)| p) + 1)
    } else {
        None
    };
    let mut deleted = 0;
    for org in monitor.store.orgs().await? {
        let keep_from = if monitor.node.bus.is_some() {
            // Scale-out: the cursor of the organisation's slot.
            let cursor = monitor.store.cursor(&nigehban_store::slot_cursor(nigehban_store::slot_of(org.id))).await?;
            let slot_keep_from = cursor.map_or(0, |(p, _)| p) + 1;
            lane_keep_from.map_or(slot_keep_from, |lane| lane.min(slot_keep_from))
        } else {
            embedded_keep_from
        };
        let days =
            monitor.config.retention_by_org.get(&org.short_name).copied().unwrap_or(monitor.config.retention_days);
        if days == 0 {
            continue;
        }
        let before = now.saturating_sub(i64::from(days).saturating_mul(86_400_000_000));
        let n = monitor.store.delete_events(org.id, before, keep_from).await?;
        if n > 0 {
            tracing::info!(message = "Retention deleted old events.", org = %org.short_name, events = n, days);
        }
        deleted += n;
    }
    monitor.metrics.events_expired.fetch_add(deleted, Ordering::Relaxed);
    Ok(deleted)
}
