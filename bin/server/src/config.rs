//! Typed settings, read from the environment (and `.env`, and an optional TOML file),
//! validated once at start-up and passed explicitly to everything that needs them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

/// Telegram web origins that are always allowed (CORS, WebSocket origin, CSP frame-ancestors).
pub const TELEGRAM_WEB_ORIGINS: [&str; 4] = [
    "https://web.telegram.org",
    "https://k.web.telegram.org",
    "https://a.web.telegram.org",
    "https://z.web.telegram.org",
];

/// The bot token used by development mode when none is configured. Never valid at Telegram.
pub const DEV_BOT_TOKEN: &str = "0000000000:DEV-ONLY-telcall-development-token-not-for-production";
/// The bot username used by development mode when none is configured.
pub const DEV_BOT_USERNAME: &str = "telcall_dev_bot";
/// The database development mode uses when none is configured.
pub const DEV_DATABASE_URL: &str = "sqlite://telcall.db?mode=rwc";
/// Largest value of any `*_SECONDS`-style duration setting: timers further out than that
/// are a typo, and would overflow the runtime's clock.
pub const MAX_SECONDS_SETTING: u64 = 365 * 24 * 3600;
/// Longest `USER_CACHE_SECONDS` and `CALL_CACHE_SECONDS`: how long a deleted user may stay
/// signed in, or an end nobody announced may go unseen, is meant to be short.
pub const MAX_CACHE_SECONDS: u64 = 300;
/// Shortest `SECRET_KEY` accepted outside development mode, in bytes.
pub const MIN_SECRET_KEY_BYTES: usize = 32;

/// A missing or invalid setting. Its `Display` is one line naming the variable and never
/// contains the value of a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{0} is required but not set")]
    Missing(&'static str),
    /// A variable is set to something unusable.
    #[error("{var} is invalid: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What is wrong (never the secret value itself).
        reason: String,
    },
    /// The configuration file could not be read or parsed.
    #[error("configuration file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// The `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieSameSite {
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=None` (needed inside Telegram's web client iframe).
    None,
}

impl CookieSameSite {
    /// The attribute value as written in `Set-Cookie`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lax => "Lax",
            Self::Strict => "Strict",
            Self::None => "None",
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which browser origins may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Any origin (development mode only).
    Any,
    /// Exactly these origins, plus [`TELEGRAM_WEB_ORIGINS`].
    List(Vec<String>),
}

impl AllowedOrigins {
    /// Whether `origin` (as sent in the `Origin` header) is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            Self::Any => true,
            Self::List(list) => {
                TELEGRAM_WEB_ORIGINS.contains(&origin) || list.iter().any(|o| o == origin)
            }
        }
    }
}

/// Per-client-IP request limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Whether limits apply at all (may be off only in development mode).
    pub enabled: bool,
    /// `POST /auth/telegram` per minute.
    pub auth_per_minute: u32,
    /// `POST /auth/telegram` per hour.
    pub auth_per_hour: u32,
    /// Call creation per minute.
    pub calls_per_minute: u32,
    /// Call creation per hour.
    pub calls_per_hour: u32,
    /// Every other request per minute.
    pub default_per_minute: u32,
}

/// WebSocket signaling limits and timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSettings {
    /// Room capacity.
    pub max_participants_per_call: usize,
    /// Bytes per signaling message.
    pub max_message_size: usize,
    /// Interval between server pings.
    pub ping_interval: Duration,
    /// A connection silent for this long is closed.
    pub idle_timeout: Duration,
    /// Sustained client messages per second (token bucket refill rate).
    pub messages_per_second: u32,
    /// Token bucket size (burst).
    pub message_burst: u32,
    /// Outbound queue length per connection.
    pub outbound_queue: usize,
    /// Outbound queue byte budget per connection.
    pub outbound_queue_bytes: usize,
    /// Most WebSocket connections one user may hold at once, across calls.
    pub max_connections_per_user: usize,
    /// Lifetime of a `/auth/ws-token` credential.
    pub ticket_ttl: Duration,
}

/// Limits on connections and on slow clients, enforced before and around HTTP parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Concurrent connections (HTTP and WebSocket) the server keeps open in total; past it
    /// new connections are refused when accepted (`MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Concurrent connections from one client address (an IPv6 client counts per /64);
    /// trusted proxies are exempt (`MAX_CONNECTIONS_PER_IP`).
    pub max_connections_per_ip: usize,
    /// Deadline for receiving a whole request body, counted from its head
    /// (`REQUEST_BODY_TIMEOUT_SECONDS`); past it the answer is 408 and the connection closes.
    pub request_body_timeout: Duration,
}

