//! Opening, migrating and closing the database: URL checks, pool limits, SQLite pragmas.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use url::Url;

use crate::error::PersistenceError;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:` (a file, or `sqlite::memory:`).
    Sqlite,
    /// `postgres://` or `postgresql://`.
    Postgres,
}

impl Backend {
    /// The backend of `url`, or an error naming the (redacted) URL.
    pub fn from_url(url: &str) -> Result<Self, PersistenceError> {
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("sqlite") => Ok(Self::Sqlite),
            Some("postgres" | "postgresql") => Ok(Self::Postgres),
            _ => Err(PersistenceError::UnsupportedUrl {
                url: redacted_url(url),
            }),
        }
    }
}

/// Pool and driver settings for [`connect`]. The defaults suit a single server process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbOptions {
    /// Most connections the pool opens. Ignored for `sqlite::memory:`, which always uses one
    /// connection (each connection would otherwise see its own, empty, database).
    pub max_connections: u32,
    /// Connections the pool keeps open even when idle (at most `max_connections`).
    pub min_connections: u32,
    /// How long opening one connection may take.
    pub connect_timeout: Duration,
    /// How long a query may wait for a free pooled connection before failing as unavailable.
    pub acquire_timeout: Duration,
    /// Idle connections beyond `min_connections` are closed after this long.
    pub idle_timeout: Option<Duration>,
    /// Connections are replaced after this long.
    pub max_lifetime: Option<Duration>,
    /// SQLite only: how long a statement waits for another connection's write lock.
    pub sqlite_busy_timeout: Duration,
    /// SQLite only: how long a write of this process waits for its other writes, which go
    /// one at a time (see `SeaStore`); past it the write fails as storage unavailable.
    pub sqlite_write_wait: Duration,
    /// SQLite only: the page cache of each pooled connection, in KiB (`PRAGMA cache_size`).
    /// Every commit of another connection empties it in WAL mode, so a large one mostly holds
    /// memory; pages not in it are read from the operating system's file cache.
    pub sqlite_cache_kib: u32,
    /// Log every SQL statement (sqlx's statement log). Off by default.
    pub log_statements: bool,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 1,
            connect_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            sqlite_busy_timeout: Duration::from_secs(5),
            sqlite_write_wait: Duration::from_secs(5),
            sqlite_cache_kib: DEFAULT_SQLITE_CACHE_KIB,
            log_statements: false,
        }
    }
}

/// Default page cache per SQLite connection, in KiB (SQLite's own default is 2,000).
pub const DEFAULT_SQLITE_CACHE_KIB: u32 = 256;

/// Whether a SQLite URL names an in-memory database.
fn is_sqlite_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Opens a connection pool to `url` (`sqlite:…`, `postgres://…` or `postgresql://…`).
///
/// On SQLite every pooled connection gets `foreign_keys=ON`, the busy timeout and a page
/// cache of [`DbOptions::sqlite_cache_kib`]; file
/// databases use WAL with `synchronous=NORMAL`. Whether a missing file is created is up to the
/// URL (`?mode=rwc`). `sqlite::memory:` gets a single connection that is never recycled.
pub async fn connect(
    url: &str,
    options: &DbOptions,
) -> Result<DatabaseConnection, PersistenceError> {
    let backend = Backend::from_url(url)?;
    if let Err(e) = Url::parse(url) {
        return Err(PersistenceError::InvalidUrl {
            url: redacted_url(url),
            reason: e.to_string(),
        });
    }
    let max = options.max_connections.max(1);
    let mut opt = ConnectOptions::new(url);
    opt.max_connections(max)
        .min_connections(options.min_connections.min(max))
        .connect_timeout(options.connect_timeout)
        .acquire_timeout(options.acquire_timeout)
        .idle_timeout(options.idle_timeout)
        .max_lifetime(options.max_lifetime)
        .sqlx_logging(options.log_statements);
    match backend {
        Backend::Sqlite => {
            let memory = is_sqlite_memory(url);
            if memory {
                opt.max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            }
            let busy = options.sqlite_busy_timeout;
            let cache = format!("-{}", options.sqlite_cache_kib.max(1));
            opt.map_sqlx_sqlite_opts(move |o| {
                let o = o
                    .foreign_keys(true)
                    .busy_timeout(busy)
                    .pragma("cache_size", cache.clone());
                if memory {
                    o
                } else {
                    o.journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                }
            });
        }
        Backend::Postgres => {
            opt.set_application_name("telcall");
        }
    }
    let db = Database::connect(opt)
        .await
        .map_err(|source| PersistenceError::Connect {
            url: redacted_url(url),
            source,
        })?;
    tracing::debug!(url = %redacted_url(url), ?backend, "database pool opened");
    Ok(db)
}

