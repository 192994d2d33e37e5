//! The `telcall` binary: parse the command line, load settings, run.

use clap::Parser;
use telcall_server::cli::{Cli, Command};
use telcall_server::{Application, BuildOptions, Settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `migrate` needs only the database settings: the server's secrets may be absent.
    let dev = matches!(
        cli.command,
        Command::Serve { dev: true, .. } | Command::Migrate { .. }
    );
    let settings = match Settings::load(dev) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("telcall: configuration error: {e}");
            std::process::exit(2);
        }
    };
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
        Command::Migrate { action } => telcall_server::cli::migrate(&settings, action).await,
    }
}
