//! What one user can make the server hold: a peer that does not read is cut off once its
//! backlog passes the byte budget (not only the frame count), and one user cannot open
//! more than `WS_MAX_CONNECTIONS_PER_USER` WebSockets across calls.

use std::time::Duration;

use serde_json::json;

use crate::common::TestAppBuilder;
use crate::common::ws::{Ending, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_does_not_read_is_cut_off_by_its_byte_budget() {
    // The frame bound is far away (10,000 frames of 60 KB would be 600 MB): only the byte
    // budget can cut the slow peer off within the few MB this test sends.
    let app = TestAppBuilder::default()
        .env("WS_OUTBOUND_QUEUE", "10000")
        .env("WS_OUTBOUND_QUEUE_BYTES", "131072")
        .env("WS_MESSAGES_PER_SECOND", "100000")
        .env("WS_MESSAGE_BURST", "100000")
        .spawn()
        .await;
    let ada = app.sign_in(6101, "Sender").await;
    let slow = app.sign_in(6102, "Slow").await;
    let call = app.new_call(&ada).await;
    let mut a = app.ws_join(&call, &ada).await;
    let mut s = app.ws_join(&call, &slow).await;
    s.expect("participants_snapshot").await;
    a.expect("user_joined").await;
    // From here on `s` reads nothing.

    let big = "p".repeat(60_000);
    let mut sent = 0u64;
    while app.state.hub.stats().messages_dropped == 0 {
        // Loopback socket buffers absorb a few MB before the server's queue backs up; far
        // less than what the frame bound alone would let through.
        assert!(sent < 1_500, "the slow reader was not cut off by bytes");
        a.signal("offer", slow.id, json!({ "blob": big })).await;
        sent += 1;
    }
    println!(
        "slow reader cut off after {sent} messages of 60 KB; {:?}",
        app.state.hub.stats()
    );
    // The sender is unaffected and its peer leaves the room.
    let left = loop {
        let message = a.recv().await;
        if message["type"] == "user_left" {
            break message;
        }
        assert_eq!(
            message,
            json!({"type": "error", "detail": "Target user is offline"})
        );
    };
    assert_eq!(left["user"]["id"], slow.id);

    let (_backlog, ending) = tokio::time::timeout(Duration::from_secs(60), s.read_to_end())
        .await
        .expect("the slow client's connection never ended");
    match ending {
        Ending::Close(code, reason) => {
            assert_eq!(code, 1013, "{reason}");
            assert_eq!(reason, "Connection too slow: outbound queue full");
        }
        // The server gave up on a client that did not take its last frames in time.
        Ending::Dropped(_) => {}
        other => panic!("unexpected ending {other:?}"),
    }
}

#[tokio::test]
async fn one_user_holds_at_most_the_configured_number_of_sockets() {
    let app = TestAppBuilder::default()
        .env("WS_MAX_CONNECTIONS_PER_USER", "2")
        .spawn()
        .await;
    let many = app.sign_in(6201, "Many").await;
    let host = app.sign_in(6202, "Host").await;
    let calls = [
        app.new_call(&host).await,
        app.new_call(&host).await,
        app.new_call(&host).await,
    ];
    let first = app.ws_join(&calls[0], &many).await;
    let _second = app.ws_join(&calls[1], &many).await;

    // A third call: accepted, then closed with 4429 and a reason of its own.
    let mut third = app.ws(&calls[2]).token(&many.token).connect().await;
    assert_eq!(
        third.expect_close().await,
        (4429, "Too many connections for this user".into())
    );
    assert_eq!(app.state.hub.user_connections(many.user_id()), 2);
    // Someone else is not affected.
    let mut other = app.ws_join(&calls[2], &host).await;

    // Reconnecting to a call one is already in replaces that connection: not one more.
    let mut again = app.ws_join(&calls[0], &many).await;
    let mut first = first;
    assert_eq!(
        first.expect_close().await,
        (4409, "Replaced by a newer connection".into())
    );
    again.assert_nothing_pending().await;

    // Once a socket closes, its slot is free again.
    again.close().await;
    eventually("the closed socket's slot is released", || async {
        (app.state.hub.user_connections(many.user_id()) == 1).then_some(())
    })
    .await;
    let mut third = app.ws_join(&calls[2], &many).await;
    third.expect("participants_snapshot").await;
    other.expect("user_joined").await;
}
