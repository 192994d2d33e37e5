//! Per-client-IP rate limits (CONTRACT): `POST /auth/telegram` 3/minute and 20/hour, call
//! creation 5/minute and 30/hour, every other request 100/minute — all from
//! [`RateLimitSettings`], off when `RATE_LIMIT_ENABLED=false` (development mode only).
//!
//! Built on `actix-governor` (GCRA token buckets from `governor`). A limit of `n` per
//! window is a bucket of `n` requests refilled at one per `window / n`: a client may burst
//! `n` requests, then gets one more every `window / n`.
//!
//! **Composition.** Each [`Limit`] is one `Governor` layer with its own bucket per client;
//! a layer's [`ClientIpKey`] only keys the requests of its [`RouteClass`] and lets every
//! other request through untouched (its "whitelisted" key). The layers wrap the app in the
//! order of [`Limit::ALL`] (outermost first), so a request of a class with two limits is
//! checked against the per-minute bucket first and reaches the per-hour bucket only if that
//! let it through: hammering the endpoint never drains the hourly allowance faster than
//! the per-minute limit allows. Sign-in and call creation are not also counted against the
//! default limit ("everything else").
//!
//! **Exempt:** `/health`, `/health/ready` and `/metrics` (load balancers and scrapers probe
//! them from one address),
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
//! **Memory.** Buckets of clients that are back to a full allowance are dropped every
//! [`HOUSEKEEPING_INTERVAL`] by a background task that ends with the server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix_governor::governor::NotUntil;
use actix_governor::governor::clock::{Clock, DefaultClock, QuantaInstant};
use actix_governor::governor::middleware::NoOpMiddleware;
use actix_governor::{
    Governor, GovernorConfig, GovernorConfigBuilder, KeyExtractor, SimpleKeyExtractionError,
};
use actix_web::dev::ServiceRequest;
use actix_web::http::Method;
use actix_web::http::header::{ContentType, RETRY_AFTER};
use actix_web::middleware::Condition;
use actix_web::{HttpResponse, HttpResponseBuilder};
use ipnet::IpNet;

use crate::config::{RateLimits as RateLimitSettings, Settings};
use crate::error::ErrorBody;
use crate::extract::client_ip;

/// How often buckets of idle clients are dropped.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);

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

/// The bucket key of a request: the client IP (IPv6 reduced to its /64), for requests of
/// one [`RouteClass`]. Requests of other classes get `None`, which the layer lets through.
#[derive(Debug, Clone)]
pub struct ClientIpKey {
    class: RouteClass,
    trusted_proxies: Arc<[IpNet]>,
}

impl ClientIpKey {
    /// A key extractor for the requests of `class`.
    pub fn new(class: RouteClass, trusted_proxies: Arc<[IpNet]>) -> Self {
        Self {
            class,
            trusted_proxies,
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

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The 429 `detail`.
pub fn too_many_requests_detail(retry_after: u64) -> String {
    format!("Too many requests. Retry in {retry_after} seconds.")
}

impl KeyExtractor for ClientIpKey {
    type Key = Option<IpAddr>;
    type KeyExtractionError = SimpleKeyExtractionError<&'static str>;

    fn extract(&self, req: &ServiceRequest) -> Result<Self::Key, Self::KeyExtractionError> {
        // The path as the router matches it (percent-encoded unreserved characters
        // decoded), not the raw `req.path()`: `/auth/%74elegram` is the sign-in route and
        // must not slip into the looser default bucket.
        if classify(req.method(), req.match_info().as_str()) != self.class {
            return Ok(None);
        }
        // Without a peer address (not a TCP connection) everybody shares one bucket: fail
        // closed rather than unlimited.
        let ip = client_ip(req, &self.trusted_proxies).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(Some(bucket_of(ip)))
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &NotUntil<QuantaInstant>,
        mut response: HttpResponseBuilder,
    ) -> HttpResponse {
        let retry_after = retry_after_secs(negative.wait_time_from(DefaultClock::default().now()));
        tracing::info!(class = ?self.class, retry_after, "rate limit exceeded");
        response
            .insert_header((RETRY_AFTER, retry_after))
            .insert_header(("x-ratelimit-after", retry_after))
            .content_type(ContentType::json())
            .json(ErrorBody {
                detail: too_many_requests_detail(retry_after),
            })
    }

    fn whitelisted_keys(&self) -> Vec<Self::Key> {
        vec![None]
    }
}

type Config = GovernorConfig<ClientIpKey, NoOpMiddleware>;

/// One rate-limiting layer as [`RateLimits::layer`] hands it out (a no-op when limits are
/// disabled).
pub type RateLimitLayer = Condition<Governor<ClientIpKey, NoOpMiddleware>>;

/// The shared buckets of every [`Limit`]. Build once per server (not per worker) and clone
/// the layers into each worker's app, so all workers count in the same buckets.
#[derive(Clone)]
pub struct RateLimits {
    enabled: bool,
    configs: Vec<Config>,
}

impl RateLimits {
    /// Buckets for the limits of `settings` (and the task that drops idle buckets, which
    /// needs a Tokio runtime). Fails only on a zero limit, which settings already refuse.
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let limits = &settings.rate_limits;
        let trusted: Arc<[IpNet]> = settings.trusted_proxies.clone().into();
        let mut configs = Vec::with_capacity(Limit::ALL.len());
        for limit in Limit::ALL {
            let (window, count) = limit.quota(limits);
            let count = count.max(1);
            let config = GovernorConfigBuilder::default()
                .period(window / count)
                .burst_size(count)
                .key_extractor(ClientIpKey::new(limit.class(), trusted.clone()))
                .finish()
                .ok_or_else(|| anyhow::anyhow!("rate limit {limit:?} must be greater than zero"))?;
            configs.push(config);
        }
        let this = Self {
            enabled: limits.enabled,
            configs,
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

    /// The middleware enforcing `limit` (see the module docs for the order to wrap them in).
    pub fn layer(&self, limit: Limit) -> RateLimitLayer {
        // `configs` holds one entry per `Limit::ALL` member, in that order.
        let config = &self.configs[limit.index()];
        Condition::new(self.enabled, Governor::new(config))
    }

    fn spawn_housekeeping(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no Tokio runtime: idle rate-limit buckets are never dropped");
            return;
        };
        let limiters: Vec<Weak<_>> = self
            .configs
            .iter()
            .map(|c| Arc::downgrade(&c.limiter()))
            .collect();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                let mut alive = false;
                for limiter in limiters.iter().filter_map(Weak::upgrade) {
                    alive = true;
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
                if !alive {
                    break;
                }
            }
        });
    }
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
