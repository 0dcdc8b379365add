//! Scale-out detection: slots of the event log and the leases detection nodes hold on them.
//!
//! Every event is stored with its organisation's **slot** ([`slot_of`]: one of [`SLOTS`]), so
//! all of an organisation's events are in one slot and its detection state (correlation
//! windows, first seen, beaconing) lives in one place. Each detection node holds **leases** on
//! a share of the slots, follows each held slot with its own cursor (`detect.sNN`, position and
//! saved state, as the embedded mode's single cursor) and commits detections with a **fence**:
//! the commit also checks that the node still holds the slot's lease at the epoch it read the
//! slot's state at, and extends the lease. A node that stops renewing loses its slots when
//! their leases expire; another node claims them (a new epoch), restores the state saved with
//! the slot's cursor and goes on from its position, so an event is counted once whatever
//! happens to the nodes.
//!
//! **The CERT lane.** Rules owned by CERTs correlate the events of many organisations, which
//! are in many slots; they run in a lane of their own: one more lease ([`CERT_LANE`], claimed
//! with [`Store::cert_lane_lease`]) held by one node at a time, which follows the whole log with
//! the cursor [`CERT_CURSOR`] and commits with the same fence.

use uuid::Uuid;

use crate::monitoring::StoredEvent;
use crate::{Result, Store, now_micros, on_read, on_write};

/// The number of slots the event log is cut into.
pub const SLOTS: i16 = 32;

/// The slot of an organisation's events (the id's last byte, which is random in every id the
/// platform makes).
pub fn slot_of(org: Uuid) -> i16 {
    i16::from(org.as_bytes()[15]) % SLOTS
}

/// The lease of the CERT lane (after the slots' leases, which are `0..SLOTS`).
pub const CERT_LANE: i16 = SLOTS;

/// The CERT lane's cursor: its position in the whole log, and the CERTs' saved streams.
pub const CERT_CURSOR: &str = "detect.cert";

/// The name of a slot's detection cursor.
pub fn slot_cursor(slot: i16) -> String {
    format!("detect.s{slot:02}")
}

/// A lease a node holds on a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub slot: i16,
    /// Grows with every change of holder.
    pub epoch: i64,
}

/// What a commit of detections checks and extends: the lease on the slot the detections came
/// from. The commit fails with [`crate::StoreError::LeaseLost`] when another node took it.
#[derive(Debug, Clone, Copy)]
pub struct Fence<'a> {
    pub holder: &'a str,
    pub lease: Lease,
    /// How long the lease lasts from the commit, µs.
    pub ttl_micros: i64,
}

