//! [`CallRepository`] for [`SeaStore`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QueryTrait};
use telcall_domain::{
    Call, CallCode, CallId, CallRepository, CallStatus, NewCall, RepoError, UserId,
};

use super::{SeaStore, no_row, run_all, run_one};
use crate::entity::calls;

impl TryFrom<calls::Model> for Call {
    type Error = RepoError;

    fn try_from(m: calls::Model) -> Result<Self, RepoError> {
        let status = m
            .status
            .parse::<CallStatus>()
            .map_err(|e| RepoError::Other(format!("call {}: {e}", m.id)))?;
        Ok(Self {
            id: CallId::new(m.id),
            code: CallCode::from_raw(m.code),
            creator_id: UserId::new(m.creator_id),
            title: m.title,
            is_video_enabled: m.is_video_enabled,
            status,
            created_at: m.created_at,
            expires_at: m.expires_at,
            ended_at: m.ended_at,
        })
    }
}

fn into_calls(rows: Vec<calls::Model>) -> Result<Vec<Call>, RepoError> {
    rows.into_iter().map(Call::try_from).collect()
}

#[async_trait]
impl CallRepository for SeaStore {
    #[tracing::instrument(level = "debug", skip_all, fields(user = call.creator_id.get()))]
    async fn create_call(&self, call: &NewCall) -> Result<Call, RepoError> {
        let _writing = self.writing().await?;
        let row = calls::ActiveModel {
            id: NotSet,
            code: Set(call.code.as_str().to_owned()),
            creator_id: Set(call.creator_id.get()),
            title: Set(call.title.clone()),
            is_video_enabled: Set(call.is_video_enabled),
            status: Set(CallStatus::Active.as_str().to_owned()),
            created_at: Set(call.created_at),
            expires_at: Set(call.expires_at),
            ended_at: Set(None),
        };
        let mut stmt = calls::Entity::insert(row).into_query();
        stmt.returning_all();
        run_one::<calls::Model, _, _>(&self.db, &stmt)
            .await?
            .ok_or_else(|| no_row("call insert"))?
            .try_into()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_call_by_code(&self, code: &CallCode) -> Result<Option<Call>, RepoError> {
        let stmt = calls::Entity::find()
            .filter(calls::Column::Code.eq(code.as_str()))
            .into_query();
        run_one::<calls::Model, _, _>(&self.db, &stmt)
            .await?
            .map(Call::try_from)
            .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = creator.get()))]
    async fn list_active_calls_by_creator(&self, creator: UserId) -> Result<Vec<Call>, RepoError> {
        let stmt = calls::Entity::find()
            .filter(calls::Column::CreatorId.eq(creator.get()))
            .filter(calls::Column::Status.eq(CallStatus::Active.as_str()))
            .order_by_asc(calls::Column::CreatedAt)
            .order_by_asc(calls::Column::Id)
            .into_query();
        into_calls(run_all(&self.db, &stmt).await?)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(call = id.get(), status = %status))]
    async fn set_call_status(
        &self,
        id: CallId,
        status: CallStatus,
        at: DateTime<Utc>,
    ) -> Result<Option<Call>, RepoError> {
        let _writing = self.writing().await?;
        let ended_at = (status != CallStatus::Active).then_some(at);
        let mut update = calls::Entity::update_many()
            .col_expr(calls::Column::Status, Expr::value(status.as_str()))
            .col_expr(calls::Column::EndedAt, Expr::value(ended_at))
            .filter(calls::Column::Id.eq(id.get()));
        if ended_at.is_some() {
            // Only an active call can be finished: two concurrent ends (or an end racing
            // the sweeper) finish it once, and the first outcome stays.
            update = update.filter(calls::Column::Status.eq(CallStatus::Active.as_str()));
        }
        let mut stmt = update.into_query();
        stmt.returning_all();
        run_one::<calls::Model, _, _>(&self.db, &stmt)
            .await?
            .map(Call::try_from)
            .transpose()
    }

    /// One `UPDATE … WHERE status = 'active' AND expires_at <= now RETURNING *` on both
    /// backends, so a call is expired (and reported) by exactly one sweeper.
    #[tracing::instrument(level = "debug", skip_all)]
    async fn expire_due_calls(&self, now: DateTime<Utc>) -> Result<Vec<Call>, RepoError> {
        let _writing = self.writing().await?;
        let mut stmt = calls::Entity::update_many()
            .col_expr(
                calls::Column::Status,
                Expr::value(CallStatus::Expired.as_str()),
            )
            .col_expr(calls::Column::EndedAt, Expr::value(Some(now)))
            .filter(calls::Column::Status.eq(CallStatus::Active.as_str()))
            .filter(calls::Column::ExpiresAt.lte(now))
            .into_query();
        stmt.returning_all();
        let mut calls = into_calls(run_all(&self.db, &stmt).await?)?;
        // RETURNING has no defined order.
        calls.sort_by_key(|c| (c.expires_at, c.id));
        if !calls.is_empty() {
            tracing::debug!(count = calls.len(), "expired due calls");
        }
        Ok(calls)
    }

    /// One `UPDATE … WHERE status = 'active' AND created_at <= created_by RETURNING *` on
    /// both backends, so a call is ended (and reported) by exactly one sweeper.
    #[tracing::instrument(level = "debug", skip_all)]
    async fn end_calls_created_by(
        &self,
        created_by: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Call>, RepoError> {
        let _writing = self.writing().await?;
        let mut stmt = calls::Entity::update_many()
            .col_expr(
                calls::Column::Status,
                Expr::value(CallStatus::Ended.as_str()),
            )
            .col_expr(calls::Column::EndedAt, Expr::value(Some(now)))
            .filter(calls::Column::Status.eq(CallStatus::Active.as_str()))
            .filter(calls::Column::CreatedAt.lte(created_by))
            .into_query();
        stmt.returning_all();
        let mut calls = into_calls(run_all(&self.db, &stmt).await?)?;
        // RETURNING has no defined order.
        calls.sort_by_key(|c| (c.created_at, c.id));
        if !calls.is_empty() {
            tracing::debug!(count = calls.len(), "ended calls past the maximum duration");
        }
        Ok(calls)
    }
}
