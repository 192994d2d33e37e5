//! Writing mapped rows into telcall's tables, one batch at a time inside the caller's
//! transaction: natural keys resolved to telcall's ids, rows already present recognised by
//! their natural key, each remaining row given its [`Fate`], and the new ones inserted in
//! bulk by [`insert_new`] (on PostgreSQL one `INSERT … SELECT FROM unnest(arrays)` per
//! batch, on SQLite multi-row `INSERT … VALUES`), conflicting rows left alone.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::Hash;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Expr, ExprTrait, Func, IntoColumnRef, Query, SelectStatement, UpdateStatement,
};
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, IdenStatic, QueryResult, Statement, StatementBuilder, Value,
};

use super::TableReport;
use super::mapping::{CallRow, LinkRow, ParticipantRow, SkipReason, StatRow, UserRow};
use crate::entity::{call_stats, calls, friend_links, users};
use crate::time::normalize_statement;

/// Most bound values in one statement (SQLite allows 32,766; PostgreSQL 65,535).
const MAX_BOUND_VALUES: usize = 30_000;

fn statement<C: ConnectionTrait, S: StatementBuilder>(conn: &C, stmt: &S) -> Statement {
    let mut built = conn.get_database_backend().build(stmt);
    normalize_statement(&mut built);
    built
}

async fn select<C: ConnectionTrait>(
    conn: &C,
    stmt: &SelectStatement,
) -> Result<Vec<QueryResult>, DbErr> {
    conn.query_all_raw(statement(conn, stmt)).await
}

async fn exec<C: ConnectionTrait, S: StatementBuilder>(conn: &C, stmt: &S) -> Result<u64, DbErr> {
    Ok(conn
        .execute_raw(statement(conn, stmt))
        .await?
        .rows_affected())
}

/// Selects made by `make` for chunks of `values` (each chunk used through [`one_of`]),
/// concatenated: on PostgreSQL one select for all, elsewhere chunks under the bound-value
/// limit.
async fn select_in<C, V, F>(conn: &C, values: &[V], make: F) -> Result<Vec<QueryResult>, DbErr>
where
    C: ConnectionTrait,
    F: Fn(&[V]) -> Result<SelectStatement, DbErr>,
{
    let per_select = match conn.get_database_backend() {
        DbBackend::Postgres => values.len().max(1),
        _ => MAX_BOUND_VALUES,
    };
    let mut out = Vec::new();
    for chunk in values.chunks(per_select) {
        out.extend(select(conn, &make(chunk)?).await?);
    }
    Ok(out)
}

/// `column IN values`: on PostgreSQL `column = ANY(array)` with the values as one array
/// parameter (a short statement, planned alike whatever the batch), elsewhere an `IN` list.
fn one_of<V>(
    backend: DbBackend,
    column: impl IdenStatic + IntoColumnRef,
    kind: Kind,
    values: &[V],
) -> Result<Expr, DbErr>
where
    V: Clone + Into<Value> + Into<Expr>,
{
    match backend {
        DbBackend::Postgres => {
            let array = array_literal(values.iter().map(|v| v.clone().into()))?;
            Ok(Expr::cust_with_values(
                format!(
                    "\"{}\" IN (SELECT unnest(CAST($1 AS {})))",
                    column.as_str(),
                    kind.pg_array()
                ),
                [array],
            ))
        }
        _ => Ok(Expr::col(column).is_in(values.iter().cloned())),
    }
}

/// The distinct values of `values`.
fn distinct<V: Hash + Eq>(values: impl IntoIterator<Item = V>) -> Vec<V> {
    values
        .into_iter()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect()
}

/// Microseconds since the epoch: the comparison key of stored instants.
fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// The SQL type of an inserted column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    BigInt,
    Double,
    Text,
    Bool,
    Time,
}

impl Kind {
    /// PostgreSQL's array type of the column, for the `unnest` casts.
    fn pg_array(self) -> &'static str {
        match self {
            Self::BigInt => "bigint[]",
            Self::Double => "double precision[]",
            Self::Text => "text[]",
            Self::Bool => "boolean[]",
            Self::Time => "timestamptz[]",
        }
    }
}

