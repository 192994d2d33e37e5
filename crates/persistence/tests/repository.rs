//! The repository suite, written once and run against SQLite and PostgreSQL.
//!
//! Each case is an async fn taking a freshly migrated store; `backend_tests!` turns every
//! case into one `#[tokio::test]` per backend. The PostgreSQL ones are ignored unless asked
//! for (`TEST_DATABASE_URL=postgres://… cargo test -- --include-ignored`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestDb;

macro_rules! backend_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = super::TestDb::sqlite().await;
                    super::cases::$case(&db.store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: set TEST_DATABASE_URL and run with --include-ignored"]
                async fn $case() {
                    let db = super::TestDb::postgres().await;
                    super::cases::$case(&db.store).await;
                }
            )*
        }
    };
}

backend_tests!(
    ping_answers,
    schema_matches_entities,
    upsert_user_inserts_then_refreshes_keeping_id,
    find_user_by_id,
    find_user_by_telegram_id,
    create_and_find_call,
    duplicate_call_code_is_conflict,
    unknown_creator_is_missing_reference,
    active_calls_by_creator_oldest_first,
    set_call_status_sets_ended_at,
    set_call_status_finishes_a_call_once,
    expire_due_calls_only_touches_due_active_calls,
    end_calls_created_by_only_touches_old_active_calls,
    expiry_compares_sub_second_instants,
    timestamps_round_trip_in_utc,
    participants_join_leave_list,
    stays_continue_close_and_list_open,
    link_friends_both_directions_and_refreshes,
    link_friends_large_group_in_batches,
    record_presence_applies_a_batch_in_order,
    record_presence_is_all_or_nothing,
    record_presence_holds_against_concurrent_writes,
    record_presence_in_one_batch_is_as_one_change_at_a_time,
    list_friends_orders_and_pages,
    friend_search_is_case_insensitive_and_literal,
    delete_friends_removes_both_directions,
    is_friend_follows_the_links,
    stats_summary_with_zero_rows,
    stats_summary_over_several_rows,
    stats_summary_never_overflows,
    stats_one_row_per_user_and_call,
    has_participated_follows_the_stays,
    stats_by_user_newest_first_with_code,
    deleting_a_user_cascades,
    foreign_keys_hold_on_every_pooled_connection,
);

mod cases {
    use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
    use sea_orm::ActiveValue::{NotSet, Set};
    use sea_orm::{
        ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait, ModelTrait, Statement,
    };
    use telcall_domain::{
        Call, CallCode, CallId, CallRepository, CallStatsInput, CallStatsRepository, CallStatus,
        FriendQuery, FriendRepository, HealthCheck, NewCall, ParticipantRepository, PresenceChange,
        RepoError, User, UserId, UserProfile, UserRepository,
    };
    use telcall_persistence::SeaStore;
    use telcall_persistence::entity::{call_stats, calls, friend_links, participants, users};

    /// 2026-11-23T10:00:00Z plus `ms` milliseconds.
    fn t(ms: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap() + Duration::milliseconds(ms)
    }

    fn profile(tg: i64, first: &str, last: Option<&str>, username: Option<&str>) -> UserProfile {
        UserProfile {
            telegram_user_id: tg,
            username: username.map(str::to_owned),
            first_name: Some(first.to_owned()),
            last_name: last.map(str::to_owned),
            photo_url: None,
        }
    }

    async fn user(store: &SeaStore, tg: i64, first: &str) -> User {
        store
            .upsert_user(&profile(tg, first, None, None), t(0))
            .await
            .unwrap()
    }

    /// A code as a request would carry it.
    fn code(code: &str) -> CallCode {
        code.parse().unwrap()
    }

    fn new_call(
        code: &str,
        creator: UserId,
        created: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> NewCall {
        NewCall {
            code: CallCode::from_raw(code),
            creator_id: creator,
            title: Some(format!("call {code}")),
            is_video_enabled: true,
            created_at: created,
            expires_at: expires,
        }
    }

    async fn call(store: &SeaStore, code: &str, creator: UserId) -> Call {
        store
            .create_call(&new_call(code, creator, t(0), t(0) + Duration::hours(24)))
            .await
            .unwrap()
    }

    fn query(search: Option<&str>, limit: u64, offset: u64) -> FriendQuery {
        FriendQuery {
            search: search.map(str::to_owned),
            limit,
            offset,
        }
    }

    async fn friend_ids(store: &SeaStore, user: UserId, q: FriendQuery) -> Vec<UserId> {
        store
            .list_friends(user, &q)
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.user.id)
            .collect()
    }

    pub async fn ping_answers(store: &SeaStore) {
        store.ping().await.unwrap();
        assert!(store.pending_migrations().await.unwrap().is_empty());
    }

