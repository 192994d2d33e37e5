//! Domain services: the business rules of calls, friends and statistics, written against
//! the repository traits so handlers stay thin.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc};

use crate::cache::TtlCache;
use crate::clock::Clock;
use crate::entities::{
    Call, CallCode, CallId, CallStats, CallStatsInput, CallStatsSummary, CallStatus, Friend,
    FriendQuery, NewCall, User, UserId,
};
use crate::error::{DomainError, RepoError};
use crate::events::{CallEvents, EndReason};
use crate::repo::{PresenceChange, Repositories};

/// Longest accepted call title, in characters.
pub const MAX_TITLE_CHARS: usize = 255;
/// Longest join code the API's schema admits, in characters (a code longer than
/// [`CallCode::MAX_STORED_LEN`] names no call, see [`CallCode::from_typed`]).
pub const MAX_CODE_CHARS: usize = 255;
/// Largest friend-listing and stats-listing page.
pub const MAX_PAGE_SIZE: u64 = 100;
/// Friend-listing and stats-listing page size when the client names none.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Longest friend search text, in characters.
pub const MAX_SEARCH_CHARS: usize = 255;
/// Default of [`CallPolicy::max_call_duration_hours`] (`MAX_CALL_DURATION_HOURS`).
pub const DEFAULT_MAX_CALL_DURATION_HOURS: u32 = 12;
/// Default of [`CallPolicy::rejoin_window`]: two minutes.
pub const DEFAULT_REJOIN_WINDOW_SECONDS: i64 = 120;
/// Attempts at drawing an unused call code before giving up.
const CODE_ATTEMPTS: usize = 5;

/// Limits that shape calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallPolicy {
    /// How long a call stays joinable after creation.
    pub call_lifetime: Duration,
    /// Active calls one user may organize; one more ends the oldest.
    pub max_active_calls_per_user: usize,
    /// A user who rejoins a call within this long of leaving continues the same stay
    /// (participant row) instead of starting a new one.
    pub rejoin_window: Duration,
    /// Hard cap on a call, in hours, counted from its creation: once it has passed the
    /// call is ended (its room gets `call_ended`) and can no longer be joined, however
    /// often its room emptied meanwhile (`MAX_CALL_DURATION_HOURS`).
    pub max_call_duration_hours: u32,
}

impl CallPolicy {
    /// [`CallPolicy::max_call_duration_hours`] as a duration.
    pub fn max_call_duration(&self) -> Duration {
        Duration::hours(i64::from(self.max_call_duration_hours))
    }

    /// How an active call must be finished at `now`, if its time is up: past its lifetime
    /// it expires, past the duration cap it is ended.
    fn overdue(&self, call: &Call, now: DateTime<Utc>) -> Option<(CallStatus, EndReason)> {
        if call.is_past_expiry(now) {
            Some((CallStatus::Expired, EndReason::Expired))
        } else if call.is_past_duration_cap(now, self.max_call_duration()) {
            Some((
                CallStatus::Ended,
                EndReason::MaxDuration(self.max_call_duration_hours),
            ))
        } else {
            None
        }
    }
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            call_lifetime: Duration::hours(24),
            max_active_calls_per_user: 5,
            rejoin_window: Duration::seconds(DEFAULT_REJOIN_WINDOW_SECONDS),
            max_call_duration_hours: DEFAULT_MAX_CALL_DURATION_HOURS,
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
    /// Active calls recently read by [`CallService::joinable_call`] (see
    /// [`CallService::with_cache`]).
    /// Each with the [`CallEvents::ends_epoch`] read before it was.
    cache: Option<Arc<TtlCache<CallCode, (Call, u64)>>>,
    reads: Arc<CallReads>,
}

/// How [`CallService::joinable_call`] found its calls: read from storage or served from the
/// kept copies (`/metrics`).
#[derive(Debug, Default)]
struct CallReads {
    storage: AtomicU64,
    kept: AtomicU64,
}

