//! [`RedisBroker`]: signaling's `Broker` over Redis pub/sub, so room events published by one
//! instance's hub reach the rooms' connections on the others.
//!
//! - **Local first.** [`Broker::publish`] hands the event to the local hub at once, exactly
//!   as the single-instance `LocalBroker` does; a relay between two sockets of the same
//!   instance never waits for, nor costs, a Redis round trip. A relay (`ToUser`) leaves the
//!   instance only when its addressee is known to be elsewhere ([`Broker::has_remote_member`]).
//! - **Never blocking.** Events for other instances go into a bounded queue
//!   ([`PUBLISH_QUEUE`]) drained by a publisher task that sends them in pipelined batches, one
//!   channel per room (`<prefix>room:<code>`), and ends on one channel for all rooms
//!   ([`ENDS_CHANNEL`]). A full queue (Redis slow or away) drops the event, counts it
//!   (`overflow`) and logs; memory never grows with an outage.
//! - **Subscriber.** One pub/sub connection subscribes to the ends channel and to the channels
//!   of the rooms this instance has connections in ([`Broker::room_opened`] /
//!   [`Broker::room_closed`]): every instance hears of every end. When the
//!   connection drops it reconnects with backoff and resubscribes every room; events from this
//!   instance itself are recognised by their instance id and skipped.
//! - **Roster.** [`RedisBroker::join_room`] / [`RedisBroker::leave_room`] keep the room
//!   roster in Redis (see [`crate::roster`]): capacity and one connection per user hold across
//!   instances, and the broker's views of its rooms answer [`Broker::has_remote_member`] and
//!   [`Broker::remote_members`] without a round trip. A heartbeat and a reaper remove the
//!   members of an instance that died; [`RedisBroker::retire`] removes this instance's own at
//!   shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use telcall_signaling::{Broker, RoomEvent, RoomEventSink, ServerMessage, SignalingUser, UserId};
use tokio::sync::{Notify, mpsc};

use crate::roster::{
    self, Applied, HEARTBEAT_INTERVAL, HEARTBEAT_TTL, MEMBER_UPDATE_PREFIX, Member, MemberUpdate,
    PresenceWas, REAP_INTERVAL, ROSTER_KEY_TTL, RosterError, Seat, Views,
};
use crate::{MAX_RECONNECT_DELAY, MIN_RECONNECT_DELAY, Redis, RedisError};

/// Events waiting for the publisher task, at most.
pub const PUBLISH_QUEUE: usize = 4096;
/// The first bytes of a `user_left` frame.
const USER_LEFT_PREFIX: &str = "{\"type\":\"user_left\"";
/// The channel (under the key prefix) every room's end is published on. Every instance
/// listens to it whatever rooms it holds, so each hub hears of every end, remembers the
/// room as ended and refuses joins into it, and the call cache (`CALL_CACHE_SECONDS`) stops
/// using the call, even where nobody was in the room. One subscriber connection reads it
/// with the room channels, so an end still arrives after the room's earlier events.
pub const ENDS_CHANNEL: &str = "rooms-ended";
/// Events sent to Redis in one pipelined batch, at most.
const PUBLISH_BATCH: usize = 256;
/// At most one overflow warning per this interval.
const OVERFLOW_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A point-in-time copy of a [`RedisBroker`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Events waiting for the publisher task.
    pub queue_depth: usize,
    /// Events published to Redis.
    pub published: u64,
    /// Events whose publication failed (Redis unreachable or slow).
    pub publish_errors: u64,
    /// Events dropped because the publish queue was full.
    pub overflow: u64,
    /// Events received from other instances.
    pub received: u64,
    /// Rooms whose channel this instance wants to hear.
    pub rooms: usize,
    /// Room channels the subscriber connection is subscribed to now (fewer than `rooms`
    /// while Redis is away or a subscription is on its way).
    pub subscriptions: usize,
    /// Roster changes made through scripts (joins, leaves, members reaped).
    pub roster_operations: u64,
    /// Roster scripts that failed (Redis unreachable or slow).
    pub roster_errors: u64,
    /// Members of dead instances this instance removed from the roster.
    pub reaped: u64,
}

