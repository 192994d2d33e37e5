//! Authentication for Telegram Mini App backends: initData verification, JWT sessions and
//! single-use WebSocket tickets.
//!
//! No web framework, no database, no other telcall crate: any Rust service can use it.
//!
//! - [`InitDataVerifier`] checks the `initData` string a Mini App sends, with the bot token
//!   (HMAC-SHA256, constant-time comparison, `auth_date` freshness), and returns the typed
//!   [`TelegramUser`]. [`ThirdPartyVerifier`] checks Telegram's Ed25519 `signature` instead,
//!   with only the bot id and Telegram's public key. Errors ([`InitDataError`]) are typed and
//!   carry the exact `detail` text to answer with; which HTTP status goes with each is left
//!   to the server.
//! - [`Sessions`] issues and verifies HS256-pinned JWTs (`sub`, `iat`, `exp`, `iss`, `aud`,
//!   `jti`, `typ`, optional `fp`), and short-lived WebSocket tickets (`typ = "ws"`) that
//!   are accepted once, recorded in a [`TicketStore`] ([`MemoryTicketStore`] for one instance).
//!   Session tokens and tickets are not interchangeable.
//! - Logout revokes a session's `jti` in a [`RevocationStore`] ([`MemoryRevocationStore`]
//!   for one instance, bounded by the tokens' remaining lifetime):
//!   [`Sessions::verify_live_session`] and [`Sessions::verify_live_ws_credential`] then
//!   refuse it, and the tickets issued from it ([`Sessions::issue_ws_ticket_for`] records
//!   the session as the ticket's `sid`).
//! - Every time-dependent call has an `*_at(…, now)` twin taking unix seconds, for tests.
//! - Secrets are taken as [`SecretString`] and never appear in `Debug` output.
//!
//! ```
//! use std::time::Duration;
//! use telcall_auth::{InitDataVerifier, MemoryTicketStore, SecretString, Sessions, sign_init_data};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bot_token = SecretString::from("123456:test-token");
//! let now = 1_795_000_000;
//!
//! // What Telegram would hand the Mini App (normally you only receive this string).
//! let init_data = sign_init_data(
//!     &bot_token,
//!     &[("user", r#"{"id":279058397,"first_name":"Ada"}"#), ("auth_date", "1794999940")],
//! );
//!
//! let verifier = InitDataVerifier::new(&bot_token).with_max_age(Duration::from_secs(86_400));
//! let verified = verifier.verify_at(&init_data, now)?;
//! assert_eq!(verified.user.id, 279058397);
//!
//! // A forged string is refused, with the CONTRACT's text.
//! let forged = init_data.replace("Ada", "Eve");
//! let err = verifier.verify_at(&forged, now).unwrap_err();
//! assert_eq!(err, telcall_auth::InitDataError::InvalidHash);
//! assert_eq!(err.detail(), "Invalid initData hash");
//!
//! // Session for internal user 7, bound to this initData.
//! let sessions = Sessions::new(
//!     &SecretString::from("a-secret-of-at-least-32-bytes!!!"),
//!     Duration::from_secs(4 * 3600),
//! )?;
//! let session = sessions.issue_session(7, Some(&verified.fingerprint))?;
//! assert_eq!(sessions.verify_session(&session.token)?.user_id, 7);
//!
//! // A WebSocket ticket works once, and only for the WebSocket.
//! let store = MemoryTicketStore::new();
//! let ticket = sessions.issue_ws_ticket(7)?;
//! assert!(sessions.verify_session(&ticket.token).is_err());
//! assert_eq!(sessions.verify_ws_ticket(&ticket.token, &store).await?.user_id, 7);
//! assert!(sessions.verify_ws_ticket(&ticket.token, &store).await.is_err());
//! # Ok(())
//! # }
//! ```

mod clock;
pub mod initdata;
pub mod revocation;
pub mod session;
pub mod ticket;

pub use initdata::{
    DEFAULT_MAX_AGE, InitDataError, InitDataVerifier, InvalidPublicKey, MAX_FUTURE_SKEW_SECS,
    MAX_INIT_DATA_LEN, TELEGRAM_PRODUCTION_PUBLIC_KEY_HEX, TELEGRAM_TEST_PUBLIC_KEY_HEX,
    TelegramUser, ThirdPartyVerifier, VerifiedInitData, sign_init_data,
};
pub use revocation::{
    DEFAULT_REVOCATION_STORE_CAPACITY, MemoryRevocationStore, RevocationStore, RevocationStoreError,
};
pub use secrecy::{ExposeSecret, SecretString};
pub use session::{
    ConfigError, CredentialKind, DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEFAULT_SESSION_TTL,
    DEFAULT_WS_TICKET_TTL, InvalidReason, IssuedToken, LEEWAY_SECS, MAX_WS_TICKET_TTL,
    MIN_SECRET_LEN, SessionClaims, SessionConfig, Sessions, TicketClaims, TokenError, WsIdentity,
};
pub use ticket::{DEFAULT_TICKET_STORE_CAPACITY, MemoryTicketStore, TicketStore, TicketStoreError};
