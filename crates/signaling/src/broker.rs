//! The `Broker` seam between a hub and other telcall instances, and its in-memory `LocalBroker`.
//!
//! The hub never writes to a peer's queue for a room event itself: it *publishes* a
//! [`RoomEvent`] (relay to one user, broadcast to a room, end a room) to its broker, and the
//! broker hands events addressed to this instance's connections back to the hub through the
//! [`RoomEventSink`] it was attached to. [`LocalBroker`] (one instance, today's default) hands
//! every event straight back, synchronously: the local fast path stays one in-memory channel
//! send per recipient.
//!
//! A multi-instance broker (Redis pub/sub) keeps the same shape: `publish` delivers to the
//! local sink at once and enqueues the event (it is `Serialize`) on a bounded queue that a
//! background task publishes on a per-room channel; its subscriber task deserialises events
//! from other instances and calls [`RoomEventSink::deliver`]. [`Broker::room_opened`] /
//! [`Broker::room_closed`] tell it which room channels to (un)subscribe, and
//! [`Broker::has_remote_member`] lets the hub relay to a participant connected elsewhere.

use std::sync::{Arc, OnceLock, Weak};

use serde::{Deserialize, Serialize};
use telcall_domain::UserId;

use crate::protocol::{Frame, SignalingUser};

/// An event about a room, addressed to whichever instances hold its connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RoomEvent {
    /// Deliver `frame` to `user_id`'s connection in `room` (a relayed signal).
    ToUser {
        /// Call code of the room.
        #[serde(with = "arc_str")]
        room: Arc<str>,
        /// Addressee.
        user_id: UserId,
        /// The serialised message.
        #[serde(with = "arc_str")]
        frame: Frame,
    },
    /// Deliver `frame` to every connection in `room`, except `except_user`'s.
    Broadcast {
        /// Call code of the room.
        #[serde(with = "arc_str")]
        room: Arc<str>,
        /// A user who must not receive it (the one who joined or left).
        except_user: Option<UserId>,
        /// The serialised message.
        #[serde(with = "arc_str")]
        frame: Frame,
    },
    /// Send `call_ended` with `reason` to every connection in `room`, then close them (1000).
    EndRoom {
        /// Call code of the room.
        #[serde(with = "arc_str")]
        room: Arc<str>,
        /// The `call_ended` reason.
        reason: String,
    },
}

impl RoomEvent {
    /// The call code of the room this event is about.
    pub fn room(&self) -> &str {
        match self {
            Self::ToUser { room, .. }
            | Self::Broadcast { room, .. }
            | Self::EndRoom { room, .. } => room,
        }
    }
}

/// Where a broker delivers events addressed to this instance's connections (the hub).
pub trait RoomEventSink: Send + Sync {
    /// Delivers `event` to the local connections of its room, if any. Never blocks.
    fn deliver(&self, event: &RoomEvent);

    /// `user_id` joined `room` on another instance: their connection in `room` here, if
    /// any, is replaced (closed with 4409, without `user_left` for the others, who get
    /// `user_joined` for the new connection from the other instance). Never blocks; never
    /// called while the hub holds one of its locks.
    fn replaced_elsewhere(&self, room: &str, user_id: UserId) {
        let _ = (room, user_id);
    }
}

/// Carries room events between hubs.
///
/// Contract for implementations:
/// - [`publish`](Broker::publish) is called on the relay path, possibly while the hub holds
///   one of its (synchronous) room locks: it must not block, must not await, and must queue
///   nothing unboundedly; it may call the attached sink's `deliver` synchronously (the hub's
///   delivery side uses separate locks, taken after its room locks, never before).
/// - Events from one `publish` caller must reach each instance in publish order (per room).
pub trait Broker: Send + Sync + 'static {
    /// Connects the broker to the hub that receives its events. Called once, by
    /// [`Hub::with_broker`](crate::Hub::with_broker).
    fn attach(&self, sink: Weak<dyn RoomEventSink>);

    /// Publishes an event to every instance that holds connections of its room, this one
    /// included.
    fn publish(&self, event: RoomEvent);

    /// Whether `user_id` is in `room` on another instance (so a relay to them is not
    /// "Target user is offline"). A single instance has no remote members.
    fn has_remote_member(&self, room: &str, user_id: UserId) -> bool {
        let _ = (room, user_id);
        false
    }

    /// The members of `room` connected to other instances, in join order, for the
    /// `participants_snapshot` of a local joiner. A single instance has none.
    fn remote_members(&self, room: &str) -> Vec<SignalingUser> {
        let _ = room;
        Vec::new()
    }

    /// This instance now has connections in `room` (a multi-instance broker subscribes).
    fn room_opened(&self, room: &str) {
        let _ = room;
    }

    /// This instance no longer has connections in `room` (a multi-instance broker unsubscribes).
    fn room_closed(&self, room: &str) {
        let _ = room;
    }

    /// Whether every room's end, from any instance, reaches this instance's hub now, so
    /// that the hub's memory of ended rooms is complete ([`crate::Hub::hears_every_end`]).
    /// Always, with one instance; with several, only while the link to the others is up.
    fn hears_every_end(&self) -> bool {
        true
    }

    /// A number that changes every time [`Broker::hears_every_end`] becomes true again after
    /// it was false: ends published meanwhile were missed. Never changes with one instance.
    fn ends_epoch(&self) -> u64 {
        0
    }
}

/// The single-instance broker: every event is delivered to the local hub at once.
#[derive(Default)]
pub struct LocalBroker {
    sink: OnceLock<Weak<dyn RoomEventSink>>,
}

impl LocalBroker {
    /// A broker attached to nothing yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for LocalBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBroker")
            .field("attached", &self.sink.get().is_some())
            .finish()
    }
}

impl Broker for LocalBroker {
    /// Only the first hub attached is served; a `LocalBroker` belongs to one hub.
    fn attach(&self, sink: Weak<dyn RoomEventSink>) {
        if self.sink.set(sink).is_err() {
            tracing::warn!("LocalBroker attached twice; keeping the first hub");
        }
    }

    fn publish(&self, event: RoomEvent) {
        if let Some(sink) = self.sink.get().and_then(Weak::upgrade) {
            sink.deliver(&event);
        }
    }
}

/// Serde for `Arc<str>` without serde's `rc` feature.
mod arc_str {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(d).map(Arc::from)
    }
}
