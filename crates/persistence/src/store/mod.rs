//! [`SeaStore`]: the domain repository traits over one SeaORM connection pool.
//!
//! Every statement is built with SeaQuery and run through [`run_all`], [`run_one`] or
//! [`run_exec`], which render it for the connection's backend and, on SQLite, rewrite bound
//! timestamps into the one stored text format ([`crate::time`]). Writes that need the stored
//! row back use `RETURNING` (PostgreSQL, and SQLite ≥ 3.35 — the bundled SQLite is newer).

mod calls;
mod friends;
mod participants;
mod stats;
mod users;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, FromQueryResult,
    SqliteTransactionMode, StatementBuilder, TransactionOptions, TransactionTrait,
};
use telcall_domain::{HealthCheck, RepoError};

use crate::connect::{self, DbOptions};
use crate::error::{IntoRepo, PersistenceError};
use crate::time::normalize_statement;

/// Storage for telcall on SQLite or PostgreSQL; implements every repository trait of
/// `telcall-domain` (use it as `Arc<dyn Repositories>`). Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct SeaStore {
    db: DatabaseConnection,
    /// SQLite only: held around every write (see [`SeaStore::writing`]), and how long a
    /// write waits for it. Tokio's mutex is fair (writers get it in the order they asked):
    /// with a lock that lets a newcomer take it before a woken waiter, a steady stream of
    /// sign-ins passes some writers over until their wait runs out.
    writes: Option<(Arc<tokio::sync::Mutex<()>>, Duration)>,
}

impl SeaStore {
    /// A store over an open pool.
    pub fn new(db: DatabaseConnection) -> Self {
        Self::with_write_wait(db, DbOptions::default().sqlite_write_wait)
    }

    /// A store whose SQLite writes wait at most `wait` for one another.
    fn with_write_wait(db: DatabaseConnection, wait: Duration) -> Self {
        let writes = (db.get_database_backend() == DbBackend::Sqlite)
            .then(|| (Arc::new(tokio::sync::Mutex::new(())), wait));
        Self { db, writes }
    }

    /// On SQLite, waits for this store's other writes to finish; the guard is held for the
    /// whole write. SQLite takes one writer at a time, and a connection that finds the
    /// write lock taken sleeps in steps of 1 to 100 ms (the busy timeout) instead of being
    /// woken when it is free: with writes queued here, concurrent sign-ins, call changes and
    /// the presence writer follow one another at once, and the busy timeout is left for
    /// other processes (a `telcall migrate` or import beside the server). PostgreSQL locks
    /// rows, not the database: no guard there. A write that waited `DbOptions::sqlite_write_wait`
    /// (5 s) for the others is refused as storage unavailable, as SQLite refuses one that
    /// waited its busy timeout.
    async fn writing(&self) -> Result<Option<tokio::sync::MutexGuard<'_, ()>>, RepoError> {
        let Some((gate, wait)) = &self.writes else {
            return Ok(None);
        };
        match tokio::time::timeout(*wait, gate.lock()).await {
            Ok(guard) => Ok(Some(guard)),
            Err(_) => Err(RepoError::Unavailable(format!(
                "database busy: other writes held it for {} ms",
                wait.as_millis()
            ))),
        }
    }

    /// Opens a pool to `url` (see [`connect::connect`]). Does not migrate.
    pub async fn connect(url: &str, options: &DbOptions) -> Result<Self, PersistenceError> {
        connect::connect(url, options)
            .await
            .map(|db| Self::with_write_wait(db, options.sqlite_write_wait))
    }

    /// The underlying pool.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Applies every pending migration.
    pub async fn migrate_up(&self) -> Result<(), PersistenceError> {
        connect::migrate_up(&self.db).await
    }

    /// Names of the migrations not yet applied, oldest first.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, PersistenceError> {
        connect::pending_migrations(&self.db).await
    }

    /// Closes the pool.
    pub async fn close(self) -> Result<(), PersistenceError> {
        connect::close(self.db).await
    }
}

impl From<DatabaseConnection> for SeaStore {
    fn from(db: DatabaseConnection) -> Self {
        Self::new(db)
    }
}

#[async_trait]
impl HealthCheck for SeaStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn ping(&self) -> Result<(), RepoError> {
        self.db
            .ping()
            .await
            .map_err(|e| RepoError::Unavailable(e.to_string()))
    }
}

/// Renders `stmt` for `conn`'s backend, with SQLite timestamps normalized.
fn build<C: ConnectionTrait, S: StatementBuilder>(conn: &C, stmt: &S) -> sea_orm::Statement {
    let mut built = conn.get_database_backend().build(stmt);
    normalize_statement(&mut built);
    built
}

/// Runs a row-returning statement and maps every row.
async fn run_all<M, C, S>(conn: &C, stmt: &S) -> Result<Vec<M>, RepoError>
where
    M: FromQueryResult,
    C: ConnectionTrait,
    S: StatementBuilder,
{
    M::find_by_statement(build(conn, stmt))
        .all(conn)
        .await
        .repo()
}

/// Runs a row-returning statement and maps the first row, if any.
async fn run_one<M, C, S>(conn: &C, stmt: &S) -> Result<Option<M>, RepoError>
where
    M: FromQueryResult,
    C: ConnectionTrait,
    S: StatementBuilder,
{
    M::find_by_statement(build(conn, stmt))
        .one(conn)
        .await
        .repo()
}

/// Row counts of the multi-row statements [`shaped_chunks`] cuts a list into.
const SHAPES: [usize; 5] = [256, 64, 16, 4, 1];

/// `items` in consecutive chunks whose lengths are taken from [`SHAPES`], largest first
/// (37 items: 16, 16, 4, 1). A statement with one placeholder group per row is prepared
/// and cached per connection for each row count it is run with; with these few counts the
/// cache holds a handful of statements, not one per batch size seen (large prepared
/// statements that would pin memory for as long as the connection lives).
fn shaped_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = SHAPES.into_iter().find(|&s| s <= items.len())?;
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

/// Runs a statement that returns no rows; the number of rows it affected.
async fn run_exec<C, S>(conn: &C, stmt: &S) -> Result<u64, RepoError>
where
    C: ConnectionTrait,
    S: StatementBuilder,
{
    conn.execute_raw(build(conn, stmt))
        .await
        .map(|r| r.rows_affected())
        .repo()
}

/// Begins a transaction that will write. On SQLite it takes the write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`, waiting up to the busy timeout): a deferred transaction that reads
/// first fails with `SQLITE_BUSY_SNAPSHOT` ("database is locked", not retried by the busy
/// timeout) when another connection commits a write between its read and its first write.
/// Elsewhere an ordinary `BEGIN`.
async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, RepoError> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
    .repo()
}

/// A write with `RETURNING` gave no row: cannot happen for the statements used here.
fn no_row(what: &str) -> RepoError {
    RepoError::Other(format!("{what} returned no row"))
}

#[cfg(test)]
mod shape_tests {
    use super::shaped_chunks;

    #[test]
    fn chunks_cover_everything_in_order_with_few_sizes() {
        for n in 0..700_usize {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = shaped_chunks(&items).collect();
            assert_eq!(chunks.concat(), items, "{n}");
            assert!(
                chunks
                    .iter()
                    .all(|c| [256, 64, 16, 4, 1].contains(&c.len()))
            );
        }
        let items = [0; 37];
        let sizes: Vec<usize> = shaped_chunks(&items).map(<[_]>::len).collect();
        assert_eq!(sizes, [16, 16, 4, 1]);
    }
}
