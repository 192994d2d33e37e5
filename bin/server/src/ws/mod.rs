//! `GET /ws/calls/{call_id}`: the WebSocket bridge between a browser and the signaling hub.
//!
//! # Handshake (CONTRACT.md, in this order)
//!
//! Every WebSocket upgrade is *accepted*; a refused connection is then closed with a code and
//! reason the browser can read (the frontend looks for "please create a new call"):
//!
//! 1. an `Origin` header, when present, must be allowed ([`AllowedOrigins`], which includes
//!    the Telegram web origins), else **4403** "Origin not allowed";
//! 2. the credential is the last value of `Sec-WebSocket-Protocol` (all headers, comma
//!    separated) with a `token.` or `bearer ` prefix stripped, else `Authorization: Bearer`;
//!    never the query string. It is a session JWT or a single-use `/auth/ws-token` ticket,
//!    and its user must exist, else **4401** ("Not authenticated", "Invalid token", "Token
//!    has expired", "User not found");
//! 3. the call must exist and be active and unexpired, else **4404** "Call not found. /
//!    Call has expired. / Call has ended. Please create a new call.";
//! 4. a full room → **4429** "Call is full";
//! 5. the same user again replaces the older connection, which the hub closes with **4409**.
//!
//! With several instances (`REDIS_URL`), steps 4 and 5 are decided by the room roster in
//! Redis ([`telcall_redis::RedisBroker::join_room`]), atomically across instances, before
//! the local hub's join; the seat is given back when the session ends.
//!
//! A revoked session (logout) is refused at step 2 ("Invalid token"), and the connections it
//! already opened are closed with **4401** "Invalid token" ([`logout`]).
//!
//! When the client offered subprotocols, the response selects the first one offered
//! (browsers drop a connection whose offered protocol is not echoed).
//! A server-side failure during the handshake (database, ticket store) closes with 1011.
//!
//! # Session
//!
//! See [`session`]: one task per connection, one tracing span (call, user, connection id),
//! no database access on the relay path ([`presence`] records joins and leaves in the
//! background). Client frames are read by [`frames::FrameReader`], which never buffers more
//! than `MAX_WEBSOCKET_MESSAGE_SIZE` of one message whatever the client announces: a larger
//! message is discarded as it arrives and answered with
//! `Message too large: <n> bytes (max <limit> bytes)`, and the connection stays open.

pub mod frames;
pub mod logout;
pub mod outgoing;
pub mod presence;
pub mod session;
pub mod upgrade;

use actix_web::body::{BodyStream, MessageBody as _};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use telcall_auth::CredentialKind;
use telcall_domain::{Call, CallCode, DomainError, User, UserId};
use telcall_signaling::{JoinError, SignalingUser, close};
use tracing::Instrument as _;

pub use logout::SessionSockets;
pub use presence::Presence;

use crate::config::AllowedOrigins;
use crate::error::ApiError;
use crate::state::AppState;

/// Registers the WebSocket route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(crate::openapi::WS_PATH).route(web::get().to(connect)));
}

/// Why a handshake was refused: the close code and reason the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason.
    pub reason: String,
}

impl Refusal {
    fn new(code: u16, reason: &str) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
        }
    }
}

/// The subprotocols the client offered, in order, over every `Sec-WebSocket-Protocol` header.
pub fn offered_protocols(req: &HttpRequest) -> Vec<String> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The handshake credential: the last offered subprotocol without its `token.` / `bearer `
/// prefix, else the `Authorization: Bearer` token. Never the query string or a cookie.
pub fn credential(req: &HttpRequest, offered: &[String]) -> Option<String> {
    let from_protocol = offered.last().map(|last| {
        let lower = last.to_ascii_lowercase();
        let stripped = ["token.", "bearer "]
            .iter()
            .find(|prefix| lower.starts_with(*prefix))
            .map_or(last.as_str(), |prefix| &last[prefix.len()..]);
        stripped.trim().to_owned()
    });
    from_protocol
        .filter(|t| !t.is_empty())
        .or_else(|| crate::auth::bearer_token(req))
}

/// Step 1: the `Origin` header, when present, must be allowed.
pub fn check_origin(req: &HttpRequest, allowed: &AllowedOrigins) -> Result<(), Refusal> {
    let mut origins = req.headers().get_all(header::ORIGIN);
    let Some(origin) = origins.next() else {
        return Ok(());
    };
    let ok = origins.next().is_none()
        && origin
            .to_str()
            .map(|o| allowed.allows(o.trim()))
            .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(Refusal::new(
            close::ORIGIN_NOT_ALLOWED,
            close::REASON_ORIGIN_NOT_ALLOWED,
        ))
    }
}