/// A table and the columns the importer inserts, in the order of each row's values.
struct Columns {
    table: &'static str,
    columns: &'static [(&'static str, Kind)],
}

const USERS: Columns = Columns {
    table: "users",
    columns: &[
        ("telegram_user_id", Kind::BigInt),
        ("username", Kind::Text),
        ("first_name", Kind::Text),
        ("last_name", Kind::Text),
        ("photo_url", Kind::Text),
        ("created_at", Kind::Time),
        ("updated_at", Kind::Time),
    ],
};

const CALLS: Columns = Columns {
    table: "calls",
    columns: &[
        ("code", Kind::Text),
        ("creator_id", Kind::BigInt),
        ("title", Kind::Text),
        ("is_video_enabled", Kind::Bool),
        ("status", Kind::Text),
        ("created_at", Kind::Time),
        ("expires_at", Kind::Time),
        ("ended_at", Kind::Time),
    ],
};

const PARTICIPANTS: Columns = Columns {
    table: "participants",
    columns: &[
        ("call_id", Kind::BigInt),
        ("user_id", Kind::BigInt),
        ("joined_at", Kind::Time),
        ("left_at", Kind::Time),
    ],
};

const FRIEND_LINKS: Columns = Columns {
    table: "friend_links",
    columns: &[
        ("user_id", Kind::BigInt),
        ("friend_id", Kind::BigInt),
        ("last_call_at", Kind::Time),
        ("created_at", Kind::Time),
    ],
};

const CALL_STATS: Columns = Columns {
    table: "call_stats",
    columns: &[
        ("call_id", Kind::BigInt),
        ("user_id", Kind::BigInt),
        ("duration_seconds", Kind::Double),
        ("audio_bitrate_kbps", Kind::Double),
        ("audio_packets_lost", Kind::BigInt),
        ("audio_packets_sent", Kind::BigInt),
        ("audio_jitter_ms", Kind::Double),
        ("video_bitrate_kbps", Kind::Double),
        ("video_packets_lost", Kind::BigInt),
        ("video_packets_sent", Kind::BigInt),
        ("video_frame_rate", Kind::Double),
        ("video_resolution", Kind::Text),
        ("rtt_ms", Kind::Double),
        ("created_at", Kind::Time),
    ],
};

impl Columns {
    fn names(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        names.join(", ")
    }
}

/// Appends `value` to a PostgreSQL array literal as one element.
fn push_element(out: &mut String, value: &Value) -> Result<(), DbErr> {
    let bad = || DbErr::Custom(format!("cannot write {value:?} into an array"));
    match value {
        Value::BigInt(None)
        | Value::Double(None)
        | Value::String(None)
        | Value::Bool(None)
        | Value::ChronoDateTimeUtc(None) => out.push_str("NULL"),
        Value::BigInt(Some(n)) => write!(out, "{n}").map_err(|_| bad())?,
        Value::Double(Some(x)) if x.is_nan() => out.push_str("NaN"),
        Value::Double(Some(x)) if x.is_infinite() => {
            out.push_str(if *x > 0.0 { "Infinity" } else { "-Infinity" });
        }
        // Rust's shortest round-trip form; PostgreSQL reads it back exactly.
        Value::Double(Some(x)) => write!(out, "{x:?}").map_err(|_| bad())?,
        Value::Bool(Some(b)) => out.push(if *b { 't' } else { 'f' }),
        Value::String(Some(text)) => {
            out.push('"');
            for c in text.chars() {
                if matches!(c, '"' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        Value::ChronoDateTimeUtc(Some(at)) => {
            write!(out, "\"{}\"", at.format("%Y-%m-%d %H:%M:%S%.6f+00")).map_err(|_| bad())?;
        }
        _ => return Err(bad()),
    }
    Ok(())
}

/// A PostgreSQL array literal (`{1,2,NULL}`) of `values`.
fn array_literal(values: impl IntoIterator<Item = Value>) -> Result<String, DbErr> {
    let mut out = String::from("{");
    for (n, value) in values.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        push_element(&mut out, &value)?;
    }
    out.push('}');
    Ok(out)
}

/// PostgreSQL: every row in one statement, one array parameter per column, so the
/// statement and its plan stay the same size whatever the batch.
fn unnest_insert(columns: &Columns, rows: &[Vec<Value>]) -> Result<Statement, DbErr> {
    let mut arrays = Vec::with_capacity(columns.columns.len());
    let mut casts = Vec::with_capacity(columns.columns.len());
    for (i, (_, kind)) in columns.columns.iter().enumerate() {
        let array = array_literal(rows.iter().map(|row| row[i].clone()))?;
        arrays.push(Value::from(array));
        casts.push(format!("${}::{}", i + 1, kind.pg_array()));
    }
    let sql = format!(
        "INSERT INTO {} ({}) SELECT * FROM unnest({}) ON CONFLICT DO NOTHING",
        columns.table,
        columns.names(),
        casts.join(", ")
    );
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        arrays,
    ))
}

