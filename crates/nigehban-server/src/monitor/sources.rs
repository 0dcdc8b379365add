//! The receiving end of the ingest sources (`nigehban-ingest`): resolves each batch's
//! organisation, parses its records, stores them and acknowledges the batch once durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nigehban_ingest::RawBatch;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::parse::{self, Target};
use super::{IngestRefusal, Monitor};

/// Consumes batches until every sender is gone.
pub(crate) async fn run(monitor: Arc<Monitor>, mut rx: mpsc::Receiver<RawBatch>) {
    let mut orgs: HashMap<String, Uuid> = HashMap::new();
    while let Some(batch) = rx.recv().await {
        let RawBatch { origin, format, records, ack } = batch;
        let result = async {
            let org = resolve(&monitor, &mut orgs, &origin.org).await?;
            let mut body = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
            for r in &records {
                // A record is one message: a line break inside it (octet-counted syslog) must not
                // split it into two.
                body.extend(r.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
                body.push(b'\n');
            }
            let target = Target { org, tlp: monitor.config.default_tlp, source: &origin.source };
            let parsed = parse::parse(&body, format.as_deref(), &target).map_err(|e| e.to_string())?;
            if parsed.rejected > 0 {
                monitor.metrics.records_rejected.fetch_add(parsed.rejected, Ordering::Relaxed);
                if let Some(first) = parsed.errors.first() {
                    tracing::warn!(
                        message = "Records from a source could not be read.",
                        source = %origin.source, rejected = parsed.rejected, first = %first.message
                    );
                }
            }
            // Sources wait for their acknowledgement; a busy store makes them wait longer
            // (their senders are pushed back), it never makes them drop.
            loop {
                match monitor.store(&parsed.events).await {
                    Ok(_) => return Ok(()),
                    Err(IngestRefusal::Busy(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
                    Err(IngestRefusal::Rejected(why)) => return Err(why),
                    Err(IngestRefusal::Store(e)) => return Err(e.to_string()),
                }
            }
        }
        .await;
        if let Err(reason) = &result {
            monitor.metrics.batches_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(message = "A source batch was refused.", source = %origin.source, reason = %reason);
        }
        if let Some(ack) = ack {
            // The source may have gone (connection closed): nothing to tell it then.
            let _ = ack.send(result);
        }
    }
}

/// The organisation a mapping names, by id or short name.
async fn resolve(monitor: &Monitor, cache: &mut HashMap<String, Uuid>, key: &str) -> Result<Uuid, String> {
    if let Some(id) = cache.get(key) {
        return Ok(*id);
    }
    let org = match Uuid::try_parse(key) {
        Ok(id) => monitor.store.org(id).await,
        Err(_) => monitor.store.org_by_short_name(key).await,
    }
    .map_err(|e| e.to_string())?
    .ok_or_else(|| format!("no organisation {key:?} (the ingest mapping names it)"))?;
    cache.insert(key.to_owned(), org.id);
    Ok(org.id)
}
