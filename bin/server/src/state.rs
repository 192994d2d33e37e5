//! `AppState`: everything a request handler or WebSocket session needs, built once at
//! start-up and shared (cheaply cloned) by every worker.

use std::sync::Arc;

use telcall_auth::{InitDataVerifier, RevocationStore, Sessions, TicketStore};
use telcall_domain::{
    CallNotifier, CallService, Clock, FriendService, Repositories, StatsService, UserService,
};
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
    /// Sign-in (users from Telegram accounts) and authentication (the user behind a
    /// session).
    pub users: UserService,
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
    /// Revoked sessions (logout).
    pub revocations: Arc<dyn RevocationStore>,
    /// The WebSockets each session opened (closed when it is revoked).
    pub session_sockets: crate::ws::SessionSockets,
    /// Friend-call notifications.
    pub notifier: Arc<dyn CallNotifier>,
    /// The Telegram bot (webhook and polling updates).
    pub bot: Arc<telcall_telegram::Bot>,
    /// The secret Telegram presents on webhook requests.
    pub webhook_secret: Arc<telcall_telegram::WebhookSecret>,
    /// Signaling rooms.
    pub hub: Arc<Hub>,
    /// STUN/TURN servers with their last reachability.
    pub turn: Arc<TurnDirectory>,
    /// Open connections, in total and per client address.
    pub connections: crate::connections::ConnectionLimiter,
    /// WebSocket upgrades being served, each on a task of its own (waited for at shutdown).
    pub upgraded: crate::ws::upgrade::UpgradedSockets,
    /// Background recording of WebSocket joins and leaves (off the relay path).
    pub presence: crate::ws::Presence,
    /// The Redis shared with other instances (`REDIS_URL`), if any.
    pub redis: Option<telcall_redis::Redis>,
    /// The hub's broker to other instances (with `REDIS_URL`), for its counters.
    pub broker: Option<Arc<telcall_redis::RedisBroker>>,
}