/// SQLite: multi-row `INSERT … VALUES` statements under the bound-value limit.
fn values_inserts(columns: &Columns, rows: Vec<Vec<Value>>) -> Vec<Statement> {
    let width = columns.columns.len();
    let tuple = format!("({})", vec!["?"; width].join(", "));
    let per_statement = (MAX_BOUND_VALUES / width).max(1);
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(per_statement).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {} ON CONFLICT DO NOTHING",
            columns.table,
            columns.names(),
            vec![tuple.as_str(); chunk.len()].join(", ")
        );
        let mut stmt =
            Statement::from_sql_and_values(DbBackend::Sqlite, sql, chunk.into_iter().flatten());
        normalize_statement(&mut stmt);
        out.push(stmt);
    }
    out
}

/// Inserts `rows` (each with one value per column, in order) into `columns.table`;
/// conflicting rows are left alone. Returns the number of rows inserted.
async fn insert_new<C: ConnectionTrait>(
    conn: &C,
    columns: &Columns,
    rows: Vec<Vec<Value>>,
) -> Result<u64, DbErr> {
    if rows.is_empty() {
        return Ok(0);
    }
    let statements = match conn.get_database_backend() {
        DbBackend::Postgres => vec![unnest_insert(columns, &rows)?],
        _ => values_inserts(columns, rows),
    };
    let mut inserted = 0;
    for stmt in statements {
        inserted += conn.execute_raw(stmt).await?.rows_affected();
    }
    Ok(inserted)
}

/// What becomes of one mapped row of a batch.
enum Fate {
    /// New: insert these values (one per column).
    New(Vec<Value>),
    /// Already there, left as it is.
    Present,
    /// Already there from before this run: this statement brings it up to date.
    Update(UpdateStatement),
    /// Already there, written earlier in this run from an older row of the source, which
    /// this statement replaces by this newer one; the older row counts as skipped.
    Supersede(UpdateStatement, SkipReason),
    /// Not imported.
    Skip(SkipReason),
}

/// Settles one batch: a row whose natural key (`key`) came earlier in the batch is a
/// duplicate of the source; every other row gets its [`Fate`], is counted, and the new
/// ones are inserted together.
async fn settle<C, R, K>(
    conn: &C,
    columns: &Columns,
    rows: Vec<R>,
    key: impl Fn(&R) -> K,
    mut fate: impl FnMut(R) -> Fate,
    report: &mut TableReport,
) -> Result<(), DbErr>
where
    C: ConnectionTrait,
    K: Hash + Eq,
{
    let mut seen = HashSet::with_capacity(rows.len());
    let mut fresh = Vec::with_capacity(rows.len());
    for row in rows {
        if !seen.insert(key(&row)) {
            report.skip(&SkipReason::DuplicateInSource);
            continue;
        }
        match fate(row) {
            Fate::New(values) => fresh.push(values),
            Fate::Present => report.already_present += 1,
            Fate::Update(stmt) => {
                exec(conn, &stmt).await?;
                report.updated += 1;
            }
            Fate::Supersede(stmt, reason) => {
                exec(conn, &stmt).await?;
                report.skip(&reason);
            }
            Fate::Skip(reason) => report.skip(&reason),
        }
    }
    let attempted = fresh.len() as u64;
    let inserted = insert_new(conn, columns, fresh).await?;
    report.imported += inserted;
    // A conflict means a concurrent writer stored the same key meanwhile.
    report.already_present += attempted - inserted;
    Ok(())
}

