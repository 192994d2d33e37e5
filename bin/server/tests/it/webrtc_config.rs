//! `GET /api/config/webrtc`: STUN list, TURN entries with static or time-limited
//! credentials, and unreachable TURN servers left out.

use crate::common::TestAppBuilder;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::Sha1;

async fn live_port() -> u16 {
    let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = live.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let _ = live.accept().await;
        }
    });
    port
}

#[tokio::test]
async fn static_credentials_with_url_and_urls() {
    let port = live_port().await;
    let app = TestAppBuilder::default()
        .env(
            "STUN_SERVERS",
            "stun:stun.example.com:3478, stun:stun2.example.com:3478",
        )
        .env(
            "TURN_SERVERS",
            &format!("turn:127.0.0.1:{port}?transport=udp,turns:127.0.0.1:{port}"),
        )
        .env("TURN_USERNAME", "alice")
        .env("TURN_PASSWORD", "wonderland")
        .spawn()
        .await;
    let ada = app.sign_in(4001, "Ada").await;
    let body: Value = app
        .get("/api/config/webrtc", &ada)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["stun_servers"],
        serde_json::json!(["stun:stun.example.com:3478", "stun:stun2.example.com:3478"])
    );
    let turn = body["turn_servers"].as_array().unwrap();
    assert_eq!(turn.len(), 2);
    assert_eq!(
        turn[0]["url"],
        format!("turn:127.0.0.1:{port}?transport=udp")
    );
    assert_eq!(turn[0]["urls"], turn[0]["url"]);
    assert_eq!(turn[0]["username"], "alice");
    assert_eq!(turn[0]["credential"], "wonderland");
    assert_eq!(turn[1]["urls"], format!("turns:127.0.0.1:{port}"));
}

#[tokio::test]
async fn time_limited_credentials_pass_a_coturn_style_check_and_expire() {
    let port = live_port().await;
    let app = TestAppBuilder::default()
        .env("TURN_SERVERS", &format!("turn:127.0.0.1:{port}"))
        .env("TURN_SECRET", "north-shared-secret")
        .env("TURN_CREDENTIAL_TTL", "600")
        .env("TURN_USERNAME", "static-should-not-leak")
        .env("TURN_PASSWORD", "static-password-should-not-leak")
        .spawn()
        .await;
    let ada = app.sign_in(4002, "Ada").await;
    let resp = app.get("/api/config/webrtc", &ada).send().await.unwrap();
    let raw = resp.text().await.unwrap();
    assert!(!raw.contains("static-password-should-not-leak"));
    assert!(!raw.contains("north-shared-secret"));
    let body: Value = serde_json::from_str(&raw).unwrap();
    let entry = &body["turn_servers"][0];
    let username = entry["username"].as_str().unwrap();
    let credential = entry["credential"].as_str().unwrap();

    // What coturn does with use-auth-secret: recompute the HMAC and check the expiry.
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, ada.id.to_string());
    let expiry: i64 = expiry.parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(expiry > now, "credential must not be expired yet");
    assert!(
        expiry <= now + 600 + 5,
        "credential must expire after the TTL"
    );
    let mut mac = Hmac::<Sha1>::new_from_slice(b"north-shared-secret").unwrap();
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(credential, expected);
    assert_eq!(body["ttl"], 600);
}

#[tokio::test]
async fn unreachable_turn_servers_are_left_out_after_the_check() {
    // One server that answers TCP connects, one where nothing listens.
    let live_port = live_port().await;
    // Bound but not listening: connects are refused, and no other test can take the port
    // meanwhile (a port freed after binding could be handed to one running in parallel).
    let dead = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    dead.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let dead_port = dead.local_addr().unwrap().as_socket().unwrap().port();
    let app = TestAppBuilder::default()
        .env(
            "TURN_SERVERS",
            &format!("turn:127.0.0.1:{live_port}?transport=tcp,turn:127.0.0.1:{dead_port}"),
        )
        .spawn()
        .await;
    app.state.turn.check_now().await;
    let ada = app.sign_in(4003, "Ada").await;
    let body: Value = app
        .get("/api/config/webrtc", &ada)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let urls: Vec<&str> = body["turn_servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["urls"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        vec![format!("turn:127.0.0.1:{live_port}?transport=tcp")]
    );
}

#[tokio::test]
async fn requires_a_session() {
    let app = TestAppBuilder::default().spawn().await;
    let resp = app
        .client
        .get(app.url("/api/config/webrtc"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}
