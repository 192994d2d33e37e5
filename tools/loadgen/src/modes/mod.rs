//! The load modes, each run against one server at a time and returning its figures.

pub mod churn;
pub mod http;
pub mod idle;
pub mod relay;
pub mod webhook;

use std::time::Duration;

use futures_util::StreamExt as _;

use crate::fixture::{Room, Target, User};
use crate::net::HttpConn;
use crate::ws::{Frame, Ws, connect};

/// How long the server may take to forget closed sockets.
pub const CLOSE_DEADLINE: Duration = Duration::from_secs(15);
/// How long any single WebSocket step (handshake, first frame, close) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The server's open WebSocket count from `GET /metrics` (`telcall_ws_connections`).
pub async fn server_connections(t: &Target) -> anyhow::Result<u64> {
    let mut c = HttpConn::open(t.ips.ip(200_000), t.addr).await?;
    let r = c.send("GET", "/metrics", &[], None).await?;
    let text = String::from_utf8_lossy(&r.body);
    text.lines()
        .find_map(|l| l.strip_prefix("telcall_ws_connections "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("/metrics has no telcall_ws_connections ({})", r.describe()))
}

/// Waits until the server reports no open WebSocket; returns how many were left.
pub async fn wait_server_closed(t: &Target) -> anyhow::Result<u64> {
    let deadline = tokio::time::Instant::now() + CLOSE_DEADLINE;
    loop {
        let n = server_connections(t).await?;
        if n == 0 || tokio::time::Instant::now() > deadline {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects `user` to `room` and waits for `call_metadata` (a completed join).
pub async fn join(t: &Target, room: &Room, user: &User) -> anyhow::Result<Ws> {
    join_at(t.addr, room, user).await
}

/// [`join`] through the instance at `addr` (one of several of a deployment).
pub async fn join_at(addr: std::net::SocketAddr, room: &Room, user: &User) -> anyhow::Result<Ws> {
    let step = async {
        let mut ws = connect(addr, &room.call_id, user).await?;
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                    let f: Frame<'_> = serde_json::from_str(&text)?;
                    if f.kind == "call_metadata" {
                        return Ok(ws);
                    }
                    anyhow::bail!("first frame was {:?}, not call_metadata", f.kind);
                }
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(c))) => {
                    anyhow::bail!("closed during the join: {c:?}")
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("connection ended during the join"),
            }
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .map_err(|_| anyhow::anyhow!("join timed out after {STEP_TIMEOUT:?}"))?
}

/// Sends a close frame and reads until the server's close (or the end of the stream).
/// Returns whether the close handshake completed.
pub async fn close(ws: &mut Ws) -> bool {
    let step = async {
        if ws.close(None).await.is_err() {
            return false;
        }
        loop {
            match ws.next().await {
                Some(Ok(_)) => {}
                Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed)) | None => {
                    return true;
                }
                Some(Err(_)) => return false,
            }
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .unwrap_or(false)
}
