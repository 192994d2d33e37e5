//! The WebSocket handshake of CONTRACT.md: origin, credential, call state, capacity and
//! replacement, each refusal an accepted connection closed with its exact code and reason.

use crate::common::ws::{Ending, user_id};
use crate::common::{TestAppBuilder, spawn_app};
use chrono::Duration;
use serde_json::json;

#[tokio::test]
async fn session_jwt_works_and_the_offered_subprotocol_is_echoed() {
    let app = spawn_app().await;
    let ada = app.sign_in(1001, "Ada").await;
    let call = app.new_call(&ada).await;

    let offered = format!("token.{}", ada.token);
    let mut client = app.ws(&call).protocols(&[&offered]).connect().await;
    assert_eq!(client.protocol.as_deref(), Some(offered.as_str()));
    let metadata = client.expect("call_metadata").await;
    let start = metadata["room_start_time"].as_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(start).unwrap();
    assert_eq!(parsed.offset().local_minus_utc(), 0, "{start}");
    assert!(start.ends_with('Z') || start.ends_with("+00:00"), "{start}");

    // Several offered: the first is selected, the credential is the last.
    let mut client2 = app.ws(&call).protocols(&["json", &offered]).connect().await;
    assert_eq!(client2.protocol.as_deref(), Some("json"));
    client2.expect("call_metadata").await;
    client.close().await;
    client2.close().await;
}

#[tokio::test]
async fn bearer_header_works_without_subprotocol() {
    let app = spawn_app().await;
    let ada = app.sign_in(1002, "Ada").await;
    let call = app.new_call(&ada).await;
    let mut client = app.ws(&call).bearer(&ada.token).connect().await;
    assert_eq!(client.protocol, None);
    client.expect("call_metadata").await;
}

#[tokio::test]
async fn refusals_are_accepted_then_closed_with_4401() {
    let app = spawn_app().await;
    let ada = app.sign_in(1003, "Ada").await;
    let call = app.new_call(&ada).await;

    // No credential at all.
    let mut c = app.ws(&call).connect().await;
    assert_eq!(c.expect_close().await, (4401, "Not authenticated".into()));

    // A token in the query string only is not a credential.
    let mut c = app
        .ws(&call)
        .query(&format!("token={}", ada.token))
        .connect()
        .await;
    assert_eq!(c.expect_close().await, (4401, "Not authenticated".into()));

    // Garbage and forged tokens.
    let mut c = app.ws(&call).token("not-a-jwt").connect().await;
    assert_eq!(c.protocol.as_deref(), Some("token.not-a-jwt"));
    assert_eq!(c.expect_close().await, (4401, "Invalid token".into()));
    let forged = format!("{}x", ada.token);
    let mut c = app.ws(&call).token(&forged).connect().await;
    assert_eq!(c.expect_close().await, (4401, "Invalid token".into()));

    // An expired session.
    let long_ago = chrono::Utc::now().timestamp() - 24 * 3600;
    let expired = app
        .state
        .sessions
        .issue_session_at(ada.id, None, long_ago)
        .unwrap()
        .token;
    let mut c = app.ws(&call).token(&expired).connect().await;
    assert_eq!(c.expect_close().await, (4401, "Token has expired".into()));

    // Authentic, but for a user that does not exist: the same rule as every HTTP route
    // (`UserService::authenticate`).
    let ghost = app
        .state
        .sessions
        .issue_session(987_654_321, None)
        .unwrap()
        .token;
    let mut c = app.ws(&call).token(&ghost).connect().await;
    assert_eq!(c.expect_close().await, (4401, "User not found".into()));
}

#[tokio::test]
async fn a_ws_ticket_works_once() {
    let app = spawn_app().await;
    let ada = app.sign_in(1004, "Ada").await;
    let call = app.new_call(&ada).await;
    let ticket = app.ws_ticket(&ada).await;

    let mut first = app.ws(&call).token(&ticket).connect().await;
    first.expect("call_metadata").await;
    first.close().await;

    let mut second = app.ws(&call).token(&ticket).connect().await;
    assert_eq!(second.expect_close().await, (4401, "Invalid token".into()));
}