/// Applies every pending migration.
pub async fn migrate_up(db: &DatabaseConnection) -> Result<(), PersistenceError> {
    telcall_migration::migrate_up(db)
        .await
        .map_err(PersistenceError::Migration)
}

/// Names of the migrations not yet applied, oldest first (read-only).
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<Vec<String>, PersistenceError> {
    telcall_migration::pending_migrations(db)
        .await
        .map_err(PersistenceError::Migration)
}

/// Closes the pool, waiting for checked-out connections to be returned.
pub async fn close(db: DatabaseConnection) -> Result<(), PersistenceError> {
    db.close().await.map_err(PersistenceError::Database)
}

/// `url` fit for logs: the password, and a `password=` query parameter, replaced by `***`.
/// A URL that does not parse is reduced to its scheme.
pub fn redacted_url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        return format!("{scheme}:<unparsable URL>");
    };
    if parsed.password().is_some() {
        // Fails only for URLs that cannot have a password, which then have none.
        let _ = parsed.set_password(Some("***"));
    }
    if parsed
        .query_pairs()
        .any(|(k, _)| k.eq_ignore_ascii_case("password"))
    {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_by_scheme() {
        assert_eq!(
            Backend::from_url("sqlite::memory:").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::from_url("sqlite://telcall.db?mode=rwc").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::from_url("postgres://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db").unwrap(),
            Backend::Postgres
        );
        let err = Backend::from_url("mysql://u:secret@h/db").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(Backend::from_url("telcall.db").is_err());
    }

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(
            redacted_url("postgres://app:s3cret@db.example:5432/telcall"),
            "postgres://app:***@db.example:5432/telcall"
        );
        assert_eq!(
            redacted_url("postgresql://app@db/telcall?sslmode=require&password=s3cret"),
            "postgresql://app@db/telcall?sslmode=require&password=***"
        );
        assert_eq!(
            redacted_url("sqlite://telcall.db?mode=rwc"),
            "sqlite://telcall.db?mode=rwc"
        );
        assert_eq!(redacted_url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(
            redacted_url("postgres://a:pw@[bad"),
            "postgres:<unparsable URL>"
        );
    }

    #[tokio::test]
    async fn unsupported_and_unreachable_urls_fail_cleanly() {
        let err = connect("mysql://root:pw@localhost/x", &DbOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, PersistenceError::UnsupportedUrl { .. }));
        let options = DbOptions {
            connect_timeout: Duration::from_millis(500),
            acquire_timeout: Duration::from_millis(500),
            ..DbOptions::default()
        };
        // Port 9 (discard) is closed on test machines: the connection is refused.
        let err = connect("postgres://app:s3cret@127.0.0.1:9/none", &options)
            .await
            .unwrap_err();
        assert!(matches!(err, PersistenceError::Connect { .. }), "{err:?}");
        let mut cause: Option<&dyn std::error::Error> = Some(&err);
        while let Some(e) = cause {
            assert!(!e.to_string().contains("s3cret"), "{e}");
            cause = e.source();
        }
    }
}
