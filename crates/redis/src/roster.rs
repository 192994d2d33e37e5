//! The room roster in Redis: who is in which room on which instance, changed only by Lua
//! scripts, so capacity and one-connection-per-user hold across instances atomically.
//!
//! # Keys (all under the key prefix)
//!
//! - `roster:<code>` — hash, user id → member (`{"instance","seat","user"}` JSON);
//! - `roster-seq:<code>` — the room's change counter: every join and leave increments it;
//! - `instance:<id>` — the instance's heartbeat (a key with a short TTL);
//! - `instance:<id>:rooms` — the rooms where the instance has (or had) members;
//! - `instances` — every instance id that has heartbeated.
//!
//! Every change is published by the script that makes it, on the room's channel, with the
//! room's new counter value, so the instances that hold the room apply changes in the
//! order Redis made them. Each instance keeps a view of each of its rooms: who
//! is there, local or remote, and the counter value each fact is from; a fact older than
//! the one held is ignored. That view answers the relay path's questions (is the addressee
//! connected elsewhere, who goes in a joiner's snapshot) without a round trip.
//!
//! # Liveness
//!
//! Each instance refreshes its heartbeat every [`HEARTBEAT_INTERVAL`] (TTL
//! [`HEARTBEAT_TTL`]). Every instance runs the reaper every [`REAP_INTERVAL`]: one script
//! finds the instances whose heartbeat is gone and removes their members from every room,
//! publishing each removal with the departed user, so the others get `user_left`. An
//! instance id is drawn at random at start-up: a restarted process never owns what its
//! predecessor left behind.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use telcall_signaling::{SignalingUser, UserId};

/// How often an instance refreshes its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a heartbeat lives: an instance silent this long is dead and reaped.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(5);
/// How often every instance looks for dead instances to reap.
pub const REAP_INTERVAL: Duration = Duration::from_secs(1);
/// How long the roster keys of a room live after its last change (longer than any call).
pub const ROSTER_KEY_TTL: Duration = Duration::from_secs(2 * 24 * 3600);

/// One member of a room, as stored in the roster hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The instance holding the connection.
    pub instance: String,
    /// Unique per connection attempt of that instance (a later connection of the same user
    /// has another seat, so a stale leave removes nothing).
    pub seat: u64,
    /// The user as the others see them.
    pub user: SignalingUser,
}

/// A place taken in a room's roster by one connection; give it back with
/// `RedisBroker::leave_room`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub(crate) room: String,
    pub(crate) user_id: UserId,
    /// The stored member value (the leave removes the entry only while it is this one).
    pub(crate) member: String,
}

impl Seat {
    /// The room's call code.
    pub fn room(&self) -> &str {
        &self.room
    }
}

/// Why a roster join did not seat the connection in Redis.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    /// The room holds `MAX_PARTICIPANTS_PER_CALL` people across all instances.
    #[error("the room is full")]
    Full,
    /// Redis failed. The seat is held by this instance and taken in Redis as soon as it
    /// answers again; meanwhile the room works among this instance's connections. Give
    /// it back with `RedisBroker::leave_room` like any other.
    #[error("Redis roster unavailable: {error}")]
    Unavailable {
        /// The seat, held locally.
        seat: Seat,
        /// What failed.
        #[source]
        error: crate::RedisError,
    },
}

/// A roster change as published on the room's channel by the scripts.
#[derive(Debug, Deserialize)]
pub(crate) struct MemberUpdate {
    pub(crate) room: String,
    pub(crate) user_id: UserId,
    pub(crate) seq: u64,
    /// The member now in the roster for this user, if any.
    pub(crate) member: Option<String>,
    /// Set when the user was removed because their instance died: the member removed
    /// (nobody else will tell the room that they left).
    pub(crate) left: Option<String>,
}

/// The first bytes of every published [`MemberUpdate`] (room events start otherwise).
pub(crate) const MEMBER_UPDATE_PREFIX: &str = "{\"event\":\"member\"";

