//! Errors of this crate, and the mapping of SeaORM errors onto the domain's [`RepoError`].
//!
//! Messages carry the database's own short description (for the server's logs), never the
//! SQL text or bound values; clients only ever see the server's generic 503 body.

use sea_orm::{DbErr, RuntimeErr, SqlErr};
use telcall_domain::RepoError;

/// Setting up storage failed: a bad URL, an unreachable server, a failed migration.
#[derive(Debug, thiserror::Error)]
pub enum PersistenceError {
    /// The URL names no supported backend.
    #[error("unsupported database URL {url}: expected sqlite://, postgres:// or postgresql://")]
    UnsupportedUrl {
        /// The URL with any password hidden.
        url: String,
    },
    /// The URL could not be parsed.
    #[error("invalid database URL {url}: {reason}")]
    InvalidUrl {
        /// The URL with any password hidden (or a placeholder when unparsable).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Opening the pool failed.
    #[error("cannot connect to database {url}")]
    Connect {
        /// The URL with any password hidden.
        url: String,
        /// The driver's error.
        #[source]
        source: DbErr,
    },
    /// Applying, rolling back or inspecting migrations failed.
    #[error("database migration failed")]
    Migration(#[source] DbErr),
    /// Any other database error.
    #[error("database error")]
    Database(#[source] DbErr),
}

/// Maps a SeaORM error onto the domain's storage error.
///
/// Unreachable server, pool exhaustion and timeouts (and SQLite's busy/locked) become
/// [`RepoError::Unavailable`]; unique violations [`RepoError::Conflict`]; foreign-key
/// violations [`RepoError::MissingReference`]; everything else [`RepoError::Other`].
pub fn repo_error(err: DbErr) -> RepoError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(msg)) => return RepoError::Conflict(msg),
        Some(SqlErr::ForeignKeyConstraintViolation(msg)) => {
            return RepoError::MissingReference(msg);
        }
        _ => {}
    }
    if is_unavailable(&err) {
        RepoError::Unavailable(err.to_string())
    } else {
        RepoError::Other(err.to_string())
    }
}

/// Whether `err` means the database could not be reached or did not answer in time.
fn is_unavailable(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            sqlx_unavailable(e)
        }
        _ => false,
    }
}

fn sqlx_unavailable(err: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match err {
        Error::Io(_)
        | Error::Tls(_)
        | Error::Protocol(_)
        | Error::PoolTimedOut
        | Error::PoolClosed
        | Error::WorkerCrashed => true,
        Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db
                .try_downcast_ref::<sea_orm::sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                // Class 08: connection exception; 57P0x: shutdown / cannot connect now;
                // 53300: too many connections; 57014: statement timeout / cancelled.
                code.starts_with("08")
                    || code.starts_with("57P0")
                    || matches!(&*code, "53300" | "57014")
            } else if db
                .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some()
            {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
                code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
            } else {
                false
            }
        }
        _ => false,
    }
}

/// Maps a SeaORM error onto [`RepoError`]; shorthand for `map_err`.
pub(crate) trait IntoRepo<T> {
    /// The result with its error mapped by [`repo_error`].
    fn repo(self) -> Result<T, RepoError>;
}

impl<T> IntoRepo<T> for Result<T, DbErr> {
    fn repo(self) -> Result<T, RepoError> {
        self.map_err(repo_error)
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnAcquireErr;

    use super::*;

    #[test]
    fn pool_errors_are_unavailable() {
        assert!(matches!(
            repo_error(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
            RepoError::Unavailable(_)
        ));
        assert!(matches!(
            repo_error(DbErr::Conn(RuntimeErr::Internal("refused".into()))),
            RepoError::Unavailable(_)
        ));
        let timed_out = sea_orm::sqlx::Error::PoolTimedOut;
        assert!(matches!(
            repo_error(DbErr::Query(RuntimeErr::SqlxError(timed_out.into()))),
            RepoError::Unavailable(_)
        ));
    }

    #[test]
    fn other_errors_are_other() {
        assert!(matches!(
            repo_error(DbErr::Custom("boom".into())),
            RepoError::Other(_)
        ));
    }
}
