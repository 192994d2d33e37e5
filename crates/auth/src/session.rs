//! JWT sessions (HS256 pinned) and short-lived single-use WebSocket tickets signed with the same key.
//!
//! Both are JWTs with `sub`, `iat`, `exp`, `iss`, `aud`, `jti` and an explicit `typ` claim
//! (`"session"` or `"ws"`); each verifier accepts only its own type (RFC 8725 §3.12).
//! Expiry is checked against a caller-supplied clock in the `*_at` methods, so it is testable
//! without sleeping; the plain methods use the system clock.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::clock::unix_now;
use crate::revocation::{RevocationStore, RevocationStoreError};
use crate::ticket::{TicketStore, TicketStoreError};

/// Minimum length of the signing secret in bytes (the HS256 output size, RFC 7518 §3.2).
pub const MIN_SECRET_LEN: usize = 32;

/// Clock skew tolerated when checking `exp` and `iat`, in seconds.
pub const LEEWAY_SECS: i64 = 30;

/// Default `iss` and `aud` claim.
pub const DEFAULT_ISSUER: &str = "telcall";

/// Default `aud` claim.
pub const DEFAULT_AUDIENCE: &str = "telcall";

/// Default session lifetime (CONTRACT `ACCESS_TOKEN_EXPIRE_MINUTES` = 240).
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(240 * 60);

/// Default WebSocket ticket lifetime.
pub const DEFAULT_WS_TICKET_TTL: Duration = Duration::from_secs(30);

/// Longest WebSocket ticket lifetime allowed (CONTRACT: at most 60 s).
pub const MAX_WS_TICKET_TTL: Duration = Duration::from_secs(60);

/// Value of the `typ` claim of a session token.
pub const TYP_SESSION: &str = "session";

/// Value of the `typ` claim of a WebSocket ticket.
pub const TYP_WS: &str = "ws";

/// Invalid [`Sessions`] configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The secret is shorter than [`MIN_SECRET_LEN`] (and weak secrets were not allowed), or empty.
    #[error("SECRET_KEY must be at least {min} bytes, got {len}")]
    WeakSecret {
        /// Length of the given secret.
        len: usize,
        /// The minimum, [`MIN_SECRET_LEN`].
        min: usize,
    },
    /// The session lifetime is zero or too long to represent.
    #[error("session lifetime must be between 1 second and 100 years")]
    InvalidSessionTtl,
    /// The WebSocket ticket lifetime is zero or longer than [`MAX_WS_TICKET_TTL`].
    #[error("WebSocket ticket lifetime must be between 1 and 60 seconds")]
    InvalidWsTicketTtl,
}

/// Why a token was refused, or could not be issued.
///
/// [`detail`](Self::detail) gives the CONTRACT text; `Display` adds the reason, for logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Authentic and of the right type, but past `exp` (+ [`LEEWAY_SECS`]).
    #[error("Token has expired")]
    Expired,
    /// Malformed, forged, of the wrong type or audience, or an already used ticket.
    #[error("Invalid token ({0})")]
    Invalid(InvalidReason),
    /// The ticket store failed; the ticket is refused (fail closed).
    #[error("ticket store failed: {0}")]
    Store(#[from] TicketStoreError),
    /// The revocation store failed; the token is refused (fail closed).
    #[error("revocation store failed: {0}")]
    Revocations(#[from] RevocationStoreError),
    /// Signing failed (should not happen with an HMAC key).
    #[error("could not sign token: {0}")]
    Signing(String),
}

/// Why a token is [`TokenError::Invalid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidReason {
    /// Not a well-formed JWT (including unknown algorithms such as `none`).
    Malformed,
    /// The header names an algorithm other than HS256.
    Algorithm,
    /// The signature does not match.
    Signature,
    /// A required claim is missing or has the wrong format.
    Claims,
    /// Wrong `iss`.
    Issuer,
    /// Wrong `aud`.
    Audience,
    /// `iat` lies in the future.
    IssuedInFuture,
    /// The `typ` claim is not the one this verifier accepts.
    WrongType,
    /// A WebSocket ticket that was already used.
    AlreadyUsed,
    /// The session was revoked (logged out), or the ticket came from a revoked session.
    Revoked,
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm not allowed",
            Self::Signature => "bad signature",
            Self::Claims => "missing or malformed claims",
            Self::Issuer => "wrong issuer",
            Self::Audience => "wrong audience",
            Self::IssuedInFuture => "issued in the future",
            Self::WrongType => "wrong token type",
            Self::AlreadyUsed => "ticket already used",
            Self::Revoked => "revoked",
        })
    }
}

