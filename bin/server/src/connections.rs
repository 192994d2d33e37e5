//! Caps on concurrent connections, checked the moment a connection is accepted (before any
//! byte of HTTP is read): one for the whole server (`MAX_CONNECTIONS`) and one per client
//! address (`MAX_CONNECTIONS_PER_IP`).
//!
//! A refused connection gets one pre-built answer written without waiting (429 for the
//! per-address cap, 503 for the total) and is shut down; nothing else is spent on it. An
//! accepted connection carries a [`ConnectionPermit`] in its connection data, so the count
//! drops when the connection ends, however it ends.
//!
//! The address is the socket peer: at accept time no `X-Forwarded-For` has been read. A
//! peer listed in `TRUSTED_PROXIES` is therefore exempt from the per-address cap (every
//! client behind the proxy shares its address); its connections still count toward the
//! total, and the proxy is expected to cap connections per client itself.

use std::any::Any;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, Shutdown};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::dev::Extensions;
use ipnet::IpNet;

use crate::config::ConnectionLimits;

/// The answer written to a connection refused by the per-address cap.
const PER_IP_REFUSAL: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
content-type: application/json\r\n\
retry-after: 5\r\n\
connection: close\r\n\
content-length: 51\r\n\
\r\n\
{\"detail\":\"Too many connections from this address\"}";

/// The answer written to a connection refused by the total cap.
const TOTAL_REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 5\r\n\
connection: close\r\n\
content-length: 38\r\n\
\r\n\
{\"detail\":\"Too many open connections\"}";

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds `MAX_CONNECTIONS` connections.
    Total,
    /// This client address holds `MAX_CONNECTIONS_PER_IP` connections.
    PerAddress,
}

impl Refusal {
    /// The raw HTTP answer written to the refused connection.
    pub fn response(self) -> &'static [u8] {
        match self {
            Self::Total => TOTAL_REFUSAL,
            Self::PerAddress => PER_IP_REFUSAL,
        }
    }
}

/// Counts open connections, in total and per client address. Cheap to clone (shared).
#[derive(Clone)]
pub struct ConnectionLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    max_total: usize,
    max_per_address: usize,
    exempt: Vec<IpNet>,
    total: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
}

/// Proof that a connection was counted; dropping it (when the connection ends) releases it.
pub struct ConnectionPermit {
    inner: Arc<Inner>,
    address: Option<IpAddr>,
}

/// The permit as the connection data holds it: the HTTP dispatcher and, once a WebSocket
/// is upgraded, its connection task ([`crate::ws::upgrade`]) share it, and the count drops
/// when the last of them lets go.
#[derive(Clone)]
pub struct SharedPermit {
    _held: Rc<ConnectionPermit>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if let Some(address) = self.address {
            let mut map = self
                .inner
                .per_address
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = map.get_mut(&address) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&address);
                }
            }
        }
        self.inner.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The key a client address is counted under: IPv4 addresses (and IPv4-mapped IPv6) as