/// telcall's user id of each Telegram id that exists.
async fn user_ids<C: ConnectionTrait>(
    conn: &C,
    telegram_ids: impl IntoIterator<Item = i64>,
) -> Result<HashMap<i64, i64>, DbErr> {
    let ids = distinct(telegram_ids);
    let backend = conn.get_database_backend();
    let rows = select_in(conn, &ids, |chunk| {
        Ok(Query::select()
            .columns([users::Column::Id, users::Column::TelegramUserId])
            .from(users::Entity)
            .and_where(one_of(
                backend,
                users::Column::TelegramUserId,
                Kind::BigInt,
                chunk,
            )?)
            .to_owned())
    })
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("", "telegram_user_id")?, r.try_get("", "id")?)))
        .collect()
}

/// telcall's call id of each code that exists.
async fn call_ids<C: ConnectionTrait>(
    conn: &C,
    codes: impl IntoIterator<Item = String>,
) -> Result<HashMap<String, i64>, DbErr> {
    let codes = distinct(codes);
    let backend = conn.get_database_backend();
    let rows = select_in(conn, &codes, |chunk| {
        Ok(Query::select()
            .columns([calls::Column::Id, calls::Column::Code])
            .from(calls::Entity)
            .and_where(one_of(backend, calls::Column::Code, Kind::Text, chunk)?)
            .to_owned())
    })
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("", "code")?, r.try_get("", "id")?)))
        .collect()
}

/// Users: new Telegram ids are inserted; an existing user takes the older backend's
/// profile only when it is newer (`updated_at`) than telcall's, and keeps the earlier
/// `created_at`.
pub async fn users<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<UserRow>,
    report: &mut TableReport,
) -> Result<(), DbErr> {
    let ids: Vec<i64> = distinct(rows.iter().map(|r| r.telegram_user_id));
    let existing: HashMap<i64, (i64, DateTime<Utc>, DateTime<Utc>)> =
        select_in(conn, &ids, |chunk| {
            Ok(Query::select()
                .columns([
                    users::Column::Id,
                    users::Column::TelegramUserId,
                    users::Column::CreatedAt,
                    users::Column::UpdatedAt,
                ])
                .from(users::Entity)
                .and_where(one_of(
                    conn.get_database_backend(),
                    users::Column::TelegramUserId,
                    Kind::BigInt,
                    chunk,
                )?)
                .to_owned())
        })
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("", "telegram_user_id")?,
                (
                    r.try_get("", "id")?,
                    r.try_get("", "created_at")?,
                    r.try_get("", "updated_at")?,
                ),
            ))
        })
        .collect::<Result<_, DbErr>>()?;
    let fate = |row: UserRow| match existing.get(&row.telegram_user_id) {
        None => Fate::New(vec![
            row.telegram_user_id.into(),
            row.username.into(),
            row.first_name.into(),
            row.last_name.into(),
            row.photo_url.into(),
            row.created_at.into(),
            row.updated_at.into(),
        ]),
        Some(&(_, _, updated_at)) if micros(row.updated_at) <= micros(updated_at) => Fate::Present,
        Some(&(id, created_at, _)) => Fate::Update(
            Query::update()
                .table(users::Entity)
                .value(users::Column::Username, row.username)
                .value(users::Column::FirstName, row.first_name)
                .value(users::Column::LastName, row.last_name)
                .value(users::Column::PhotoUrl, row.photo_url)
                .value(users::Column::UpdatedAt, row.updated_at)
                .value(
                    users::Column::CreatedAt,
                    Ord::min(row.created_at, created_at),
                )
                .and_where(Expr::col(users::Column::Id).eq(id))
                .to_owned(),
        ),
    };
    settle(conn, &USERS, rows, |r| r.telegram_user_id, fate, report).await
}