impl Store {
    /// Events of one slot after `after`, in log order (a slot cursor's read).
    pub async fn events_after_in_slot(&self, slot: i16, after: i64, limit: u32) -> Result<Vec<StoredEvent>> {
        let limit = i64::from(limit.clamp(1, 100_000));
        Ok(on_read!(self, pool => {
            sqlx::query_as(
                "SELECT id, org_id, tlp, received_at, ts, source, dataset, host, record FROM events \
                 WHERE slot = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(slot)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The newest event id of each slot that has events.
    pub async fn slot_heads(&self) -> Result<Vec<(i16, i64)>> {
        let mut heads = Vec::new();
        for slot in 0..SLOTS {
            // One indexed lookup per slot (a GROUP BY would read the whole table).
            let (id,): (Option<i64>,) = on_read!(self, pool => {
                sqlx::query_as("SELECT max(id) FROM events WHERE slot = $1").bind(slot).fetch_one(pool).await?
            });
            if let Some(id) = id {
                heads.push((slot, id));
            }
        }
        Ok(heads)
    }

    /// Events not yet through detection, over every slot (what each slot holds after its
    /// cursor).
    pub async fn slot_backlog(&self) -> Result<i64> {
        let cursors: Vec<(String, i64)> = on_read!(self, pool => {
            sqlx::query_as("SELECT name, position FROM stream_cursors WHERE name LIKE 'detect.s%'")
                .fetch_all(pool)
                .await?
        });
        let cursors: std::collections::HashMap<String, i64> = cursors.into_iter().collect();
        let mut total = 0;
        for (slot, head) in self.slot_heads().await? {
            let cursor = cursors.get(&slot_cursor(slot)).copied().unwrap_or(0);
            if head <= cursor {
                continue;
            }
            let (n,): (i64,) = on_read!(self, pool => {
                sqlx::query_as("SELECT count(*) FROM events WHERE slot = $1 AND id > $2")
                    .bind(slot)
                    .bind(cursor)
                    .fetch_one(pool)
                    .await?
            });
            total += n;
        }
        Ok(total)
    }

    /// Says that detection node `node` is alive; returns how many nodes are (itself included):
    /// those seen within `ttl_micros`. Nodes not seen for ten times that are forgotten.
    pub async fn detect_heartbeat(&self, node: &str, ttl_micros: i64) -> Result<usize> {
        let now = now_micros();
        on_write!(self, pool, _d => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO detect_nodes (node, seen_at) VALUES ($1, $2) \
                 ON CONFLICT (node) DO UPDATE SET seen_at = excluded.seen_at",
            )
            .bind(node)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM detect_nodes WHERE seen_at < $1")
                .bind(now.saturating_sub(ttl_micros.saturating_mul(10)))
                .execute(&mut *tx)
                .await?;
            let (live,): (i64,) = sqlx::query_as("SELECT count(*) FROM detect_nodes WHERE seen_at > $1")
                .bind(now.saturating_sub(ttl_micros))
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(usize::try_from(live).unwrap_or(1).max(1))
        })
    }

    /// Renews the leases `node` holds, then claims free or expired slots until it holds
    /// `target` of them, or releases its highest slots beyond `target` (so that a node that
    /// joins gets a share). Returns the leases held afterwards, by slot. A lease that expired
    /// before this call is not renewed: it is claimed again (a new epoch), and the caller must
    /// read the slot's state afresh.
    pub async fn detect_leases(&self, node: &str, target: usize, ttl_micros: i64) -> Result<Vec<Lease>> {
        let now = now_micros();
        let until = now.saturating_add(ttl_micros);
        on_write!(self, pool, _d => {
            let mut tx = pool.begin().await?;
            let mut qb = sqlx::QueryBuilder::new("INSERT INTO detect_leases (slot) ");
            qb.push_values(0..SLOTS, |mut b, slot| {
                b.push_bind(slot);
            });
            qb.push(" ON CONFLICT (slot) DO NOTHING");
            qb.build().execute(&mut *tx).await?;
            // The CERT lane's lease is renewed by its own call, not shared out with the slots.
            let mut held: Vec<(i16, i64)> = sqlx::query_as(
                "UPDATE detect_leases SET expires_at = $1 WHERE holder = $2 AND expires_at > $3 AND slot < $4 \
                 RETURNING slot, epoch",
            )
            .bind(until)
            .bind(node)
            .bind(now)
            .bind(SLOTS)
            .fetch_all(&mut *tx)
            .await?;
            held.sort_unstable();
            while held.len() > target {
                let Some((slot, _)) = held.pop() else { break };
                sqlx::query("UPDATE detect_leases SET holder = NULL, expires_at = 0 WHERE slot = $1 AND holder = $2")
                    .bind(slot)
                    .bind(node)
                    .execute(&mut *tx)
                    .await?;
            }
            if held.len() < target {
                let free: Vec<(i16,)> = sqlx::query_as(
                    "SELECT slot FROM detect_leases WHERE (holder IS NULL OR expires_at <= $1) AND slot < $2 ORDER BY slot",
                )
                .bind(now)
                .bind(SLOTS)
                .fetch_all(&mut *tx)
                .await?;
                for (slot,) in free {
                    if held.len() >= target {
                        break;
                    }
                    // Checked again as it is written: another node may have claimed it since.
                    let claimed: Option<(i64,)> = sqlx::query_as(
                        "UPDATE detect_leases SET holder = $1, epoch = epoch + 1, expires_at = $2 \
                         WHERE slot = $3 AND (holder IS NULL OR expires_at <= $4) RETURNING epoch",
                    )
                    .bind(node)
                    .bind(until)
                    .bind(slot)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some((epoch,)) = claimed {
                        held.push((slot, epoch));
                    }
                }
            }
            tx.commit().await?;
            held.sort_unstable();
            Ok(held.into_iter().map(|(slot, epoch)| Lease { slot, epoch }).collect())
        })
    }

    /// Renews `node`'s lease on the CERT lane, or claims it when nobody holds it (or its
    /// holder's lease expired: a new epoch, and the caller reads the lane's state afresh).
    /// `None` while another node holds it.
    pub async fn cert_lane_lease(&self, node: &str, ttl_micros: i64) -> Result<Option<Lease>> {
        let now = now_micros();
        let until = now.saturating_add(ttl_micros);
        on_write!(self, pool, _d => {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO detect_leases (slot) VALUES ($1) ON CONFLICT (slot) DO NOTHING")
                .bind(CERT_LANE)
                .execute(&mut *tx)
                .await?;
            let renewed: Option<(i64,)> = sqlx::query_as(
                "UPDATE detect_leases SET expires_at = $1 WHERE slot = $2 AND holder = $3 AND expires_at > $4 \
                 RETURNING epoch",
            )
            .bind(until)
            .bind(CERT_LANE)
            .bind(node)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let held = match renewed {
                Some(r) => Some(r),
                None => {
                    sqlx::query_as(
                        "UPDATE detect_leases SET holder = $1, epoch = epoch + 1, expires_at = $2 \
                         WHERE slot = $3 AND (holder IS NULL OR expires_at <= $4) RETURNING epoch",
                    )
                    .bind(node)
                    .bind(until)
                    .bind(CERT_LANE)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?
                }
            };
            tx.commit().await?;
            Ok(held.map(|(epoch,)| Lease { slot: CERT_LANE, epoch }))
        })
    }

    /// Who holds each slot's lease (`None`: nobody, or expired), with the lease's epoch (the
    /// CERT lane's too, as slot [`CERT_LANE`], once a node has claimed it).
    pub async fn detect_lease_holders(&self) -> Result<Vec<(i16, Option<String>, i64)>> {
        let now = now_micros();
        let rows: Vec<(i16, Option<String>, i64, i64)> = on_read!(self, pool => {
            sqlx::query_as("SELECT slot, holder, epoch, expires_at FROM detect_leases ORDER BY slot")
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(|(slot, holder, epoch, until)| (slot, holder.filter(|_| until > now), epoch)).collect())
    }

    /// Gives up every lease of `node` and forgets it (a node that stops cleanly): other nodes
    /// take its slots at once instead of after the leases expire.
    pub async fn release_detect_leases(&self, node: &str) -> Result<()> {
        on_write!(self, pool, _d => {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE detect_leases SET holder = NULL, expires_at = 0 WHERE holder = $1")
                .bind(node)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM detect_nodes WHERE node = $1").bind(node).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }
}
