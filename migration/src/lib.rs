//! telcall's versioned database schema: the sea-orm-migration [`Migrator`] and the helpers
//! the server uses to apply migrations or refuse to start with pending ones.
//!
//! The schema is built only through these migrations, on SQLite and PostgreSQL alike; no
//! code path creates tables from entity definitions.

mod m20261123_000001_initial;
mod m20261201_040000_call_stats_one_row_per_user;

use sea_orm_migration::prelude::*;

pub use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
pub use sea_orm_migration::{MigrationStatus, MigratorTrait};

/// Every telcall migration, in the order they apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_initial::Migration),
            Box::new(m20261201_040000_call_stats_one_row_per_user::Migration),
        ]
    }
}

/// Names of every migration this build knows, oldest first.
pub fn migration_names() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}

/// Names of the migrations not yet applied to `db`, oldest first.
///
/// Read-only: it never creates the bookkeeping table, so it also works for a database user
/// without DDL rights. On an empty database every migration is pending.
pub async fn pending_migrations<C>(db: &C) -> Result<Vec<String>, DbErr>
where
    C: ConnectionTrait,
{
    Ok(Migrator::get_pending_migrations_read_only(db)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect())
}

/// Names of the migrations applied to `db`, oldest first (read-only, like
/// [`pending_migrations`]).
pub async fn applied_migrations<C>(db: &C) -> Result<Vec<String>, DbErr>
where
    C: ConnectionTrait,
{
    Ok(Migrator::get_applied_migrations_read_only(db)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect())
}

/// Applies every pending migration, each in its own transaction.
pub async fn migrate_up(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Rolls back the last `steps` applied migrations (all of them with `None`).
pub async fn migrate_down(db: &DatabaseConnection, steps: Option<u32>) -> Result<(), DbErr> {
    Migrator::down(db, steps).await
}
