//! Redis implementations of telcall's multi-instance seams: single-use WebSocket tickets
//! ([`RedisTicketStore`], auth's `TicketStore`), logged-out sessions
//! ([`RedisRevocationStore`], auth's `RevocationStore`), leases for jobs that must run
//! once ([`RedisLease`]), shared per-client rate limits
//! ([`RedisRateLimiter`], GCRA in one Lua script), and room events between the signaling hubs
//! of several instances ([`RedisBroker`], signaling's `Broker` over pub/sub).
//!
//! Several telcall instances behind one load balancer share one Redis through these types;
//! a single instance does without them (the in-memory implementations beside each trait).
//! Only this crate knows Redis.
//!
//! # Connection
//!
//! [`Redis::connect`] parses the URL and returns at once; the connection is opened on first
//! use and re-opened (with exponential backoff) after a failure, so a server can start while
//! Redis is away and recover when it returns. Every operation is bounded by
//! [`RedisOptions::op_timeout`]: a Redis that does not answer is an error, never a hang.
//! All keys and channels start with [`RedisOptions::key_prefix`], so several
//! deployments — or several tests — can share one Redis without seeing each other.
//!
//! ```no_run
//! # async fn demo() -> Result<(), telcall_redis::RedisError> {
//! use telcall_redis::{Redis, RedisOptions, RedisTicketStore};
//! use telcall_auth::TicketStore;
//!
//! let redis = Redis::connect("redis://127.0.0.1:6379", RedisOptions::default())?;
//! let tickets = RedisTicketStore::new(redis.clone());
//! let expires_at = 4_102_444_800; // unix seconds
//! assert!(tickets.consume("ticket-id", expires_at).await.unwrap());
//! assert!(!tickets.consume("ticket-id", expires_at).await.unwrap());
//! # Ok(()) }
//! ```

pub mod broker;
pub mod lease;
pub mod rate_limit;
pub mod revocations;
pub mod roster;
pub mod tickets;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use broker::{BrokerStats, RedisBroker, RoomInterest};
pub use lease::RedisLease;
pub use rate_limit::{Bucket, Decision, RedisRateLimiter};
pub use revocations::RedisRevocationStore;
pub use roster::{RosterError, Seat};
pub use tickets::RedisTicketStore;

/// Default prefix of every key.
pub const DEFAULT_KEY_PREFIX: &str = "telcall:";
/// Default bound on one Redis operation.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on opening one connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// First reconnection delay; it doubles on every failed attempt up to [`MAX_RECONNECT_DELAY`].
pub const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between two reconnection attempts.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// Reconnection attempts per failure before the next operation starts a new round.
const RECONNECT_ATTEMPTS: usize = 4;

/// A failed Redis operation. Never carries the URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// Redis could not be reached or refused the command.
    #[error("Redis unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    /// Redis did not answer within the operation timeout.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered something this crate does not understand.
    #[error("unexpected Redis reply: {0}")]
    UnexpectedReply(String),
}

/// Settings of a [`Redis`] handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Prefix of every key and channel (`REDIS_KEY_PREFIX`, default `telcall:`).
    pub key_prefix: String,
    /// Bound on one operation (a round trip, including a reconnection it waits for).
    pub op_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            op_timeout: DEFAULT_OP_TIMEOUT,
        }
    }
}

/// A point-in-time copy of a [`Redis`] handle's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Operations sent (successful or not).
    pub operations: u64,
    /// Operations that failed or timed out.
    pub errors: u64,
}

struct Inner {
    client: redis::Client,
    manager: ConnectionManager,
    options: RedisOptions,
    operations: AtomicU64,
    errors: AtomicU64,
}

/// A shared, reconnecting handle on one Redis. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("key_prefix", &self.inner.options.key_prefix)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// A handle on the Redis at `url` (`redis://[:password@]host[:port][/db]`, or
    /// `rediss://` is refused: this build has no TLS). Does not connect yet; needs a Tokio
    /// runtime.
    ///
    /// # Errors
    /// [`RedisError::InvalidUrl`] when `url` is not a Redis URL.
    pub fn connect(url: &str, options: RedisOptions) -> Result<Self, RedisError> {
        let client = redis::Client::open(url)
            .map_err(|_| RedisError::InvalidUrl("expected redis://host[:port][/db]".to_owned()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(options.op_timeout))
            .set_min_delay(MIN_RECONNECT_DELAY)
            .set_max_delay(MAX_RECONNECT_DELAY)
            .set_number_of_retries(RECONNECT_ATTEMPTS);
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(RedisError::Unavailable)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                manager,
                options,
                operations: AtomicU64::new(0),
                errors: AtomicU64::new(0),
            }),
        })
    }

    /// The prefix of every key.
    pub fn key_prefix(&self) -> &str {
        &self.inner.options.key_prefix
    }

    /// `prefix` + `suffix`.
    pub fn key(&self, suffix: &str) -> String {
        let mut key = String::with_capacity(self.inner.options.key_prefix.len() + suffix.len());
        key.push_str(&self.inner.options.key_prefix);
        key.push_str(suffix);
        key
    }

    /// The underlying client (for connections of their own, such as a subscriber's).
    pub fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    /// One `PING`: whether Redis answers now.
    ///
    /// # Errors
    /// [`RedisError::Unavailable`] or [`RedisError::Timeout`].
    pub async fn ping(&self) -> Result<(), RedisError> {
        let reply: String = self
            .run(|mut con| async move { redis::cmd("PING").query_async(&mut con).await })
            .await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(RedisError::UnexpectedReply(reply))
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RedisStats {
        RedisStats {
            operations: self.inner.operations.load(Ordering::Relaxed),
            errors: self.inner.errors.load(Ordering::Relaxed),
        }
    }

    /// Runs one operation on the shared connection, bounded by the operation timeout and
    /// counted.
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let inner = &*self.inner;
        inner.operations.fetch_add(1, Ordering::Relaxed);
        let timeout = inner.options.op_timeout;
        let result = match tokio::time::timeout(timeout, op(inner.manager.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(RedisError::Unavailable(e)),
            Err(_) => Err(RedisError::Timeout(timeout)),
        };
        if result.is_err() {
            inner.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}
