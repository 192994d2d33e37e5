//! What a run talks to (telcall or the reference relay) and the users and calls it needs:
//! real sign-ins through `POST /auth/telegram` with initData signed by the bot token, and
//! calls created through `POST /api/calls/`, each user from its own source address.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::json;

use crate::net::{SourceIps, request};
use crate::progress;

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The telcall server.
    Telcall,
    /// The minimal reference relay (no auth, no database).
    Reference,
}

impl Kind {
    /// The name used in results.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Telcall => "telcall",
            Kind::Reference => "reference",
        }
    }
}

/// A server under load.
#[derive(Debug, Clone)]
pub struct Target {
    /// telcall or the reference relay.
    pub kind: Kind,
    /// Its loopback address.
    pub addr: SocketAddr,
    /// Its process id, when known (for RSS).
    pub pid: Option<u32>,
    /// The bot token that signs initData (telcall only).
    pub bot_token: String,
    /// `X-Telegram-Bot-Api-Secret-Token` for webhook updates.
    pub webhook_secret: Option<String>,
    /// Source addresses for this run.
    pub ips: SourceIps,
    /// Several instances of one deployment (sharing a database and a Redis): the relay
    /// mode connects peer `k` of each room to `instances[k % len]`. Empty: every peer
    /// connects to `addr`.
    pub instances: Vec<SocketAddr>,
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct User {
    /// Internal user id (what `to_user_id` addresses).
    pub id: i64,
    /// Session JWT (for the reference relay: the user id).
    pub token: String,
    /// The source address this user connects from.
    pub ip: Ipv4Addr,
}

/// A call and the users who will join it.
#[derive(Debug, Clone)]
pub struct Room {
    /// The call id.
    pub call_id: String,
    /// Its members; the first one created the call.
    pub users: Vec<User>,
}

/// How many sign-ins and call creations run at once during setup.
const SETUP_CONCURRENCY: usize = 32;

/// Signs in `rooms × per_room` users and creates one call per room (telcall), or makes up
/// the same shape for the reference relay, which has no accounts.
pub async fn populate(t: &Target, rooms: usize, per_room: usize) -> anyhow::Result<Vec<Room>> {
    let n = rooms * per_room;
    if t.kind == Kind::Reference {
        return Ok((0..rooms)
            .map(|r| Room {
                call_id: format!("ref{r:06}"),
                users: (0..per_room)
                    .map(|k| {
                        let i = r * per_room + k;
                        let id = i as i64 + 1;
                        User {
                            id,
                            token: id.to_string(),
                            ip: t.ips.ip(i),
                        }
                    })
                    .collect(),
            })
            .collect());
    }
    let started = Instant::now();
    let tg_base = 7_000_000_000 + i64::from(rand::random::<u32>() % 1_000_000_000);
    let target = Arc::new(t.clone());
    let mut users: Vec<Option<User>> = vec![None; n];
    let mut stream = futures_util::stream::iter(0..n)
        .map(|i| {
            let t = target.clone();
            async move { (i, sign_in(&t, t.ips.ip(i), tg_base + i as i64).await) }
        })
        .buffer_unordered(SETUP_CONCURRENCY);
    let mut done = 0usize;
    while let Some((i, user)) = stream.next().await {
        users[i] = Some(user?);
        done += 1;
        if done.is_multiple_of(1000) {
            progress(&format!("signed in {done}/{n} users"));
        }
    }
    drop(stream);
    let users: Vec<User> = users.into_iter().flatten().collect();
    let organizers: Vec<User> = users.iter().step_by(per_room.max(1)).cloned().collect();
    let mut calls: Vec<Option<String>> = vec![None; rooms];
    let mut stream = futures_util::stream::iter(organizers.into_iter().enumerate())
        .map(|(r, u)| {
            let t = target.clone();
            async move { (r, create_call(&t, &u).await) }
        })
        .buffer_unordered(SETUP_CONCURRENCY);
    while let Some((r, call)) = stream.next().await {
        calls[r] = Some(call?);
    }
    drop(stream);
    progress(&format!(
        "setup: {n} users signed in, {rooms} calls created in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(calls
        .into_iter()
        .flatten()
        .zip(users.chunks(per_room.max(1)))
        .map(|(call_id, members)| Room {
            call_id,
            users: members.to_vec(),
        })
        .collect())
}

/// Signs in Telegram user `telegram_id` from `ip` with freshly signed initData.
pub async fn sign_in(t: &Target, ip: Ipv4Addr, telegram_id: i64) -> anyhow::Result<User> {
    let user = json!({
        "id": telegram_id,
        "first_name": "Load",
        "last_name": format!("User{telegram_id}"),
        "username": format!("load_{telegram_id}"),
        "language_code": "en",
    })
    .to_string();
    let auth_date = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        .to_string();
    let init = telcall_auth::sign_init_data(
        &telcall_auth::SecretString::from(t.bot_token.clone()),
        &[
            ("query_id", "AAHloadgen"),
            ("user", &user),
            ("auth_date", &auth_date),
        ],
    );
    let body = Bytes::from(json!({ "initData": init }).to_string());
    let reply = request(ip, t.addr, "POST", "/auth/telegram", &[], Some(body)).await?;
    if reply.status.as_u16() == 429 {
        bail!(
            "sign-in was rate limited ({}); each user signs in from its own 127.x.y.z address, \
             so the per-IP sign-in limit should hold: is another run using the same server?",
            reply.describe()
        );
    }
    if reply.status.as_u16() != 200 {
        bail!(
            "sign-in failed: {} (is --bot-token the server's BOT_TOKEN?)",
            reply.describe()
        );
    }
    let token = reply
        .cookies
        .iter()
        .find_map(|c| c.strip_prefix("access_token="))
        .and_then(|c| c.split(';').next())
        .filter(|c| !c.is_empty())
        .context("sign-in answered without a session cookie")?
        .to_owned();
    let id = reply.json()?["user"]["id"]
        .as_i64()
        .context("sign-in answered without user.id")?;
    Ok(User { id, token, ip })
}

/// Creates a call as `user` and returns its id.
pub async fn create_call(t: &Target, user: &User) -> anyhow::Result<String> {
    let auth = format!("Bearer {}", user.token);
    let reply = request(
        user.ip,
        t.addr,
        "POST",
        "/api/calls/",
        &[("authorization", &auth)],
        Some(Bytes::from_static(br#"{"title":"load test"}"#)),
    )
    .await?;
    if reply.status.as_u16() != 201 {
        bail!("creating a call failed: {}", reply.describe());
    }
    Ok(reply.json()?["call_id"]
        .as_str()
        .context("call without call_id")?
        .to_owned())
}
