//! The recent-update set: Telegram re-delivers an update when the answer was slow, so an
//! `update_id` seen recently is handled once. Bounded: the oldest ids are forgotten first.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// How many recent update ids are remembered by default.
pub const DEFAULT_RECENT_UPDATES: usize = 10_000;

/// A bounded set of recently seen update ids.
#[derive(Debug)]
pub struct RecentUpdates {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    ids: HashSet<i64>,
    order: VecDeque<i64>,
}

impl RecentUpdates {
    /// A set remembering the last `capacity` ids (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records `id`; `true` when it was not seen recently (handle it), `false` for a
    /// re-delivery (ignore it).
    pub fn first_time(&self, id: i64) -> bool {
        // A poisoned lock only means another thread panicked mid-insert; the set is still
        // a valid set.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !inner.ids.insert(id) {
            return false;
        }
        inner.order.push_back(id);
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.ids.remove(&old);
            }
        }
        true
    }

    /// How many ids are remembered now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .order
            .len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for RecentUpdates {
    fn default() -> Self {
        Self::new(DEFAULT_RECENT_UPDATES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_and_the_set_stays_bounded() {
        let set = RecentUpdates::new(3);
        assert!(set.first_time(1));
        assert!(!set.first_time(1));
        assert!(set.first_time(2));
        assert!(set.first_time(3));
        assert!(set.first_time(4));
        assert_eq!(set.len(), 3);
        // 1 was forgotten (oldest), 2..4 are remembered.
        assert!(set.first_time(1));
        assert!(!set.first_time(4));
        assert_eq!(set.len(), 3);
    }
}