impl TokenError {
    /// The CONTRACT `detail` text: "Token has expired" or "Invalid token" (and an opaque text
    /// for server-side failures).
    pub fn detail(&self) -> &'static str {
        match self {
            Self::Expired => "Token has expired",
            Self::Invalid(_) => "Invalid token",
            Self::Store(_) | Self::Revocations(_) | Self::Signing(_) => "Internal server error",
        }
    }

    /// Whether the failure is on the server side (ticket store, signing), not the token.
    pub fn is_server_error(&self) -> bool {
        matches!(
            self,
            Self::Store(_) | Self::Revocations(_) | Self::Signing(_)
        )
    }
}

/// A freshly issued token. `Debug` does not print the token.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuedToken {
    /// The compact JWT.
    pub token: String,
    /// Seconds until it expires (the cookie's `Max-Age`, the body's `expires_in`).
    pub expires_in_secs: u64,
    /// Expiry, unix seconds (the `exp` claim).
    pub expires_at: i64,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"[REDACTED]")
            .field("expires_in_secs", &self.expires_in_secs)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Verified claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionClaims {
    /// Internal user id (`sub`).
    pub user_id: i64,
    /// `iat`, unix seconds.
    pub issued_at: i64,
    /// `exp`, unix seconds.
    pub expires_at: i64,
    /// `jti`, a random id of this token.
    pub token_id: String,
    /// `fp`: fingerprint of the initData the session was issued for, when given.
    pub fingerprint: Option<String>,
}

/// Verified claims of a WebSocket ticket (already marked as used).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TicketClaims {
    /// Internal user id (`sub`).
    pub user_id: i64,
    /// `iat`, unix seconds.
    pub issued_at: i64,
    /// `exp`, unix seconds.
    pub expires_at: i64,
    /// `jti`, the single-use id.
    pub ticket_id: String,
    /// `sid`: the `jti` of the session the ticket was issued from, when known.
    pub session_id: Option<String>,
}

/// Which kind of credential opened a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialKind {
    /// A session JWT.
    Session,
    /// A single-use ticket from `GET /auth/ws-token`.
    WsTicket,
}

/// The identity behind a WebSocket handshake credential.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WsIdentity {
    /// Internal user id.
    pub user_id: i64,
    /// What kind of credential was presented.
    pub kind: CredentialKind,
    /// When the credential expires, unix seconds.
    pub expires_at: i64,
    /// The session behind it: the session token's `jti`, or a ticket's `sid`. Revoking it
    /// should close the connection.
    pub session_id: Option<String>,
}

/// Settings for [`Sessions`]. Start from `SessionConfig::default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Session lifetime (default [`DEFAULT_SESSION_TTL`]).
    pub session_ttl: Duration,
    /// WebSocket ticket lifetime, 1..=60 s (default [`DEFAULT_WS_TICKET_TTL`]).
    pub ws_ticket_ttl: Duration,
    /// `iss` claim issued and required (default [`DEFAULT_ISSUER`]).
    pub issuer: String,
    /// `aud` claim issued and required (default [`DEFAULT_AUDIENCE`]).
    pub audience: String,
    /// Accept a secret shorter than [`MIN_SECRET_LEN`] (development only; never empty).
    pub allow_weak_secret: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            session_ttl: DEFAULT_SESSION_TTL,
            ws_ticket_ttl: DEFAULT_WS_TICKET_TTL,
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            allow_weak_secret: false,
        }
    }
}

impl SessionConfig {
    /// Sets the session lifetime.
    #[must_use]
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// Sets the WebSocket ticket lifetime (1..=60 s).
    #[must_use]
    pub fn ws_ticket_ttl(mut self, ttl: Duration) -> Self {
        self.ws_ticket_ttl = ttl;
        self
    }

