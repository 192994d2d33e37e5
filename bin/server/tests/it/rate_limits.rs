//! Per-client-IP rate limits against the real app: each CONTRACT limit, its 429 answer,
//! buckets per client address (real source addresses via `local_address`), trusted proxies
//! and forged `X-Forwarded-For`. Every test sets its own small limits.

use crate::common::{BOT_TOKEN, TestApp, TestAppBuilder, init_data_for};
use chrono::Utc;
use serde_json::{Value, json};
use telcall_domain::UserId;

fn tg_user(id: i64) -> Value {
    json!({"id": id, "first_name": "Rate", "username": format!("rate_user_{id}")})
}

/// `POST /auth/telegram` from `client` with a valid initData for Telegram user `id`.
async fn sign_in_from(
    app: &TestApp,
    client: &reqwest::Client,
    id: i64,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let init = init_data_for(BOT_TOKEN, &tg_user(id), Utc::now().timestamp());
    let mut req = client
        .post(app.url("/auth/telegram"))
        .json(&json!({ "initData": init }));
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.unwrap()
}

/// Checks a 429: `Retry-After` in 1..=`max_wait` seconds and the matching detail.
async fn assert_limited(resp: reqwest::Response, max_wait: u64) {
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=max_wait).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["detail"],
        format!("Too many requests. Retry in {retry} seconds.")
    );
}

