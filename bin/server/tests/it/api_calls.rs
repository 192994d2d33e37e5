//! `/api/calls*` against the real app: every CONTRACT row and error.

use crate::common::detail;
use telcall_domain::CallCode;

use crate::common::{TestAppBuilder, spawn_app};
use chrono::Duration;
use serde_json::{Value, json};

#[tokio::test]
async fn create_call_returns_contract_fields() {
    let app = spawn_app().await;
    let ada = app.sign_in(1001, "Ada").await;
    let call = app.create_call(&ada).await;
    let code = call["call_id"].as_str().unwrap();
    assert!((16..=20).contains(&code.len()));
    assert!(
        code.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(call["title"], "Standup");
    assert_eq!(call["is_video_enabled"], false);
    assert_eq!(call["status"], "active");
    assert_eq!(
        call["join_url"],
        format!("https://t.me/telcall_test_bot?startapp={code}")
    );
    for field in ["created_at", "expires_at"] {
        let ts = call[field].as_str().unwrap();
        let parsed = chrono::DateTime::parse_from_rfc3339(ts).unwrap();
        assert_eq!(parsed.offset().local_minus_utc(), 0);
        assert!(ts.ends_with('Z') || ts.ends_with("+00:00"), "{ts}");
    }
    let created =
        chrono::DateTime::parse_from_rfc3339(call["created_at"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(call["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - created, Duration::hours(24));
}

#[tokio::test]
async fn create_without_trailing_slash_ignores_unknown_fields() {
    let app = spawn_app().await;
    let ada = app.sign_in(1002, "Ada").await;
    let resp = app
        .post(
            "/api/calls",
            &ada,
            &json!({"is_video_enabled": true, "colour": "blue"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let call: Value = resp.json().await.unwrap();
    assert_eq!(call["is_video_enabled"], true);
    assert_eq!(call["title"], Value::Null);
}

#[tokio::test]
async fn create_rejects_bad_input_and_missing_auth() {
    let app = spawn_app().await;
    let ada = app.sign_in(1003, "Ada").await;
    let resp = app
        .post("/api/calls/", &ada, &json!({"title": "x".repeat(256)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    assert!(detail(resp).await.contains("255"));

    let resp = app
        .client
        .post(app.url("/api/calls/"))
        .bearer_auth(&ada.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    assert!(!detail(resp).await.is_empty());

    let resp = app
        .client
        .post(app.url("/api/calls/"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(detail(resp).await, "Not authenticated");

    // Nothing was created by the refused requests.
    let calls = app
        .state
        .repo
        .list_active_calls_by_creator(ada.user_id())
        .await
        .unwrap();
    assert!(calls.is_empty());
}

#[tokio::test]
async fn get_call_found_unknown_and_expired() {
    let app = spawn_app().await;
    let ada = app.sign_in(1004, "Ada").await;
    let bob = app.sign_in(1005, "Bob").await;
    let call = app.create_call(&ada).await;
    let code = call["call_id"].as_str().unwrap();

    let resp = app
        .get(&format!("/api/calls/{code}"), &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got: Value = resp.json().await.unwrap();
    assert_eq!(got["call_id"], code);

    let resp = app
        .get("/api/calls/doesnotexist12345", &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(detail(resp).await, "Call not found");

    app.clock
        .advance(Duration::hours(24) + Duration::seconds(1));
    let resp = app
        .get(&format!("/api/calls/{code}"), &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(detail(resp).await, "Call has expired");
    let stored = app
        .state
        .repo
        .find_call_by_code(&CallCode::from_raw(code))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status.as_str(), "expired");
}

#[tokio::test]
async fn only_the_organizer_ends_and_only_once() {
    let app = spawn_app().await;
    let ada = app.sign_in(1006, "Ada").await;
    let bob = app.sign_in(1007, "Bob").await;
    let call = app.create_call(&ada).await;
    let code = call["call_id"].as_str().unwrap();
    let end = format!("/api/calls/{code}/end");

    let resp = app.post(&end, &bob, &json!({})).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(detail(resp).await, "Only the organizer can end the call");

    let resp = app.post(&end, &ada, &json!({})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ended: Value = resp.json().await.unwrap();
    assert_eq!(ended["status"], "ended");

    let resp = app.post(&end, &ada, &json!({})).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        detail(resp).await,
        "Call is no longer active. Please create a new call."
    );

    let resp = app
        .get(&format!("/api/calls/{code}"), &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(detail(resp).await, "Call is not available");

    let resp = app
        .post("/api/calls/nosuchcall0000000/end", &ada, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn ending_an_expired_call_reports_expired() {
    let app = spawn_app().await;
    let ada = app.sign_in(1008, "Ada").await;
    let call = app.create_call(&ada).await;
    let code = call["call_id"].as_str().unwrap();
    app.clock.advance(Duration::hours(25));
    let resp = app
        .post(&format!("/api/calls/{code}/end"), &ada, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "expired");
}

#[tokio::test]
async fn join_by_code_every_outcome() {
    let app = spawn_app().await;
    let ada = app.sign_in(1009, "Ada").await;
    let bob = app.sign_in(1010, "Bob").await;
    let call = app.create_call(&ada).await;
    let code = call["call_id"].as_str().unwrap();
    let join = |c: String| {
        app.post("/api/calls/join_by_code", &bob, &json!({ "call_code": c }))
            .send()
    };

    let resp = join(format!("  {code}\n")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["call_id"], code);

    for blank in ["", "   "] {
        let resp = join(blank.to_owned()).await.unwrap();
        assert_eq!(resp.status(), 400);
        assert_eq!(detail(resp).await, "Call code is required");
    }

    let resp = join("unknowncode123456".to_owned()).await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(detail(resp).await, "Call not found");

    let resp = app
        .post("/api/calls/join_by_code", &bob, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);

    app.post(&format!("/api/calls/{code}/end"), &ada, &json!({}))
        .send()
        .await
        .unwrap();
    let resp = join(code.to_owned()).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(detail(resp).await, "Call is not available");

    let other = app.create_call(&ada).await;
    app.clock.advance(Duration::hours(24));
    let resp = join(other["call_id"].as_str().unwrap().to_owned())
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(detail(resp).await, "Call has expired");
}

#[tokio::test]
async fn sixth_active_call_auto_ends_the_oldest() {
    let app = spawn_app().await;
    let ada = app.sign_in(1011, "Ada").await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(
            app.create_call(&ada).await["call_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        app.clock.advance(Duration::seconds(1));
    }
    let sixth = app.create_call(&ada).await;
    let resp = app
        .get(&format!("/api/calls/{}", codes[0]), &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(detail(resp).await, "Call is not available");
    for code in &codes[1..] {
        let resp = app
            .get(&format!("/api/calls/{code}"), &ada)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{code} should still be active");
    }
    let active = app
        .state
        .repo
        .list_active_calls_by_creator(ada.user_id())
        .await
        .unwrap();
    assert_eq!(active.len(), 5);
    assert!(
        active
            .iter()
            .any(|c| c.code.as_str() == sixth["call_id"].as_str().unwrap())
    );
}

#[tokio::test]
async fn active_call_limit_is_configurable() {
    let app = TestAppBuilder::default()
        .env("MAX_ACTIVE_CALLS_PER_USER", "2")
        .spawn()
        .await;
    let ada = app.sign_in(1012, "Ada").await;
    let first = app.create_call(&ada).await;
    app.clock.advance(Duration::seconds(1));
    app.create_call(&ada).await;
    app.clock.advance(Duration::seconds(1));
    app.create_call(&ada).await;
    let resp = app
        .get(
            &format!("/api/calls/{}", first["call_id"].as_str().unwrap()),
            &ada,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        app.state
            .repo
            .list_active_calls_by_creator(ada.user_id())
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn mini_app_name_changes_the_join_link() {
    let app = TestAppBuilder::default()
        .env("MINI_APP_NAME", "meet")
        .env("BOT_USERNAME", "@other_bot")
        .spawn()
        .await;
    let ada = app.sign_in(1013, "Ada").await;
    let call = app.create_call(&ada).await;
    assert_eq!(
        call["join_url"],
        format!(
            "https://t.me/other_bot/meet?startapp={}",
            call["call_id"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn concurrent_creations_keep_the_active_call_limit() {
    let app = TestAppBuilder::default()
        .env("MAX_ACTIVE_CALLS_PER_USER", "2")
        .spawn()
        .await;
    let ada = app.sign_in(1030, "Ada").await;
    let requests = (0..12).map(|_| app.post("/api/calls/", &ada, &json!({})).send());
    for resp in futures_util::future::join_all(requests).await {
        assert_eq!(resp.unwrap().status(), 201);
    }
    let active = app
        .state
        .repo
        .list_active_calls_by_creator(ada.user_id())
        .await
        .unwrap();
    assert_eq!(active.len(), 2, "{active:?}");
}

#[tokio::test]
async fn concurrent_ends_end_a_call_once() {
    let app = spawn_app().await;
    let ada = app.sign_in(1031, "Ada").await;
    let call = app.create_call(&ada).await;
    let end = format!("/api/calls/{}/end", call["call_id"].as_str().unwrap());
    let requests = (0..12).map(|_| app.post(&end, &ada, &json!({})).send());
    let mut statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|resp| resp.unwrap().status().as_u16())
        .collect();
    statuses.sort_unstable();
    let mut expected = vec![400; 11];
    expected.insert(0, 200);
    assert_eq!(statuses, expected);
}
