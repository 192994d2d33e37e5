//! WebRTC signaling for telcall: the wire protocol of `GET /ws/calls/{call_id}` and an
//! in-memory room hub with bounded per-connection queues, independent of any web framework.
//!
//! - [`protocol`]: client and server messages as serde types, exactly as CONTRACT.md writes
//!   them ([`parse_client_message`], [`ServerMessage`], [`SignalingUser`], [`EndReason`]).
//! - [`Hub`]: rooms keyed by call code. [`Hub::join`] hands back a [`ConnectionHandle`] and
//!   an [`Outbox`] (the connection's bounded queue of [`Outbound`] items); [`Hub::handle_text`]
//!   relays a client frame with a lookup and a `try_send`; [`Hub::leave`], [`Hub::end_room`],
//!   [`Hub::close_all`] and [`Hub::stats`] do the rest.
//! - [`Broker`]: the seam to other instances; [`LocalBroker`] is the single-instance one.
//! - [`close`]: the close codes and reasons the transport sends.
//!
//! # Driving a connection (the transport's side)
//!
//! The hub never touches a socket. A WebSocket bridge does, per connection:
//!
//! ```ignore
//! let Joined { handle, mut outbox, replaced, .. } = match hub.join(&call_code, user) {
//!     Ok(joined) => joined,
//!     Err(JoinError::RoomFull) => return ws.close(close::ROOM_FULL, close::REASON_ROOM_FULL),
//!     Err(JoinError::ShuttingDown) => return ws.close(close::GOING_AWAY, close::REASON_SHUTDOWN),
//! };
//! // persist the join off the relay path (spawned task), using `replaced` if useful
//! loop {
//!     tokio::select! {
//!         item = outbox.recv() => match item {
//!             Some(Outbound::Text(frame)) => ws.send_text(&frame).await?,
//!             // 1000 after call_ended, 1013 too slow, 4409 replaced, 1001 shutdown
//!             Some(Outbound::Close { code, reason }) => { ws.close(code, &reason).await; break }
//!             None => { ws.close(close::NORMAL, "").await; break }
//!         },
//!         incoming = ws.next() => match incoming {
//!             Some(Text(text)) => { let _ = hub.handle_text(&handle, &text); } // errors already queued
//!             Some(Binary(_)) => { hub.send_error(&handle, &ProtocolError::InvalidJson); }
//!             Some(Ping(p)) => ws.pong(&p).await?,
//!             Some(Close(_)) | None => break,
//!         },
//!     }
//! }
//! // Stale (`false`) when replaced (the stay goes on) or removed by end_room / close_all.
//! if hub.leave(&handle) || !handle.is_replaced() { /* persist the leave time (spawned task) */ }
//! ```
//!
//! Both `Outbox::recv` and the socket read are cancel-safe, so one task can `select!` on
//! them; the outbox is the socket's only writer of hub frames.

//! # Example
//!
//! ```
//! use telcall_signaling::{Hub, HubConfig, Outbound, ServerMessage, SignalingUser, UserId};
//!
//! let hub = Hub::new(HubConfig::default());
//! let mut alice = hub.join("call-code", SignalingUser::with_id(UserId::new(1)))?;
//! let mut bob = hub.join("call-code", SignalingUser::with_id(UserId::new(2)))?;
//!
//! // Alice got call_metadata, then user_joined for Bob.
//! assert!(matches!(alice.outbox.try_recv(), Some(Outbound::Text(f)) if f.contains("call_metadata")));
//! assert!(matches!(alice.outbox.try_recv(), Some(Outbound::Text(f)) if f.contains("user_joined")));
//!
//! // Bob sends Alice an offer; she gets it with `from_user`.
//! hub.handle_text(&bob.handle, r#"{"type":"offer","payload":{"sdp":"v=0"},"to_user_id":1}"#)?;
//! let Some(Outbound::Text(frame)) = alice.outbox.try_recv() else { panic!("no offer") };
//! assert_eq!(&*frame, r#"{"type":"offer","payload":{"sdp":"v=0"},"from_user":{"id":2,"username":null,"first_name":null,"last_name":null,"photo_url":null}}"#);
//! assert!(matches!(ServerMessage::parse(&frame), Some(ServerMessage::Offer { .. })));
//!
//! // Bob leaves: Alice gets user_left.
//! assert!(hub.leave(&bob.handle));
//! assert!(matches!(alice.outbox.try_recv(), Some(Outbound::Text(f)) if f.contains("user_left")));
//! # while bob.outbox.try_recv().is_some() {}
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod broker;
pub mod close;
pub mod error;
pub mod hub;
pub mod protocol;

pub use broker::{Broker, LocalBroker, RoomEvent, RoomEventSink};
pub use error::{JoinError, ProtocolError};
pub use hub::{
    ConnectionHandle, ConnectionId, Hub, HubConfig, HubStats, Joined, Outbound, Outbox,
    RelayOutcome,
};
pub use protocol::{
    ClientMessage, EndReason, Frame, ServerMessage, SignalKind, SignalingUser, format_timestamp,
    parse_client_message, relay_frame,
};
/// The user id every message and room is keyed by (the domain's, re-exported so that
/// brokers and bridges need not depend on the domain crate to name it).
pub use telcall_domain::UserId;