/// What a view knows about one user of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Presence {
    Absent,
    Local,
    /// On another instance (named).
    Remote(SignalingUser, String),
}

#[derive(Debug, Default)]
struct RoomView {
    /// User id → (counter value of the fact, the fact).
    users: HashMap<UserId, (u64, Presence)>,
}

/// What applying a fact changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The fact was older than what the view holds (or the room is not viewed).
    Stale,
    /// Applied; this was the user's previous state.
    Was(PresenceWas),
}

/// The previous state of a user whose fact was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PresenceWas {
    Absent,
    Local,
    Remote,
}

/// The instance's views of its rooms (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Views {
    rooms: HashMap<String, RoomView>,
}

impl Views {
    /// Starts viewing `room` (no-op when viewed already).
    pub(crate) fn open(&mut self, room: &str) {
        self.rooms.entry(room.to_owned()).or_default();
    }

    /// Stops viewing `room`.
    pub(crate) fn close(&mut self, room: &str) {
        self.rooms.remove(room);
    }

    /// Rooms viewed now.
    pub(crate) fn rooms(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }

    /// Records that `user_id` is `member` (or absent) as of counter value `seq`.
    fn apply(&mut self, room: &str, user_id: UserId, seq: u64, now: Presence) -> Applied {
        let Some(view) = self.rooms.get_mut(room) else {
            return Applied::Stale;
        };
        match view.users.get(&user_id) {
            Some((held, _)) if *held >= seq => Applied::Stale,
            _ => {
                let was =
                    view.users
                        .insert(user_id, (seq, now))
                        .map_or(PresenceWas::Absent, |(_, p)| match p {
                            Presence::Absent => PresenceWas::Absent,
                            Presence::Local => PresenceWas::Local,
                            Presence::Remote(..) => PresenceWas::Remote,
                        });
                Applied::Was(was)
            }
        }
    }

    /// Records a member (local when its instance is `me`) or an absence.
    pub(crate) fn apply_member(
        &mut self,
        me: &str,
        room: &str,
        user_id: UserId,
        seq: u64,
        member: Option<&Member>,
    ) -> Applied {
        let now = match member {
            None => Presence::Absent,
            Some(m) if m.instance == me => Presence::Local,
            Some(m) => Presence::Remote(m.user.clone(), m.instance.clone()),
        };
        self.apply(room, user_id, seq, now)
    }

