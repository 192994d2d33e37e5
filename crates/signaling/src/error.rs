//! Errors of the signaling crate: what a client frame can be refused for, and why a join fails.

use thiserror::Error;

use crate::protocol::{Frame, ServerMessage};

/// Why a client frame was refused. The `Display` text is exactly CONTRACT's `detail`.
///
/// Each is answered with `{"type":"error","detail":<text>}` and the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// Not JSON, JSON that is not an object, or a binary frame.
    #[error("Invalid JSON")]
    InvalidJson,
    /// `type` missing, not a string, or not `offer`/`answer`/`ice_candidate`.
    #[error("Unsupported message type")]
    UnsupportedType,
    /// `to_user_id` missing, or neither an integer nor a numeric string.
    #[error("Invalid or missing to_user_id")]
    InvalidTarget,
    /// The frame's UTF-8 size is above the configured limit.
    #[error("Message too large: {size} bytes (max {limit} bytes)")]
    TooLarge {
        /// Size of the frame in bytes.
        size: usize,
        /// The configured maximum (`MAX_WEBSOCKET_MESSAGE_SIZE`).
        limit: usize,
    },
    /// The addressee is not in the room.
    #[error("Target user is offline")]
    TargetOffline,
}

impl ProtocolError {
    /// The `error` frame that answers this refusal.
    pub fn to_frame(&self) -> Frame {
        ServerMessage::Error {
            detail: self.to_string(),
        }
        .to_frame()
    }
}

/// Why [`Hub::join`](crate::Hub::join) refused a connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JoinError {
    /// The room already holds its maximum number of participants: close with
    /// [`close::ROOM_FULL`](crate::close::ROOM_FULL) "Call is full".
    #[error("Call is full")]
    RoomFull,
    /// The user already holds the most connections one user may hold
    /// ([`HubConfig::max_connections_per_user`](crate::HubConfig::max_connections_per_user)):
    /// close with [`close::TOO_MANY_CONNECTIONS`](crate::close::TOO_MANY_CONNECTIONS).
    #[error("Too many connections for this user")]
    TooManyConnections,
    /// The hub was shut down with [`Hub::close_all`](crate::Hub::close_all): close with
    /// [`close::GOING_AWAY`](crate::close::GOING_AWAY).
    #[error("Server is shutting down")]
    ShuttingDown,
    /// The room's call ended lately ([`Hub::end_room`](crate::Hub::end_room), here or on
    /// another instance) with this `call_ended` reason: close with
    /// [`close::CALL_NOT_AVAILABLE`](crate::close::CALL_NOT_AVAILABLE), as a handshake that
    /// read the ended call would.
    #[error("Call has ended ({reason})")]
    Ended {
        /// The `call_ended` reason (`ended`, `expired`, ...).
        reason: String,
    },
}
