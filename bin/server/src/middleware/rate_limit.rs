//! Per-client-IP rate limits (CONTRACT): `POST /auth/telegram` 3/minute and 20/hour, call
//! creation 5/minute and 30/hour, every other request 100/minute — all from
//! [`RateLimitSettings`], off when `RATE_LIMIT_ENABLED=false` (development mode only).
//!
//! GCRA token buckets (the `governor` crate in memory, one script in Redis). A limit of `n`
//! per window is a bucket of `n` requests refilled at one per `window / n`: a client may
//! burst `n` requests, then gets one more every `window / n`.
//!
//! **Composition.** One middleware, [`rate_limits`], classifies each request
//! ([`classify`]) and checks it against the [`Limit`]s of its [`RouteClass`] in the order of
//! [`Limit::ALL`], each with its own bucket per client: a request of a class with two limits
//! is checked against the per-minute bucket first and reaches the per-hour bucket only if
//! that let it through, so hammering the endpoint never drains the hourly allowance faster
//! than the per-minute limit allows. Sign-in and call creation are not also counted against
//! the default limit ("everything else").
//!
//! **Exempt:** `/health`, `/health/ready` and `/metrics` (load balancers and scrapers probe
//! them from one address), Telegram's webhook `POST /api/telegram/webhook` when it carries
//! the right secret (Telegram delivers every update of every user from a few addresses, at
//! whatever rate the users produce; a wrong or missing secret counts against the default
//! limit like any other request),
//! and CORS preflights (answered by the CORS layer, outside the limits). The WebSocket
//! upgrade `GET /ws/calls/{id}` counts against the default limit once; its frames do not
//! pass through HTTP middleware.
//!
//! **Key.** The client IP from [`crate::extract::client_ip`]: the socket peer, or the
//! right-most untrusted `X-Forwarded-For` hop when the peer is a `TRUSTED_PROXIES` member.
//! An untrusted peer cannot pick its bucket by sending the header. IPv6 clients are keyed
//! by their /64 (one subscriber's usual allocation), so rotating addresses inside it does
//! not buy new buckets.
//!
//! **Refusal.** 429 with `Retry-After` (whole seconds, rounded up) and
//! `{"detail": "Too many requests. Retry in N seconds."}`.
//!
//! **Several instances.** With `REDIS_URL` set, the same limits are counted in Redis
//! ([`SharedLimits`], GCRA in one script: one round trip per request), so a client
//! alternating between instances behind a load balancer draws from one bucket, with the
//! same settings, order, exemptions and 429 answer. When Redis cannot decide, requests are let through
//! (fail open, logged at error level) for [`FAIL_OPEN_FOR`]; an outage longer than that is
//! limited per instance by the in-memory buckets until Redis answers again.
//!
//! **Memory.** Buckets of clients that are back to a full allowance are dropped every
//! [`HOUSEKEEPING_INTERVAL`] by a background task that ends with the server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use std::num::NonZeroU32;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{ContentType, RETRY_AFTER};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, HttpResponseBuilder, web};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;

use crate::config::{RateLimits as RateLimitSettings, Settings};
use crate::error::ErrorBody;
use crate::extract::client_ip;

/// How often buckets of idle clients are dropped.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);

/// How long requests are let through unlimited while Redis cannot decide; past it, each
/// instance limits with its own in-memory buckets until Redis answers again.
pub const FAIL_OPEN_FOR: Duration = Duration::from_secs(30);

/// While Redis is failing, how often a request tries it again (the others skip it, so an
/// outage adds no latency to every request).
pub const REDIS_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The length of the prefix that keys an IPv6 client.
pub const IPV6_KEY_PREFIX: u8 = 64;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// Which limits a request falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// `POST /auth/telegram`.
    SignIn,
    /// `POST /api/calls`, `POST /api/calls/`, `POST /api/calls/friend`.
    CallCreation,
    /// Everything else, WebSocket upgrades included.
    Other,
    /// Health checks: never limited.
    Exempt,
}

/// The class of a request with `method` and `path`.
pub fn classify(method: &Method, path: &str) -> RouteClass {
    match path {
        "/health" | "/health/ready" | "/metrics" => RouteClass::Exempt,
        "/auth/telegram" if method == Method::POST => RouteClass::SignIn,
        "/api/calls" | "/api/calls/" | "/api/calls/friend" if method == Method::POST => {
            RouteClass::CallCreation
        }
        _ => RouteClass::Other,
    }
}

