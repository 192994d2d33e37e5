//! `telcall-migration`: applies, rolls back and reports telcall's migrations.
//!
//! Reads `DATABASE_URL` (or `-u <url>`); subcommands are sea-orm-migration's: `up`, `down`,
//! `status`, `fresh`, `refresh`, `reset`. Run `telcall-migration --help` for the list.

#[tokio::main]
async fn main() {
    sea_orm_migration::cli::run_cli(telcall_migration::Migrator).await;
}
