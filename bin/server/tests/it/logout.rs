//! Logout ends the session: the token it was called with is revoked, so it gets 401
//! "Invalid token" everywhere (Bearer and cookie, every route, `/auth/ws-token`, new
//! WebSockets, tickets issued from it), and the WebSockets it opened are closed with 4401.
//! Other sessions of the same user keep working.

use crate::common::ws::user_id;
use crate::common::{TestApp, TestUser, detail, session_cookie, spawn_app};
use serde_json::json;

async fn logout_bearer(app: &TestApp, user: &TestUser) {
    let resp = app
        .client
        .post(app.url("/auth/logout"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
}

/// Every way the token can be presented, on several routes: all 401 "Invalid token".
async fn assert_token_refused_everywhere(app: &TestApp, user: &TestUser, call: &str) {
    for path in [
        format!("/api/calls/{call}"),
        "/api/friends".to_owned(),
        "/api/call-stats/".to_owned(),
        "/api/config/webrtc".to_owned(),
        "/auth/ws-token".to_owned(),
    ] {
        let resp = app.get(&path, user).send().await.unwrap();
        assert_eq!(resp.status(), 401, "Bearer {path}");
        assert_eq!(detail(resp).await, "Invalid token", "Bearer {path}");
        let resp = app
            .client
            .get(app.url(&path))
            .header("cookie", session_cookie(&user.token))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "cookie {path}");
        assert_eq!(detail(resp).await, "Invalid token", "cookie {path}");
    }
    let resp = app
        .post("/api/calls/", user, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(detail(resp).await, "Invalid token");
    // A new WebSocket with the token itself.
    let mut ws = app.ws(call).token(&user.token).connect().await;
    assert_eq!(ws.expect_close().await, (4401, "Invalid token".to_owned()));
}

#[tokio::test]
async fn a_logged_out_bearer_token_is_refused_everywhere() {
    let app = spawn_app().await;
    let ada = app.sign_in(9101, "Ada").await;
    let call = app.new_call(&ada).await;
    // A ticket fetched before logging out dies with the session.
    let ticket = app.ws_ticket(&ada).await;
    logout_bearer(&app, &ada).await;
    assert_token_refused_everywhere(&app, &ada, &call).await;
    let mut ws = app.ws(&call).token(&ticket).connect().await;
    assert_eq!(ws.expect_close().await, (4401, "Invalid token".to_owned()));
    // Logging out again with the revoked token is still 204.
    logout_bearer(&app, &ada).await;
}

#[tokio::test]
async fn a_logged_out_cookie_session_is_refused_everywhere() {
    let app = spawn_app().await;
    let ada = app.sign_in(9102, "Ada").await;
    let call = app.new_call(&ada).await;
    let resp = app
        .client
        .post(app.url("/auth/logout"))
        .header("cookie", session_cookie(&ada.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_token_refused_everywhere(&app, &ada, &call).await;
}

#[tokio::test]
async fn other_sessions_of_the_same_user_keep_working() {
    let app = spawn_app().await;
    let phone = app.sign_in(9103, "Ada").await;
    let desktop = app.sign_in(9103, "Ada").await;
    assert_ne!(phone.token, desktop.token);
    logout_bearer(&app, &phone).await;
    let resp = app.get("/api/friends", &desktop).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app.get("/api/friends", &phone).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn websockets_the_session_opened_are_closed_with_4401() {
    let app = spawn_app().await;
    let ada = app.sign_in(9104, "Ada").await;
    let bob = app.sign_in(9105, "Bob").await;
    let call = app.new_call(&ada).await;
    let other_call = app.new_call(&bob).await;

    // Ada joins one call with her JWT and another with a ticket from the same session.
    let mut ada_ws = app.ws_join(&call, &ada).await;
    let ticket = app.ws_ticket(&ada).await;
    let mut ada_ticket_ws = app.ws(&other_call).token(&ticket).connect().await;
    ada_ticket_ws.expect("call_metadata").await;

    let mut bob_ws = app.ws_join(&call, &bob).await;
    bob_ws.expect("participants_snapshot").await;
    ada_ws.expect("user_joined").await;

    logout_bearer(&app, &ada).await;
    assert_eq!(
        ada_ws.expect_close().await,
        (4401, "Invalid token".to_owned())
    );
    assert_eq!(
        ada_ticket_ws.expect_close().await,
        (4401, "Invalid token".to_owned())
    );
    // The others see her leave, and their own connection stays.
    let left = bob_ws.expect("user_left").await;
    assert_eq!(user_id(&left["user"]), ada.id);
    bob_ws.assert_nothing_pending().await;
}

#[tokio::test]
async fn websockets_of_another_session_stay_open() {
    let app = spawn_app().await;
    let phone = app.sign_in(9106, "Ada").await;
    let desktop = app.sign_in(9106, "Ada").await;
    let call = app.new_call(&desktop).await;
    let mut ws = app.ws_join(&call, &desktop).await;
    logout_bearer(&app, &phone).await;
    ws.assert_nothing_pending().await;
    let resp = app.get("/api/friends", &desktop).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
