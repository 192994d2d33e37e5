//! Cross-cutting HTTP layers: security headers, CORS, request spans, JSON error bodies,
//! CSRF origin checks ([`csrf`]), per-IP rate limits ([`rate_limit`]) and the request-body
//! deadline ([`body_deadline()`]).
//!
//! The order of the layers (outermost first), as `startup::http_server` wraps them:
//!
//! 1. `TracingLogger` ([`RequestSpans`]): one span per request, so every refusal below is
//!    logged inside it;
//! 2. [`security_headers`]: on every response, 404s, 403s and 429s included;
//! 3. [`json_errors::json_error_bodies`]: an error answered without a JSON body (CORS
//!    preflight refusals, actix's bare 404/405) gets CONTRACT's `{"detail": …}` body;
//! 4. [`cors_only_for_allowed_origins`] then [`cors`]: the latter answers preflights itself
//!    and adds `Access-Control-*` to everything inside, so the frontend can read a 429 or a
//!    403; the former strips those headers again unless the `Origin` is allowed;
//! 5. [`body_deadline::body_deadline`]: a request body must arrive within
//!    `REQUEST_BODY_TIMEOUT_SECONDS` (408 and the connection closed otherwise); inside CORS
//!    so the frontend can read the 408;
//! 6. the rate limits ([`rate_limit::rate_limits`]), sign-in per minute and per hour,
//!    call creation per minute and per hour, or the default per-minute limit;
//! 7. [`csrf::csrf_guard`]: refuses a cookie-authenticated write from a foreign origin before
//!    any handler (or extractor) runs;
//! 8. the routes.
//!
//! Before all of them, when a connection is accepted, [`crate::connections`] applies the
//! connection caps.

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{Error, HttpMessage, http::Method};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

use crate::config::{AllowedOrigins, Settings, TELEGRAM_WEB_ORIGINS};

pub mod body_deadline;
pub mod csrf;
pub mod json_errors;
pub mod rate_limit;

pub use body_deadline::body_deadline;
pub use csrf::csrf_guard;
pub use json_errors::json_error_bodies;
pub use rate_limit::{Limit, RateLimits};

/// The `Permissions-Policy` of every response: the Mini App may use the camera and the
/// microphone on its own origin; nothing may ask for the location.
pub const PERMISSIONS_POLICY: &str = "camera=(self), microphone=(self), geolocation=()";

/// Seconds a browser may cache a CORS preflight answer.
pub const CORS_MAX_AGE_SECS: usize = 600;

/// The `Content-Security-Policy` of every response: an API serves no active content, and
/// only Telegram's web clients may frame the app.
pub fn content_security_policy() -> String {
    format!(
        "default-src 'none'; frame-ancestors 'self' {}",
        TELEGRAM_WEB_ORIGINS.join(" ")
    )
}

/// Security headers on every response, errors and 429s included.
pub fn security_headers(settings: &Settings) -> DefaultHeaders {
    let headers = DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "strict-origin-when-cross-origin"))
        .add(("Content-Security-Policy", content_security_policy()))
        .add(("Permissions-Policy", PERMISSIONS_POLICY));
    if settings.debug {
        headers
    } else {
        headers.add((
            "Strict-Transport-Security",
            "max-age=63072000; includeSubDomains",
        ))
    }
}

/// CORS exactly as CONTRACT: configured origins plus Telegram's web origins, with
/// credentials and a 10-minute preflight cache. Other origins get no CORS headers (the
/// browser then refuses to hand them the response); the CSRF check refuses their writes.
pub fn cors(settings: &Settings) -> Cors {
    let allowed: AllowedOrigins = settings.cors_allow_origins.clone();
    Cors::default()
        .allowed_origin_fn(move |origin, _req| {
            origin.to_str().map(|o| allowed.allows(o)).unwrap_or(false)
        })
        .allowed_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allowed_headers([
            actix_web::http::header::CONTENT_TYPE,
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::ACCEPT,
        ])
        .expose_headers(["Retry-After"])
        .supports_credentials()
        .block_on_origin_mismatch(false)
        .max_age(CORS_MAX_AGE_SECS)
}

/// Removes every `Access-Control-*` header from answers to requests without an allowed
/// `Origin`. actix-cors adds `Access-Control-Allow-Credentials` (and the exposed headers)
/// to every response, also when no origin or a refused one was sent; CONTRACT grants CORS
/// to allowed origins only.
pub async fn cors_only_for_allowed_origins(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let allowed = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .zip(req.app_data::<actix_web::web::Data<crate::state::AppState>>())
        .is_some_and(|(origin, state)| state.settings.cors_allow_origins.allows(origin));
    let mut res = next.call(req).await?;
    if !allowed {
        let headers = res.headers_mut();
        let names: Vec<_> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in names {
            headers.remove(name);
        }
    }
    Ok(res)
}

/// Root spans for requests: one per request with a request id and the matched route;
/// health checks at debug level so they do not flood the logs.
pub struct RequestSpans;

impl RootSpanBuilder for RequestSpans {
    fn on_request_start(request: &ServiceRequest) -> Span {
        // Our own fields rather than `root_span!`'s: the client IP is resolved with the
        // trusted-proxy rules (a client cannot forge it with `X-Forwarded-For`), and the
        // target is the path alone (a query string may carry something secret).
        let client_ip = request
            .app_data::<actix_web::web::Data<crate::state::AppState>>()
            .and_then(|state| crate::extract::client_ip(request, &state.settings.trusted_proxies))
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "default".to_owned());
        let request_id = request
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let user_agent = request
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        macro_rules! request_span {
            ($level:expr) => {
                tracing::span!(
                    $level,
                    "HTTP request",
                    http.method = %request.method(),
                    http.route = %route,
                    http.target = %request.path(),
                    http.client_ip = %client_ip,
                    http.user_agent = %user_agent,
                    http.status_code = tracing::field::Empty,
                    otel.name = %format!("{} {}", request.method(), route),
                    otel.kind = "server",
                    otel.status_code = tracing::field::Empty,
                    request_id = %request_id,
                    exception.message = tracing::field::Empty,
                    exception.details = tracing::field::Empty,
                    user = tracing::field::Empty,
                )
            };
        }
        if request.path().starts_with("/health") || request.path() == "/metrics" {
            request_span!(tracing::Level::DEBUG)
        } else {
            request_span!(tracing::Level::INFO)
        }
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
