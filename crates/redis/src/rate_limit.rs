//! [`RedisRateLimiter`]: per-client request limits counted in Redis, so every instance
//! behind a load balancer draws from the same buckets.
//!
//! Each bucket is a GCRA (generic cell rate algorithm) cell: one key holding the
//! *theoretical arrival time* (TAT) in microseconds of Redis's own clock. A bucket of
//! `burst` requests refilled one per `emission` interval lets a request through when
//! `TAT - now <= emission * (burst - 1)` and then moves the TAT one interval further. This
//! is the algorithm of the in-memory limiter (`governor`), so the same settings give the
//! same answers, with or without Redis.
//!
//! One decision is **one round trip**: a Lua script checks the request's buckets in order
//! (e.g. per minute, then per hour), records the request in each bucket that lets it
//! through and stops at the first refusal, which it reports with the wait until that bucket
//! has room. Keys expire when their bucket is full again, so idle clients cost nothing.

use std::time::Duration;

use crate::{Redis, RedisError};

/// The GCRA script. KEYS: the buckets, in checking order. ARGV: for each key, its emission
/// interval (µs) then its burst. Returns `{0, 0}` when allowed, else `{i, wait_µs}` for the
/// (1-based) bucket `i` that refused.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i, key in ipairs(KEYS) do
  local emission = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key))
  if tat == nil or tat < now then
    tat = now
  end
  local allow_at = tat - emission * (burst - 1)
  if now < allow_at then
    return {i, allow_at - now}
  end
  local new_tat = tat + emission
  redis.call('SET', key, string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
end
return {0, 0}
";

/// One bucket a request is counted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Key suffix (after the prefix and `rl:`), e.g. `signin-minute:203.0.113.9`.
    pub key: String,
    /// The window's length divided by the number of requests allowed in it.
    pub emission: Duration,
    /// Requests a client may make at once after being idle (the number allowed per window).
    pub burst: u32,
}

impl Bucket {
    /// A bucket allowing `count` requests per `window` under `key`.
    pub fn per_window(key: impl Into<String>, window: Duration, count: u32) -> Self {
        let count = count.max(1);
        Self {
            key: key.into(),
            emission: window / count,
            burst: count,
        }
    }
}

/// What a [`RedisRateLimiter::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The request is let through (and counted in every bucket).
    Allowed,
    /// A bucket is empty.
    Limited {
        /// Index (into the checked slice) of the bucket that refused.
        bucket: usize,
        /// How long until that bucket lets a request through.
        retry_after: Duration,
    },
}

/// Rate limits counted in Redis (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    redis: Redis,
    script: redis::Script,
}

impl RedisRateLimiter {
    /// A limiter on `redis`.
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            script: redis::Script::new(GCRA),
        }
    }

    /// Counts one request in `buckets` (checked in order) and says whether it may pass.
    ///
    /// # Errors
    /// A [`RedisError`] when Redis could not decide; the caller chooses whether to fail open.
    pub async fn check(&self, buckets: &[Bucket]) -> Result<Decision, RedisError> {
        if buckets.is_empty() {
            return Ok(Decision::Allowed);
        }
        let mut invocation = self.script.prepare_invoke();
        for bucket in buckets {
            invocation.key(self.redis.key(&format!("rl:{}", bucket.key)));
            let emission = u64::try_from(bucket.emission.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            invocation.arg(emission).arg(bucket.burst.max(1));
        }
        let (index, wait): (i64, i64) = self
            .redis
            .run(|mut con| async move { invocation.invoke_async(&mut con).await })
            .await?;
        if index == 0 {
            return Ok(Decision::Allowed);
        }
        let bucket = usize::try_from(index - 1)
            .ok()
            .filter(|i| *i < buckets.len())
            .ok_or_else(|| RedisError::UnexpectedReply(format!("bucket index {index}")))?;
        Ok(Decision::Limited {
            bucket,
            retry_after: Duration::from_micros(u64::try_from(wait).unwrap_or(0)),
        })
    }
}