    /// Sets the `iss` claim.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// Sets the `aud` claim.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Allows a secret shorter than [`MIN_SECRET_LEN`] (development mode).
    #[must_use]
    pub fn allow_weak_secret(mut self, allow: bool) -> Self {
        self.allow_weak_secret = allow;
        self
    }
}

/// Issues and verifies session tokens and WebSocket tickets. Cheap to share (`Arc`) and
/// `Send + Sync`; `Debug` never shows the key.
#[derive(Clone)]
pub struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    config: SessionConfig,
    session_ttl_secs: i64,
    ws_ticket_ttl_secs: i64,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("secret", &"[REDACTED]")
            .field("config", &self.config)
            .finish()
    }
}

/// The JWT payload of both token types.
#[derive(Debug, Serialize, Deserialize)]
struct RawClaims {
    sub: String,
    iat: i64,
    exp: i64,
    iss: String,
    aud: String,
    jti: String,
    typ: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fp: Option<String>,
    /// On tickets: the `jti` of the session they were issued from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

impl Sessions {
    /// Sessions lasting `session_ttl`, other settings default. Refuses a secret shorter than
    /// [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: &SecretString, session_ttl: Duration) -> Result<Self, ConfigError> {
        Self::with_config(secret, SessionConfig::default().session_ttl(session_ttl))
    }

