//! Slow and greedy clients against the real app over raw sockets: a request body that never
//! arrives is answered 408 and its connection closed by `REQUEST_BODY_TIMEOUT_SECONDS`;
//! connections past `MAX_CONNECTIONS_PER_IP` or `MAX_CONNECTIONS` are refused when
//! accepted; `/health` keeps answering while many stalled requests are open.

use std::time::Duration;

use crate::common::{TestApp, TestAppBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any test here waits for the server to do something; far above the deadlines
/// the tests configure, so only a server that never acts makes it expire.
const PATIENCE: Duration = Duration::from_secs(20);

/// Sends `head` (complete headers) plus `body_start`, then nothing more.
async fn stalled_request(
    app: &TestApp,
    local_ip: &str,
    head: &str,
    body_start: &[u8],
) -> TcpStream {
    let mut stream = app.connect_from(local_ip).await;
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body_start).await.unwrap();
    stream
}

/// Everything the server sends until it closes the connection (a reset counts as closed).
/// `None` when the connection is still open after [`PATIENCE`].
async fn read_until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if read.is_err() {
        eprintln!("still open after: {}", String::from_utf8_lossy(&out));
    }
    read.ok()
        .map(|()| String::from_utf8_lossy(&out).into_owned())
}

/// Waits until the app counts `n` open connections.
async fn wait_for_open_connections(app: &TestApp, n: usize) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while app.state.connections.open() != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "expected {n} open connections, the app counts {}",
        app.state.connections.open()
    );
}

fn post_head(path: &str, extra: &str, content_length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         {extra}Content-Length: {content_length}\r\n\r\n"
    )
}

fn assert_body_timeout(answer: &str) {
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#"{"detail":"Request body was not received in time"}"#),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408_and_the_connection_is_closed() {
    let app = TestAppBuilder::default()
        .env("REQUEST_BODY_TIMEOUT_SECONDS", "1")
        .spawn()
        .await;
    let user = app.sign_in(7001, "Slow").await;
    let head = post_head(
        "/api/call-stats/",
        &format!("Authorization: Bearer {}\r\n", user.token),
        100,
    );
    let mut stream = stalled_request(&app, "127.0.0.1", &head, b"{").await;
    let answer = read_until_closed(&mut stream)
        .await
        .expect("the connection with a stalled body is still open");
    assert_body_timeout(&answer);
    // Nothing was stored.
    let rows: serde_json::Value = app
        .get("/api/call-stats/", &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows, serde_json::json!([]));
}

#[tokio::test]
async fn an_unauthenticated_sign_in_with_a_stalled_body_is_cut_too() {
    let app = TestAppBuilder::default()
        .env("REQUEST_BODY_TIMEOUT_SECONDS", "1")
        .spawn()
        .await;
    let head = post_head("/auth/telegram", "", 100);
    let mut stream = stalled_request(&app, "127.0.0.1", &head, b"{").await;
    let answer = read_until_closed(&mut stream)
        .await
        .expect("the connection with a stalled body is still open");
    assert_body_timeout(&answer);
    wait_for_open_connections(&app, 0).await;
}

