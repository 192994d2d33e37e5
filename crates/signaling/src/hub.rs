//! The room hub: who is in which call, and fan-out of signaling frames to bounded queues.
//!
//! # State and locking
//!
//! Two sharded maps, each shard a `std::sync::Mutex` whose guard is never held across an
//! `.await` (nothing in this module awaits while locked; the only async function is
//! [`Outbox::recv`], which holds no hub lock):
//!
//! - the **roster** (`rooms`): per room its start time and members (one connection per user),
//!   used for joins, leaves, capacity, snapshots and the "offline" check;
//! - the **endpoints**: per room the queues of this instance's connections, used only to
//!   deliver [`RoomEvent`]s that come back from the [`Broker`].
//!
//! - the **tombstones**: rooms ended lately (by [`Hub::end_room`] here or on another
//!   instance), each with its end reason, kept for [`TOMBSTONE_TTL`]. A join into one is
//!   refused ([`JoinError::Ended`]), so a handshake that read its call as active just before
//!   the call ended cannot open a fresh room of an ended call: the end's delivery and the
//!   join's endpoint insertion are ordered by the endpoint shard's lock, and whichever comes
//!   second sees the other.
//!
//! Lock order is roster shard → endpoint shard → tombstone shard → a connection's own close
//! slot, never the reverse, so a broker may deliver synchronously from inside `publish`.
//!
//! # Back-pressure
//!
//! Each connection has a queue bounded twice: in frames ([`HubConfig::outbound_capacity`])
//! and in bytes ([`HubConfig::outbound_bytes`], the sum of the queued frames' sizes). Every
//! delivery is a `try_send`; when the queue is full by either measure the frame is dropped,
//! `messages_dropped` increments, and the connection is cut off: it receives no further
//! frames and its [`Outbox`] yields `Close { code: 1013, .. }` ahead of anything still
//! queued, so a peer that does not read costs at most its byte budget (plus one frame), and
//! the others are not held up.
//!
//! # Connections per user
//!
//! One user holds at most [`HubConfig::max_connections_per_user`] connections across all
//! rooms of this hub; one more join is refused with [`JoinError::TooManyConnections`]. A
//! connection replacing the same user's older one in the same room does not count twice.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::value::RawValue;
use telcall_domain::{Clock, SystemClock, UserId};
use tokio::sync::Notify;

use crate::broker::{Broker, LocalBroker, RoomEvent, RoomEventSink};
use crate::close;
use crate::error::{JoinError, ProtocolError};
use crate::protocol::{
    DEFAULT_MAX_MESSAGE_SIZE, Frame, ServerMessage, SignalingUser, parse_client_message,
    relay_frame, user_raw,
};

/// Default room capacity (`MAX_PARTICIPANTS_PER_CALL`).
pub const DEFAULT_MAX_PARTICIPANTS: usize = 30;
/// Default size of each connection's outbound queue, in frames.
pub const DEFAULT_OUTBOUND_CAPACITY: usize = 256;
/// Default byte budget of each connection's outbound queue (256 KiB).
pub const DEFAULT_OUTBOUND_BYTES: usize = 256 * 1024;
/// Default number of connections one user may hold at once, across rooms.
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: usize = 8;
/// Smallest outbound queue the hub accepts: a joiner's `call_metadata` and
/// `participants_snapshot` must always fit.
pub const MIN_OUTBOUND_CAPACITY: usize = 4;
/// Number of shards of each map.
const SHARDS: usize = 16;

/// How long an ended room is remembered, refusing joins ([`JoinError::Ended`]). Past it the
/// call's stored status refuses them (the handshake reads it before joining).
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(600);

/// Most ended rooms remembered per shard (the oldest are forgotten first).
const TOMBSTONES_PER_SHARD: usize = 4096;

/// Settings of a [`Hub`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// Most participants one room holds (`MAX_PARTICIPANTS_PER_CALL`); one more join gets
    /// [`JoinError::RoomFull`]. A user replacing their own connection does not count twice.
    pub max_participants: usize,
    /// Largest client frame accepted, in bytes (`MAX_WEBSOCKET_MESSAGE_SIZE`).
    pub max_message_size: usize,
    /// Capacity of each connection's outbound queue, in frames (raised to
    /// [`MIN_OUTBOUND_CAPACITY`] if lower).
    pub outbound_capacity: usize,
    /// Byte budget of each connection's outbound queue: a frame that would take the queued
    /// bytes past it cuts the connection off (1013). A frame is always accepted into an
    /// empty queue, so one message larger than the budget still reaches a reader that keeps
    /// up.
    pub outbound_bytes: usize,
    /// Most connections one user may hold at once across the hub's rooms (at least 1).
    pub max_connections_per_user: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            max_participants: DEFAULT_MAX_PARTICIPANTS,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            outbound_capacity: DEFAULT_OUTBOUND_CAPACITY,
            outbound_bytes: DEFAULT_OUTBOUND_BYTES,
            max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
        }
    }
}

