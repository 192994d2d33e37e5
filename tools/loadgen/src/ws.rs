//! WebSocket client side: connect to `/ws/calls/{id}` with the frontend's `token.<jwt>`
//! subprotocol from a given source address, and parse the server's frames.

use std::net::SocketAddr;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::fixture::User;
use crate::net::connect_from;

/// A client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// Small buffers: the generator holds up to ~19,000 of these at once.
pub fn small_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Opens `/ws/calls/{call_id}` as `user`.
pub async fn connect(addr: SocketAddr, call_id: &str, user: &User) -> anyhow::Result<Ws> {
    let stream = connect_from(user.ip, addr).await?;
    let mut req = format!("ws://{addr}/ws/calls/{call_id}").into_client_request()?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("token.{}", user.token))?,
    );
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(small_config()))
        .await
        .with_context(|| format!("WebSocket handshake for call {call_id} failed"))?;
    Ok(ws)
}

/// The parts of a server frame the generator looks at.
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    /// `type`.
    #[serde(rename = "type", borrow)]
    pub kind: &'a str,
    /// `payload` of a relayed signal, kept raw.
    #[serde(borrow, default)]
    pub payload: Option<&'a RawValue>,
    /// `from_user` of a relayed signal.
    #[serde(default)]
    pub from_user: Option<FromUser>,
    /// `user` of `user_joined` / `user_left`.
    #[serde(default)]
    pub user: Option<FromUser>,
    /// `participants` of `participants_snapshot`.
    #[serde(default)]
    pub participants: Option<Vec<FromUser>>,
    /// `detail` of an `error`.
    #[serde(default)]
    pub detail: Option<String>,
}

/// A SignalingUser's id.
#[derive(Debug, Deserialize)]
pub struct FromUser {
    /// Internal user id.
    pub id: i64,
}