struct Shared {
    instance: String,
    redis: Redis,
    sink: OnceLock<Weak<dyn RoomEventSink>>,
    /// Rooms with local connections: the channels the subscriber must listen to.
    rooms: Mutex<HashSet<String>>,
    /// Rooms with a join in progress (count per room): listened to as well.
    pending: Mutex<HashMap<String, usize>>,
    /// The channels the subscriber connection is subscribed to now.
    subscribed: Mutex<HashSet<String>>,
    subscribed_changed: Notify,
    /// Who is in the rooms listened to (see [`crate::roster`]).
    views: Mutex<Views>,
    /// The seats of this instance's connections, (room, user) → member value: what to
    /// take again in Redis when it lost them (an outage, or this instance reaped).
    seats: Mutex<HashMap<(String, UserId), String>>,
    next_seat: AtomicU64,
    scripts: Scripts,
    roster_operations: AtomicU64,
    roster_errors: AtomicU64,
    reaped: AtomicU64,
    rooms_changed: Notify,
    closed: AtomicBool,
    published: AtomicU64,
    publish_errors: AtomicU64,
    overflow: AtomicU64,
    received: AtomicU64,
    subscriptions: AtomicUsize,
    /// The subscriber connection listens to the ends channel now.
    hears_ends: AtomicBool,
    /// How many times the subscriber started listening to the ends channel.
    ends_epoch: AtomicU64,
    last_overflow_log: Mutex<Option<Instant>>,
}

impl Shared {
    fn channel(&self, room: &str) -> String {
        self.redis.key(&format!("room:{room}"))
    }

    /// The channel of every room's end, which every instance listens to (see
    /// [`ENDS_CHANNEL`]).
    fn ends_channel(&self) -> String {
        self.redis.key(ENDS_CHANNEL)
    }

    /// Where `event` is published: an end on the ends channel, the rest on its room's.
    fn channel_of(&self, event: &RoomEvent) -> String {
        match event {
            RoomEvent::EndRoom { .. } => self.ends_channel(),
            RoomEvent::ToUser { room, .. } | RoomEvent::Broadcast { room, .. } => {
                self.channel(room)
            }
        }
    }

    fn deliver(&self, event: &RoomEvent) {
        if let Some(sink) = self.sink.get().and_then(Weak::upgrade) {
            sink.deliver(event);
        }
    }

    /// The rooms whose channel the subscriber must listen to.
    fn wanted(&self) -> HashSet<String> {
        let mut wanted = lock(&self.rooms).clone();
        wanted.extend(lock(&self.pending).keys().cloned());
        wanted
    }

    /// Stops viewing `room` once neither the hub nor a join needs it.
    fn forget_if_unwanted(&self, room: &str) {
        let wanted = lock(&self.rooms).contains(room) || lock(&self.pending).contains_key(room);
        if !wanted {
            lock(&self.views).close(room);
        }
    }

    /// Runs the join script for `seat`; `Some(previous member or "")` when seated, `None`
    /// when the room is full.
    async fn take_seat(&self, seat: &Seat, capacity: usize) -> Result<Option<String>, RedisError> {
        let room = seat.room.as_str();
        let mut invocation = self.scripts.join.prepare_invoke();
        invocation
            .key(self.redis.key(&format!("roster:{room}")))
            .key(self.redis.key(&format!("roster-seq:{room}")))
            .key(self.redis.key(&format!("instance:{}:rooms", self.instance)))
            .arg(seat.user_id.get())
            .arg(&seat.member)
            .arg(capacity)
            .arg(self.channel(room))
            .arg(&self.instance)
            .arg(room)
            .arg(ROSTER_KEY_TTL.as_secs());
        let (seated, seq, previous, pairs): (i64, u64, String, Vec<String>) =
            self.roster_script(invocation).await?;
        if seated == 0 {
            return Ok(None);
        }
        lock(&self.views).apply_snapshot(&self.instance, room, seq, &roster::members(&pairs));
        Ok(Some(previous))
    }

    /// Drops `seat` from the seats this instance holds (unless a newer one replaced it).
    fn forget_seat(&self, seat: &Seat) {
        let mut seats = lock(&self.seats);
        let key = (seat.room.clone(), seat.user_id);
        if seats.get(&key) == Some(&seat.member) {
            seats.remove(&key);
        }
    }