/// One configured limit: a request class, a window and how many requests fit in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Sign-in per minute (`RATE_LIMIT_AUTH_PER_MINUTE`, 3).
    SignInPerMinute,
    /// Sign-in per hour (`RATE_LIMIT_AUTH_PER_HOUR`, 20).
    SignInPerHour,
    /// Call creation per minute (`RATE_LIMIT_CALLS_PER_MINUTE`, 5).
    CallsPerMinute,
    /// Call creation per hour (`RATE_LIMIT_CALLS_PER_HOUR`, 30).
    CallsPerHour,
    /// Every other request per minute (`RATE_LIMIT_DEFAULT_PER_MINUTE`, 100).
    DefaultPerMinute,
}

impl Limit {
    /// Every limit, in wrapping order: outermost (checked first) to innermost.
    pub const ALL: [Self; 5] = [
        Self::SignInPerMinute,
        Self::SignInPerHour,
        Self::CallsPerMinute,
        Self::CallsPerHour,
        Self::DefaultPerMinute,
    ];

    /// The requests this limit counts.
    pub fn class(self) -> RouteClass {
        match self {
            Self::SignInPerMinute | Self::SignInPerHour => RouteClass::SignIn,
            Self::CallsPerMinute | Self::CallsPerHour => RouteClass::CallCreation,
            Self::DefaultPerMinute => RouteClass::Other,
        }
    }

    /// The window and the number of requests allowed in it.
    pub fn quota(self, settings: &RateLimitSettings) -> (Duration, u32) {
        match self {
            Self::SignInPerMinute => (MINUTE, settings.auth_per_minute),
            Self::SignInPerHour => (HOUR, settings.auth_per_hour),
            Self::CallsPerMinute => (MINUTE, settings.calls_per_minute),
            Self::CallsPerHour => (HOUR, settings.calls_per_hour),
            Self::DefaultPerMinute => (MINUTE, settings.default_per_minute),
        }
    }

    /// The name of this limit's buckets in Redis.
    pub fn key_name(self) -> &'static str {
        match self {
            Self::SignInPerMinute => "signin-minute",
            Self::SignInPerHour => "signin-hour",
            Self::CallsPerMinute => "calls-minute",
            Self::CallsPerHour => "calls-hour",
            Self::DefaultPerMinute => "default-minute",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::SignInPerMinute => 0,
            Self::SignInPerHour => 1,
            Self::CallsPerMinute => 2,
            Self::CallsPerHour => 3,
            Self::DefaultPerMinute => 4,
        }
    }
}

/// The bucket of a client address: IPv4 as is, IPv6 by its [`IPV6_KEY_PREFIX`] prefix
/// (IPv4-mapped IPv6 addresses count as IPv4).
pub fn bucket_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mask = u128::MAX << (128 - u32::from(IPV6_KEY_PREFIX));
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

