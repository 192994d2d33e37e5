//! CSRF defence for cookie sessions: a state-changing request that carries the session
//! cookie must not come from a foreign origin.
//!
//! The session cookie is `SameSite=None` inside Telegram's web client, so the browser sends
//! it on cross-site requests too; the origin check is what stops a foreign page from making
//! the user's browser create or end calls. The rule:
//!
//! - only `POST`, `PUT`, `PATCH` and `DELETE` are checked (reads change nothing);
//! - only requests carrying a non-empty `access_token` cookie are checked (a Bearer header
//!   is not sent by browsers on their own, so Bearer-only requests cannot be forged);
//! - the origin is the `Origin` header or, lacking it, the origin of `Referer`;
//! - a present origin that [`AllowedOrigins::allows`] refuses (including the opaque
//!   `null`, and a `Referer` that is not a URL) → 403 `{"detail": "Origin not allowed"}`,
//!   before any extractor or handler runs, so nothing changes;
//! - no origin at all (non-browser clients, some same-origin navigations) → allowed;
//! - `POST /api/telegram/webhook` is exempt: Telegram sends no `Origin`, and the route acts
//!   on no session (it is authenticated by its own secret header, never by the cookie).

use std::borrow::Cow;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, ORIGIN, REFERER};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, web};

use crate::auth::authenticated_by_cookie;
use crate::config::AllowedOrigins;
use crate::error::detail_response;
use crate::state::AppState;

/// The `detail` of a refused cross-origin write.
pub const ORIGIN_NOT_ALLOWED: &str = "Origin not allowed";

/// Whether `method` may change server state (and is therefore subject to the check).
pub fn is_state_changing(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// The origin a request claims: the `Origin` header, else the origin (`scheme://host[:port]`)
/// of `Referer`. `Some("null")` for an opaque or unparsable value, `None` when neither
/// header is present.
pub fn request_origin(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    if let Some(origin) = headers.get(ORIGIN) {
        return Some(origin.to_str().map_or(Cow::Borrowed("null"), Cow::Borrowed));
    }
    let referer = headers.get(REFERER)?;
    let origin = referer
        .to_str()
        .ok()
        .and_then(|r| url::Url::parse(r).ok())
        .map(|url| url.origin().ascii_serialization())
        .unwrap_or_else(|| "null".to_owned());
    Some(Cow::Owned(origin))
}

/// Whether a request with this method, cookie state and headers must be refused.
pub fn is_forbidden(
    method: &Method,
    by_cookie: bool,
    headers: &HeaderMap,
    allowed: &AllowedOrigins,
) -> bool {
    if !is_state_changing(method) || !by_cookie {
        return false;
    }
    request_origin(headers).is_some_and(|origin| !allowed.allows(&origin))
}

/// `actix_web::middleware::from_fn` middleware applying the rule of this module.
pub async fn csrf_guard(
    state: web::Data<AppState>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let forbidden = req.match_info().as_str() != crate::routes::telegram::WEBHOOK_PATH
        && is_forbidden(
            req.method(),
            authenticated_by_cookie(req.request()),
            req.headers(),
            &state.settings.cors_allow_origins,
        );
    if forbidden {
        tracing::info!(
            method = %req.method(),
            path = req.path(),
            origin = request_origin(req.headers()).as_deref().unwrap_or_default(),
            "cross-origin write with the session cookie refused"
        );
        let res = detail_response(StatusCode::FORBIDDEN, ORIGIN_NOT_ALLOWED);
        return Ok(req.into_response(res).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        map
    }

    fn allowed() -> AllowedOrigins {
        AllowedOrigins::List(vec!["https://app.example.com".to_owned()])
    }

    #[test]
    fn origin_then_referer() {
        let h = headers(&[("referer", "https://app.example.com:443/x/y?z=1")]);
        assert_eq!(
            request_origin(&h).as_deref(),
            Some("https://app.example.com")
        );
        let h = headers(&[
            ("origin", "https://evil.example.com"),
            ("referer", "https://app.example.com/"),
        ]);
        assert_eq!(
            request_origin(&h).as_deref(),
            Some("https://evil.example.com")
        );
        assert_eq!(request_origin(&headers(&[])), None);
        let h = headers(&[("referer", "not a url")]);
        assert_eq!(request_origin(&h).as_deref(), Some("null"));
    }

    #[test]
    fn only_cookie_writes_from_foreign_origins_are_refused() {
        let evil = headers(&[("origin", "https://evil.example.com")]);
        let good = headers(&[("origin", "https://app.example.com")]);
        let tg = headers(&[("origin", "https://web.telegram.org")]);
        let null = headers(&[("origin", "null")]);
        let none = headers(&[]);
        let a = allowed();
        assert!(is_forbidden(&Method::POST, true, &evil, &a));
        assert!(is_forbidden(&Method::DELETE, true, &null, &a));
        assert!(!is_forbidden(&Method::POST, true, &good, &a));
        assert!(!is_forbidden(&Method::POST, true, &tg, &a));
        assert!(!is_forbidden(&Method::POST, true, &none, &a));
        assert!(!is_forbidden(&Method::POST, false, &evil, &a));
        assert!(!is_forbidden(&Method::GET, true, &evil, &a));
        assert!(!is_forbidden(
            &Method::POST,
            true,
            &evil,
            &AllowedOrigins::Any
        ));
    }
}