    /// Records a whole roster read at counter value `seq`: its members, and the absence of
    /// everyone else the view knows.
    pub(crate) fn apply_snapshot(&mut self, me: &str, room: &str, seq: u64, members: &[Member]) {
        let present: HashSet<UserId> = members.iter().map(|m| m.user.id).collect();
        for member in members {
            self.apply_member(me, room, member.user.id, seq, Some(member));
        }
        let absent: Vec<UserId> = self
            .rooms
            .get(room)
            .map(|v| {
                v.users
                    .keys()
                    .filter(|id| !present.contains(id))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        for user_id in absent {
            self.apply(room, user_id, seq, Presence::Absent);
        }
    }

    /// `instance` told its room that `user_id` left it (the `user_left` broadcast of its
    /// hub, which reaches the others before that instance's roster update does): from now
    /// on the user is absent here too, unless a newer fact put them on another instance.
    /// The held counter value stays, so the roster update that follows still applies.
    /// Returns whether the view changed.
    pub(crate) fn left_on(&mut self, room: &str, user_id: UserId, instance: &str) -> bool {
        let Some((_, presence)) = self
            .rooms
            .get_mut(room)
            .and_then(|v| v.users.get_mut(&user_id))
        else {
            return false;
        };
        if matches!(presence, Presence::Remote(_, on) if on == instance) {
            *presence = Presence::Absent;
            true
        } else {
            false
        }
    }

    /// Whether `user_id` is in `room` on another instance.
    pub(crate) fn is_remote(&self, room: &str, user_id: UserId) -> bool {
        self.rooms
            .get(room)
            .and_then(|v| v.users.get(&user_id))
            .is_some_and(|(_, p)| matches!(p, Presence::Remote(..)))
    }

    /// The members of `room` on other instances, oldest fact first.
    pub(crate) fn remote_members(&self, room: &str) -> Vec<SignalingUser> {
        let Some(view) = self.rooms.get(room) else {
            return Vec::new();
        };
        let mut remote: Vec<(u64, &SignalingUser)> = view
            .users
            .values()
            .filter_map(|(seq, p)| match p {
                Presence::Remote(user, _) => Some((*seq, user)),
                _ => None,
            })
            .collect();
        remote.sort_by_key(|(seq, user)| (*seq, user.id));
        remote.into_iter().map(|(_, u)| u.clone()).collect()
    }
}

/// Lua: the JSON of a member update (the shape of [`MemberUpdate`]).
const UPDATE_FN: &str = r#"
local function update(room, user_id, seq, member, left)
  local m = 'null'
  if member then m = cjson.encode(member) end
  local l = 'null'
  if left then l = cjson.encode(left) end
  return '{"event":"member","room":' .. cjson.encode(room) .. ',"user_id":' .. user_id
    .. ',"seq":' .. string.format('%d', seq) .. ',"member":' .. m .. ',"left":' .. l .. '}'
end
"#;

/// Seats a member: refused when the room is full (unless the user is there already, whose
/// older connection is replaced), else stored, counted and published. Returns
/// `{1, seq, previous member or '', {user, member, …}}` or `{0, 0, '', {}}` when full.
///
/// KEYS: roster, counter, the instance's rooms. ARGV: user id, member, capacity, channel,
/// instance, room, key TTL (seconds).
pub(crate) const JOIN: &str = r#"
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if not prev and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return {0, 0, '', {}}
end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[6])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[7]) end
redis.call('PUBLISH', ARGV[4], ARGV[5] .. '\n' .. update(ARGV[6], ARGV[1], seq, ARGV[2], nil))
return {1, seq, prev or '', redis.call('HGETALL', KEYS[1])}
"#;

/// Removes a member if the stored one is still `ARGV[2]` (a newer connection of the same
/// user keeps its seat). Returns the new counter value, or 0 when nothing was removed.
/// With `ARGV[6]` = `1` the removal is published with the member, so the other instances
/// tell their rooms (the leaving instance could not: it is shutting down).
///
/// KEYS: roster, counter, the instance's rooms. ARGV: user id, member, channel, instance,
/// room, notify.
pub(crate) const LEAVE: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local seq = redis.call('INCR', KEYS[2])
local left = nil
if ARGV[6] == '1' then left = ARGV[2] end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. '\n' .. update(ARGV[5], ARGV[1], seq, nil, left))
local still = false
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  local ok, m = pcall(cjson.decode, v)
  if ok and m.instance == ARGV[4] then still = true break end
end
if not still then redis.call('SREM', KEYS[3], ARGV[5]) end
return seq
"#;

/// Removes every member of every instance whose heartbeat is gone (or of `ARGV[2]`, an
/// instance retiring), publishing each removal with the member removed. Returns how many
/// members were removed.
///
/// KEYS: the instances set. ARGV: key prefix, retiring instance id or ''.
pub(crate) const REAP: &str = r#"
local prefix = ARGV[1]
local removed = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if id == ARGV[2] or redis.call('EXISTS', prefix .. 'instance:' .. id) == 0 then
    local rooms_key = prefix .. 'instance:' .. id .. ':rooms'
    for _, room in ipairs(redis.call('SMEMBERS', rooms_key)) do
      local roster = prefix .. 'roster:' .. room
      local h = redis.call('HGETALL', roster)
      for i = 1, #h, 2 do
        local ok, m = pcall(cjson.decode, h[i + 1])
        if ok and m.instance == id then
          redis.call('HDEL', roster, h[i])
          local seq = redis.call('INCR', prefix .. 'roster-seq:' .. room)
          redis.call('PUBLISH', prefix .. 'room:' .. room, id .. '\n' .. update(room, h[i], seq, nil, h[i + 1]))
          removed = removed + 1
        end
      end
    end
    redis.call('DEL', rooms_key)
    redis.call('SREM', KEYS[1], id)
  end
