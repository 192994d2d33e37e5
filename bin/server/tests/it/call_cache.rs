//! The active-call cache (`CALL_CACHE_SECONDS`): a call read once is not read from storage
//! again for a while, yet nobody is ever told an ended call is active, whichever way it
//! ended here, and an end made behind the server's back is seen once the cache time passed.

use chrono::Duration;
use serde_json::json;
use telcall_signaling::close;

use crate::common::{TestApp, TestAppBuilder, TestUser, detail};

/// An app whose cache would keep a call for five minutes.
async fn app_with_long_cache() -> TestApp {
    TestAppBuilder::default()
        .env("CALL_CACHE_SECONDS", "300")
        .spawn()
        .await
}

/// `GET /api/calls/{code}` as `user`.
async fn read(app: &TestApp, user: &TestUser, code: &str) -> reqwest::Response {
    app.get(&format!("/api/calls/{code}"), user)
        .send()
        .await
        .unwrap()
}

/// Reads the call (filling the cache) and checks it is served.
async fn read_active(app: &TestApp, user: &TestUser, code: &str) {
    assert_eq!(
        read(app, user, code).await.status(),
        200,
        "{code} should be active"
    );
}

/// What every way of reaching an ended call answers: the page (404), the join by code (400,
/// as CONTRACT has it) and the socket (4404).
async fn assert_not_available(app: &TestApp, user: &TestUser, code: &str) {
    let resp = read(app, user, code).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(detail(resp).await, "Call is not available");
    let resp = app
        .post("/api/calls/join_by_code", user, &json!({"call_code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(detail(resp).await, "Call is not available");
    let mut ws = app.ws(code).token(&user.token).connect().await;
    assert_eq!(
        ws.expect_close().await,
        (4404, close::REASON_CALL_ENDED.to_owned())
    );
}

#[tokio::test]
async fn a_call_read_and_then_ended_by_its_organizer_is_not_served_as_active() {
    let app = app_with_long_cache().await;
    let ada = app.sign_in(12_001, "Ada").await;
    let bob = app.sign_in(12_002, "Bob").await;
    let code = app.new_call(&ada).await;
    read_active(&app, &bob, &code).await;
    read_active(&app, &bob, &code).await;

    let resp = app
        .post(&format!("/api/calls/{code}/end"), &ada, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_not_available(&app, &bob, &code).await;
}

#[tokio::test]
async fn a_call_read_and_then_ended_by_the_active_call_limit_is_not_served_as_active() {
    let app = app_with_long_cache().await;
    let ada = app.sign_in(12_003, "Ada").await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        let code = app.new_call(&ada).await;
        read_active(&app, &ada, &code).await;
        codes.push(code);
        app.clock.advance(Duration::seconds(1));
    }
    // The sixth ends the oldest.
    app.new_call(&ada).await;
    assert_not_available(&app, &ada, &codes[0]).await;
    for code in &codes[1..] {
        read_active(&app, &ada, code).await;
    }
}

#[tokio::test]
async fn a_call_read_and_then_past_its_lifetime_is_expired_not_served() {
    let app = TestAppBuilder::default()
        .env("CALL_CACHE_SECONDS", "300")
        // The duration cap (12 h by default) would end it first.
        .env("MAX_CALL_DURATION_HOURS", "48")
        .spawn()
        .await;
    let ada = app.sign_in(12_004, "Ada").await;
    let code = app.new_call(&ada).await;
    // Read (and kept) ten seconds before its expiry, well within the cache time…
    app.clock
        .advance(Duration::hours(24) - Duration::seconds(10));
    read_active(&app, &ada, &code).await;

    // …and read again just after it.
    app.clock.advance(Duration::seconds(11));
    let resp = read(&app, &ada, &code).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(detail(resp).await, "Call has expired");
    // Read this way, the expiry is stored too.
    let stored = app
        .state
        .repo
        .find_call_by_code(&code.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status.as_str(), "expired");
}

/// An end nobody announced (a change made directly in the database) is served from the
/// cache for at most `CALL_CACHE_SECONDS`; with 0 every read sees it.
#[tokio::test]
async fn a_call_ended_in_the_database_is_seen_once_the_call_cache_time_has_passed() {
    use sea_orm::ConnectionTrait as _;
    use secrecy::ExposeSecret as _;

    for (cache_secs, served_right_after) in [("5", true), ("0", false)] {
        let app = TestAppBuilder::default()
            .env("CALL_CACHE_SECONDS", cache_secs)
            .spawn()
            .await;
        let ada = app.sign_in(12_005, "Ada").await;
        let code = app.new_call(&ada).await;
        read_active(&app, &ada, &code).await;

        let db = sea_orm::Database::connect(app.state.settings.database_url.expose_secret())
            .await
            .unwrap();
        db.execute_unprepared(&format!(
            "UPDATE calls SET status = 'ended' WHERE code = '{code}'"
        ))
        .await
        .unwrap();

        if served_right_after {
            read_active(&app, &ada, &code).await;
            app.clock.advance(Duration::seconds(6));
        }
        let resp = read(&app, &ada, &code).await;
        assert_eq!(resp.status(), 404, "cache {cache_secs}s");
        assert_eq!(detail(resp).await, "Call is not available");
    }
}

/// `telcall_call_reads_total{source=…}` in `/metrics`.
async fn call_reads(app: &TestApp, source: &str) -> u64 {
    let series = format!("telcall_call_reads_total{{source=\"{source}\"}}");
    crate::metrics::metric(app, &series).await
}

#[tokio::test]
async fn everyone_opening_a_link_at_once_costs_one_read_of_the_call() {
    let app = app_with_long_cache().await;
    let ada = app.sign_in(12_011, "Ada").await;
    let code = app.new_call(&ada).await;
    let parsed: telcall_domain::CallCode = code.parse().unwrap();
    let (storage, kept) = (
        call_reads(&app, "storage").await,
        call_reads(&app, "cache").await,
    );

    // 25 lookups in flight together, as when a call's link is opened in a group: all miss
    // the cache at first, and only one may go to storage.
    let lookups = (0..25).map(|_| app.state.calls.joinable_call(&parsed));
    let calls = futures_util::future::join_all(lookups).await;
    assert!(
        calls
            .iter()
            .all(|c| c.as_ref().is_ok_and(|c| c.code == parsed))
    );
    assert_eq!(call_reads(&app, "storage").await - storage, 1);
    assert_eq!(call_reads(&app, "cache").await - kept, 24);

    // And over the wire: the sockets and the page are served from the copy.
    let bob = app.sign_in(12_012, "Bob").await;
    let mut ws = app.ws(&code).token(&bob.token).connect().await;
    ws.expect("call_metadata").await;
    read_active(&app, &bob, &code).await;
    assert_eq!(call_reads(&app, "storage").await - storage, 1);
    assert_eq!(call_reads(&app, "cache").await - kept, 26);
}