/// Whether the request is a Telegram update carrying the webhook secret (checked in
/// constant time, before the body is read): such updates are not rate limited.
fn is_verified_webhook(req: &ServiceRequest, path: &str) -> bool {
    if req.method() != Method::POST || path != crate::routes::telegram::WEBHOOK_PATH {
        return false;
    }
    let presented = req
        .headers()
        .get(telcall_telegram::secret::SECRET_HEADER)
        .map(|v| v.as_bytes());
    req.app_data::<actix_web::web::Data<crate::state::AppState>>()
        .is_some_and(|state| state.webhook_secret.verify(presented))
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The 429 `detail`.
pub fn too_many_requests_detail(retry_after: u64) -> String {
    format!("Too many requests. Retry in {retry_after} seconds.")
}

/// The 429 answer: `Retry-After` (and `x-ratelimit-after`) in whole seconds and CONTRACT's
/// body, the same with and without Redis.
fn limited_response(
    class: RouteClass,
    wait: Duration,
    response: &mut HttpResponseBuilder,
) -> HttpResponse {
    let retry_after = retry_after_secs(wait);
    tracing::info!(class = ?class, retry_after, "rate limit exceeded");
    response
        .insert_header((RETRY_AFTER, retry_after))
        .insert_header(("x-ratelimit-after", retry_after))
        .content_type(ContentType::json())
        .json(ErrorBody {
            detail: too_many_requests_detail(retry_after),
        })
}

/// The in-memory buckets: one keyed GCRA limiter per [`Limit`], in [`Limit::ALL`] order.
pub struct LocalLimits {
    limiters: Vec<DefaultKeyedRateLimiter<IpAddr>>,
}

impl LocalLimits {
    fn new(settings: &RateLimitSettings) -> anyhow::Result<Self> {
        let limiters = Limit::ALL
            .into_iter()
            .map(|limit| {
                let (window, count) = limit.quota(settings);
                let burst = NonZeroU32::new(count).ok_or_else(|| {
                    anyhow::anyhow!("rate limit {limit:?} must be greater than zero")
                })?;
                let quota = Quota::with_period(window / count)
                    .ok_or_else(|| {
                        anyhow::anyhow!("rate limit {limit:?} is too high for its window")
                    })?
                    .allow_burst(burst);
                Ok(DefaultKeyedRateLimiter::keyed(quota))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { limiters })
    }

    /// Counts one request of the client `ip` against `limits` in order; the wait until the
    /// first bucket that refuses it would let it through, if one does.
    fn check(&self, limits: &[Limit], ip: IpAddr) -> Option<Duration> {
        limits.iter().find_map(|limit| {
            self.limiters[limit.index()]
                .check_key(&ip)
                .err()
                .map(|refused| refused.wait_time_from(DefaultClock::default().now()))
        })
    }

    /// Drops the buckets of clients back at a full allowance.
    fn forget_idle_clients(&self) {
        for limiter in &self.limiters {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

impl std::fmt::Debug for LocalLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimits")
            .field(
                "clients",
                &self.limiters.iter().map(|l| l.len()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The buckets of every [`Limit`]. Build once per server (not per worker) and hand the same
/// value to each worker's app as `web::Data`, so all workers count in the same buckets.
#[derive(Clone, Debug)]
pub struct RateLimits {
    enabled: bool,
    trusted_proxies: Arc<[IpNet]>,
    local: Arc<LocalLimits>,
    shared: Option<Arc<SharedLimits>>,
}

impl RateLimits {
    /// Buckets for the limits of `settings` (and the task that drops idle buckets, which
    /// needs a Tokio runtime), counted in `redis` when given. Fails only on a zero limit,
    /// which settings already refuse.
    pub fn new(settings: &Settings, redis: Option<telcall_redis::Redis>) -> anyhow::Result<Self> {
        let limits = &settings.rate_limits;
        let trusted: Arc<[IpNet]> = settings.trusted_proxies.clone().into();
        let local = Arc::new(LocalLimits::new(limits)?);
        let shared = redis.map(|redis| {
            Arc::new(SharedLimits {
                redis: telcall_redis::RedisRateLimiter::new(redis),
                settings: limits.clone(),
                local: local.clone(),
                outage: Mutex::new(None),
                fail_open: AtomicU64::new(0),
            })
        });
        let this = Self {
            enabled: limits.enabled,
            trusted_proxies: trusted,
            local,
            shared,
        };
        if this.enabled {
            this.spawn_housekeeping();
        }
        Ok(this)
    }

    /// Whether the limits apply.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The limits counted in Redis, when they apply (enabled and `REDIS_URL` set).
    pub fn shared(&self) -> Option<&Arc<SharedLimits>> {
        self.shared.as_ref().filter(|_| self.enabled)
    }

    /// Decides one request: `None` lets it through, `Some` is the 429 to answer.
    async fn decide(&self, req: &ServiceRequest) -> Option<HttpResponse> {
        if !self.enabled {
            return None;
        }
        // The path as the router matches it (percent-encoded unreserved characters
        // decoded), not the raw `req.path()`: `/auth/%74elegram` is the sign-in route and
        // must not slip into the looser default bucket.
        let path = req.match_info().as_str();
        let class = classify(req.method(), path);
        let limits: Vec<Limit> = Limit::ALL
            .into_iter()
            .filter(|l| l.class() == class)
            .collect();
        if limits.is_empty() || is_verified_webhook(req, path) {
            return None;
        }
        // Without a peer address (not a TCP connection) everybody shares one bucket: fail
        // closed rather than unlimited.
        let ip = bucket_of(
            client_ip(req, &self.trusted_proxies).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        );
        let wait = match &self.shared {
            Some(shared) => shared.decide(&limits, ip).await,
            None => self.local.check(&limits, ip),
        }?;
        Some(limited_response(
            class,
            wait,
            &mut HttpResponse::TooManyRequests(),
        ))
    }

    fn spawn_housekeeping(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no Tokio runtime: idle rate-limit buckets are never dropped");
            return;
        };
        let local = Arc::downgrade(&self.local);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(local) = Weak::upgrade(&local) else {
                    break;
                };
                local.forget_idle_clients();
            }
        });
    }
}

/// The limits counted in Redis for every instance (see the module docs).
pub struct SharedLimits {
    redis: telcall_redis::RedisRateLimiter,
    settings: RateLimitSettings,
    /// The in-memory buckets used when Redis has been failing for longer than
    /// [`FAIL_OPEN_FOR`].
    local: Arc<LocalLimits>,
    /// When the current Redis outage began, and when Redis was last tried.
    outage: Mutex<Option<Outage>>,
    fail_open: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Outage {
    since: Instant,
    last_try: Instant,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// Requests let through unlimited because Redis could not decide.
    pub fn fail_open_total(&self) -> u64 {
        self.fail_open.load(Ordering::Relaxed)
    }

    /// Counts one request of the client `ip` against `limits`: the wait before it would be
    /// let through, if it is refused.
    async fn decide(&self, limits: &[Limit], ip: IpAddr) -> Option<Duration> {
        if self.should_try_redis() {
            let buckets: Vec<telcall_redis::Bucket> = limits
                .iter()
                .map(|limit| {
                    let (window, count) = limit.quota(&self.settings);
                    telcall_redis::Bucket::per_window(
                        format!("{}:{ip}", limit.key_name()),
                        window,
                        count,
                    )
                })
                .collect();
            match self.redis.check(&buckets).await {
                Ok(decision) => {
                    self.redis_answered();
                    return match decision {
                        telcall_redis::Decision::Allowed => None,
                        telcall_redis::Decision::Limited { retry_after, .. } => Some(retry_after),
                    };
                }
                Err(e) => self.redis_failed(&e),
            }
        }
        self.decide_without_redis(limits, ip)
    }

    /// Whether to ask Redis: always when it is healthy, once per [`REDIS_RETRY_INTERVAL`]
    /// during an outage.
    fn should_try_redis(&self) -> bool {
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        match outage.as_mut() {
            None => true,
            Some(o) if o.last_try.elapsed() >= REDIS_RETRY_INTERVAL => {
                o.last_try = Instant::now();
                true
            }
            Some(_) => false,
        }
    }

    fn redis_answered(&self) {
        let ended = self
            .outage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(o) = ended {
            tracing::warn!(
                outage_secs = o.since.elapsed().as_secs(),
                "Redis answers again: rate limits are shared across instances again"
            );
        }
    }

    fn redis_failed(&self, error: &telcall_redis::RedisError) {
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        if outage.is_none() {
            let now = Instant::now();
            *outage = Some(Outage {
                since: now,
                last_try: now,
            });
            tracing::error!(
                error = %error,
                fail_open_secs = FAIL_OPEN_FOR.as_secs(),
                "RATE LIMITS FAIL OPEN: Redis cannot count requests; letting them through, \
                 then limiting per instance if the outage lasts"
            );
        }
    }

    fn decide_without_redis(&self, limits: &[Limit], ip: IpAddr) -> Option<Duration> {
        let since = self
            .outage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|o| o.since);
        if since.is_none_or(|s| s.elapsed() < FAIL_OPEN_FOR) {
            self.fail_open.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.local.check(limits, ip)
    }
}

/// The rate-limit middleware (see the module docs): lets a request through or answers 429.
/// It finds the buckets as app data (`web::Data<RateLimits>`); without them it lets
/// everything through.
pub async fn rate_limits(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let limits = req.app_data::<web::Data<RateLimits>>().cloned();
    if let Some(limits) = limits
        && let Some(refusal) = limits.decide(&req).await
    {
        return Ok(req.into_response(refusal).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(
            classify(&Method::POST, "/auth/telegram"),
            RouteClass::SignIn
        );
        assert_eq!(classify(&Method::GET, "/auth/telegram"), RouteClass::Other);
        for path in ["/api/calls", "/api/calls/", "/api/calls/friend"] {
            assert_eq!(classify(&Method::POST, path), RouteClass::CallCreation);
            assert_eq!(classify(&Method::GET, path), RouteClass::Other);
        }
        assert_eq!(
            classify(&Method::POST, "/api/calls/join_by_code"),
            RouteClass::Other
        );
        assert_eq!(classify(&Method::GET, "/ws/calls/abc"), RouteClass::Other);
        assert_eq!(classify(&Method::GET, "/health"), RouteClass::Exempt);
        assert_eq!(classify(&Method::GET, "/health/ready"), RouteClass::Exempt);
    }

    #[test]
    fn buckets_and_retry_after() {
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(bucket_of(v4), v4);
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(bucket_of(mapped), v4);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket_of(a), bucket_of(b));
        assert_ne!(bucket_of(a), bucket_of(c));
        assert_eq!(retry_after_secs(Duration::from_millis(19_200)), 20);
        assert_eq!(retry_after_secs(Duration::from_secs(20)), 20);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(
            too_many_requests_detail(20),
            "Too many requests. Retry in 20 seconds."
        );
    }
}