/// The close reason for a call that cannot be joined.
pub fn call_refusal(error: &DomainError) -> Refusal {
    match error {
        DomainError::CallExpired => {
            Refusal::new(close::CALL_NOT_AVAILABLE, close::REASON_CALL_EXPIRED)
        }
        DomainError::CallNotAvailable | DomainError::CallNoLongerActive => {
            Refusal::new(close::CALL_NOT_AVAILABLE, close::REASON_CALL_ENDED)
        }
        DomainError::Storage(_) => {
            Refusal::new(close::INTERNAL_ERROR, close::REASON_INTERNAL_ERROR)
        }
        _ => Refusal::new(close::CALL_NOT_AVAILABLE, close::REASON_CALL_NOT_FOUND),
    }
}

/// A handshake that passed steps 1–3.
struct Admitted {
    user: User,
    call: Call,
    kind: CredentialKind,
    /// The session the credential belongs to (closing it closes this connection).
    session_id: Option<String>,
}

/// Steps 1–3 of the handshake.
async fn admit(
    req: &HttpRequest,
    state: &AppState,
    code: &str,
    offered: &[String],
) -> Result<Admitted, Refusal> {
    check_origin(req, &state.settings.cors_allow_origins)?;

    let token = credential(req, offered)
        .ok_or_else(|| Refusal::new(close::UNAUTHORIZED, close::REASON_NOT_AUTHENTICATED))?;
    let identity = state
        .sessions
        .verify_live_ws_credential(&token, state.tickets.as_ref(), state.revocations.as_ref())
        .await
        .map_err(|e| {
            if e.is_server_error() {
                tracing::error!(error = %e, "WebSocket credential check failed");
                Refusal::new(close::INTERNAL_ERROR, close::REASON_INTERNAL_ERROR)
            } else {
                tracing::debug!(error = %e, "WebSocket credential refused");
                Refusal::new(close::UNAUTHORIZED, e.detail())
            }
        })?;
    let user = state
        .users
        .authenticate(UserId::new(identity.user_id))
        .await
        .map_err(|e| match e {
            DomainError::UserNotFound => {
                Refusal::new(close::UNAUTHORIZED, close::REASON_USER_NOT_FOUND)
            }
            other => {
                tracing::error!(error = %other, "WebSocket user lookup failed");
                Refusal::new(close::INTERNAL_ERROR, close::REASON_INTERNAL_ERROR)
            }
        })?;

    let code: CallCode = code
        .parse()
        .map_err(|e| call_refusal(&DomainError::from(e)))?;
    let call = state.calls.joinable_call(&code).await.map_err(|e| {
        if matches!(e, DomainError::Storage(_)) {
            tracing::error!(error = %e, "WebSocket call lookup failed");
        }
        call_refusal(&e)
    })?;
    Ok(Admitted {
        user,
        call,
        kind: identity.kind,
        session_id: identity.session_id,
    })
}

fn signaling_user(user: &User) -> SignalingUser {
    SignalingUser {
        id: user.id,
        username: user.username.clone(),
        first_name: user.first_name.clone(),
        last_name: user.last_name.clone(),
        photo_url: user.photo_url.clone(),
    }
}

/// Accepts the upgrade, runs the handshake checks and starts the session (or closes the
/// socket with the refusal's code and reason).
async fn connect(
    req: HttpRequest,
    body_raw: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let code = path.into_inner();
    let offered = offered_protocols(&req);

    // The handshake response is built here and its body is this connection's hand-off
    // (`outgoing`); the read half is ours too (bounded, see `frames`).
    let mut response = match actix_http::ws::handshake(req.head()) {
        Ok(response) => response,
        Err(e) => return Err(ApiError::from_handshake(&e).into()),
    };
    // Browsers drop a connection whose offered protocol is not echoed: select the first.
    if let Some(first) = offered.first()
        && let Ok(value) = header::HeaderValue::from_str(first)
    {
        response.insert_header((header::SEC_WEBSOCKET_PROTOCOL, value));
    }
    let (socket, body) = outgoing::outgoing();
    let response: HttpResponse = response.message_body(BodyStream::new(body).boxed())?.into();
    let raw = body_raw.into_inner();

    match admit(&req, &state, &code, &offered).await {
        Ok(admitted) => start(&state, admitted, socket, raw).await,
        Err(refusal) => {
            tracing::info!(
                call = %code,
                close_code = refusal.code,
                close_reason = %refusal.reason,
                "WebSocket refused"
            );
            refuse(&socket, &refusal);
        }
    }
    Ok(response)
}

