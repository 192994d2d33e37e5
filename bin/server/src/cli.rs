//! The `telcall` command line: `serve` and `migrate`.

use clap::{Parser, Subcommand, ValueEnum};

/// telcall: signaling and REST backend for group calls in Telegram Mini Apps.
#[derive(Debug, Parser)]
#[command(name = "telcall", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve {
        /// Zero-configuration development mode (embedded SQLite, random secrets,
        /// permissive CORS, migrations applied). Never use in production.
        #[arg(long)]
        dev: bool,
        /// Apply pending migrations before serving.
        #[arg(long)]
        migrate: bool,
    },
    /// Move the database schema.
    Migrate {
        /// The migration action.
        #[arg(value_enum, default_value_t = MigrateAction::Up)]
        action: MigrateAction,
    },
}

/// What `telcall migrate` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the last applied migration.
    Down,
    /// List migrations and whether each is applied.
    Status,
    /// Drop everything and apply every migration again.
    Fresh,
}

/// Logs a loud warning when running in development mode.
pub fn warn_if_dev(settings: &crate::config::Settings) {
    if settings.debug {
        tracing::warn!(
            "DEVELOPMENT MODE: embedded defaults, a development bot token, a random \
             per-process secret key and permissive CORS. NOT FOR PRODUCTION."
        );
    }
}

/// Runs `telcall migrate <action>` against the configured database.
pub async fn migrate(
    settings: &crate::config::Settings,
    action: MigrateAction,
) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    use telcall_migration::{Migrator, MigratorTrait};
    tracing::info!(database = %settings.database_url_redacted(), action = ?action, "migrating");
    let db = telcall_persistence::SeaStore::connect(
        settings.database_url.expose_secret(),
        &telcall_persistence::DbOptions {
            connect_timeout: settings.db_connect_timeout,
            acquire_timeout: settings.db_connect_timeout,
            ..Default::default()
        },
    )
    .await?;
    let conn = db.connection();
    match action {
        MigrateAction::Up => telcall_migration::migrate_up(conn).await?,
        MigrateAction::Down => telcall_migration::migrate_down(conn, Some(1)).await?,
        MigrateAction::Fresh => Migrator::fresh(conn).await?,
        MigrateAction::Status => {
            let applied = telcall_migration::applied_migrations(conn).await?;
            for name in telcall_migration::migration_names() {
                let state = if applied.contains(&name) {
                    "applied"
                } else {
                    "pending"
                };
                println!("{state:8} {name}");
            }
        }
    }
    db.close().await?;
    Ok(())
}