/// TURN and STUN settings.
#[derive(Debug, Clone)]
pub struct WebRtcSettings {
    /// `stun:` URLs.
    pub stun_servers: Vec<String>,
    /// `turn:`/`turns:` URLs.
    pub turn_servers: Vec<String>,
    /// Static TURN username.
    pub turn_username: Option<String>,
    /// Static TURN password.
    pub turn_password: Option<SecretString>,
    /// Shared secret for time-limited TURN credentials.
    pub turn_secret: Option<SecretString>,
    /// Lifetime of time-limited TURN credentials.
    pub turn_credential_ttl: Duration,
    /// Interval between TURN reachability checks.
    pub turn_healthcheck_interval: Duration,
}

/// Where the bot's updates come from (`BOT_UPDATES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotUpdates {
    /// Telegram posts them to `POST /api/telegram/webhook`; with `BOT_WEBHOOK_URL` set the
    /// server registers that URL at start-up.
    Webhook,
    /// The server long-polls `getUpdates` (one instance only).
    Polling,
    /// Neither registration nor polling (the webhook route still answers a registered
    /// webhook).
    Off,
}

/// The Telegram bot's settings.
#[derive(Debug, Clone)]
pub struct BotSettings {
    /// Public HTTPS URL of the webhook route, registered at start-up (`BOT_WEBHOOK_URL`).
    pub webhook_url: Option<String>,
    /// Expected `X-Telegram-Bot-Api-Secret-Token` (`BOT_WEBHOOK_SECRET`); derived from the
    /// bot token when unset.
    pub webhook_secret: Option<SecretString>,
    /// Who `/help` names (`BOT_SUPPORT_CONTACT`).
    pub support_contact: Option<String>,
    /// Webhook, polling or off (`BOT_UPDATES`).
    pub updates: BotUpdates,
}

/// Longest `BOT_SUPPORT_CONTACT`, in characters.
pub const MAX_SUPPORT_CONTACT_CHARS: usize = 200;

/// Every setting of a telcall server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub host: String,
    /// Listen port (0 picks a free one).
    pub port: u16,
    /// Separate internal listener for `/metrics`; when set, the main listener does not
    /// serve `/metrics` (`METRICS_ADDR`, `host:port`).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Database URL (may carry a password: log [`Settings::database_url_redacted`]).
    pub database_url: SecretString,
    /// Whether `DATABASE_URL` was configured (environment or file), rather than
    /// [`DEV_DATABASE_URL`] taken by default.
    pub database_url_configured: bool,
    /// Pool size.
    pub db_max_connections: u32,
    /// Connect / acquire timeout.
    pub db_connect_timeout: Duration,
    /// SQLite page cache per pooled connection, KiB (`DB_SQLITE_CACHE_KIB`).
    pub db_sqlite_cache_kib: u32,
    /// Redis shared by several instances (`REDIS_URL`; may carry a password). Unset: one
    /// instance with in-memory tickets and rate limits.
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key and channel (`REDIS_KEY_PREFIX`).
    pub redis_key_prefix: String,
    /// Telegram bot token (initData HMAC key).
    pub bot_token: SecretString,
    /// Bot username without `@`.
    pub bot_username: String,
    /// JWT signing key.
    pub secret_key: SecretString,
    /// Session lifetime.
    pub access_token_ttl: Duration,
    /// Maximum age of initData's `auth_date`.
    pub init_data_max_age: Duration,
    /// Session cookie `SameSite`.
    pub cookie_samesite: CookieSameSite,
    /// Session cookie `Secure`.
    pub cookie_secure: bool,
    /// Also return the JWT in the sign-in body.
    pub auth_token_in_body: bool,
    /// Mini App short name for join links.
    pub mini_app_name: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// CORS / WebSocket origins.
    pub cors_allow_origins: AllowedOrigins,
    /// Development mode.
    pub debug: bool,
    /// STUN/TURN.
    pub webrtc: WebRtcSettings,
    /// Telegram Bot API base URL.
    pub telegram_api_base: String,
    /// The Telegram bot (webhook, polling, `/help` contact).
    pub bot: BotSettings,
    /// Active calls one user may organize.
    pub max_active_calls_per_user: usize,
    /// Hard cap on one call in hours, counted from its creation (`MAX_CALL_DURATION_HOURS`).
    pub max_call_duration_hours: u32,
    /// WebSocket limits.
    pub ws: WsSettings,
    /// Rate limits.
    pub rate_limits: RateLimits,
    /// Largest accepted JSON body, in bytes.
    pub max_body_size: usize,
    /// Connection caps and the request-body deadline.
    pub connections: ConnectionLimits,
    /// Interval of the expired-call sweeper.
    pub call_sweep_interval: Duration,
    /// How long a session's user, once read, is used without reading it again (zero: read
    /// on every request). A deleted user's token keeps working at most this long.
    pub user_cache: Duration,
    /// How long an active call, once read, is used without reading it again (zero: read on
    /// every request). An end this instance did not hear of (another instance's while Redis
    /// is unreachable, a change made in the database) is seen at most this long afterwards.
    pub call_cache: Duration,
    /// How long shutdown waits for the WebSockets to close, then for in-flight requests.
    pub shutdown_timeout: Duration,
    /// Log format.
    pub log_format: LogFormat,
}

