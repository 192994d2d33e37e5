//! The WebSockets each session opened, so that logging out (revoking the session) closes
//! them: with **4401** "Invalid token", the code a revoked credential gets at the handshake.
//!
//! A connection is registered under its session id (the session token's `jti`, or the
//! `sid` of the ticket it used) when it joins, and removed when it ends. A logout takes the
//! session's connections and asks the hub to close each one; their sessions then leave the
//! room as usual, so the others get `user_left`.
//!
//! With several instances, a logout on another instance is seen by
//! [`spawn_revocation_watch`]: every [`REVOCATION_WATCH_INTERVAL`] it asks the shared
//! revocation store, in one round trip, which of the sessions holding connections here
//! were revoked, and closes their connections the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use std::time::Duration;

use telcall_signaling::{ConnectionHandle, ConnectionId, Hub, close};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// How often the connections' sessions are checked against the shared revocations.
pub const REVOCATION_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Open connections by session id. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct SessionSockets {
    inner: Arc<Mutex<HashMap<String, Vec<ConnectionHandle>>>>,
}

impl SessionSockets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<ConnectionHandle>>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `handle` was opened by session `session_id`.
    pub fn add(&self, session_id: &str, handle: ConnectionHandle) {
        self.lock()
            .entry(session_id.to_owned())
            .or_default()
            .push(handle);
    }

    /// Forgets connection `id` of session `session_id` (it ended).
    pub fn remove(&self, session_id: &str, id: ConnectionId) {
        let mut map = self.lock();
        if let Some(list) = map.get_mut(session_id) {
            list.retain(|h| h.id() != id);
            if list.is_empty() {
                map.remove(session_id);
            }
        }
    }

    /// Closes every connection session `session_id` opened with [`close::UNAUTHORIZED`] ("Invalid token");
    /// returns how many were told to close.
    pub fn close_session(&self, hub: &Hub, session_id: &str) -> usize {
        let handles = self.lock().remove(session_id).unwrap_or_default();
        handles
            .iter()
            .filter(|h| hub.close_connection(h, close::UNAUTHORIZED, close::REASON_SESSION_REVOKED))
            .count()
    }

    /// The sessions with at least one open connection.
    pub fn session_ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Sessions with at least one open connection.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session has an open connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Closes the connections of sessions revoked elsewhere (another instance's logout), until
/// shutdown. A failed check is logged and tried again on the next tick.
pub fn spawn_revocation_watch(
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(REVOCATION_WATCH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = crate::stopped(&mut shutdown) => return,
            }
            let sessions = state.session_sockets.session_ids();
            if sessions.is_empty() {
                continue;
            }
            match state.revocations.revoked_among(&sessions).await {
                Ok(revoked) => {
                    for session in revoked {
                        let closed = state.session_sockets.close_session(&state.hub, &session);
                        tracing::info!(
                            websockets_closed = closed,
                            "session revoked on another instance"
                        );
                    }
                }
                Err(error) => tracing::debug!(%error, "could not check sessions for revocation"),
            }
        }
    })
}
