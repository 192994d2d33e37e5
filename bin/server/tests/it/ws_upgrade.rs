//! An upgraded WebSocket leaves the HTTP dispatcher (`telcall_server::ws::upgrade`): over
//! raw sockets, the connection still counts against the connection caps while it is open
//! and stops counting when it closes, bytes sent together with the handshake are read, and
//! a client's close ends the TCP connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestApp, TestAppBuilder, TestUser};

/// Longest any read here waits.
const PATIENCE: Duration = Duration::from_secs(15);

fn handshake(call: &str, user: &TestUser) -> String {
    format!(
        "GET /ws/calls/{call} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: token.{}\r\n\r\n",
        user.token
    )
}

/// A client frame (masked, final) with this opcode and payload (< 126 bytes).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode, 0x80 | u8::try_from(payload.len()).unwrap()];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads until `needle` has arrived; everything read so far.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(needle) {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        true
    })
    .await;
    let seen = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        matches!(found, Ok(true)),
        "{needle:?} never arrived; got {seen:?}"
    );
    seen
}

async fn open_socket(app: &TestApp, from: &str, call: &str, user: &TestUser) -> TcpStream {
    let mut stream = app.connect_from(from).await;
    stream
        .write_all(handshake(call, user).as_bytes())
        .await
        .unwrap();
    let head = read_until(&mut stream, "call_metadata").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

#[tokio::test]
async fn an_open_websocket_counts_against_the_address_cap_until_it_closes() {
    let app = TestAppBuilder::default()
        .env("MAX_CONNECTIONS_PER_IP", "2")
        .spawn()
        .await;
    let ada = app.sign_in(7301, "Ada").await;
    let bob = app.sign_in(7302, "Bob").await;
    let call = app.new_call(&ada).await;
    let a = open_socket(&app, "127.0.0.7", &call, &ada).await;
    let _b = open_socket(&app, "127.0.0.7", &call, &bob).await;
    // Well after both handshakes: the upgraded connections are still counted.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut third = app.connect_from("127.0.0.7").await;
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until(&mut third, "detail").await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.contains("Too many connections from this address"),
        "{answer}"
    );

    // Closing one socket gives its slot back.
    drop(a);
    let served = tokio::time::timeout(PATIENCE, async {
        loop {
            let client = app.client_from("127.0.0.7");
            if let Ok(resp) = client.get(app.url("/health")).send().await
                && resp.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        served.is_ok(),
        "the closed socket's slot was not given back"
    );
}

#[tokio::test]
async fn a_frame_sent_together_with_the_handshake_is_read() {
    let app = TestAppBuilder::default().spawn().await;
    let ada = app.sign_in(7311, "Ada").await;
    let call = app.new_call(&ada).await;
    let mut stream = app.connect_from("127.0.0.1").await;
    let mut bytes = handshake(&call, &ada).into_bytes();
    bytes.extend(client_frame(0x1, b"not json"));
    stream.write_all(&bytes).await.unwrap();
    let seen = read_until(&mut stream, "Invalid JSON").await;
    assert!(seen.starts_with("HTTP/1.1 101"), "{seen}");
}

#[tokio::test]
async fn a_client_close_is_answered_and_ends_the_connection() {
    let app = TestAppBuilder::default().spawn().await;
    let ada = app.sign_in(7321, "Ada").await;
    let call = app.new_call(&ada).await;
    let mut stream = open_socket(&app, "127.0.0.1", &call, &ada).await;
    // Close 1000, "bye".
    stream
        .write_all(&client_frame(0x8, b"\x03\xe8bye"))
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the server kept the connection open");
    // The server's close frame: opcode 0x8, code 1000.
    let close = rest
        .windows(4)
        .any(|w| w[0] == 0x88 && w[2..4] == [0x03, 0xe8]);
    assert!(close, "no close frame in {rest:?}");
}
