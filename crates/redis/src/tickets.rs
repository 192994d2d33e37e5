//! [`RedisTicketStore`]: WebSocket tickets single-use across every instance sharing a Redis.

use async_trait::async_trait;
use telcall_auth::{TicketStore, TicketStoreError};

use crate::Redis;

/// Remembers used ticket ids in Redis (`SET <prefix>ticket:<jti> 1 NX EXAT <expiry>`), so a
/// ticket issued by one instance is accepted once by whichever instance sees it first.
///
/// Fails closed: when Redis cannot record the use, [`TicketStore::consume`] returns an error
/// and the caller refuses the ticket (there is no single-use guarantee without Redis).
#[derive(Debug, Clone)]
pub struct RedisTicketStore {
    redis: Redis,
}

impl RedisTicketStore {
    /// A store on `redis`.
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }
}

#[async_trait]
impl TicketStore for RedisTicketStore {
    async fn consume(&self, jti: &str, expires_at: i64) -> Result<bool, TicketStoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        // An expired ticket is refused, as the in-memory store does (and EXAT in the past
        // would forget the id at once).
        if expires_at < now {
            return Ok(false);
        }
        let key = self.redis.key(&format!("ticket:{jti}"));
        // Kept one second past the expiry so that a ticket accepted at its last second
        // cannot be accepted again by an instance whose clock runs behind.
        let keep_until = expires_at.saturating_add(1);
        let reply: Option<String> = self
            .redis
            .run(|mut con| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("NX")
                    .arg("EXAT")
                    .arg(keep_until)
                    .query_async(&mut con)
                    .await
            })
            .await
            .map_err(|e| TicketStoreError::Backend(Box::new(e)))?;
        Ok(reply.is_some())
    }
}
