//! Domain services: the business rules of calls, friends and statistics, written against
//! the repository traits so handlers stay thin.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::clock::Clock;
use crate::entities::{
    Call, CallCode, CallId, CallStats, CallStatsInput, CallStatsSummary, CallStatus, Friend,
    FriendQuery, NewCall, User, UserId,
};
use crate::error::{DomainError, RepoError};
use crate::events::{CallEvents, EndReason};
use crate::repo::Repositories;

/// Longest accepted call title, in characters.
pub const MAX_TITLE_CHARS: usize = 255;
/// Longest accepted join code, in characters.
pub const MAX_CODE_CHARS: usize = 255;
/// Largest friend-listing and stats-listing page.
pub const MAX_PAGE_SIZE: u64 = 100;
/// Attempts at drawing an unused call code before giving up.
const CODE_ATTEMPTS: usize = 5;

/// Limits that shape calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallPolicy {
    /// How long a call stays joinable after creation.
    pub call_lifetime: Duration,
    /// Active calls one user may organize; one more ends the oldest.
    pub max_active_calls_per_user: usize,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            call_lifetime: Duration::hours(24),
            max_active_calls_per_user: 5,
        }
    }
}

/// Creating, reading, joining and ending calls.
#[derive(Clone)]
pub struct CallService {
    repo: Arc<dyn Repositories>,
    clock: Arc<dyn Clock>,
    events: Arc<dyn CallEvents>,
    policy: CallPolicy,
}

impl CallService {
    /// A service over `repo`, telling `events` about ended calls.
    pub fn new(
        repo: Arc<dyn Repositories>,
        clock: Arc<dyn Clock>,
        events: Arc<dyn CallEvents>,
        policy: CallPolicy,
    ) -> Self {
        Self {
            repo,
            clock,
            events,
            policy,
        }
    }

