//! [`RedisRevocationStore`]: logged-out sessions refused by every instance sharing a Redis.

use async_trait::async_trait;
use telcall_auth::{MemoryRevocationStore, RevocationStore, RevocationStoreError};

use crate::Redis;

/// Remembers revoked session ids in Redis (`SET <prefix>revoked:<jti> 1 EXAT <expiry>`), so a
/// logout on one instance is refused on all of them, and keeps a local copy of the
/// revocations made on this instance.
///
/// While Redis cannot be asked, a check answers from the local copy (revocations made
/// here) and logs an error: a session logged out on another instance may then be accepted
/// here until Redis answers again. Refusing every session instead would take the whole
/// API down with Redis. A revocation that cannot be written to Redis is an error (the
/// logout answers 500 and may be repeated); it holds on this instance regardless.
#[derive(Debug)]
pub struct RedisRevocationStore {
    redis: Redis,
    local: MemoryRevocationStore,
}

impl RedisRevocationStore {
    /// A store on `redis`.
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            local: MemoryRevocationStore::new(),
        }
    }

    fn key(&self, jti: &str) -> String {
        self.redis.key(&format!("revoked:{jti}"))
    }
}

fn backend(e: crate::RedisError) -> RevocationStoreError {
    RevocationStoreError::Backend(Box::new(e))
}

#[async_trait]
impl RevocationStore for RedisRevocationStore {
    async fn revoke(&self, jti: &str, expires_at: i64) -> Result<(), RevocationStoreError> {
        let local = self.local.revoke(jti, expires_at).await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if expires_at >= now {
            let key = self.key(jti);
            // One second past the expiry, for instances whose clock runs behind.
            let keep_until = expires_at.saturating_add(1);
            let _: () = self
                .redis
                .run(|mut con| async move {
                    redis::cmd("SET")
                        .arg(key)
                        .arg(1)
                        .arg("EXAT")
                        .arg(keep_until)
                        .query_async(&mut con)
                        .await
                })
                .await
                .map_err(backend)?;
        }
        local
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, RevocationStoreError> {
        if self.local.is_revoked(jti).await? {
            return Ok(true);
        }
        let key = self.key(jti);
        match self
            .redis
            .run(|mut con| async move {
                redis::cmd("EXISTS")
                    .arg(key)
                    .query_async::<u64>(&mut con)
                    .await
            })
            .await
        {
            Ok(n) => Ok(n > 0),
            Err(error) => {
                tracing::error!(%error, "Redis unavailable: revocations made on other instances are not seen");
                Ok(false)
            }
        }
    }

    async fn revoked_among(&self, jtis: &[String]) -> Result<Vec<String>, RevocationStoreError> {
        if jtis.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for jti in jtis {
            pipe.cmd("EXISTS").arg(self.key(jti));
        }
        let found: Vec<u64> = self
            .redis
            .run(|mut con| async move { pipe.query_async(&mut con).await })
            .await
            .map_err(backend)?;
        Ok(jtis
            .iter()
            .zip(found)
            .filter(|(_, n)| *n > 0)
            .map(|(jti, _)| jti.clone())
            .collect())
    }
}
