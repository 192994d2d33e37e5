//! telcall-redis against a real Redis: tickets single-use across handles (instances), GCRA
//! buckets, and failures when Redis is unreachable. Each test works under its own key
//! prefix. Needs `TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379`) and `--include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use telcall_auth::TicketStore;
use telcall_redis::{
    Bucket, Decision, Redis, RedisError, RedisOptions, RedisRateLimiter, RedisTicketStore,
};

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").expect("set TEST_REDIS_URL, e.g. redis://127.0.0.1:6379")
}

fn options(prefix: &str) -> RedisOptions {
    RedisOptions {
        key_prefix: prefix.to_owned(),
        ..RedisOptions::default()
    }
}

/// A fresh prefix: tests sharing one Redis never see each other's keys.
fn prefix() -> String {
    format!("telcall-test:{}:", uuid::Uuid::new_v4().simple())
}

/// Two handles on the same Redis and prefix, as two instances would hold.
fn two_instances() -> (Redis, Redis) {
    let prefix = prefix();
    (
        Redis::connect(&redis_url(), options(&prefix)).unwrap(),
        Redis::connect(&redis_url(), options(&prefix)).unwrap(),
    )
}

fn in_a_minute() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 60
}

#[tokio::test]
#[ignore = "needs Redis: set TEST_REDIS_URL and run with --include-ignored"]
async fn a_ticket_is_accepted_once_across_instances() {
    let (a, b) = two_instances();
    a.ping().await.unwrap();
    let on_a = RedisTicketStore::new(a);
    let on_b = RedisTicketStore::new(b);
    let exp = in_a_minute();
    assert!(on_b.consume("jti-1", exp).await.unwrap());
    assert!(!on_a.consume("jti-1", exp).await.unwrap());
    assert!(!on_b.consume("jti-1", exp).await.unwrap());
    // Another ticket is independent.
    assert!(on_a.consume("jti-2", exp).await.unwrap());
}

#[tokio::test]
#[ignore = "needs Redis: set TEST_REDIS_URL and run with --include-ignored"]
async fn an_expired_ticket_is_refused() {
    let (a, _) = two_instances();
    let store = RedisTicketStore::new(a);
    assert!(!store.consume("old", in_a_minute() - 120).await.unwrap());
}

#[tokio::test]
#[ignore = "needs Redis: set TEST_REDIS_URL and run with --include-ignored"]
async fn another_prefix_is_another_store() {
    let exp = in_a_minute();
    let one = RedisTicketStore::new(Redis::connect(&redis_url(), options(&prefix())).unwrap());
    let other = RedisTicketStore::new(Redis::connect(&redis_url(), options(&prefix())).unwrap());
    assert!(one.consume("same", exp).await.unwrap());
    assert!(other.consume("same", exp).await.unwrap());
}

#[tokio::test]
#[ignore = "needs Redis: set TEST_REDIS_URL and run with --include-ignored"]
async fn a_bucket_is_shared_by_instances_and_says_how_long_to_wait() {
    let (a, b) = two_instances();
    let limiters = [RedisRateLimiter::new(a), RedisRateLimiter::new(b)];
    let bucket = [Bucket::per_window(
        "signin:203.0.113.9",
        Duration::from_secs(60),
        3,
    )];
    // Three requests alternating between instances pass, the fourth is refused.
    for i in 0..3 {
        assert_eq!(
            limiters[i % 2].check(&bucket).await.unwrap(),
            Decision::Allowed
        );
    }
    match limiters[1].check(&bucket).await.unwrap() {
        Decision::Limited {
            bucket,
            retry_after,
        } => {
            assert_eq!(bucket, 0);
            // One request is refilled every 20 s.
            assert!(
                retry_after > Duration::from_secs(15) && retry_after <= Duration::from_secs(20),
                "{retry_after:?}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Another client has its own bucket.
    let other = [Bucket::per_window(
        "signin:203.0.113.10",
        Duration::from_secs(60),
        3,
    )];
    assert_eq!(limiters[0].check(&other).await.unwrap(), Decision::Allowed);
}

#[tokio::test]
#[ignore = "needs Redis: set TEST_REDIS_URL and run with --include-ignored"]
async fn buckets_are_checked_in_order_and_refilled() {
    let (a, _) = two_instances();
    let limiter = RedisRateLimiter::new(a);
    // Two per 200 ms, and four per hour.
    let buckets = [
        Bucket::per_window("fast:x", Duration::from_millis(200), 2),
        Bucket::per_window("slow:x", Duration::from_secs(3600), 4),
    ];
    assert_eq!(limiter.check(&buckets).await.unwrap(), Decision::Allowed);
    assert_eq!(limiter.check(&buckets).await.unwrap(), Decision::Allowed);
    // The fast bucket refuses first; the slow one is not charged for that refusal.
    assert!(matches!(
        limiter.check(&buckets).await.unwrap(),
        Decision::Limited { bucket: 0, .. }
    ));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(limiter.check(&buckets).await.unwrap(), Decision::Allowed);
    assert_eq!(limiter.check(&buckets).await.unwrap(), Decision::Allowed);
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Four passed: now the hourly bucket is the one that refuses.
    assert!(matches!(
        limiter.check(&buckets).await.unwrap(),
        Decision::Limited { bucket: 1, .. }
    ));
}

#[tokio::test]
async fn unreachable_redis_is_an_error_not_a_hang() {
    // Nothing listens on port 1.
    let redis = Redis::connect(
        "redis://127.0.0.1:1",
        RedisOptions {
            op_timeout: Duration::from_millis(300),
            ..RedisOptions::default()
        },
    )
    .unwrap();
    assert!(redis.ping().await.is_err());
    // Tickets fail closed: an error, not an acceptance.
    let store = RedisTicketStore::new(redis.clone());
    assert!(store.consume("t", in_a_minute()).await.is_err());
    let limiter = RedisRateLimiter::new(redis.clone());
    assert!(
        limiter
            .check(&[Bucket::per_window("k", Duration::from_secs(60), 1)])
            .await
            .is_err()
    );
    assert!(redis.stats().errors >= 3);
}

#[test]
fn a_url_that_is_not_redis_is_refused_without_echoing_it() {
    let err = Redis::connect("postgres://user:hunter2@db/x", RedisOptions::default()).unwrap_err();
    assert!(matches!(err, RedisError::InvalidUrl(_)));
    assert!(!err.to_string().contains("hunter2"));
}
