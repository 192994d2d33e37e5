//! `AppState`: everything a request handler or WebSocket session needs, built once at
//! start-up and shared (cheaply cloned) by every worker.

use std::sync::Arc;

use telcall_auth::{InitDataVerifier, Sessions, TicketStore};
use telcall_domain::{CallNotifier, CallService, Clock, FriendService, Repositories, StatsService};
use telcall_signaling::Hub;

use crate::config::Settings;
use crate::turn::TurnDirectory;

/// Shared application state.
#[derive(Clone)]
pub struct AppState {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// Storage.
    pub repo: Arc<dyn Repositories>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Call rules.
    pub calls: CallService,
    /// Friend rules.
    pub friends: FriendService,
    /// Statistics rules.
    pub stats: StatsService,
    /// Telegram initData verification.
    pub verifier: Arc<InitDataVerifier>,
    /// JWT sessions and WebSocket tickets.
    pub sessions: Arc<Sessions>,
    /// Single-use store of WebSocket tickets.
    pub tickets: Arc<dyn TicketStore>,
    /// Friend-call notifications.
    pub notifier: Arc<dyn CallNotifier>,
    /// Signaling rooms.
    pub hub: Arc<Hub>,
    /// STUN/TURN servers with their last reachability.
    pub turn: Arc<TurnDirectory>,
    /// Background recording of WebSocket joins and leaves (off the relay path).
    pub presence: crate::ws::Presence,
}
