//! The bridge from domain call events to the signaling hub: an ended call's room gets
//! `call_ended` and its sockets close.

use std::sync::Arc;

use telcall_domain::{CallCode, CallEvents, EndReason};
use telcall_signaling::Hub;

/// [`CallEvents`] delivered to the signaling hub.
pub struct HubCallEvents {
    hub: Arc<Hub>,
}

impl HubCallEvents {
    /// Events for `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

/// The signaling protocol's `call_ended` reason for a domain end reason: the one mapping,
/// used by the hub events and by a session that finds its call ended.
pub fn wire_reason(reason: EndReason) -> telcall_signaling::EndReason {
    match reason {
        EndReason::Ended => telcall_signaling::EndReason::Ended,
        EndReason::Expired => telcall_signaling::EndReason::Expired,
        EndReason::ActiveLimit => telcall_signaling::EndReason::ActiveCallsLimit,
        EndReason::MaxDuration(hours) => telcall_signaling::EndReason::MaxDuration { hours },
    }
}

impl CallEvents for HubCallEvents {
    fn call_ended(&self, code: &CallCode, reason: EndReason) {
        let reason = wire_reason(reason);
        tracing::info!(call = %code, %reason, "call ended; closing its room");
        self.hub.end_room(code.as_str(), reason);
    }

    fn has_ended(&self, code: &CallCode) -> bool {
        // While the ends of other instances do not reach this hub (Redis unreachable), it
        // cannot vouch for any call: say "maybe", and the call is read from storage.
        !self.hub.hears_every_end() || self.hub.has_ended(code.as_str())
    }

    fn ends_epoch(&self) -> u64 {
        self.hub.ends_epoch()
    }
}
