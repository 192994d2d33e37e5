//! A burst of call creations by one user: each creation answers with its call's real
//! state. When the active-call limit ends a call while its own creation is still in
//! flight, that creation answers `ended`, not the `active` it was stored with.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use telcall_domain::{
    Call, CallCode, CallId, CallPolicy, CallRepository, CallService, CallStats, CallStatsInput,
    CallStatsRepository, CallStatsSummary, CallStatus, Friend, FriendQuery, FriendRepository,
    HealthCheck, NewCall, Participant, ParticipantRepository, PresenceChange, RecordingCallEvents,
    RepoError, Repositories, User, UserId, UserProfile, UserRepository,
};
use tokio::sync::oneshot;

use crate::common::TestAppBuilder;

/// The app's real store, except that the first stored call's `create_call` reports that
/// the row exists and then waits to be resumed before returning: the creation it belongs
/// to is held between storing its call and trimming the user's active calls.
struct PauseAfterFirstCall {
    inner: Arc<dyn Repositories>,
    pause: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

#[async_trait]
impl CallRepository for PauseAfterFirstCall {
    async fn create_call(&self, call: &NewCall) -> Result<Call, RepoError> {
        let stored = self.inner.create_call(call).await?;
        let pause = self.pause.lock().unwrap().take();
        if let Some((stored_tx, resume_rx)) = pause {
            stored_tx.send(()).unwrap();
            resume_rx.await.unwrap();
        }
        Ok(stored)
    }
    async fn find_call_by_code(&self, code: &CallCode) -> Result<Option<Call>, RepoError> {
        self.inner.find_call_by_code(code).await
    }
    async fn list_active_calls_by_creator(&self, creator: UserId) -> Result<Vec<Call>, RepoError> {
        self.inner.list_active_calls_by_creator(creator).await
    }
    async fn set_call_status(
        &self,
        id: CallId,
        status: CallStatus,
        at: DateTime<Utc>,
    ) -> Result<Option<Call>, RepoError> {
        self.inner.set_call_status(id, status, at).await
    }
    async fn expire_due_calls(&self, now: DateTime<Utc>) -> Result<Vec<Call>, RepoError> {
        self.inner.expire_due_calls(now).await
    }
    async fn end_calls_created_by(
        &self,
        created_by: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Call>, RepoError> {
        self.inner.end_calls_created_by(created_by, now).await
    }
}

#[async_trait]
impl UserRepository for PauseAfterFirstCall {
    async fn upsert_user(&self, p: &UserProfile, now: DateTime<Utc>) -> Result<User, RepoError> {
        self.inner.upsert_user(p, now).await
    }
    async fn find_user(&self, id: UserId) -> Result<Option<User>, RepoError> {
        self.inner.find_user(id).await
    }
    async fn find_user_by_telegram_id(&self, id: i64) -> Result<Option<User>, RepoError> {
        self.inner.find_user_by_telegram_id(id).await
    }
}

#[async_trait]
impl ParticipantRepository for PauseAfterFirstCall {
    async fn record_join(
        &self,
        call: CallId,
        user: UserId,
        at: DateTime<Utc>,
    ) -> Result<Participant, RepoError> {
        self.inner.record_join(call, user, at).await
    }
    async fn record_leave(
        &self,
        call: CallId,
        user: UserId,
        at: DateTime<Utc>,
    ) -> Result<u64, RepoError> {
        self.inner.record_leave(call, user, at).await
    }
    async fn continue_stay(
        &self,
        call: CallId,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Option<Participant>, RepoError> {
        self.inner.continue_stay(call, user, since).await
    }
    async fn close_open_stays(&self, call: CallId, at: DateTime<Utc>) -> Result<u64, RepoError> {
        self.inner.close_open_stays(call, at).await
    }
    async fn calls_with_open_stays(&self) -> Result<Vec<Call>, RepoError> {
        self.inner.calls_with_open_stays().await
    }
    async fn list_participants(&self, call: CallId) -> Result<Vec<Participant>, RepoError> {
        self.inner.list_participants(call).await
    }
    async fn has_participated(&self, call: CallId, user: UserId) -> Result<bool, RepoError> {
        self.inner.has_participated(call, user).await
    }
    async fn record_presence(&self, changes: &[PresenceChange]) -> Result<(), RepoError> {
        self.inner.record_presence(changes).await
    }
}

#[async_trait]
impl FriendRepository for PauseAfterFirstCall {
    async fn link_friends(&self, users: &[UserId], at: DateTime<Utc>) -> Result<(), RepoError> {
        self.inner.link_friends(users, at).await
    }
    async fn list_friends(&self, user: UserId, q: &FriendQuery) -> Result<Vec<Friend>, RepoError> {
        self.inner.list_friends(user, q).await
    }
    async fn is_friend(&self, user: UserId, friend: UserId) -> Result<bool, RepoError> {
        self.inner.is_friend(user, friend).await
    }
    async fn delete_friends(
        &self,
        user: UserId,
        friends: &[UserId],
    ) -> Result<Vec<UserId>, RepoError> {
        self.inner.delete_friends(user, friends).await
    }
}

#[async_trait]
impl CallStatsRepository for PauseAfterFirstCall {
    async fn upsert_stats(
        &self,
        call: &Call,
        user: UserId,
        figures: &CallStatsInput,
        at: DateTime<Utc>,
    ) -> Result<CallStats, RepoError> {
        self.inner.upsert_stats(call, user, figures, at).await
    }
    async fn summarize_stats(&self, call: CallId) -> Result<CallStatsSummary, RepoError> {
        self.inner.summarize_stats(call).await
    }
    async fn list_stats_by_user(
        &self,
        user: UserId,
        limit: u64,
    ) -> Result<Vec<CallStats>, RepoError> {
        self.inner.list_stats_by_user(user, limit).await
    }
}

#[async_trait]
impl HealthCheck for PauseAfterFirstCall {
    async fn ping(&self) -> Result<(), RepoError> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn a_creation_whose_call_a_concurrent_creation_ended_answers_ended() {
    let app = TestAppBuilder::default().spawn().await;
    let ada = app.sign_in(1040, "Ada").await;
    let (stored_tx, stored_rx) = oneshot::channel();
    let (resume_tx, resume_rx) = oneshot::channel();
    let repo = Arc::new(PauseAfterFirstCall {
        inner: app.state.repo.clone(),
        pause: Mutex::new(Some((stored_tx, resume_rx))),
    });
    let events = Arc::new(RecordingCallEvents::default());
    let calls = CallService::new(
        repo,
        app.state.clock.clone(),
        events.clone(),
        CallPolicy {
            call_lifetime: Duration::hours(24),
            max_active_calls_per_user: 1,
            ..CallPolicy::default()
        },
    );

    // The first creation stores its call and is held there.
    let first = tokio::spawn({
        let calls = calls.clone();
        let ada = ada.user_id();
        async move { calls.create_call(ada, None, false).await }
    });
    stored_rx.await.unwrap();
    // Meanwhile a second creation ends the first call (one active call allowed).
    let second = calls.create_call(ada.user_id(), None, false).await.unwrap();
    assert_eq!(second.status, CallStatus::Active);
    resume_tx.send(()).unwrap();
    let first = first.await.unwrap().unwrap();

    let stored = app
        .state
        .repo
        .find_call_by_code(&first.code)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, CallStatus::Ended);
    assert_eq!(first.status, CallStatus::Ended, "answered {first:?}");
    assert_eq!(first.ended_at, stored.ended_at);
    // Its room was told once, for the limit.
    assert_eq!(
        events.events(),
        [(first.code.clone(), telcall_domain::EndReason::ActiveLimit)]
    );
}

#[tokio::test]
async fn concurrent_creations_answer_each_call_as_stored() {
    let app = TestAppBuilder::default()
        .env("MAX_ACTIVE_CALLS_PER_USER", "2")
        .spawn()
        .await;
    let ada = app.sign_in(1041, "Ada").await;
    let requests = (0..12).map(|_| app.post("/api/calls/", &ada, &json!({})).send());
    let mut answers = Vec::new();
    for resp in futures_util::future::join_all(requests).await {
        let resp = resp.unwrap();
        assert_eq!(resp.status(), 201);
        answers.push(resp.json::<Value>().await.unwrap());
    }
    for answer in &answers {
        let code = answer["call_id"].as_str().unwrap();
        let stored = app
            .state
            .repo
            .find_call_by_code(&CallCode::from_raw(code))
            .await
            .unwrap()
            .unwrap();
        match answer["status"].as_str().unwrap() {
            // An answer of `ended` is final: the stored call says the same.
            "ended" => assert_eq!(stored.status, CallStatus::Ended),
            // An `active` answer may have been ended by a later creation since.
            "active" => {}
            other => panic!("unexpected status {other}"),
        }
    }
    // The two calls that survive were active when they were answered, so at least two
    // answers say `active`, and exactly two calls are active now.
    let active_answers = answers.iter().filter(|a| a["status"] == "active").count();
    assert!(active_answers >= 2, "{answers:?}");
    let active = app
        .state
        .repo
        .list_active_calls_by_creator(ada.user_id())
        .await
        .unwrap();
    assert_eq!(active.len(), 2);
    for call in &active {
        let answer = answers
            .iter()
            .find(|a| a["call_id"] == call.code.as_str())
            .unwrap();
        assert_eq!(
            answer["status"], "active",
            "a surviving call answered {answer}"
        );
    }
}
