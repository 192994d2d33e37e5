//! A deadline for receiving a whole request body (`REQUEST_BODY_TIMEOUT_SECONDS`).
//!
//! actix-http cuts a slow request head (5 s) but waits for a body as long as the client
//! keeps the connection open. This layer replaces the body of every request that has one
//! with a stream that fails once the deadline (counted from the request head) passes. The
//! request is then answered 408 `{"detail": "Request body was not received in time"}`,
//! whatever the handler made of the error, and the connection is closed.
//!
//! A body the handler left unread (it answered first, e.g. 401) is kept until the answer
//! is written ([`HeldBody`]), so actix closes the connection instead of waiting to drain
//! the rest of it.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::http::{ConnectionType, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use crate::error::detail_response;
use crate::state::AppState;

/// The `detail` of the 408 answer.
pub const BODY_TIMEOUT_DETAIL: &str = "Request body was not received in time";

/// What the layer and the body stream it installed share.
struct Shared {
    /// The request's own body; taken back by the layer after the handler.
    payload: Option<Payload>,
    /// The body was read to its end (or failed on its own).
    finished: bool,
    /// The deadline passed while the body was being read.
    timed_out: bool,
}

/// The body a handler sees: the real one, until the deadline.
struct DeadlineBody {
    shared: Rc<RefCell<Shared>>,
    deadline: Pin<Box<Sleep>>,
}

impl Stream for DeadlineBody {
    type Item = Result<web::Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let mut shared = this.shared.borrow_mut();
        if shared.finished || shared.timed_out {
            return Poll::Ready(None);
        }
        // The deadline first: a client trickling one byte at a time must not extend it.
        if this.deadline.as_mut().poll(cx).is_ready() {
            shared.timed_out = true;
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                BODY_TIMEOUT_DETAIL,
            )))));
        }
        let Some(payload) = shared.payload.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(payload).poll_next(cx) {
            Poll::Ready(None) => {
                shared.finished = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                shared.finished = true;
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }
}

/// A response body that keeps the request body the handler did not finish alive until the
/// response is written: actix-http then sees an unread body and closes the connection (a
/// dropped chunked body would instead be drained, for as long as the client trickles it).
pub struct HeldBody {
    body: BoxBody,
    _unread: Option<Payload>,
}

impl MessageBody for HeldBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<web::Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

/// The layer (used with `actix_web::middleware::from_fn`).
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static, HeldBody>>, Error> {
    let timeout = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.settings.connections.request_body_timeout);
    let payload = req.take_payload();
    let (Some(timeout), false) = (
        timeout,
        matches!(payload, Payload::None) || is_upgrade(&req),
    ) else {
        // No body (or a WebSocket handshake, whose "body" is the socket): nothing to time.
        req.set_payload(payload);
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let shared = Rc::new(RefCell::new(Shared {
        payload: Some(payload),
        finished: false,
        timed_out: false,
    }));
    req.set_payload(Payload::Stream {
        payload: Box::pin(DeadlineBody {
            shared: shared.clone(),
            deadline: Box::pin(tokio::time::sleep_until(deadline(timeout))),
        }),
    });

    let res = next.call(req).await;
    let (timed_out, unread) = {
        let mut shared = shared.borrow_mut();
        let unread = if shared.finished {
            None
        } else {
            shared.payload.take()
        };
        (shared.timed_out, unread)
    };
    let res = res?;
    if !timed_out && unread.is_none() {
        return Ok(res.map_into_left_body());
    }
    let mut res = if timed_out {
        tracing::info!("request body not received in time");
        let (http_req, _) = res.into_parts();
        ServiceResponse::new(
            http_req,
            detail_response(StatusCode::REQUEST_TIMEOUT, BODY_TIMEOUT_DETAIL),
        )
    } else {
        res.map_into_boxed_body()
    };
    res.response_mut()
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    Ok(res
        .map_body(|_, body| HeldBody {
            body,
            _unread: unread,
        })
        .map_into_right_body())
}

fn deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or(now)
}

fn is_upgrade(req: &ServiceRequest) -> bool {
    req.head().upgrade() || req.headers().contains_key(header::UPGRADE)
}