/// Looks a variable up by name.
type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where settings come from: environment first, then an optional file's values.
pub struct Source {
    lookup: Lookup,
}

impl Source {
    /// The process environment, then the TOML file named by `TELCALL_CONFIG` (if set).
    pub fn environment() -> Result<Self, ConfigError> {
        let file = match std::env::var("TELCALL_CONFIG") {
            Ok(path) if !path.is_empty() => read_toml(Path::new(&path))?,
            _ => HashMap::new(),
        };
        Ok(Self {
            lookup: Box::new(move |key| std::env::var(key).ok().or_else(|| file.get(key).cloned())),
        })
    }

    /// Exactly these variables (tests and embedding).
    pub fn from_map(vars: HashMap<String, String>) -> Self {
        Self {
            lookup: Box::new(move |key| vars.get(key).cloned()),
        }
    }

    fn get(&self, key: &str) -> Option<String> {
        (self.lookup)(key).filter(|v| !v.trim().is_empty())
    }
}

/// Reads a flat TOML file whose keys are the environment variable names (any case).
fn read_toml(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let err = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err(e.message().to_owned()))?;
    let mut out = HashMap::new();
    for (key, value) in table {
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            other => return Err(err(format!("{key}: unsupported value {other}"))),
        };
        out.insert(key.to_ascii_uppercase(), value);
    }
    Ok(out)
}

struct Reader<'a> {
    src: &'a Source,
}

impl Reader<'_> {
    fn string(&self, var: &'static str) -> Option<String> {
        self.src.get(var).map(|v| v.trim().to_owned())
    }

    fn parse<T: std::str::FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.string(var) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
                var,
                reason: format!("{v:?}: {e}"),
            }),
        }
    }

    fn positive<T>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + Default + Copy,
        T::Err: std::fmt::Display,
    {
        let v = self.parse(var, default)?;
        if v <= T::default() {
            return Err(ConfigError::Invalid {
                var,
                reason: "must be greater than zero".to_owned(),
            });
        }
        Ok(v)
    }

    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.string(var).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::Invalid {
                    var,
                    reason: format!("{v:?} is not a boolean (true/false)"),
                }),
            },
        }
    }

    fn list(&self, var: &'static str) -> Vec<String> {
        self.string(var)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn secs(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        let secs = self.positive(var, default)?;
        if secs > MAX_SECONDS_SETTING {
            return Err(ConfigError::Invalid {
                var,
                reason: format!("must be at most {MAX_SECONDS_SETTING} seconds (a year)"),
            });
        }
        Ok(Duration::from_secs(secs))
    }

    /// A cache time: zero (no cache) up to [`MAX_CACHE_SECONDS`].
    fn cache_secs(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        let secs: u64 = self.parse(var, default)?;
        if secs > MAX_CACHE_SECONDS {
            return Err(ConfigError::Invalid {
                var,
                reason: format!("must be at most {MAX_CACHE_SECONDS}"),
            });
        }
        Ok(Duration::from_secs(secs))
    }
}

