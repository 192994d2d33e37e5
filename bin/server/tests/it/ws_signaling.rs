//! Signaling over real WebSocket connections: the message shapes and order of CONTRACT.md,
//! relaying, every `error` detail, `call_ended` for each reason, what gets recorded, and
//! the per-connection limits (rate, keepalive, idle), and the maximum call duration counted
//! from the call's creation.

use std::collections::HashSet;
use telcall_domain::CallCode;

use crate::common::ws::{Ending, WsClient, user_id, wait_for_rows};
use crate::common::{TestApp, TestAppBuilder, TestUser, spawn_app};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn two_in_a_call(app: &TestApp) -> (TestUser, TestUser, String, WsClient, WsClient) {
    let ada = app.sign_in(2001, "Ada").await;
    let bob = app.sign_in(2002, "Bob").await;
    let call = app.new_call(&ada).await;
    let mut a = app.ws_join(&call, &ada).await;
    let mut b = app.ws_join(&call, &bob).await;
    b.expect("participants_snapshot").await;
    a.expect("user_joined").await;
    (ada, bob, call, a, b)
}

#[tokio::test]
async fn join_order_snapshot_joined_and_left() {
    let app = spawn_app().await;
    let ada = app.sign_in(2101, "Ada").await;
    let bob = app.sign_in(2102, "Bob").await;
    let call = app.new_call(&ada).await;

    let mut a = app.ws(&call).token(&ada.token).connect().await;
    let first = a.recv().await;
    assert_eq!(first["type"], "call_metadata", "call_metadata comes first");
    let start = first["room_start_time"].as_str().unwrap().to_owned();
    assert!(chrono::DateTime::parse_from_rfc3339(&start).is_ok());
    // Alone: no snapshot. Proven by the next message being the barrier's answer.
    a.assert_nothing_pending().await;

    let mut b = app.ws(&call).token(&bob.token).connect().await;
    let meta = b.expect("call_metadata").await;
    assert_eq!(
        meta["room_start_time"],
        start.as_str(),
        "one room, one start"
    );
    let snapshot = b.expect("participants_snapshot").await;
    assert_eq!(
        snapshot["participants"],
        json!([{
            "id": ada.id,
            "username": "user_2101",
            "first_name": "Ada",
            "last_name": "Tester",
            "photo_url": null
        }])
    );
    let joined = a.expect("user_joined").await;
    assert_eq!(
        joined["user"],
        json!({"id": bob.id, "username": "user_2102", "first_name": "Bob",
               "last_name": "Tester", "photo_url": null})
    );

    b.close().await;
    let left = a.expect("user_left").await;
    assert_eq!(user_id(&left["user"]), bob.id);
    a.assert_nothing_pending().await;
}

#[tokio::test]
async fn relay_goes_only_to_the_addressee_with_from_user() {
    let app = spawn_app().await;
    let (ada, bob, call, mut a, mut b) = two_in_a_call(&app).await;
    let cy = app.sign_in(2003, "Cy").await;
    let mut c = app.ws_join(&call, &cy).await;
    c.expect("participants_snapshot").await;
    a.expect("user_joined").await;
    b.expect("user_joined").await;

    let payload = json!({"sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1", "n": [1, 2.5, null]});
    a.signal("offer", bob.id, payload.clone()).await;
    let offer = b.expect("offer").await;
    assert_eq!(offer["payload"], payload);
    assert_eq!(
        offer["from_user"],
        json!({"id": ada.id, "username": "user_2001", "first_name": "Ada",
               "last_name": "Tester", "photo_url": null})
    );
    assert_eq!(offer.as_object().unwrap().len(), 3, "{offer}");

    // to_user_id as a numeric string; a missing payload is relayed as null.
    b.send_json(&json!({"type": "answer", "to_user_id": ada.id.to_string()}))
        .await;
    let answer = a.expect("answer").await;
    assert_eq!(answer["payload"], Value::Null);
    assert!(answer.as_object().unwrap().contains_key("payload"));
    assert_eq!(user_id(&answer["from_user"]), bob.id);

    b.signal(
        "ice_candidate",
        ada.id,
        json!({"candidate": "candidate:1 1 UDP 1 10.0.0.1 9 typ host"}),
    )
    .await;
    a.expect("ice_candidate").await;

    // Cy got none of it.
    c.assert_nothing_pending().await;

    // Addressed to oneself: dropped silently.
    a.signal("offer", ada.id, json!({})).await;
    a.assert_nothing_pending().await;
    let stats = app.state.hub.stats();
    assert_eq!((stats.rooms, stats.connections), (1, 3));
    assert_eq!(stats.messages_relayed, 3);
}

