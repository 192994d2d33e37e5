//! [`FriendRepository`] for [`SeaStore`].

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::{Condition, Expr, ExprTrait, Func, LikeExpr, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, JoinType, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, RelationTrait,
};
use telcall_domain::{Friend, FriendQuery, FriendRepository, RepoError, User, UserId};

use super::{SeaStore, run_all, run_exec};
use crate::entity::{friend_links, users};
use crate::error::IntoRepo;

/// The escape character of friend-search `LIKE` patterns.
const LIKE_ESCAPE: char = '\\';

/// `%needle%` with `%`, `_` and the escape character in `needle` taken literally.
fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | LIKE_ESCAPE) {
            pattern.push(LIKE_ESCAPE);
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// First name, last name or username contains `needle`, ignoring case.
///
/// PostgreSQL: `ILIKE`, with the database's Unicode case rules. SQLite: `lower(column) LIKE
/// lower(pattern)`; SQLite's `lower()` and `LIKE` fold ASCII only, so for other scripts the
/// match is case-sensitive there (best effort; the pattern is folded the same way in Rust).
fn search_condition(backend: DbBackend, needle: &str) -> Condition {
    let columns = [
        users::Column::FirstName,
        users::Column::LastName,
        users::Column::Username,
    ];
    let pattern = contains_pattern(needle);
    let mut any = Condition::any();
    for column in columns {
        let column = Expr::col((users::Entity, column));
        any = any.add(match backend {
            // Spelled out: sea-query 1.0 renders `ilike(LikeExpr::…escape(..))` as
            // `col ILIKE (pattern ESCAPE c)`, which PostgreSQL rejects. The pattern is bound.
            DbBackend::Postgres => Expr::cust_with_exprs(
                r"$1 ILIKE $2 ESCAPE E'\\'",
                [column, Expr::val(pattern.as_str())],
            ),
            _ => Expr::expr(Func::lower(column))
                .like(LikeExpr::new(pattern.to_ascii_lowercase()).escape(LIKE_ESCAPE)),
        });
    }
    any
}

/// A friend: the user's columns plus the link's `last_call_at`.
#[derive(Debug, FromQueryResult)]
struct FriendRow {
    id: i64,
    telegram_user_id: i64,
    username: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    photo_url: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_call_at: DateTime<Utc>,
}

impl From<FriendRow> for Friend {
    fn from(r: FriendRow) -> Self {
        Self {
            user: User {
                id: UserId::new(r.id),
                telegram_user_id: r.telegram_user_id,
                username: r.username,
                first_name: r.first_name,
                last_name: r.last_name,
                photo_url: r.photo_url,
                created_at: r.created_at,
                updated_at: r.updated_at,
            },
            last_call_at: r.last_call_at,
        }
    }
}

/// A removed link's two ends.
#[derive(Debug, FromQueryResult)]
struct LinkRow {
    user_id: i64,
    friend_id: i64,
}

/// `items` without repeats, first occurrence kept.
fn dedup(items: &[UserId]) -> Vec<UserId> {
    let mut seen = HashSet::with_capacity(items.len());
    items
        .iter()
        .copied()
        .filter(|id| seen.insert(*id))
        .collect()
}

/// Upserts the links `(user, friend, last_call_at)` on `conn`, in the order given (callers
/// sort them: row locks are then taken in one global order), in multi-row statements of a
/// few fixed sizes (see `shaped_chunks`). A pair must not repeat.
pub(super) async fn upsert_links<C: ConnectionTrait>(
    conn: &C,
    pairs: &[(UserId, UserId, DateTime<Utc>)],
) -> Result<(), RepoError> {
    let upsert =
        OnConflict::columns([friend_links::Column::UserId, friend_links::Column::FriendId])
            .update_column(friend_links::Column::LastCallAt)
            .to_owned();
    for chunk in super::shaped_chunks(pairs) {
        let rows = chunk
            .iter()
            .map(|&(user, friend, at)| friend_links::ActiveModel {
                id: NotSet,
                user_id: Set(user.get()),
                friend_id: Set(friend.get()),
                last_call_at: Set(at),
                created_at: Set(at),
            });
        let stmt = friend_links::Entity::insert_many(rows)
            .on_conflict(upsert.clone())
            .into_query();
        run_exec(conn, &stmt).await?;
    }
    Ok(())
}

#[async_trait]
impl FriendRepository for SeaStore {
    #[tracing::instrument(level = "debug", skip_all, fields(users = users.len()))]
    async fn link_friends(&self, users: &[UserId], at: DateTime<Utc>) -> Result<(), RepoError> {
        let _writing = self.writing().await?;
        let mut users = dedup(users);
        // Rows in one global order, so concurrent upserts of overlapping groups take their
        // row locks in the same order (no deadlock on PostgreSQL).
        users.sort_unstable();
        let pairs: Vec<(UserId, UserId, DateTime<Utc>)> = users
            .iter()
            .flat_map(|&a| {
                users
                    .iter()
                    .filter(move |&&b| b != a)
                    .map(move |&b| (a, b, at))
            })
            .collect();
        // One statement needs no transaction; several (a call of 30 people gives 870
        // ordered pairs) are written all or none.
        if super::shaped_chunks(&pairs).nth(1).is_none() {
            return upsert_links(&self.db, &pairs).await;
        }
        let txn = super::begin_write(&self.db).await?;
        upsert_links(&txn, &pairs).await?;
        txn.commit().await.repo()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = user.get()))]
    async fn list_friends(
        &self,
        user: UserId,
        query: &FriendQuery,
    ) -> Result<Vec<Friend>, RepoError> {
        let mut select = users::Entity::find()
            .column_as(
                Expr::col((friend_links::Entity, friend_links::Column::LastCallAt)),
                "last_call_at",
            )
            .join(
                JoinType::InnerJoin,
                friend_links::Relation::Friend.def().rev(),
            )
            .filter(friend_links::Column::UserId.eq(user.get()));
        if let Some(needle) = query.search.as_deref().filter(|s| !s.is_empty()) {
            select = select.filter(search_condition(self.db.get_database_backend(), needle));
        }
        let stmt = select
            .order_by_desc(friend_links::Column::LastCallAt)
            .order_by_asc(users::Column::Id)
            .limit(query.limit)
            .offset(query.offset)
            .into_query();
        Ok(run_all::<FriendRow, _, _>(&self.db, &stmt)
            .await?
            .into_iter()
            .map(Friend::from)
            .collect())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = user.get(), friend = friend.get()))]
    async fn is_friend(&self, user: UserId, friend: UserId) -> Result<bool, RepoError> {
        let link = friend_links::Entity::find()
            .filter(friend_links::Column::UserId.eq(user.get()))
            .filter(friend_links::Column::FriendId.eq(friend.get()))
            .one(&self.db)
            .await
            .repo()?;
        Ok(link.is_some())
    }

    /// One `DELETE` of both directions, `RETURNING` each removed link; the ids reported
    /// are those of links from `user`'s side, in the order asked for.
    #[tracing::instrument(level = "debug", skip_all, fields(user = user.get(), friends = friends.len()))]
    async fn delete_friends(
        &self,
        user: UserId,
        friends: &[UserId],
    ) -> Result<Vec<UserId>, RepoError> {
        let _writing = self.writing().await?;
        let friends = dedup(friends);
        if friends.is_empty() {
            return Ok(Vec::new());
        }
        let keys = || friends.iter().map(|id| id.get());
        let mut stmt = friend_links::Entity::delete_many()
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(friend_links::Column::UserId.eq(user.get()))
                            .add(friend_links::Column::FriendId.is_in(keys())),
                    )
                    .add(
                        Condition::all()
                            .add(friend_links::Column::FriendId.eq(user.get()))
                            .add(friend_links::Column::UserId.is_in(keys())),
                    ),
            )
            .into_query();
        stmt.returning(
            Query::returning()
                .columns([friend_links::Column::UserId, friend_links::Column::FriendId]),
        );
        let deleted: HashSet<UserId> = run_all::<LinkRow, _, _>(&self.db, &stmt)
            .await?
            .into_iter()
            .filter(|link| link.user_id == user.get())
            .map(|link| UserId::new(link.friend_id))
            .collect();
        Ok(friends
            .into_iter()
            .filter(|id| deleted.contains(id))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbBackend, EntityTrait, QueryFilter, QueryTrait};

    use super::{contains_pattern, search_condition};
    use crate::entity::users;

    #[test]
    fn patterns_take_wildcards_literally() {
        assert_eq!(contains_pattern("ann"), "%ann%");
        assert_eq!(contains_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn search_sql_per_backend() {
        for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
            let stmt = users::Entity::find()
                .filter(search_condition(backend, "a_b"))
                .build(backend);
            println!("{stmt}");
            let sql = stmt.sql;
            match backend {
                DbBackend::Postgres => assert!(sql.contains("ILIKE"), "{sql}"),
                _ => assert!(sql.contains("LOWER(") || sql.contains("lower("), "{sql}"),
            }
            assert!(sql.contains("ESCAPE"), "{sql}");
        }
    }
}
