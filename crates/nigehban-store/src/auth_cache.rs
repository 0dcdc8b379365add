//! A short-lived in-process cache of recently read API tokens and sessions, keyed by the hash of
//! their secret, so that authenticating a request needs no database round trip.
//!
//! Every change to a token, a session or an account made through this store (any clone of it)
//! drops the affected entries before the change returns, so in this process a revocation, a
//! sign-out or a disabled account takes effect at once. Other processes (other nodes of a
//! multi-node deployment) keep what they read for at most the TTL. Expiry is not cached: the
//! callers compare the stored expiry with the clock on every use.
//!
//! A read that raced with a change must not put the old state back: every invalidation bumps
//! a generation counter, and a read caches its row only if no invalidation happened since it
//! began.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::{ApiToken, Session, User};

/// How long an entry is trusted by default.
pub const DEFAULT_AUTH_CACHE_TTL: Duration = Duration::from_secs(5);

/// At most this many entries; when full, expired entries go, and if none had expired the cache
/// starts over (an attacker presenting many valid secrets gains nothing but database reads).
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone)]
pub(crate) enum Cached {
    Token(ApiToken),
    Session(Session, User),
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    what: Cached,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Bumped by every invalidation (under the lock).
    generation: u64,
}

#[derive(Debug)]
pub(crate) struct AuthCache {
    /// The TTL in milliseconds; 0 disables the cache.
    ttl_ms: AtomicU64,
    inner: RwLock<Inner>,
}

impl Default for AuthCache {
    fn default() -> Self {
        AuthCache {
            ttl_ms: AtomicU64::new(DEFAULT_AUTH_CACHE_TTL.as_millis() as u64),
            inner: RwLock::new(Inner::default()),
        }
    }
}

/// A read in progress: where the cache stood when it began.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(Option<u64>);

impl AuthCache {
    fn ttl(&self) -> Option<Duration> {
        match self.ttl_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub(crate) fn set_ttl(&self, ttl: Duration) {
        self.ttl_ms.store(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        if ttl.is_zero() {
            self.clear();
        }
    }

    /// The entry for this hash, if fresh.
    pub(crate) fn get(&self, hash: &str) -> Option<Cached> {
        let ttl = self.ttl()?;
        let inner = self.inner.read().ok()?;
        let e = inner.entries.get(hash)?;
        (e.at.elapsed() < ttl).then(|| e.what.clone())
    }

    /// Call before reading the database for an entry; pass the ticket to [`AuthCache::put`].
    pub(crate) fn ticket(&self) -> Ticket {
        if self.ttl().is_none() {
            return Ticket(None);
        }
        Ticket(self.inner.read().ok().map(|i| i.generation))
    }

    /// Caches what was read, unless something was invalidated since the ticket was taken.
    pub(crate) fn put(&self, ticket: Ticket, hash: &str, what: Cached) {
        let (Some(generation), Some(ttl)) = (ticket.0, self.ttl()) else { return };
        let Ok(mut inner) = self.inner.write() else { return };
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.retain(|_, e| e.at.elapsed() < ttl);
            if inner.entries.len() >= MAX_ENTRIES {
                inner.entries.clear();
            }
        }
        inner.entries.insert(hash.to_owned(), Entry { at: Instant::now(), what });
    }

    /// Drops the entries `stale` picks and bumps the generation.
    fn invalidate(&self, stale: impl Fn(&str, &Cached) -> bool) {
        // A poisoned lock still guards consistent data (entries are replaced whole).
        let mut inner = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.generation = inner.generation.wrapping_add(1);
        inner.entries.retain(|k, e| !stale(k, &e.what));
    }

    /// After a change to a token.
    pub(crate) fn invalidate_token(&self, id: Uuid) {
        self.invalidate(|_, c| matches!(c, Cached::Token(t) if t.id == id));
    }

    /// After a change to an account (its sessions carry it).
    pub(crate) fn invalidate_user(&self, id: Uuid) {
        self.invalidate(|_, c| matches!(c, Cached::Session(_, u) if u.id == id));
    }

    /// After a session ended.
    pub(crate) fn invalidate_session(&self, hash: &str) {
        self.invalidate(|k, c| matches!(c, Cached::Session(..)) && k == hash);
    }

    /// Everything (after changes the store cannot attribute).
    pub(crate) fn clear(&self) {
        self.invalidate(|_, _| true);
    }

    /// Claims the "last used" note of a token: `true` if the caller should write it (the cached
    /// copies did not say it was written in the last `every`); the cached copies then say
    /// `now`, so concurrent requests do not all write. Without cached copies, `true`.
    pub(crate) fn claim_touch(&self, id: Uuid, now: i64, every: i64) -> bool {
        if self.ttl().is_none() {
            return true;
        }
        let Ok(mut inner) = self.inner.write() else { return true };
        let mut claimed = true;
        for e in inner.entries.values_mut() {
            if let Cached::Token(t) = &mut e.what
                && t.id == id
            {
                if t.last_used_at.is_some_and(|t| now - t < every) {
                    claimed = false;
                } else {
                    t.last_used_at = Some(now);
                }
            }
        }
        claimed
    }
}

#[cfg(test)]
mod tests {
    use nigehban_policy::Role;

    use super::*;

    fn token(id: Uuid) -> Cached {
        Cached::Token(ApiToken {
            id,
            org: Uuid::nil(),
            created_by: None,
            name: "t".into(),
            role: Role::CertAnalyst,
            scopes: Vec::new(),
            prefix: "ngb_".into(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        })
    }

    #[test]
    fn a_read_that_raced_with_an_invalidation_is_not_cached() {
        let c = AuthCache::default();
        let id = Uuid::now_v7();
        let ticket = c.ticket();
        c.invalidate_token(id);
        c.put(ticket, "h", token(id));
        assert!(c.get("h").is_none());
        let ticket = c.ticket();
        c.put(ticket, "h", token(id));
        assert!(c.get("h").is_some());
        c.invalidate_token(id);
        assert!(c.get("h").is_none());
    }

    #[test]
    fn a_zero_ttl_disables_the_cache() {
        let c = AuthCache::default();
        let id = Uuid::now_v7();
        c.put(c.ticket(), "h", token(id));
        assert!(c.get("h").is_some());
        c.set_ttl(Duration::ZERO);
        assert!(c.get("h").is_none());
        c.put(c.ticket(), "h", token(id));
        assert!(c.get("h").is_none());
        assert!(c.claim_touch(id, 1, 60));
    }

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let c = AuthCache::default();
        c.set_ttl(Duration::from_millis(30));
        let id = Uuid::now_v7();
        c.put(c.ticket(), "h", token(id));
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.get("h").is_none());
        c.set_ttl(Duration::from_secs(60));
        for i in 0..MAX_ENTRIES + 10 {
            c.put(c.ticket(), &i.to_string(), token(id));
        }
        assert!(c.inner.read().unwrap().entries.len() <= MAX_ENTRIES);
    }

    #[test]
    fn one_request_claims_the_last_used_note() {
        let c = AuthCache::default();
        let id = Uuid::now_v7();
        c.put(c.ticket(), "h", token(id));
        assert!(c.claim_touch(id, 1_000_000_000, 60_000_000));
        assert!(!c.claim_touch(id, 1_000_000_001, 60_000_000));
        assert!(c.claim_touch(id, 1_070_000_000, 60_000_000));
    }
}