/// Closes an accepted socket with the refusal's code and reason.
fn refuse(socket: &outgoing::Outgoing, refusal: &Refusal) {
    let _ = socket.close(refusal.code, &refusal.reason);
}

/// With several instances (`REDIS_URL`), a seat in the room's roster in Redis: capacity and
/// one connection per user hold across instances. `Ok(None)` when there is no shared
/// roster. When Redis failed the seat is held locally (the room works among this instance's
/// connections) and taken in Redis once it answers again.
async fn take_seat(
    state: &AppState,
    interest: Option<&telcall_redis::RoomInterest>,
    user: &SignalingUser,
) -> Result<Option<telcall_redis::Seat>, Refusal> {
    let (Some(broker), Some(interest)) = (&state.broker, interest) else {
        return Ok(None);
    };
    let capacity = state.settings.ws.max_participants_per_call;
    match broker.join_room(interest, user, capacity).await {
        Ok(seat) => Ok(Some(seat)),
        Err(telcall_redis::RosterError::Full) => {
            Err(Refusal::new(close::ROOM_FULL, close::REASON_ROOM_FULL))
        }
        Err(telcall_redis::RosterError::Unavailable { seat, error }) => {
            tracing::warn!(%error, "Redis roster unavailable; joining this instance's room until it answers");
            Ok(Some(seat))
        }
    }
}

/// Gives a roster seat back, off the caller's path.
fn release_seat(state: &AppState, seat: Option<telcall_redis::Seat>) {
    if let (Some(broker), Some(seat)) = (state.broker.clone(), seat) {
        actix_web::rt::spawn(async move { broker.leave_room(&seat, false).await });
    }
}