/// Counts of [`CallService::joinable_call`]'s answers since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallReadStats {
    /// Calls read from storage.
    pub storage: u64,
    /// Calls served from the cache (`CALL_CACHE_SECONDS`).
    pub kept: u64,
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
            cache: None,
            reads: Arc::default(),
        }
    }

    /// How many joinable calls were read from storage and how many came from the cache.
    pub fn read_stats(&self) -> CallReadStats {
        CallReadStats {
            storage: self.reads.storage.load(Ordering::Relaxed),
            kept: self.reads.kept.load(Ordering::Relaxed),
        }
    }

    /// Keeps each active call [`CallService::joinable_call`] read for `ttl`, at most
    /// `capacity` of them, so that the reads of a call (its page, the WebSocket handshake
    /// of everyone joining it) do not each go to storage. A kept call is used only while it
    /// is still before its expiry and the duration cap, and while the [`CallEvents`] do not
    /// say it ended (an end here or, through the broker, on another instance); a call
    /// this service finishes is forgotten at once. The price, documented with the setting:
    /// an end the events never heard of (another instance's while the broker is down, a
    /// change made directly in the database) is seen at most `ttl` later. A zero `ttl` or
    /// `capacity` keeps nothing.
    #[must_use]
    pub fn with_cache(mut self, ttl: Duration, capacity: usize) -> Self {
        self.cache = TtlCache::new(ttl, capacity).map(Arc::new);
        self
    }

    /// Forgets a kept call whose stored state changed.
    fn forget(&self, code: &CallCode) {
        if let Some(cache) = &self.cache {
            cache.remove(code);
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
        self.enforce_active_limit(creator, now, None).await?;
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
                    // such a burst the new call itself may be one of the oldest surplus
                    // ones, ended here or by a concurrent creation: then the answer is its
                    // stored state, not the `active` it was created with.
                    if self
                        .enforce_active_limit(creator, now, Some(call.id))
                        .await?
                    {
                        return Ok(call);
                    }
                    return self
                        .find_call(&call.code)
                        .await?
                        .ok_or(DomainError::CallNotFound);
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
    /// newest calls survive whatever the interleaving of concurrent creations. Returns
    /// whether the created call is still active afterwards (it may have been ended here, or
    /// already by a concurrent creation; always `true` without one). Active calls already
    /// past their expiry or the duration cap are finished as such and do not count.
    async fn enforce_active_limit(
        &self,
        creator: UserId,
        now: DateTime<Utc>,
        created: Option<CallId>,
    ) -> Result<bool, DomainError> {
        let mut live = Vec::new();
        for call in self.repo.list_active_calls_by_creator(creator).await? {
            match self.policy.overdue(&call, now) {
                Some((status, reason)) => {
                    self.finish(&call, status, reason, now).await?;
                }
                None => live.push(call),
            }
        }
        let max = self.policy.max_active_calls_per_user.max(1);
        let count = live.len() + usize::from(created.is_none());
        live.sort_by_key(|c| (c.created_at, c.id));
        let surplus = count.saturating_sub(max);
        for call in live.iter().take(surplus) {
            self.finish(call, CallStatus::Ended, EndReason::ActiveLimit, now)
                .await?;
        }
        Ok(created.is_none_or(|id| live.iter().skip(surplus).any(|c| c.id == id)))
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
        self.forget(&call.code);
        if updated.is_some() {
            self.events.call_ended(&call.code, reason);
            // Nobody is in an ended call: stays nobody closed (a friend call nobody
            // joined, a leave not yet written) end with it.
            self.repo.close_open_stays(call.id, now).await?;
        }
        Ok(updated)
    }

    /// The call with this code.
    async fn find_call(&self, code: &CallCode) -> Result<Option<Call>, RepoError> {
        self.repo.find_call_by_code(code).await
    }

    /// Loads a call and brings its stored status up to date: an active call past its
    /// expiry is marked `expired`, one past the duration cap `ended` (and its room told).
    async fn load_fresh(&self, code: &CallCode) -> Result<Call, DomainError> {
        let call = self
            .find_call(code)
            .await?
            .ok_or(DomainError::CallNotFound)?;
        let now = self.clock.now();
        let overdue = (call.status == CallStatus::Active)
            .then(|| self.policy.overdue(&call, now))
            .flatten();
        if let Some((status, reason)) = overdue {
            if let Some(finished) = self.finish(&call, status, reason, now).await? {
                return Ok(finished);
            }
            // Finished concurrently: answer with what is stored now.
            return self.find_call(code).await?.ok_or(DomainError::CallNotFound);
        }
        Ok(call)
    }

    /// A call that can be joined now (`GET /api/calls/{id}`, `join_by_code`, the WebSocket
    /// handshake, the bot), or why not: `CallNotFound`, `CallExpired` (marking it expired if
    /// needed) or `CallNotAvailable` (ended).
    pub async fn joinable_call(&self, code: &CallCode) -> Result<Call, DomainError> {
        let Some(cache) = &self.cache else {
            self.reads.storage.fetch_add(1, Ordering::Relaxed);
            return Self::joinable(self.load_fresh(code).await?);
        };
        if let Some(call) = self.kept(cache, code) {
            return Ok(call);
        }
        // Everyone who opens a link at once misses together: one of them reads, the others
        // find the copy it kept.
        let _loading = cache.loading(code).await;
        if let Some(call) = self.kept(cache, code) {
            return Ok(call);
        }
        // Read before the call: a link to the other instances that came back meanwhile
        // makes the copy unusable.
        let epoch = self.events.ends_epoch();
        self.reads.storage.fetch_add(1, Ordering::Relaxed);
        let call = self.load_fresh(code).await?;
        // Checked after the read too: an end between the read and here is not kept.
        if self.usable(&call, self.clock.now()) {
            cache.put(call.code.clone(), (call.clone(), epoch), self.clock.now());
        }
        Self::joinable(call)
    }

    /// The kept copy of the call, if it may be used now.
    fn kept(&self, cache: &TtlCache<CallCode, (Call, u64)>, code: &CallCode) -> Option<Call> {
        let now = self.clock.now();
        cache
            .fresh(code, now)
            .filter(|(call, epoch)| *epoch == self.events.ends_epoch() && self.usable(call, now))
            .map(|(call, _)| {
                self.reads.kept.fetch_add(1, Ordering::Relaxed);
                call
            })
    }

    /// Whether a copy of `call` may stand for storage at `now`: active, not overdue, and
    /// not ended as far as the call events know.
    fn usable(&self, call: &Call, now: DateTime<Utc>) -> bool {
        call.status == CallStatus::Active
            && self.policy.overdue(call, now).is_none()
            && !self.events.has_ended(&call.code)
    }

    /// `call`, read fresh, if it can be joined; why not otherwise.
    fn joinable(call: Call) -> Result<Call, DomainError> {
        match call.status {
            CallStatus::Active => Ok(call),
            CallStatus::Expired => Err(DomainError::CallExpired),
            CallStatus::Ended => Err(DomainError::CallNotAvailable),
        }
    }

    /// Whether `call`, as read, is due to finish now: active but past its expiry or the
    /// duration cap. Reads the clock only; [`CallService::joinable_call`] then stores it.
    pub fn is_overdue(&self, call: &Call) -> bool {
        call.status == CallStatus::Active && self.policy.overdue(call, self.clock.now()).is_some()
    }

    /// Ends a call on behalf of `user`, who must be its organizer. A call that had
    /// expired is returned as `expired`; one no longer active is refused.
    pub async fn end_call(&self, user: UserId, code: &CallCode) -> Result<Call, DomainError> {
        let call = self
            .find_call(code)
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
        let now = self.clock.now();
        let expired = self.repo.expire_due_calls(now).await?;
        for call in &expired {
            self.forget(&call.code);
            self.events.call_ended(&call.code, EndReason::Expired);
        }
        for call in &expired {
            self.repo
                .close_open_stays(call.id, call.ended_at.unwrap_or(now))
                .await?;
        }
        Ok(expired)
    }

    /// Ends every active call created [`CallPolicy::max_call_duration_hours`] ago or
    /// earlier (one statement, so with several instances each call is ended by exactly one)
    /// and tells their rooms (`call_ended` with the maximum-duration reason). Returns the
    /// calls it ended.
    pub async fn end_overlong(&self) -> Result<Vec<Call>, DomainError> {
        let now = self.clock.now();
        // A cap reaching past the calendar's start ends nothing.
        let Some(created_by) = now.checked_sub_signed(self.policy.max_call_duration()) else {
            return Ok(Vec::new());
        };
        let ended = self.repo.end_calls_created_by(created_by, now).await?;
        let reason = EndReason::MaxDuration(self.policy.max_call_duration_hours);
        for call in &ended {
            self.forget(&call.code);
            self.events.call_ended(&call.code, reason);
        }
        for call in &ended {
            self.repo
                .close_open_stays(call.id, call.ended_at.unwrap_or(now))
                .await?;
        }
        Ok(ended)
    }

    /// Closes the open stays of every call whose room no live instance holds (`live`
    /// holds the call codes of the rooms that are live anywhere): after a crash nobody
    /// recorded those leaves. Each is closed at the best known time: when the call ended,
    /// else now or its expiry, whichever came first. Returns how many stays were closed.
    pub async fn close_abandoned_stays(&self, live: &HashSet<String>) -> Result<u64, DomainError> {
        let now = self.clock.now();
        let mut closed = 0;
        for call in self.repo.calls_with_open_stays().await? {
            if live.contains(call.code.as_str()) {
                continue;
            }
            let at = call.ended_at.unwrap_or_else(|| now.min(call.expires_at));
            closed += self.repo.close_open_stays(call.id, at).await?;
        }
        Ok(closed)
    }

    /// Records that `user` joined the call's room, and links them with everyone else in it.
    /// `user` joined `call`'s room now, where `others` already were: the change to record
    /// (see [`CallService::record_presence`]). A user back within
    /// [`CallPolicy::rejoin_window`] of leaving (a reconnect), or still recorded in the
    /// call (a friend call records both users up front), continues that stay.
    pub fn joined(&self, call: &Call, user: UserId, others: Vec<UserId>) -> PresenceChange {
        let at = self.clock.now();
        PresenceChange::Joined {
            call: call.id,
            user,
            others,
            at,
            since: at - self.policy.rejoin_window,
        }
    }

    /// `user` left `call`'s room (or was removed from it) now: the change to record.
    pub fn left(&self, call: &Call, user: UserId) -> PresenceChange {
        PresenceChange::Left {
            call: call.id,
            user,
            at: self.clock.now(),
        }
    }

    /// Records joins and leaves (participant rows and friend links) in their order, in one
    /// transaction: all of them or, on an error, none.
    pub async fn record_presence(&self, changes: &[PresenceChange]) -> Result<(), DomainError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.repo.record_presence(changes).await?;
        Ok(())
    }
}

