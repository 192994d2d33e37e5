//! WebSocket test client: a real tokio-tungstenite connection to `/ws/calls/{id}` with
//! typed helpers to send signals and await frames (every wait is bounded).

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use telcall_domain::{CallCode, Participant};

use super::{ALLOWED_ORIGIN, TestApp, TestUser};

/// How long any single WebSocket wait may take before the test fails.
pub const WS_TIMEOUT: Duration = Duration::from_secs(15);

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connection being prepared.
pub struct WsRequest {
    url: String,
    protocols: Vec<String>,
    origin: Option<String>,
    authorization: Option<String>,
}

impl WsRequest {
    /// Offers these subprotocols (one `Sec-WebSocket-Protocol` header, comma-separated).
    pub fn protocols(mut self, protocols: &[&str]) -> Self {
        self.protocols = protocols.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    /// Offers `token.<token>`, as the frontend does.
    pub fn token(self, token: &str) -> Self {
        self.protocols(&[&format!("token.{token}")])
    }

    /// Sends this `Origin` (the default is an allowed origin).
    pub fn origin(mut self, origin: &str) -> Self {
        self.origin = Some(origin.to_owned());
        self
    }

    /// Sends no `Origin` header (a non-browser client).
    pub fn no_origin(mut self) -> Self {
        self.origin = None;
        self
    }

    /// Sends `Authorization: Bearer <token>`.
    pub fn bearer(mut self, token: &str) -> Self {
        self.authorization = Some(format!("Bearer {token}"));
        self
    }

    /// Appends a query string to the URL.
    pub fn query(mut self, query: &str) -> Self {
        self.url = format!("{}?{query}", self.url);
        self
    }

    /// Opens the connection (the handshake itself, not the admission checks).
    pub async fn try_connect(self) -> Result<WsClient, tungstenite::Error> {
        let mut request = self.url.into_client_request()?;
        let headers = request.headers_mut();
        if !self.protocols.is_empty() {
            headers.insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(&self.protocols.join(", ")).unwrap(),
            );
        }
        if let Some(origin) = &self.origin {
            headers.insert("Origin", HeaderValue::from_str(origin).unwrap());
        }
        if let Some(auth) = &self.authorization {
            headers.insert("Authorization", HeaderValue::from_str(auth).unwrap());
        }
        let config = WebSocketConfig::default();
        let (stream, response) = tokio::time::timeout(
            WS_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(request, Some(config), true),
        )
        .await
        .expect("WebSocket handshake timed out")?;
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        Ok(WsClient { stream, protocol })
    }

    /// Opens the connection; panics if the handshake fails.
    pub async fn connect(self) -> WsClient {
        self.try_connect()
            .await
            .expect("WebSocket handshake failed")
    }
}

/// An open client connection.
pub struct WsClient {
    /// The tungstenite stream, for tests that need raw access.
    pub stream: Stream,
    /// The `Sec-WebSocket-Protocol` the server selected.
    pub protocol: Option<String>,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A close frame with this code and reason.
    Close(u16, String),
    /// A close frame without a code.
    CloseWithoutCode,
    /// The connection ended without a close frame.
    Dropped(String),
}

impl WsClient {
    /// The next frame of any kind; `None` when the stream ended.
    pub async fn next_frame(&mut self) -> Option<Result<Message, tungstenite::Error>> {
        tokio::time::timeout(WS_TIMEOUT, self.stream.next())
            .await
            .expect("timed out waiting for a WebSocket frame")
    }

    /// The next JSON text message, skipping pings and pongs. Panics on anything else.
    pub async fn recv(&mut self) -> Value {
        loop {
            match self.next_frame().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text).expect("server sent invalid JSON");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// The next message, which must be of type `ty`.
    pub async fn expect(&mut self, ty: &str) -> Value {
        let message = self.recv().await;
        assert_eq!(message["type"], ty, "unexpected message {message}");
        message
    }

    /// The next message, which must be `{"type":"error","detail":<detail>}`.
    pub async fn expect_error(&mut self, detail: &str) {
        let message = self.expect("error").await;
        assert_eq!(message["detail"], detail);
    }

    /// Reads until the connection ends; returns the text messages read on the way and how
    /// it ended.
    pub async fn read_to_end(&mut self) -> (Vec<Value>, Ending) {
        let mut messages = Vec::new();
        loop {
            match self.next_frame().await {
                Some(Ok(Message::Text(text))) => {
                    messages.push(serde_json::from_str(&text).expect("invalid JSON"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_))) => {}
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (
                        messages,
                        Ending::Close(u16::from(frame.code), frame.reason.to_string()),
                    );
                }
                Some(Ok(Message::Close(None))) => return (messages, Ending::CloseWithoutCode),
                Some(Ok(Message::Frame(_))) => {}
                Some(Err(e)) => return (messages, Ending::Dropped(e.to_string())),
                None => return (messages, Ending::Dropped("end of stream".to_owned())),
            }
        }
    }