/// Calls, keyed by code: the code is kept, the creator resolved by Telegram id.
pub async fn calls<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<CallRow>,
    report: &mut TableReport,
) -> Result<(), DbErr> {
    let creators = user_ids(conn, rows.iter().map(|r| r.creator_telegram_id)).await?;
    let existing = call_ids(conn, rows.iter().map(|r| r.code.clone())).await?;
    let fate = |row: CallRow| {
        if existing.contains_key(&row.code) {
            return Fate::Present;
        }
        let Some(&creator) = creators.get(&row.creator_telegram_id) else {
            return Fate::Skip(SkipReason::MissingUser);
        };
        Fate::New(vec![
            row.code.into(),
            creator.into(),
            row.title.into(),
            row.is_video_enabled.into(),
            row.status.as_str().into(),
            row.created_at.into(),
            row.expires_at.into(),
            row.ended_at.into(),
        ])
    };
    settle(conn, &CALLS, rows, |r| r.code.clone(), fate, report).await
}

/// Resolved `(call id, user id)` of rows named by code and Telegram id; rows whose call or
/// user does not exist are counted as skipped and dropped.
async fn resolve<C: ConnectionTrait, R>(
    conn: &C,
    rows: Vec<R>,
    key: impl Fn(&R) -> (&str, i64),
    report: &mut TableReport,
) -> Result<Vec<(i64, i64, R)>, DbErr> {
    let calls = call_ids(conn, rows.iter().map(|r| key(r).0.to_owned())).await?;
    let users = user_ids(conn, rows.iter().map(|r| key(r).1)).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (code, telegram_id) = key(&row);
        let Some(&call) = calls.get(code) else {
            report.skip(&SkipReason::MissingCall);
            continue;
        };
        let Some(&user) = users.get(&telegram_id) else {
            report.skip(&SkipReason::MissingUser);
            continue;
        };
        out.push((call, user, row));
    }
    Ok(out)
}

/// Rows of `table` (which has `call_id` and `user_id` columns) whose `(call_id, user_id)`
/// pair is one of `resolved`'s, selected as `columns` and mapped by `parse`. The pairs are
/// joined in exactly: on PostgreSQL as two array parameters through `unnest`, elsewhere as
/// a `VALUES` list under the bound-value limit.
async fn rows_of_pairs<C, P, Out>(
    conn: &C,
    table: &str,
    columns: &[&str],
    resolved: &[(i64, i64, P)],
    mut parse: impl FnMut(&QueryResult) -> Result<Out, DbErr>,
) -> Result<Vec<Out>, DbErr>
where
    C: ConnectionTrait,
{
    let pairs = distinct(resolved.iter().map(|r| (r.0, r.1)));
    let selected: Vec<String> = columns.iter().map(|c| format!("t.{c}")).collect();
    let selected = selected.join(", ");
    let on = "t.call_id = k.c AND t.user_id = k.u";
    let backend = conn.get_database_backend();
    let statements = match backend {
        DbBackend::Postgres => {
            let calls = array_literal(pairs.iter().map(|p| Value::from(p.0)))?;
            let users = array_literal(pairs.iter().map(|p| Value::from(p.1)))?;
            vec![Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT {selected} FROM {table} t JOIN unnest(CAST($1 AS bigint[]), \
                     CAST($2 AS bigint[])) AS k(c, u) ON {on}"
                ),
                [Value::from(calls), Value::from(users)],
            )]
        }
        _ => pairs
            .chunks(MAX_BOUND_VALUES / 2)
            .map(|chunk| {
                let tuples = vec!["(?, ?)"; chunk.len()].join(", ");
                Statement::from_sql_and_values(
                    backend,
                    format!(
                        "WITH k(c, u) AS (VALUES {tuples}) SELECT {selected} FROM {table} t \
                         JOIN k ON {on}"
                    ),
                    chunk
                        .iter()
                        .flat_map(|&(c, u)| [Value::from(c), Value::from(u)]),
                )
            })
            .collect(),
    };
    let mut out = Vec::new();
    for stmt in statements {
        for r in conn.query_all_raw(stmt).await? {
            out.push(parse(&r)?);
        }
    }
    Ok(out)
}