    /// Sessions with explicit settings.
    pub fn with_config(secret: &SecretString, config: SessionConfig) -> Result<Self, ConfigError> {
        let key = secret.expose_secret().as_bytes();
        if key.is_empty() || (key.len() < MIN_SECRET_LEN && !config.allow_weak_secret) {
            return Err(ConfigError::WeakSecret {
                len: key.len(),
                min: MIN_SECRET_LEN,
            });
        }
        const HUNDRED_YEARS: u64 = 100 * 365 * 24 * 60 * 60;
        let session_secs = config.session_ttl.as_secs();
        if session_secs == 0 || session_secs > HUNDRED_YEARS {
            return Err(ConfigError::InvalidSessionTtl);
        }
        let ws_secs = config.ws_ticket_ttl.as_secs();
        if ws_secs == 0 || config.ws_ticket_ttl > MAX_WS_TICKET_TTL {
            return Err(ConfigError::InvalidWsTicketTtl);
        }

        let mut validation = Validation::new(Algorithm::HS256);
        // Time is checked by `check_times` against an injectable clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);

        Ok(Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            session_ttl_secs: i64::try_from(session_secs).unwrap_or(i64::MAX),
            ws_ticket_ttl_secs: i64::try_from(ws_secs).unwrap_or(i64::MAX),
            config,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Session lifetime.
    pub fn session_ttl(&self) -> Duration {
        self.config.session_ttl
    }

    /// Issues a session token for `user_id`, with the initData fingerprint `fp` if given.
    pub fn issue_session(&self, user_id: i64, fp: Option<&str>) -> Result<IssuedToken, TokenError> {
        self.issue_session_at(user_id, fp, unix_now())
    }

    /// [`issue_session`](Self::issue_session) at unix time `now`.
    pub fn issue_session_at(
        &self,
        user_id: i64,
        fp: Option<&str>,
        now: i64,
    ) -> Result<IssuedToken, TokenError> {
        self.issue(user_id, TYP_SESSION, fp, self.session_ttl_secs, now)
    }

    /// Verifies a session token (not a ticket) against the system clock.
    pub fn verify_session(&self, token: &str) -> Result<SessionClaims, TokenError> {
        self.verify_session_at(token, unix_now())
    }

    /// [`verify_session`](Self::verify_session) at unix time `now`.
    pub fn verify_session_at(&self, token: &str, now: i64) -> Result<SessionClaims, TokenError> {
        let (user_id, claims) = self.decode(token, TYP_SESSION, now)?;
        Ok(SessionClaims {
            user_id,
            issued_at: claims.iat,
            expires_at: claims.exp,
            token_id: claims.jti,
            fingerprint: claims.fp,
        })
    }

    /// Issues a single-use WebSocket ticket for `user_id`.
    pub fn issue_ws_ticket(&self, user_id: i64) -> Result<IssuedToken, TokenError> {
        self.issue_ws_ticket_at(user_id, unix_now())
    }

    /// [`issue_ws_ticket`](Self::issue_ws_ticket) at unix time `now`.
    pub fn issue_ws_ticket_at(&self, user_id: i64, now: i64) -> Result<IssuedToken, TokenError> {
        self.issue_with(user_id, TYP_WS, None, None, self.ws_ticket_ttl_secs, now)
    }

    /// Issues a single-use WebSocket ticket for the session `session` (its `jti` becomes the
    /// ticket's `sid`): revoking the session also refuses the ticket, and the WebSocket it
    /// opens belongs to the session.
    pub fn issue_ws_ticket_for(&self, session: &SessionClaims) -> Result<IssuedToken, TokenError> {
        self.issue_ws_ticket_for_at(session, unix_now())
    }

    /// [`issue_ws_ticket_for`](Self::issue_ws_ticket_for) at unix time `now`.
    pub fn issue_ws_ticket_for_at(
        &self,
        session: &SessionClaims,
        now: i64,
    ) -> Result<IssuedToken, TokenError> {
        self.issue_with(
            session.user_id,
            TYP_WS,
            None,
            Some(&session.token_id),
            self.ws_ticket_ttl_secs,
            now,
        )
    }

    /// Verifies a session token and refuses it when its `jti` is revoked in `revocations`
    /// (`Invalid(Revoked)`, answered "Invalid token").
    pub async fn verify_live_session(
        &self,
        token: &str,
        revocations: &dyn RevocationStore,
    ) -> Result<SessionClaims, TokenError> {
        let claims = self.verify_session(token)?;
        if revocations.is_revoked(&claims.token_id).await? {
            return Err(TokenError::Invalid(InvalidReason::Revoked));
        }
        Ok(claims)
    }

    /// Revokes the session `claims` came from (logout): remembered until the token would
    /// expire, leeway included.
    pub async fn revoke_session(
        &self,
        claims: &SessionClaims,
        revocations: &dyn RevocationStore,
    ) -> Result<(), TokenError> {
        revocations
            .revoke(
                &claims.token_id,
                claims.expires_at.saturating_add(LEEWAY_SECS),
            )
            .await?;
        Ok(())
    }

    /// [`verify_ws_credential`](Self::verify_ws_credential), refusing a session token whose
    /// `jti`, or a ticket whose `sid`, is revoked in `revocations`. The revocation is checked
    /// before a ticket is consumed.
    pub async fn verify_live_ws_credential(
        &self,
        token: &str,
        tickets: &dyn TicketStore,
        revocations: &dyn RevocationStore,
    ) -> Result<WsIdentity, TokenError> {
        let now = unix_now();
        let (_, claims) = self.decode(token, "", now)?;
        let session_id = if claims.typ == TYP_SESSION {
            Some(claims.jti.as_str())
        } else {
            claims.sid.as_deref()
        };
        if let Some(sid) = session_id
            && revocations.is_revoked(sid).await?
        {
            return Err(TokenError::Invalid(InvalidReason::Revoked));
        }
        self.verify_ws_credential_at(token, tickets, now).await
    }

    /// Verifies a WebSocket ticket (not a session token) and marks it used in `store`.
    /// A second use fails with [`InvalidReason::AlreadyUsed`].
    pub async fn verify_ws_ticket(
        &self,
        token: &str,
        store: &dyn TicketStore,
    ) -> Result<TicketClaims, TokenError> {
        self.verify_ws_ticket_at(token, store, unix_now()).await
    }

    /// [`verify_ws_ticket`](Self::verify_ws_ticket) at unix time `now`. The store keeps its own
    /// clock: [`MemoryTicketStore`](crate::MemoryTicketStore) refuses tickets already expired by
    /// the system clock.
    pub async fn verify_ws_ticket_at(
        &self,
        token: &str,
        store: &dyn TicketStore,
        now: i64,
    ) -> Result<TicketClaims, TokenError> {
        let (user_id, claims) = self.decode(token, TYP_WS, now)?;
        self.consume(claims, user_id, store).await
    }

    /// Verifies a WebSocket handshake credential: a session token or a single-use ticket,
    /// told apart by `typ` (a ticket is consumed in `store`).
    pub async fn verify_ws_credential(
        &self,
        token: &str,
        store: &dyn TicketStore,
    ) -> Result<WsIdentity, TokenError> {
        self.verify_ws_credential_at(token, store, unix_now()).await
    }

    /// [`verify_ws_credential`](Self::verify_ws_credential) at unix time `now`.
    pub async fn verify_ws_credential_at(
        &self,
        token: &str,
        store: &dyn TicketStore,
        now: i64,
    ) -> Result<WsIdentity, TokenError> {
        let (user_id, claims) = self.decode(token, "", now)?;
        if claims.typ == TYP_SESSION {
            Ok(WsIdentity {
                user_id,
                kind: CredentialKind::Session,
                expires_at: claims.exp,
                session_id: Some(claims.jti),
            })
        } else {
            let ticket = self.consume(claims, user_id, store).await?;
            Ok(WsIdentity {
                user_id,
                kind: CredentialKind::WsTicket,
                expires_at: ticket.expires_at,
                session_id: ticket.session_id,
            })
        }
    }

    fn issue(
        &self,
        user_id: i64,
        typ: &str,
        fp: Option<&str>,
        ttl_secs: i64,
        now: i64,
    ) -> Result<IssuedToken, TokenError> {
        self.issue_with(user_id, typ, fp, None, ttl_secs, now)
    }

    fn issue_with(
        &self,
        user_id: i64,
        typ: &str,
        fp: Option<&str>,
        sid: Option<&str>,
        ttl_secs: i64,
        now: i64,
    ) -> Result<IssuedToken, TokenError> {
        let exp = now.saturating_add(ttl_secs);
        let claims = RawClaims {
            sub: user_id.to_string(),
            iat: now,
            exp,
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            jti: random_id(),
            typ: typ.to_owned(),
            fp: fp.map(str::to_owned),
            sid: sid.map(str::to_owned),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Signing(e.to_string()))?;
        Ok(IssuedToken {
            token,
            expires_in_secs: u64::try_from(ttl_secs).unwrap_or(0),
            expires_at: exp,
        })
    }

    /// Signature, algorithm, `iss`, `aud`, then times, then type (`""` accepts both types).
    fn decode(&self, token: &str, typ: &str, now: i64) -> Result<(i64, RawClaims), TokenError> {
        let data = jsonwebtoken::decode::<RawClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| TokenError::Invalid(reason(e.kind())))?;
        let claims = data.claims;
        let invalid = |r| Err(TokenError::Invalid(r));
        let user_id: i64 = match claims.sub.parse() {
            Ok(id) => id,
            Err(_) => return invalid(InvalidReason::Claims),
        };
        let known_type = claims.typ == TYP_SESSION || claims.typ == TYP_WS;
        if !known_type || (!typ.is_empty() && claims.typ != typ) {
            return invalid(InvalidReason::WrongType);
        }
        if claims.iat > now.saturating_add(LEEWAY_SECS) {
            return invalid(InvalidReason::IssuedInFuture);
        }
        if claims.typ == TYP_WS
            && claims.exp.saturating_sub(claims.iat)
                > i64::try_from(MAX_WS_TICKET_TTL.as_secs()).unwrap_or(i64::MAX)
        {
            return invalid(InvalidReason::Claims);
        }
        if now > claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        Ok((user_id, claims))
    }

    async fn consume(
        &self,
        claims: RawClaims,
        user_id: i64,
        store: &dyn TicketStore,
    ) -> Result<TicketClaims, TokenError> {
        if claims.jti.is_empty() {
            return Err(TokenError::Invalid(InvalidReason::Claims));
        }
        // Remember the id for as long as the verifier would accept the ticket.
        let remember_until = claims.exp.saturating_add(LEEWAY_SECS);
        if !store.consume(&claims.jti, remember_until).await? {
            return Err(TokenError::Invalid(InvalidReason::AlreadyUsed));
        }
        Ok(TicketClaims {
            user_id,
            issued_at: claims.iat,
            expires_at: claims.exp,
            ticket_id: claims.jti,
            session_id: claims.sid,
        })
    }
}

fn reason(kind: &ErrorKind) -> InvalidReason {
    match kind {
        ErrorKind::InvalidSignature => InvalidReason::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => InvalidReason::Algorithm,
        ErrorKind::InvalidIssuer => InvalidReason::Issuer,
        ErrorKind::InvalidAudience => InvalidReason::Audience,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
            InvalidReason::Claims
        }
        _ => InvalidReason::Malformed,
    }
}

