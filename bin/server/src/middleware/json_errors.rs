//! CONTRACT: "All error bodies are JSON `{"detail": …}`". Our handlers and extractors
//! already answer that way; this layer catches the rest — responses built by actix or its
//! middleware with an empty or plain-text body (a refused CORS preflight, a 405 from a route
//! that exists for another method) — and gives them a `{"detail"}` body, keeping their status
//! and headers.

use actix_web::body::{self, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};

use crate::error::ErrorBody;

/// Longest plain-text body reused as the `detail` of a 4xx; longer ones get the status'
/// canonical reason.
pub const MAX_TEXT_DETAIL: usize = 200;

/// Whether a response with this status and `Content-Type` needs a JSON body.
pub fn needs_json_body(status: StatusCode, content_type: Option<&HeaderValue>) -> bool {
    (status.is_client_error() || status.is_server_error())
        && !content_type
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
}

/// The `detail` for an error response whose body was `text`: short UTF-8 text of a 4xx is
/// kept (e.g. "Origin is not allowed to make this request"); otherwise, and always for 5xx
/// (whose causes are never sent), the canonical reason ("Method Not Allowed").
pub fn detail_for(status: StatusCode, text: &[u8]) -> String {
    let reason = || status.canonical_reason().unwrap_or("Error").to_owned();
    if status.is_server_error() {
        return reason();
    }
    match std::str::from_utf8(text).map(str::trim) {
        Ok(t) if !t.is_empty() && t.len() <= MAX_TEXT_DETAIL && !t.contains('\n') => t.to_owned(),
        _ => reason(),
    }
}

/// `actix_web::middleware::from_fn` middleware rewriting non-JSON error bodies.
pub async fn json_error_bodies(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, Vec<u8>>>, Error> {
    let res = next.call(req).await?;
    if !needs_json_body(res.status(), res.headers().get(CONTENT_TYPE)) {
        return Ok(res.map_into_left_body());
    }
    let status = res.status();
    let (req, res) = res.into_parts();
    let (head, old_body) = res.into_parts();
    // Error bodies are small; a body that cannot be read is replaced all the same.
    let text = body::to_bytes_limited(old_body, MAX_TEXT_DETAIL * 4)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let json = serde_json::to_vec(&ErrorBody {
        detail: detail_for(status, &text),
    })
    .unwrap_or_default();
    let mut res: HttpResponse<Vec<u8>> = head.set_body(json);
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(ServiceResponse::new(req, res).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_responses_are_rewritten() {
        let json = HeaderValue::from_static("application/json");
        let text = HeaderValue::from_static("text/plain; charset=utf-8");
        assert!(needs_json_body(StatusCode::METHOD_NOT_ALLOWED, None));
        assert!(needs_json_body(StatusCode::BAD_REQUEST, Some(&text)));
        assert!(!needs_json_body(StatusCode::BAD_REQUEST, Some(&json)));
        assert!(!needs_json_body(StatusCode::OK, None));
        assert!(!needs_json_body(StatusCode::SWITCHING_PROTOCOLS, None));
    }

    #[test]
    fn details() {
        assert_eq!(
            detail_for(StatusCode::METHOD_NOT_ALLOWED, b""),
            "Method Not Allowed"
        );
        assert_eq!(
            detail_for(StatusCode::BAD_REQUEST, b"Bad origin"),
            "Bad origin"
        );
        assert_eq!(
            detail_for(StatusCode::INTERNAL_SERVER_ERROR, b"db password x"),
            "Internal Server Error"
        );
        assert_eq!(
            detail_for(StatusCode::BAD_REQUEST, "x".repeat(300).as_bytes()),
            "Bad Request"
        );
    }
}
