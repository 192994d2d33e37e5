//! Reading the older database: opening it read-only, checking its shape, and reading each
//! table page by page (keyset pagination on the primary key), with natural keys joined in.

use std::time::Duration;

use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::sqlite::SqliteConnectOptions;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, QueryResult,
    Statement, Value,
};
use telcall_domain::CallStatsInput;

use super::LegacyError;
use super::mapping::{
    LegacyCall, LegacyFriendLink, LegacyParticipant, LegacyStat, LegacyUser, RawTime,
};
use crate::connect::{Backend, redacted_url};

/// The tables and columns the importer reads, in import order.
pub const REQUIRED_SHAPE: &[(&str, &[&str])] = &[
    (
        "users",
        &[
            "id",
            "telegram_user_id",
            "username",
            "first_name",
            "last_name",
            "photo_url",
            "created_at",
            "updated_at",
        ],
    ),
    (
        "calls",
        &[
            "id",
            "call_id",
            "creator_user_id",
            "title",
            "is_video_enabled",
            "status",
            "created_at",
            "expires_at",
        ],
    ),
    (
        "participants",
        &["id", "call_id", "user_id", "joined_at", "left_at"],
    ),
    (
        "friend_links",
        &["user_id", "friend_id", "created_at", "updated_at"],
    ),
    (
        "call_stats",
        &[
            "id",
            "call_id",
            "user_id",
            "duration_seconds",
            "audio_bitrate_kbps",
            "audio_packets_lost",
            "audio_packets_sent",
            "audio_jitter_ms",
            "video_bitrate_kbps",
            "video_packets_lost",
            "video_packets_sent",
            "video_frame_rate",
            "video_resolution",
            "rtt_ms",
            "created_at",
        ],
    ),
];

/// The older database, open read-only.
#[derive(Debug)]
pub struct Source {
    db: DatabaseConnection,
    backend: DbBackend,
}

/// Opens the older database at `url` read-only: SQLite in `mode=ro` without touching its
/// journal mode, PostgreSQL with read-only transactions.
pub async fn open(url: &str) -> Result<Source, LegacyError> {
    let backend = Backend::from_url(url).map_err(LegacyError::Setup)?;
    let connect_err = |source: DbErr| LegacyError::Connect {
        url: redacted_url(url),
        source,
    };
    let mut opt = ConnectOptions::new(url);
    opt.max_connections(2)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    let backend = match backend {
        Backend::Sqlite => {
            opt.map_sqlx_sqlite_opts(|o: SqliteConnectOptions| o.read_only(true));
            DbBackend::Sqlite
        }
        Backend::Postgres => {
            opt.set_application_name("telcall import-legacy");
            opt.map_sqlx_postgres_opts(|o: PgConnectOptions| {
                o.options([("default_transaction_read_only", "on")])
            });
            DbBackend::Postgres
        }
    };
    let db = Database::connect(opt).await.map_err(connect_err)?;
    Ok(Source { db, backend })
}

/// A primary-key position to read after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cursor {
    /// Before the first row.
    #[default]
    Start,
    /// After the row with this id.
    After(i64),
    /// After this `(user_id, friend_id)` pair.
    AfterPair(i64, i64),
}

impl Source {
    /// Closes the pool.
    pub async fn close(self) -> Result<(), DbErr> {
        self.db.close().await
    }

    /// Every table or column of [`REQUIRED_SHAPE`] the database lacks, as sentences such as
    /// "table calls has no column call_id". Empty when the shape is right.
    pub async fn shape_problems(&self) -> Result<Vec<String>, DbErr> {
        let mut problems = Vec::new();
        for (table, columns) in REQUIRED_SHAPE {
            let present = self.columns_of(table).await?;
            if present.is_empty() {
                problems.push(format!("table {table} is missing"));
                continue;
            }
            for column in *columns {
                if !present.iter().any(|c| c.eq_ignore_ascii_case(column)) {
                    problems.push(format!("table {table} has no column {column}"));
                }
            }
        }
        Ok(problems)
    }

