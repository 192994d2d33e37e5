//! The system clock as unix seconds, the one place this crate reads the time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Current unix time in seconds (0 if the system clock is before 1970).
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
