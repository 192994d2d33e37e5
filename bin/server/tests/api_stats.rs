//! `/api/call-stats*`: storing, aggregating and listing quality reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::spawn_app;
use serde_json::{Value, json};

#[tokio::test]
async fn stats_are_stored_aggregated_and_listed() {
    let app = spawn_app().await;
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

#[tokio::test]
async fn bad_stats_are_refused_and_change_nothing() {
    let app = spawn_app().await;
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