    async fn columns_of(&self, table: &str) -> Result<Vec<String>, DbErr> {
        let sql = match self.backend {
            DbBackend::Postgres => {
                "SELECT CAST(column_name AS TEXT) AS name FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1"
            }
            _ => "SELECT name FROM pragma_table_info(?)",
        };
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.backend,
                sql,
                [Value::from(table)],
            ))
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String>("", "name"))
            .collect()
    }

    /// Number of rows of `table` (for progress).
    pub async fn count(&self, table: &str) -> Result<u64, DbErr> {
        let sql = format!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {table}");
        let row = self
            .db
            .query_one_raw(Statement::from_string(self.backend, sql))
            .await?;
        let n = match row {
            Some(row) => row.try_get::<i64>("", "n")?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// `col` as UTC microseconds (PostgreSQL: `EXTRACT(EPOCH …)` reads both timestamp
    /// flavours as UTC) or as text (SQLite).
    fn ts(&self, col: &str, alias: &str) -> String {
        match self.backend {
            DbBackend::Postgres => {
                format!("CAST(EXTRACT(EPOCH FROM {col}) * 1000000 AS BIGINT) AS {alias}")
            }
            _ => format!("CAST({col} AS TEXT) AS {alias}"),
        }
    }

    fn time(&self, row: &QueryResult, col: &str) -> Result<Option<RawTime>, DbErr> {
        Ok(match self.backend {
            DbBackend::Postgres => row.try_get::<Option<i64>>("", col)?.map(RawTime::Micros),
            _ => row.try_get::<Option<String>>("", col)?.map(RawTime::Text),
        })
    }

    /// Runs `sql` (whose keyset condition uses one id placeholder then the limit).
    async fn page(
        &self,
        sql_pg: &str,
        sql_sqlite: &str,
        after: Vec<Value>,
        limit: u64,
    ) -> Result<Vec<QueryResult>, DbErr> {
        let sql = match self.backend {
            DbBackend::Postgres => sql_pg,
            _ => sql_sqlite,
        };
        let mut values = after;
        values.push(Value::from(i64::try_from(limit).unwrap_or(i64::MAX)));
        self.db
            .query_all_raw(Statement::from_sql_and_values(self.backend, sql, values))
            .await
    }

    fn after_id(cursor: Cursor) -> i64 {
        match cursor {
            Cursor::After(id) => id,
            _ => i64::MIN,
        }
    }

    /// Up to `limit` users after `cursor`, by id.
    pub async fn users(&self, cursor: Cursor, limit: u64) -> Result<Vec<LegacyUser>, DbErr> {
        let select = format!(
            "SELECT CAST(id AS BIGINT) AS id, CAST(telegram_user_id AS BIGINT) AS tg, \
             username, first_name, last_name, photo_url, {}, {} FROM users",
            self.ts("created_at", "created_at"),
            self.ts("updated_at", "updated_at"),
        );
        let rows = self
            .page(
                &format!("{select} WHERE id > $1 ORDER BY id LIMIT $2"),
                &format!("{select} WHERE id > ? ORDER BY id LIMIT ?"),
                vec![Value::from(Self::after_id(cursor))],
                limit,
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LegacyUser {
                    id: r.try_get("", "id")?,
                    telegram_user_id: r.try_get("", "tg")?,
                    username: r.try_get("", "username")?,
                    first_name: r.try_get("", "first_name")?,
                    last_name: r.try_get("", "last_name")?,
                    photo_url: r.try_get("", "photo_url")?,
                    created_at: self.time(r, "created_at")?,
                    updated_at: self.time(r, "updated_at")?,
                })
            })
            .collect()
    }

    /// Up to `limit` calls after `cursor`, by id, with the creator's Telegram id.
    pub async fn calls(&self, cursor: Cursor, limit: u64) -> Result<Vec<LegacyCall>, DbErr> {
        let select = format!(
            "SELECT CAST(c.id AS BIGINT) AS id, CAST(c.call_id AS TEXT) AS code, \
             CAST(u.telegram_user_id AS BIGINT) AS tg, c.title, \
             CAST(CASE WHEN c.is_video_enabled THEN 1 ELSE 0 END AS BIGINT) AS video, \
             CAST(c.status AS TEXT) AS status, {}, {} \
             FROM calls c LEFT JOIN users u ON u.id = c.creator_user_id",
            self.ts("c.created_at", "created_at"),
            self.ts("c.expires_at", "expires_at"),
        );
        let rows = self
            .page(
                &format!("{select} WHERE c.id > $1 ORDER BY c.id LIMIT $2"),
                &format!("{select} WHERE c.id > ? ORDER BY c.id LIMIT ?"),
                vec![Value::from(Self::after_id(cursor))],
                limit,
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LegacyCall {
                    id: r.try_get("", "id")?,
                    code: r.try_get("", "code")?,
                    creator_telegram_id: r.try_get("", "tg")?,
                    title: r.try_get("", "title")?,
                    is_video_enabled: r.try_get::<i64>("", "video")? != 0,
                    status: r.try_get("", "status")?,
                    created_at: self.time(r, "created_at")?,
                    expires_at: self.time(r, "expires_at")?,
                })
            })
            .collect()
    }

    /// Up to `limit` participants after `cursor`, by id, with the call's code and the
    /// user's Telegram id.
    pub async fn participants(
        &self,
        cursor: Cursor,
        limit: u64,
    ) -> Result<Vec<LegacyParticipant>, DbErr> {
        let select = format!(
            "SELECT CAST(p.id AS BIGINT) AS id, CAST(c.call_id AS TEXT) AS code, \
             CAST(u.telegram_user_id AS BIGINT) AS tg, {}, {} FROM participants p \
             LEFT JOIN calls c ON c.id = p.call_id LEFT JOIN users u ON u.id = p.user_id",
            self.ts("p.joined_at", "joined_at"),
            self.ts("p.left_at", "left_at"),
        );
        let rows = self
            .page(
                &format!("{select} WHERE p.id > $1 ORDER BY p.id LIMIT $2"),
                &format!("{select} WHERE p.id > ? ORDER BY p.id LIMIT ?"),
                vec![Value::from(Self::after_id(cursor))],
                limit,
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LegacyParticipant {
                    id: r.try_get("", "id")?,
                    code: r.try_get("", "code")?,
                    telegram_user_id: r.try_get("", "tg")?,
                    joined_at: self.time(r, "joined_at")?,
                    left_at: self.time(r, "left_at")?,
                })
            })
            .collect()
    }

    /// Up to `limit` friend links after `cursor`, by `(user_id, friend_id)`, with both
    /// Telegram ids and whether the reverse direction exists.
    pub async fn friend_links(
        &self,
        cursor: Cursor,
        limit: u64,
    ) -> Result<Vec<LegacyFriendLink>, DbErr> {
        let select = format!(
            "SELECT CAST(f.user_id AS BIGINT) AS user_id, CAST(f.friend_id AS BIGINT) AS friend_id, \
             CAST(u.telegram_user_id AS BIGINT) AS user_tg, \
             CAST(v.telegram_user_id AS BIGINT) AS friend_tg, \
             CAST(CASE WHEN r.user_id IS NULL THEN 0 ELSE 1 END AS BIGINT) AS reverse, {}, {} \
             FROM friend_links f \
             LEFT JOIN users u ON u.id = f.user_id LEFT JOIN users v ON v.id = f.friend_id \
             LEFT JOIN friend_links r ON r.user_id = f.friend_id AND r.friend_id = f.user_id",
            self.ts("f.created_at", "created_at"),
            self.ts("f.updated_at", "updated_at"),
        );
        let (a, b) = match cursor {
            Cursor::AfterPair(a, b) => (a, b),
            _ => (i64::MIN, i64::MIN),
        };
        let rows = self
            .page(
                &format!(
                    "{select} WHERE (f.user_id, f.friend_id) > ($1, $2) \
                     ORDER BY f.user_id, f.friend_id LIMIT $3"
                ),
                &format!(
                    "{select} WHERE (f.user_id, f.friend_id) > (?, ?) \
                     ORDER BY f.user_id, f.friend_id LIMIT ?"
                ),
                vec![Value::from(a), Value::from(b)],
                limit,
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LegacyFriendLink {
                    user_id: r.try_get("", "user_id")?,
                    friend_id: r.try_get("", "friend_id")?,
                    user_telegram_id: r.try_get("", "user_tg")?,
                    friend_telegram_id: r.try_get("", "friend_tg")?,
                    created_at: self.time(r, "created_at")?,
                    updated_at: self.time(r, "updated_at")?,
                    reverse_exists: r.try_get::<i64>("", "reverse")? != 0,
                })
            })
            .collect()
    }

    /// Up to `limit` statistics rows after `cursor`, by id, with the reporter's Telegram id
    /// (the older table names its call by code already).
    pub async fn call_stats(&self, cursor: Cursor, limit: u64) -> Result<Vec<LegacyStat>, DbErr> {
        let f = |c: &str| format!("CAST(s.{c} AS DOUBLE PRECISION) AS {c}");
        let i = |c: &str| format!("CAST(s.{c} AS BIGINT) AS {c}");
        let select = format!(
            "SELECT CAST(s.id AS BIGINT) AS id, CAST(s.call_id AS TEXT) AS code, \
             CAST(u.telegram_user_id AS BIGINT) AS tg, {}, {}, {}, {}, {}, {}, {}, {}, {}, \
             CAST(s.video_resolution AS TEXT) AS video_resolution, {}, {} \
             FROM call_stats s LEFT JOIN users u ON u.id = s.user_id",
            f("duration_seconds"),
            f("audio_bitrate_kbps"),
            i("audio_packets_lost"),
            i("audio_packets_sent"),
            f("audio_jitter_ms"),
            f("video_bitrate_kbps"),
            i("video_packets_lost"),
            i("video_packets_sent"),
            f("video_frame_rate"),
            f("rtt_ms"),
            self.ts("s.created_at", "created_at"),
        );
        let rows = self
            .page(
                &format!("{select} WHERE s.id > $1 ORDER BY s.id LIMIT $2"),
                &format!("{select} WHERE s.id > ? ORDER BY s.id LIMIT ?"),
                vec![Value::from(Self::after_id(cursor))],
                limit,
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LegacyStat {
                    id: r.try_get("", "id")?,
                    code: r.try_get("", "code")?,
                    telegram_user_id: r.try_get("", "tg")?,
                    figures: CallStatsInput {
                        duration_seconds: r.try_get("", "duration_seconds")?,
                        audio_bitrate_kbps: r.try_get("", "audio_bitrate_kbps")?,
                        audio_packets_lost: r.try_get("", "audio_packets_lost")?,
                        audio_packets_sent: r.try_get("", "audio_packets_sent")?,
                        audio_jitter_ms: r.try_get("", "audio_jitter_ms")?,
                        video_bitrate_kbps: r.try_get("", "video_bitrate_kbps")?,
                        video_packets_lost: r.try_get("", "video_packets_lost")?,
                        video_packets_sent: r.try_get("", "video_packets_sent")?,
                        video_frame_rate: r.try_get("", "video_frame_rate")?,
                        video_resolution: r.try_get("", "video_resolution")?,
                        rtt_ms: r.try_get("", "rtt_ms")?,
                    },
                    created_at: self.time(r, "created_at")?,
                })
            })
            .collect()
    }
}
