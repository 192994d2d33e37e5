//! The call-events seam: ending a call (organizer, active-calls limit, expiry sweeper)
//! emits the event the signaling hub consumes. Runs the domain services on a real SQLite
//! database built by the migrations.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use telcall_domain::{
    CallPolicy, CallService, CallStatus, Clock, EndReason, ManualClock, RecordingCallEvents,
    Repositories, UserId, UserProfile,
};
use telcall_persistence::{DbOptions, SeaStore};

struct Fixture {
    calls: CallService,
    events: Arc<RecordingCallEvents>,
    clock: Arc<ManualClock>,
    repo: Arc<dyn Repositories>,
    _dir: tempfile::TempDir,
}

async fn fixture(max_active: usize) -> Fixture {
    fixture_with(CallPolicy {
        max_active_calls_per_user: max_active,
        ..CallPolicy::default()
    })
    .await
}

async fn fixture_with(policy: CallPolicy) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/events.db?mode=rwc", dir.path().display());
    let store = SeaStore::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    store.migrate_up().await.unwrap();
    let repo: Arc<dyn Repositories> = Arc::new(store);
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap(),
    ));
    let events = Arc::new(RecordingCallEvents::default());
    let calls = CallService::new(repo.clone(), clock.clone(), events.clone(), policy);
    Fixture {
        calls,
        events,
        clock,
        repo,
        _dir: dir,
    }
}

async fn user(repo: &Arc<dyn Repositories>, tg: i64) -> UserId {
    repo.upsert_user(
        &UserProfile {
            telegram_user_id: tg,
            first_name: Some(format!("U{tg}")),
            ..Default::default()
        },
        Utc::now(),
    )
    .await
    .unwrap()
    .id
}

#[tokio::test]
async fn organizer_end_emits_ended() {
    let f = fixture(5).await;
    let ada = user(&f.repo, 1).await;
    let call = f.calls.create_call(ada, None, false).await.unwrap();
    assert!(f.events.events().is_empty());
    f.calls.end_call(ada, &call.code).await.unwrap();
    assert_eq!(
        f.events.events(),
        vec![(call.code.clone(), EndReason::Ended)]
    );
    // A refused end emits nothing more.
    assert!(f.calls.end_call(ada, &call.code).await.is_err());
    assert_eq!(f.events.events().len(), 1);
}

#[tokio::test]
async fn active_limit_emits_the_auto_end_sentence() {
    let f = fixture(2).await;
    let ada = user(&f.repo, 2).await;
    let first = f.calls.create_call(ada, None, false).await.unwrap();
    f.clock.advance(Duration::seconds(1));
    f.calls.create_call(ada, None, false).await.unwrap();
    f.clock.advance(Duration::seconds(1));
    f.calls.create_call(ada, None, false).await.unwrap();
    let events = f.events.events();
    assert_eq!(events, vec![(first.code.clone(), EndReason::ActiveLimit)]);
    assert_eq!(
        telcall_server::events::wire_reason(events[0].1).to_string(),
        "Maximum active calls limit reached - oldest call auto-ended"
    );
}

#[tokio::test]
async fn sweeper_expires_due_calls_once_and_emits_expired() {
    // A duration cap beyond the lifetime: only expiry is at work here.
    let f = fixture_with(CallPolicy {
        max_call_duration_hours: 48,
        ..CallPolicy::default()
    })
    .await;
    let ada = user(&f.repo, 3).await;
    let old = f.calls.create_call(ada, None, false).await.unwrap();
    f.clock.advance(Duration::hours(12));
    let young = f.calls.create_call(ada, None, false).await.unwrap();
    f.clock.advance(Duration::hours(12));

    assert_eq!(telcall_server::sweeper::sweep_once(&f.calls).await, 1);
    assert_eq!(
        f.events.events(),
        vec![(old.code.clone(), EndReason::Expired)]
    );
    let stored = f.repo.find_call_by_code(&old.code).await.unwrap().unwrap();
    assert_eq!(stored.status, CallStatus::Expired);
    let stored = f
        .repo
        .find_call_by_code(&young.code)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, CallStatus::Active);

    // A second sweep finds nothing new.
    assert_eq!(telcall_server::sweeper::sweep_once(&f.calls).await, 0);
    assert_eq!(f.events.events().len(), 1);
}

#[tokio::test]
async fn sweeper_ends_calls_past_the_duration_cap_once() {
    // The default cap: 12 hours from the call's creation.
    let f = fixture(5).await;
    let ada = user(&f.repo, 5).await;
    let old = f.calls.create_call(ada, None, false).await.unwrap();
    f.clock.advance(Duration::hours(6));
    let young = f.calls.create_call(ada, None, false).await.unwrap();
    f.clock.advance(Duration::hours(6) - Duration::seconds(1));
    assert_eq!(telcall_server::sweeper::sweep_once(&f.calls).await, 0);

    f.clock.advance(Duration::seconds(1));
    assert_eq!(telcall_server::sweeper::sweep_once(&f.calls).await, 1);
    assert_eq!(
        f.events.events(),
        vec![(old.code.clone(), EndReason::MaxDuration(12))]
    );
    let stored = f.repo.find_call_by_code(&old.code).await.unwrap().unwrap();
    assert_eq!(stored.status, CallStatus::Ended);
    assert_eq!(stored.ended_at, Some(f.clock.now()));
    let stored = f
        .repo
        .find_call_by_code(&young.code)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, CallStatus::Active);
    assert_eq!(telcall_server::sweeper::sweep_once(&f.calls).await, 0);
    assert_eq!(f.events.events().len(), 1);
}

#[tokio::test]
async fn reading_an_expired_call_marks_it_and_emits_once() {
    let f = fixture(5).await;
    let ada = user(&f.repo, 4).await;
    let call = f.calls.create_call(ada, None, false).await.unwrap();
    f.clock.advance(Duration::hours(24));
    assert!(f.calls.joinable_call(&call.code).await.is_err());
    assert!(f.calls.joinable_call(&call.code).await.is_err());
    assert_eq!(
        f.events.events(),
        vec![(call.code.clone(), EndReason::Expired)]
    );
}