fn normalize_title(title: Option<String>) -> Result<Option<String>, DomainError> {
    match title {
        Some(t) if t.chars().count() > MAX_TITLE_CHARS => Err(DomainError::Invalid(format!(
            "title must be at most {MAX_TITLE_CHARS} characters"
        ))),
        Some(t) if t.chars().any(char::is_control) => Err(DomainError::Invalid(
            "title must not contain control characters".to_owned(),
        )),
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
        if query
            .search
            .as_deref()
            .is_some_and(|s| s.chars().any(char::is_control))
        {
            return Err(DomainError::Invalid(
                "query must not contain control characters".to_owned(),
            ));
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

    /// The call with `code`, if `user` took part in it: its organizer, or anyone recorded
    /// as a participant (who joined its room, or was rung for it as a friend). Others get
    /// [`DomainError::NotParticipant`].
    async fn call_of_participant(
        &self,
        user: UserId,
        code: &CallCode,
    ) -> Result<Call, DomainError> {
        let call = self
            .repo
            .find_call_by_code(code)
            .await?
            .ok_or(DomainError::CallNotFound)?;
        if call.creator_id != user && !self.repo.has_participated(call.id, user).await? {
            return Err(DomainError::NotParticipant);
        }
        Ok(call)
    }

    /// Stores `user`'s report for the call with `code`. Only its participants may report,
    /// once each: a second report of the same user replaces the first (the latest one
    /// counts), so one person is one row of the aggregate.
    pub async fn record(
        &self,
        user: UserId,
        code: &CallCode,
        figures: &CallStatsInput,
    ) -> Result<CallStats, DomainError> {
        figures.validate().map_err(DomainError::Invalid)?;
        let call = self.call_of_participant(user, code).await?;
        Ok(self
            .repo
            .upsert_stats(&call, user, figures, self.clock.now())
            .await?)
    }

    /// The aggregate of every report of the call with `code`, for one of its participants.
    pub async fn summary(
        &self,
        user: UserId,
        code: &CallCode,
    ) -> Result<(Call, CallStatsSummary), DomainError> {
        let call = self.call_of_participant(user, code).await?;
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