    /// Creates a call organized by `creator`. When that makes one active call too many,
    /// the creator's oldest active calls are ended (their rooms get `call_ended`).
    pub async fn create_call(
        &self,
        creator: UserId,
        title: Option<String>,
        is_video_enabled: bool,
    ) -> Result<Call, DomainError> {
        let title = normalize_title(title)?;
        let now = self.clock.now();
        let _ = self.enforce_active_limit(creator, now, None).await?;
        let mut last_conflict = None;
        for _ in 0..CODE_ATTEMPTS {
            let new = NewCall {
                code: CallCode::generate(),
                creator_id: creator,
                title: title.clone(),
                is_video_enabled,
                created_at: now,
                expires_at: now + self.policy.call_lifetime,
            };
            match self.repo.create_call(&new).await {
                Ok(call) => {
                    // Concurrent creations all passed the check above before any of them
                    // was stored; trimming again once this call is stored keeps the user at
                    // the limit (the request that looks last sees every new call). Under
                    // such a burst the new call itself may be the oldest surplus one.
                    let own = self
                        .enforce_active_limit(creator, now, Some(call.id))
                        .await?;
                    return Ok(own.unwrap_or(call));
                }
                Err(RepoError::Conflict(e)) => last_conflict = Some(RepoError::Conflict(e)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_conflict
            .unwrap_or_else(|| RepoError::Other("no unused call code".to_owned()))
            .into())
    }

    /// Ends the creator's oldest active calls so that, with the call being created, they
    /// stay within the limit: before it is stored (`created` is `None`), one more must fit;
    /// after (`created` is its id), the stored ones must fit. Always the oldest go, so the
    /// newest calls survive whatever the interleaving of concurrent creations. Returns the
    /// created call when it was ended here. Active calls already past their expiry are
    /// marked expired and do not count.
    async fn enforce_active_limit(
        &self,
        creator: UserId,
        now: DateTime<Utc>,
        created: Option<CallId>,
    ) -> Result<Option<Call>, DomainError> {
        let mut live = Vec::new();
        for call in self.repo.list_active_calls_by_creator(creator).await? {
            if call.is_past_expiry(now) {
                self.finish(&call, CallStatus::Expired, EndReason::Expired, now)
                    .await?;
            } else {
                live.push(call);
            }
        }
        let max = self.policy.max_active_calls_per_user.max(1);
        let count = live.len() + usize::from(created.is_none());
        let mut own = None;
        if count > max {
            live.sort_by_key(|c| (c.created_at, c.id));
            for call in live.iter().take(count - max) {
                let ended = self
                    .finish(call, CallStatus::Ended, EndReason::ActiveLimit, now)
                    .await?;
                if Some(call.id) == created {
                    own = ended;
                }
            }
        }
        Ok(own)
    }

    /// Moves an active call to `status` and tells its room. `None` when it was no longer
    /// active (a concurrent end or the sweeper finished it first; that one told the room).
    async fn finish(
        &self,
        call: &Call,
        status: CallStatus,
        reason: EndReason,
        now: DateTime<Utc>,
    ) -> Result<Option<Call>, DomainError> {
        let updated = self.repo.set_call_status(call.id, status, now).await?;
        if updated.is_some() {
            self.events.call_ended(&call.code, reason);
        }
        Ok(updated)
    }

    /// Loads a call and brings its stored status up to date: an active call past its
    /// expiry is marked `expired` (and its room told).
    async fn load_fresh(&self, code: &str) -> Result<Call, DomainError> {
        let call = self
            .repo
            .find_call_by_code(code)
            .await?
            .ok_or(DomainError::CallNotFound)?;
        let now = self.clock.now();
        if call.status == CallStatus::Active && call.is_past_expiry(now) {
            if let Some(expired) = self
                .finish(&call, CallStatus::Expired, EndReason::Expired, now)
                .await?
            {
                return Ok(expired);
            }
            // Finished concurrently: answer with what is stored now.
            return self
                .repo
                .find_call_by_code(code)
                .await?
                .ok_or(DomainError::CallNotFound);
        }
        Ok(call)
    }

    /// A call that can be joined now, or why not: `CallNotFound`, `CallExpired` (marking it
    /// expired if needed) or `CallNotAvailable` (ended).
    pub async fn joinable_call(&self, code: &str) -> Result<Call, DomainError> {
        let call = self.load_fresh(code).await?;
        match call.status {
            CallStatus::Active => Ok(call),
            CallStatus::Expired => Err(DomainError::CallExpired),
            CallStatus::Ended => Err(DomainError::CallNotAvailable),
        }
    }

    /// `GET /api/calls/{id}`: the call if it is still joinable.
    pub async fn get_call(&self, code: &str) -> Result<Call, DomainError> {
        self.joinable_call(code).await
    }

    /// `POST /api/calls/join_by_code`: the trimmed code must name a joinable call.
    pub async fn join_by_code(&self, code: &str) -> Result<Call, DomainError> {
        let code = code.trim();
        if code.is_empty() {
            return Err(DomainError::CallCodeRequired);
        }
        if code.chars().count() > MAX_CODE_CHARS {
            return Err(DomainError::CallNotFound);
        }
        self.joinable_call(code).await
    }

    /// Ends a call on behalf of `user`, who must be its organizer. A call that had
    /// expired is returned as `expired`; one no longer active is refused.
    pub async fn end_call(&self, user: UserId, code: &str) -> Result<Call, DomainError> {
        let call = self
            .repo
            .find_call_by_code(code)
            .await?
            .ok_or(DomainError::CallNotFound)?;
        if !call.can_be_ended_by(user) {
            return Err(DomainError::NotOrganizer);
        }
        if call.status != CallStatus::Active {
            return Err(DomainError::CallNoLongerActive);
        }
        let now = self.clock.now();
        let finished = if call.is_past_expiry(now) {
            self.finish(&call, CallStatus::Expired, EndReason::Expired, now)
                .await?
        } else {
            self.finish(&call, CallStatus::Ended, EndReason::Ended, now)
                .await?
        };
        // `None`: another request or the sweeper finished it between the read and the write.
        finished.ok_or(DomainError::CallNoLongerActive)
    }

    /// Ends the call with `code` because a limit was reached (for example the maximum call
    /// duration), whoever organizes it. Returns the ended call, or `None` when it was not
    /// active any more.
    pub async fn end_for_limit(
        &self,
        code: &str,
        reason: EndReason,
    ) -> Result<Option<Call>, DomainError> {
        let call = self
            .repo
            .find_call_by_code(code)
            .await?
            .ok_or(DomainError::CallNotFound)?;
        if call.status != CallStatus::Active {
            return Ok(None);
        }
        let now = self.clock.now();
        self.finish(&call, CallStatus::Ended, reason, now).await
    }

    /// `POST /api/calls/friend`: creates a call from `caller` to `friend` — someone `caller`
    /// shared a call with (a friend link), so nobody can be rung by guessing ids — records
    /// both as participants and refreshes their link. Returns the call and the friend (to
    /// notify).
    pub async fn call_friend(
        &self,
        caller: UserId,
        friend: UserId,
        is_video_enabled: bool,
    ) -> Result<(Call, User), DomainError> {
        if caller == friend {
            return Err(DomainError::CannotCallYourself);
        }
        if !self.repo.is_friend(caller, friend).await? {
            return Err(DomainError::FriendNotFound);
        }
        let friend_user = self
            .repo
            .find_user(friend)
            .await?
            .ok_or(DomainError::FriendNotFound)?;
        let call = self.create_call(caller, None, is_video_enabled).await?;
        let now = self.clock.now();
        self.repo.record_join(call.id, caller, now).await?;
        self.repo.record_join(call.id, friend, now).await?;
        self.repo.link_friends(&[caller, friend], now).await?;
        Ok((call, friend_user))
    }

    /// Marks every call whose lifetime passed as expired and tells their rooms. Returns
    /// the calls it expired.
    pub async fn expire_due(&self) -> Result<Vec<Call>, DomainError> {
        let expired = self.repo.expire_due_calls(self.clock.now()).await?;
        for call in &expired {
            self.events.call_ended(&call.code, EndReason::Expired);
        }
        Ok(expired)
    }

    /// Records that `user` joined the call's room, and links them with everyone else in it.
    pub async fn participant_joined(
        &self,
        call: &Call,
        user: UserId,
        others: &[UserId],
    ) -> Result<(), DomainError> {
        let now = self.clock.now();
        self.repo.record_join(call.id, user, now).await?;
        if !others.is_empty() {
            let mut everyone: Vec<UserId> = others.to_vec();
            everyone.push(user);
            self.repo.link_friends(&everyone, now).await?;
        }
        Ok(())
    }

    /// Records that `user` left the call's room.
    pub async fn participant_left(&self, call: &Call, user: UserId) -> Result<(), DomainError> {
        self.repo
            .record_leave(call.id, user, self.clock.now())
            .await?;
        Ok(())
    }
}

fn normalize_title(title: Option<String>) -> Result<Option<String>, DomainError> {
    match title {
        Some(t) if t.chars().count() > MAX_TITLE_CHARS => Err(DomainError::Invalid(format!(
            "title must be at most {MAX_TITLE_CHARS} characters"
        ))),
        Some(t) if t.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// Listing and removing friends.
#[derive(Clone)]
pub struct FriendService {
    repo: Arc<dyn Repositories>,
}

impl FriendService {
    /// A service over `repo`.
    pub fn new(repo: Arc<dyn Repositories>) -> Self {
        Self { repo }
    }

    /// The friends of `user` matching `query`, newest shared call first.
    pub async fn list(
        &self,
        user: UserId,
        query: &FriendQuery,
    ) -> Result<Vec<Friend>, DomainError> {
        if !(1..=MAX_PAGE_SIZE).contains(&query.limit) {
            return Err(DomainError::Invalid(format!(
                "limit must be between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        let mut query = query.clone();
        query.search = query
            .search
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        Ok(self.repo.list_friends(user, &query).await?)
    }

    /// Removes friends (both directions). Returns `(deleted, not_found)`, each in the order
    /// first seen in `ids`.
    pub async fn delete(
        &self,
        user: UserId,
        ids: &[UserId],
    ) -> Result<(Vec<UserId>, Vec<UserId>), DomainError> {
        let mut seen = HashSet::new();
        let unique: Vec<UserId> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        let deleted: HashSet<UserId> = self
            .repo
            .delete_friends(user, &unique)
            .await?
            .into_iter()
            .collect();
        let (found, missing) = unique.into_iter().partition(|id| deleted.contains(id));
        Ok((found, missing))
    }
}

/// Storing and reading call quality statistics.
#[derive(Clone)]
pub struct StatsService {
    repo: Arc<dyn Repositories>,
    clock: Arc<dyn Clock>,
}

impl StatsService {
    /// A service over `repo`.
    pub fn new(repo: Arc<dyn Repositories>, clock: Arc<dyn Clock>) -> Self {
        Self { repo, clock }
    }

    /// Stores `user`'s report for the call with `code`.
    pub async fn record(
        &self,
        user: UserId,
        code: &str,
        figures: &CallStatsInput,
    ) -> Result<CallStats, DomainError> {
        figures.validate().map_err(DomainError::Invalid)?;
        let call = self
            .repo
            .find_call_by_code(code)
            .await?
            .ok_or(DomainError::CallNotFound)?;
        Ok(self
            .repo
            .insert_stats(&call, user, figures, self.clock.now())
            .await?)
    }

    /// The aggregate of every report of the call with `code`.
    pub async fn summary(&self, code: &str) -> Result<(Call, CallStatsSummary), DomainError> {
        let call = self
            .repo
            .find_call_by_code(code)
            .await?
            .ok_or(DomainError::CallNotFound)?;
        let summary = self.repo.summarize_stats(call.id).await?;
        Ok((call, summary))
    }

    /// The user's own reports, newest first; `limit` is clamped to 1..=100.
    pub async fn list_own(&self, user: UserId, limit: u64) -> Result<Vec<CallStats>, DomainError> {
        Ok(self
            .repo
            .list_stats_by_user(user, limit.clamp(1, MAX_PAGE_SIZE))
            .await?)
    }
}
