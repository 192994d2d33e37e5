//! Opening databases: URL forms, `sqlite::memory:`, SQLite pragmas, migrations on a fresh
//! database, closing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use sea_orm::{ConnectionTrait, Statement};
use telcall_domain::{
    CallCode, CallRepository, FriendRepository, HealthCheck, UserId, UserProfile, UserRepository,
};
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

/// A migrated store on a fresh SQLite file opened with `options` (the directory keeps the
/// file alive).
async fn sqlite_store(options: &DbOptions) -> (tempfile::TempDir, SeaStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = SeaStore::connect(&url, options).await.unwrap();
    store.migrate_up().await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn sqlite_connections_get_the_configured_page_cache() {
    let (_dir, store) = sqlite_store(&DbOptions {
        max_connections: 3,
        min_connections: 3,
        sqlite_cache_kib: 300,
        ..DbOptions::default()
    })
    .await;
    // Reads in flight together are spread over the pooled connections: each has it.
    let (a, b, c) = tokio::join!(
        pragma(&store, "cache_size"),
        pragma(&store, "cache_size"),
        pragma(&store, "cache_size")
    );
    assert_eq!([a, b, c], ["-300", "-300", "-300"].map(String::from));
    // The default is small, not SQLite's own 2,000 KiB.
    let db = TestDb::sqlite().await;
    assert_eq!(
        pragma(&db.store, "cache_size").await,
        format!("-{}", telcall_persistence::DEFAULT_SQLITE_CACHE_KIB)
    );
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

/// Writers of one process on SQLite go one at a time: none of them meets SQLite's write lock
/// taken (so none sleeps in the busy handler, or fails when the busy timeout is zero).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_writes_of_one_process_queue_instead_of_meeting_a_busy_database() {
    let (_dir, store) = sqlite_store(&DbOptions {
        max_connections: 8,
        // Any write that found the lock taken would fail at once with "database is locked".
        sqlite_busy_timeout: std::time::Duration::ZERO,
        ..DbOptions::default()
    })
    .await;
    let mut users = Vec::new();
    for tg in 1..=30 {
        let profile = UserProfile {
            telegram_user_id: tg,
            ..UserProfile::default()
        };
        users.push(
            store
                .upsert_user(&profile, chrono::Utc::now())
                .await
                .unwrap()
                .id,
        );
    }
    // Sixteen writers at once: friend links of 30 people (870 rows in a transaction each)
    // and sign-ins.
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..16_i64 {
        let (store, users) = (store.clone(), users.clone());
        writers.spawn(async move {
            let mut failed = Vec::new();
            for round in 0..5_i64 {
                if let Err(e) = store.link_friends(&users, chrono::Utc::now()).await {
                    failed.push(e.to_string());
                }
                let profile = UserProfile {
                    telegram_user_id: 1_000 + w * 10 + round,
                    ..UserProfile::default()
                };
                if let Err(e) = store.upsert_user(&profile, chrono::Utc::now()).await {
                    failed.push(e.to_string());
                }
            }
            failed
        });
    }
    let mut failed = Vec::new();
    while let Some(result) = writers.join_next().await {
        failed.extend(result.unwrap());
    }
    assert!(
        failed.is_empty(),
        "{} of 160 writes failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    assert!(
        store
            .find_user_by_telegram_id(1_154)
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.is_friend(users[0], users[29]).await.unwrap());
    store.close().await.unwrap();
}

/// Writers queue in the order they came: under a steady stream of writes none waits much
/// longer than those ahead of it take, so none is refused as busy after its write wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_writers_are_served_in_turn_and_none_starves() {
    let (_dir, store) = sqlite_store(&DbOptions {
        max_connections: 8,
        // A hundred writers ahead take a few tens of milliseconds; a writer passed over
        // again and again (an unfair lock) waits past this while the others go on.
        sqlite_write_wait: std::time::Duration::from_secs(1),
        ..DbOptions::default()
    })
    .await;
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..100_i64 {
        let store = store.clone();
        writers.spawn(async move {
            let mut refused = 0;
            for round in 0..60_i64 {
                let profile = UserProfile {
                    telegram_user_id: 1 + w * 1_000 + round,
                    ..UserProfile::default()
                };
                if store
                    .upsert_user(&profile, chrono::Utc::now())
                    .await
                    .is_err()
                {
                    refused += 1;
                }
            }
            refused
        });
    }
    let mut refused = 0;
    while let Some(result) = writers.join_next().await {
        refused += result.unwrap();
    }
    assert_eq!(refused, 0, "sign-ins refused as busy out of 6,000");
}