/// 128 random bits from the thread-local CSPRNG, base64url.
fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn sessions() -> Sessions {
        Sessions::new(
            &SecretString::from("0123456789abcdef0123456789abcdef"),
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    #[test]
    fn round_trip_with_fingerprint() {
        let s = sessions();
        let issued = s.issue_session_at(42, Some("abcd"), NOW).unwrap();
        assert_eq!(issued.expires_in_secs, 3600);
        assert_eq!(issued.expires_at, NOW + 3600);
        let c = s.verify_session_at(&issued.token, NOW + 10).unwrap();
        assert_eq!(c.user_id, 42);
        assert_eq!(c.issued_at, NOW);
        assert_eq!(c.expires_at, NOW + 3600);
        assert_eq!(c.fingerprint.as_deref(), Some("abcd"));
        assert_eq!(c.token_id.len(), 22);
    }

    #[test]
    fn expiry_honours_leeway() {
        let s = sessions();
        let t = s.issue_session_at(1, None, NOW).unwrap().token;
        assert!(s.verify_session_at(&t, NOW + 3600 + LEEWAY_SECS).is_ok());
        assert!(matches!(
            s.verify_session_at(&t, NOW + 3600 + LEEWAY_SECS + 1),
            Err(TokenError::Expired)
        ));
    }

    #[test]
    fn issued_in_the_future_is_invalid() {
        let s = sessions();
        let t = s.issue_session_at(1, None, NOW + 120).unwrap().token;
        assert!(matches!(
            s.verify_session_at(&t, NOW),
            Err(TokenError::Invalid(InvalidReason::IssuedInFuture))
        ));
    }

    #[test]
    fn config_validation() {
        let strong = SecretString::from("x".repeat(32));
        let weak = SecretString::from("short");
        assert!(matches!(
            Sessions::new(&weak, DEFAULT_SESSION_TTL),
            Err(ConfigError::WeakSecret { len: 5, min: 32 })
        ));
        assert!(
            Sessions::with_config(&weak, SessionConfig::default().allow_weak_secret(true)).is_ok()
        );
        assert!(matches!(
            Sessions::with_config(
                &SecretString::from(""),
                SessionConfig::default().allow_weak_secret(true)
            ),
            Err(ConfigError::WeakSecret { .. })
        ));
        assert_eq!(
            Sessions::new(&strong, Duration::ZERO).err(),
            Some(ConfigError::InvalidSessionTtl)
        );
        for ttl in [0, 61] {
            assert_eq!(
                Sessions::with_config(
                    &strong,
                    SessionConfig::default().ws_ticket_ttl(Duration::from_secs(ttl))
                )
                .err(),
                Some(ConfigError::InvalidWsTicketTtl)
            );
        }
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let s = sessions();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("0123456789abcdef"), "{dbg}");
        let issued = s.issue_session(1, None).unwrap();
        let dbg = format!("{issued:?}");
        assert!(!dbg.contains(&issued.token), "{dbg}");
    }

    #[test]
    fn error_details() {
        assert_eq!(TokenError::Expired.detail(), "Token has expired");
        assert_eq!(
            TokenError::Invalid(InvalidReason::Signature).detail(),
            "Invalid token"
        );
        assert!(!TokenError::Expired.is_server_error());
        assert!(TokenError::Store(TicketStoreError::Full { capacity: 1 }).is_server_error());
    }
}
