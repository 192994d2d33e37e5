//! Repository traits: the storage operations telcall needs, implemented by
//! `telcall-persistence` for SQLite and PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::entities::{
    Call, CallCode, CallId, CallStats, CallStatsInput, CallStatsSummary, CallStatus, Friend,
    FriendQuery, NewCall, Participant, User, UserId, UserProfile,
};
use crate::error::RepoError;

/// Users.
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Inserts the user, or refreshes names, username and photo of the one with the same
    /// Telegram id (keeping its internal id). `now` becomes `updated_at` (and `created_at`
    /// of a new row).
    async fn upsert_user(
        &self,
        profile: &UserProfile,
        now: DateTime<Utc>,
    ) -> Result<User, RepoError>;
    /// The user with this internal id.
    async fn find_user(&self, id: UserId) -> Result<Option<User>, RepoError>;
    /// The user with this Telegram id.
    async fn find_user_by_telegram_id(
        &self,
        telegram_user_id: i64,
    ) -> Result<Option<User>, RepoError>;
}

/// Calls.
#[async_trait]
pub trait CallRepository: Send + Sync {
    /// Stores a new call with status `active`. A duplicate code is [`RepoError::Conflict`].
    async fn create_call(&self, call: &NewCall) -> Result<Call, RepoError>;
    /// The call with this public code (compared exactly, case included).
    async fn find_call_by_code(&self, code: &CallCode) -> Result<Option<Call>, RepoError>;
    /// The active calls `creator` organizes, oldest first.
    async fn list_active_calls_by_creator(&self, creator: UserId) -> Result<Vec<Call>, RepoError>;
    /// Sets the status of a call (and `ended_at` to `at` when it leaves `active`). Returns
    /// the updated call, or `None` when there is no such call. Leaving `active` is a
    /// compare-and-set: a call that is no longer active (another request or the sweeper
    /// finished it first) is left as it is and `None` is returned, so a call ends once.
    async fn set_call_status(
        &self,
        id: CallId,
        status: CallStatus,
        at: DateTime<Utc>,
    ) -> Result<Option<Call>, RepoError>;
    /// Marks every active call whose `expires_at` is at or before `now` as `expired`, in one
    /// statement, and returns the calls it changed.
    async fn expire_due_calls(&self, now: DateTime<Utc>) -> Result<Vec<Call>, RepoError>;
    /// Marks every active call created at or before `created_by` as `ended` at `now`, in one
    /// statement, and returns the calls it changed (the maximum call duration).
    async fn end_calls_created_by(
        &self,
        created_by: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Call>, RepoError>;
}

/// Who was in which call and when.
#[async_trait]
pub trait ParticipantRepository: Send + Sync {
    /// Records that `user` joined `call` at `at`.
    async fn record_join(
        &self,
        call: CallId,
        user: UserId,
        at: DateTime<Utc>,
    ) -> Result<Participant, RepoError>;
    /// Sets `left_at` on the user's open stays in the call. Returns how many were closed.
    async fn record_leave(
        &self,
        call: CallId,
        user: UserId,
        at: DateTime<Utc>,
    ) -> Result<u64, RepoError>;
    /// Continues the user's latest stay in the call when it is still open or ended at or
    /// after `since` (its `left_at` is cleared), instead of a new row for a reconnect.
    /// `None` when there is no such stay (record a new join then).
    async fn continue_stay(
        &self,
        call: CallId,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Option<Participant>, RepoError>;
    /// Sets `left_at` to `at` on every open stay in the call. Returns how many were closed.
    async fn close_open_stays(&self, call: CallId, at: DateTime<Utc>) -> Result<u64, RepoError>;
    /// The calls that have at least one open stay (`left_at` unset).
    async fn calls_with_open_stays(&self) -> Result<Vec<Call>, RepoError>;
    /// Every stay in the call, oldest first.
    async fn list_participants(&self, call: CallId) -> Result<Vec<Participant>, RepoError>;
    /// Whether `user` has any stay recorded in the call.
    async fn has_participated(&self, call: CallId, user: UserId) -> Result<bool, RepoError>;
    /// Records `changes` in their order, all or none (one transaction): each change as
    /// [`PresenceChange`] describes it. Friend links are written last, in one global row
    /// order, so concurrent writers cannot deadlock on them.
    async fn record_presence(&self, changes: &[PresenceChange]) -> Result<(), RepoError>;
}

/// One change to who is in a call, stamped when it happened; the presence writer records
/// them in order, many at a time ([`ParticipantRepository::record_presence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceChange {
    /// `user` joined `call` at `at` where `others` already were. The user's latest stay is
    /// continued when it is still open or ended at or after `since` (a reconnect); else a
    /// new stay begins. `user` and each of `others` become friends (both directions,
    /// `last_call_at` = `at`).
    Joined {
        /// The call.
        call: CallId,
        /// Who joined.
        user: UserId,
        /// Who was already in the room.
        others: Vec<UserId>,
        /// When.
        at: DateTime<Utc>,
        /// A stay that ended before this is not continued.
        since: DateTime<Utc>,
    },
    /// `user` left `call` at `at`: the user's open stays get `left_at`.
    Left {
        /// The call.
        call: CallId,
        /// Who left.
        user: UserId,
        /// When.
        at: DateTime<Utc>,
    },
}

/// Friend links (people who shared a call).
#[async_trait]
pub trait FriendRepository: Send + Sync {
    /// Links every pair of distinct `users` in both directions, setting `last_call_at` to
    /// `at` (one batch upsert). Duplicates in `users` are ignored.
    async fn link_friends(&self, users: &[UserId], at: DateTime<Utc>) -> Result<(), RepoError>;
    /// The friends of `user`, most recent shared call first.
    async fn list_friends(
        &self,
        user: UserId,
        query: &FriendQuery,
    ) -> Result<Vec<Friend>, RepoError>;
    /// Whether `user` has a link to `friend` (they shared a call and it was not deleted).
    async fn is_friend(&self, user: UserId, friend: UserId) -> Result<bool, RepoError>;
    /// Removes the links between `user` and each of `friends`, both directions. Returns the
    /// ids that were linked (and are now not).
    async fn delete_friends(
        &self,
        user: UserId,
        friends: &[UserId],
    ) -> Result<Vec<UserId>, RepoError>;
}

/// Call quality statistics.
#[async_trait]
pub trait CallStatsRepository: Send + Sync {
    /// Stores the user's report for the call, replacing the one they sent before (one row
    /// per user and call; the row keeps its id, `at` becomes its `created_at`).
    async fn upsert_stats(
        &self,
        call: &Call,
        user: UserId,
        figures: &CallStatsInput,
        at: DateTime<Utc>,
    ) -> Result<CallStats, RepoError>;
    /// Aggregates every report of a call; never fails on large figures (sums are computed
    /// without integer overflow on every backend).
    async fn summarize_stats(&self, call: CallId) -> Result<CallStatsSummary, RepoError>;
    /// The user's own reports, newest first.
    async fn list_stats_by_user(
        &self,
        user: UserId,
        limit: u64,
    ) -> Result<Vec<CallStats>, RepoError>;
}

/// Liveness of the storage.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> Result<(), RepoError>;
}

/// Everything storage provides, as one object (`Arc<dyn Repositories>`).
pub trait Repositories:
    UserRepository
    + CallRepository
    + ParticipantRepository
    + FriendRepository
    + CallStatsRepository
    + HealthCheck
{
}

impl<T> Repositories for T where
    T: UserRepository
        + CallRepository
        + ParticipantRepository
        + FriendRepository
        + CallStatsRepository
        + HealthCheck
{
}
