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
pub async fn migrate(settings: &crate::config::Settings, action: MigrateAction) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let db = telcall_persistence::SeaStore::connect(
        settings.database_url.expose_secret(),
        &telcall_persistence::ConnectOptions::default(),
    )
    .await?;
    let conn = db.connection();
    match action {
        MigrateAction::Up => telcall_migration::apply_all(conn).await?,
        MigrateAction::Down => telcall_migration::revert_last(conn).await?,
        MigrateAction::Fresh => telcall_migration::fresh(conn).await?,
        MigrateAction::Status => {
            for (name, applied) in telcall_migration::status(conn).await? {
                println!("{} {name}", if applied { "applied" } else { "pending" });
            }
        }
    }
    db.close().await;
    Ok(())
}
