//! Opening databases: URL forms, `sqlite::memory:`, SQLite pragmas, migrations on a fresh
//! database, closing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use sea_orm::{ConnectionTrait, Statement};
use telcall_domain::{CallCode, CallRepository, HealthCheck, UserId, UserProfile, UserRepository};
use telcall_persistence::{DbOptions, SeaStore, connect, migrate_up, pending_migrations};

use common::TestDb;

async fn pragma(store: &SeaStore, name: &str) -> String {
    let db = store.connection();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("PRAGMA {name}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0)
        .map(|v| v.to_string())
        .or_else(|_| row.try_get_by_index::<String>(0))
        .unwrap()
}

#[tokio::test]
async fn sqlite_file_uses_wal_foreign_keys_and_busy_timeout() {
    let db = TestDb::sqlite().await;
    assert_eq!(pragma(&db.store, "journal_mode").await, "wal");
    assert_eq!(pragma(&db.store, "foreign_keys").await, "1");
    assert_eq!(pragma(&db.store, "busy_timeout").await, "5000");
    assert_eq!(pragma(&db.store, "synchronous").await, "1");
}

#[tokio::test]
async fn sqlite_memory_is_one_database() {
    let db = TestDb::memory().await;
    assert_eq!(pragma(&db.store, "foreign_keys").await, "1");
    let u = db
        .store
        .upsert_user(
            &UserProfile {
                telegram_user_id: 5,
                ..UserProfile::default()
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    // Concurrent work still sees the same database (one connection, never recycled).
    let (a, b) = tokio::join!(db.store.find_user(u.id), db.store.find_user(u.id));
    assert_eq!(a.unwrap(), b.unwrap());
    assert!(
        db.store
            .find_call_by_code(&CallCode::from_raw("x"))
            .await
            .unwrap()
            .is_none()
    );
    db.store.ping().await.unwrap();
}

#[tokio::test]
async fn fresh_database_has_pending_migrations_until_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display());
    let db = connect(&url, &DbOptions::default()).await.unwrap();
    assert_eq!(
        pending_migrations(&db).await.unwrap(),
        telcall_migration::migration_names()
    );
    migrate_up(&db).await.unwrap();
    assert!(pending_migrations(&db).await.unwrap().is_empty());
    // Idempotent.
    migrate_up(&db).await.unwrap();
    telcall_persistence::close(db).await.unwrap();
}

#[tokio::test]
async fn missing_sqlite_file_without_rwc_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("absent.db").display());
    let err = connect(&url, &DbOptions::default()).await.unwrap_err();
    assert!(
        matches!(err, telcall_persistence::PersistenceError::Connect { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn closed_store_reports_unavailable() {
    let db = TestDb::sqlite().await;
    db.store.connection().close_by_ref().await.unwrap();
    let err = db.store.find_user(UserId::new(1)).await.unwrap_err();
    assert!(
        matches!(err, telcall_domain::RepoError::Unavailable(_)),
        "{err:?}"
    );
    assert!(db.store.ping().await.is_err());
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL and run with --include-ignored"]
async fn postgresql_scheme_is_accepted() {
    let db = TestDb::postgres().await;
    let url = db.url.replacen("postgres://", "postgresql://", 1);
    assert!(url.starts_with("postgresql://"), "{url}");
    let store = SeaStore::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert!(store.pending_migrations().await.unwrap().is_empty());
    store.close().await.unwrap();
}
