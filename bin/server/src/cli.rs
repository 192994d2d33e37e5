//! The `telcall` command line: `serve`, `migrate`, `import-legacy` and `bot`.

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
    /// Move the database schema of DATABASE_URL (required: without it, and without
    /// `--dev`, nothing is touched).
    Migrate {
        /// The migration action.
        #[arg(value_enum, default_value_t = MigrateAction::Up)]
        action: MigrateAction,
        /// Without DATABASE_URL, use the development database (`sqlite://telcall.db` in the
        /// working directory).
        #[arg(long)]
        dev: bool,
    },
    /// Import the older backend's database (users, calls with their codes, participants,
    /// friend links, call statistics) into the configured, migrated DATABASE_URL.
    /// Idempotent: running it again imports nothing twice and completes an interrupted run.
    ImportLegacy {
        /// URL of the older database: sqlite://… or postgres://… (opened read-only).
        #[arg(long, value_name = "URL")]
        from: String,
        /// Read, map and check everything; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Rows per page read and per write transaction.
        #[arg(long, value_name = "N", default_value_t = telcall_persistence::legacy::DEFAULT_BATCH,
              value_parser = clap::value_parser!(u64).range(1..=telcall_persistence::legacy::MAX_BATCH))]
        batch: u64,
    },
    /// Ask Telegram about the bot and its webhook, or (de)register the webhook.
    Bot {
        /// What to do.
        #[command(subcommand)]
        action: BotAction,
    },
}

/// What `telcall bot` does.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum BotAction {
    /// Print who the bot is (getMe) and its webhook status (getWebhookInfo).
    Info,
    /// Register the webhook (setWebhook with the secret and the update kinds telcall
    /// handles), then print its status.
    SetWebhook {
        /// The public HTTPS URL of `/api/telegram/webhook`; BOT_WEBHOOK_URL when omitted.
        url: Option<String>,
    },
    /// Remove the webhook (deleteWebhook; pending updates are kept).
    DeleteWebhook,
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

/// `telcall migrate` moves a schema only where it was told to: DATABASE_URL, or the
/// development database when `dev` asks for it. A forgotten DATABASE_URL must not make
/// `migrate fresh` empty a `telcall.db` that happens to lie in the working directory.
pub fn check_migrate_target(settings: &crate::config::Settings, dev: bool) -> anyhow::Result<()> {
    if !settings.database_url_configured && !dev {
        anyhow::bail!(
            "DATABASE_URL is required by `telcall migrate` but not set (pass --dev to use the \
             development database {})",
            crate::config::DEV_DATABASE_URL
        );
    }
    Ok(())
}

/// `telcall import-legacy` writes only into DATABASE_URL: without it the import would land
/// in the development database of the working directory, which nobody serves from.
pub fn check_import_target(settings: &crate::config::Settings) -> anyhow::Result<()> {
    if !settings.database_url_configured {
        anyhow::bail!(
            "DATABASE_URL is required by `telcall import-legacy` but not set (the database to \
             import into, migrated with `telcall migrate up`)"
        );
    }
    Ok(())
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
        MigrateAction::Fresh => {
            // Roll back through the migrations first (they drop their tables children
            // first): sea-orm-migration's own drop turns SQLite's foreign-key check off
            // inside a transaction, where that pragma does nothing, so dropping a parent
            // table before its children fails there.
            telcall_migration::migrate_down(conn, None).await?;
            Migrator::fresh(conn).await?
        }
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

/// Runs `telcall bot <action>`: prints what Telegram answered as JSON on stdout. The token
/// is never printed.
pub async fn bot(settings: &crate::config::Settings, action: BotAction) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    if settings.bot_token.expose_secret() == crate::config::DEV_BOT_TOKEN {
        anyhow::bail!("BOT_TOKEN is required for `telcall bot`");
    }
    let api =
        telcall_telegram::BotApi::new(&settings.telegram_api_base, settings.bot_token.clone())?;
    let answer = match action {
        BotAction::Info => serde_json::json!({
            "me": api.get_me().await?,
            "webhook": api.get_webhook_info().await?,
        }),
        BotAction::SetWebhook { url } => {
            let url = match url.or_else(|| settings.bot.webhook_url.clone()) {
                Some(u) => u,
                None => anyhow::bail!("give the webhook URL as an argument or set BOT_WEBHOOK_URL"),
            };
            if !url.starts_with("https://") {
                anyhow::bail!("the webhook URL must start with https://");
            }
            let registration =
                telcall_telegram::registration::registration(&url, &settings.webhook_secret());
            serde_json::json!({
                "setWebhook": api.set_webhook(&registration).await?,
                "webhook": api.get_webhook_info().await?,
            })
        }
        BotAction::DeleteWebhook => serde_json::json!({
            "deleteWebhook": api.delete_webhook().await?,
            "webhook": api.get_webhook_info().await?,
        }),
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
