//! A uniquely named PostgreSQL database per test, on the server of `TEST_DATABASE_URL`
//! (e.g. `postgres://postgres@127.0.0.1:5432/test`), dropped when the test ends.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, missing_docs)]

use telcall_migration::ConnectionTrait;
use telcall_persistence::{DatabaseConnection, DbOptions};

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .expect("set TEST_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test")
}

pub async fn admin() -> DatabaseConnection {
    telcall_persistence::connect(
        &admin_url(),
        &DbOptions {
            max_connections: 2,
            min_connections: 0,
            ..DbOptions::default()
        },
    )
    .await
    .unwrap()
}

/// A uniquely named database, dropped (forcefully, best effort) when this goes out of scope,
/// also when the test panics.
pub struct TestDb {
    pub name: String,
    admin: DatabaseConnection,
}

impl TestDb {
    pub async fn create() -> Self {
        let admin = admin().await;
        let name = format!("telcall_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        Self { name, admin }
    }

    /// The URL of this database, with `password` if given.
    pub fn url_with(&self, password: Option<&str>) -> String {
        let mut url = url::Url::parse(&admin_url()).unwrap();
        url.set_path(&format!("/{}", self.name));
        if password.is_some() {
            url.set_password(password).unwrap();
        }
        url.to_string()
    }

    pub fn url(&self) -> String {
        self.url_with(None)
    }

    pub async fn exec(&self, sql: &str) {
        self.admin.execute_unprepared(sql).await.unwrap();
    }

    /// Makes the database unreachable: no new connections, existing ones killed.
    pub async fn cut_off(&self) {
        self.exec(&format!(
            "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS false",
            self.name
        ))
        .await;
        self.exec(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            self.name
        ))
        .await;
    }

    pub async fn restore(&self) {
        self.exec(&format!(
            "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true",
            self.name
        ))
        .await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime: use a runtime of our own on another thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = telcall_persistence::connect(
                    &admin_url(),
                    &DbOptions {
                        max_connections: 1,
                        ..DbOptions::default()
                    },
                )
                .await
                {
                    let _ = admin.execute_unprepared(&sql).await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}
