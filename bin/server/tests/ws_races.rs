//! WebSocket races between a connection and the rest of its call's life: the call ending
//! while a handshake is in flight, and a slow connection cut off then replaced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::ws::{Ending, WsClient, user_id};
use common::{ALLOWED_ORIGIN, BOT_TOKEN, SECRET_KEY, TestAppBuilder, init_data_for};
use serde_json::{Value, json};
use telcall_domain::{CallStatus, Clock, ManualClock, Participant};
use telcall_server::config::Source;
use telcall_server::{Application, BuildOptions, Settings};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// How long background effects (database records) may take to appear.
const RECORD_DEADLINE: Duration = Duration::from_secs(15);

/// A manual clock that can be told to jump forward right after its next reading: the
/// reading that admits a handshake sees the call active, the next one (after the join)
/// sees it past its expiry, exactly as if it had ended in between.
struct JumpClock {
    inner: ManualClock,
    jump: Mutex<Option<chrono::Duration>>,
}

impl JumpClock {
    fn jump_after_next_reading(&self, by: chrono::Duration) {
        *self.jump.lock().unwrap() = Some(by);
    }
}

impl Clock for JumpClock {
    fn now(&self) -> DateTime<Utc> {
        let now = self.inner.now();
        if let Some(by) = self.jump.lock().unwrap().take() {
            self.inner.advance(by);
        }
        now
    }
}

#[tokio::test]
async fn a_call_ending_during_the_handshake_ends_the_room_it_joined() {
    let clock = Arc::new(JumpClock {
        inner: ManualClock::new(Utc::now()),
        jump: Mutex::new(None),
    });
    let dir = tempfile::tempdir().unwrap();
    let vars: HashMap<String, String> = [
        ("BOT_TOKEN", BOT_TOKEN),
        ("BOT_USERNAME", "telcall_test_bot"),
        ("SECRET_KEY", SECRET_KEY),
        ("CORS_ALLOW_ORIGINS", ALLOWED_ORIGIN),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("TELEGRAM_API_BASE", "http://127.0.0.1:9"),
        // Only the handshake reads the clock while the test runs.
        ("CALL_SWEEP_INTERVAL_SECONDS", "86400"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([(
        "DATABASE_URL".to_owned(),
        format!("sqlite://{}/telcall.db?mode=rwc", dir.path().display()),
    )])
    .collect();
    let settings = Settings::from_source(&Source::from_map(vars), false).unwrap();
    let app = Application::build(
        settings,
        BuildOptions {
            migrate: true,
            clock: clock.clone(),
        },
    )
    .await
    .unwrap();
    let port = app.port();
    let state = app.state().clone();
    let shutdown = app.shutdown_handle();
    let server = tokio::spawn(app.run_until_stopped());
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let user = json!({"id": 9101, "first_name": "Ada", "username": "user_9101"});
    let resp = http
        .post(format!("{base}/auth/telegram"))
        .json(&json!({ "initData": init_data_for(BOT_TOKEN, &user, Utc::now().timestamp()) }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token = resp
        .cookies()
        .find(|c| c.name() == "access_token")
        .unwrap()
        .value()
        .to_owned();
    let resp = http
        .post(format!("{base}/api/calls/"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let call = resp.json::<Value>().await.unwrap()["call_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The handshake's check sees the call active; by the time the connection is in its
    // room, the call is over (here: expired) and that room was never told.
    clock.jump_after_next_reading(chrono::Duration::hours(25));
    let mut request = format!("ws://127.0.0.1:{port}/ws/calls/{call}")
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(&format!("token.{token}")).unwrap(),
    );
    headers.insert("Origin", HeaderValue::from_static(ALLOWED_ORIGIN));
    let (stream, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut client = WsClient {
        stream,
        protocol: None,
    };
    client.expect("call_metadata").await;
    // Were the connection left in its room, this would be answered with an error frame.
    client.send_text("barrier").await;
    assert_eq!(
        client.recv().await,
        json!({"type": "call_ended", "reason": "expired"})
    );
    let (rest, ending) = client.read_to_end().await;
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(
        ending,
        Ending::Close(1000, "Call has ended. Please create a new call.".into())
    );
    let stored = state.repo.find_call_by_code(&call).await.unwrap().unwrap();
    assert_eq!(stored.status, CallStatus::Expired);
    assert!(state.hub.room_participants(&call).is_empty());

    shutdown.shutdown();
    server.await.unwrap().unwrap();
}

async fn participants(app: &common::TestApp, call: &str) -> Vec<Participant> {
    let call = app
        .state
        .repo
        .find_call_by_code(call)
        .await
        .unwrap()
        .unwrap();
    app.state.repo.list_participants(call.id).await.unwrap()
}

/// Polls the participant rows of `call` until `done` holds for them (bounded).
async fn wait_for_rows(
    app: &common::TestApp,
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
            "participant rows never got there: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_connection_replaced_by_a_newer_one_does_not_end_the_stay() {
    let app = TestAppBuilder::default()
        .env("WS_OUTBOUND_QUEUE", "4")
        .env("WS_MESSAGES_PER_SECOND", "100000")
        .env("WS_MESSAGE_BURST", "100000")
        .spawn()
        .await;
    let ada = app.sign_in(9201, "Sender").await;
    let slow = app.sign_in(9202, "Slow").await;
    let call = app.new_call(&ada).await;
    let mut a = app.ws_join(&call, &ada).await;
    let mut s1 = app.ws_join(&call, &slow).await;
    s1.expect("participants_snapshot").await;
    a.expect("user_joined").await;
    wait_for_rows(&app, &call, |rows| rows.len() == 2).await;
    // From here on `s1` reads nothing, until it is cut off (1013).
    let big = "p".repeat(60_000);
    let mut round = 0;
    while app.state.hub.stats().messages_dropped == 0 {
        round += 1;
        assert!(round < 2_000, "the slow reader was never cut off");
        for _ in 0..10 {
            a.signal("offer", slow.id, json!({ "blob": big })).await;
        }
        a.assert_nothing_pending().await;
    }

    // The same user comes back on a fresh connection, which takes over the stay.
    let mut s2 = app.ws_join(&call, &slow).await;
    s2.expect("participants_snapshot").await;
    assert_eq!(user_id(&a.expect("user_joined").await["user"]), slow.id);

    // The old connection, read at last, ends with its 1013 (its 4409 never comes).
    let (_backlog, ending) = tokio::time::timeout(Duration::from_secs(60), s1.read_to_end())
        .await
        .expect("the old connection never ended");
    assert!(
        matches!(ending, Ending::Close(1013, _) | Ending::Dropped(_)),
        "{ending:?}"
    );
    // Nobody is told the user left, and the stay is still open once everything the old
    // session recorded has been written (a later join is written after it).
    let cy = app.sign_in(9203, "Late").await;
    let mut c = app.ws_join(&call, &cy).await;
    c.expect("participants_snapshot").await;
    let rows = wait_for_rows(&app, &call, |rows| rows.len() == 3).await;
    let slow_row = rows.iter().find(|r| r.user_id == slow.id).unwrap();
    assert_eq!(
        slow_row.left_at, None,
        "the stay goes on on the new connection"
    );
    assert_eq!(user_id(&a.expect("user_joined").await["user"]), cy.id);
    a.assert_nothing_pending().await;

    // Its real end is recorded.
    s2.close().await;
    assert_eq!(user_id(&a.expect("user_left").await["user"]), slow.id);
    wait_for_rows(&app, &call, |rows| {
        rows.iter()
            .any(|r| r.user_id == slow.id && r.left_at.is_some())
    })
    .await;
}
