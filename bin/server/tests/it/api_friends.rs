//! `/api/friends*` and `POST /api/calls/friend`, with the Telegram Bot API played by a
//! local HTTP server.

use crate::common::detail;
use telcall_domain::CallCode;

use crate::common::{BOT_TOKEN, TestApp, TestAppBuilder, TestUser, spawn_app};
use chrono::Duration;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn person(
    app: &TestApp,
    id: i64,
    first: &str,
    last: Option<&str>,
    username: Option<&str>,
) -> TestUser {
    app.sign_in_as(&json!({
        "id": id, "first_name": first, "last_name": last, "username": username
    }))
    .await
}

/// Befriends the two (as a shared call would), then `from` calls `to`.
async fn call_friend(app: &TestApp, from: &TestUser, to: &TestUser) -> reqwest::Response {
    app.befriend(from, to).await;
    call_only(app, from, to).await
}

/// `from` calls `to`, whatever their relation.
async fn call_only(app: &TestApp, from: &TestUser, to: &TestUser) -> reqwest::Response {
    app.post("/api/calls/friend", from, &json!({ "friend_id": to.id }))
        .send()
        .await
        .unwrap()
}

async fn friends(app: &TestApp, user: &TestUser, query: &str) -> Vec<Value> {
    let resp = app
        .get(&format!("/api/friends{query}"), user)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn calling_a_friend_notifies_them_through_the_bot() {
    let bot_api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/sendMessage")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .expect(1)
        .mount(&bot_api)
        .await;
    let app = TestAppBuilder::default()
        .env("TELEGRAM_API_BASE", &bot_api.uri())
        .spawn()
        .await;
    let ada = person(&app, 2001, "Ada", Some("Lovelace"), None).await;
    let bob = person(&app, 2002, "Bob", None, Some("bobby_b")).await;

    let resp = call_friend(&app, &ada, &bob).await;
    assert_eq!(resp.status(), 201);
    let call: Value = resp.json().await.unwrap();
    assert_eq!(call["status"], "active");

    // The notification is sent off the request path: wait for it to arrive.
    let mut received = Vec::new();
    for _ in 0..100 {
        received = bot_api.received_requests().await.unwrap();
        if !received.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(received.len(), 1);
    let sent: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(sent["chat_id"], 2002);
    assert!(sent["text"].as_str().unwrap().contains("Ada Lovelace"));
    let button = &sent["reply_markup"]["inline_keyboard"][0][0];
    assert_eq!(button["url"], call["join_url"]);
    assert_eq!(
        received[0].headers.get("content-type").unwrap(),
        "application/json"
    );

    // Both are now friends of each other, and both are recorded as participants.
    let ada_friends = friends(&app, &ada, "").await;
    assert_eq!(ada_friends.len(), 1);
    assert_eq!(ada_friends[0]["id"], bob.id);
    assert_eq!(ada_friends[0]["display_name"], "Bob");
    assert_eq!(ada_friends[0]["username"], "bobby_b");
    assert_eq!(ada_friends[0]["telegram_user_id"], 2002);
    let bob_friends = friends(&app, &bob, "").await;
    assert_eq!(bob_friends[0]["id"], ada.id);
    assert_eq!(bob_friends[0]["display_name"], "Ada Lovelace");
    let stored = app
        .state
        .repo
        .find_call_by_code(&CallCode::from_raw(call["call_id"].as_str().unwrap()))
        .await
        .unwrap()
        .unwrap();
    let participants = app.state.repo.list_participants(stored.id).await.unwrap();
    let mut ids: Vec<i64> = participants.iter().map(|p| p.user_id.get()).collect();
    ids.sort_unstable();
    let mut expected = vec![ada.id, bob.id];
    expected.sort_unstable();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn a_failed_notification_never_fails_the_call() {
    let bot_api = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&bot_api)
        .await;
    let app = TestAppBuilder::default()
        .env("TELEGRAM_API_BASE", &bot_api.uri())
        .spawn()
        .await;
    let ada = person(&app, 2003, "Ada", None, None).await;
    let bob = person(&app, 2004, "Bob", None, None).await;
    assert_eq!(call_friend(&app, &ada, &bob).await.status(), 201);
    // With nothing listening at all (the default test base URL) it also succeeds.
    let app2 = spawn_app().await;
    let c = person(&app2, 2005, "Cy", None, None).await;
    let d = person(&app2, 2006, "Di", None, None).await;
    assert_eq!(call_friend(&app2, &c, &d).await.status(), 201);
}

#[tokio::test]
async fn calling_yourself_or_nobody_is_refused() {
    let app = spawn_app().await;
    let ada = person(&app, 2007, "Ada", None, None).await;
    let resp = call_only(&app, &ada, &ada).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(detail(resp).await, "You cannot call yourself");
    let resp = app
        .post("/api/calls/friend", &ada, &json!({"friend_id": 987654}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(detail(resp).await, "Friend not found");
    let resp = app
        .post("/api/calls/friend", &ada, &json!({"friend_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    assert!(
        app.state
            .repo
            .list_active_calls_by_creator(ada.user_id())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_stranger_cannot_be_rung_by_guessing_their_id() {
    let bot_api = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&bot_api)
        .await;
    let app = TestAppBuilder::default()
        .env("TELEGRAM_API_BASE", &bot_api.uri())
        .spawn()
        .await;
    let ada = person(&app, 2008, "Ada", None, None).await;
    let stranger = person(&app, 2009, "Eve", None, Some("eve_private")).await;
    let resp = call_only(&app, &ada, &stranger).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(detail(resp).await, "Friend not found");
    // Nothing happened: no call, no link, no message.
    assert!(
        app.state
            .repo
            .list_active_calls_by_creator(ada.user_id())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(friends(&app, &ada, "").await.is_empty());
    assert!(friends(&app, &stranger, "").await.is_empty());
    assert!(bot_api.received_requests().await.unwrap().is_empty());
    // Once they have shared a call, the same request rings them. Wait for the message: a
    // notification still in flight when the test ends would reach the next test that gets
    // this (pooled) mock server.
    app.befriend(&ada, &stranger).await;
    assert_eq!(call_only(&app, &ada, &stranger).await.status(), 201);
    let mut received = Vec::new();
    for _ in 0..100 {
        received = bot_api.received_requests().await.unwrap();
        if !received.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(received.len(), 1);
    let sent: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(sent["chat_id"], 2009);
}

#[tokio::test]
async fn friend_search_is_case_insensitive_and_takes_wildcards_literally() {
    let app = spawn_app().await;
    let me = person(&app, 2010, "Me", None, None).await;
    let percent = person(&app, 2011, "100%", Some("Real"), None).await;
    let under = person(&app, 2012, "Anna", Some("a_b"), None).await;
    let plain = person(&app, 2013, "Zed", Some("Ab"), Some("zed_the_great")).await;
    for f in [&percent, &under, &plain] {
        assert_eq!(call_friend(&app, &me, f).await.status(), 201);
        app.clock.advance(Duration::seconds(10));
    }
    let names =
        |list: Vec<Value>| -> Vec<i64> { list.iter().map(|f| f["id"].as_i64().unwrap()).collect() };

    // Newest shared call first.
    assert_eq!(
        names(friends(&app, &me, "").await),
        vec![plain.id, under.id, percent.id]
    );
    assert_eq!(
        names(friends(&app, &me, "?query=%25").await),
        vec![percent.id]
    );
    assert_eq!(
        names(friends(&app, &me, "?query=a_b").await),
        vec![under.id]
    );
    assert_eq!(
        names(friends(&app, &me, "?query=_").await),
        vec![plain.id, under.id]
    );
    assert_eq!(
        names(friends(&app, &me, "?query=ZED").await),
        vec![plain.id]
    );
    assert_eq!(
        names(friends(&app, &me, "?query=GREAT").await),
        vec![plain.id]
    );
    assert_eq!(
        names(friends(&app, &me, "?query=nobody").await),
        Vec::<i64>::new()
    );
    // `ab` matches "a_b"? No: the underscore is literal, so only "Ab" (Zed Ab) matches.
    assert_eq!(names(friends(&app, &me, "?query=ab").await), vec![plain.id]);
}

#[tokio::test]
async fn friend_pagination_and_bounds() {
    let app = spawn_app().await;
    let me = person(&app, 2020, "Me", None, None).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let f = person(&app, 2021 + i, &format!("F{i}"), None, None).await;
        assert_eq!(call_friend(&app, &me, &f).await.status(), 201);
        app.clock.advance(Duration::seconds(5));
        ids.push(f.id);
    }
    ids.reverse();
    let page = |q: &str| {
        let q = q.to_owned();
        let app = &app;
        let me = &me;
        async move {
            friends(app, me, &q)
                .await
                .iter()
                .map(|f| f["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page("?limit=2").await, ids[..2]);
    assert_eq!(page("?limit=2&offset=2").await, ids[2..4]);
    assert_eq!(page("?limit=2&offset=4").await, ids[4..]);
    assert_eq!(page("?offset=10").await, Vec::<i64>::new());
    assert_eq!(page("?limit=100").await.len(), 5);
    for bad in ["?limit=0", "?limit=101", "?offset=-1", "?limit=abc"] {
        let resp = app
            .get(&format!("/api/friends{bad}"), &me)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{bad}");
        assert!(!detail(resp).await.is_empty());
    }
}

#[tokio::test]
async fn deleting_friends_removes_both_directions() {
    let app = spawn_app().await;
    let me = person(&app, 2030, "Me", None, None).await;
    let a = person(&app, 2031, "A", None, None).await;
    let b = person(&app, 2032, "B", None, None).await;
    call_friend(&app, &me, &a).await;
    call_friend(&app, &me, &b).await;
    let resp = app
        .post(
            "/api/friends/delete",
            &me,
            &json!({"friend_ids": [a.id, 99999, a.id]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["deleted_ids"], json!([a.id]));
    assert_eq!(body["not_found_ids"], json!([99999]));
    let left: Vec<i64> = friends(&app, &me, "")
        .await
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect();
    assert_eq!(left, vec![b.id]);
    assert!(
        friends(&app, &a, "").await.is_empty(),
        "the other direction is gone too"
    );
    let resp = app
        .post("/api/friends/delete", &me, &json!({"friend_ids": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
}