#[tokio::test]
async fn a_body_trickling_one_byte_at_a_time_does_not_extend_the_deadline() {
    let app = TestAppBuilder::default()
        .env("REQUEST_BODY_TIMEOUT_SECONDS", "1")
        .spawn()
        .await;
    let head = post_head("/auth/telegram", "", 4000);
    let mut stream = stalled_request(&app, "127.0.0.1", &head, b"{").await;
    let (mut rd, mut wr) = stream.split();
    let trickle = async {
        for _ in 0..3990 {
            if wr.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let finished = tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            () = read => true,
            () = trickle => false,
        }
    })
    .await;
    assert_eq!(finished, Ok(true), "the trickling request was never cut");
    assert_body_timeout(&String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn an_unread_chunked_body_does_not_hold_the_connection() {
    // The handler answers 401 without reading the body; the connection must not wait to
    // drain a body that never ends.
    let app = TestAppBuilder::default()
        .env("REQUEST_BODY_TIMEOUT_SECONDS", "1")
        .spawn()
        .await;
    let head = "POST /api/call-stats/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut stream = stalled_request(&app, "127.0.0.1", head, b"1\r\n{\r\n").await;
    let answer = read_until_closed(&mut stream)
        .await
        .expect("the connection with an unread chunked body is still open");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    wait_for_open_connections(&app, 0).await;
}

#[tokio::test]
async fn a_complete_body_is_not_affected() {
    let app = TestAppBuilder::default()
        .env("REQUEST_BODY_TIMEOUT_SECONDS", "1")
        .spawn()
        .await;
    let user = app.sign_in(7002, "Prompt").await;
    let call = app.create_call(&user).await;
    let resp = app
        .post(
            "/api/call-stats/",
            &user,
            &serde_json::json!({"call_id": call["call_id"], "duration_seconds": 5}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn connections_past_the_per_address_cap_are_refused_while_others_are_served() {
    let app = TestAppBuilder::default()
        .env("MAX_CONNECTIONS_PER_IP", "5")
        .env("REQUEST_BODY_TIMEOUT_SECONDS", "60")
        .spawn()
        .await;
    let head = post_head("/auth/telegram", "", 100);
    let mut stalled = Vec::new();
    for _ in 0..5 {
        stalled.push(stalled_request(&app, "127.0.0.1", &head, b"{").await);
    }
    wait_for_open_connections(&app, 5).await;

    // The sixth from the same address is refused before any HTTP is read.
    let mut refused = app.connect_from("127.0.0.1").await;
    let answer = read_until_closed(&mut refused)
        .await
        .expect("the refused connection was left open");
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.contains(r#"{"detail":"Too many connections from this address"}"#),
        "{answer}"
    );
    assert_eq!(app.state.connections.refused(), 1);
    let metrics = app
        .client_from("127.0.0.2")
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("\ntelcall_connections_refused_total 1\n"),
        "{metrics}"
    );

    // Another client is served normally.
    let other = app.client_from("127.0.0.2");
    let resp = other.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(other);

    // A slot freed by a closed connection is usable again.
    drop(stalled.pop());
    wait_for_open_connections(&app, 5 - 1).await;
    let again = app.client_from("127.0.0.1");
    let resp = again.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn connections_past_the_total_cap_are_refused() {
    let app = TestAppBuilder::default()
        .env("MAX_CONNECTIONS", "4")
        .env("REQUEST_BODY_TIMEOUT_SECONDS", "60")
        .spawn()
        .await;
    let head = post_head("/auth/telegram", "", 100);
    let mut stalled = Vec::new();
    for i in 1..=4 {
        stalled.push(stalled_request(&app, &format!("127.0.0.{i}"), &head, b"{").await);
    }
    wait_for_open_connections(&app, 4).await;
    let mut refused = app.connect_from("127.0.0.9").await;
    let answer = read_until_closed(&mut refused)
        .await
        .expect("the refused connection was left open");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains(r#"{"detail":"Too many open connections"}"#),
        "{answer}"
    );
    drop(stalled);
    wait_for_open_connections(&app, 0).await;
    let resp = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_the_per_address_cap() {
    let app = TestAppBuilder::default()
        .env("MAX_CONNECTIONS_PER_IP", "2")
        .env("TRUSTED_PROXIES", "127.0.0.5")
        .env("REQUEST_BODY_TIMEOUT_SECONDS", "60")
        .spawn()
        .await;
    let head = post_head("/auth/telegram", "", 100);
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(stalled_request(&app, "127.0.0.5", &head, b"{").await);
    }
    wait_for_open_connections(&app, 4).await;
    let proxy = app.client_from("127.0.0.5");
    let resp = proxy.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

/// The soft limit on open files of this process, where the platform tells it.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[tokio::test]
async fn health_answers_while_a_thousand_stalled_requests_are_open() {
    // The test process holds both ends of every connection: keep within its file limit.
    let wanted = 1000;
    let stalled_count = match open_files_limit() {
        Some(limit) if limit < 4 * wanted => limit / 4,
        _ => wanted,
    };
    let app = TestAppBuilder::default()
        .env("MAX_CONNECTIONS_PER_IP", "5000")
        .env("REQUEST_BODY_TIMEOUT_SECONDS", "120")
        .spawn()
        .await;
    let head = post_head("/auth/telegram", "", 100);
    let mut stalled = Vec::with_capacity(stalled_count);
    for _ in 0..stalled_count {
        stalled.push(stalled_request(&app, "127.0.0.1", &head, b"{").await);
    }
    wait_for_open_connections(&app, stalled_count).await;
    let other = app.client_from("127.0.0.2");
    for _ in 0..5 {
        let resp = other.get(app.url("/health")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    // None of the stalled requests got an answer meanwhile.
    let mut buf = [0u8; 1];
    for s in stalled.iter_mut().take(10) {
        assert!(
            matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        );
    }
}
