//! telcall's storage: SeaORM entities and [`SeaStore`], one type implementing every
//! repository trait of `telcall-domain` on SQLite and PostgreSQL.
//!
//! ```no_run
//! # async fn run() -> Result<(), telcall_persistence::PersistenceError> {
//! use telcall_persistence::{DbOptions, SeaStore};
//!
//! let store = SeaStore::connect("sqlite://telcall.db?mode=rwc", &DbOptions::default()).await?;
//! store.migrate_up().await?;
//! assert!(store.pending_migrations().await?.is_empty());
//! // Arc::new(store) as Arc<dyn telcall_domain::Repositories> …
//! store.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The schema comes only from `telcall-migration`. Timestamps are `DateTime<Utc>`: stored as
//! `timestamp with time zone` on PostgreSQL and, on SQLite, as text in one fixed-width UTC
//! format (see [`time`]) so that comparing the text compares the instants.

pub mod connect;
pub mod entity;
pub mod error;
pub mod legacy;
mod store;
pub mod time;

pub use connect::{
    Backend, DEFAULT_SQLITE_CACHE_KIB, DbOptions, close, connect, migrate_up, pending_migrations,
    redacted_url,
};
pub use error::{PersistenceError, repo_error};
pub use sea_orm::{DatabaseConnection, DbErr};
pub use store::SeaStore;