impl Settings {
    /// Reads settings from the process environment (after loading `.env` if present).
    /// `dev` forces development mode, as `DEBUG=true` does.
    pub fn load(dev: bool) -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is ignored like a missing one.
        let _ = dotenvy::dotenv();
        Self::from_source(&Source::environment()?, dev)
    }

    /// Reads settings from `src`. `dev` forces development mode.
    pub fn from_source(src: &Source, dev: bool) -> Result<Self, ConfigError> {
        let r = Reader { src };
        let debug = dev || r.bool("DEBUG", false)?;

        let bot_token = match (r.string("BOT_TOKEN"), debug) {
            (Some(t), _) => t,
            (None, true) => DEV_BOT_TOKEN.to_owned(),
            (None, false) => return Err(ConfigError::Missing("BOT_TOKEN")),
        };
        let bot_username = match (r.string("BOT_USERNAME"), debug) {
            (Some(u), _) => u.trim_start_matches('@').to_owned(),
            (None, true) => DEV_BOT_USERNAME.to_owned(),
            (None, false) => return Err(ConfigError::Missing("BOT_USERNAME")),
        };
        if bot_username.is_empty()
            || !bot_username
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(ConfigError::Invalid {
                var: "BOT_USERNAME",
                reason: "must be a Telegram bot username (letters, digits, underscore)".to_owned(),
            });
        }
        let secret_key = match (r.string("SECRET_KEY"), debug) {
            (Some(k), false) if k.len() < MIN_SECRET_KEY_BYTES => {
                return Err(ConfigError::Invalid {
                    var: "SECRET_KEY",
                    reason: format!("must be at least {MIN_SECRET_KEY_BYTES} bytes"),
                });
            }
            (Some(k), _) => k,
            (None, true) => random_secret(),
            (None, false) => return Err(ConfigError::Missing("SECRET_KEY")),
        };
        let configured_database_url = r.string("DATABASE_URL");
        let database_url_configured = configured_database_url.is_some();
        let database_url = configured_database_url.unwrap_or_else(|| DEV_DATABASE_URL.to_owned());
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| database_url.starts_with(p))
        {
            return Err(ConfigError::Invalid {
                var: "DATABASE_URL",
                reason: "must start with sqlite:, postgres:// or postgresql://".to_owned(),
            });
        }

        let redis_url = r.string("REDIS_URL");
        if let Some(url) = &redis_url
            && !url.starts_with("redis://")
        {
            return Err(ConfigError::Invalid {
                var: "REDIS_URL",
                reason: "must start with redis://".to_owned(),
            });
        }
        let redis_key_prefix = r
            .string("REDIS_KEY_PREFIX")
            .unwrap_or_else(|| telcall_redis::DEFAULT_KEY_PREFIX.to_owned());

        let cookie_samesite = match r.string("COOKIE_SAMESITE").map(|s| s.to_ascii_lowercase()) {
            None => CookieSameSite::Lax,
            Some(s) => match s.as_str() {
                "lax" => CookieSameSite::Lax,
                "strict" => CookieSameSite::Strict,
                "none" => CookieSameSite::None,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "COOKIE_SAMESITE",
                        reason: format!("{s:?} is not one of lax, strict, none"),
                    });
                }
            },
        };
        let cookie_secure = r.bool("COOKIE_SECURE", true)?;
        if !cookie_secure && !debug {
            return Err(ConfigError::Invalid {
                var: "COOKIE_SECURE",
                reason: "may be false only with DEBUG=true".to_owned(),
            });
        }
        if cookie_samesite == CookieSameSite::None && !cookie_secure {
            return Err(ConfigError::Invalid {
                var: "COOKIE_SAMESITE",
                reason: "none requires COOKIE_SECURE=true (browsers drop it otherwise)".to_owned(),
            });
        }

        let origins = r.list("CORS_ALLOW_ORIGINS");
        let cors_allow_origins = if origins.iter().any(|o| o == "*") {
            if !debug {
                return Err(ConfigError::Invalid {
                    var: "CORS_ALLOW_ORIGINS",
                    reason: "`*` is allowed only with DEBUG=true".to_owned(),
                });
            }
            AllowedOrigins::Any
        } else if origins.is_empty() {
            if !debug {
                return Err(ConfigError::Missing("CORS_ALLOW_ORIGINS"));
            }
            AllowedOrigins::Any
        } else {
            for o in &origins {
                validate_origin(o)?;
            }
            AllowedOrigins::List(origins)
        };

        let mut trusted_proxies = Vec::new();
        for item in r.list("TRUSTED_PROXIES") {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::Invalid {
                    var: "TRUSTED_PROXIES",
                    reason: format!("{item:?} is not an IP address or CIDR"),
                })?;
            trusted_proxies.push(net);
        }

        let stun_servers = r.list("STUN_SERVERS");
        for s in &stun_servers {
            if !(s.starts_with("stun:") || s.starts_with("stuns:")) {
                return Err(ConfigError::Invalid {
                    var: "STUN_SERVERS",
                    reason: format!("{s:?} is not a stun: URL"),
                });
            }
        }
        let turn_servers = r.list("TURN_SERVERS");
        for s in &turn_servers {
            if !(s.starts_with("turn:") || s.starts_with("turns:")) {
                return Err(ConfigError::Invalid {
                    var: "TURN_SERVERS",
                    reason: format!("{s:?} is not a turn: or turns: URL"),
                });
            }
            // The directory drops URIs it cannot parse; refuse them here rather than start
            // with a TURN server that is silently never offered.
            if let Err(e) = crate::turn::TurnUri::parse(s) {
                return Err(ConfigError::Invalid {
                    var: "TURN_SERVERS",
                    reason: format!("{s:?}: {}", e.reason),
                });
            }
        }

        let telegram_api_base = r
            .string("TELEGRAM_API_BASE")
            .unwrap_or_else(|| "https://api.telegram.org".to_owned())
            .trim_end_matches('/')
            .to_owned();
        if url::Url::parse(&telegram_api_base).is_err() {
            return Err(ConfigError::Invalid {
                var: "TELEGRAM_API_BASE",
                reason: "is not a URL".to_owned(),
            });
        }

        let bot = read_bot_settings(&r)?;

        let log_format = match r.string("LOG_FORMAT").map(|s| s.to_ascii_lowercase()) {
            None => LogFormat::Text,
            Some(s) if s == "text" || s == "pretty" => LogFormat::Text,
            Some(s) if s == "json" => LogFormat::Json,
            Some(s) => {
                return Err(ConfigError::Invalid {
                    var: "LOG_FORMAT",
                    reason: format!("{s:?} is not text or json"),
                });
            }
        };

        let rate_limits = RateLimits {
            enabled: r.bool("RATE_LIMIT_ENABLED", true)?,
            auth_per_minute: r.positive("RATE_LIMIT_AUTH_PER_MINUTE", 3)?,
            auth_per_hour: r.positive("RATE_LIMIT_AUTH_PER_HOUR", 20)?,
            calls_per_minute: r.positive("RATE_LIMIT_CALLS_PER_MINUTE", 5)?,
            calls_per_hour: r.positive("RATE_LIMIT_CALLS_PER_HOUR", 30)?,
            default_per_minute: r.positive("RATE_LIMIT_DEFAULT_PER_MINUTE", 100)?,
        };
        if !rate_limits.enabled && !debug {
            return Err(ConfigError::Invalid {
                var: "RATE_LIMIT_ENABLED",
                reason: "may be false only with DEBUG=true".to_owned(),
            });
        }

        let ticket_ttl = r.secs("WS_TICKET_TTL_SECONDS", 30)?;
        if ticket_ttl > Duration::from_secs(60) {
            return Err(ConfigError::Invalid {
                var: "WS_TICKET_TTL_SECONDS",
                reason: "must be at most 60".to_owned(),
            });
        }
        let ws = WsSettings {
            max_participants_per_call: r.positive("MAX_PARTICIPANTS_PER_CALL", 30)?,
            max_message_size: r.positive("MAX_WEBSOCKET_MESSAGE_SIZE", 65_536)?,
            ping_interval: r.secs("WS_PING_INTERVAL_SECONDS", 20)?,
            idle_timeout: r.secs("WS_IDLE_TIMEOUT_SECONDS", 60)?,
            messages_per_second: r.positive("WS_MESSAGES_PER_SECOND", 50)?,
            message_burst: r.positive("WS_MESSAGE_BURST", 200)?,
            outbound_queue: r.positive("WS_OUTBOUND_QUEUE", 256)?,
            outbound_queue_bytes: r.positive("WS_OUTBOUND_QUEUE_BYTES", 262_144)?,
            max_connections_per_user: r.positive("WS_MAX_CONNECTIONS_PER_USER", 8)?,
            ticket_ttl,
        };

        // Static TURN credentials come as a pair: a username without a password (or the
        // reverse) gives browsers an ICE server they refuse.
        let turn_username = r.string("TURN_USERNAME");
        let turn_password = r.string("TURN_PASSWORD").map(SecretString::from);
        match (&turn_username, &turn_password) {
            (Some(_), None) => return Err(ConfigError::Missing("TURN_PASSWORD")),
            (None, Some(_)) => return Err(ConfigError::Missing("TURN_USERNAME")),
            _ => {}
        }
        let webrtc = WebRtcSettings {
            stun_servers,
            turn_servers,
            turn_username,
            turn_password,
            turn_secret: r.string("TURN_SECRET").map(SecretString::from),
            turn_credential_ttl: r.secs("TURN_CREDENTIAL_TTL", 86_400)?,
            turn_healthcheck_interval: r.secs("TURN_HEALTHCHECK_INTERVAL", 30)?,
        };

        Ok(Self {
            host: r.string("HOST").unwrap_or_else(|| "127.0.0.1".to_owned()),
            port: r.parse("PORT", 8000)?,
            metrics_addr: r
                .string("METRICS_ADDR")
                .map(|v| {
                    v.parse().map_err(|_| ConfigError::Invalid {
                        var: "METRICS_ADDR",
                        reason: format!("{v:?} is not an address like 127.0.0.1:9100"),
                    })
                })
                .transpose()?,
            database_url: SecretString::from(database_url),
            database_url_configured,
            db_max_connections: r.positive("DB_MAX_CONNECTIONS", 10)?,
            db_connect_timeout: r.secs("DB_CONNECT_TIMEOUT_SECONDS", 5)?,
            db_sqlite_cache_kib: r.positive(
                "DB_SQLITE_CACHE_KIB",
                telcall_persistence::DEFAULT_SQLITE_CACHE_KIB,
            )?,
            redis_url: redis_url.map(SecretString::from),
            redis_key_prefix,
            bot_token: SecretString::from(bot_token),
            bot_username,
            secret_key: SecretString::from(secret_key),
            access_token_ttl: Duration::from_secs(
                r.positive::<u64>("ACCESS_TOKEN_EXPIRE_MINUTES", 240)?
                    .checked_mul(60)
                    .ok_or_else(|| ConfigError::Invalid {
                        var: "ACCESS_TOKEN_EXPIRE_MINUTES",
                        reason: "is too large".to_owned(),
                    })?,
            ),
            init_data_max_age: r.secs("INIT_DATA_MAX_AGE_SECONDS", 86_400)?,
            cookie_samesite,
            cookie_secure,
            auth_token_in_body: r.bool("AUTH_TOKEN_IN_BODY", false)?,
            mini_app_name: r.string("MINI_APP_NAME"),
            trusted_proxies,
            cors_allow_origins,
            debug,
            webrtc,
            telegram_api_base,
            bot,
            max_active_calls_per_user: r.positive("MAX_ACTIVE_CALLS_PER_USER", 5)?,
            max_call_duration_hours: r.positive(
                "MAX_CALL_DURATION_HOURS",
                telcall_domain::services::DEFAULT_MAX_CALL_DURATION_HOURS,
            )?,
            ws,
            rate_limits,
            max_body_size: r.positive("MAX_BODY_SIZE", 65_536)?,
            connections: ConnectionLimits {
                max_connections: r.positive("MAX_CONNECTIONS", 10_000)?,
                max_connections_per_ip: r.positive("MAX_CONNECTIONS_PER_IP", 100)?,
                request_body_timeout: r.secs("REQUEST_BODY_TIMEOUT_SECONDS", 10)?,
            },
            call_sweep_interval: r.secs("CALL_SWEEP_INTERVAL_SECONDS", 60)?,
            user_cache: r.cache_secs("USER_CACHE_SECONDS", 5)?,
            call_cache: r.cache_secs("CALL_CACHE_SECONDS", 5)?,
            shutdown_timeout: r.secs("SHUTDOWN_TIMEOUT_SECONDS", 10)?,
            log_format,
        })
    }

    /// The database URL with any password replaced by `***`, safe to log.
    pub fn database_url_redacted(&self) -> String {
        telcall_persistence::redacted_url(self.database_url.expose_secret())
    }

    /// Links into the Mini App (`BOT_USERNAME`, `MINI_APP_NAME`).
    pub fn links(&self) -> telcall_telegram::MiniAppLinks {
        telcall_telegram::MiniAppLinks::new(&self.bot_username, self.mini_app_name.as_deref())
    }

    /// The Mini App link that opens `code`.
    pub fn join_url(&self, code: &str) -> String {
        self.links().join_url(code)
    }

    /// The webhook secret Telegram must present: `BOT_WEBHOOK_SECRET`, else derived from
    /// `BOT_TOKEN`.
    pub fn webhook_secret(&self) -> telcall_telegram::WebhookSecret {
        match &self.bot.webhook_secret {
            // Validated when the settings were read.
            Some(s) => telcall_telegram::WebhookSecret::new(s.expose_secret())
                .unwrap_or_else(|_| telcall_telegram::WebhookSecret::derive(&self.bot_token)),
            None => telcall_telegram::WebhookSecret::derive(&self.bot_token),
        }
    }
}