    /// The next frame must be a close frame; returns its code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.next_frame().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.stream
            .send(Message::text(text.into()))
            .await
            .expect("send failed");
    }

    /// Sends a JSON message.
    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(value.to_string()).await;
    }

    /// Sends `{"type":<kind>,"payload":<payload>,"to_user_id":<to>}`.
    pub async fn signal(&mut self, kind: &str, to: i64, payload: Value) {
        self.send_json(&json!({ "type": kind, "payload": payload, "to_user_id": to }))
            .await;
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, data: Vec<u8>) {
        self.stream
            .send(Message::binary(data))
            .await
            .expect("send failed");
    }

    /// Closes from the client side and waits for the server's close frame (by then the
    /// server has left the room). The TCP connection is then dropped by the client, as a
    /// browser does: actix only notices an unread request payload when bytes arrive, so the
    /// server side would otherwise linger until `client_disconnect_timeout` (1 s).
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        loop {
            match tokio::time::timeout(WS_TIMEOUT, self.stream.next()).await {
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return,
                Ok(Some(Ok(_))) => {}
                Err(_) => panic!("the server never answered the close"),
            }
        }
    }

    /// Proves nothing else is pending for this client: sends an invalid frame and requires
    /// the very next message to be its `Invalid JSON` error.
    pub async fn assert_nothing_pending(&mut self) {
        self.send_text("barrier").await;
        let next = self.recv().await;
        assert_eq!(
            next,
            json!({"type": "error", "detail": "Invalid JSON"}),
            "something arrived before the barrier"
        );
    }
}

impl TestApp {
    /// A WebSocket request for `call_id` from an allowed origin, without a credential.
    pub fn ws(&self, call_id: &str) -> WsRequest {
        WsRequest {
            url: self.ws_url(call_id),
            protocols: Vec::new(),
            origin: Some(ALLOWED_ORIGIN.to_owned()),
            authorization: None,
        }
    }

    /// A WebSocket request for `call_id` to another server on this machine (a process of the
    /// same deployment listening on `port`), from an allowed origin, without a credential.
    pub fn ws_on(&self, port: u16, call_id: &str) -> WsRequest {
        WsRequest {
            url: format!("ws://127.0.0.1:{port}/ws/calls/{call_id}"),
            protocols: Vec::new(),
            origin: Some(ALLOWED_ORIGIN.to_owned()),
            authorization: None,
        }
    }

    /// Connects `user` to `call_id` as the frontend does (`token.<jwt>`) and reads its
    /// `call_metadata`.
    pub async fn ws_join(&self, call_id: &str, user: &TestUser) -> WsClient {
        let mut client = self.ws(call_id).token(&user.token).connect().await;
        client.expect("call_metadata").await;
        client
    }

    /// The call's `call_id` from a `create_call` body.
    pub async fn new_call(&self, organizer: &TestUser) -> String {
        self.create_call(organizer).await["call_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// How long background effects (database records written off the relay path) may take
/// to appear.
pub const RECORD_DEADLINE: Duration = Duration::from_secs(15);

/// Polls `probe` until it yields `Some`, failing the test after [`RECORD_DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + RECORD_DEADLINE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every participant row of the call with this code.
pub async fn participants(app: &TestApp, call: &str) -> Vec<Participant> {
    let call = app
        .state
        .repo
        .find_call_by_code(&CallCode::from_raw(call))
        .await
        .unwrap()
        .unwrap();
    app.state.repo.list_participants(call.id).await.unwrap()
}

/// Polls the participant rows of `call` until `done` holds for them (bounded).
pub async fn wait_for_rows(
    app: &TestApp,
    call: &str,
    done: impl Fn(&[Participant]) -> bool,
) -> Vec<Participant> {
    let deadline = tokio::time::Instant::now() + RECORD_DEADLINE;
    loop {
        let rows = participants(app, call).await;
        if done(&rows) {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "participant rows never reached the expected state; last seen: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `id` of a `user`/`from_user` object in a message.
pub fn user_id(user: &Value) -> i64 {
    user["id"].as_i64().expect("user without id")
}