    /// Takes every seat this instance holds again (after Redis lost them: an outage, or
    /// this instance was reaped meanwhile). A member the roster had lost is announced to
    /// the other instances' rooms with `user_joined`. Returns how many were taken again.
    async fn reseat_all(&self) -> usize {
        let seats: Vec<Seat> = lock(&self.seats)
            .iter()
            .map(|((room, user_id), member)| Seat {
                room: room.clone(),
                user_id: *user_id,
                member: member.clone(),
            })
            .collect();
        let mut taken = 0;
        for seat in seats {
            // Connected already: no capacity check.
            match self.take_seat(&seat, usize::MAX).await {
                Ok(Some(previous)) => {
                    taken += 1;
                    if previous.is_empty() {
                        self.announce_joined(&seat).await;
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, room = %seat.room, "could not take a seat again in the Redis roster");
                    break;
                }
            }
        }
        taken
    }

    /// Tells the other instances' rooms that `seat`'s user joined (their connection here
    /// was unknown to them).
    async fn announce_joined(&self, seat: &Seat) {
        let Ok(member) = serde_json::from_str::<Member>(&seat.member) else {
            return;
        };
        let event = RoomEvent::Broadcast {
            room: seat.room.as_str().into(),
            except_user: Some(seat.user_id),
            frame: ServerMessage::UserJoined { user: member.user }.to_frame(),
        };
        let Some(payload) = encode(&self.instance, &event) else {
            return;
        };
        let channel = self.channel(&seat.room);
        let _: Result<(), _> = self
            .redis
            .run(|mut con| async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async(&mut con)
                    .await
            })
            .await;
    }

    /// Runs a roster script, counting it.
    async fn roster_script<T: redis::FromRedisValue + Send + 'static>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        self.roster_operations.fetch_add(1, Ordering::Relaxed);
        let result = self
            .redis
            .run(|mut con| async move { invocation.invoke_async(&mut con).await })
            .await;
        if result.is_err() {
            self.roster_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Handles a roster change published by another instance.
    fn member_update(&self, json: &str) {
        let update: MemberUpdate = match serde_json::from_str(json) {
            Ok(update) => update,
            Err(e) => {
                tracing::warn!(error = %e, "malformed roster update ignored");
                return;
            }
        };
        let member = update
            .member
            .as_deref()
            .and_then(|m| serde_json::from_str::<Member>(m).ok());
        let applied = lock(&self.views).apply_member(
            &self.instance,
            &update.room,
            update.user_id,
            update.seq,
            member.as_ref(),
        );
        let Applied::Was(was) = applied else {
            return;
        };
        let Some(sink) = self.sink.get().and_then(Weak::upgrade) else {
            return;
        };
        match &member {
            // The user connected elsewhere: this instance's connection is replaced.
            Some(m) if m.instance != self.instance && was == PresenceWas::Local => {
                sink.replaced_elsewhere(&update.room, update.user_id);
            }
            _ => {}
        }
        // Removed because their instance died: nobody else tells the room.
        if member.is_none()
            && let Some(left) = update
                .left
                .as_deref()
                .and_then(|m| serde_json::from_str::<Member>(m).ok())
        {
            sink.deliver(&user_left(&update.room, left.user));
        }
    }

    /// Reads `room`'s roster again (after the subscriber reconnected: changes published
    /// meanwhile were missed) and tells the local connections who came and went.
    async fn refresh(&self, room: &str) -> Result<(), RedisError> {
        let mut invocation = self.scripts.read.prepare_invoke();
        invocation
            .key(self.redis.key(&format!("roster:{room}")))
            .key(self.redis.key(&format!("roster-seq:{room}")));
        let (seq, pairs): (u64, Vec<String>) = self.roster_script(invocation).await?;
        let members = roster::members(&pairs);
        let (before, after) = {
            let mut views = lock(&self.views);
            let before = views.remote_members(room);
            views.apply_snapshot(&self.instance, room, seq, &members);
            (before, views.remote_members(room))
        };
        let ids = |users: &[SignalingUser]| users.iter().map(|u| u.id).collect::<HashSet<_>>();
        let (had, has) = (ids(&before), ids(&after));
        for user in before.into_iter().filter(|u| !has.contains(&u.id)) {
            self.deliver(&user_left(room, user));
        }
        for user in after.into_iter().filter(|u| !had.contains(&u.id)) {
            let except = Some(user.id);
            self.deliver(&RoomEvent::Broadcast {
                room: room.into(),
                except_user: except,
                frame: ServerMessage::UserJoined { user }.to_frame(),
            });
        }
        Ok(())
    }
}