fn read_bot_settings(r: &Reader<'_>) -> Result<BotSettings, ConfigError> {
    let webhook_url = r.string("BOT_WEBHOOK_URL");
    if let Some(u) = &webhook_url {
        let ok = url::Url::parse(u)
            .map(|url| url.scheme() == "https" && url.host_str().is_some())
            .unwrap_or(false);
        if !ok {
            return Err(ConfigError::Invalid {
                var: "BOT_WEBHOOK_URL",
                reason: "must be an https:// URL (Telegram delivers only over HTTPS)".to_owned(),
            });
        }
    }
    let webhook_secret = r.string("BOT_WEBHOOK_SECRET");
    if let Some(secret) = &webhook_secret
        && !telcall_telegram::secret::is_valid_secret(secret)
    {
        return Err(ConfigError::Invalid {
            var: "BOT_WEBHOOK_SECRET",
            reason: telcall_telegram::InvalidSecret.to_string(),
        });
    }
    let support_contact = r.string("BOT_SUPPORT_CONTACT");
    if let Some(c) = &support_contact
        && (c.chars().count() > MAX_SUPPORT_CONTACT_CHARS || c.chars().any(char::is_control))
    {
        return Err(ConfigError::Invalid {
            var: "BOT_SUPPORT_CONTACT",
            reason: format!(
                "must be at most {MAX_SUPPORT_CONTACT_CHARS} characters without control characters"
            ),
        });
    }
    let updates = match r.string("BOT_UPDATES").map(|s| s.to_ascii_lowercase()) {
        None if webhook_url.is_some() => BotUpdates::Webhook,
        None => BotUpdates::Off,
        Some(s) => match s.as_str() {
            "webhook" => BotUpdates::Webhook,
            "polling" => BotUpdates::Polling,
            "off" => BotUpdates::Off,
            _ => {
                return Err(ConfigError::Invalid {
                    var: "BOT_UPDATES",
                    reason: format!("{s:?} is not one of webhook, polling, off"),
                });
            }
        },
    };
    Ok(BotSettings {
        webhook_url,
        webhook_secret: webhook_secret.map(SecretString::from),
        support_contact,
        updates,
    })
}