/// Unique id of one connection in a hub (increasing in join order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the transport must do next for a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Send this JSON text frame.
    Text(Frame),
    /// Send a close frame with this code and reason, then stop. Nothing follows it.
    Close {
        /// WebSocket close code (see [`close`]).
        code: u16,
        /// Close reason (at most 123 bytes).
        reason: String,
    },
}

impl Outbound {
    /// What the item counts against its queue's byte budget: a text frame's length.
    fn queued_bytes(&self) -> usize {
        match self {
            Self::Text(frame) => frame.len(),
            Self::Close { .. } => 0,
        }
    }
}

/// A point-in-time copy of the hub's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Rooms with at least one local connection.
    pub rooms: usize,
    /// Local connections in rooms (joined and not yet left).
    pub connections: usize,
    /// Signals (`offer`/`answer`/`ice_candidate`) placed in their addressee's queue.
    pub messages_relayed: u64,
    /// Frames discarded because the recipient's queue was full (each one cut a connection off).
    pub messages_dropped: u64,
}

/// What became of a client frame that was not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayOutcome {
    /// Handed to the broker for delivery to the addressee.
    Relayed,
    /// Addressed to the sender itself: dropped silently.
    SelfAddressed,
    /// The sender is no longer in the room (it left, was replaced, or the room ended):
    /// dropped silently.
    SenderNotInRoom,
}

/// The result of a successful [`Hub::join`].
#[derive(Debug)]
pub struct Joined {
    /// Identifies the connection in later calls ([`Hub::handle_text`], [`Hub::leave`]).
    pub handle: ConnectionHandle,
    /// The connection's outbound queue, for the transport to drain.
    pub outbox: Outbox,
    /// Whether an older connection of the same user was replaced (and closed with 4409).
    pub replaced: bool,
    /// When the room started (the first join while it lived).
    pub room_start_time: DateTime<Utc>,
}

/// One connection as the hub knows it.
struct Conn {
    id: ConnectionId,
    room: Arc<str>,
    user: SignalingUser,
    /// `user` serialised once, for the `from_user` of every signal it sends.
    user_raw: Box<RawValue>,
    /// The outbound queue and the close that pre-empts it.
    queue: Mutex<Queue>,
    /// Most items the queue holds.
    capacity: usize,
    /// Bytes of the text frames in the queue (added on push, removed when the outbox
    /// yields them).
    queued_bytes: AtomicUsize,
    /// The byte budget of the queue.
    byte_budget: usize,
    /// Set once nothing more may be queued (cut off, replaced, closed, ended or left).
    dead: AtomicBool,
    /// Set (under the roster lock) when a newer connection of the same user took its seat.
    replaced: AtomicBool,
    /// Wakes the outbox: an item was queued, or a close forced.
    wake: Notify,
}

/// A connection's outbound queue. It allocates only while it holds something: an idle
/// connection's queue is a few words (the tokio channel it replaced allocated a block of
/// 32 slots up front for each connection).
#[derive(Default)]
struct Queue {
    items: VecDeque<Outbound>,
    /// A close that must pre-empt whatever is still queued (1013, 4409, 1001).
    forced_close: Option<(u16, String)>,
    /// The outbox was dropped: nothing more is queued.
    receiver_gone: bool,
}

/// A drained queue keeps at most this many slots allocated; a larger one is freed.
const KEPT_QUEUE_SLOTS: usize = 4;

enum Push {
    Sent,
    Full,
    Gone,
}

impl Conn {
    fn push(&self, item: Outbound) -> Push {
        if self.dead.load(Ordering::Acquire) {
            return Push::Gone;
        }
        let size = item.queued_bytes();
        if size > 0 && !self.reserve(size) {
            return Push::Full;
        }
        let mut queue = lock(&self.queue);
        let refused = if queue.receiver_gone {
            Push::Gone
        } else if queue.items.len() >= self.capacity {
            Push::Full
        } else {
            queue.items.push_back(item);
            drop(queue);
            self.wake.notify_one();
            return Push::Sent;
        };
        drop(queue);
        self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
        refused
    }

    /// Counts `size` more queued bytes if they fit the budget (or the queue is empty).
    fn reserve(&self, size: usize) -> bool {
        self.queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued.saturating_add(size) <= self.byte_budget)
                    .then(|| queued.saturating_add(size))
            })
            .is_ok()
    }

    /// Stops all further frames and makes the outbox yield this close next. The first close
    /// (forced, queued by `finish`, or a leave) wins.
    fn force_close(&self, code: u16, reason: &str) {
        let mut queue = lock(&self.queue);
        if self.dead.load(Ordering::Acquire) {
            return;
        }
        // The slot is filled before `dead` is set: an outbox that sees `dead` finds the close.
        queue.forced_close = Some((code, reason.to_owned()));
        self.dead.store(true, Ordering::Release);
        drop(queue);
        self.wake.notify_one();
    }

    /// Stops all further frames without a close (the connection left); its outbox ends.
    fn mark_dead(&self) {
        self.dead.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Queues `frame` then a close, in order; a full queue turns into a forced close.
    fn finish(&self, frame: Frame, code: u16, reason: &str) {
        let queued = matches!(self.push(Outbound::Text(frame)), Push::Sent)
            && matches!(
                self.push(Outbound::Close {
                    code,
                    reason: reason.to_owned()
                }),
                Push::Sent
            );
        if queued {
            self.mark_dead();
        } else {
            self.force_close(code, reason);
        }
    }

    fn has_forced_close(&self) -> bool {
        lock(&self.queue).forced_close.is_some()
    }
}