/// A `user_left` broadcast for `room`.
fn user_left(room: &str, user: SignalingUser) -> RoomEvent {
    let except_user = Some(user.id);
    RoomEvent::Broadcast {
        room: room.into(),
        except_user,
        frame: ServerMessage::UserLeft { user }.to_frame(),
    }
}

/// The roster's Lua scripts, loaded once.
struct Scripts {
    join: redis::Script,
    leave: redis::Script,
    reap: redis::Script,
    read: redis::Script,
    live_rooms: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            join: redis::Script::new(&roster::with_update(roster::JOIN)),
            leave: redis::Script::new(&roster::with_update(roster::LEAVE)),
            reap: redis::Script::new(&roster::with_update(roster::REAP)),
            read: redis::Script::new(roster::READ),
            live_rooms: redis::Script::new(roster::LIVE_ROOMS),
        }
    }
}

/// Keeps a room's channel listened to (and its view kept) while a join is in progress;
/// from [`RedisBroker::interest`].
pub struct RoomInterest {
    shared: Arc<Shared>,
    room: String,
}

impl std::fmt::Debug for RoomInterest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomInterest")
            .field("room", &self.room)
            .finish()
    }
}

impl Drop for RoomInterest {
    fn drop(&mut self) {
        let emptied = {
            let mut pending = lock(&self.shared.pending);
            match pending.get_mut(&self.room) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    pending.remove(&self.room);
                    true
                }
                None => false,
            }
        };
        if emptied {
            self.shared.forget_if_unwanted(&self.room);
            self.shared.rooms_changed.notify_one();
        }
    }
}

/// Room events between the hubs of several instances, over Redis pub/sub (see the
/// [module docs](self)). Build it with [`RedisBroker::start`] inside a Tokio runtime and give
/// it to `Hub::with_broker`.
pub struct RedisBroker {
    shared: Arc<Shared>,
    queue: mpsc::Sender<RoomEvent>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("instance", &self.shared.instance)
            .field("stats", &self.stats())
            .finish()
    }
}