#[tokio::test]
async fn every_error_detail_and_the_connection_stays_open() {
    let app = spawn_app().await;
    let (ada, bob, _call, mut a, mut b) = two_in_a_call(&app).await;

    a.send_json(&json!({"type": "offer", "payload": {}})).await;
    a.expect_error("Invalid or missing to_user_id").await;
    a.send_json(&json!({"type": "offer", "to_user_id": "bob"}))
        .await;
    a.expect_error("Invalid or missing to_user_id").await;
    a.signal("offer", 999_999, json!({})).await;
    a.expect_error("Target user is offline").await;
    a.send_json(&json!({"type": "chat", "to_user_id": bob.id}))
        .await;
    a.expect_error("Unsupported message type").await;
    a.send_json(&json!({"to_user_id": bob.id})).await;
    a.expect_error("Unsupported message type").await;
    for garbage in ["not json", "{\"type\":", "[1,2]", "42", "\"offer\"", ""] {
        a.send_text(garbage).await;
        a.expect_error("Invalid JSON").await;
    }
    a.send_binary(br#"{"type":"offer","to_user_id":1}"#.to_vec())
        .await;
    a.expect_error("Invalid JSON").await;

    // Too large, counted in UTF-8 bytes: just over, far over (1 MB), and multi-byte text.
    let limit = 65_536;
    a.send_text("x".repeat(limit + 1)).await;
    a.expect_error(&format!(
        "Message too large: {} bytes (max {limit} bytes)",
        limit + 1
    ))
    .await;
    a.send_text("x".repeat(1_048_576)).await;
    a.expect_error(&format!(
        "Message too large: 1048576 bytes (max {limit} bytes)"
    ))
    .await;
    a.send_text("é".repeat(40_000)).await;
    a.expect_error(&format!(
        "Message too large: 80000 bytes (max {limit} bytes)"
    ))
    .await;
    a.send_binary(vec![7; 100_000]).await;
    a.expect_error(&format!(
        "Message too large: 100000 bytes (max {limit} bytes)"
    ))
    .await;
    // Exactly at the limit is accepted (and relayed).
    let filler = "y".repeat(limit);
    let head = format!(r#"{{"type":"offer","to_user_id":{},"payload":""#, bob.id);
    let frame = format!("{head}{}\"}}", &filler[..limit - head.len() - 2]);
    assert_eq!(frame.len(), limit);
    a.send_text(frame).await;
    b.expect("offer").await;

    // Still open, still relaying.
    a.signal("offer", bob.id, json!({"sdp": "after errors"}))
        .await;
    let offer = b.expect("offer").await;
    assert_eq!(offer["payload"]["sdp"], "after errors");
    assert_eq!(user_id(&offer["from_user"]), ada.id);
    b.assert_nothing_pending().await;
}

#[tokio::test]
async fn a_fragmented_oversize_message_is_refused_too() {
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let app = spawn_app().await;
    let (_ada, bob, _call, mut a, mut b) = two_in_a_call(&app).await;
    let piece = vec![b'z'; 40_000];
    a.stream
        .send(Message::Frame(Frame::message(
            piece.clone(),
            OpCode::Data(Data::Text),
            false,
        )))
        .await
        .unwrap();
    a.stream
        .send(Message::Frame(Frame::message(
            piece,
            OpCode::Data(Data::Continue),
            true,
        )))
        .await
        .unwrap();
    a.expect_error("Message too large: 80000 bytes (max 65536 bytes)")
        .await;
    // A fragmented message within the limit is reassembled and relayed.
    let text = format!(
        r#"{{"type":"offer","to_user_id":{},"payload":"frag"}}"#,
        bob.id
    );
    let (one, two) = text.as_bytes().split_at(10);
    a.stream
        .send(Message::Frame(Frame::message(
            one.to_vec(),
            OpCode::Data(Data::Text),
            false,
        )))
        .await
        .unwrap();
    a.stream
        .send(Message::Frame(Frame::message(
            two.to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .await
        .unwrap();
    assert_eq!(b.expect("offer").await["payload"], "frag");
}

async fn friend_ids(app: &TestApp, user: &TestUser) -> Vec<i64> {
    let resp = app.get("/api/friends", user).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body.as_array().unwrap().iter().map(user_id).collect()
}

#[tokio::test]
async fn joins_leaves_and_friend_links_are_recorded() {
    let app = spawn_app().await;
    let (ada, bob, call, mut a, b) = two_in_a_call(&app).await;

    let rows = wait_for_rows(&app, &call, |rows| rows.len() == 2).await;
    assert!(rows.iter().all(|r| r.left_at.is_none()));
    let users: HashSet<i64> = rows.iter().map(|r| r.user_id.get()).collect();
    assert_eq!(users, HashSet::from([ada.id, bob.id]));

    b.close().await;
    a.expect("user_left").await;
    let rows = wait_for_rows(&app, &call, |rows| {
        rows.iter()
            .any(|r| r.user_id == bob.user_id() && r.left_at.is_some())
    })
    .await;
    let bob_row = rows.iter().find(|r| r.user_id == bob.user_id()).unwrap();
    assert!(bob_row.left_at.unwrap() >= bob_row.joined_at);
    assert!(
        rows.iter()
            .find(|r| r.user_id == ada.user_id())
            .unwrap()
            .left_at
            .is_none()
    );

    // Friends both ways.
    assert_eq!(friend_ids(&app, &ada).await, vec![bob.id]);
    assert_eq!(friend_ids(&app, &bob).await, vec![ada.id]);

    a.close().await;
    wait_for_rows(&app, &call, |rows| rows.iter().all(|r| r.left_at.is_some())).await;
}

#[tokio::test]
async fn organizer_ending_the_call_sends_call_ended_then_closes() {
    let app = spawn_app().await;
    let (ada, _bob, call, mut a, mut b) = two_in_a_call(&app).await;

    let resp = app
        .post(&format!("/api/calls/{call}/end"), &ada, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for client in [&mut a, &mut b] {
        let (messages, ending) = client.read_to_end().await;
        assert_eq!(
            messages,
            vec![json!({"type": "call_ended", "reason": "ended"})]
        );
        assert_eq!(
            ending,
            Ending::Close(1000, "Call has ended. Please create a new call.".into())
        );
    }
    // Both stays are closed although the hub removed them.
    wait_for_rows(&app, &call, |rows| {
        rows.len() == 2 && rows.iter().all(|r| r.left_at.is_some())
    })
    .await;
    let stats = app.state.hub.stats();
    assert_eq!((stats.rooms, stats.connections), (0, 0));
}

#[tokio::test]
async fn the_sweeper_expiring_the_call_sends_call_ended_expired() {
    let app = spawn_app().await;
    let (_ada, _bob, _call, mut a, mut b) = two_in_a_call(&app).await;
    app.clock
        .advance(chrono::Duration::hours(24) + chrono::Duration::seconds(1));
    assert_eq!(
        telcall_server::sweeper::sweep_once(&app.state.calls).await,
        1
    );
    for client in [&mut a, &mut b] {
        let (messages, ending) = client.read_to_end().await;
        assert_eq!(
            messages,
            vec![json!({"type": "call_ended", "reason": "expired"})]
        );
        assert!(matches!(ending, Ending::Close(1000, _)), "{ending:?}");
    }
}

#[tokio::test]
async fn the_active_calls_limit_auto_ends_the_oldest_call() {
    let app = TestAppBuilder::default()
        .env("MAX_ACTIVE_CALLS_PER_USER", "1")
        .spawn()
        .await;
    let (ada, _bob, _call, mut a, mut b) = two_in_a_call(&app).await;
    app.create_call(&ada).await;
    for client in [&mut a, &mut b] {
        let (messages, ending) = client.read_to_end().await;
        assert_eq!(
            messages,
            vec![json!({
                "type": "call_ended",
                "reason": "Maximum active calls limit reached - oldest call auto-ended"
            })]
        );
        assert!(matches!(ending, Ending::Close(1000, _)), "{ending:?}");
    }
}

/// An app whose calls may last 3 hours, whose sweeper only runs when the test says so.
async fn app_with_a_three_hour_cap() -> TestApp {
    TestAppBuilder::default()
        .env("MAX_CALL_DURATION_HOURS", "3")
        .env("CALL_SWEEP_INTERVAL_SECONDS", "86400")
        .spawn()
        .await
}

/// The stored status of the call with this code.
async fn stored_status(app: &TestApp, call: &str) -> telcall_domain::CallStatus {
    app.state
        .repo
        .find_call_by_code(&CallCode::from_raw(call))
        .await
        .unwrap()
        .unwrap()
        .status
}

#[tokio::test]
async fn the_maximum_call_duration_counts_from_the_calls_creation() {
    let app = app_with_a_three_hour_cap().await;
    let (ada, bob, call, a, b) = two_in_a_call(&app).await;

    // Two hours in, the room empties; half an hour later it fills again. A fresh room is
    // not a fresh call: the cap still counts from the call's creation.
    app.clock.advance(chrono::Duration::hours(2));
    b.close().await;
    a.close().await;
    app.clock.advance(chrono::Duration::minutes(30));
    let mut a = app.ws_join(&call, &ada).await;
    let mut b = app.ws_join(&call, &bob).await;
    b.expect("participants_snapshot").await;
    a.expect("user_joined").await;
    assert_eq!(
        telcall_server::sweeper::sweep_once(&app.state.calls).await,
        0,
        "2 h 30 min after its creation the call goes on"
    );
    a.assert_nothing_pending().await;

    app.clock.advance(chrono::Duration::minutes(31));
    assert_eq!(
        telcall_server::sweeper::sweep_once(&app.state.calls).await,
        1
    );
    for client in [&mut a, &mut b] {
        let (messages, ending) = client.read_to_end().await;
        assert_eq!(
            messages,
            vec![
                json!({"type": "call_ended", "reason": "Maximum call duration (3 hours) exceeded"})
            ]
        );
        assert_eq!(
            ending,
            Ending::Close(1000, "Call has ended. Please create a new call.".into())
        );
    }
    assert_eq!(
        stored_status(&app, &call).await,
        telcall_domain::CallStatus::Ended
    );
    wait_for_rows(&app, &call, |rows| {
        !rows.is_empty() && rows.iter().all(|r| r.left_at.is_some())
    })
    .await;
    let stats = app.state.hub.stats();
    assert_eq!((stats.rooms, stats.connections), (0, 0));

    // Coming back is refused as for any ended call.
    let mut again = app.ws(&call).token(&ada.token).connect().await;
    assert_eq!(
        again.expect_close().await,
        (4404, "Call has ended. Please create a new call.".to_owned())
    );
    // A second sweep finds nothing more to end.
    assert_eq!(
        telcall_server::sweeper::sweep_once(&app.state.calls).await,
        0
    );
}

#[tokio::test]
async fn a_call_past_the_cap_is_refused_and_ended_before_any_sweep() {
    let app = app_with_a_three_hour_cap().await;
    let ada = app.sign_in(2301, "Ada").await;
    let bob = app.sign_in(2302, "Bob").await;
    let call = app.new_call(&ada).await;
    let mut a = app.ws_join(&call, &ada).await;

    app.clock
        .advance(chrono::Duration::hours(3) + chrono::Duration::seconds(1));
    // Bob arrives after the cap, before the sweeper noticed: he is refused, and Ada, still
    // connected, is told the call is over.
    let mut late = app.ws(&call).token(&bob.token).connect().await;
    assert_eq!(
        late.expect_close().await,
        (4404, "Call has ended. Please create a new call.".to_owned())
    );
    let (messages, ending) = a.read_to_end().await;
    assert_eq!(
        messages,
        vec![json!({"type": "call_ended", "reason": "Maximum call duration (3 hours) exceeded"})]
    );
    assert!(matches!(ending, Ending::Close(1000, _)), "{ending:?}");
    assert_eq!(
        stored_status(&app, &call).await,
        telcall_domain::CallStatus::Ended
    );
    let resp = app
        .get(&format!("/api/calls/{call}"), &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(crate::common::detail(resp).await, "Call is not available");
    assert_eq!(
        telcall_server::sweeper::sweep_once(&app.state.calls).await,
        0
    );
}

#[tokio::test]
async fn a_flood_is_throttled_then_closed_with_1008() {
    let app = TestAppBuilder::default()
        .env("WS_MESSAGES_PER_SECOND", "1")
        .env("WS_MESSAGE_BURST", "3")
        .spawn()
        .await;
    let ada = app.sign_in(2201, "Ada").await;
    let call = app.new_call(&ada).await;
    let mut a = app.ws_join(&call, &ada).await;
    for _ in 0..20 {
        // Once the server has closed, later sends may fail: that is the point.
        if send_or_closed(&mut a, r#"{"type":"chat","to_user_id":1}"#).await {
            break;
        }
    }
    let (messages, ending) = a.read_to_end().await;
    let details: Vec<&str> = messages
        .iter()
        .map(|m| m["detail"].as_str().unwrap())
        .collect();
    let accepted = details
        .iter()
        .filter(|d| **d == "Unsupported message type")
        .count();
    let warned = details
        .iter()
        .filter(|d| d.starts_with("Rate limit exceeded"))
        .count();
    assert!(accepted >= 3, "{details:?}");
    assert_eq!(warned, 3, "{details:?}");
    assert_eq!(ending, Ending::Close(1008, "Rate limit exceeded".into()));
}

/// Sends a text frame without caring whether the server already closed; returns `true`
/// once the connection is unusable.
async fn send_or_closed(client: &mut WsClient, text: &str) -> bool {
    use futures_util::SinkExt as _;
    client.stream.send(Message::text(text)).await.is_err()
}

#[tokio::test]
async fn the_server_pings_and_pongs_keep_a_connection_alive() {
    let app = TestAppBuilder::default()
        .env("WS_PING_INTERVAL_SECONDS", "1")
        .env("WS_IDLE_TIMEOUT_SECONDS", "2")
        .spawn()
        .await;
    let ada = app.sign_in(2301, "Ada").await;
    let call = app.new_call(&ada).await;
    let mut a = app.ws_join(&call, &ada).await;
    // Three pings (tungstenite answers each with a pong as it reads): more than the idle
    // timeout has passed, and the connection is still open.
    let mut pings = 0;
    while pings < 3 {
        match a.next_frame().await {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    a.send_text("still here").await;
    let reply = loop {
        match a.next_frame().await {
            Some(Ok(Message::Text(t))) => break serde_json::from_str::<Value>(&t).unwrap(),
            Some(Ok(Message::Ping(_))) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(reply, json!({"type": "error", "detail": "Invalid JSON"}));
}

#[tokio::test]
async fn the_client_ping_is_answered() {
    use futures_util::SinkExt as _;
    let app = spawn_app().await;
    let ada = app.sign_in(2302, "Ada").await;
    let call = app.new_call(&ada).await;
    let mut a = app.ws_join(&call, &ada).await;
    a.stream
        .send(Message::Ping(b"hello".to_vec().into()))
        .await
        .unwrap();
    match a.next_frame().await {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"hello"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_idle_timeout() {
    let app = TestAppBuilder::default()
        .env("WS_IDLE_TIMEOUT_SECONDS", "1")
        .env("WS_PING_INTERVAL_SECONDS", "30")
        .spawn()
        .await;
    let ada = app.sign_in(2303, "Ada").await;
    let call = app.new_call(&ada).await;
    // The client sends nothing at all (and no ping arrives that it could answer).
    let mut a = app.ws_join(&call, &ada).await;
    let (messages, ending) = a.read_to_end().await;
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!(ending, Ending::Close(1001, "Idle timeout".into()));
    assert_eq!(app.state.hub.stats().connections, 0);
}

#[tokio::test]
async fn thirty_people_each_offer_to_everyone_else_exactly_once() {
    const N: usize = 30;
    let app = spawn_app().await;
    let mut users = Vec::new();
    for i in 0..N {
        users.push(app.sign_in(3000 + i as i64, &format!("P{i}")).await);
    }
    let call = app.new_call(&users[0]).await;
    let mut clients = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let mut client = app.ws_join(&call, user).await;
        if i > 0 {
            let snapshot = client.expect("participants_snapshot").await;
            assert_eq!(snapshot["participants"].as_array().unwrap().len(), i);
        }
        clients.push(client);
    }
    assert_eq!(app.state.hub.stats().connections, N);

    for (i, client) in clients.iter_mut().enumerate() {
        for (j, peer) in users.iter().enumerate() {
            if i != j {
                client
                    .signal(
                        "offer",
                        peer.id,
                        json!({"from": users[i].id, "to": peer.id}),
                    )
                    .await;
            }
        }
    }

    for (i, client) in clients.iter_mut().enumerate() {
        let me = users[i].id;
        let mut joined = 0;
        let mut senders = HashSet::new();
        while senders.len() < N - 1 {
            let message = client.recv().await;
            match message["type"].as_str().unwrap() {
                "user_joined" => joined += 1,
                "offer" => {
                    assert_eq!(message["payload"]["to"], me, "misdelivered: {message}");
                    let from = user_id(&message["from_user"]);
                    assert_eq!(message["payload"]["from"], from);
                    assert!(senders.insert(from), "duplicate from {from}");
                }
                other => panic!("unexpected {other}: {message}"),
            }
        }
        // Everyone who joined later was announced once.
        while joined < N - 1 - i {
            assert_eq!(client.expect("user_joined").await["type"], "user_joined");
            joined += 1;
        }
        client.assert_nothing_pending().await;
    }
    let stats = app.state.hub.stats();
    assert_eq!(stats.messages_relayed, (N * (N - 1)) as u64);
    assert_eq!(stats.messages_dropped, 0);
}