end
return removed
"#;

/// Reads a room's roster and counter together: `{seq, {user, member, …}}`.
///
/// KEYS: roster, counter.
pub(crate) const READ: &str = r#"
return {tonumber(redis.call('GET', KEYS[2]) or '0'), redis.call('HGETALL', KEYS[1])}
"#;

/// The rooms where a live instance has members. KEYS: the instances set. ARGV: prefix.
pub(crate) const LIVE_ROOMS: &str = r#"
local rooms = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. 'instance:' .. id) == 1 then
    for _, room in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'instance:' .. id .. ':rooms')) do
      table.insert(rooms, room)
    end
  end
end
return rooms
"#;

/// A script with the update helper in front.
pub(crate) fn with_update(body: &str) -> String {
    format!("{UPDATE_FN}{body}")
}

/// Members from a `HGETALL` reply (`[field, value, …]`); malformed values are skipped.
pub(crate) fn members(pairs: &[String]) -> Vec<Member> {
    pairs
        .chunks_exact(2)
        .filter_map(|pair| serde_json::from_str::<Member>(&pair[1]).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADA: UserId = UserId::new(1);
    const BOB: UserId = UserId::new(2);

    fn member(instance: &str, id: UserId) -> Member {
        Member {
            instance: instance.to_owned(),
            seat: 1,
            user: SignalingUser {
                id,
                username: None,
                first_name: None,
                last_name: None,
                photo_url: None,
            },
        }
    }

    #[test]
    fn a_user_left_broadcast_makes_the_user_absent_at_once() {
        let mut views = Views::default();
        views.open("r");
        views.apply_member("a", "r", BOB, 5, Some(&member("b", BOB)));
        // Another instance announcing a leave changes nothing.
        assert!(!views.left_on("r", BOB, "c"));
        assert!(views.is_remote("r", BOB));
        // Their own instance's announcement does.
        assert!(views.left_on("r", BOB, "b"));
        assert!(!views.is_remote("r", BOB));
        assert!(views.remote_members("r").is_empty());
        // The roster update that follows still applies (and changes nothing visible).
        assert_eq!(
            views.apply_member("a", "r", BOB, 6, None),
            Applied::Was(PresenceWas::Absent)
        );
        // A rejoin on another instance is seen.
        views.apply_member("a", "r", BOB, 7, Some(&member("c", BOB)));
        assert!(views.is_remote("r", BOB));
        assert!(!views.left_on("r", BOB, "b"));
        assert!(views.is_remote("r", BOB));
    }

    #[test]
    fn older_facts_never_override_newer_ones() {
        let mut views = Views::default();
        views.open("r");
        let bob = member("b", BOB);
        assert_eq!(
            views.apply_member("a", "r", BOB, 5, Some(&bob)),
            Applied::Was(PresenceWas::Absent)
        );
        assert!(views.is_remote("r", BOB));
        // A leave from before the join arrives late: ignored.
        assert_eq!(views.apply_member("a", "r", BOB, 4, None), Applied::Stale);
        assert!(views.is_remote("r", BOB));
        // A snapshot read before the join does not remove him either.
        views.apply_snapshot("a", "r", 3, &[]);
        assert!(views.is_remote("r", BOB));
        // A later snapshot without him does.
        views.apply_snapshot("a", "r", 6, &[member("a", ADA)]);
        assert!(!views.is_remote("r", BOB));
        assert!(
            !views.is_remote("r", ADA),
            "members of this instance are local"
        );
        assert_eq!(
            views.apply_member("a", "r", ADA, 7, Some(&member("b", ADA))),
            Applied::Was(PresenceWas::Local)
        );
        assert_eq!(views.remote_members("r").len(), 1);
        // Rooms not viewed ignore everything.
        assert_eq!(
            views.apply_member("a", "other", BOB, 9, Some(&bob)),
            Applied::Stale
        );
    }
}
