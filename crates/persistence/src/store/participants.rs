//! [`ParticipantRepository`] for [`SeaStore`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QueryTrait};
use telcall_domain::{CallId, Participant, ParticipantRepository, RepoError, UserId};

use super::{SeaStore, no_row, run_all, run_exec, run_one};
use crate::entity::participants;

impl From<participants::Model> for Participant {
    fn from(m: participants::Model) -> Self {
        Self {
            id: m.id,
            call_id: m.call_id,
            user_id: m.user_id,
            joined_at: m.joined_at,
            left_at: m.left_at,
        }
    }
}

#[async_trait]
impl ParticipantRepository for SeaStore {
    #[tracing::instrument(level = "debug", skip_all, fields(call = call, user = user))]
    async fn record_join(
        &self,
        call: CallId,
        user: UserId,
        at: DateTime<Utc>,
    ) -> Result<Participant, RepoError> {
        let row = participants::ActiveModel {
            id: NotSet,
            call_id: Set(call),
            user_id: Set(user),
            joined_at: Set(at),
            left_at: Set(None),
        };
        let mut stmt = participants::Entity::insert(row).into_query();
        stmt.returning_all();
        run_one::<participants::Model, _, _>(&self.db, &stmt)
            .await?
            .map(Participant::from)
            .ok_or_else(|| no_row("participant insert"))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(call = call, user = user))]
    async fn record_leave(
        &self,
        call: CallId,
        user: UserId,
        at: DateTime<Utc>,
    ) -> Result<u64, RepoError> {
        let stmt = participants::Entity::update_many()
            .col_expr(participants::Column::LeftAt, Expr::value(Some(at)))
            .filter(participants::Column::CallId.eq(call))
            .filter(participants::Column::UserId.eq(user))
            .filter(participants::Column::LeftAt.is_null())
            .into_query();
        run_exec(&self.db, &stmt).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(call = call))]
    async fn list_participants(&self, call: CallId) -> Result<Vec<Participant>, RepoError> {
        let stmt = participants::Entity::find()
            .filter(participants::Column::CallId.eq(call))
            .order_by_asc(participants::Column::JoinedAt)
            .order_by_asc(participants::Column::Id)
            .into_query();
        Ok(run_all::<participants::Model, _, _>(&self.db, &stmt)
            .await?
            .into_iter()
            .map(Participant::from)
            .collect())
    }
}
