//! Participant rows (who was in which call, and when) end up closed: rows a stopped run left
//! open are closed at the next start-up, a friend call's rows close with the call even when
//! nobody connected, and a reconnect within the rejoin window continues the same row.

use chrono::Duration;
use serde_json::json;
use telcall_domain::CallCode;

use crate::common::TestAppBuilder;
use crate::common::ws::{participants, wait_for_rows};

#[tokio::test]
async fn rows_a_previous_run_left_open_are_closed_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/shared.db?mode=rwc", dir.path().display());
    let first = TestAppBuilder::default().database_url(&url).spawn().await;
    let ada = first.sign_in(8101, "Ada").await;
    let bob = first.sign_in(8102, "Bob").await;
    let live = first.new_call(&ada).await;
    let ended = first.new_call(&ada).await;
    let resp = first
        .post(&format!("/api/calls/{ended}/end"), &ada, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // What a killed process leaves behind: joins recorded, leaves never written (on a
    // call still active, and on one that ended meanwhile).
    let repo = &first.state.repo;
    let live_call = repo
        .find_call_by_code(&CallCode::from_raw(&live))
        .await
        .unwrap()
        .unwrap();
    let ended_call = repo
        .find_call_by_code(&CallCode::from_raw(&ended))
        .await
        .unwrap()
        .unwrap();
    let joined_at = first.clock_now();
    for user in [&ada, &bob] {
        repo.record_join(live_call.id, user.user_id(), joined_at)
            .await
            .unwrap();
    }
    repo.record_join(ended_call.id, bob.user_id(), joined_at)
        .await
        .unwrap();
    first.stop().await;

    let second = TestAppBuilder::default().database_url(&url).spawn().await;
    let restarted_at = second.clock_now();
    let rows = participants(&second, &live).await;
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let left = row.left_at.expect("a live call's row left open");
        assert!(left >= joined_at && left <= restarted_at, "{row:?}");
    }
    let rows = participants(&second, &ended).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].left_at, ended_call.ended_at,
        "closed at the call's end"
    );
}

#[tokio::test]
async fn a_friend_calls_rows_close_with_the_call_even_if_nobody_connected() {
    let app = TestAppBuilder::default().spawn().await;
    let ada = app.sign_in(8201, "Ada").await;
    let bob = app.sign_in(8202, "Bob").await;
    app.befriend(&ada, &bob).await;
    let ring = |app: &crate::common::TestApp| {
        app.post("/api/calls/friend", &ada, &json!({ "friend_id": bob.id }))
            .send()
    };

    // Ended by the organizer.
    let resp = ring(&app).await.unwrap();
    assert_eq!(resp.status(), 201);
    let call: serde_json::Value = resp.json().await.unwrap();
    let code = call["call_id"].as_str().unwrap().to_owned();
    assert!(
        participants(&app, &code)
            .await
            .iter()
            .all(|r| r.left_at.is_none())
    );
    let ended: serde_json::Value = app
        .post(&format!("/api/calls/{code}/end"), &ada, &json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ended["status"], "ended");
    let stored = app
        .state
        .repo
        .find_call_by_code(&CallCode::from_raw(&code))
        .await
        .unwrap()
        .unwrap();
    let rows = participants(&app, &code).await;
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter().all(|r| r.left_at == stored.ended_at),
        "{rows:?}"
    );

    // Expired by the sweeper.
    let resp = ring(&app).await.unwrap();
    let call: serde_json::Value = resp.json().await.unwrap();
    let code = call["call_id"].as_str().unwrap().to_owned();
    app.clock.advance(Duration::hours(25));
    assert_eq!(
        telcall_server::sweeper::sweep_once(&app.state.calls).await,
        1
    );
    let rows = participants(&app, &code).await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.left_at.is_some()), "{rows:?}");
}

#[tokio::test]
async fn a_reconnect_within_the_window_continues_the_same_row() {
    let app = TestAppBuilder::default().spawn().await;
    let ada = app.sign_in(8301, "Ada").await;
    let bob = app.sign_in(8302, "Bob").await;
    let call = app.new_call(&ada).await;
    let mut host = app.ws_join(&call, &ada).await;

    // Bob's connection drops and comes back a few times within the window: one row.
    for _ in 0..3 {
        let client = app.ws_join(&call, &bob).await;
        host.expect("user_joined").await;
        client.close().await;
        host.expect("user_left").await;
        // This leave is written (at the clock's current reading) before the clock moves on.
        let now = app.clock_now();
        wait_for_rows(&app, &call, |rows| {
            rows.iter()
                .any(|r| r.user_id == bob.user_id() && r.left_at > Some(now - Duration::seconds(1)))
        })
        .await;
        app.clock.advance(Duration::seconds(30));
    }
    let bobs = |rows: &[telcall_domain::Participant]| {
        rows.iter().filter(|r| r.user_id == bob.user_id()).count()
    };
    let rows = participants(&app, &call).await;
    assert_eq!(bobs(&rows), 1, "{rows:?}");

    // Back after longer than the window: a new stay.
    app.clock.advance(Duration::minutes(5));
    let _client = app.ws_join(&call, &bob).await;
    host.expect("user_joined").await;
    let rows = wait_for_rows(&app, &call, |rows| bobs(rows) == 2).await;
    let mut stays: Vec<_> = rows.iter().filter(|r| r.user_id == bob.user_id()).collect();
    stays.sort_by_key(|r| r.id);
    assert!(stays[0].left_at.is_some());
    assert!(stays[1].left_at.is_none());
}