#[tokio::test]
async fn origin_is_checked_first_and_telegram_web_is_allowed() {
    let app = spawn_app().await;
    let ada = app.sign_in(1005, "Ada").await;
    let call = app.new_call(&ada).await;
    let ticket = app.ws_ticket(&ada).await;

    // A stranger origin is refused before the ticket is looked at…
    let mut c = app
        .ws(&call)
        .origin("https://evil.example.com")
        .token(&ticket)
        .connect()
        .await;
    assert_eq!(c.expect_close().await, (4403, "Origin not allowed".into()));
    // …so the ticket is still unused.
    let mut c = app.ws(&call).token(&ticket).connect().await;
    c.expect("call_metadata").await;
    c.close().await;

    // Even an unknown call is refused for its origin first.
    let mut c = app
        .ws("no-such-call-0000")
        .origin("https://evil.example.com")
        .connect()
        .await;
    assert_eq!(c.expect_close().await.0, 4403);

    let mut c = app
        .ws(&call)
        .origin("https://web.telegram.org")
        .token(&ada.token)
        .connect()
        .await;
    c.expect("call_metadata").await;
    c.close().await;
    let mut c = app.ws(&call).no_origin().token(&ada.token).connect().await;
    c.expect("call_metadata").await;
}

#[tokio::test]
async fn unknown_expired_and_ended_calls_get_4404_with_exact_reasons() {
    let app = spawn_app().await;
    let ada = app.sign_in(1006, "Ada").await;

    let mut c = app
        .ws("unknown-call-code-42")
        .token(&ada.token)
        .connect()
        .await;
    assert_eq!(
        c.expect_close().await,
        (4404, "Call not found. Please create a new call.".into())
    );

    let ended = app.new_call(&ada).await;
    let resp = app
        .post(&format!("/api/calls/{ended}/end"), &ada, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut c = app.ws(&ended).token(&ada.token).connect().await;
    assert_eq!(
        c.expect_close().await,
        (4404, "Call has ended. Please create a new call.".into())
    );

    let expired = app.new_call(&ada).await;
    app.clock.advance(Duration::hours(25));
    let mut c = app.ws(&expired).token(&ada.token).connect().await;
    assert_eq!(
        c.expect_close().await,
        (4404, "Call has expired. Please create a new call.".into())
    );
    // Read again, it is stored as expired: same answer.
    let mut c = app.ws(&expired).token(&ada.token).connect().await;
    assert_eq!(
        c.expect_close().await,
        (4404, "Call has expired. Please create a new call.".into())
    );
}

#[tokio::test]
async fn a_full_room_gets_4429_but_a_reconnect_still_fits() {
    let app = TestAppBuilder::default()
        .env("MAX_PARTICIPANTS_PER_CALL", "2")
        .spawn()
        .await;
    let ada = app.sign_in(1007, "Ada").await;
    let bob = app.sign_in(1008, "Bob").await;
    let cy = app.sign_in(1009, "Cy").await;
    let call = app.new_call(&ada).await;

    let _a = app.ws_join(&call, &ada).await;
    let _b = app.ws_join(&call, &bob).await;
    let mut c = app.ws(&call).token(&cy.token).connect().await;
    assert_eq!(c.expect_close().await, (4429, "Call is full".into()));

    // Bob reconnecting replaces himself: the room stays at two.
    let mut b2 = app.ws_join(&call, &bob).await;
    b2.expect("participants_snapshot").await;
    assert_eq!(app.state.hub.stats().connections, 2);
}

#[tokio::test]
async fn the_same_user_again_replaces_the_old_connection_with_4409() {
    let app = spawn_app().await;
    let ada = app.sign_in(1010, "Ada").await;
    let bob = app.sign_in(1011, "Bob").await;
    let call = app.new_call(&ada).await;

    let mut a1 = app.ws_join(&call, &ada).await;
    let mut b = app.ws_join(&call, &bob).await;
    b.expect("participants_snapshot").await;
    assert_eq!(user_id(&a1.expect("user_joined").await["user"]), bob.id);

    let mut a2 = app.ws_join(&call, &ada).await;
    let snapshot = a2.expect("participants_snapshot").await;
    let ids: Vec<i64> = snapshot["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(user_id)
        .collect();
    assert_eq!(ids, vec![bob.id]);

    let (messages, ending) = a1.read_to_end().await;
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!(
        ending,
        Ending::Close(4409, "Replaced by a newer connection".into())
    );

    // Bob sees Ada join again, and no user_left in between.
    let joined = b.expect("user_joined").await;
    assert_eq!(user_id(&joined["user"]), ada.id);
    a2.signal("offer", bob.id, json!({"sdp": "v=0 again"}))
        .await;
    let offer = b.expect("offer").await;
    assert_eq!(user_id(&offer["from_user"]), ada.id);
    b.assert_nothing_pending().await;
    assert_eq!(app.state.hub.stats().connections, 2);
}

#[tokio::test]
async fn a_plain_http_request_gets_a_json_error() {
    let app = spawn_app().await;
    let ada = app.sign_in(1012, "Ada").await;
    let call = app.new_call(&ada).await;
    let resp = app
        .get(&format!("/ws/calls/{call}"), &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["detail"].is_string(), "{body}");
}
