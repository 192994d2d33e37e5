//! [`RedisLease`]: a named lease in Redis, held by one instance at a time, for background
//! jobs that must run once across a deployment (such as the bot's `getUpdates` polling).

use std::time::Duration;

use crate::{Redis, RedisError};

/// Takes the lease when it is free, or renews it when `ARGV[1]` holds it. Returns 1 when
/// `ARGV[1]` holds it afterwards. KEYS: the lease. ARGV: holder, TTL (milliseconds).
const ACQUIRE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
";

/// Gives the lease up if `ARGV[1]` holds it. KEYS: the lease. ARGV: holder.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// A lease (`<prefix>lease:<name>`) that one holder at a time may take; it lapses unless
/// renewed within its TTL, so a holder that dies frees it.
#[derive(Debug)]
pub struct RedisLease {
    redis: Redis,
    key: String,
    holder: String,
    ttl: Duration,
    acquire: redis::Script,
    release: redis::Script,
}

impl RedisLease {
    /// The lease `name` on `redis`, taken on behalf of `holder` (unique per instance) for
    /// `ttl` at a time.
    pub fn new(redis: Redis, name: &str, holder: impl Into<String>, ttl: Duration) -> Self {
        Self {
            key: redis.key(&format!("lease:{name}")),
            redis,
            holder: holder.into(),
            ttl,
            acquire: redis::Script::new(ACQUIRE),
            release: redis::Script::new(RELEASE),
        }
    }

    /// Takes the lease if it is free, renews it if this holder has it; returns whether this
    /// holder has it now (for the TTL from now).
    ///
    /// # Errors
    /// When Redis cannot be asked (the lease may lapse meanwhile).
    pub async fn acquire(&self) -> Result<bool, RedisError> {
        let mut invocation = self.acquire.prepare_invoke();
        invocation
            .key(&self.key)
            .arg(&self.holder)
            .arg(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        let held: i64 = self
            .redis
            .run(|mut con| async move { invocation.invoke_async(&mut con).await })
            .await?;
        Ok(held == 1)
    }

    /// Gives the lease up if this holder has it.
    ///
    /// # Errors
    /// When Redis cannot be asked (the lease then lapses after its TTL).
    pub async fn release(&self) -> Result<(), RedisError> {
        let mut invocation = self.release.prepare_invoke();
        invocation.key(&self.key).arg(&self.holder);
        let _: i64 = self
            .redis
            .run(|mut con| async move { invocation.invoke_async(&mut con).await })
            .await?;
        Ok(())
    }

    /// How long a taken lease lasts without renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}
