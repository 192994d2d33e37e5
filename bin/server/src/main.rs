//! The `telcall` binary: parse the command line, load settings, run.

use clap::Parser;
use telcall_server::cli::{Cli, Command};
use telcall_server::{Application, BuildOptions, Settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `migrate` and `import-legacy` need only the database settings and `bot` only the
    // bot's: the server's other secrets may be absent.
    let dev = matches!(
        cli.command,
        Command::Serve { dev: true, .. }
            | Command::Migrate { .. }
            | Command::ImportLegacy { .. }
            | Command::Bot { .. }
    );
    let settings = match Settings::load(dev) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("telcall: configuration error: {e}");
            std::process::exit(2);
        }
    };
    let target = match &cli.command {
        Command::Migrate { dev, .. } => telcall_server::cli::check_migrate_target(&settings, *dev),
        Command::ImportLegacy { .. } => telcall_server::cli::check_import_target(&settings),
        _ => Ok(()),
    };
    if let Err(e) = target {
        eprintln!("telcall: configuration error: {e}");
        std::process::exit(2);
    }
    telemetry::init(settings.log_format, std::io::stdout);
    match cli.command {
        Command::Serve { migrate, .. } => {
            telcall_server::cli::warn_if_dev(&settings);
            let app = Application::build(
                settings,
                BuildOptions {
                    migrate,
                    ..Default::default()
                },
            )
            .await?;
            app.run_until_stopped().await
        }
        Command::Migrate { action, .. } => telcall_server::cli::migrate(&settings, action).await,
        Command::ImportLegacy {
            from,
            dry_run,
            batch,
        } => telcall_server::import_legacy::run(&settings, &from, dry_run, batch).await,
        Command::Bot { action } => telcall_server::cli::bot(&settings, action).await,
    }
}