impl RedisBroker {
    /// A broker on `redis` for the instance named `instance` (unique among the instances
    /// sharing the Redis), with its publisher and subscriber tasks started. They stop when
    /// the broker is dropped.
    pub fn start(redis: Redis, instance: impl Into<String>) -> Arc<Self> {
        let (queue, rx) = mpsc::channel(PUBLISH_QUEUE);
        let shared = Arc::new(Shared {
            instance: instance.into(),
            redis,
            sink: OnceLock::new(),
            rooms: Mutex::new(HashSet::new()),
            rooms_changed: Notify::new(),
            closed: AtomicBool::new(false),
            published: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
            received: AtomicU64::new(0),
            subscriptions: AtomicUsize::new(0),
            hears_ends: AtomicBool::new(false),
            ends_epoch: AtomicU64::new(0),
            last_overflow_log: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            subscribed: Mutex::new(HashSet::new()),
            subscribed_changed: Notify::new(),
            views: Mutex::new(Views::default()),
            seats: Mutex::new(HashMap::new()),
            next_seat: AtomicU64::new(1),
            scripts: Scripts::new(),
            roster_operations: AtomicU64::new(0),
            roster_errors: AtomicU64::new(0),
            reaped: AtomicU64::new(0),
        });
        tokio::spawn(publisher(shared.clone(), rx));
        tokio::spawn(subscriber(shared.clone()));
        tokio::spawn(liveness(shared.clone()));
        Arc::new(Self { shared, queue })
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BrokerStats {
        let s = &*self.shared;
        BrokerStats {
            queue_depth: PUBLISH_QUEUE - self.queue.capacity(),
            published: s.published.load(Ordering::Relaxed),
            publish_errors: s.publish_errors.load(Ordering::Relaxed),
            overflow: s.overflow.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            rooms: lock(&s.rooms).len(),
            subscriptions: s.subscriptions.load(Ordering::Relaxed),
            roster_operations: s.roster_operations.load(Ordering::Relaxed),
            roster_errors: s.roster_errors.load(Ordering::Relaxed),
            reaped: s.reaped.load(Ordering::Relaxed),
        }
    }

    /// Starts listening to `room` (and keeping its view) for a join about to happen; hold
    /// the guard until the hub has joined the connection (or refused it).
    pub fn interest(&self, room: &str) -> RoomInterest {
        let s = &self.shared;
        *lock(&s.pending).entry(room.to_owned()).or_insert(0) += 1;
        lock(&s.views).open(room);
        s.rooms_changed.notify_one();
        RoomInterest {
            shared: s.clone(),
            room: room.to_owned(),
        }
    }

    /// Takes a seat in `interest`'s room for `user`, atomically across instances: refused
    /// with [`RosterError::Full`] when `capacity` people are there (a user already there
    /// keeps their place: their older connection, wherever it is, is replaced). Waits (at
    /// most the operation timeout) for the room's channel to be listened to first, so no
    /// change after the roster read is missed.
    pub async fn join_room(
        &self,
        interest: &RoomInterest,
        user: &SignalingUser,
        capacity: usize,
    ) -> Result<Seat, RosterError> {
        let s = &*self.shared;
        let room = interest.room.as_str();
        self.wait_subscribed(room).await;
        let member = Member {
            instance: s.instance.clone(),
            seat: s.next_seat.fetch_add(1, Ordering::Relaxed),
            user: user.clone(),
        };
        let seat = Seat {
            room: room.to_owned(),
            user_id: user.id,
            member: serde_json::to_string(&member).unwrap_or_default(),
        };
        lock(&s.seats).insert((seat.room.clone(), seat.user_id), seat.member.clone());
        match s.take_seat(&seat, capacity).await {
            Ok(Some(_)) => Ok(seat),
            Ok(None) => {
                s.forget_seat(&seat);
                Err(RosterError::Full)
            }
            Err(error) => Err(RosterError::Unavailable { seat, error }),
        }
    }

    /// Gives a seat back (a no-op when a newer connection of the same user took it over).
    /// With `notify`, the other instances tell their rooms that the user left (for a leave
    /// this instance's hub did not announce, such as at shutdown). Failures are logged: the
    /// member then stays until this instance is reaped.
    pub async fn leave_room(&self, seat: &Seat, notify: bool) {
        let s = &*self.shared;
        s.forget_seat(seat);
        let room = seat.room.as_str();
        let mut invocation = s.scripts.leave.prepare_invoke();
        invocation
            .key(s.redis.key(&format!("roster:{room}")))
            .key(s.redis.key(&format!("roster-seq:{room}")))
            .key(s.redis.key(&format!("instance:{}:rooms", s.instance)))
            .arg(seat.user_id.get())
            .arg(&seat.member)
            .arg(s.channel(room))
            .arg(&s.instance)
            .arg(room)
            .arg(if notify { "1" } else { "0" });
        match s.roster_script::<u64>(invocation).await {
            Ok(0) => {}
            Ok(seq) => {
                lock(&s.views).apply_member(&s.instance, room, seat.user_id, seq, None);
            }
            Err(e) => {
                tracing::warn!(error = %e, room, "could not remove a member from the Redis roster");
            }
        }
    }

    /// How many people `room`'s roster holds, across instances.
    ///
    /// # Errors
    /// When Redis cannot be asked.
    pub async fn roster_len(&self, room: &str) -> Result<usize, RedisError> {
        let key = self.shared.redis.key(&format!("roster:{room}"));
        self.shared
            .redis
            .run(|mut con| async move { redis::cmd("HLEN").arg(key).query_async(&mut con).await })
            .await
    }

    /// The rooms where a live instance (this one included, once it heartbeats) has
    /// members.
    ///
    /// # Errors
    /// When Redis cannot be asked.
    pub async fn live_rooms(&self) -> Result<HashSet<String>, RedisError> {
        let s = &*self.shared;
        let mut invocation = s.scripts.live_rooms.prepare_invoke();
        invocation
            .key(s.redis.key("instances"))
            .arg(s.redis.key_prefix());
        let rooms: Vec<String> = s.roster_script(invocation).await?;
        Ok(rooms.into_iter().collect())
    }

    /// Leaves the roster for good (graceful shutdown): the heartbeat is deleted and this
    /// instance's members are removed, each reported `user_left` to the other instances.
    pub async fn retire(&self) {
        let s = &*self.shared;
        s.closed.store(true, Ordering::Release);
        let heartbeat = s.redis.key(&format!("instance:{}", s.instance));
        let _: Result<(), _> =
            s.redis
                .run(|mut con| async move {
                    redis::cmd("DEL").arg(heartbeat).query_async(&mut con).await
                })
                .await;
        match reap(s, &s.instance).await {
            Ok(removed) => tracing::info!(removed, "left the Redis roster"),
            Err(e) => {
                tracing::warn!(error = %e, "could not leave the Redis roster; the others reap it")
            }
        }
    }

    /// Waits (bounded) until the subscriber listens to `room`'s channel.
    async fn wait_subscribed(&self, room: &str) {
        let s = &*self.shared;
        let wait = async {
            loop {
                let changed = s.subscribed_changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if lock(&s.subscribed).contains(&s.channel(room)) {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(crate::DEFAULT_OP_TIMEOUT, wait)
            .await
            .is_err()
        {
            tracing::debug!(room, "room channel not subscribed in time; joining anyway");
        }
    }

    fn enqueue(&self, event: RoomEvent) {
        match self.queue.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                let s = &*self.shared;
                let total = s.overflow.fetch_add(1, Ordering::Relaxed) + 1;
                let mut last = lock(&s.last_overflow_log);
                if last.is_none_or(|t| t.elapsed() >= OVERFLOW_LOG_INTERVAL) {
                    *last = Some(Instant::now());
                    tracing::warn!(
                        room = event.room(),
                        dropped_total = total,
                        capacity = PUBLISH_QUEUE,
                        "Redis publish queue full: room events for other instances are dropped"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.rooms_changed.notify_one();
    }
}

impl Broker for RedisBroker {
    fn attach(&self, sink: Weak<dyn RoomEventSink>) {
        if self.shared.sink.set(sink).is_err() {
            tracing::warn!("RedisBroker attached twice; keeping the first hub");
        }
    }

    fn publish(&self, event: RoomEvent) {
        self.shared.deliver(&event);
        let leaves = match &event {
            RoomEvent::ToUser { room, user_id, .. } => self.has_remote_member(room, *user_id),
            RoomEvent::Broadcast { .. } | RoomEvent::EndRoom { .. } => true,
        };
        if leaves {
            self.enqueue(event);
        }
    }

    fn room_opened(&self, room: &str) {
        if lock(&self.shared.rooms).insert(room.to_owned()) {
            self.shared.rooms_changed.notify_one();
        }
    }

    fn room_closed(&self, room: &str) {
        if lock(&self.shared.rooms).remove(room) {
            self.shared.forget_if_unwanted(room);
            self.shared.rooms_changed.notify_one();
        }
    }

    fn has_remote_member(&self, room: &str, user_id: UserId) -> bool {
        lock(&self.shared.views).is_remote(room, user_id)
    }

    fn hears_every_end(&self) -> bool {
        self.shared.hears_ends.load(Ordering::Acquire)
    }

    fn ends_epoch(&self) -> u64 {
        self.shared.ends_epoch.load(Ordering::Acquire)
    }

    fn remote_members(&self, room: &str) -> Vec<SignalingUser> {
        lock(&self.shared.views).remote_members(room)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The wire form of an event: the sender's instance id, a newline, the event's JSON.
fn encode(instance: &str, event: &RoomEvent) -> Option<String> {
    match serde_json::to_string(event) {
        Ok(json) => Some(format!("{instance}\n{json}")),
        Err(e) => {
            tracing::error!(error = %e, "room event not serialisable; not published");
            None
        }
    }
}

/// Drains the publish queue in pipelined batches until the broker is dropped.
async fn publisher(shared: Arc<Shared>, mut rx: mpsc::Receiver<RoomEvent>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        let mut count = 0u64;
        for event in batch.drain(..) {
            if let Some(payload) = encode(&shared.instance, &event) {
                pipe.cmd("PUBLISH")
                    .arg(shared.channel_of(&event))
                    .arg(payload)
                    .ignore();
                count += 1;
            }
        }
        if count == 0 {
            continue;
        }
        let result: Result<(), _> = shared
            .redis
            .run(|mut con| async move { pipe.query_async(&mut con).await })
            .await;
        match result {
            Ok(()) => {
                shared.published.fetch_add(count, Ordering::Relaxed);
            }
            Err(e) => {
                shared.publish_errors.fetch_add(count, Ordering::Relaxed);
                tracing::warn!(error = %e, events = count, "publishing room events to Redis failed");
            }
        }
    }
}

/// Listens to the channels of this instance's rooms, reconnecting and resubscribing after
/// a failure, until the broker is dropped.
async fn subscriber(shared: Arc<Shared>) {
    let mut delay = MIN_RECONNECT_DELAY;
    let mut reconnect = false;
    while !shared.closed.load(Ordering::Acquire) {
        let result = listen(&shared, &mut delay, reconnect).await;
        reconnect = true;
        shared.hears_ends.store(false, Ordering::Release);
        shared.subscriptions.store(0, Ordering::Relaxed);
        lock(&shared.subscribed).clear();
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Redis room subscription lost; reconnecting");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.rooms_changed.notified() => {}
        }
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

/// One subscriber connection's life: `Ok` when the broker was dropped, `Err` when the
/// connection failed.
async fn listen(
    shared: &Arc<Shared>,
    delay: &mut Duration,
    reconnect: bool,
) -> Result<(), redis::RedisError> {
    let pubsub = tokio::time::timeout(
        crate::CONNECT_TIMEOUT,
        shared.redis.client().get_async_pubsub(),
    )
    .await
    .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    let (mut sink, mut stream) = pubsub.split();
    sink.subscribe(shared.ends_channel()).await?;
    // A new epoch before the ends are vouched for: what was cached before is read again.
    shared.ends_epoch.fetch_add(1, Ordering::AcqRel);
    shared.hears_ends.store(true, Ordering::Release);
    let mut subscribed: HashSet<String> = HashSet::new();
    let mut first = true;
    let mut dirty = true;
    loop {
        if shared.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        if dirty {
            dirty = false;
            subscribed = reconcile(shared, &mut sink, &subscribed).await?;
            shared
                .subscriptions
                .store(subscribed.len(), Ordering::Relaxed);
            *lock(&shared.subscribed) = subscribed.iter().map(|r| shared.channel(r)).collect();
            shared.subscribed_changed.notify_waiters();
            if first {
                // Connected and subscribed: the next failure starts from the shortest delay.
                *delay = MIN_RECONNECT_DELAY;
                first = false;
                if reconnect {
                    // Roster changes published while the connection was down were missed, and
                    // the roster may have lost this instance's seats.
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let rooms = lock(&shared.views).rooms();
                        for room in rooms {
                            if let Err(e) = shared.refresh(&room).await {
                                tracing::warn!(error = %e, room, "could not read a room's roster again");
                            }
                        }
                        let taken = shared.reseat_all().await;
                        if taken > 0 {
                            tracing::info!(taken, "seats taken again in the Redis roster");
                        }
                    });
                }
                tracing::info!(
                    rooms = subscribed.len(),
                    "subscribed to room events in Redis"
                );
            }
        }
        tokio::select! {
            () = shared.rooms_changed.notified() => dirty = true,
            message = stream.next() => {
                let Some(message) = message else {
                    return Err(redis::RedisError::from((redis::ErrorKind::Io, "subscription connection closed")));
                };
                receive(shared, message.get_payload_bytes());
            }
        }
    }
}

/// Subscribes to the rooms wanted and not yet subscribed, unsubscribes from the others;
/// returns the rooms now subscribed.
async fn reconcile(
    shared: &Shared,
    sink: &mut redis::aio::PubSubSink,
    subscribed: &HashSet<String>,
) -> Result<HashSet<String>, redis::RedisError> {
    let wanted: HashSet<String> = shared.wanted();
    let join: Vec<String> = wanted
        .difference(subscribed)
        .map(|room| shared.channel(room))
        .collect();
    let leave: Vec<String> = subscribed
        .difference(&wanted)
        .map(|room| shared.channel(room))
        .collect();
    if !join.is_empty() {
        sink.subscribe(&join).await?;
    }
    if !leave.is_empty() {
        sink.unsubscribe(&leave).await?;
    }
    Ok(wanted)
}

/// Hands an event published by another instance to the local hub.
fn receive(shared: &Shared, payload: &[u8]) {
    let Ok(text) = std::str::from_utf8(payload) else {
        tracing::warn!("room event that is not UTF-8 ignored");
        return;
    };
    let Some((instance, json)) = text.split_once('\n') else {
        tracing::warn!("room event without an instance id ignored");
        return;
    };
    if instance == shared.instance {
        return;
    }
    if json.starts_with(MEMBER_UPDATE_PREFIX) {
        shared.received.fetch_add(1, Ordering::Relaxed);
        shared.member_update(json);
        return;
    }
    match serde_json::from_str::<RoomEvent>(json) {
        Ok(event) => {
            shared.received.fetch_add(1, Ordering::Relaxed);
            // A leave its hub announced: the addressee is offline here from now on, before
            // that instance's roster update arrives (a relay to them would be lost).
            if let RoomEvent::Broadcast {
                room,
                except_user: Some(user_id),
                frame,
            } = &event
                && frame.starts_with(USER_LEFT_PREFIX)
            {
                lock(&shared.views).left_on(room, *user_id, instance);
            }
            shared.deliver(&event);
        }
        Err(e) => tracing::warn!(error = %e, "malformed room event ignored"),
    }
}

/// Removes the members of dead instances (and of `retiring`, when not empty) from every
/// room; returns how many were removed.
async fn reap(shared: &Shared, retiring: &str) -> Result<u64, RedisError> {
    let mut invocation = shared.scripts.reap.prepare_invoke();
    invocation
        .key(shared.redis.key("instances"))
        .arg(shared.redis.key_prefix())
        .arg(retiring);
    let removed: u64 = shared.roster_script(invocation).await?;
    if removed > 0 {
        shared.reaped.fetch_add(removed, Ordering::Relaxed);
    }
    Ok(removed)
}

/// Heartbeats this instance and reaps dead ones, until the broker is dropped or retired.
async fn liveness(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(HEARTBEAT_INTERVAL.min(REAP_INTERVAL));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = true;
    let mut first = true;
    loop {
        ticker.tick().await;
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        let heartbeat = shared.redis.key(&format!("instance:{}", shared.instance));
        let instances = shared.redis.key("instances");
        let instance = shared.instance.clone();
        let ttl_ms = u64::try_from(HEARTBEAT_TTL.as_millis()).unwrap_or(u64::MAX);
        let beat: Result<(i64,), RedisError> = shared
            .redis
            .run(|mut con| async move {
                redis::pipe()
                    .cmd("SET")
                    .arg(heartbeat)
                    .arg(1)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore()
                    .cmd("SADD")
                    .arg(instances)
                    .arg(instance)
                    .query_async(&mut con)
                    .await
            })
            .await;
        let result = match beat {
            Ok((added,)) => {
                // Newly listed after the first beat: the others reaped this instance (its
                // heartbeat lapsed while Redis was away from it). After any outage the
                // roster may lack this instance's seats: they are taken again, once room
                // events are heard again (else the user_joined answers are missed; when the
                // subscriber reconnects, it takes them itself).
                if ((added == 1 && !first) || !healthy)
                    && shared.subscriptions.load(Ordering::Relaxed) > 0
                {
                    let taken = shared.reseat_all().await;
                    if taken > 0 {
                        tracing::info!(taken, "seats taken again in the Redis roster");
                    }
                }
                first = false;
                reap(&shared, "").await.map(|removed| {
                    if removed > 0 {
                        tracing::info!(
                            removed,
                            "removed the members of dead instances from the Redis roster"
                        );
                    }
                })
            }
            Err(e) => Err(e),
        };
        match (result, healthy) {
            (Ok(()), false) => {
                healthy = true;
                tracing::info!("Redis heartbeat restored");
            }
            (Err(e), true) => {
                healthy = false;
                tracing::warn!(error = %e, "Redis heartbeat failed; retrying every second");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_left_prefix_is_how_user_left_frames_begin() {
        let user = SignalingUser {
            id: UserId::new(7),
            username: Some("ada".into()),
            first_name: None,
            last_name: None,
            photo_url: None,
        };
        let left = ServerMessage::UserLeft { user: user.clone() }.to_frame();
        assert!(left.starts_with(USER_LEFT_PREFIX), "{left}");
        let joined = ServerMessage::UserJoined { user }.to_frame();
        assert!(!joined.starts_with(USER_LEFT_PREFIX), "{joined}");
    }
}
