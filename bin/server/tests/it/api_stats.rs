//! `/api/call-stats*`: storing, aggregating and listing quality reports; only a call's
//! participants report and read, once each, within bounds, and the aggregate never breaks.
//! The scenarios run on SQLite and (ignored unless asked for) on PostgreSQL.

use crate::common::pg::TestDb;
use crate::common::{TestApp, TestAppBuilder, TestUser, detail, spawn_app};
use chrono::Duration;
use serde_json::{Value, json};
use telcall_domain::{CallCode, CallStatsInput};

/// Records `user` as a participant of the call with `code` (what joining its room does).
async fn participate(app: &TestApp, code: &str, user: &TestUser) {
    let call = app
        .state
        .repo
        .find_call_by_code(&CallCode::from_raw(code))
        .await
        .unwrap()
        .unwrap();
    app.state
        .repo
        .record_join(call.id, user.user_id(), app.clock_now())
        .await
        .unwrap();
}

async fn post_stats(app: &TestApp, user: &TestUser, body: &Value) -> reqwest::Response {
    app.post("/api/call-stats/", user, body)
        .send()
        .await
        .unwrap()
}

async fn summary_of(app: &TestApp, user: &TestUser, code: &str) -> Value {
    let resp = app
        .get(&format!("/api/call-stats/{code}"), user)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn stored_aggregated_and_listed(app: &TestApp) {
    let ada = app.sign_in(3001, "Ada").await;
    let bob = app.sign_in(3002, "Bob").await;
    let call = app.create_call(&ada).await;
    let code = call["call_id"].as_str().unwrap();

    let empty: Value = app
        .get(&format!("/api/call-stats/{code}"), &ada)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty["participant_count"], 0);
    assert_eq!(empty["total_audio_packets_lost"], 0);
    assert_eq!(empty["avg_rtt_ms"], Value::Null);

    let resp = app
        .post(
            "/api/call-stats/",
            &ada,
            &json!({"call_id": code, "duration_seconds": 60, "audio_bitrate_kbps": 32.0,
                    "audio_packets_lost": 3, "audio_jitter_ms": 10.0, "rtt_ms": 40.0,
                    "video_resolution": "1280x720"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let row: Value = resp.json().await.unwrap();
    assert_eq!(row["call_id"], code);
    assert_eq!(row["user_id"], ada.id);
    assert_eq!(row["video_resolution"], "1280x720");
    assert!(row["id"].as_i64().is_some());

    app.clock.advance(Duration::seconds(5));
    participate(app, code, &bob).await;
    let resp = app
        .post(
            "/api/call-stats",
            &bob,
            &json!({"call_id": code, "duration_seconds": 120, "audio_bitrate_kbps": 48.0,
                    "audio_packets_lost": 5, "rtt_ms": 60.0}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    let summary: Value = app
        .get(&format!("/api/call-stats/{code}"), &bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["call_id"], code);
    assert_eq!(summary["participant_count"], 2);
    assert_eq!(summary["avg_duration_seconds"], 90.0);
    assert_eq!(summary["avg_audio_bitrate_kbps"], 40.0);
    assert_eq!(summary["total_audio_packets_lost"], 8);
    assert_eq!(summary["avg_audio_jitter_ms"], 10.0);
    assert_eq!(summary["avg_rtt_ms"], 50.0);

    // Each user lists only their own rows, newest first.
    let second_call = app.create_call(&ada).await;
    app.clock.advance(Duration::seconds(5));
    app.post(
        "/api/call-stats/",
        &ada,
        &json!({"call_id": second_call["call_id"], "rtt_ms": 1.0}),
    )
    .send()
    .await
    .unwrap();
    let mine: Vec<Value> = app
        .get("/api/call-stats/?limit=50", &ada)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0]["call_id"], second_call["call_id"]);
    assert_eq!(mine[1]["call_id"], code);
    assert!(mine.iter().all(|r| r["user_id"] == ada.id));
    let one: Vec<Value> = app
        .get("/api/call-stats/?limit=1", &ada)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    for bad in ["?limit=0", "?limit=1000", "?limit=x"] {
        let resp = app
            .get(&format!("/api/call-stats/{bad}"), &ada)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{bad}");
    }
}

async fn bad_reports_are_refused_and_change_nothing(app: &TestApp) {
    let ada = app.sign_in(3003, "Ada").await;
    let call = app.create_call(&ada).await;
    let code = call["call_id"].as_str().unwrap();

    let resp = app
        .post(
            "/api/call-stats/",
            &ada,
            &json!({"call_id": "nosuchcall000000", "rtt_ms": 1.0}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["detail"], "Call not found");

    for bad in [
        json!({"call_id": code, "audio_packets_lost": -1}),
        json!({"call_id": code, "rtt_ms": -5.0}),
        json!({"call_id": code, "duration_seconds": 1e300}),
        json!({"call_id": code, "audio_packets_sent": 1.5}),
        json!({"rtt_ms": 3.0}),
    ] {
        let resp = app
            .post("/api/call-stats/", &ada, &bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["detail"].is_string());
    }
    let resp = app
        .client
        .post(app.url("/api/call-stats/"))
        .bearer_auth(&ada.token)
        .header("content-type", "application/json")
        .body(r#"{"call_id": "x", "rtt_ms": NaN}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);

    let summary: Value = app
        .get(&format!("/api/call-stats/{code}"), &ada)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["participant_count"], 0);
    let resp = app
        .get("/api/call-stats/nosuchcall000000", &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

async fn only_participants_report_and_read(app: &TestApp) {
    let ada = app.sign_in(3010, "Ada").await;
    let eve = app.sign_in(3011, "Eve").await;
    let code = app.create_call(&ada).await["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let figures = json!({"call_id": code, "rtt_ms": 20.0, "audio_packets_lost": 1});

    // Someone who was never in the call can neither report nor read.
    let resp = post_stats(app, &eve, &figures).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        detail(resp).await,
        "Only participants of the call can access its statistics"
    );
    let resp = app
        .get(&format!("/api/call-stats/{code}"), &eve)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        detail(resp).await,
        "Only participants of the call can access its statistics"
    );
    // The refusal stored nothing.
    assert_eq!(summary_of(app, &ada, &code).await["participant_count"], 0);

    // Once recorded as a participant (they joined the room), they can.
    participate(app, &code, &eve).await;
    assert_eq!(post_stats(app, &eve, &figures).await.status(), 201);
    // The organizer may report and read without having joined.
    assert_eq!(post_stats(app, &ada, &figures).await.status(), 201);
    let summary = summary_of(app, &eve, &code).await;
    assert_eq!(summary["participant_count"], 2);
    assert_eq!(summary["total_audio_packets_lost"], 2);
}

async fn a_second_report_replaces_the_first(app: &TestApp) {
    let ada = app.sign_in(3020, "Ada").await;
    let bob = app.sign_in(3021, "Bob").await;
    let code = app.create_call(&ada).await["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    participate(app, &code, &bob).await;

    let first: Value = post_stats(
        app,
        &bob,
        &json!({"call_id": code, "rtt_ms": 10.0, "audio_packets_lost": 5,
                "video_resolution": "640x480"}),
    )
    .await
    .json()
    .await
    .unwrap();
    app.clock.advance(Duration::seconds(30));
    let mut last = Value::Null;
    for rtt in [20.0, 30.0] {
        let resp = post_stats(
            app,
            &bob,
            &json!({"call_id": code, "rtt_ms": rtt, "audio_packets_lost": 7}),
        )
        .await;
        assert_eq!(resp.status(), 201);
        last = resp.json().await.unwrap();
    }
    // Same row, the latest figures (an omitted figure is now absent), a newer time.
    assert_eq!(last["id"], first["id"]);
    assert_eq!(last["rtt_ms"], 30.0);
    assert_eq!(last["video_resolution"], Value::Null);
    assert_ne!(last["created_at"], first["created_at"]);

    let summary = summary_of(app, &bob, &code).await;
    assert_eq!(summary["participant_count"], 1);
    assert_eq!(summary["total_audio_packets_lost"], 7);
    assert_eq!(summary["avg_rtt_ms"], 30.0);
    let mine: Vec<Value> = app
        .get("/api/call-stats/", &bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0], last);
}

async fn figures_beyond_their_bounds_are_refused(app: &TestApp) {
    let ada = app.sign_in(3030, "Ada").await;
    let code = app.create_call(&ada).await["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for bound in CallStatsInput::BOUNDS {
        let name = bound.name;
        let (at_max, above, huge) = if bound.integer {
            #[allow(clippy::cast_possible_truncation)]
            let max = bound.maximum as i64;
            (json!(max), json!(max + 1), json!(i64::MAX))
        } else {
            (
                json!(bound.maximum),
                json!(bound.maximum + 0.5),
                json!(1e300),
            )
        };
        for bad in [above, huge, json!(-1)] {
            let resp = post_stats(app, &ada, &json!({"call_id": code, name: bad})).await;
            assert_eq!(resp.status(), 422, "{name} = {bad}");
            let text = detail(resp).await;
            assert!(text.starts_with(name), "{text}");
        }
        let resp = post_stats(app, &ada, &json!({"call_id": code, name: at_max})).await;
        assert_eq!(resp.status(), 201, "{name} = {at_max}");
        let row: Value = resp.json().await.unwrap();
        assert_eq!(row[name], at_max);
    }
    let resp = post_stats(
        app,
        &ada,
        &json!({"call_id": code, "video_resolution": "x".repeat(33)}),
    )
    .await;
    assert_eq!(resp.status(), 422);
    // The refusals left the last accepted report in place.
    let mine: Vec<Value> = app
        .get("/api/call-stats/", &ada)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["rtt_ms"], 60_000.0);
}

async fn the_aggregate_survives_the_largest_stored_figures(app: &TestApp) {
    // The attack that used to break a call's statistics for good: two reports of
    // i64::MAX packets. The API refuses them now...
    let ada = app.sign_in(3040, "Ada").await;
    let bob = app.sign_in(3041, "Bob").await;
    let code = app.create_call(&ada).await["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    participate(app, &code, &bob).await;
    for user in [&ada, &bob] {
        let resp = post_stats(
            app,
            user,
            &json!({"call_id": code, "audio_packets_lost": i64::MAX}),
        )
        .await;
        assert_eq!(resp.status(), 422);
    }
    // ...and rows stored before the bounds existed cannot break the aggregate either.
    let call = app
        .state
        .repo
        .find_call_by_code(&CallCode::from_raw(&code))
        .await
        .unwrap()
        .unwrap();
    let huge = CallStatsInput {
        audio_packets_lost: Some(i64::MAX),
        duration_seconds: Some(1e300),
        ..CallStatsInput::default()
    };
    for user in [&ada, &bob] {
        app.state
            .repo
            .upsert_stats(&call, user.user_id(), &huge, app.clock_now())
            .await
            .unwrap();
    }
    for _ in 0..2 {
        let summary = summary_of(app, &ada, &code).await;
        assert_eq!(summary["participant_count"], 2);
        assert_eq!(summary["total_audio_packets_lost"], i64::MAX);
    }
}

/// Packet counts are integers, and an integral number written as a float (`2613.0`, as some
/// JavaScript number formatting produces) is that integer, as the older backend read it; a
/// fraction is refused. Other integer fields of request bodies read numbers the same way.
async fn integral_floats_are_integers(app: &TestApp) {
    let ada = app.sign_in(3020, "Ada").await;
    let call = app.create_call(&ada).await;
    let code = call["call_id"].as_str().unwrap();

    let resp = post_stats(
        app,
        &ada,
        &json!({"call_id": code, "audio_packets_lost": 2613.0, "video_packets_sent": 1.2e3,
                "rtt_ms": 40}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let row: Value = resp.json().await.unwrap();
    assert_eq!(row["audio_packets_lost"], json!(2613));
    assert_eq!(row["video_packets_sent"], json!(1200));
    assert_eq!(
        summary_of(app, &ada, code).await["total_audio_packets_lost"],
        2613
    );

    let resp = post_stats(
        app,
        &ada,
        &json!({"call_id": code, "audio_packets_lost": 2613.5}),
    )
    .await;
    assert_eq!(resp.status(), 422);
    assert_eq!(
        summary_of(app, &ada, code).await["total_audio_packets_lost"],
        2613
    );

    // `friend_ids` and `friend_id` read integral floats too.
    let resp = app
        .post(
            "/api/friends/delete",
            &ada,
            &json!({"friend_ids": [626.0, 7]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["not_found_ids"], json!([626, 7]));
    let resp = app
        .post("/api/calls/friend", &ada, &json!({"friend_id": 626.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(detail(resp).await, "Friend not found");
    let resp = app
        .post("/api/calls/friend", &ada, &json!({"friend_id": 626.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
}

/// One `#[tokio::test]` on SQLite and one (ignored unless asked for) on PostgreSQL per
/// scenario.
macro_rules! on_both_databases {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(&super::spawn_app().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: set TEST_DATABASE_URL and run with --include-ignored"]
                async fn $scenario() {
                    let db = super::TestDb::create().await;
                    let app = super::TestAppBuilder::default()
                        .database_url(&db.url())
                        .spawn()
                        .await;
                    super::$scenario(&app).await;
                }
            )*
        }
    };
}

on_both_databases!(
    stored_aggregated_and_listed,
    bad_reports_are_refused_and_change_nothing,
    only_participants_report_and_read,
    a_second_report_replaces_the_first,
    figures_beyond_their_bounds_are_refused,
    the_aggregate_survives_the_largest_stored_figures,
    integral_floats_are_integers,
);
