//! Single-use bookkeeping for WebSocket tickets: the [`TicketStore`] trait and its in-memory implementation.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::clock::unix_now;

/// Default number of unexpired ticket ids a [`MemoryTicketStore`] remembers.
///
/// Tickets live at most 60 s (+ leeway), so this allows well over 1,000 tickets per second
/// before the store refuses new ones.
pub const DEFAULT_TICKET_STORE_CAPACITY: usize = 100_000;

/// Failure of a [`TicketStore`]. A ticket whose use cannot be recorded must be refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TicketStoreError {
    /// The store holds its maximum number of unexpired ids.
    #[error("ticket store is full ({capacity} unexpired tickets)")]
    Full {
        /// The configured capacity.
        capacity: usize,
    },
    /// The backing service (e.g. Redis) failed.
    #[error("ticket store backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// Remembers which ticket ids (`jti`) were used, so each ticket is accepted once.
///
/// Object-safe: use it as `Arc<dyn TicketStore>`. A shared implementation (e.g. Redis
/// `SET jti 1 NX EXAT expires_at`) makes tickets single-use across several instances.
#[async_trait]
pub trait TicketStore: Send + Sync {
    /// Records the use of `jti` and returns `true` the first time, `false` on every later
    /// call. `expires_at` (unix seconds) is when the ticket stops being acceptable; the id
    /// must be remembered at least until then and may be forgotten afterwards.
    async fn consume(&self, jti: &str, expires_at: i64) -> Result<bool, TicketStoreError>;
}

/// In-memory [`TicketStore`] for a single instance: bounded, expired ids purged on every call,
/// the lock never held across an `.await`.
#[derive(Debug)]
pub struct MemoryTicketStore {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    used: HashSet<String>,
    /// Expiry queue, soonest first, mirroring `used`.
    expiries: BinaryHeap<Reverse<(i64, String)>>,
}

impl Default for MemoryTicketStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryTicketStore {
    /// A store with [`DEFAULT_TICKET_STORE_CAPACITY`].
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_TICKET_STORE_CAPACITY)
    }

    /// A store remembering at most `capacity` unexpired ids (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Number of ids currently remembered (expired ones may still be counted until the next
    /// call purges them).
    pub fn len(&self) -> usize {
        self.lock().used.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`TicketStore::consume`] at unix time `now` instead of the system clock.
    ///
    /// A ticket that already expired at `now` is refused (`Ok(false)`): its id could not be
    /// remembered for its lifetime.
    pub fn consume_at(
        &self,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, TicketStoreError> {
        let mut inner = self.lock();
        while let Some(Reverse((exp, _))) = inner.expiries.peek() {
            if *exp >= now {
                break;
            }
            if let Some(Reverse((_, id))) = inner.expiries.pop() {
                inner.used.remove(&id);
            }
        }
        if expires_at < now || inner.used.contains(jti) {
            return Ok(false);
        }
        if inner.used.len() >= self.capacity {
            return Err(TicketStoreError::Full {
                capacity: self.capacity,
            });
        }
        inner.used.insert(jti.to_owned());
        inner.expiries.push(Reverse((expires_at, jti.to_owned())));
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state stays consistent even if a holder panicked: every mutation is one insert
        // or one remove on each collection.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl TicketStore for MemoryTicketStore {
    async fn consume(&self, jti: &str, expires_at: i64) -> Result<bool, TicketStoreError> {
        self.consume_at(jti, expires_at, unix_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn first_use_only() {
        let store = MemoryTicketStore::new();
        assert!(store.consume_at("a", 100, 50).unwrap());
        assert!(!store.consume_at("a", 100, 51).unwrap());
        assert!(store.consume_at("b", 100, 51).unwrap());
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn remembered_until_expiry_then_purged() {
        let store = MemoryTicketStore::new();
        assert!(store.consume_at("a", 100, 50).unwrap());
        assert!(!store.consume_at("a", 100, 100).unwrap());
        // Past its expiry the id is forgotten, and the ticket itself is refused.
        assert!(!store.consume_at("a", 100, 101).unwrap());
        assert!(store.is_empty());
    }

    #[test]
    fn bounded() {
        let store = MemoryTicketStore::with_capacity(2);
        assert!(store.consume_at("a", 100, 0).unwrap());
        assert!(store.consume_at("b", 200, 0).unwrap());
        assert!(matches!(
            store.consume_at("c", 100, 0),
            Err(TicketStoreError::Full { capacity: 2 })
        ));
        // Once "a" expired there is room again.
        assert!(store.consume_at("c", 300, 150).unwrap());
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn already_expired_ticket_is_refused() {
        let store = MemoryTicketStore::new();
        assert!(!store.consume_at("a", 10, 11).unwrap());
    }

    #[tokio::test]
    async fn usable_as_trait_object() {
        let store: Arc<dyn TicketStore> = Arc::new(MemoryTicketStore::new());
        let exp = unix_now() + 60;
        assert!(store.consume("x", exp).await.unwrap());
        assert!(!store.consume("x", exp).await.unwrap());
    }
}