/// A joined connection, for [`Hub::handle_text`], [`Hub::send_error`] and [`Hub::leave`].
///
/// Cheap to clone. A handle whose connection was replaced or has left is *stale*: the hub
/// ignores what it sends and its `leave` changes nothing.
#[derive(Clone)]
pub struct ConnectionHandle {
    conn: Arc<Conn>,
}

impl ConnectionHandle {
    /// The connection's unique id.
    pub fn id(&self) -> ConnectionId {
        self.conn.id
    }

    /// The call code of its room.
    pub fn room(&self) -> &str {
        &self.conn.room
    }

    /// The user on this connection.
    pub fn user(&self) -> &SignalingUser {
        &self.conn.user
    }

    /// Whether a newer connection of the same user replaced this one (and took over its
    /// stay in the room).
    ///
    /// When [`Hub::leave`] returns `false`, this tells the two stale cases apart: `true`, the
    /// user is still in the room on the newer connection; `false`, the connection was
    /// removed by [`Hub::end_room`] or [`Hub::close_all`] and its stay is over. The close
    /// code the transport saw does not tell: a connection cut off (1013) and then replaced
    /// never sees its 4409, and a client may close just as its room ends.
    pub fn is_replaced(&self) -> bool {
        self.conn.replaced.load(Ordering::Acquire)
    }
}

impl fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("id", &self.conn.id)
            .field("room", &self.conn.room)
            .field("user_id", &self.conn.user.id)
            .finish()
    }
}

/// The receiving end of a connection's bounded outbound queue.
///
/// Yields frames in order; a forced close (1013 too slow, 4409 replaced, 1001 shutdown) is
/// yielded ahead of whatever is still queued. After an [`Outbound::Close`], or once the
/// connection has left ([`Hub::leave`]) and its queue is drained, it yields `None`.
pub struct Outbox {
    conn: Arc<Conn>,
    done: bool,
}