/// Participants, keyed by call, user and join time.
pub async fn participants<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<ParticipantRow>,
    report: &mut TableReport,
) -> Result<(), DbErr> {
    let resolved = resolve(
        conn,
        rows,
        |r| (r.code.as_str(), r.telegram_user_id),
        report,
    )
    .await?;
    let existing: HashSet<(i64, i64, i64)> = rows_of_pairs(
        conn,
        "participants",
        &["call_id", "user_id", "joined_at"],
        &resolved,
        |r| {
            let at: DateTime<Utc> = r.try_get("", "joined_at")?;
            Ok((
                r.try_get("", "call_id")?,
                r.try_get("", "user_id")?,
                micros(at),
            ))
        },
    )
    .await?
    .into_iter()
    .collect();
    let fate = |(call, user, row): (i64, i64, ParticipantRow)| {
        if existing.contains(&(call, user, micros(row.joined_at))) {
            return Fate::Present;
        }
        Fate::New(vec![
            call.into(),
            user.into(),
            row.joined_at.into(),
            row.left_at.into(),
        ])
    };
    let key = |r: &(i64, i64, ParticipantRow)| (r.0, r.1, micros(r.2.joined_at));
    settle(conn, &PARTICIPANTS, resolved, key, fate, report).await
}

/// Friend links, keyed by the pair; an existing link takes the older backend's
/// `last_call_at` when that is more recent.
pub async fn friend_links<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<LinkRow>,
    report: &mut TableReport,
) -> Result<(), DbErr> {
    let ids = user_ids(
        conn,
        rows.iter()
            .flat_map(|r| [r.user_telegram_id, r.friend_telegram_id]),
    )
    .await?;
    let mut resolved = Vec::with_capacity(rows.len());
    for row in rows {
        match (
            ids.get(&row.user_telegram_id),
            ids.get(&row.friend_telegram_id),
        ) {
            (Some(&user), Some(&friend)) => resolved.push((user, friend, row)),
            _ => report.skip(&SkipReason::MissingUser),
        }
    }
    let owners = distinct(resolved.iter().map(|r| r.0));
    let mut existing: HashMap<(i64, i64), (i64, i64)> = HashMap::new();
    for r in select_in(conn, &owners, |chunk| {
        Ok(Query::select()
            .columns([
                friend_links::Column::Id,
                friend_links::Column::UserId,
                friend_links::Column::FriendId,
                friend_links::Column::LastCallAt,
            ])
            .from(friend_links::Entity)
            .and_where(one_of(
                conn.get_database_backend(),
                friend_links::Column::UserId,
                Kind::BigInt,
                chunk,
            )?)
            .to_owned())
    })
    .await?
    {
        let at: DateTime<Utc> = r.try_get("", "last_call_at")?;
        existing.insert(
            (r.try_get("", "user_id")?, r.try_get("", "friend_id")?),
            (r.try_get("", "id")?, micros(at)),
        );
    }
    let fate = |(user, friend, row): (i64, i64, LinkRow)| match existing.get(&(user, friend)) {
        None => Fate::New(vec![
            user.into(),
            friend.into(),
            row.last_call_at.into(),
            row.created_at.into(),
        ]),
        Some(&(_, last)) if micros(row.last_call_at) <= last => Fate::Present,
        Some(&(id, _)) => Fate::Update(
            Query::update()
                .table(friend_links::Entity)
                .value(friend_links::Column::LastCallAt, row.last_call_at)
                .and_where(Expr::col(friend_links::Column::Id).eq(id))
                .to_owned(),
        ),
    };
    settle(conn, &FRIEND_LINKS, resolved, |r| (r.0, r.1), fate, report).await
}

