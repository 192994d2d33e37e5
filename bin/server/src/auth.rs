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
///
/// A request that sends the cookie is judged by the cookie alone: a cookie that is expired,
/// forged or garbage gets 401 even when a valid Bearer token comes with it (the client
/// presented a credential and it is wrong). An empty cookie value counts as no cookie.
pub fn request_token(req: &HttpRequest) -> Option<String> {
    session_cookie_value(req).or_else(|| bearer_token(req))
}

/// Whether the request's credential came from the cookie (CSRF checks apply then).
pub fn authenticated_by_cookie(req: &HttpRequest) -> bool {
    session_cookie_value(req).is_some()
}

/// The value of the `access_token` cookie as sent, read from the raw `Cookie` headers
/// (`name=value` pairs separated by `;`). Read here rather than through actix's cookie
/// parser, which drops every cookie of a request when any one of them is malformed: a
/// malformed neighbour must not turn a sent session cookie into an absent one (and let a
/// Bearer token decide instead).
pub fn session_cookie_value(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .flat_map(|value| value.as_bytes().split(|b| *b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            let (name, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
            (name == SESSION_COOKIE.as_bytes() && !value.is_empty())
                .then(|| String::from_utf8_lossy(value).into_owned())
        })
        .next()
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}
