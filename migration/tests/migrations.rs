//! The migrations on real databases: up, status, down, up again, on SQLite and PostgreSQL;
//! and the `telcall-migration` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use sea_orm_migration::SchemaManager;
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use telcall_migration::{
    MigrationStatus, Migrator, MigratorTrait, applied_migrations, migrate_down, migrate_up,
    migration_names, pending_migrations,
};

const TABLES: [&str; 5] = [
    "users",
    "calls",
    "participants",
    "friend_links",
    "call_stats",
];

async fn tables_present(db: &DatabaseConnection) -> Vec<bool> {
    let manager = SchemaManager::new(db);
    let mut present = Vec::new();
    for table in TABLES {
        present.push(manager.has_table(table).await.unwrap());
    }
    present
}

async fn up_down_up(db: &DatabaseConnection) {
    assert_eq!(pending_migrations(db).await.unwrap(), migration_names());
    assert!(applied_migrations(db).await.unwrap().is_empty());

    migrate_up(db).await.unwrap();
    assert!(pending_migrations(db).await.unwrap().is_empty());
    assert_eq!(applied_migrations(db).await.unwrap(), migration_names());
    assert_eq!(tables_present(db).await, [true; 5]);
    let statuses = Migrator::get_migration_with_status(db).await.unwrap();
    assert!(
        statuses
            .iter()
            .all(|m| m.status() == MigrationStatus::Applied)
    );

    migrate_down(db, None).await.unwrap();
    assert_eq!(pending_migrations(db).await.unwrap(), migration_names());
    assert_eq!(tables_present(db).await, [false; 5]);

    migrate_up(db).await.unwrap();
    assert!(pending_migrations(db).await.unwrap().is_empty());
    assert_eq!(tables_present(db).await, [true; 5]);
    // A second `up` has nothing to do.
    migrate_up(db).await.unwrap();
}

#[tokio::test]
async fn sqlite_up_down_up() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    let db = Database::connect(url.as_str()).await.unwrap();
    up_down_up(&db).await;
    db.close().await.unwrap();
}

#[tokio::test]
async fn sqlite_memory_up_down_up() {
    let db = Database::connect("sqlite::memory:").await.unwrap();
    up_down_up(&db).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL and run with --include-ignored"]
async fn postgres_up_down_up() {
    let pg = PgDatabase::create().await;
    let db = Database::connect(pg.url.as_str()).await.unwrap();
    up_down_up(&db).await;
    db.close().await.unwrap();
    pg.drop().await;
}

/// Runs `sql` on `db`.
async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql).await.unwrap();
}

/// `(user_id, audio_packets_lost, rtt_ms, duration_seconds, video_packets_sent)` of every
/// stats row, by user.
async fn stats_rows(
    db: &DatabaseConnection,
) -> Vec<(i64, Option<i64>, Option<f64>, Option<f64>, Option<i64>)> {
    let sql = "SELECT user_id, audio_packets_lost, rtt_ms, duration_seconds, video_packets_sent \
               FROM call_stats ORDER BY user_id";
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "user_id").unwrap(),
                r.try_get("", "audio_packets_lost").unwrap(),
                r.try_get("", "rtt_ms").unwrap(),
                r.try_get("", "duration_seconds").unwrap(),
                r.try_get("", "video_packets_sent").unwrap(),
            )
        })
        .collect()
}

