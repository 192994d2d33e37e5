//! WebSocket behaviour under load and at the edges of a connection's life: many
//! connect/disconnect cycles leave nothing behind, a client that stops reading is cut off
//! without holding up the others, and a graceful shutdown closes every socket with 1001.

use std::time::{Duration, Instant};

use crate::common::ws::{Ending, user_id};
use crate::common::{TestAppBuilder, spawn_app};
use serde_json::json;

/// How long the hub may take to forget the last connections after their clients closed.
const SETTLE_DEADLINE: Duration = Duration::from_secs(15);

async fn hub_settles(app: &crate::common::TestApp) -> telcall_signaling::HubStats {
    let deadline = tokio::time::Instant::now() + SETTLE_DEADLINE;
    loop {
        let stats = app.state.hub.stats();
        if stats.rooms == 0 && stats.connections == 0 {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "hub never emptied: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_connect_disconnect_cycles_leave_nothing_behind() {
    const LANES: usize = 10;
    const CYCLES: usize = 1000;
    let app = spawn_app().await;
    let mut users = Vec::new();
    for i in 0..LANES {
        users.push(app.sign_in(5000 + i as i64, &format!("L{i}")).await);
    }
    // Two calls, lanes spread over both so rooms open and close all the time.
    let calls = [app.new_call(&users[0]).await, app.new_call(&users[1]).await];

    let started = Instant::now();
    let mut lanes = tokio::task::JoinSet::new();
    let app = std::sync::Arc::new(app);
    for (lane, user) in users.into_iter().enumerate() {
        let app = app.clone();
        let call = calls[lane % 2].clone();
        lanes.spawn(async move {
            for _ in 0..CYCLES / LANES {
                let client = app.ws_join(&call, &user).await;
                client.close().await;
            }
        });
    }
    while let Some(result) = lanes.join_next().await {
        result.unwrap();
    }
    let elapsed = started.elapsed();
    let stats = hub_settles(&app).await;
    println!("{CYCLES} WebSocket connect/disconnect cycles in {elapsed:?}; hub after: {stats:?}");
    assert_eq!(stats.messages_dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_is_cut_off_and_the_others_carry_on() {
    let app = TestAppBuilder::default()
        .env("WS_OUTBOUND_QUEUE", "4")
        .env("WS_MESSAGES_PER_SECOND", "100000")
        .env("WS_MESSAGE_BURST", "100000")
        .spawn()
        .await;
    let ada = app.sign_in(6001, "Sender").await;
    let slow = app.sign_in(6002, "Slow").await;
    let cy = app.sign_in(6003, "Observer").await;
    let call = app.new_call(&ada).await;
    let mut a = app.ws_join(&call, &ada).await;
    let mut s = app.ws_join(&call, &slow).await;
    s.expect("participants_snapshot").await;
    let mut c = app.ws_join(&call, &cy).await;
    c.expect("participants_snapshot").await;
    a.expect("user_joined").await;
    a.expect("user_joined").await;
    s.expect("user_joined").await;
    // From here on `s` reads nothing.

    let big = "p".repeat(60_000);
    let mut slow_left = false;
    let mut round = 0u64;
    while app.state.hub.stats().messages_dropped == 0 {
        round += 1;
        assert!(round < 2_000, "the slow reader was never cut off");
        for _ in 0..10 {
            a.signal("offer", slow.id, json!({ "blob": big })).await;
        }
        // The observer keeps getting its messages, in order, while the slow one backs up.
        a.signal("offer", cy.id, json!({ "round": round })).await;
        let got = next_skipping_left(&mut c, slow.id, &mut slow_left).await;
        assert_eq!(got["type"], "offer");
        assert_eq!(got["payload"]["round"], round);
    }
    println!(
        "slow reader cut off after {} large messages; {:?}",
        round * 10,
        app.state.hub.stats()
    );

    // The others are unaffected.
    a.signal("answer", cy.id, json!({ "after": true })).await;
    let got = next_skipping_left(&mut c, slow.id, &mut slow_left).await;
    assert_eq!(got["type"], "answer");
    assert_eq!(got["payload"]["after"], true);
    c.signal("answer", ada.id, json!({ "back": true })).await;
    let got = next_skipping_left(&mut a, slow.id, &mut false).await;
    assert_eq!(got["payload"]["back"], true);

    // The slow client, reading at last, finds (part of) its backlog then a 1013 close (or,
    // had the server given up writing first, the connection simply dropped).
    let (_backlog, ending) = tokio::time::timeout(Duration::from_secs(60), s.read_to_end())
        .await
        .expect("the slow client's connection never ended");
    match ending {
        Ending::Close(code, reason) => {
            assert_eq!(code, 1013, "{reason}");
            assert_eq!(reason, "Connection too slow: outbound queue full");
        }
        Ending::Dropped(_) => {}
        other => panic!("unexpected ending {other:?}"),
    }
    // Its departure is announced to the others.
    if !slow_left {
        let left = c.expect("user_left").await;
        assert_eq!(user_id(&left["user"]), slow.id);
    }
    c.assert_nothing_pending().await;
    assert_eq!(app.state.hub.stats().connections, 2);
}

/// The next message for `client`, noting (and skipping) a `user_left` for `gone`, and
/// skipping the "Target user is offline" answers to offers sent to `gone` once it left.
async fn next_skipping_left(
    client: &mut crate::common::ws::WsClient,
    gone: i64,
    seen: &mut bool,
) -> serde_json::Value {
    loop {
        let message = client.recv().await;
        if message == json!({"type": "error", "detail": "Target user is offline"}) {
            continue;
        }
        if message["type"] == "user_left" {
            assert_eq!(user_id(&message["user"]), gone);
            assert!(!*seen, "user_left twice");
            *seen = true;
            continue;
        }
        return message;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_every_socket_with_1001() {
    let app = spawn_app().await;
    let ada = app.sign_in(7001, "Ada").await;
    let bob = app.sign_in(7002, "Bob").await;
    let call = app.new_call(&ada).await;
    let other_call = app.new_call(&bob).await;
    let mut a = app.ws_join(&call, &ada).await;
    let mut b = app.ws_join(&call, &bob).await;
    b.expect("participants_snapshot").await;
    a.expect("user_joined").await;
    let mut lone = app.ws_join(&other_call, &bob).await;

    app.shutdown.shutdown();
    for client in [&mut a, &mut b, &mut lone] {
        let (messages, ending) = client.read_to_end().await;
        assert!(messages.is_empty(), "{messages:?}");
        assert_eq!(
            ending,
            Ending::Close(1001, "Server is shutting down".into())
        );
    }
    tokio::time::timeout(Duration::from_secs(30), app.server)
        .await
        .expect("server did not stop")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn connections_during_shutdown_are_refused_with_1001() {
    let app = spawn_app().await;
    let ada = app.sign_in(7101, "Ada").await;
    let call = app.new_call(&ada).await;
    // What a connection arriving after close_all (but before the listener stops) gets.
    app.state.hub.close_all(1001, "Server is shutting down");
    let mut c = app.ws(&call).token(&ada.token).connect().await;
    assert_eq!(
        c.expect_close().await,
        (1001, "Server is shutting down".into())
    );
}

/// Polls `open()` until it reads `want` (the socket tasks end a moment after the client
/// saw the close).
async fn upgraded_reach(app: &crate::common::TestApp, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.state.upgraded.open() != want {
        assert!(
            Instant::now() < deadline,
            "{} upgraded sockets open, expected {want}",
            app.state.upgraded.open()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn upgraded_sockets_are_counted_until_they_close() {
    // Shutdown waits for this count to reach zero before the workers stop: a socket not
    // counted while open would be dropped mid-close.
    let app = spawn_app().await;
    let ada = app.sign_in(7201, "Ada").await;
    let bob = app.sign_in(7202, "Bob").await;
    let call = app.new_call(&ada).await;
    assert_eq!(app.state.upgraded.open(), 0);
    let a = app.ws_join(&call, &ada).await;
    let mut b = app.ws_join(&call, &bob).await;
    b.expect("participants_snapshot").await;
    assert_eq!(app.state.upgraded.open(), 2);
    // A refused upgrade is counted until its socket is closed too.
    let mut refused = app.ws("nosuchcall").token(&ada.token).connect().await;
    refused.expect_close().await;
    upgraded_reach(&app, 2).await;
    a.close().await;
    upgraded_reach(&app, 1).await;
    b.close().await;
    upgraded_reach(&app, 0).await;
}
