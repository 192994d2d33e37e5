//! Every WebSocket close code and reason telcall sends (CONTRACT.md's and the standard
//! ones), in one place: the hub and the server's WebSocket bridge (handshake refusals,
//! session ends, logout, shutdown) take them from here.

/// Normal closure: sent after `call_ended`.
pub const NORMAL: u16 = 1000;
/// Going away: server shutdown ([`Hub::close_all`](crate::Hub::close_all)); clients reconnect elsewhere.
pub const GOING_AWAY: u16 = 1001;
/// Protocol error: the client broke the WebSocket framing rules.
pub const PROTOCOL_ERROR: u16 = 1002;
/// Policy violation: the client kept flooding after being warned.
pub const POLICY_VIOLATION: u16 = 1008;
/// Internal error: the server failed during the handshake (database, ticket store).
pub const INTERNAL_ERROR: u16 = 1011;
/// Try again later: the connection did not read its messages and its queue filled up.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// A connection silent for too long ("going away": a client that is still alive
/// reconnects).
pub const IDLE_TIMEOUT: u16 = GOING_AWAY;
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
/// The user already holds the most connections one user may hold (across calls). The same
/// code as [`ROOM_FULL`] ("too many", as HTTP 429), so a client that knows only that code
/// treats it as a refusal rather than a network error to retry at once; the reason tells
/// them apart.
pub const TOO_MANY_CONNECTIONS: u16 = 4429;

/// Reason sent with [`NORMAL`] after `call_ended`; the frontend looks for "please create a new call".
pub const REASON_CALL_ENDED: &str = "Call has ended. Please create a new call.";
/// Reason sent with [`TRY_AGAIN_LATER`] to a connection whose queue filled up.
pub const REASON_TOO_SLOW: &str = "Connection too slow: outbound queue full";
/// Reason sent with [`REPLACED`].
pub const REASON_REPLACED: &str = "Replaced by a newer connection";
/// Reason sent with [`ROOM_FULL`].
pub const REASON_ROOM_FULL: &str = "Call is full";
/// Reason sent with [`TOO_MANY_CONNECTIONS`].
pub const REASON_TOO_MANY_CONNECTIONS: &str = "Too many connections for this user";
/// Reason sent with [`GOING_AWAY`] at shutdown.
pub const REASON_SHUTDOWN: &str = "Server is shutting down";
/// Reason sent with [`ORIGIN_NOT_ALLOWED`].
pub const REASON_ORIGIN_NOT_ALLOWED: &str = "Origin not allowed";
/// Reason sent with [`UNAUTHORIZED`] when no credential was presented.
pub const REASON_NOT_AUTHENTICATED: &str = "Not authenticated";
/// Reason sent with [`UNAUTHORIZED`] when the credential's user no longer exists.
pub const REASON_USER_NOT_FOUND: &str = "User not found";
/// Reason sent with [`UNAUTHORIZED`] when the session was revoked (logout), to the
/// connections it had opened: the text a revoked token gets over HTTP.
pub const REASON_SESSION_REVOKED: &str = "Invalid token";
/// Reason sent with [`CALL_NOT_AVAILABLE`] for an unknown call.
pub const REASON_CALL_NOT_FOUND: &str = "Call not found. Please create a new call.";
/// Reason sent with [`CALL_NOT_AVAILABLE`] for an expired call.
pub const REASON_CALL_EXPIRED: &str = "Call has expired. Please create a new call.";
/// Reason sent with [`INTERNAL_ERROR`].
pub const REASON_INTERNAL_ERROR: &str = "Internal server error";
/// Reason sent with [`IDLE_TIMEOUT`].
pub const REASON_IDLE: &str = "Idle timeout";
/// Reason sent with [`POLICY_VIOLATION`].
pub const REASON_RATE_LIMITED: &str = "Rate limit exceeded";
/// Reason sent with [`PROTOCOL_ERROR`].
pub const REASON_PROTOCOL_ERROR: &str = "Protocol error";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_in_a_close_frame() {
        // A close frame's payload is at most 125 bytes: the 2-byte code and the reason.
        for reason in [
            REASON_CALL_ENDED,
            REASON_TOO_SLOW,
            REASON_REPLACED,
            REASON_ROOM_FULL,
            REASON_TOO_MANY_CONNECTIONS,
            REASON_SHUTDOWN,
            REASON_ORIGIN_NOT_ALLOWED,
            REASON_NOT_AUTHENTICATED,
            REASON_USER_NOT_FOUND,
            REASON_SESSION_REVOKED,
            REASON_CALL_NOT_FOUND,
            REASON_CALL_EXPIRED,
            REASON_INTERNAL_ERROR,
            REASON_IDLE,
            REASON_RATE_LIMITED,
            REASON_PROTOCOL_ERROR,
        ] {
            assert!(reason.len() <= 123, "{reason}");
        }
    }

    #[test]
    fn codes_are_standard_or_in_the_private_range() {
        for code in [
            NORMAL,
            GOING_AWAY,
            PROTOCOL_ERROR,
            POLICY_VIOLATION,
            INTERNAL_ERROR,
            TRY_AGAIN_LATER,
            IDLE_TIMEOUT,
        ] {
            assert!((1000..=1014).contains(&code), "{code}");
        }
        for code in [
            UNAUTHORIZED,
            ORIGIN_NOT_ALLOWED,
            CALL_NOT_AVAILABLE,
            REPLACED,
            ROOM_FULL,
            TOO_MANY_CONNECTIONS,
        ] {
            assert!((4000..=4999).contains(&code), "{code}");
        }
    }
}
