//! STUN/TURN directory: RFC 7065 TURN URI parsing, time-limited TURN credentials (coturn
//! `use-auth-secret`), and a background reachability check whose cached result the
//! `/api/config/webrtc` route serves (no network I/O on the request path).

use std::sync::RwLock;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use telcall_domain::UserId;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::WebRtcSettings;

/// Time limit of one TURN reachability probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Transport of a TURN URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnTransport {
    /// `?transport=udp`.
    Udp,
    /// `?transport=tcp`.
    Tcp,
}

/// A parsed `turn:`/`turns:` URI (RFC 7065).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnUri {
    /// The URI as configured (what browsers get).
    pub uri: String,
    /// `turns:` (TLS).
    pub secure: bool,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port (3478 for `turn:`, 5349 for `turns:` when omitted).
    pub port: u16,
    /// Transport, when given.
    pub transport: Option<TurnTransport>,
}

/// A TURN URI that does not follow RFC 7065.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid TURN URI {uri:?}: {reason}")]
pub struct TurnUriError {
    /// The URI.
    pub uri: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl TurnUri {
    /// Parses `turn:host[:port][?transport=udp|tcp]` or `turns:…`.
    pub fn parse(uri: &str) -> Result<Self, TurnUriError> {
        let err = |reason| TurnUriError {
            uri: uri.to_owned(),
            reason,
        };
        let (secure, rest) = if let Some(r) = uri.strip_prefix("turns:") {
            (true, r)
        } else if let Some(r) = uri.strip_prefix("turn:") {
            (false, r)
        } else {
            return Err(err("scheme must be turn: or turns:"));
        };
        if rest.starts_with("//") {
            return Err(err("TURN URIs have no // authority marker"));
        }
        let (hostport, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let transport = match query {
            None => None,
            Some("transport=udp") => Some(TurnTransport::Udp),
            Some("transport=tcp") => Some(TurnTransport::Tcp),
            Some(_) => {
                return Err(err(
                    "the only query allowed is transport=udp or transport=tcp",
                ));
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| err("unclosed IPv6 bracket"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(err("brackets must hold an IPv6 address"));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| err("junk after IPv6 host"))?,
                ),
            };
            (h.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        // An IPv6 literal needs brackets: without them its colons would be read as the port
        // separator, so outside brackets a host has no colon.
        if host.is_empty()
            || (!hostport.starts_with('[')
                && !host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(err("missing or malformed host"));
        }
        let port = match port {
            None => {
                if secure {
                    5349
                } else {
                    3478
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| err("port must be 1..=65535"))?,
        };
        Ok(Self {
            uri: uri.to_owned(),
            secure,
            host,
            port,
            transport,
        })
    }
}

/// One TURN server as handed to a browser.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TurnServerEntry {
    /// The URI (older clients read `url`).
    pub url: String,
    /// The URI (the `RTCIceServer` field).
    pub urls: String,
    /// TURN username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Time-limited TURN credentials of the TURN REST API (coturn `use-auth-secret`): username
/// `"<unix expiry>:<user id>"`, credential `base64(HMAC-SHA1(secret, username))`.
pub fn turn_rest_credentials(
    secret: &str,
    user_id: UserId,
    expires_at_unix: i64,
) -> (String, String) {
    let username = format!("{expires_at_unix}:{user_id}");
    // HMAC accepts keys of any length; the error arm cannot happen.
    let credential = match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    (username, credential)
}

/// The configured STUN/TURN servers and the last known reachability of each TURN server.
pub struct TurnDirectory {
    stun: Vec<String>,
    turn: Vec<TurnUri>,
    /// `None` until the first check completes: then every server is offered.
    reachable: RwLock<Option<Vec<bool>>>,
    static_username: Option<String>,
    static_password: Option<SecretString>,
    secret: Option<SecretString>,
    ttl: Duration,
}

impl TurnDirectory {
    /// A directory of the configured servers. Unparseable TURN URIs are logged and left out.
    pub fn new(settings: &WebRtcSettings) -> Self {
        let turn = settings
            .turn_servers
            .iter()
            .filter_map(|u| match TurnUri::parse(u) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(error = %e, "TURN server ignored");
                    None
                }
            })
            .collect();
        Self {
            stun: settings.stun_servers.clone(),
            turn,
            reachable: RwLock::new(None),
            static_username: settings.turn_username.clone(),
            static_password: settings.turn_password.clone(),
            secret: settings.turn_secret.clone(),
            ttl: settings.turn_credential_ttl,
        }
    }

    /// The STUN URLs.
    pub fn stun_servers(&self) -> &[String] {
        &self.stun
    }

    /// The parsed TURN servers.
    pub fn turn_servers(&self) -> &[TurnUri] {
        &self.turn
    }

    /// Lifetime of time-limited credentials.
    pub fn credential_ttl(&self) -> Duration {
        self.ttl
    }

    /// Records the outcome of a reachability check (one flag per TURN server, in order).
    pub fn set_reachability(&self, flags: Vec<bool>) {
        *self.reachable.write().unwrap_or_else(|e| e.into_inner()) = Some(flags);
    }

    /// The TURN servers to offer `user_id` at unix time `now`: the reachable ones (all,
    /// before the first check), with time-limited credentials when a secret is set, else
    /// the static ones.
    pub fn entries_for(&self, user_id: UserId, now_unix: i64) -> Vec<TurnServerEntry> {
        let reachable = self
            .reachable
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (username, credential) = match (&self.secret, &self.static_username) {
            (Some(secret), _) => {
                let expiry =
                    now_unix.saturating_add(i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX));
                let (u, c) = turn_rest_credentials(secret.expose_secret(), user_id, expiry);
                (Some(u), Some(c))
            }
            (None, Some(u)) => (
                Some(u.clone()),
                self.static_password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned()),
            ),
            (None, None) => (None, None),
        };
        self.turn
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                reachable
                    .as_ref()
                    .is_none_or(|flags| flags.get(*i).copied().unwrap_or(true))
            })
            .map(|(_, t)| TurnServerEntry {
                url: t.uri.clone(),
                urls: t.uri.clone(),
                username: username.clone(),
                credential: credential.clone(),
            })
            .collect()
    }

    /// Probes every TURN server once (TCP connect with [`PROBE_TIMEOUT`]) and records it.
    pub async fn check_now(&self) {
        let probes = self.turn.iter().map(|t| async move {
            let addr = (t.host.as_str(), t.port);
            matches!(
                tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
                Ok(Ok(_))
            )
        });
        let flags = futures_util::future::join_all(probes).await;
        for (t, ok) in self.turn.iter().zip(&flags) {
            if !ok {
                tracing::warn!(server = %t.uri, "TURN server unreachable; left out");
            }
        }
        self.set_reachability(flags);
    }
}