impl Outbox {
    /// Waits for the next item. `None` means the hub has nothing more for this connection
    /// (after a `Close`, or after [`Hub::leave`]); the transport then closes normally.
    ///
    /// Cancel-safe: dropping the future loses nothing, so it can sit in a `select!` next to
    /// the socket's read half.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            if let Some(ready) = self.poll_now() {
                return ready;
            }
            self.conn.wake.notified().await;
        }
    }

    /// The next item if one is ready, without waiting (for polling loops and tests).
    pub fn try_recv(&mut self) -> Option<Outbound> {
        self.poll_now().flatten()
    }

    /// `Some(item)` when the outcome is known now, `None` when the caller must wait.
    fn poll_now(&mut self) -> Option<Option<Outbound>> {
        if self.done {
            return Some(None);
        }
        let mut queue = lock(&self.conn.queue);
        if let Some((code, reason)) = queue.forced_close.take() {
            self.done = true;
            return Some(Some(Outbound::Close { code, reason }));
        }
        if let Some(item) = queue.items.pop_front() {
            if queue.items.is_empty() && queue.items.capacity() > KEPT_QUEUE_SLOTS {
                queue.items = VecDeque::new();
            }
            drop(queue);
            return Some(self.observe(Some(item)));
        }
        // Read under the queue's lock: whatever was queued or forced before the connection
        // died is visible here, so an empty queue of a dead connection is the end.
        if !self.conn.dead.load(Ordering::Acquire) {
            return None;
        }
        drop(queue);
        Some(self.observe(None))
    }

    /// Whether a `Close` (or the end of the queue) has been yielded.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn observe(&mut self, item: Option<Outbound>) -> Option<Outbound> {
        match &item {
            Some(Outbound::Text(frame)) => {
                self.conn
                    .queued_bytes
                    .fetch_sub(frame.len(), Ordering::AcqRel);
            }
            None | Some(Outbound::Close { .. }) => self.done = true,
        }
        item
    }

    /// Bytes of the frames waiting in this queue.
    pub fn queued_bytes(&self) -> usize {
        self.conn.queued_bytes.load(Ordering::Acquire)
    }

    /// Resolves once the hub has decided to close this connection ahead of its queue
    /// (1013 too slow, 4409 replaced, 1001 shutdown); the next [`Outbox::recv`] yields that
    /// close. A transport blocked writing an earlier frame to a client that does not read
    /// waits on this too, so it can give up at once. Cancel-safe.
    pub async fn forced_close(&self) {
        loop {
            let notified = self.conn.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.conn.has_forced_close() {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let mut queue = lock(&self.conn.queue);
        queue.receiver_gone = true;
        let items = std::mem::take(&mut queue.items);
        drop(queue);
        // Dropped outside the lock; their bytes no longer count.
        let bytes: usize = items.iter().map(Outbound::queued_bytes).sum();
        self.conn.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("id", &self.conn.id)
            .field("done", &self.done)
            .finish()
    }
}

/// A room in the roster.
struct Room {
    code: Arc<str>,
    started_at: DateTime<Utc>,
    /// The room's `call_metadata` frame, serialised once.
    metadata: Frame,
    members: HashMap<UserId, Arc<Conn>>,
}

impl Room {
    /// Members other than `except`, in join order.
    fn participants_except(&self, except: Option<UserId>) -> Vec<SignalingUser> {
        let mut conns: Vec<&Arc<Conn>> = self
            .members
            .values()
            .filter(|c| Some(c.user.id) != except)
            .collect();
        conns.sort_by_key(|c| c.id);
        conns.into_iter().map(|c| c.user.clone()).collect()
    }

    fn is_current(&self, conn: &Conn) -> bool {
        self.members
            .get(&conn.user.id)
            .is_some_and(|c| c.id == conn.id)
    }
}

type Endpoints = HashMap<UserId, Arc<Conn>>;

/// Rooms ended lately (one shard's worth), with their end reasons, oldest first.
#[derive(Default)]
struct Tombstones {
    ended: HashMap<Arc<str>, (Arc<str>, Instant)>,
    order: VecDeque<(Instant, Arc<str>)>,
}

impl Tombstones {
    /// The end reason of `room`, if it ended less than [`TOMBSTONE_TTL`] ago.
    fn reason(&self, room: &str, now: Instant) -> Option<Arc<str>> {
        self.ended
            .get(room)
            .filter(|(_, at)| now.duration_since(*at) < TOMBSTONE_TTL)
            .map(|(reason, _)| reason.clone())
    }

    /// Remembers that `room` ended with `reason`, forgetting what is too old or too many.
    fn insert(&mut self, room: Arc<str>, reason: &str, now: Instant) {
        self.ended.insert(room.clone(), (Arc::from(reason), now));
        self.order.push_back((now, room));
        while let Some((at, oldest)) = self.order.front() {
            let stale = now.duration_since(*at) >= TOMBSTONE_TTL;
            if !stale && self.ended.len() <= TOMBSTONES_PER_SHARD {
                break;
            }
            // A room ended twice has a newer entry further back: keep the map's one.
            if self.ended.get(oldest).is_some_and(|(_, t)| t == at) {
                self.ended.remove(oldest);
            }
            self.order.pop_front();
        }
    }
}

/// A map split into independently locked shards by key hash.
struct Shards<T> {
    hasher: std::hash::RandomState,
    slots: Box<[Mutex<T>]>,
}

impl<T: Default> Shards<T> {
    fn new() -> Self {
        Self {
            hasher: std::hash::RandomState::new(),
            slots: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn lock<K: std::hash::Hash + ?Sized>(&self, key: &K) -> MutexGuard<'_, T> {
        let index = (self.hasher.hash_one(key) % self.slots.len() as u64) as usize;
        lock(&self.slots[index])
    }

    fn iter(&self) -> impl Iterator<Item = &Mutex<T>> {
        self.slots.iter()
    }
}

/// Locks a mutex; a poisoned lock still holds consistent data here (no code panics while
/// holding one), so it is recovered rather than propagated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Counters {
    rooms: AtomicUsize,
    connections: AtomicUsize,
    relayed: AtomicU64,
    dropped: AtomicU64,
}

struct HubInner {
    config: HubConfig,
    rooms: Shards<HashMap<Arc<str>, Room>>,
    endpoints: Shards<HashMap<Arc<str>, Endpoints>>,
    /// Rooms ended lately; locked only inside an endpoint shard's lock or alone.
    tombstones: Shards<Tombstones>,
    /// Per user, how many connections they hold across rooms (users with none are absent).
    users: Shards<HashMap<UserId, usize>>,
    broker: Arc<dyn Broker>,
    /// Where rooms read their start time.
    clock: Arc<dyn Clock>,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
    counters: Counters,
}

/// The room hub. Cheap to clone (shared state); see the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Hub {
    /// A single-instance hub (its events go through a [`LocalBroker`]).
    pub fn new(config: HubConfig) -> Self {
        Self::with_broker(config, Arc::new(LocalBroker::new()))
    }

    /// A hub whose room events go through `broker`, which is attached to it here.
    pub fn with_broker(config: HubConfig, broker: Arc<dyn Broker>) -> Self {
        Self::with_clock(config, broker, Arc::new(SystemClock))
    }

    /// A hub whose room events go through `broker` and whose rooms read their start time
    /// (`call_metadata`'s `room_start_time`) from `clock`.
    pub fn with_clock(
        mut config: HubConfig,
        broker: Arc<dyn Broker>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        config.outbound_capacity = config.outbound_capacity.max(MIN_OUTBOUND_CAPACITY);
        config.max_connections_per_user = config.max_connections_per_user.max(1);
        let inner = Arc::new(HubInner {
            config,
            rooms: Shards::new(),
            endpoints: Shards::new(),
            tombstones: Shards::new(),
            users: Shards::new(),
            broker,
            clock,
            next_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let weak: Weak<HubInner> = Arc::downgrade(&inner);
        let sink: Weak<dyn RoomEventSink> = weak;
        inner.broker.attach(sink);
        Self { inner }
    }

    /// The settings in force.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Adds `user` to `room` (creating it, with its start time, if it is empty).
    ///
    /// The new connection's queue starts with `call_metadata`, then `participants_snapshot`
    /// when others are present; everyone else gets `user_joined`. An older connection of the
    /// same user is replaced: it is closed with 4409 and nobody gets `user_left` for it.
    ///
    /// # Errors
    /// [`JoinError::RoomFull`] at capacity; [`JoinError::TooManyConnections`] when the user
    /// already holds [`HubConfig::max_connections_per_user`] connections in other rooms;
    /// [`JoinError::ShuttingDown`] after [`Hub::close_all`].
    pub fn join(&self, room: &str, user: SignalingUser) -> Result<Joined, JoinError> {
        let inner = &*self.inner;
        let mut rooms = inner.rooms.lock(room);
        if inner.shutting_down.load(Ordering::Acquire) {
            return Err(JoinError::ShuttingDown);
        }
        if let Some(reason) = inner.tombstones.lock(room).reason(room, Instant::now()) {
            return Err(JoinError::Ended {
                reason: reason.to_string(),
            });
        }
        let (present, previous) = match rooms.get(room) {
            Some(r) => (r.members.len(), r.members.get(&user.id).cloned()),
            None => (0, None),
        };
        if previous.is_none() && present >= inner.config.max_participants {
            return Err(JoinError::RoomFull);
        }
        // Checked and counted last: nothing below refuses the join.
        if previous.is_none() && !inner.take_user_slot(user.id) {
            return Err(JoinError::TooManyConnections);
        }

        let new_room = !rooms.contains_key(room);
        let entry = rooms.entry(Arc::from(room)).or_insert_with_key(|code| {
            // Millisecond precision: exactly what call_metadata carries.
            let started_at = inner.clock.now().trunc_subsecs(3);
            Room {
                code: code.clone(),
                started_at,
                metadata: ServerMessage::CallMetadata {
                    room_start_time: started_at,
                }
                .to_frame(),
                members: HashMap::new(),
            }
        });
        if new_room {
            inner.counters.rooms.fetch_add(1, Ordering::Relaxed);
        }

        let conn = Arc::new(Conn {
            id: ConnectionId(inner.next_id.fetch_add(1, Ordering::Relaxed)),
            room: entry.code.clone(),
            user_raw: user_raw(&user),
            user,
            queue: Mutex::new(Queue::default()),
            capacity: inner.config.outbound_capacity,
            queued_bytes: AtomicUsize::new(0),
            byte_budget: inner.config.outbound_bytes,
            dead: AtomicBool::new(false),
            replaced: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let user_id = conn.user.id;

        // The queue is new and holds at least MIN_OUTBOUND_CAPACITY: both pushes succeed.
        let _ = conn.push(Outbound::Text(entry.metadata.clone()));
        let mut others = entry.participants_except(Some(user_id));
        // Members on other instances (none with a single instance).
        others.extend(
            inner
                .broker
                .remote_members(room)
                .into_iter()
                .filter(|u| u.id != user_id && !entry.members.contains_key(&u.id)),
        );
        if !others.is_empty() {
            let _ = conn.push(Outbound::Text(
                ServerMessage::ParticipantsSnapshot {
                    participants: others,
                }
                .to_frame(),
            ));
        }

        if let Some(old) = &previous {
            old.replaced.store(true, Ordering::Release);
            old.force_close(close::REPLACED, close::REASON_REPLACED);
        } else {
            inner.counters.connections.fetch_add(1, Ordering::Relaxed);
        }
        entry.members.insert(user_id, conn.clone());
        // Replaces the old connection's endpoint, if any. An end delivered from another
        // instance since the check above (it holds no roster lock) has left a tombstone:
        // this connection then ends as the room's other members did.
        let ended = {
            let mut endpoints = inner.endpoints.lock(room);
            let ended = inner.tombstones.lock(room).reason(room, Instant::now());
            if ended.is_none() {
                endpoints
                    .entry(entry.code.clone())
                    .or_default()
                    .insert(user_id, conn.clone());
            }
            ended
        };
        if let Some(reason) = ended {
            let frame = ServerMessage::CallEnded {
                reason: reason.to_string(),
            }
            .to_frame();
            conn.finish(frame, close::NORMAL, close::REASON_CALL_ENDED);
        }

        let code = entry.code.clone();
        let room_start_time = entry.started_at;
        if new_room {
            inner.broker.room_opened(room);
        }
        let frame = ServerMessage::UserJoined {
            user: conn.user.clone(),
        }
        .to_frame();
        inner.broker.publish(RoomEvent::Broadcast {
            room: code,
            except_user: Some(user_id),
            frame,
        });
        drop(rooms);

        tracing::debug!(room, user_id = user_id.get(), conn = %conn.id, replaced = previous.is_some(), "joined");
        Ok(Joined {
            outbox: Outbox {
                conn: conn.clone(),
                done: false,
            },
            handle: ConnectionHandle { conn },
            replaced: previous.is_some(),
            room_start_time,
        })
    }

    /// Handles one client text frame from `handle`: parse, then relay to the addressee with
    /// `from_user` added.
    ///
    /// On error the `error` frame has **already been queued to the sender** (through its own
    /// outbox, so the transport has a single writer); the `Err` is returned for logging and
    /// tests. The connection stays open. A message addressed to the sender, or sent by a
    /// stale handle, is dropped silently (`Ok`).
    ///
    /// Never blocks and never awaits: a lookup and one `try_send` per recipient.
    pub fn handle_text(
        &self,
        handle: &ConnectionHandle,
        text: &str,
    ) -> Result<RelayOutcome, ProtocolError> {
        let result = self.relay(handle, text);
        if let Err(error) = &result {
            self.send_error(handle, error);
        }
        result
    }

    fn relay(&self, handle: &ConnectionHandle, text: &str) -> Result<RelayOutcome, ProtocolError> {
        let inner = &*self.inner;
        let message = parse_client_message(text, inner.config.max_message_size)?;
        let conn = &handle.conn;
        if message.to_user_id == conn.user.id {
            return Ok(RelayOutcome::SelfAddressed);
        }
        let room = {
            let rooms = inner.rooms.lock(&conn.room);
            let Some(room) = rooms.get(&*conn.room).filter(|r| r.is_current(conn)) else {
                return Ok(RelayOutcome::SenderNotInRoom);
            };
            if !room.members.contains_key(&message.to_user_id)
                && !inner
                    .broker
                    .has_remote_member(&conn.room, message.to_user_id)
            {
                return Err(ProtocolError::TargetOffline);
            }
            room.code.clone()
        };
        let frame = relay_frame(message.kind, message.payload, &conn.user_raw);
        inner.broker.publish(RoomEvent::ToUser {
            room,
            user_id: message.to_user_id,
            frame,
        });
        Ok(RelayOutcome::Relayed)
    }

    /// Queues `{"type":"error","detail":…}` for `handle` (e.g. [`ProtocolError::InvalidJson`]
    /// for a binary frame). Returns whether it was queued; a full queue cuts the connection
    /// off (1013) like any other.
    pub fn send_error(&self, handle: &ConnectionHandle, error: &ProtocolError) -> bool {
        match handle.conn.push(Outbound::Text(error.to_frame())) {
            Push::Sent => true,
            Push::Full => {
                self.inner.cut_off(&handle.conn);
                false
            }
            Push::Gone => false,
        }
    }

    /// Removes `handle`'s connection from its room; the others get `user_left`, and an empty
    /// room is removed.
    ///
    /// Returns `true` when the user actually left (persist their leave time), `false` when
    /// the handle was stale: replaced by a newer connection (which stays), already left, or
    /// removed by [`Hub::end_room`] / [`Hub::close_all`]. Idempotent.
    pub fn leave(&self, handle: &ConnectionHandle) -> bool {
        let inner = &*self.inner;
        let conn = &handle.conn;
        let mut rooms = inner.rooms.lock(&conn.room);
        let Some(room) = rooms.get_mut(&*conn.room).filter(|r| r.is_current(conn)) else {
            return false;
        };
        room.members.remove(&conn.user.id);
        conn.mark_dead();
        inner.counters.connections.fetch_sub(1, Ordering::Relaxed);
        inner.release_user_slot(conn.user.id);
        let empty = room.members.is_empty();
        let code = room.code.clone();
        {
            let mut endpoints = inner.endpoints.lock(&conn.room);
            if let Some(room_endpoints) = endpoints.get_mut(&*conn.room) {
                if room_endpoints
                    .get(&conn.user.id)
                    .is_some_and(|c| c.id == conn.id)
                {
                    room_endpoints.remove(&conn.user.id);
                }
                if empty {
                    endpoints.remove(&*conn.room);
                }
            }
        }
        if empty {
            rooms.remove(&*conn.room);
            inner.counters.rooms.fetch_sub(1, Ordering::Relaxed);
            inner.broker.room_closed(&code);
        } else {
            let frame = ServerMessage::UserLeft {
                user: conn.user.clone(),
            }
            .to_frame();
            inner.broker.publish(RoomEvent::Broadcast {
                room: code,
                except_user: Some(conn.user.id),
                frame,
            });
        }
        drop(rooms);
        tracing::debug!(room = %conn.room, user_id = conn.user.id.get(), conn = %conn.id, "left");
        true
    }

    /// Ends a call: every connection in `room` gets `call_ended` with `reason` and then
    /// `Close { code: 1000 }`, and the room is removed (on every instance, via the broker).
    ///
    /// The room is remembered as ended for [`TOMBSTONE_TTL`]: joins into it are refused with
    /// [`JoinError::Ended`].
    ///
    /// Returns the local participants who were removed, in join order (persist their leave
    /// time: their later [`Hub::leave`] returns `false`).
    pub fn end_room(&self, room: &str, reason: impl Into<String>) -> Vec<SignalingUser> {
        let inner = &*self.inner;
        let reason = reason.into();
        let mut rooms = inner.rooms.lock(room);
        let removed = rooms.remove(room);
        let (code, users) = match &removed {
            Some(r) => {
                inner.counters.rooms.fetch_sub(1, Ordering::Relaxed);
                inner
                    .counters
                    .connections
                    .fetch_sub(r.members.len(), Ordering::Relaxed);
                for user_id in r.members.keys() {
                    inner.release_user_slot(*user_id);
                }
                (r.code.clone(), r.participants_except(None))
            }
            None => (Arc::from(room), Vec::new()),
        };
        inner
            .broker
            .publish(RoomEvent::EndRoom { room: code, reason });
        if removed.is_some() {
            inner.broker.room_closed(room);
        }
        drop(rooms);
        // Members without an endpoint (cut off, or whose transport is gone) already have
        // their close; the others get theirs from the EndRoom delivery.
        users
    }

    /// Closes one connection with `code`/`reason`, ahead of its queued frames (e.g. 4401 when
    /// the session that opened it was revoked). Its transport then closes and calls
    /// [`Hub::leave`] as usual, so the others get `user_left`. A stale handle (replaced, or
    /// already gone) is left alone. Returns whether a close was queued.
    pub fn close_connection(&self, handle: &ConnectionHandle, code: u16, reason: &str) -> bool {
        if handle.conn.dead.load(Ordering::Acquire) {
            return false;
        }
        handle.conn.force_close(code, reason);
        true
    }

    /// Closes every connection with `code`/`reason` (pre-empting queued frames), empties the
    /// hub and refuses later joins ([`JoinError::ShuttingDown`]). For shutdown, use
    /// [`close::GOING_AWAY`] (1001). Returns how many connections were told to close.
    pub fn close_all(&self, code: u16, reason: &str) -> usize {
        let inner = &*self.inner;
        inner.shutting_down.store(true, Ordering::Release);
        let mut closed = 0;
        for shard in inner.rooms.iter() {
            let drained: Vec<Room> = lock(shard).drain().map(|(_, room)| room).collect();
            for room in drained {
                inner.counters.rooms.fetch_sub(1, Ordering::Relaxed);
                inner
                    .counters
                    .connections
                    .fetch_sub(room.members.len(), Ordering::Relaxed);
                for conn in room.members.values() {
                    conn.force_close(code, reason);
                    inner.release_user_slot(conn.user.id);
                    closed += 1;
                }
                inner.broker.room_closed(&room.code);
            }
        }
        for shard in inner.endpoints.iter() {
            lock(shard).clear();
        }
        closed
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HubStats {
        let c = &self.inner.counters;
        HubStats {
            rooms: c.rooms.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
            messages_relayed: c.relayed.load(Ordering::Relaxed),
            messages_dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// The call codes of the rooms this hub holds (with at least one connection).
    ///
    /// A multi-instance deployment asks its shared roster instead, which knows every
    /// instance's rooms.
    pub fn room_codes(&self) -> Vec<String> {
        self.inner
            .rooms
            .iter()
            .flat_map(|shard| {
                lock(shard)
                    .keys()
                    .map(|code| code.to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// How many connections `user_id` holds in this hub, across rooms.
    pub fn user_connections(&self, user_id: UserId) -> usize {
        self.inner
            .users
            .lock(&user_id)
            .get(&user_id)
            .copied()
            .unwrap_or(0)
    }

    /// Whether `room` ended less than [`TOMBSTONE_TTL`] ago ([`Hub::end_room`] here, or on
    /// another instance through the broker).
    pub fn has_ended(&self, room: &str) -> bool {
        self.inner
            .tombstones
            .lock(room)
            .reason(room, Instant::now())
            .is_some()
    }

    /// Whether every room's end, here or on another instance, reaches this hub now (see
    /// [`Broker::hears_every_end`]): when it does not, [`Hub::has_ended`] may miss an end.
    pub fn hears_every_end(&self) -> bool {
        self.inner.broker.hears_every_end()
    }

    /// Changes every time this hub starts hearing every end again (see
    /// [`Broker::ends_epoch`]).
    pub fn ends_epoch(&self) -> u64 {
        self.inner.broker.ends_epoch()
    }

    /// Whether [`Hub::close_all`] was called (the instance is shutting down).
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// The local participants of `room`, in join order (empty if there is no such room).
    pub fn room_participants(&self, room: &str) -> Vec<SignalingUser> {
        self.inner
            .rooms
            .lock(room)
            .get(room)
            .map(|r| r.participants_except(None))
            .unwrap_or_default()
    }

    /// The users of `room`'s local participants other than `except`, in no particular
    /// order (empty if there is no such room).
    pub fn room_user_ids_except(&self, room: &str, except: UserId) -> Vec<UserId> {
        self.inner
            .rooms
            .lock(room)
            .get(room)
            .map_or_else(Vec::new, |r| {
                let mut ids = Vec::with_capacity(r.members.len());
                ids.extend(r.members.keys().copied().filter(|id| *id != except));
                ids
            })
    }

    /// When `room` started, if it currently has participants.
    pub fn room_start_time(&self, room: &str) -> Option<DateTime<Utc>> {
        self.inner.rooms.lock(room).get(room).map(|r| r.started_at)
    }
}

impl HubInner {
    /// Counts one more connection for `user_id` if they are under the per-user cap.
    fn take_user_slot(&self, user_id: UserId) -> bool {
        let mut users = self.users.lock(&user_id);
        let held = users.entry(user_id).or_insert(0);
        if *held >= self.config.max_connections_per_user {
            if *held == 0 {
                users.remove(&user_id);
            }
            return false;
        }
        *held += 1;
        true
    }

    /// Counts one connection of `user_id` less.
    fn release_user_slot(&self, user_id: UserId) {
        let mut users = self.users.lock(&user_id);
        if let Some(held) = users.get_mut(&user_id) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                users.remove(&user_id);
            }
        }
    }

    /// Cuts off a connection whose queue was full: the frame is counted as dropped and the
    /// connection is told to close with 1013.
    fn cut_off(&self, conn: &Conn) {
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        conn.force_close(close::TRY_AGAIN_LATER, close::REASON_TOO_SLOW);
        tracing::info!(room = %conn.room, user_id = conn.user.id.get(), conn = %conn.id, "slow consumer cut off");
    }

    /// Pushes `frame` to one endpoint; returns (queued, endpoint should be forgotten).
    fn push_or_cut(&self, conn: &Conn, frame: &Frame) -> (bool, bool) {
        match conn.push(Outbound::Text(frame.clone())) {
            Push::Sent => (true, false),
            Push::Full => {
                self.cut_off(conn);
                (false, true)
            }
            Push::Gone => (false, true),
        }
    }
}

impl RoomEventSink for HubInner {
    fn replaced_elsewhere(&self, room: &str, user_id: UserId) {
        let mut rooms = self.rooms.lock(room);
        let Some(entry) = rooms.get_mut(room) else {
            return;
        };
        let Some(conn) = entry.members.remove(&user_id) else {
            return;
        };
        conn.replaced.store(true, Ordering::Release);
        conn.force_close(close::REPLACED, close::REASON_REPLACED);
        self.counters.connections.fetch_sub(1, Ordering::Relaxed);
        self.release_user_slot(user_id);
        let empty = entry.members.is_empty();
        let code = entry.code.clone();
        {
            let mut endpoints = self.endpoints.lock(room);
            if let Some(room_endpoints) = endpoints.get_mut(room) {
                room_endpoints.remove(&user_id);
                if empty {
                    endpoints.remove(room);
                }
            }
        }
        if empty {
            rooms.remove(room);
            self.counters.rooms.fetch_sub(1, Ordering::Relaxed);
            self.broker.room_closed(&code);
        }
        drop(rooms);
        tracing::debug!(room, user_id = user_id.get(), conn = %conn.id, "replaced by a connection on another instance");
    }

    fn deliver(&self, event: &RoomEvent) {
        match event {
            RoomEvent::ToUser {
                room,
                user_id,
                frame,
            } => {
                let mut endpoints = self.endpoints.lock(room);
                let Some(room_endpoints) = endpoints.get_mut(&**room) else {
                    return;
                };
                let Some(conn) = room_endpoints.get(user_id) else {
                    return;
                };
                let (sent, forget) = self.push_or_cut(conn, frame);
                if sent {
                    self.counters.relayed.fetch_add(1, Ordering::Relaxed);
                }
                if forget {
                    room_endpoints.remove(user_id);
                }
            }
            RoomEvent::Broadcast {
                room,
                except_user,
                frame,
            } => {
                let mut endpoints = self.endpoints.lock(room);
                let Some(room_endpoints) = endpoints.get_mut(&**room) else {
                    return;
                };
                let mut forgotten = Vec::new();
                for (user_id, conn) in room_endpoints.iter() {
                    if Some(*user_id) == *except_user {
                        continue;
                    }
                    if self.push_or_cut(conn, frame).1 {
                        forgotten.push(*user_id);
                    }
                }
                for user_id in forgotten {
                    room_endpoints.remove(&user_id);
                }
            }
            RoomEvent::EndRoom { room, reason } => {
                let removed = {
                    let mut endpoints = self.endpoints.lock(room);
                    self.tombstones
                        .lock(room)
                        .insert(room.clone(), reason, Instant::now());
                    endpoints.remove(&**room)
                };
                let Some(room_endpoints) = removed else {
                    return;
                };
                let frame = ServerMessage::CallEnded {
                    reason: reason.clone(),
                }
                .to_frame();
                for conn in room_endpoints.values() {
                    conn.finish(frame.clone(), close::NORMAL, close::REASON_CALL_ENDED);
                }
            }
        }
    }
}
