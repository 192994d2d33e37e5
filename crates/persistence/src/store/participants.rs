//! [`ParticipantRepository`] for [`SeaStore`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::{Expr, Func, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait,
};
use telcall_domain::{
    Call, CallId, Participant, ParticipantRepository, PresenceChange, RepoError, UserId,
};

use super::friends::upsert_links;
use super::{SeaStore, no_row, run_all, run_exec, run_one, shaped_chunks};
use crate::entity::{calls, participants};
use crate::error::IntoRepo;

impl From<participants::Model> for Participant {
    fn from(m: participants::Model) -> Self {
        Self {
            id: m.id,
            call_id: CallId::new(m.call_id),
            user_id: UserId::new(m.user_id),
            joined_at: m.joined_at,
            left_at: m.left_at,
        }
    }
}

/// Inserts a new stay of `user` in `call` from `at`.
async fn record_join_on<C: ConnectionTrait>(
    conn: &C,
    call: CallId,
    user: UserId,
    at: DateTime<Utc>,
) -> Result<Participant, RepoError> {
    let row = participants::ActiveModel {
        id: NotSet,
        call_id: Set(call.get()),
        user_id: Set(user.get()),
        joined_at: Set(at),
        left_at: Set(None),
    };
    let mut stmt = participants::Entity::insert(row).into_query();
    stmt.returning_all();
    run_one::<participants::Model, _, _>(conn, &stmt)
        .await?
        .map(Participant::from)
        .ok_or_else(|| no_row("participant insert"))
}

/// Sets `left_at` on the user's open stays in the call.
async fn record_leave_on<C: ConnectionTrait>(
    conn: &C,
    call: CallId,
    user: UserId,
    at: DateTime<Utc>,
) -> Result<u64, RepoError> {
    let stmt = participants::Entity::update_many()
        .col_expr(participants::Column::LeftAt, Expr::value(Some(at)))
        .filter(participants::Column::CallId.eq(call.get()))
        .filter(participants::Column::UserId.eq(user.get()))
        .filter(participants::Column::LeftAt.is_null())
        .into_query();
    run_exec(conn, &stmt).await
}