/// Starts the periodic TURN reachability check.
pub fn spawn_healthcheck(
    dir: std::sync::Arc<TurnDirectory>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if dir.turn_servers().is_empty() {
            return;
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => dir.check_now().await,
                () = crate::stopped(&mut shutdown) => break,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc7065_forms() {
        let t = TurnUri::parse("turn:turn.example.com:3479?transport=udp").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.secure, t.transport),
            ("turn.example.com", 3479, false, Some(TurnTransport::Udp))
        );
        let t = TurnUri::parse("turns:turn.example.com").unwrap();
        assert_eq!((t.port, t.secure), (5349, true));
        let t = TurnUri::parse("turn:[2001:db8::1]:3478?transport=tcp").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("2001:db8::1", 3478));
        let t = TurnUri::parse("turn:10.0.0.1").unwrap();
        assert_eq!(t.port, 3478);
    }

    #[test]
    fn rejects_malformed_uris() {
        for bad in [
            "stun:x",
            "turn://x:3478",
            "turn:",
            "turn:x:0",
            "turn:x:99999",
            "turn:x?transport=sctp",
            "turn:[::1",
            "turn:bad host",
        ] {
            assert!(TurnUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_server_offered_until_the_first_check_then_only_reachable_ones() {
        let settings = WebRtcSettings {
            stun_servers: vec![],
            turn_servers: vec![
                "turn:a.example:3478".into(),
                "turns:b.example".into(),
                "bogus".into(),
            ],
            turn_username: None,
            turn_password: None,
            turn_secret: None,
            turn_credential_ttl: Duration::from_secs(60),
            turn_healthcheck_interval: Duration::from_secs(30),
        };
        let dir = TurnDirectory::new(&settings);
        assert_eq!(dir.turn_servers().len(), 2, "the malformed URI is left out");
        assert_eq!(dir.entries_for(UserId::new(1), 0).len(), 2);
        dir.set_reachability(vec![false, true]);
        let entries = dir.entries_for(UserId::new(1), 0);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].urls, "turns:b.example");
        assert_eq!(entries[0].username, None);
    }

    #[test]
    fn rest_credentials_match_coturn_formula() {
        let (u, c) = turn_rest_credentials("s3cret", UserId::new(42), 1_800_000_000);
        assert_eq!(u, "1800000000:42");
        let mut mac = Hmac::<Sha1>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"1800000000:42");
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(c, expected);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&c)
                .unwrap()
                .len(),
            20
        );
    }
}