/// The highest statistics row id before an import of the table starts: rows above it were
/// written by this run.
pub async fn last_stats_id<C: ConnectionTrait>(conn: &C) -> Result<i64, DbErr> {
    let stmt = Query::select()
        .expr_as(
            Func::coalesce([
                Expr::from(Func::max(Expr::col(call_stats::Column::Id))),
                Expr::val(0_i64),
            ]),
            "n",
        )
        .from(call_stats::Entity)
        .to_owned();
    match select(conn, &stmt).await?.first() {
        Some(row) => row.try_get("", "n"),
        None => Ok(0),
    }
}

/// Call statistics. telcall keeps one row per participant and call, the newest, as its API
/// does when a participant reports again: of the source's rows for the same call and user
/// the one created last wins (the first read, among equally recent ones), whatever batch it
/// comes in; the others are skipped as older. Rows with ids above `since` were written by
/// this run (see [`last_stats_id`]).
pub async fn call_stats<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<StatRow>,
    since: i64,
    report: &mut TableReport,
) -> Result<(), DbErr> {
    let resolved = resolve(
        conn,
        rows,
        |r| (r.code.as_str(), r.telegram_user_id),
        report,
    )
    .await?;
    // The newest row of each pair in this batch.
    let mut newest: HashMap<(i64, i64), usize> = HashMap::with_capacity(resolved.len());
    let mut keep = vec![true; resolved.len()];
    for (i, (call, user, row)) in resolved.iter().enumerate() {
        let Some(&best) = newest.get(&(*call, *user)) else {
            newest.insert((*call, *user), i);
            continue;
        };
        if row.created_at > resolved[best].2.created_at {
            keep[best] = false;
            newest.insert((*call, *user), i);
        } else {
            keep[i] = false;
        }
    }
    let mut kept = Vec::with_capacity(newest.len());
    for (row, keep) in resolved.into_iter().zip(keep) {
        if keep {
            kept.push(row);
        } else {
            report.skip(&SkipReason::OlderStats);
        }
    }
    let existing: HashMap<(i64, i64), (i64, i64)> = rows_of_pairs(
        conn,
        "call_stats",
        &["id", "call_id", "user_id", "created_at"],
        &kept,
        |r| {
            let at: DateTime<Utc> = r.try_get("", "created_at")?;
            Ok((
                (r.try_get("", "call_id")?, r.try_get("", "user_id")?),
                (r.try_get("", "id")?, micros(at)),
            ))
        },
    )
    .await?
    .into_iter()
    .collect();
    let fate = |(call, user, row): (i64, i64, StatRow)| {
        let f = row.figures;
        let values: Vec<Value> = vec![
            call.into(),
            user.into(),
            f.duration_seconds.into(),
            f.audio_bitrate_kbps.into(),
            f.audio_packets_lost.into(),
            f.audio_packets_sent.into(),
            f.audio_jitter_ms.into(),
            f.video_bitrate_kbps.into(),
            f.video_packets_lost.into(),
            f.video_packets_sent.into(),
            f.video_frame_rate.into(),
            f.video_resolution.into(),
            f.rtt_ms.into(),
            row.created_at.into(),
        ];
        let Some(&(id, stored)) = existing.get(&(call, user)) else {
            return Fate::New(values);
        };
        let created = micros(row.created_at);
        if created < stored || (created == stored && id > since) {
            return Fate::Skip(SkipReason::OlderStats);
        }
        if created == stored {
            return Fate::Present;
        }
        let mut update = Query::update();
        update.table(call_stats::Entity);
        for ((name, _), value) in CALL_STATS.columns.iter().zip(values).skip(2) {
            update.value(sea_orm::sea_query::Alias::new(*name), value);
        }
        update.and_where(Expr::col(call_stats::Column::Id).eq(id));
        if id > since {
            Fate::Supersede(update, SkipReason::OlderStats)
        } else {
            Fate::Update(update)
        }
    };
    settle(conn, &CALL_STATS, kept, |r| (r.0, r.1), fate, report).await
}