/// Step 4 and 5 (the roster and the hub) and the session.
async fn start(state: &AppState, admitted: Admitted, socket: outgoing::Outgoing, raw: Payload) {
    let Admitted {
        user,
        call,
        kind,
        session_id,
    } = admitted;
    let member = signaling_user(&user);
    let interest = state
        .broker
        .as_ref()
        .map(|broker| broker.interest(call.code.as_str()));
    let seat = match take_seat(state, interest.as_ref(), &member).await {
        Ok(seat) => seat,
        Err(refusal) => {
            tracing::info!(
                call = %call.code,
                user = user.id.get(),
                close_code = refusal.code,
                close_reason = %refusal.reason,
                "WebSocket refused"
            );
            refuse(&socket, &refusal);
            return;
        }
    };
    let joined = state.hub.join(call.code.as_str(), member);
    drop(interest);
    let joined = match joined {
        Ok(joined) => joined,
        Err(e) => {
            release_seat(state, seat);
            let refusal = match e {
                JoinError::RoomFull => Refusal::new(close::ROOM_FULL, close::REASON_ROOM_FULL),
                JoinError::TooManyConnections => Refusal::new(
                    close::TOO_MANY_CONNECTIONS,
                    close::REASON_TOO_MANY_CONNECTIONS,
                ),
                JoinError::ShuttingDown => Refusal::new(close::GOING_AWAY, close::REASON_SHUTDOWN),
                JoinError::Ended { reason } => Refusal::new(
                    close::CALL_NOT_AVAILABLE,
                    if reason == telcall_signaling::EndReason::Expired.to_string() {
                        close::REASON_CALL_EXPIRED
                    } else {
                        close::REASON_CALL_ENDED
                    },
                ),
            };
            tracing::info!(
                call = %call.code,
                user = user.id.get(),
                close_code = refusal.code,
                close_reason = %refusal.reason,
                "WebSocket refused"
            );
            refuse(&socket, &refusal);
            return;
        }
    };
    let span = tracing::info_span!(
        parent: None,
        "ws",
        call = %call.code,
        user = user.id.get(),
        conn = %joined.handle.id()
    );
    span.in_scope(|| {
        tracing::info!(
            credential = ?kind,
            replaced = joined.replaced,
            "WebSocket connected"
        );
    });
    let ws = state.settings.ws.clone();
    let handle = joined.handle.clone();
    let session = session::Session {
        hub: state.hub.clone(),
        presence: state.presence.clone(),
        calls: state.calls.clone(),
        reader: frames::FrameReader::new(raw, ws.max_message_size),
        settings: ws,
        call,
        joined,
        socket,
    };
    // Boxed: captured by the task's future below and awaited there, it would be held twice.
    let session = Box::pin(session.run());
    let sockets = state.session_sockets.clone();
    let revocations = state.revocations.clone();
    let hub = state.hub.clone();
    let broker = state.broker.clone();
    let run = async move {
        if let Some(sid) = &session_id {
            sockets.add(sid, handle.clone());
            // A logout between the credential check and this registration did not see the
            // connection: look again now that a later logout will.
            if matches!(revocations.is_revoked(sid).await, Ok(true)) {
                hub.close_connection(&handle, close::UNAUTHORIZED, close::REASON_SESSION_REVOKED);
            }
        }
        session.await;
        if let Some(sid) = &session_id {
            sockets.remove(sid, handle.id());
        }
        // The seat goes back whatever ended the session (a newer connection of the same
        // user holds a seat of its own, which this leaves alone). At shutdown the hub
        // announced no leave: the other instances tell their rooms.
        if let (Some(broker), Some(seat)) = (broker, seat) {
            let notify = hub.is_shutting_down() && !handle.is_replaced();
            // Boxed: only the connection's last step needs it.
            Box::pin(broker.leave_room(&seat, notify)).await;
        }
    };
    actix_web::rt::spawn(run.instrument(span));
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn offered(req: &HttpRequest) -> (Vec<String>, Option<String>) {
        let offered = offered_protocols(req);
        let cred = credential(req, &offered);
        (offered, cred)
    }

    #[test]
    fn credential_is_the_last_protocol_without_prefix() {
        let req = TestRequest::default()
            .append_header((header::SEC_WEBSOCKET_PROTOCOL, "json, token.abc.def"))
            .to_http_request();
        let (list, cred) = offered(&req);
        assert_eq!(list, ["json", "token.abc.def"]);
        assert_eq!(cred.as_deref(), Some("abc.def"));

        let req = TestRequest::default()
            .append_header((header::SEC_WEBSOCKET_PROTOCOL, "token.first"))
            .append_header((header::SEC_WEBSOCKET_PROTOCOL, "bearer second"))
            .append_header((header::AUTHORIZATION, "Bearer header"))
            .to_http_request();
        assert_eq!(offered(&req).1.as_deref(), Some("second"));

        let req = TestRequest::default()
            .append_header((header::SEC_WEBSOCKET_PROTOCOL, "rawjwt"))
            .to_http_request();
        assert_eq!(offered(&req).1.as_deref(), Some("rawjwt"));
    }

    #[test]
    fn falls_back_to_bearer_never_the_query() {
        let req = TestRequest::with_uri("/ws/calls/x?token=abc")
            .append_header((header::AUTHORIZATION, "Bearer from-header"))
            .to_http_request();
        assert_eq!(offered(&req).1.as_deref(), Some("from-header"));
        let req = TestRequest::with_uri("/ws/calls/x?token=abc&access_token=abc").to_http_request();
        assert_eq!(offered(&req).1, None);
        let req = TestRequest::default()
            .append_header((header::SEC_WEBSOCKET_PROTOCOL, "token."))
            .append_header((header::AUTHORIZATION, "Bearer fallback"))
            .to_http_request();
        assert_eq!(offered(&req).1.as_deref(), Some("fallback"));
    }

    #[test]
    fn origin_rules() {
        let allowed = AllowedOrigins::List(vec!["https://app.example.com".into()]);
        let with = |o: &str| {
            TestRequest::default()
                .insert_header((header::ORIGIN, o))
                .to_http_request()
        };
        assert!(check_origin(&TestRequest::default().to_http_request(), &allowed).is_ok());
        assert!(check_origin(&with("https://app.example.com"), &allowed).is_ok());
        assert!(check_origin(&with("https://web.telegram.org"), &allowed).is_ok());
        let refused = check_origin(&with("https://evil.example.com"), &allowed).unwrap_err();
        assert_eq!(refused.code, 4403);
        assert_eq!(refused.reason, "Origin not allowed");
        assert!(check_origin(&with("null"), &allowed).is_err());
    }

    #[test]
    fn call_refusal_reasons() {
        assert_eq!(
            call_refusal(&DomainError::CallNotFound),
            Refusal::new(4404, "Call not found. Please create a new call.")
        );
        assert_eq!(
            call_refusal(&DomainError::CallExpired),
            Refusal::new(4404, "Call has expired. Please create a new call.")
        );
        assert_eq!(
            call_refusal(&DomainError::CallNotAvailable),
            Refusal::new(4404, "Call has ended. Please create a new call.")
        );
    }
}
