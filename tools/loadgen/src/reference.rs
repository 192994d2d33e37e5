//! The minimal reference relay: hyper + tokio-tungstenite, no authentication, no database,
//! one mutex-guarded map of rooms, speaking the same wire format as telcall's signaling
//! WebSocket (`call_metadata`, `participants_snapshot`, `user_joined`/`user_left`, relayed
//! `offer`/`answer`/`ice_candidate` with `from_user`, `error` frames). It also answers
//! `GET /health`, `GET /api/calls/{id}` from memory, `POST /api/telegram/webhook`, and plays
//! a Bot API that accepts every method, so each figure has a same-machine ceiling.
//!
//! The credential is the user id itself: `Sec-WebSocket-Protocol: token.<id>`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// How long a closing connection may take to finish the close handshake.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(5);
/// Outbound frames queued per connection before the relay drops frames for it.
const OUTBOUND_QUEUE: usize = 256;

type Tx = mpsc::Sender<Utf8Bytes>;
/// Room → user id → (outbound queue, the user as JSON).
type Rooms = HashMap<String, HashMap<i64, (Tx, Utf8Bytes)>>;

#[derive(Default)]
struct Hub {
    rooms: Mutex<Rooms>,
    connections: AtomicU64,
    relayed: AtomicU64,
    dropped: AtomicU64,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, tx: &Tx, frame: Utf8Bytes) {
        if tx.try_send(frame).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds `id` to `room`; returns the snapshot of the others (JSON users).
    fn join(&self, room: &str, id: i64, tx: Tx, me: Utf8Bytes) -> Vec<Utf8Bytes> {
        let joined = Utf8Bytes::from(format!(r#"{{"type":"user_joined","user":{}}}"#, &*me));
        let mut rooms = self.lock();
        let members = rooms.entry(room.to_owned()).or_default();
        let mut others = Vec::with_capacity(members.len());
        for (uid, (otx, user)) in members.iter() {
            if *uid != id {
                others.push(user.clone());
                self.send(otx, joined.clone());
            }
        }
        members.insert(id, (tx, me));
        self.connections.fetch_add(1, Ordering::Relaxed);
        others
    }

    fn leave(&self, room: &str, id: i64, me: &Utf8Bytes) {
        let left = Utf8Bytes::from(format!(r#"{{"type":"user_left","user":{}}}"#, &**me));
        let mut rooms = self.lock();
        if let Some(members) = rooms.get_mut(room) {
            members.remove(&id);
            for (otx, _) in members.values() {
                self.send(otx, left.clone());
            }
            if members.is_empty() {
                rooms.remove(room);
            }
        }
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    fn relay(&self, room: &str, to: i64, frame: Utf8Bytes) -> bool {
        let rooms = self.lock();
        match rooms.get(room).and_then(|m| m.get(&to)) {
            Some((tx, _)) => {
                self.send(tx, frame);
                self.relayed.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

/// Serves the reference relay on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> anyhow::Result<()> {
    let hub = Arc::new(Hub::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(hub.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn handle(
    hub: Arc<Hub>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if method == hyper::Method::GET && path == "/health" {
        return Ok(json(StatusCode::OK, &br#"{"status":"ok"}"#[..]));
    }
    if method == hyper::Method::GET && path == "/metrics" {
        let body = format!(
            "telcall_ws_connections {}\ntelcall_messages_relayed_total {}\ntelcall_messages_dropped_total {}\n",
            hub.connections.load(Ordering::Relaxed),
            hub.relayed.load(Ordering::Relaxed),
            hub.dropped.load(Ordering::Relaxed)
        );
        return Ok(json(StatusCode::OK, body));
    }
    if let Some(id) = path.strip_prefix("/api/calls/")
        && method == hyper::Method::GET
        && !id.is_empty()
        && !id.contains('/')
    {
        let body = format!(
            r#"{{"call_id":"{id}","title":"load test","is_video_enabled":true,"status":"active","created_at":"2026-01-01T00:00:00Z","expires_at":"2026-01-02T00:00:00Z","join_url":"https://t.me/reference_bot?startapp={id}"}}"#
        );
        return Ok(json(StatusCode::OK, body));
    }
    if method == hyper::Method::POST && path == "/api/telegram/webhook" {
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        let ok = body
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v.get("update_id").is_some());
        return Ok(if ok {
            json(StatusCode::OK, &br#"{"ok":true}"#[..])
        } else {
            json(StatusCode::BAD_REQUEST, &br#"{"ok":false}"#[..])
        });
    }
    if method == hyper::Method::POST && path.starts_with("/bot") {
        // A Bot API that accepts every method.
        let _ = req.into_body().collect().await;
        return Ok(json(StatusCode::OK, &br#"{"ok":true,"result":true}"#[..]));
    }
    if let Some(room) = path.strip_prefix("/ws/calls/") {
        return Ok(upgrade(hub, room.to_owned(), req));
    }
    Ok(json(
        StatusCode::NOT_FOUND,
        &br#"{"detail":"Not Found"}"#[..],
    ))
}

fn upgrade(hub: Arc<Hub>, room: String, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let headers = req.headers();
    let Some(key) = headers
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
    else {
        return json(
            StatusCode::BAD_REQUEST,
            &br#"{"detail":"not a WebSocket request"}"#[..],
        );
    };
    let offered = headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let user_id = offered
        .as_deref()
        .and_then(|p| p.rsplit(',').next())
        .map(str::trim)
        .and_then(|p| p.strip_prefix("token."))
        .and_then(|t| t.parse::<i64>().ok());
    let Some(user_id) = user_id else {
        return json(
            StatusCode::UNAUTHORIZED,
            &br#"{"detail":"Not authenticated"}"#[..],
        );
    };
    let first = offered
        .as_deref()
        .and_then(|p| p.split(',').next())
        .map(|p| p.trim().to_owned())
        .unwrap_or_default();
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(
                    WebSocketConfig::default()
                        .read_buffer_size(4096)
                        .write_buffer_size(0),
                ),
            )
            .await;
            session(hub, room, user_id, ws).await;
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        "connection",
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        "upgrade",
        hyper::header::HeaderValue::from_static("websocket"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&derive_accept_key(&key)) {
        h.insert("sec-websocket-accept", v);
    }
    if let Ok(v) = hyper::header::HeaderValue::from_str(&first) {
        h.insert("sec-websocket-protocol", v);
    }
    resp
}

#[derive(Deserialize)]
struct ClientFrame<'a> {
    #[serde(rename = "type", default)]
    kind: Option<&'a str>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(default)]
    to_user_id: Option<serde_json::Value>,
}

fn error_frame(detail: &str) -> Message {
    Message::text(format!(r#"{{"type":"error","detail":"{detail}"}}"#))
}

async fn session<S>(hub: Arc<Hub>, room: String, id: i64, mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let me = Utf8Bytes::from(format!(
        r#"{{"id":{id},"username":"user_{id}","first_name":"User {id}","last_name":null,"photo_url":null}}"#
    ));
    let (tx, mut rx) = mpsc::channel(OUTBOUND_QUEUE);
    if ws
        .send(Message::text(
            r#"{"type":"call_metadata","room_start_time":"2026-01-01T00:00:00Z"}"#,
        ))
        .await
        .is_err()
    {
        return;
    }
    let others = hub.join(&room, id, tx, me.clone());
    if !others.is_empty() {
        let list: Vec<&str> = others.iter().map(|u| &**u).collect();
        let snapshot = format!(
            r#"{{"type":"participants_snapshot","participants":[{}]}}"#,
            list.join(",")
        );
        if ws.send(Message::text(snapshot)).await.is_err() {
            hub.leave(&room, id, &me);
            return;
        }
    }
    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let reply = match serde_json::from_str::<ClientFrame<'_>>(&text) {
                        Err(_) => Some(error_frame("Invalid JSON")),
                        Ok(f) => match f.kind {
                            Some(kind @ ("offer" | "answer" | "ice_candidate")) => {
                                let to = match &f.to_user_id {
                                    Some(serde_json::Value::Number(n)) => n.as_i64(),
                                    Some(serde_json::Value::String(s)) => s.parse().ok(),
                                    _ => None,
                                };
                                match to {
                                    None => Some(error_frame("Invalid or missing to_user_id")),
                                    Some(to) if to == id => None,
                                    Some(to) => {
                                        let payload = f.payload.map_or("null", RawValue::get);
                                        let frame = Utf8Bytes::from(format!(
                                            r#"{{"type":"{kind}","payload":{payload},"from_user":{}}}"#,
                                            &*me
                                        ));
                                        if hub.relay(&room, to, frame) {
                                            None
                                        } else {
                                            Some(error_frame("Target user is offline"))
                                        }
                                    }
                                }
                            }
                            _ => Some(error_frame("Unsupported message type")),
                        },
                    };
                    if let Some(reply) = reply
                        && ws.send(reply).await.is_err() {
                            break;
                        }
                }
                Some(Ok(Message::Binary(_))) => {
                    if ws.send(error_frame("Invalid JSON")).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    // The close reply is queued; flush it and read until the stream ends.
                    hub.leave(&room, id, &me);
                    let _ = ws.flush().await;
                    let _ = tokio::time::timeout(CLOSE_LINGER, async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                    return;
                }
                None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            out = rx.recv() => match out {
                Some(frame) => {
                    if ws.send(Message::Text(frame)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    hub.leave(&room, id, &me);
    let _ = ws.close(None).await;
}
