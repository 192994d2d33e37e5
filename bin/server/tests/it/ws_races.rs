//! WebSocket races between a connection and the rest of its call's life: the call ending
//! while a handshake is in flight, and a slow connection cut off then replaced.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::ws::{Ending, user_id, wait_for_rows};
use crate::common::{TestApp, TestAppBuilder};
use chrono::{DateTime, Utc};
use serde_json::json;
use telcall_domain::{CallCode, CallStatus, Clock, ManualClock};

/// A manual clock that can be told to jump forward right after its next reading: the
/// reading that admits a handshake sees the call active, the next one (after the join)
/// sees it past its expiry, exactly as if it had ended in between.
struct JumpClock {
    inner: Arc<ManualClock>,
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

/// An app on a [`JumpClock`], where only connections read the clock while a test runs.
async fn app_with_jump_clock() -> (TestApp, Arc<JumpClock>) {
    let manual = Arc::new(ManualClock::new(Utc::now()));
    let clock = Arc::new(JumpClock {
        inner: manual.clone(),
        jump: Mutex::new(None),
    });
    let app = TestAppBuilder::default()
        // No sweep reads the clock while the test runs.
        .env("CALL_SWEEP_INTERVAL_SECONDS", "86400")
        // The session-user and call caches would read the clock in the handshake too.
        .env("USER_CACHE_SECONDS", "0")
        .env("CALL_CACHE_SECONDS", "0")
        .clock(manual, clock.clone())
        .spawn()
        .await;
    (app, clock)
}

#[tokio::test]
async fn a_call_ending_during_the_handshake_ends_the_room_it_joined() {
    let (app, clock) = app_with_jump_clock().await;
    let ada = app.sign_in(9101, "Ada").await;
    let call = app.new_call(&ada).await;

    // The handshake's check sees the call active; by the time the connection is in its
    // room, the call is over (here: expired) and that room was never told.
    clock.jump_after_next_reading(chrono::Duration::hours(25));
    let mut client = app.ws(&call).token(&ada.token).connect().await;
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
    let stored = app
        .state
        .repo
        .find_call_by_code(&CallCode::from_raw(&call))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, CallStatus::Expired);
    assert!(app.state.hub.room_participants(&call).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_person_in_the_room_when_the_call_ends_during_their_handshake_is_recorded() {
    let (app, clock) = app_with_jump_clock().await;
    let ada = app.sign_in(9201, "Ada").await;
    let bob = app.sign_in(9202, "Bob").await;
    let call = app.new_call(&ada).await;
    let mut a = app.ws(&call).token(&ada.token).connect().await;
    a.expect("call_metadata").await;
    // Answered once Ada's session is past its own look at the clock after the join.
    a.send_text("barrier").await;
    a.expect_error("Invalid JSON").await;
    wait_for_rows(&app, &call, |rows| rows.len() == 1).await;

    // Bob's handshake sees the call active; by the session's second look it is over. In
    // between Bob was in the room: Ada was told he joined.
    clock.jump_after_next_reading(chrono::Duration::hours(25));
    let mut b = app.ws(&call).token(&bob.token).connect().await;
    b.expect("call_metadata").await;
    let joined = a.expect("user_joined").await;
    assert_eq!(user_id(&joined["user"]), bob.id);
    for client in [&mut a, &mut b] {
        let (messages, ending) = client.read_to_end().await;
        assert_eq!(
            messages.last(),
            Some(&json!({"type": "call_ended", "reason": "expired"})),
            "{messages:?}"
        );
        assert_eq!(
            ending,
            Ending::Close(1000, "Call has ended. Please create a new call.".into())
        );
    }
    // Both stays are recorded, and both are closed.
    let rows = wait_for_rows(&app, &call, |rows| {
        rows.len() == 2 && rows.iter().all(|r| r.left_at.is_some())
    })
    .await;
    let mut users: Vec<i64> = rows.iter().map(|r| r.user_id.get()).collect();
    users.sort_unstable();
    let mut expected = vec![ada.id, bob.id];
    expected.sort_unstable();
    assert_eq!(users, expected);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_connection_leaves_at_once_and_its_user_can_come_back() {
    // The race of a cut-off connection replaced before its session noticed is covered by
    // the hub's own tests; through real sockets the session gives up its blocked write as
    // soon as the hub cuts it off, so the others learn at once that the peer is gone.
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
    }
    // Its departure is announced without waiting for the stalled socket.
    loop {
        let message = a.recv().await;
        if message["type"] == "user_left" {
            assert_eq!(user_id(&message["user"]), slow.id);
            break;
        }
        assert_eq!(
            message,
            json!({"type": "error", "detail": "Target user is offline"})
        );
    }

    // The same user comes back on a fresh connection.
    let mut s2 = app.ws_join(&call, &slow).await;
    s2.expect("participants_snapshot").await;
    // (Offers sent after the leave were answered "Target user is offline".)
    let joined = loop {
        let message = a.recv().await;
        if message != json!({"type": "error", "detail": "Target user is offline"}) {
            break message;
        }
    };
    assert_eq!(joined["type"], "user_joined");
    assert_eq!(user_id(&joined["user"]), slow.id);
    a.assert_nothing_pending().await;

    // The old connection, read at last, ends with its 1013 (or was dropped, had it not
    // taken its last frames in time).
    let (_backlog, ending) = tokio::time::timeout(Duration::from_secs(60), s1.read_to_end())
        .await
        .expect("the old connection never ended");
    assert!(
        matches!(ending, Ending::Close(1013, _) | Ending::Dropped(_)),
        "{ending:?}"
    );

    // The stay on the new connection is open until it closes.
    wait_for_rows(&app, &call, |rows| {
        rows.iter()
            .any(|r| r.user_id == slow.user_id() && r.left_at.is_none())
    })
    .await;
    s2.close().await;
    assert_eq!(user_id(&a.expect("user_left").await["user"]), slow.id);
    wait_for_rows(&app, &call, |rows| {
        rows.iter()
            .filter(|r| r.user_id == slow.user_id())
            .all(|r| r.left_at.is_some())
    })
    .await;
}
