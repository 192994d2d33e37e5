//! A small bounded map whose entries are used for a fixed time after they were read from
//! storage: the user behind a session ([`crate::UserService::with_cache`]) and an active
//! call ([`crate::CallService::with_cache`]).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};

/// Locks that let one read per key at a time go to storage ([`TtlCache::loading`]); keys
/// share them by hash, so the set stays this small whatever the number of keys.
const LOAD_LOCKS: usize = 64;

/// Values kept for `ttl` each, at most `capacity` of them.
pub(crate) struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, (V, DateTime<Utc>)>>,
    hasher: RandomState,
    loads: Box<[futures_util::lock::Mutex<()>]>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// A cache keeping each value for `ttl`; `None` when `ttl` or `capacity` is zero (the
    /// caller then reads storage every time).
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Option<Self> {
        (ttl > Duration::zero() && capacity > 0).then(|| Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
            loads: (0..LOAD_LOCKS)
                .map(|_| futures_util::lock::Mutex::new(()))
                .collect(),
        })
    }

    /// Waits until no other caller holding this key's guard is reading it from storage.
    /// Callers that missed take the guard, look again, and only the first reads: when a
    /// call's link is opened by everyone at once, storage sees one read, not one per
    /// person. (Keys with the same hash share a guard, which costs them a wait, never a
    /// wrong value.)
    pub(crate) async fn loading(&self, key: &K) -> futures_util::lock::MutexGuard<'_, ()> {
        let slot = self.hasher.hash_one(key) as usize % self.loads.len();
        self.loads[slot].lock().await
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, DateTime<Utc>)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value kept for `key`, if it was put less than the cache's time before `now`.
    pub(crate) fn fresh(&self, key: &K, now: DateTime<Utc>) -> Option<V> {
        self.entries()
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(value, _)| value.clone())
    }

    /// Keeps `value` for `key` from `now`. A full cache first drops what is stale, and
    /// starts over when everything is fresh rather than grow (entries come back on use).
    pub(crate) fn put(&self, key: K, value: V, now: DateTime<Utc>) {
        let mut entries = self.entries();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, now + self.ttl));
    }

    /// Forgets `key` (its stored state changed).
    pub(crate) fn remove(&self, key: &K) {
        self.entries().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_value_is_fresh_for_its_time_only() {
        let cache = TtlCache::new(Duration::seconds(5), 10).unwrap();
        cache.put(1, "a", at(0));
        assert_eq!(cache.fresh(&1, at(4)), Some("a"));
        assert_eq!(cache.fresh(&1, at(5)), None);
        assert_eq!(cache.fresh(&2, at(0)), None);
    }

    #[test]
    fn a_removed_value_is_gone() {
        let cache = TtlCache::new(Duration::seconds(5), 10).unwrap();
        cache.put(1, "a", at(0));
        cache.remove(&1);
        assert_eq!(cache.fresh(&1, at(1)), None);
    }

    #[test]
    fn a_full_cache_never_grows_past_its_capacity() {
        let cache = TtlCache::new(Duration::seconds(5), 3).unwrap();
        for key in 0..3 {
            cache.put(key, key, at(0));
        }
        // Stale entries make room first.
        cache.put(10, 10, at(6));
        assert_eq!(cache.entries().len(), 1);
        for key in 0..100 {
            cache.put(key, key, at(7));
            assert!(cache.entries().len() <= 3);
        }
        assert_eq!(cache.fresh(&99, at(8)), Some(99));
    }

    #[test]
    fn zero_time_or_capacity_keeps_nothing() {
        assert!(TtlCache::<u8, u8>::new(Duration::zero(), 10).is_none());
        assert!(TtlCache::<u8, u8>::new(Duration::seconds(1), 0).is_none());
    }
}
