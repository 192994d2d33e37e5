//! Effects of call changes on the world outside storage: the signaling rooms
//! ([`CallEvents`]) and Telegram notifications ([`CallNotifier`]).

use async_trait::async_trait;

use crate::entities::{Call, CallCode, User};

/// Why a call ended. The `call_ended` message's `reason` text for it is the signaling
/// protocol's business (`telcall-signaling`'s `EndReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The organizer ended it.
    Ended,
    /// Its lifetime passed.
    Expired,
    /// The organizer created one call too many and this, the oldest, was ended.
    ActiveLimit,
    /// A session ran past the maximum call duration (hours).
    MaxDuration(u32),
}

/// Receives call lifecycle events; the signaling hub implements it to close rooms.
///
/// Implementations must not block: they are called on request paths.
pub trait CallEvents: Send + Sync + 'static {
    /// The call with this code ended for `reason`.
    fn call_ended(&self, code: &CallCode, reason: EndReason);

    /// Whether the call with this code is known to have ended lately (told to
    /// [`CallEvents::call_ended`] here, or, with several instances, on another instance),
    /// or may have without this instance hearing of it (its link to the others is down).
    /// A call cached as active is not used while this says so
    /// ([`crate::CallService::with_cache`]).
    fn has_ended(&self, code: &CallCode) -> bool;

    /// A number that changes every time this instance starts hearing the other instances'
    /// ends again after it could not (their link came back): a call cached before the
    /// change may have ended unheard and is read again. One instance hears everything:
    /// the default never changes.
    fn ends_epoch(&self) -> u64 {
        0
    }
}

/// A [`CallEvents`] that remembers what it was told; for tests (feature `test-util`).
#[cfg(feature = "test-util")]
#[derive(Debug, Default)]
pub struct RecordingCallEvents {
    events: std::sync::Mutex<Vec<(CallCode, EndReason)>>,
}

#[cfg(feature = "test-util")]
impl RecordingCallEvents {
    /// Everything recorded so far, oldest first.
    pub fn events(&self) -> Vec<(CallCode, EndReason)> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(feature = "test-util")]
impl CallEvents for RecordingCallEvents {
    fn call_ended(&self, code: &CallCode, reason: EndReason) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((code.clone(), reason));
    }

    fn has_ended(&self, code: &CallCode) -> bool {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(c, _)| c == code)
    }
}

/// A failed notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notification failed: {0}")]
pub struct NotifyError(pub String);

/// Tells a user that a friend is calling them (the Telegram bot in production).
#[async_trait]
pub trait CallNotifier: Send + Sync + 'static {
    /// Notify `to` that `from` calls them on `call`, joinable at `join_url`.
    async fn notify_call(
        &self,
        to: &User,
        from: &User,
        call: &Call,
        join_url: &str,
    ) -> Result<(), NotifyError>;
}