/// they are, other IPv6 addresses by their /64 network (one subscriber's allocation).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl ConnectionLimiter {
    /// A limiter with the configured caps; peers in `trusted_proxies` are exempt from the
    /// per-address cap.
    pub fn new(limits: &ConnectionLimits, trusted_proxies: &[IpNet]) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_total: limits.max_connections,
                max_per_address: limits.max_connections_per_ip,
                exempt: trusted_proxies.to_vec(),
                total: AtomicUsize::new(0),
                per_address: Mutex::new(HashMap::new()),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// Counts a new connection from `peer`, or says why it must be refused.
    pub fn try_acquire(&self, peer: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let inner = &self.inner;
        let reserved = inner
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < inner.max_total).then_some(n + 1)
            });
        if reserved.is_err() {
            inner.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Total);
        }
        // From here the total is held: the permit's drop gives it back on every path.
        let mut permit = ConnectionPermit {
            inner: inner.clone(),
            address: None,
        };
        if inner.exempt.iter().any(|net| net.contains(&peer)) {
            return Ok(permit);
        }
        let key = address_key(peer);
        let mut map = inner
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = map.entry(key).or_insert(0);
        if *count >= inner.max_per_address {
            drop(map);
            inner.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerAddress);
        }
        *count += 1;
        permit.address = Some(key);
        Ok(permit)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.total.load(Ordering::Acquire)
    }

    /// Connections refused since start-up.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// The `on_connect` hook of the HTTP server: counts the connection, or writes the
    /// refusal and shuts the socket down before the HTTP dispatcher reads anything.
    pub fn on_connect(&self, connection: &dyn Any, data: &mut Extensions) {
        let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        let Ok(peer) = stream.peer_addr() else {
            return;
        };
        match self.try_acquire(peer.ip()) {
            Ok(permit) => {
                data.insert(SharedPermit {
                    _held: Rc::new(permit),
                });
            }
            Err(refusal) => {
                tracing::debug!(peer = %peer.ip(), ?refusal, "connection refused");
                // One non-blocking send straight to the socket (the runtime has not polled
                // it yet): a fresh socket's send buffer has room; if not, the client sees
                // a close.
                let socket = socket2::SockRef::from(stream);
                let _ = socket.send(refusal.response());
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(total: usize, per_ip: usize, exempt: &[&str]) -> ConnectionLimiter {
        ConnectionLimiter::new(
            &ConnectionLimits {
                max_connections: total,
                max_connections_per_ip: per_ip,
                request_body_timeout: Duration::from_secs(1),
            },
            &exempt
                .iter()
                .map(|s| s.parse().unwrap())
                .collect::<Vec<_>>(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_cap_and_release() {
        let l = limiter(10, 2, &[]);
        let a = l.try_acquire(ip("198.51.100.1")).unwrap();
        let _b = l.try_acquire(ip("198.51.100.1")).unwrap();
        assert_eq!(
            l.try_acquire(ip("198.51.100.1")).err(),
            Some(Refusal::PerAddress)
        );
        assert!(l.try_acquire(ip("198.51.100.2")).is_ok());
        drop(a);
        assert!(l.try_acquire(ip("198.51.100.1")).is_ok());
        assert_eq!(l.refused(), 1);
    }

    #[test]
    fn total_cap_and_release() {
        let l = limiter(2, 10, &[]);
        let a = l.try_acquire(ip("198.51.100.1")).unwrap();
        let _b = l.try_acquire(ip("198.51.100.2")).unwrap();
        assert_eq!(
            l.try_acquire(ip("198.51.100.3")).err(),
            Some(Refusal::Total)
        );
        assert_eq!(l.open(), 2);
        drop(a);
        assert!(l.try_acquire(ip("198.51.100.3")).is_ok());
    }

    #[test]
    fn refused_per_address_gives_the_total_back() {
        let l = limiter(3, 1, &[]);
        let _a = l.try_acquire(ip("198.51.100.1")).unwrap();
        for _ in 0..5 {
            assert!(l.try_acquire(ip("198.51.100.1")).is_err());
        }
        assert_eq!(l.open(), 1);
    }

    #[test]
    fn trusted_proxy_exempt_from_per_address_cap_not_total() {
        let l = limiter(3, 1, &["10.0.0.0/8"]);
        let _held: Vec<_> = (0..3)
            .map(|_| l.try_acquire(ip("10.0.0.5")).unwrap())
            .collect();
        assert_eq!(l.try_acquire(ip("10.0.0.5")).err(), Some(Refusal::Total));
    }

    #[test]
    fn ipv6_counts_per_64() {
        let l = limiter(10, 1, &[]);
        let _a = l.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(l.try_acquire(ip("2001:db8:1:2::ffff")).is_err());
        assert!(l.try_acquire(ip("2001:db8:1:3::1")).is_ok());
        assert_eq!(address_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn refusals_are_complete_http_answers() {
        for r in [Refusal::Total, Refusal::PerAddress] {
            let text = std::str::from_utf8(r.response()).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, body.len(), "{head}");
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(v["detail"].is_string());
        }
    }
}