/// Continues the user's latest stay when it is open or ended at or after `since`.
async fn continue_stay_on<C: ConnectionTrait>(
    conn: &C,
    call: CallId,
    user: UserId,
    since: DateTime<Utc>,
) -> Result<Option<Participant>, RepoError> {
    let latest = participants::Entity::find()
        .filter(participants::Column::CallId.eq(call.get()))
        .filter(participants::Column::UserId.eq(user.get()))
        .order_by_desc(participants::Column::Id)
        .limit(1)
        .into_query();
    let Some(latest) = run_one::<participants::Model, _, _>(conn, &latest).await? else {
        return Ok(None);
    };
    if latest.left_at.is_some_and(|left| left < since) {
        return Ok(None);
    }
    if latest.left_at.is_none() {
        return Ok(Some(latest.into()));
    }
    let mut stmt = participants::Entity::update_many()
        .col_expr(
            participants::Column::LeftAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(participants::Column::Id.eq(latest.id))
        .into_query();
    stmt.returning_all();
    Ok(run_one::<participants::Model, _, _>(conn, &stmt)
        .await?
        .map(Participant::from))
}

/// The positions, in order, of the joins in `changes` whose person has no other change in
/// the batch (a person's changes are about their own stays only, so these can be written
/// together, apart from the others, without changing the outcome).
fn lone_joins(changes: &[PresenceChange]) -> BTreeSet<usize> {
    let mut seen: HashMap<(CallId, UserId), usize> = HashMap::new();
    for change in changes {
        let key = match change {
            PresenceChange::Joined { call, user, .. } | PresenceChange::Left { call, user, .. } => {
                (*call, *user)
            }
        };
        *seen.entry(key).or_default() += 1;
    }
    changes
        .iter()
        .enumerate()
        .filter(|(_, change)| {
            matches!(change, PresenceChange::Joined { call, user, .. } if seen[&(*call, *user)] == 1)
        })
        .map(|(index, _)| index)
        .collect()
}

/// Writes the stays of the joins at `batched` (see [`lone_joins`]) with a few statements
/// whatever their number: reads of each person's latest stay, inserts of the new stays and
/// updates of the reopened ones, each for many rows at once (see `shaped_chunks`). Each
/// join is decided exactly as [`continue_stay_on`] and [`record_join_on`] decide it one at
/// a time.
async fn record_lone_joins_on<C: ConnectionTrait>(
    conn: &C,
    changes: &[PresenceChange],
    batched: &BTreeSet<usize>,
) -> Result<(), RepoError> {
    let joins: Vec<(CallId, UserId, DateTime<Utc>, DateTime<Utc>)> = batched
        .iter()
        .filter_map(|&index| match &changes[index] {
            PresenceChange::Joined {
                call,
                user,
                at,
                since,
                ..
            } => Some((*call, *user, *at, *since)),
            PresenceChange::Left { .. } => None,
        })
        .collect();
    let mut latest: HashMap<(CallId, UserId), participants::Model> = HashMap::new();
    for chunk in shaped_chunks(&joins) {
        let pairs = chunk
            .iter()
            .fold(Condition::any(), |any, (call, user, _, _)| {
                any.add(
                    Condition::all()
                        .add(participants::Column::CallId.eq(call.get()))
                        .add(participants::Column::UserId.eq(user.get())),
                )
            });
        let newest = Query::select()
            .expr(Func::max(Expr::col(participants::Column::Id)))
            .from(participants::Entity)
            .cond_where(pairs)
            .group_by_columns([participants::Column::CallId, participants::Column::UserId])
            .to_owned();
        let stmt = participants::Entity::find()
            .filter(participants::Column::Id.in_subquery(newest))
            .into_query();
        for row in run_all::<participants::Model, _, _>(conn, &stmt).await? {
            latest.insert((CallId::new(row.call_id), UserId::new(row.user_id)), row);
        }
    }
    let mut new_stays = Vec::new();
    let mut reopened = Vec::new();
    for (call, user, at, since) in joins {
        match latest.get(&(call, user)) {
            // Still open: the stay goes on.
            Some(row) if row.left_at.is_none() => {}
            // Left within the rejoin window: the same stay, reopened.
            Some(row) if row.left_at.is_some_and(|left| left >= since) => reopened.push(row.id),
            // Never here, or left before the window: a new stay.
            _ => new_stays.push(participants::ActiveModel {
                id: NotSet,
                call_id: Set(call.get()),
                user_id: Set(user.get()),
                joined_at: Set(at),
                left_at: Set(None),
            }),
        }
    }
    for chunk in shaped_chunks(&new_stays) {
        let stmt = participants::Entity::insert_many(chunk.iter().cloned()).into_query();
        run_exec(conn, &stmt).await?;
    }
    for chunk in shaped_chunks(&reopened) {
        let stmt = participants::Entity::update_many()
            .col_expr(
                participants::Column::LeftAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(participants::Column::Id.is_in(chunk.iter().copied()))
            .into_query();
        run_exec(conn, &stmt).await?;
    }
    Ok(())
}

#[async_trait]
impl ParticipantRepository for SeaStore {
    #[tracing::instrument(level = "debug", skip_all, fields(call = call.get(), user = user.get()))]
    async fn record_join(
        &self,
        call: CallId,
        user: UserId,
        at: DateTime<Utc>,
    ) -> Result<Participant, RepoError> {
        let _writing = self.writing().await?;
        record_join_on(&self.db, call, user, at).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(call = call.get(), user = user.get()))]
    async fn record_leave(
        &self,
        call: CallId,
        user: UserId,
        at: DateTime<Utc>,
    ) -> Result<u64, RepoError> {
        let _writing = self.writing().await?;
        record_leave_on(&self.db, call, user, at).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(call = call.get(), user = user.get()))]
    async fn continue_stay(
        &self,
        call: CallId,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Option<Participant>, RepoError> {
        let _writing = self.writing().await?;
        continue_stay_on(&self.db, call, user, since).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(call = call.get()))]
    async fn close_open_stays(&self, call: CallId, at: DateTime<Utc>) -> Result<u64, RepoError> {
        let _writing = self.writing().await?;
        let stmt = participants::Entity::update_many()
            .col_expr(participants::Column::LeftAt, Expr::value(Some(at)))
            .filter(participants::Column::CallId.eq(call.get()))
            .filter(participants::Column::LeftAt.is_null())
            .into_query();
        run_exec(&self.db, &stmt).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn calls_with_open_stays(&self) -> Result<Vec<Call>, RepoError> {
        let open = participants::Entity::find()
            .select_only()
            .column(participants::Column::CallId)
            .filter(participants::Column::LeftAt.is_null())
            .into_query();
        let stmt = calls::Entity::find()
            .filter(calls::Column::Id.in_subquery(open))
            .order_by_asc(calls::Column::Id)
            .into_query();
        run_all::<calls::Model, _, _>(&self.db, &stmt)
            .await?
            .into_iter()
            .map(Call::try_from)
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(call = call.get(), user = user.get()))]
    async fn has_participated(&self, call: CallId, user: UserId) -> Result<bool, RepoError> {
        let stmt = participants::Entity::find()
            .filter(participants::Column::CallId.eq(call.get()))
            .filter(participants::Column::UserId.eq(user.get()))
            .limit(1)
            .into_query();
        Ok(run_one::<participants::Model, _, _>(&self.db, &stmt)
            .await?
            .is_some())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(call = call.get()))]
    async fn list_participants(&self, call: CallId) -> Result<Vec<Participant>, RepoError> {
        let stmt = participants::Entity::find()
            .filter(participants::Column::CallId.eq(call.get()))
            .order_by_asc(participants::Column::JoinedAt)
            .order_by_asc(participants::Column::Id)
            .into_query();
        Ok(run_all::<participants::Model, _, _>(&self.db, &stmt)
            .await?
            .into_iter()
            .map(Participant::from)
            .collect())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(changes = changes.len()))]
    async fn record_presence(&self, changes: &[PresenceChange]) -> Result<(), RepoError> {
        let _writing = self.writing().await?;
        let txn = super::begin_write(&self.db).await?;
        // Friend links of the whole batch, deduplicated (latest time wins) and in one
        // global order: written last, with one upsert.
        let mut links: BTreeMap<(UserId, UserId), DateTime<Utc>> = BTreeMap::new();
        // The stays of people who only joined in this batch: written together.
        let batched = lone_joins(changes);
        if batched.len() >= 2 {
            record_lone_joins_on(&txn, changes, &batched).await?;
        }
        for (index, change) in changes.iter().enumerate() {
            match change {
                PresenceChange::Joined {
                    call,
                    user,
                    others,
                    at,
                    since,
                } => {
                    let written = batched.len() >= 2 && batched.contains(&index);
                    if !written
                        && continue_stay_on(&txn, *call, *user, *since)
                            .await?
                            .is_none()
                    {
                        record_join_on(&txn, *call, *user, *at).await?;
                    }
                    for other in others.iter().filter(|o| *o != user) {
                        for pair in [(*user, *other), (*other, *user)] {
                            let last = links.entry(pair).or_insert(*at);
                            *last = (*last).max(*at);
                        }
                    }
                }
                PresenceChange::Left { call, user, at } => {
                    record_leave_on(&txn, *call, *user, *at).await?;
                }
            }
        }
        let pairs: Vec<_> = links
            .into_iter()
            .map(|((user, friend), at)| (user, friend, at))
            .collect();
        upsert_links(&txn, &pairs).await?;
        txn.commit().await.repo()
    }
}
