//! Test databases: a fresh, migrated database per test on SQLite (a temporary file, or
//! `sqlite::memory:`) or PostgreSQL (a uniquely named database on `TEST_DATABASE_URL`'s
//! server, dropped when the test ends).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use sea_orm::{ConnectionTrait, Database};
use telcall_persistence::{DbOptions, SeaStore};

/// Why the PostgreSQL tests are ignored by default.
pub const PG_IGNORE: &str =
    "needs PostgreSQL: set TEST_DATABASE_URL and run with --include-ignored";

/// A migrated store and whatever keeps its database alive.
pub struct TestDb {
    /// The store under test.
    pub store: SeaStore,
    /// The URL it was opened with.
    pub url: String,
    guard: Guard,
}

enum Guard {
    SqliteFile(#[allow(dead_code)] tempfile::TempDir),
    Memory,
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh SQLite database file in a temporary directory, migrated.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("telcall.db").display()
        );
        let store = open(&url).await;
        Self {
            store,
            url,
            guard: Guard::SqliteFile(dir),
        }
    }

    /// A fresh in-memory SQLite database, migrated.
    pub async fn memory() -> Self {
        let url = "sqlite::memory:".to_owned();
        let store = open(&url).await;
        Self {
            store,
            url,
            guard: Guard::Memory,
        }
    }

    /// A fresh PostgreSQL database on the server of `TEST_DATABASE_URL`, migrated.
    pub async fn postgres() -> Self {
        let (admin_url, name, url) = create_pg_database().await;
        let store = open(&url).await;
        Self {
            store,
            url,
            guard: Guard::Postgres { admin_url, name },
        }
    }
}

/// Creates an empty PostgreSQL database; returns the admin URL, its name and its URL.
pub async fn create_pg_database() -> (String, String, String) {
    let admin_url = std::env::var("TEST_DATABASE_URL")
        .expect("TEST_DATABASE_URL must point at a PostgreSQL server for this test");
    let name = format!("telcall_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(admin_url.as_str()).await.unwrap();
    admin
        .execute_unprepared(&format!(r#"CREATE DATABASE "{name}""#))
        .await
        .unwrap();
    admin.close().await.unwrap();
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&name);
    (admin_url, name, url.to_string())
}

/// Drops a database made by [`create_pg_database`], even with connections still open.
pub fn drop_pg_database(admin_url: &str, name: &str) {
    let admin_url = admin_url.to_owned();
    let sql = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
    // Drop cannot await, and may run inside the test's runtime: use a runtime of our own.
    let dropped = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let admin = Database::connect(admin_url.as_str()).await?;
            admin.execute_unprepared(&sql).await?;
            admin.close().await
        })
    })
    .join();
    if !matches!(dropped, Ok(Ok(()))) {
        eprintln!("could not drop test database {name}: {dropped:?}");
    }
}

async fn open(url: &str) -> SeaStore {
    let options = DbOptions {
        max_connections: 4,
        ..DbOptions::default()
    };
    let store = SeaStore::connect(url, &options).await.unwrap();
    store.migrate_up().await.unwrap();
    store
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Guard::Postgres { admin_url, name } = &self.guard {
            drop_pg_database(admin_url, name);
        }
    }
}
