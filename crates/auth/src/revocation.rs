//! Revoked sessions: the [`RevocationStore`] trait and its in-memory implementation.
//!
//! Logging out revokes the session token's `jti`. A revoked token must then be refused
//! everywhere until it would have expired anyway; after that the entry is useless and is
//! dropped, so the store never holds more than the sessions revoked within one token
//! lifetime.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::clock::unix_now;

/// Default number of unexpired revocations a [`MemoryRevocationStore`] remembers.
///
/// Each revocation needs a sign-in first (itself rate limited), so even at many logouts per
/// second the store stays well below this within a 4-hour token lifetime.
pub const DEFAULT_REVOCATION_STORE_CAPACITY: usize = 200_000;

/// Failure of a [`RevocationStore`]. A check that fails must refuse the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationStoreError {
    /// The store holds its maximum number of unexpired revocations.
    #[error("revocation store is full ({capacity} unexpired revocations)")]
    Full {
        /// The configured capacity.
        capacity: usize,
    },
    /// The backing service (e.g. Redis) failed.
    #[error("revocation store backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// Remembers revoked token ids (`jti`) until the tokens expire.
///
/// Object-safe: use it as `Arc<dyn RevocationStore>`. A shared implementation (e.g. Redis
/// `SET revoked:<jti> 1 EXAT expires_at` and `EXISTS`) makes a logout hold on every
/// instance.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Revokes `jti`. `expires_at` (unix seconds) is when the token stops being acceptable
    /// anyway; the revocation must be remembered at least until then and may be forgotten
    /// afterwards. Revoking twice is not an error.
    async fn revoke(&self, jti: &str, expires_at: i64) -> Result<(), RevocationStoreError>;

    /// Whether `jti` was revoked (and its token has not expired yet).
    async fn is_revoked(&self, jti: &str) -> Result<bool, RevocationStoreError>;

    /// Those of `jtis` that are revoked (a shared store answers in one round trip; the
    /// default asks [`RevocationStore::is_revoked`] for each).
    async fn revoked_among(&self, jtis: &[String]) -> Result<Vec<String>, RevocationStoreError> {
        let mut revoked = Vec::new();
        for jti in jtis {
            if self.is_revoked(jti).await? {
                revoked.push(jti.clone());
            }
        }
        Ok(revoked)
    }
}

/// In-memory [`RevocationStore`] for a single instance: bounded, expired entries purged on
/// every call, the lock never held across an `.await`.
#[derive(Debug)]
pub struct MemoryRevocationStore {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Revoked id → when it may be forgotten.
    revoked: HashMap<String, i64>,
    /// Expiry queue, soonest first (an id revoked twice may appear twice).
    expiries: BinaryHeap<Reverse<(i64, String)>>,
}

impl Default for MemoryRevocationStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRevocationStore {
    /// A store with [`DEFAULT_REVOCATION_STORE_CAPACITY`].
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_REVOCATION_STORE_CAPACITY)
    }

    /// A store remembering at most `capacity` unexpired revocations.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Unexpired revocations held now (expired ones are dropped on the next call).
    pub fn len(&self) -> usize {
        self.lock().revoked.len()
    }

    /// Whether no revocation is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`RevocationStore::revoke`] at unix time `now`.
    pub fn revoke_at(
        &self,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), RevocationStoreError> {
        let mut inner = self.lock();
        inner.purge(now);
        if expires_at < now {
            // The token is refused as expired already.
            return Ok(());
        }
        match inner.revoked.get(jti) {
            Some(&until) if until >= expires_at => return Ok(()),
            Some(_) => {}
            None if inner.revoked.len() >= self.capacity => {
                return Err(RevocationStoreError::Full {
                    capacity: self.capacity,
                });
            }
            None => {}
        }
        inner.revoked.insert(jti.to_owned(), expires_at);
        inner.expiries.push(Reverse((expires_at, jti.to_owned())));
        Ok(())
    }

    /// [`RevocationStore::is_revoked`] at unix time `now`.
    pub fn is_revoked_at(&self, jti: &str, now: i64) -> bool {
        let mut inner = self.lock();
        inner.purge(now);
        inner.revoked.contains_key(jti)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn purge(&mut self, now: i64) {
        while let Some(Reverse((at, _))) = self.expiries.peek() {
            if *at >= now {
                break;
            }
            if let Some(Reverse((at, jti))) = self.expiries.pop()
                && self.revoked.get(&jti) == Some(&at)
            {
                self.revoked.remove(&jti);
            }
        }
    }
}

#[async_trait]
impl RevocationStore for MemoryRevocationStore {
    async fn revoke(&self, jti: &str, expires_at: i64) -> Result<(), RevocationStoreError> {
        self.revoke_at(jti, expires_at, unix_now())
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, RevocationStoreError> {
        Ok(self.is_revoked_at(jti, unix_now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_until_expiry_then_forgotten() {
        let s = MemoryRevocationStore::new();
        s.revoke_at("a", 1_000, 100).unwrap();
        assert!(s.is_revoked_at("a", 500));
        assert!(s.is_revoked_at("a", 1_000));
        assert!(!s.is_revoked_at("b", 500));
        assert!(!s.is_revoked_at("a", 1_001));
        assert!(s.is_empty());
    }

    #[test]
    fn bounded_by_capacity_of_unexpired_entries() {
        let s = MemoryRevocationStore::with_capacity(2);
        s.revoke_at("a", 200, 100).unwrap();
        s.revoke_at("b", 300, 100).unwrap();
        assert!(matches!(
            s.revoke_at("c", 300, 100),
            Err(RevocationStoreError::Full { capacity: 2 })
        ));
        // Revoking a held id again is fine when full.
        s.revoke_at("a", 200, 100).unwrap();
        // Once "a" has expired there is room again.
        s.revoke_at("c", 300, 201).unwrap();
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_later_expiry_extends_an_earlier_one() {
        let s = MemoryRevocationStore::new();
        s.revoke_at("a", 200, 100).unwrap();
        s.revoke_at("a", 400, 100).unwrap();
        assert!(s.is_revoked_at("a", 300));
        assert!(!s.is_revoked_at("a", 401));
    }

    #[test]
    fn already_expired_tokens_are_not_stored() {
        let s = MemoryRevocationStore::new();
        s.revoke_at("a", 50, 100).unwrap();
        assert!(s.is_empty());
    }
}