#[tokio::test]
async fn sign_in_is_limited_per_minute_per_client_ip() {
    let app = TestAppBuilder::default()
        .env("RATE_LIMIT_AUTH_PER_MINUTE", "3")
        .env("RATE_LIMIT_AUTH_PER_HOUR", "20")
        .spawn()
        .await;
    let first = app.client_from("127.0.0.1");
    // Failed attempts count as well (brute force).
    let resp = first
        .post(app.url("/auth/telegram"))
        .json(&json!({"initData": "user=%7B%7D&hash=00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    for id in 1..=2 {
        assert_eq!(sign_in_from(&app, &first, id, None).await.status(), 200);
    }
    // 3/minute: one every 20 s once the burst is spent.
    assert_limited(sign_in_from(&app, &first, 3, None).await, 20).await;
    assert_limited(sign_in_from(&app, &first, 3, None).await, 20).await;

    // Another client address has its own bucket.
    let second = app.client_from("127.0.0.2");
    assert_eq!(sign_in_from(&app, &second, 4, None).await.status(), 200);

    // Other routes are not counted against sign-in, nor refused because of it.
    let resp = first.get(app.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn sign_in_is_limited_per_hour_too() {
    let app = TestAppBuilder::default()
        .env("RATE_LIMIT_AUTH_PER_MINUTE", "100")
        .env("RATE_LIMIT_AUTH_PER_HOUR", "2")
        .spawn()
        .await;
    for id in 1..=2 {
        assert_eq!(
            sign_in_from(&app, &app.client, id, None).await.status(),
            200
        );
    }
    // 2/hour: the next one in 30 minutes.
    assert_limited(sign_in_from(&app, &app.client, 3, None).await, 1800).await;
}

#[tokio::test]
async fn call_creation_is_limited_across_its_three_routes() {
    let app = TestAppBuilder::default()
        .env("RATE_LIMIT_CALLS_PER_MINUTE", "3")
        .env("RATE_LIMIT_CALLS_PER_HOUR", "30")
        .spawn()
        .await;
    let ada = app.sign_in(10, "Ada").await;
    let bob = app.sign_in(11, "Bob").await;
    let resp = app
        .post("/api/calls/", &ada, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = app
        .post("/api/calls", &ada, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    app.befriend(&ada, &bob).await;
    let resp = app
        .post("/api/calls/friend", &ada, &json!({"friend_id": bob.id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // The bucket is per client IP, not per user: Bob on the same address is limited too.
    let resp = app
        .post("/api/calls", &bob, &json!({}))
        .send()
        .await
        .unwrap();
    assert_limited(resp, 20).await;
    let resp = app
        .post("/api/calls/", &ada, &json!({}))
        .send()
        .await
        .unwrap();
    assert_limited(resp, 20).await;
    // Nothing was created by the refused requests.
    let repo = &app.state.repo;
    assert_eq!(
        repo.list_active_calls_by_creator(ada.user_id())
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        repo.list_active_calls_by_creator(bob.user_id())
            .await
            .unwrap()
            .is_empty()
    );
    // Other call routes fall under the default limit only.
    let resp = app
        .post(
            "/api/calls/join_by_code",
            &bob,
            &json!({"call_code": "nope"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn call_creation_is_limited_per_hour_too() {
    let app = TestAppBuilder::default()
        .env("RATE_LIMIT_CALLS_PER_MINUTE", "100")
        .env("RATE_LIMIT_CALLS_PER_HOUR", "2")
        .spawn()
        .await;
    let ada = app.sign_in(20, "Ada").await;
    for _ in 0..2 {
        let resp = app
            .post("/api/calls/", &ada, &json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let resp = app
        .post("/api/calls/", &ada, &json!({}))
        .send()
        .await
        .unwrap();
    assert_limited(resp, 1800).await;
}

#[tokio::test]
async fn everything_else_shares_the_default_limit_and_health_is_exempt() {
    let app = TestAppBuilder::default()
        .env("RATE_LIMIT_DEFAULT_PER_MINUTE", "3")
        .spawn()
        .await;
    let ada = app.sign_in(30, "Ada").await;
    assert_eq!(
        app.client.get(app.url("/")).send().await.unwrap().status(),
        200
    );
    let resp = app.get("/api/friends", &ada).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // A WebSocket upgrade request counts like any other request.
    let resp = app
        .client
        .get(app.url("/ws/calls/some-call-id"))
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), 429);
    let resp = app
        .client
        .get(app.url("/ws/calls/some-call-id"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_limited(resp, 20).await;
    let resp = app.get("/api/friends", &ada).send().await.unwrap();
    assert_limited(resp, 20).await;
    // 404s count too (scanners).
    let resp = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_limited(resp, 20).await;

    for _ in 0..10 {
        let resp = app.client.get(app.url("/health")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Sign-in and call creation have their own buckets.
    let bob = app.sign_in(31, "Bob").await;
    let resp = app
        .post("/api/calls/", &bob, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let app = TestAppBuilder::default()
        .env("TRUSTED_PROXIES", "127.0.0.1")
        .env("RATE_LIMIT_AUTH_PER_MINUTE", "1")
        .spawn()
        .await;
    let proxy = app.client_from("127.0.0.1");
    // Behind the trusted proxy, each forwarded client has its own bucket.
    let a = Some("198.51.100.1");
    let b = Some("203.0.113.5, 198.51.100.2");
    assert_eq!(sign_in_from(&app, &proxy, 1, a).await.status(), 200);
    assert_limited(sign_in_from(&app, &proxy, 1, a).await, 60).await;
    assert_eq!(sign_in_from(&app, &proxy, 2, b).await.status(), 200);
    // The right-most untrusted hop is the client: a spoofed left part changes nothing.
    let b_spoofed = Some("192.0.2.77, 198.51.100.2");
    assert_limited(sign_in_from(&app, &proxy, 2, b_spoofed).await, 60).await;
    // The proxy's own requests (no header) are the proxy's bucket.
    assert_eq!(sign_in_from(&app, &proxy, 3, None).await.status(), 200);
    assert_limited(sign_in_from(&app, &proxy, 3, None).await, 60).await;

    // 127.0.0.2 is not a trusted proxy: its header is ignored, its own address counts.
    let direct = app.client_from("127.0.0.2");
    assert_eq!(
        sign_in_from(&app, &direct, 4, Some("198.51.100.50"))
            .await
            .status(),
        200
    );
    assert_limited(
        sign_in_from(&app, &direct, 4, Some("198.51.100.51")).await,
        60,
    )
    .await;
    assert_limited(sign_in_from(&app, &direct, 4, None).await, 60).await;
}

#[tokio::test]
async fn forged_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let app = TestAppBuilder::default()
        .env("RATE_LIMIT_AUTH_PER_MINUTE", "2")
        .spawn()
        .await;
    for (id, xff) in [(1, "1.1.1.1"), (2, "2.2.2.2")] {
        assert_eq!(
            sign_in_from(&app, &app.client, id, Some(xff))
                .await
                .status(),
            200
        );
    }
    for xff in ["3.3.3.3", "4.4.4.4, 5.5.5.5", "127.0.0.9"] {
        assert_limited(sign_in_from(&app, &app.client, 3, Some(xff)).await, 30).await;
    }
}

#[tokio::test]
async fn limits_can_be_switched_off_in_development_mode() {
    let app = TestAppBuilder::default()
        .env("DEBUG", "true")
        .env("RATE_LIMIT_ENABLED", "false")
        .env("RATE_LIMIT_AUTH_PER_MINUTE", "1")
        .env("RATE_LIMIT_DEFAULT_PER_MINUTE", "1")
        .spawn()
        .await;
    for id in 1..=5 {
        assert_eq!(
            sign_in_from(&app, &app.client, id, None).await.status(),
            200
        );
        let resp = app.client.get(app.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
}

#[tokio::test]
async fn percent_encoded_paths_fall_under_the_same_limits() {
    // The router decodes `%74` to `t` before matching, so `/auth/%74elegram` is the sign-in
    // route: it must not escape the sign-in bucket into the looser default one.
    let app = TestAppBuilder::default()
        .env("RATE_LIMIT_AUTH_PER_MINUTE", "2")
        .env("RATE_LIMIT_CALLS_PER_MINUTE", "2")
        .spawn()
        .await;
    let ada = app.sign_in_as(&tg_user(1)).await;
    let init = init_data_for(BOT_TOKEN, &tg_user(2), Utc::now().timestamp());
    let resp = app
        .client
        .post(app.url("/auth/%74elegram"))
        .json(&json!({ "initData": init }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the encoded path is the sign-in route");
    let bob: Value = resp.json().await.unwrap();
    for path in ["/auth/%74elegram", "/auth/telegram", "/%61uth/telegram"] {
        let resp = app
            .client
            .post(app.url(path))
            .json(&json!({ "initData": init }))
            .send()
            .await
            .unwrap();
        assert_limited(resp, 30).await;
    }

    let bob_id = bob["user"]["id"].as_i64().unwrap();
    app.state
        .repo
        .link_friends(&[ada.user_id(), UserId::new(bob_id)], app.clock_now())
        .await
        .unwrap();
    let create = |path: &'static str| {
        app.client
            .post(app.url(path))
            .bearer_auth(&ada.token)
            .json(&json!({ "friend_id": bob_id }))
    };
    assert_eq!(create("/api/calls/").send().await.unwrap().status(), 201);
    assert_eq!(
        create("/api/calls/%66riend").send().await.unwrap().status(),
        201
    );
    for path in ["/api/%63alls", "/api/calls/%66riend", "/api/calls"] {
        assert_limited(create(path).send().await.unwrap(), 30).await;
    }
}