/// Data written before the one-row-per-user migration — duplicates and figures nobody
/// measured — is repaired by it instead of making it fail; afterwards a duplicate is
/// refused, and rolling back lifts that.
async fn stats_migration_repairs_existing_rows(db: &DatabaseConnection) {
    Migrator::up(db, Some(1)).await.unwrap();
    let at = "'2026-11-23 10:00:00+00:00'";
    for tg in 1..=3 {
        exec(
            db,
            &format!("INSERT INTO users (telegram_user_id, created_at, updated_at) VALUES ({tg}, {at}, {at})"),
        )
        .await;
    }
    exec(
        db,
        &format!(
            "INSERT INTO calls (code, creator_id, is_video_enabled, status, created_at, expires_at) \
             VALUES ('c', 1, false, 'active', {at}, {at})"
        ),
    )
    .await;
    let report = |user: i64, lost: &str, rtt: &str, duration: &str, video_sent: &str| {
        format!(
            "INSERT INTO call_stats (call_id, user_id, audio_packets_lost, rtt_ms, duration_seconds, \
             video_packets_sent, created_at) VALUES (1, {user}, {lost}, {rtt}, {duration}, {video_sent}, {at})"
        )
    };
    // User 1 reported three times; only the newest report stays.
    for lost in ["1", "2", "3"] {
        exec(db, &report(1, lost, "10.0", "60.0", "NULL")).await;
    }
    // User 2 sent figures no call produces: they are cleared.
    exec(
        db,
        &report(2, "9223372036854775807", "-5.0", "1e300", "1000000001"),
    )
    .await;
    exec(
        db,
        &report(2, "9223372036854775807", "-5.0", "1e300", "1000000001"),
    )
    .await;
    // User 3's figures sit exactly at the bounds: they stay.
    exec(db, &report(3, "1000000000", "60000.0", "604800.0", "0")).await;

    migrate_up(db).await.unwrap();
    assert_eq!(
        stats_rows(db).await,
        [
            (1, Some(3), Some(10.0), Some(60.0), None),
            (2, None, None, None, None),
            (
                3,
                Some(1_000_000_000),
                Some(60_000.0),
                Some(604_800.0),
                Some(0)
            ),
        ]
    );
    let duplicate = report(1, "4", "NULL", "NULL", "NULL");
    assert!(db.execute_unprepared(&duplicate).await.is_err());

    migrate_down(db, Some(1)).await.unwrap();
    exec(db, &duplicate).await;
    assert_eq!(stats_rows(db).await.len(), 4);
}

#[tokio::test]
async fn sqlite_stats_migration_repairs_existing_rows() {
    let db = Database::connect("sqlite::memory:").await.unwrap();
    stats_migration_repairs_existing_rows(&db).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL and run with --include-ignored"]
async fn postgres_stats_migration_repairs_existing_rows() {
    let pg = PgDatabase::create().await;
    let db = Database::connect(pg.url.as_str()).await.unwrap();
    stats_migration_repairs_existing_rows(&db).await;
    db.close().await.unwrap();
    pg.drop().await;
}

#[test]
fn cli_up_status_down_fresh_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display());
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_telcall-migration"))
            .args(args)
            .env("DATABASE_URL", &url)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?} failed: {text}");
        text
    };
    let name = &migration_names()[0];
    let status = run(&["status"]);
    assert!(
        status.contains(name) && status.contains("Pending"),
        "{status}"
    );
    run(&["up"]);
    let status = run(&["status"]);
    assert!(
        status.contains(name) && status.contains("Applied"),
        "{status}"
    );
    run(&["down"]);
    let status = run(&["status"]);
    assert!(status.contains("Pending"), "{status}");
    run(&["fresh"]);
    let status = run(&["status"]);
    assert!(status.contains("Applied"), "{status}");
}

/// A uniquely named database on the server of `TEST_DATABASE_URL`.
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> Self {
        let admin_url = std::env::var("TEST_DATABASE_URL")
            .expect("TEST_DATABASE_URL must point at a PostgreSQL server for this test");
        let name = format!("telcall_mig_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(admin_url.as_str()).await.unwrap();
        admin
            .execute_unprepared(&format!(r#"CREATE DATABASE "{name}""#))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let (without_query, query) = admin_url
            .split_once('?')
            .map_or((admin_url.as_str(), None), |(u, q)| (u, Some(q)));
        let (base, _) = without_query
            .rsplit_once('/')
            .expect("TEST_DATABASE_URL names a database");
        let url = match query {
            Some(q) => format!("{base}/{name}?{q}"),
            None => format!("{base}/{name}"),
        };
        Self {
            admin_url,
            name,
            url,
        }
    }

    async fn drop(self) {
        let admin = Database::connect(self.admin_url.as_str()).await.unwrap();
        admin
            .execute_unprepared(&format!(
                r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#,
                self.name
            ))
            .await
            .unwrap();
        admin.close().await.unwrap();
    }
}
