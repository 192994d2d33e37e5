//! Glue between settings and `telcall-auth`, and the credential lookups every
//! authenticated route and the WebSocket handshake share.

use actix_web::HttpRequest;
use actix_web::http::header;
use telcall_auth::{SessionConfig, Sessions};

use crate::config::Settings;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "access_token";

/// Builds the JWT session issuer from settings (a short `SECRET_KEY` is allowed only in
/// development mode; settings validation already refused it elsewhere).
pub fn build_sessions(settings: &Settings) -> anyhow::Result<Sessions> {
    let config = SessionConfig::default()
        .session_ttl(settings.access_token_ttl)
        .ws_ticket_ttl(settings.ws.ticket_ttl)
        .allow_weak_secret(settings.debug);
    Ok(Sessions::with_config(&settings.secret_key, config)?)
}

/// The session credential of a request: the `access_token` cookie first, else an
/// `Authorization: Bearer` header.
pub fn request_token(req: &HttpRequest) -> Option<String> {
    if let Some(c) = req.cookie(SESSION_COOKIE)
        && !c.value().is_empty()
    {
        return Some(c.value().to_owned());
    }
    bearer_token(req)
}

/// Whether the request's credential came from the cookie (CSRF checks apply then).
pub fn authenticated_by_cookie(req: &HttpRequest) -> bool {
    req.cookie(SESSION_COOKIE)
        .is_some_and(|c| !c.value().is_empty())
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}