    /// Every entity can write and read a full row through plain SeaORM: the migration made
    /// the columns the entities expect, with compatible types.
    pub async fn schema_matches_entities(store: &SeaStore) {
        let db = store.connection();
        let u = users::ActiveModel {
            id: NotSet,
            telegram_user_id: Set(1),
            username: Set(Some("someone".into())),
            first_name: Set(Some("Some".into())),
            last_name: Set(Some("One".into())),
            photo_url: Set(Some("https://t.me/i/1.jpg".into())),
            created_at: Set(t(0)),
            updated_at: Set(t(1)),
        }
        .insert(db)
        .await
        .unwrap();
        let c = calls::ActiveModel {
            id: NotSet,
            code: Set("abcdefghijklmnopqr".into()),
            creator_id: Set(u.id),
            title: Set(None),
            is_video_enabled: Set(false),
            status: Set("ended".into()),
            created_at: Set(t(0)),
            expires_at: Set(t(2)),
            ended_at: Set(Some(t(1))),
        }
        .insert(db)
        .await
        .unwrap();
        let p = participants::ActiveModel {
            id: NotSet,
            call_id: Set(c.id),
            user_id: Set(u.id),
            joined_at: Set(t(0)),
            left_at: Set(Some(t(1))),
        }
        .insert(db)
        .await
        .unwrap();
        let other = users::ActiveModel {
            id: NotSet,
            telegram_user_id: Set(2),
            username: Set(None),
            first_name: Set(None),
            last_name: Set(None),
            photo_url: Set(None),
            created_at: Set(t(0)),
            updated_at: Set(t(0)),
        }
        .insert(db)
        .await
        .unwrap();
        let f = friend_links::ActiveModel {
            id: NotSet,
            user_id: Set(u.id),
            friend_id: Set(other.id),
            last_call_at: Set(t(1)),
            created_at: Set(t(0)),
        }
        .insert(db)
        .await
        .unwrap();
        let s = call_stats::ActiveModel {
            id: NotSet,
            call_id: Set(c.id),
            user_id: Set(u.id),
            duration_seconds: Set(Some(1.5)),
            audio_bitrate_kbps: Set(Some(32.0)),
            audio_packets_lost: Set(Some(3)),
            audio_packets_sent: Set(Some(1000)),
            audio_jitter_ms: Set(Some(4.25)),
            video_bitrate_kbps: Set(Some(900.0)),
            video_packets_lost: Set(Some(1)),
            video_packets_sent: Set(Some(5000)),
            video_frame_rate: Set(Some(29.97)),
            video_resolution: Set(Some("1280x720".into())),
            rtt_ms: Set(Some(80.0)),
            created_at: Set(t(1)),
        }
        .insert(db)
        .await
        .unwrap();

        assert_eq!(
            users::Entity::find_by_id(u.id).one(db).await.unwrap(),
            Some(u.clone())
        );
        assert_eq!(
            calls::Entity::find_by_id(c.id).one(db).await.unwrap(),
            Some(c.clone())
        );
        assert_eq!(participants::Entity::find().all(db).await.unwrap(), vec![p]);
        assert_eq!(friend_links::Entity::find().all(db).await.unwrap(), vec![f]);
        assert_eq!(call_stats::Entity::find().all(db).await.unwrap(), vec![s]);
        // …and the repository reads what SeaORM wrote.
        let found = store
            .find_call_by_code(&code("abcdefghijklmnopqr"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.status, CallStatus::Ended);
        assert_eq!(found.ended_at, Some(t(1)));
        c.delete(db).await.unwrap();
        assert!(call_stats::Entity::find().all(db).await.unwrap().is_empty());
    }

    pub async fn upsert_user_inserts_then_refreshes_keeping_id(store: &SeaStore) {
        let first = store
            .upsert_user(&profile(42, "Ann", Some("Lee"), Some("ann_lee")), t(0))
            .await
            .unwrap();
        assert_eq!(first.telegram_user_id, 42);
        assert_eq!(first.username.as_deref(), Some("ann_lee"));
        assert_eq!((first.created_at, first.updated_at), (t(0), t(0)));

        let changed = UserProfile {
            telegram_user_id: 42,
            username: None,
            first_name: Some("Anna".into()),
            last_name: None,
            photo_url: Some("https://t.me/i/ann.jpg".into()),
        };
        let again = store.upsert_user(&changed, t(60_000)).await.unwrap();
        assert_eq!(again.id, first.id);
        assert_eq!(again.username, None);
        assert_eq!(again.first_name.as_deref(), Some("Anna"));
        assert_eq!(again.last_name, None);
        assert_eq!(again.photo_url.as_deref(), Some("https://t.me/i/ann.jpg"));
        assert_eq!(again.created_at, t(0));
        assert_eq!(again.updated_at, t(60_000));
        assert_eq!(store.find_user(first.id).await.unwrap(), Some(again));

        let other = user(store, 43, "Bob").await;
        assert_ne!(other.id, first.id);
    }

    pub async fn find_user_by_id(store: &SeaStore) {
        let u = user(store, 7, "Zed").await;
        assert_eq!(store.find_user(u.id).await.unwrap(), Some(u.clone()));
        assert_eq!(
            store
                .find_user(UserId::new(u.id.get() + 1000))
                .await
                .unwrap(),
            None
        );
    }

    pub async fn find_user_by_telegram_id(store: &SeaStore) {
        let u = user(store, 7, "Zed").await;
        let other = user(store, 8, "Amy").await;
        assert_eq!(
            store
                .find_user_by_telegram_id(u.telegram_user_id)
                .await
                .unwrap(),
            Some(u.clone())
        );
        assert_eq!(
            store
                .find_user_by_telegram_id(other.telegram_user_id)
                .await
                .unwrap()
                .map(|found| found.id),
            Some(other.id)
        );
        assert_eq!(store.find_user_by_telegram_id(9).await.unwrap(), None);
        // Telegram ids are 64-bit: the largest ones round-trip on both backends.
        let big = user(store, i64::MAX, "Max").await;
        assert_eq!(
            store.find_user_by_telegram_id(i64::MAX).await.unwrap(),
            Some(big)
        );
    }

    pub async fn create_and_find_call(store: &SeaStore) {
        let u = user(store, 1, "Ann").await;
        let created = store
            .create_call(&new_call("code-1", u.id, t(0), t(86_400_000)))
            .await
            .unwrap();
        assert_eq!(created.code.as_str(), "code-1");
        assert_eq!(created.creator_id, u.id);
        assert_eq!(created.title.as_deref(), Some("call code-1"));
        assert!(created.is_video_enabled);
        assert_eq!(created.status, CallStatus::Active);
        assert_eq!(created.created_at, t(0));
        assert_eq!(created.expires_at, t(86_400_000));
        assert_eq!(created.ended_at, None);
        assert_eq!(
            store.find_call_by_code(&code("code-1")).await.unwrap(),
            Some(created)
        );
        assert_eq!(
            store.find_call_by_code(&code("CODE-1")).await.unwrap(),
            None
        );
        assert_eq!(store.find_call_by_code(&code("nope")).await.unwrap(), None);
    }

    pub async fn duplicate_call_code_is_conflict(store: &SeaStore) {
        let u = user(store, 1, "Ann").await;
        call(store, "same", u.id).await;
        let err = store
            .create_call(&new_call("same", u.id, t(5), t(10)))
            .await
            .unwrap_err();
        assert!(matches!(err, RepoError::Conflict(_)), "{err:?}");
        assert!(
            !err.to_string().to_lowercase().contains("insert into"),
            "{err}"
        );
    }

    pub async fn unknown_creator_is_missing_reference(store: &SeaStore) {
        let err = store
            .create_call(&new_call("orphan", UserId::new(999), t(0), t(10)))
            .await
            .unwrap_err();
        assert!(matches!(err, RepoError::MissingReference(_)), "{err:?}");
        let err = store
            .record_join(CallId::new(12345), UserId::new(999), t(0))
            .await
            .unwrap_err();
        assert!(matches!(err, RepoError::MissingReference(_)), "{err:?}");
    }

    pub async fn active_calls_by_creator_oldest_first(store: &SeaStore) {
        let ann = user(store, 1, "Ann").await;
        let bob = user(store, 2, "Bob").await;
        let day = Duration::hours(24);
        for (code, at) in [("c3", t(3_000)), ("c1", t(1_000)), ("c2", t(2_000))] {
            store
                .create_call(&new_call(code, ann.id, at, at + day))
                .await
                .unwrap();
        }
        store
            .create_call(&new_call("bob", bob.id, t(0), t(0) + day))
            .await
            .unwrap();
        let c2 = store.find_call_by_code(&code("c2")).await.unwrap().unwrap();
        store
            .set_call_status(c2.id, CallStatus::Ended, t(5_000))
            .await
            .unwrap();
        let codes: Vec<String> = store
            .list_active_calls_by_creator(ann.id)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.code.as_str().to_owned())
            .collect();
        assert_eq!(codes, ["c1", "c3"]);
        assert!(
            store
                .list_active_calls_by_creator(UserId::new(999))
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn set_call_status_sets_ended_at(store: &SeaStore) {
        let u = user(store, 1, "Ann").await;
        let c = call(store, "c", u.id).await;
        let ended = store
            .set_call_status(c.id, CallStatus::Ended, t(1_500))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ended.id, c.id);
        assert_eq!(ended.status, CallStatus::Ended);
        assert_eq!(ended.ended_at, Some(t(1_500)));
        assert_eq!(
            store.find_call_by_code(&code("c")).await.unwrap(),
            Some(ended)
        );
        let reopened = store
            .set_call_status(c.id, CallStatus::Active, t(2_000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (reopened.status, reopened.ended_at),
            (CallStatus::Active, None)
        );
        assert_eq!(
            store
                .set_call_status(CallId::new(c.id.get() + 100), CallStatus::Ended, t(0))
                .await
                .unwrap(),
            None
        );
    }

    pub async fn set_call_status_finishes_a_call_once(store: &SeaStore) {
        // Two ends racing (or an end racing the sweeper): the second finds the call no longer
        // active, changes nothing and gets `None`.
        let u = user(store, 1, "Ann").await;
        let c = call(store, "c", u.id).await;
        let expired = store.expire_due_calls(c.expires_at).await.unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(
            store
                .set_call_status(c.id, CallStatus::Ended, t(90_000))
                .await
                .unwrap(),
            None
        );
        let stored = store.find_call_by_code(&code("c")).await.unwrap().unwrap();
        assert_eq!(
            (stored.status, stored.ended_at),
            (CallStatus::Expired, Some(c.expires_at))
        );

        let d = call(store, "d", u.id).await;
        let ended = store
            .set_call_status(d.id, CallStatus::Ended, t(1_000))
            .await
            .unwrap();
        assert!(ended.is_some());
        for status in [CallStatus::Ended, CallStatus::Expired] {
            assert_eq!(
                store.set_call_status(d.id, status, t(2_000)).await.unwrap(),
                None
            );
        }
        let stored = store.find_call_by_code(&code("d")).await.unwrap().unwrap();
        assert_eq!(
            (stored.status, stored.ended_at),
            (CallStatus::Ended, Some(t(1_000)))
        );
    }

    pub async fn expire_due_calls_only_touches_due_active_calls(store: &SeaStore) {
        let u = user(store, 1, "Ann").await;
        let mk = |code: &'static str, expires: i64| new_call(code, u.id, t(0), t(expires));
        let past = store.create_call(&mk("past", 1_000)).await.unwrap();
        let exact = store.create_call(&mk("exact", 5_000)).await.unwrap();
        store.create_call(&mk("future", 9_000)).await.unwrap();
        let ended = store.create_call(&mk("ended", 1_000)).await.unwrap();
        store
            .set_call_status(ended.id, CallStatus::Ended, t(500))
            .await
            .unwrap();

        let expired = store.expire_due_calls(t(5_000)).await.unwrap();
        let ids: Vec<CallId> = expired.iter().map(|c| c.id).collect();
        assert_eq!(ids, [past.id, exact.id]);
        assert!(
            expired
                .iter()
                .all(|c| c.status == CallStatus::Expired && c.ended_at == Some(t(5_000)))
        );
        let ended_now = store
            .find_call_by_code(&code("ended"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (ended_now.status, ended_now.ended_at),
            (CallStatus::Ended, Some(t(500)))
        );
        let future = store
            .find_call_by_code(&code("future"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(future.status, CallStatus::Active);
        assert!(store.expire_due_calls(t(5_000)).await.unwrap().is_empty());
        assert_eq!(store.expire_due_calls(t(9_000)).await.unwrap().len(), 1);
    }

    pub async fn end_calls_created_by_only_touches_old_active_calls(store: &SeaStore) {
        let u = user(store, 1, "Ann").await;
        let mk = |code: &'static str, created: i64| {
            new_call(code, u.id, t(created), t(created + 86_400_000))
        };
        let old = store.create_call(&mk("old", 0)).await.unwrap();
        let exact = store.create_call(&mk("exact", 2_000)).await.unwrap();
        store.create_call(&mk("young", 2_001)).await.unwrap();
        let expired = store.create_call(&mk("expired", 0)).await.unwrap();
        store
            .set_call_status(expired.id, CallStatus::Expired, t(500))
            .await
            .unwrap();

        let ended = store
            .end_calls_created_by(t(2_000), t(9_000))
            .await
            .unwrap();
        let ids: Vec<CallId> = ended.iter().map(|c| c.id).collect();
        assert_eq!(ids, [old.id, exact.id]);
        assert!(
            ended
                .iter()
                .all(|c| c.status == CallStatus::Ended && c.ended_at == Some(t(9_000)))
        );
        let untouched = store
            .find_call_by_code(&code("expired"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (untouched.status, untouched.ended_at),
            (CallStatus::Expired, Some(t(500)))
        );
        let young = store
            .find_call_by_code(&code("young"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(young.status, CallStatus::Active);
        assert!(
            store
                .end_calls_created_by(t(2_000), t(9_500))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .end_calls_created_by(t(2_001), t(9_500))
                .await
                .unwrap()
                .len(),
            1
        );
    }

    /// SeaORM issue #2290: on SQLite, text timestamps in mixed shapes compare wrongly. A call
    /// expiring at 10:00:00.5 is not due at 10:00:00, and is at 10:00:00.5.
    pub async fn expiry_compares_sub_second_instants(store: &SeaStore) {
        let u = user(store, 1, "Ann").await;
        let half = store
            .create_call(&new_call("half", u.id, t(-60_000), t(500)))
            .await
            .unwrap();
        let whole = store
            .create_call(&new_call("whole", u.id, t(-60_000), t(1_000)))
            .await
            .unwrap();
        let micro = store
            .create_call(&new_call(
                "micro",
                u.id,
                t(-60_000),
                t(1_000) + Duration::microseconds(1),
            ))
            .await
            .unwrap();

        assert!(store.expire_due_calls(t(0)).await.unwrap().is_empty());
        assert!(store.expire_due_calls(t(499)).await.unwrap().is_empty());
        let due: Vec<CallId> = store
            .expire_due_calls(t(500))
            .await
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(due, [half.id]);
        assert!(
            store
                .expire_due_calls(t(999) + Duration::microseconds(999))
                .await
                .unwrap()
                .is_empty()
        );
        let due: Vec<CallId> = store
            .expire_due_calls(t(1_000))
            .await
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(due, [whole.id]);
        let due: Vec<CallId> = store
            .expire_due_calls(t(1_000) + Duration::microseconds(1))
            .await
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(due, [micro.id]);
    }

    pub async fn timestamps_round_trip_in_utc(store: &SeaStore) {
        let u = user(store, 1, "Ann").await;
        // 13:00:00.123456 at +03:00 is 10:00:00.123456Z.
        let moscow = FixedOffset::east_opt(3 * 3600).unwrap();
        let created = moscow
            .with_ymd_and_hms(2026, 11, 23, 13, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
            + Duration::microseconds(123_456);
        let expires = created + Duration::hours(24);
        let c = store
            .create_call(&new_call("tz", u.id, created, expires))
            .await
            .unwrap();
        let read = store.find_call_by_code(&code("tz")).await.unwrap().unwrap();
        assert_eq!(read.created_at, created);
        assert_eq!(read.expires_at, expires);
        assert_eq!(c.created_at, created);
        assert_eq!(
            read.created_at.to_rfc3339(),
            "2026-11-23T10:00:00.123456+00:00"
        );
        // Nanoseconds are truncated to the microseconds both backends keep.
        let ns = store
            .create_call(&new_call(
                "ns",
                u.id,
                created + Duration::nanoseconds(789),
                expires,
            ))
            .await
            .unwrap();
        assert_eq!(ns.created_at, created);

        store
            .create_call(&new_call(
                "whole",
                u.id,
                t(0),
                t(0) + Duration::hours(24) + Duration::milliseconds(500),
            ))
            .await
            .unwrap();
        let db = store.connection();
        let backend = db.get_database_backend();
        let (sql, expected) = match backend {
            // One fixed-width format, whole seconds included (sqlx alone would write
            // `…T10:00:00+00:00` here and `….5+00:00`-style variants elsewhere).
            DbBackend::Sqlite => (
                "SELECT created_at || ' ' || expires_at AS v FROM calls WHERE code = 'whole'",
                "2026-11-23T10:00:00.000000+00:00 2026-11-24T10:00:00.500000+00:00",
            ),
            _ => (
                "SELECT data_type AS v FROM information_schema.columns \
                 WHERE table_name = 'calls' AND column_name = 'created_at'",
                "timestamp with time zone",
            ),
        };
        let row = db
            .query_one_raw(Statement::from_string(backend, sql))
            .await
            .unwrap()
            .unwrap();
        let stored: String = row.try_get("", "v").unwrap();
        assert_eq!(stored, expected);
    }

    pub async fn participants_join_leave_list(store: &SeaStore) {
        let ann = user(store, 1, "Ann").await;
        let bob = user(store, 2, "Bob").await;
        let c = call(store, "c", ann.id).await;
        let other = call(store, "other", ann.id).await;
        let a1 = store.record_join(c.id, ann.id, t(1_000)).await.unwrap();
        assert_eq!(
            (a1.call_id, a1.user_id, a1.joined_at, a1.left_at),
            (c.id, ann.id, t(1_000), None)
        );
        store.record_join(c.id, bob.id, t(2_000)).await.unwrap();
        store.record_join(other.id, ann.id, t(0)).await.unwrap();

        assert_eq!(store.record_leave(c.id, ann.id, t(3_000)).await.unwrap(), 1);
        assert_eq!(store.record_leave(c.id, ann.id, t(3_500)).await.unwrap(), 0);
        store.record_join(c.id, ann.id, t(4_000)).await.unwrap();

        let stays = store.list_participants(c.id).await.unwrap();
        let summary: Vec<(UserId, i64, Option<DateTime<Utc>>)> = stays
            .iter()
            .map(|p| {
                (
                    p.user_id,
                    p.joined_at.timestamp_millis() - t(0).timestamp_millis(),
                    p.left_at,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (ann.id, 1_000, Some(t(3_000))),
                (bob.id, 2_000, None),
                (ann.id, 4_000, None)
            ]
        );
        let other_stays = store.list_participants(other.id).await.unwrap();
        assert_eq!(other_stays.len(), 1);
        assert_eq!(other_stays[0].left_at, None);
        assert!(
            store
                .list_participants(CallId::new(c.id.get() + 100))
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn stays_continue_close_and_list_open(store: &SeaStore) {
        let ann = user(store, 1, "Ann").await;
        let bob = user(store, 2, "Bob").await;
        let c = call(store, "c", ann.id).await;
        let other = call(store, "other", ann.id).await;
        assert!(store.calls_with_open_stays().await.unwrap().is_empty());
        // No stay yet: nothing to continue.
        assert!(
            store
                .continue_stay(c.id, ann.id, t(0))
                .await
                .unwrap()
                .is_none()
        );
        let first = store.record_join(c.id, ann.id, t(1_000)).await.unwrap();
        // Still open: continued as it is.
        let same = store.continue_stay(c.id, ann.id, t(1_500)).await.unwrap();
        assert_eq!(same.map(|p| p.id), Some(first.id));
        store.record_leave(c.id, ann.id, t(2_000)).await.unwrap();
        // Left before `since`: not continued.
        assert!(
            store
                .continue_stay(c.id, ann.id, t(2_001))
                .await
                .unwrap()
                .is_none()
        );
        // Left at or after `since`: reopened.
        let reopened = store
            .continue_stay(c.id, ann.id, t(2_000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((reopened.id, reopened.left_at), (first.id, None));

        store.record_join(c.id, bob.id, t(3_000)).await.unwrap();
        store.record_join(other.id, bob.id, t(3_000)).await.unwrap();
        let open: Vec<CallId> = store
            .calls_with_open_stays()
            .await
            .unwrap()
            .iter()
            .map(|call| call.id)
            .collect();
        assert_eq!(open, [c.id, other.id]);
        assert_eq!(store.close_open_stays(c.id, t(9_000)).await.unwrap(), 2);
        assert_eq!(store.close_open_stays(c.id, t(9_500)).await.unwrap(), 0);
        let stays = store.list_participants(c.id).await.unwrap();
        assert!(stays.iter().all(|p| p.left_at == Some(t(9_000))));
        let open: Vec<CallId> = store
            .calls_with_open_stays()
            .await
            .unwrap()
            .iter()
            .map(|call| call.id)
            .collect();
        assert_eq!(open, [other.id]);
    }

    pub async fn link_friends_both_directions_and_refreshes(store: &SeaStore) {
        let a = user(store, 1, "A").await;
        let b = user(store, 2, "B").await;
        let c = user(store, 3, "C").await;
        let d = user(store, 4, "D").await;
        store
            .link_friends(&[a.id, b.id, a.id, c.id], t(1_000))
            .await
            .unwrap();
        store.link_friends(&[d.id], t(1_000)).await.unwrap();
        store.link_friends(&[], t(1_000)).await.unwrap();
        let all = friend_links::Entity::find()
            .all(store.connection())
            .await
            .unwrap();
        let mut pairs: Vec<(UserId, UserId)> = all
            .iter()
            .map(|l| (UserId::new(l.user_id), UserId::new(l.friend_id)))
            .collect();
        pairs.sort_unstable();
        let mut expected = vec![
            (a.id, b.id),
            (a.id, c.id),
            (b.id, a.id),
            (b.id, c.id),
            (c.id, a.id),
            (c.id, b.id),
        ];
        expected.sort_unstable();
        assert_eq!(pairs, expected);

        store.link_friends(&[b.id, a.id], t(9_000)).await.unwrap();
        let friends = store.list_friends(a.id, &query(None, 50, 0)).await.unwrap();
        let got: Vec<(UserId, DateTime<Utc>)> = friends
            .iter()
            .map(|f| (f.user.id, f.last_call_at))
            .collect();
        assert_eq!(got, [(b.id, t(9_000)), (c.id, t(1_000))]);
        assert_eq!(friends[0].user, b);
        let links = friend_links::Entity::find()
            .all(store.connection())
            .await
            .unwrap();
        assert_eq!(links.len(), 6);
        assert!(links.iter().all(|l| l.created_at == t(1_000)));

        let err = store
            .link_friends(&[a.id, UserId::new(999)], t(0))
            .await
            .unwrap_err();
        assert!(matches!(err, RepoError::MissingReference(_)), "{err:?}");
    }

    pub async fn is_friend_follows_the_links(store: &SeaStore) {
        let a = user(store, 1, "A").await;
        let b = user(store, 2, "B").await;
        let c = user(store, 3, "C").await;
        assert!(!store.is_friend(a.id, b.id).await.unwrap());
        store.link_friends(&[a.id, b.id], t(1_000)).await.unwrap();
        assert!(store.is_friend(a.id, b.id).await.unwrap());
        assert!(store.is_friend(b.id, a.id).await.unwrap());
        assert!(!store.is_friend(a.id, c.id).await.unwrap());
        assert!(!store.is_friend(a.id, a.id).await.unwrap());
        store.delete_friends(b.id, &[a.id]).await.unwrap();
        assert!(!store.is_friend(a.id, b.id).await.unwrap());
        assert!(!store.is_friend(b.id, a.id).await.unwrap());
    }

    fn joined(call: &Call, user: &User, others: &[&User], at: i64, since: i64) -> PresenceChange {
        PresenceChange::Joined {
            call: call.id,
            user: user.id,
            others: others.iter().map(|u| u.id).collect(),
            at: t(at),
            since: t(since),
        }
    }

    fn left(call: &Call, user: &User, at: i64) -> PresenceChange {
        PresenceChange::Left {
            call: call.id,
            user: user.id,
            at: t(at),
        }
    }

    async fn link_pairs(store: &SeaStore) -> Vec<(UserId, UserId, DateTime<Utc>)> {
        let mut pairs: Vec<_> = friend_links::Entity::find()
            .all(store.connection())
            .await
            .unwrap()
            .into_iter()
            .map(|l| {
                (
                    UserId::new(l.user_id),
                    UserId::new(l.friend_id),
                    l.last_call_at,
                )
            })
            .collect();
        pairs.sort_unstable();
        pairs
    }

    /// One batch: Ann joins, Bob joins, Ann drops and reconnects within the window (the
    /// same stay goes on), Cy joins, Bob leaves. Rows and links are as if written one by one;
    /// only the joiner is linked with those already there, latest time kept.
    /// The stays of a call, per person in stay order: `(user, joined, left)`.
    async fn stays_of(
        store: &SeaStore,
        call: &Call,
    ) -> Vec<(i64, DateTime<Utc>, Option<DateTime<Utc>>)> {
        use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
        participants::Entity::find()
            .filter(participants::Column::CallId.eq(call.id.get()))
            .order_by_asc(participants::Column::UserId)
            .order_by_asc(participants::Column::Id)
            .all(store.connection())
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.user_id, p.joined_at, p.left_at))
            .collect()
    }

    /// A batch writes what its changes, written one at a time, would: whatever each person's
    /// stays were before (none, open, left within the rejoin window, left before it) and
    /// whether a person has one change in the batch (those are written together) or several.
    pub async fn record_presence_in_one_batch_is_as_one_change_at_a_time(store: &SeaStore) {
        let mut people = Vec::new();
        for i in 0..24 {
            people.push(user(store, 100 + i, "P").await);
        }
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for round in 0..8 {
            let one_by_one = call(store, &format!("single{round}"), people[0].id).await;
            let batched = call(store, &format!("batched{round}"), people[0].id).await;
            // A history written the same way into both calls.
            let mut history = Vec::new();
            for (at, person) in (0_i64..).zip(&people) {
                match next(4) {
                    0 => {}
                    1 => history.push((person, true, at)),
                    _ => {
                        history.push((person, true, at));
                        // Left shortly or long before the batch: a join then
                        // reopens that stay or starts a new one.
                        history.push((person, false, 999 - i64::try_from(next(400)).unwrap()));
                    }
                }
            }
            history.sort_by_key(|(_, _, at)| *at);
            for c in [&one_by_one, &batched] {
                for (person, join, at) in &history {
                    let change = if *join {
                        joined(c, person, &[], *at, at - 150)
                    } else {
                        left(c, person, *at)
                    };
                    store.record_presence(&[change]).await.unwrap();
                }
            }
            // Then the batch: mostly one join per person, some with several changes.
            let mut changes = Vec::new();
            let mut at = 1_000;
            for _ in 0..20 {
                let person = &people[usize::try_from(next(24)).unwrap()];
                let join = next(3) != 0;
                changes.push((person, join, at));
                at += 1 + i64::try_from(next(15)).unwrap();
            }
            let for_call = |c: &Call| -> Vec<PresenceChange> {
                changes
                    .iter()
                    .map(|(person, join, at)| {
                        if *join {
                            joined(c, person, &[&people[0]], *at, at - 150)
                        } else {
                            left(c, person, *at)
                        }
                    })
                    .collect()
            };
            for change in for_call(&one_by_one) {
                store.record_presence(&[change]).await.unwrap();
            }
            store.record_presence(&for_call(&batched)).await.unwrap();
            assert_eq!(
                stays_of(store, &batched).await,
                stays_of(store, &one_by_one).await,
                "round {round}"
            );
        }
    }

    /// A presence batch reads (is there a stay to continue?) before it writes; other writes
    /// to the same tables commit meanwhile (a call ending closes its open stays). No batch
    /// may fail for that: on SQLite a read-then-write transaction must take the write lock
    /// up front, or it fails with SQLITE_BUSY_SNAPSHOT ("database is locked").
    pub async fn record_presence_holds_against_concurrent_writes(store: &SeaStore) {
        let ann = user(store, 1, "Ann").await;
        let bob = user(store, 2, "Bob").await;
        let c = call(store, "c", ann.id).await;
        let rounds = 150_i64;
        let batches = {
            let store = store.clone();
            let (c, ann, bob) = (c.clone(), ann.clone(), bob.clone());
            tokio::spawn(async move {
                let mut failed = Vec::new();
                for i in 0..rounds {
                    let at = 10 * i;
                    let batch = [
                        joined(&c, &ann, &[], at, at),
                        joined(&c, &bob, &[&ann], at + 1, at),
                        left(&c, &bob, at + 2),
                    ];
                    if let Err(e) = store.record_presence(&batch).await {
                        failed.push(e.to_string());
                    }
                }
                failed
            })
        };
        let closer = {
            let store = store.clone();
            let c = c.clone();
            tokio::spawn(async move {
                for i in 0..rounds {
                    store.close_open_stays(c.id, t(10 * i + 5)).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        closer.await.unwrap();
        let failed = batches.await.unwrap();
        assert!(
            failed.is_empty(),
            "{} batches failed: {:?}",
            failed.len(),
            failed.first()
        );
        assert!(
            store.is_friend(bob.id, ann.id).await.unwrap(),
            "the batches' friend links are stored"
        );
    }

    pub async fn record_presence_applies_a_batch_in_order(store: &SeaStore) {
        let ann = user(store, 1, "Ann").await;
        let bob = user(store, 2, "Bob").await;
        let cy = user(store, 3, "Cy").await;
        let c = call(store, "c", ann.id).await;
        store
            .record_presence(&[
                joined(&c, &ann, &[], 1_000, 0),
                joined(&c, &bob, &[&ann], 2_000, 0),
                left(&c, &ann, 3_000),
                joined(&c, &ann, &[&bob], 4_000, 3_000),
                joined(&c, &cy, &[&ann, &bob], 5_000, 0),
                left(&c, &bob, 6_000),
            ])
            .await
            .unwrap();
        let stays: Vec<_> = store
            .list_participants(c.id)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.user_id, p.joined_at, p.left_at))
            .collect();
        assert_eq!(
            stays,
            [
                (ann.id, t(1_000), None),
                (bob.id, t(2_000), Some(t(6_000))),
                (cy.id, t(5_000), None),
            ]
        );
        let mut expected = vec![
            (ann.id, bob.id, t(4_000)),
            (bob.id, ann.id, t(4_000)),
            (cy.id, ann.id, t(5_000)),
            (ann.id, cy.id, t(5_000)),
            (cy.id, bob.id, t(5_000)),
            (bob.id, cy.id, t(5_000)),
        ];
        expected.sort_unstable();
        assert_eq!(link_pairs(store).await, expected);
        // An empty batch is fine.
        store.record_presence(&[]).await.unwrap();
    }

    /// A change that cannot be written (a user that does not exist) takes the whole batch
    /// with it: nothing of it is recorded.
    pub async fn record_presence_is_all_or_nothing(store: &SeaStore) {
        let ann = user(store, 1, "Ann").await;
        let bob = user(store, 2, "Bob").await;
        let c = call(store, "c", ann.id).await;
        let ghost = User {
            id: UserId::new(999),
            ..bob.clone()
        };
        let err = store
            .record_presence(&[
                joined(&c, &ann, &[], 1_000, 0),
                joined(&c, &bob, &[&ann], 2_000, 0),
                joined(&c, &ghost, &[&ann, &bob], 3_000, 0),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, RepoError::MissingReference(_)), "{err:?}");
        assert!(store.list_participants(c.id).await.unwrap().is_empty());
        assert!(link_pairs(store).await.is_empty());
    }

    /// 46 people make 2,070 ordered pairs: more than one insert batch, in one transaction.
    pub async fn link_friends_large_group_in_batches(store: &SeaStore) {
        let mut ids = Vec::new();
        for tg in 0..46 {
            ids.push(user(store, tg, "P").await.id);
        }
        store.link_friends(&ids, t(1_000)).await.unwrap();
        store.link_friends(&ids, t(2_000)).await.unwrap();
        let links = friend_links::Entity::find()
            .all(store.connection())
            .await
            .unwrap();
        assert_eq!(links.len(), 46 * 45);
        assert!(
            links
                .iter()
                .all(|l| l.last_call_at == t(2_000) && l.created_at == t(1_000))
        );
        let everyone_but_first = friend_ids(store, ids[0], query(None, 100, 0)).await;
        assert_eq!(everyone_but_first, ids[1..]);
    }

    pub async fn list_friends_orders_and_pages(store: &SeaStore) {
        let me = user(store, 100, "Me").await;
        let mut friends = Vec::new();
        for i in 0..7 {
            friends.push(user(store, i, &format!("F{i}")).await);
        }
        // f0,f1 at t(1000); f2,f3,f4 at t(3000); f5 at t(2000); f6 not a friend of mine.
        for (f, at) in [
            (0, 1_000),
            (1, 1_000),
            (2, 3_000),
            (3, 3_000),
            (4, 3_000),
            (5, 2_000),
        ] {
            store
                .link_friends(&[me.id, friends[f].id], t(at))
                .await
                .unwrap();
        }
        store
            .link_friends(&[friends[5].id, friends[6].id], t(9_000))
            .await
            .unwrap();
        let id = |i: usize| friends[i].id;
        let expected = vec![id(2), id(3), id(4), id(5), id(0), id(1)];
        assert_eq!(friend_ids(store, me.id, query(None, 50, 0)).await, expected);
        assert_eq!(
            friend_ids(store, me.id, query(Some(""), 50, 0)).await,
            expected
        );
        assert_eq!(
            friend_ids(store, me.id, query(None, 4, 0)).await,
            expected[..4]
        );
        assert_eq!(
            friend_ids(store, me.id, query(None, 4, 4)).await,
            expected[4..]
        );
        assert_eq!(
            friend_ids(store, me.id, query(None, 2, 2)).await,
            expected[2..4]
        );
        assert!(
            friend_ids(store, me.id, query(None, 10, 6))
                .await
                .is_empty()
        );
        assert_eq!(
            friend_ids(store, friends[5].id, query(None, 10, 0)).await,
            [id(6), me.id]
        );
        assert!(
            friend_ids(store, UserId::new(9_999), query(None, 10, 0))
                .await
                .is_empty()
        );
    }

    pub async fn friend_search_is_case_insensitive_and_literal(store: &SeaStore) {
        let me = user(store, 100, "Me").await;
        let people = [
            profile(1, "Anna", Some("Smith"), Some("anna_s")),
            profile(2, "JOHANNA", None, None),
            profile(3, "Bob", Some("Annapolis"), None),
            profile(4, "Carl", None, Some("karl_annex")),
            profile(5, "100% Real", None, None),
            profile(6, "100 Real", None, None),
            profile(7, "a_b", None, None),
            profile(8, "axb", None, None),
            profile(9, "back\\slash", None, None),
            profile(10, "backslash", None, None),
        ];
        let mut ids = Vec::new();
        for p in &people {
            let u = store.upsert_user(p, t(0)).await.unwrap();
            store
                .link_friends(&[me.id, u.id], t(u.id.get()))
                .await
                .unwrap();
            ids.push(u.id);
        }
        let search = |s: &'static str| async move {
            let mut got = friend_ids(store, me.id, query(Some(s), 100, 0)).await;
            got.sort_unstable();
            got
        };
        // First name, last name and username; any case.
        assert_eq!(search("ANN").await, [ids[0], ids[1], ids[2], ids[3]]);
        assert_eq!(search("anna").await, [ids[0], ids[1], ids[2]]);
        assert_eq!(search("SMI").await, [ids[0]]);
        assert_eq!(search("Karl_").await, [ids[3]]);
        // `%`, `_` and `\` match only themselves.
        assert_eq!(search("100%").await, [ids[4]]);
        assert_eq!(search("%").await, [ids[4]]);
        assert_eq!(search("a_b").await, [ids[6]]);
        assert_eq!(search("_").await, [ids[0], ids[3], ids[6]]);
        assert_eq!(search("k\\s").await, [ids[8]]);
        assert_eq!(search("\\").await, [ids[8]]);
        assert!(search("zzz").await.is_empty());
        // Search and paging together, newest link first.
        let page = friend_ids(store, me.id, query(Some("ann"), 2, 1)).await;
        assert_eq!(page, [ids[2], ids[1]]);
    }

    pub async fn delete_friends_removes_both_directions(store: &SeaStore) {
        let me = user(store, 1, "Me").await;
        let a = user(store, 2, "A").await;
        let b = user(store, 3, "B").await;
        let c = user(store, 4, "C").await;
        let stranger = user(store, 5, "S").await;
        store
            .link_friends(&[me.id, a.id, b.id], t(0))
            .await
            .unwrap();
        store.link_friends(&[me.id, c.id], t(0)).await.unwrap();

        let deleted = store
            .delete_friends(me.id, &[b.id, stranger.id, a.id, b.id, UserId::new(999)])
            .await
            .unwrap();
        assert_eq!(deleted, [b.id, a.id]);
        assert_eq!(friend_ids(store, me.id, query(None, 50, 0)).await, [c.id]);
        assert_eq!(friend_ids(store, a.id, query(None, 50, 0)).await, [b.id]);
        assert_eq!(friend_ids(store, b.id, query(None, 50, 0)).await, [a.id]);
        assert_eq!(friend_ids(store, c.id, query(None, 50, 0)).await, [me.id]);
        assert!(
            store
                .delete_friends(me.id, &[a.id])
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.delete_friends(me.id, &[]).await.unwrap().is_empty());
    }

    pub async fn stats_summary_with_zero_rows(store: &SeaStore) {
        let u = user(store, 1, "Ann").await;
        let c = call(store, "c", u.id).await;
        let s = store.summarize_stats(c.id).await.unwrap();
        assert_eq!(s.participant_count, 0);
        assert_eq!(s.total_audio_packets_lost, 0);
        assert_eq!(s.avg_duration_seconds, None);
        assert_eq!(s.avg_audio_bitrate_kbps, None);
        assert_eq!(s.avg_audio_jitter_ms, None);
        assert_eq!(s.avg_rtt_ms, None);
        // Rows whose figures are all null count, but average nothing.
        store
            .upsert_stats(&c, u.id, &CallStatsInput::default(), t(0))
            .await
            .unwrap();
        let s = store.summarize_stats(c.id).await.unwrap();
        assert_eq!((s.participant_count, s.total_audio_packets_lost), (1, 0));
        assert_eq!((s.avg_duration_seconds, s.avg_rtt_ms), (None, None));
    }

    pub async fn stats_summary_over_several_rows(store: &SeaStore) {
        let ann = user(store, 1, "Ann").await;
        let bob = user(store, 2, "Bob").await;
        let cat = user(store, 3, "Cat").await;
        let c = call(store, "c", ann.id).await;
        let other = call(store, "other", ann.id).await;
        let rows = [
            CallStatsInput {
                duration_seconds: Some(60.0),
                audio_bitrate_kbps: Some(32.0),
                audio_packets_lost: Some(5),
                audio_jitter_ms: Some(10.0),
                rtt_ms: Some(100.0),
                ..CallStatsInput::default()
            },
            CallStatsInput {
                duration_seconds: Some(120.0),
                audio_packets_lost: Some(7),
                audio_jitter_ms: Some(20.0),
                ..CallStatsInput::default()
            },
            CallStatsInput {
                duration_seconds: None,
                audio_bitrate_kbps: Some(64.0),
                rtt_ms: Some(50.0),
                ..CallStatsInput::default()
            },
        ];
        for (i, figures) in rows.iter().enumerate() {
            let who = [ann.id, bob.id, cat.id][i];
            store
                .upsert_stats(&c, who, figures, t(i as i64))
                .await
                .unwrap();
        }
        let big = CallStatsInput {
            duration_seconds: Some(9_999.0),
            audio_packets_lost: Some(1_000),
            ..CallStatsInput::default()
        };
        store
            .upsert_stats(&other, ann.id, &big, t(0))
            .await
            .unwrap();

        let s = store.summarize_stats(c.id).await.unwrap();
        assert_eq!(s.participant_count, 3);
        assert_eq!(s.avg_duration_seconds, Some(90.0));
        assert_eq!(s.avg_audio_bitrate_kbps, Some(48.0));
        assert_eq!(s.total_audio_packets_lost, 12);
        assert_eq!(s.avg_audio_jitter_ms, Some(15.0));
        assert_eq!(s.avg_rtt_ms, Some(75.0));
    }

    pub async fn stats_summary_never_overflows(store: &SeaStore) {
        // Integer SUM overflows on SQLite and its numeric result does not fit BIGINT on
        // PostgreSQL; the aggregate must answer anyway (saturated), every time.
        let ann = user(store, 1, "Ann").await;
        let bob = user(store, 2, "Bob").await;
        let cat = user(store, 3, "Cat").await;
        let c = call(store, "c", ann.id).await;
        let huge = CallStatsInput {
            audio_packets_lost: Some(i64::MAX),
            duration_seconds: Some(f64::MAX / 4.0),
            ..CallStatsInput::default()
        };
        for who in [ann.id, bob.id, cat.id] {
            store.upsert_stats(&c, who, &huge, t(0)).await.unwrap();
        }
        let s = store.summarize_stats(c.id).await.unwrap();
        assert_eq!(s.participant_count, 3);
        assert_eq!(s.total_audio_packets_lost, i64::MAX);
        assert!(s.avg_duration_seconds.is_some_and(|d| d > 1e300));
    }

    pub async fn stats_one_row_per_user_and_call(store: &SeaStore) {
        let ann = user(store, 1, "Ann").await;
        let c = call(store, "c", ann.id).await;
        let first = CallStatsInput {
            rtt_ms: Some(10.0),
            audio_packets_lost: Some(4),
            video_resolution: Some("640x480".into()),
            ..CallStatsInput::default()
        };
        let second = CallStatsInput {
            rtt_ms: Some(30.0),
            ..CallStatsInput::default()
        };
        let a = store.upsert_stats(&c, ann.id, &first, t(0)).await.unwrap();
        let b = store
            .upsert_stats(&c, ann.id, &second, t(60))
            .await
            .unwrap();
        assert_eq!(b.id, a.id);
        assert_eq!(b.figures, second);
        assert_eq!(b.created_at, t(60));
        let rows = store.list_stats_by_user(ann.id, 50).await.unwrap();
        assert_eq!(rows, [b]);
        let s = store.summarize_stats(c.id).await.unwrap();
        assert_eq!(s.participant_count, 1);
        assert_eq!(s.total_audio_packets_lost, 0);
        assert_eq!(s.avg_rtt_ms, Some(30.0));
    }

    pub async fn has_participated_follows_the_stays(store: &SeaStore) {
        let ann = user(store, 1, "Ann").await;
        let bob = user(store, 2, "Bob").await;
        let c = call(store, "c", ann.id).await;
        let other = call(store, "other", ann.id).await;
        assert!(!store.has_participated(c.id, bob.id).await.unwrap());
        store.record_join(other.id, bob.id, t(0)).await.unwrap();
        assert!(!store.has_participated(c.id, bob.id).await.unwrap());
        store.record_join(c.id, bob.id, t(0)).await.unwrap();
        store.record_leave(c.id, bob.id, t(10)).await.unwrap();
        assert!(store.has_participated(c.id, bob.id).await.unwrap());
        // The organizer is not a recorded participant until they join.
        assert!(!store.has_participated(c.id, ann.id).await.unwrap());
    }

    pub async fn stats_by_user_newest_first_with_code(store: &SeaStore) {
        let ann = user(store, 1, "Ann").await;
        let bob = user(store, 2, "Bob").await;
        let c1 = call(store, "first", ann.id).await;
        let c2 = call(store, "second", ann.id).await;
        let c3 = call(store, "third", ann.id).await;
        let c4 = call(store, "fourth", ann.id).await;
        let full = CallStatsInput {
            duration_seconds: Some(12.5),
            audio_bitrate_kbps: Some(31.9),
            audio_packets_lost: Some(2),
            audio_packets_sent: Some(900),
            audio_jitter_ms: Some(3.5),
            video_bitrate_kbps: Some(800.25),
            video_packets_lost: Some(4),
            video_packets_sent: Some(3000),
            video_frame_rate: Some(30.0),
            video_resolution: Some("640x480".into()),
            rtt_ms: Some(42.0),
        };
        let stored = store
            .upsert_stats(&c1, ann.id, &full, t(1_000))
            .await
            .unwrap();
        assert_eq!(stored.figures, full);
        assert_eq!(stored.call_code.as_str(), "first");
        assert_eq!(
            (stored.call_id, stored.user_id, stored.created_at),
            (c1.id, ann.id, t(1_000))
        );
        let same_time = store
            .upsert_stats(&c2, ann.id, &CallStatsInput::default(), t(1_000))
            .await
            .unwrap();
        let newest = store
            .upsert_stats(&c3, ann.id, &CallStatsInput::default(), t(5_000))
            .await
            .unwrap();
        let oldest = store
            .upsert_stats(&c4, ann.id, &CallStatsInput::default(), t(0))
            .await
            .unwrap();
        store
            .upsert_stats(&c1, bob.id, &CallStatsInput::default(), t(9_000))
            .await
            .unwrap();

        let mine = store.list_stats_by_user(ann.id, 50).await.unwrap();
        let ids: Vec<i64> = mine.iter().map(|s| s.id).collect();
        assert_eq!(ids, [newest.id, same_time.id, stored.id, oldest.id]);
        let codes: Vec<&str> = mine.iter().map(|s| s.call_code.as_str()).collect();
        assert_eq!(codes, ["third", "second", "first", "fourth"]);
        assert_eq!(mine[2], stored);
        assert_eq!(store.list_stats_by_user(ann.id, 2).await.unwrap().len(), 2);
        assert!(
            store
                .list_stats_by_user(UserId::new(999), 50)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn deleting_a_user_cascades(store: &SeaStore) {
        let ann = user(store, 1, "Ann").await;
        let bob = user(store, 2, "Bob").await;
        let c = call(store, "c", ann.id).await;
        store.record_join(c.id, bob.id, t(0)).await.unwrap();
        store.link_friends(&[ann.id, bob.id], t(0)).await.unwrap();
        store
            .upsert_stats(&c, bob.id, &CallStatsInput::default(), t(0))
            .await
            .unwrap();
        let db = store.connection();
        users::Entity::delete_by_id(ann.id.get())
            .exec(db)
            .await
            .unwrap();
        assert_eq!(store.find_call_by_code(&code("c")).await.unwrap(), None);
        assert!(
            participants::Entity::find()
                .all(db)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            friend_links::Entity::find()
                .all(db)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(call_stats::Entity::find().all(db).await.unwrap().is_empty());
        assert!(store.find_user(bob.id).await.unwrap().is_some());
    }

    /// Foreign keys are enforced whichever pooled connection runs the statement: sixteen
    /// concurrent writes spread over the pool, each must be refused.
    pub async fn foreign_keys_hold_on_every_pooled_connection(store: &SeaStore) {
        let u = user(store, 1, "Ann").await;
        let c = call(store, "c", u.id).await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..16 {
            let store = store.clone();
            tasks
                .spawn(async move { store.record_join(c.id, UserId::new(10_000 + i), t(0)).await });
        }
        while let Some(result) = tasks.join_next().await {
            let result = result.unwrap();
            assert!(
                matches!(result, Err(RepoError::MissingReference(_))),
                "{result:?}"
            );
        }
        assert!(store.list_participants(c.id).await.unwrap().is_empty());
    }
}
