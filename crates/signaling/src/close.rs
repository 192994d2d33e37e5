//! WebSocket close codes and reasons of CONTRACT.md, for the transport to send.

/// Normal closure: sent after `call_ended`.
pub const NORMAL: u16 = 1000;
/// Going away: server shutdown ([`Hub::close_all`](crate::Hub::close_all)); clients reconnect elsewhere.
pub const GOING_AWAY: u16 = 1001;
/// Try again later: the connection did not read its messages and its queue filled up.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// The handshake's credential was missing or invalid.
pub const UNAUTHORIZED: u16 = 4401;
/// The handshake's `Origin` is not allowed.
pub const ORIGIN_NOT_ALLOWED: u16 = 4403;
/// The call does not exist, has expired or has ended.
pub const CALL_NOT_AVAILABLE: u16 = 4404;
/// A newer connection of the same user replaced this one.
pub const REPLACED: u16 = 4409;
/// The room is full.
pub const ROOM_FULL: u16 = 4429;

/// Reason sent with [`NORMAL`] after `call_ended`; the frontend looks for "please create a new call".
pub const REASON_CALL_ENDED: &str = "Call has ended. Please create a new call.";
/// Reason sent with [`TRY_AGAIN_LATER`] to a connection whose queue filled up.
pub const REASON_TOO_SLOW: &str = "Connection too slow: outbound queue full";
/// Reason sent with [`REPLACED`].
pub const REASON_REPLACED: &str = "Replaced by a newer connection";
/// Reason sent with [`ROOM_FULL`].
pub const REASON_ROOM_FULL: &str = "Call is full";
/// Reason sent with [`GOING_AWAY`] at shutdown.
pub const REASON_SHUTDOWN: &str = "Server is shutting down";
