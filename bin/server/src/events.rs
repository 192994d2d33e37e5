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

impl CallEvents for HubCallEvents {
    fn call_ended(&self, code: &CallCode, reason: EndReason) {
        tracing::info!(call = %code, reason = %reason.wire_text(), "call ended; closing its room");
        self.hub.end_room(code.as_str(), reason.wire_text());
    }
}