fn validate_origin(origin: &str) -> Result<(), ConfigError> {
    let bad = |reason: &str| ConfigError::Invalid {
        var: "CORS_ALLOW_ORIGINS",
        reason: format!("{origin:?} {reason}"),
    };
    let url = url::Url::parse(origin)
        .map_err(|_| bad("is not an origin like https://app.example.com"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("is not an http(s) origin"));
    }
    if url.path() != "/" || origin.ends_with('/') || url.query().is_some() {
        return Err(bad(
            "must be scheme://host[:port] without a path or trailing slash",
        ));
    }
    Ok(())
}

fn random_secret() -> String {
    let mut bytes = [0u8; 48];
    rand::rng().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(pairs: &[(&str, &str)]) -> Source {
        Source::from_map(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    const BASE: [(&str, &str); 4] = [
        ("BOT_TOKEN", "123:abc"),
        ("BOT_USERNAME", "@my_bot"),
        ("SECRET_KEY", "0123456789abcdef0123456789abcdef"),
        ("CORS_ALLOW_ORIGINS", "https://app.example.com"),
    ];

    #[test]
    fn production_requires_each_secret_and_names_it() {
        for missing in [
            "BOT_TOKEN",
            "BOT_USERNAME",
            "SECRET_KEY",
            "CORS_ALLOW_ORIGINS",
        ] {
            let pairs: Vec<_> = BASE
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = Settings::from_source(&src(&pairs), false).unwrap_err();
            assert_eq!(
                err,
                ConfigError::Missing(match missing {
                    "BOT_TOKEN" => "BOT_TOKEN",
                    "BOT_USERNAME" => "BOT_USERNAME",
                    "SECRET_KEY" => "SECRET_KEY",
                    _ => "CORS_ALLOW_ORIGINS",
                })
            );
            assert!(err.to_string().contains(missing));
        }
    }

    #[test]
    fn defaults_and_at_sign_stripped() {
        let s = Settings::from_source(&src(&BASE), false).unwrap();
        assert_eq!(s.bot_username, "my_bot");
        assert_eq!(s.port, 8000);
        assert_eq!(s.host, "127.0.0.1");
        assert_eq!(s.access_token_ttl, Duration::from_secs(240 * 60));
        assert_eq!(s.cookie_samesite, CookieSameSite::Lax);
        assert!(s.cookie_secure);
        assert_eq!(s.ws.max_participants_per_call, 30);
        assert_eq!(s.max_active_calls_per_user, 5);
        assert_eq!(s.max_call_duration_hours, 12);
        assert_eq!(s.ws.max_message_size, 65_536);
        assert_eq!(s.connections.max_connections, 10_000);
        assert_eq!(s.connections.max_connections_per_ip, 100);
        assert_eq!(s.connections.request_body_timeout, Duration::from_secs(10));
        assert_eq!(s.user_cache, Duration::from_secs(5));
        assert_eq!(s.call_cache, Duration::from_secs(5));
        assert_eq!(s.join_url("abc"), "https://t.me/my_bot?startapp=abc");
    }

    #[test]
    fn weak_secret_refused_outside_dev_and_never_printed() {
        let mut pairs = BASE.to_vec();
        pairs.retain(|(k, _)| *k != "SECRET_KEY");
        pairs.push(("SECRET_KEY", "short-secret-value"));
        let err = Settings::from_source(&src(&pairs), false).unwrap_err();
        assert!(err.to_string().contains("SECRET_KEY"));
        assert!(!err.to_string().contains("short-secret-value"));
        assert!(Settings::from_source(&src(&pairs), true).is_ok());
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let s = Settings::from_source(&src(&BASE), false).unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("123:abc"));
        assert!(!dbg.contains("0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, value) in [
            ("PORT", "eighty"),
            ("COOKIE_SAMESITE", "sideways"),
            ("COOKIE_SECURE", "false"),
            ("CORS_ALLOW_ORIGINS", "*"),
            ("CORS_ALLOW_ORIGINS", "https://app.example.com/"),
            ("TRUSTED_PROXIES", "not-an-ip"),
            ("TURN_SERVERS", "http://turn.example.com"),
            ("MAX_PARTICIPANTS_PER_CALL", "0"),
            ("DATABASE_URL", "mysql://x"),
            ("RATE_LIMIT_ENABLED", "false"),
            ("CALL_SWEEP_INTERVAL_SECONDS", "10000000000000000000"),
            ("WS_PING_INTERVAL_SECONDS", "31536001"),
            ("MAX_CONNECTIONS", "0"),
            ("METRICS_ADDR", "localhost"),
            ("MAX_CONNECTIONS_PER_IP", "-1"),
            ("REQUEST_BODY_TIMEOUT_SECONDS", "0"),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, value));
            let err = Settings::from_source(&src(&pairs), false).unwrap_err();
            assert!(err.to_string().contains(var), "{var}: {err}");
        }
    }

    #[test]
    fn unusable_values_are_refused_naming_the_variable() {
        for (var, extra) in [
            (
                "ACCESS_TOKEN_EXPIRE_MINUTES",
                vec![("ACCESS_TOKEN_EXPIRE_MINUTES", "18446744073709551615")],
            ),
            (
                "TURN_SERVERS",
                vec![("TURN_SERVERS", "turn://turn.example.com:3478")],
            ),
            (
                "TURN_SERVERS",
                vec![("TURN_SERVERS", "turn:turn.example.com:99999")],
            ),
            (
                "TURN_SERVERS",
                vec![("TURN_SERVERS", "turn:x?transport=sctp")],
            ),
            ("TURN_PASSWORD", vec![("TURN_USERNAME", "alice")]),
            ("TURN_USERNAME", vec![("TURN_PASSWORD", "wonderland")]),
            ("USER_CACHE_SECONDS", vec![("USER_CACHE_SECONDS", "301")]),
            ("CALL_CACHE_SECONDS", vec![("CALL_CACHE_SECONDS", "301")]),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.extend(extra);
            let err = std::panic::catch_unwind(|| Settings::from_source(&src(&pairs), false))
                .unwrap_or_else(|_| panic!("{var}: settings panicked"))
                .expect_err(var);
            assert!(err.to_string().contains(var), "{var}: {err}");
            assert!(!err.to_string().contains("wonderland"), "{err}");
        }
    }

    #[test]
    fn dev_mode_needs_nothing() {
        let s = Settings::from_source(&src(&[]), true).unwrap();
        assert!(s.debug);
        assert_eq!(s.cors_allow_origins, AllowedOrigins::Any);
        assert_eq!(s.bot_username, DEV_BOT_USERNAME);
        assert!(s.secret_key.expose_secret().len() >= MIN_SECRET_KEY_BYTES);
        let other = Settings::from_source(&src(&[]), true).unwrap();
        assert_ne!(
            s.secret_key.expose_secret(),
            other.secret_key.expose_secret()
        );
    }

    #[test]
    fn mini_app_link_and_origins() {
        let mut pairs = BASE.to_vec();
        pairs.push(("MINI_APP_NAME", "call"));
        let s = Settings::from_source(&src(&pairs), false).unwrap();
        assert_eq!(s.join_url("xyz"), "https://t.me/my_bot/call?startapp=xyz");
        assert!(s.cors_allow_origins.allows("https://app.example.com"));
        assert!(s.cors_allow_origins.allows("https://web.telegram.org"));
        assert!(!s.cors_allow_origins.allows("https://evil.example.com"));
    }

    #[test]
    fn bot_settings() {
        let s = Settings::from_source(&src(&BASE), false).unwrap();
        assert_eq!(s.bot.updates, BotUpdates::Off);
        assert!(s.webhook_secret().is_derived());
        let mut pairs = BASE.to_vec();
        pairs.push((
            "BOT_WEBHOOK_URL",
            "https://calls.example.com/api/telegram/webhook",
        ));
        pairs.push(("BOT_WEBHOOK_SECRET", "my-Secret_1"));
        let s = Settings::from_source(&src(&pairs), false).unwrap();
        assert_eq!(s.bot.updates, BotUpdates::Webhook);
        assert!(s.webhook_secret().verify(Some(b"my-Secret_1")));
        assert!(!format!("{s:?}").contains("my-Secret_1"));
        pairs.push(("BOT_UPDATES", "Polling"));
        let s = Settings::from_source(&src(&pairs), false).unwrap();
        assert_eq!(s.bot.updates, BotUpdates::Polling);
        for (var, value) in [
            ("BOT_WEBHOOK_URL", "http://calls.example.com/hook"),
            ("BOT_WEBHOOK_URL", "not a url"),
            ("BOT_WEBHOOK_SECRET", "has spaces in it"),
            ("BOT_UPDATES", "sometimes"),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.push((var, value));
            let err = Settings::from_source(&src(&pairs), false).unwrap_err();
            assert!(err.to_string().contains(var), "{var}: {err}");
            assert!(!err.to_string().contains("has spaces"), "{err}");
        }
    }

    #[test]
    fn toml_file_supplies_values_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("telcall.toml");
        std::fs::write(&path, "port = 9001\nbot_username = \"file_bot\"\nstun_servers = [\"stun:a:3478\", \"stun:b:3478\"]\n").unwrap();
        let file = read_toml(&path).unwrap();
        assert_eq!(file.get("PORT").map(String::as_str), Some("9001"));
        assert_eq!(
            file.get("STUN_SERVERS").map(String::as_str),
            Some("stun:a:3478,stun:b:3478")
        );
    }
}
