//! [`UserRepository`] for [`SeaStore`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryTrait};
use telcall_domain::{RepoError, User, UserId, UserProfile, UserRepository};

use super::{SeaStore, no_row, run_one};
use crate::entity::users;

impl From<users::Model> for User {
    fn from(m: users::Model) -> Self {
        Self {
            id: UserId::new(m.id),
            telegram_user_id: m.telegram_user_id,
            username: m.username,
            first_name: m.first_name,
            last_name: m.last_name,
            photo_url: m.photo_url,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[async_trait]
impl UserRepository for SeaStore {
    #[tracing::instrument(level = "debug", skip_all, fields(telegram_user_id = profile.telegram_user_id))]
    async fn upsert_user(
        &self,
        profile: &UserProfile,
        now: DateTime<Utc>,
    ) -> Result<User, RepoError> {
        let _writing = self.writing().await?;
        let row = users::ActiveModel {
            id: NotSet,
            telegram_user_id: Set(profile.telegram_user_id),
            username: Set(profile.username.clone()),
            first_name: Set(profile.first_name.clone()),
            last_name: Set(profile.last_name.clone()),
            photo_url: Set(profile.photo_url.clone()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        // INSERT … ON CONFLICT (telegram_user_id) DO UPDATE: one statement, the internal id
        // and created_at of an existing row stay.
        let mut stmt = users::Entity::insert(row)
            .on_conflict(
                OnConflict::column(users::Column::TelegramUserId)
                    .update_columns([
                        users::Column::Username,
                        users::Column::FirstName,
                        users::Column::LastName,
                        users::Column::PhotoUrl,
                        users::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .into_query();
        stmt.returning_all();
        run_one::<users::Model, _, _>(&self.db, &stmt)
            .await?
            .map(User::from)
            .ok_or_else(|| no_row("user upsert"))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = id.get()))]
    async fn find_user(&self, id: UserId) -> Result<Option<User>, RepoError> {
        let stmt = users::Entity::find_by_id(id.get()).into_query();
        Ok(run_one::<users::Model, _, _>(&self.db, &stmt)
            .await?
            .map(User::from))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(telegram_user_id))]
    async fn find_user_by_telegram_id(
        &self,
        telegram_user_id: i64,
    ) -> Result<Option<User>, RepoError> {
        let stmt = users::Entity::find()
            .filter(users::Column::TelegramUserId.eq(telegram_user_id))
            .into_query();
        Ok(run_one::<users::Model, _, _>(&self.db, &stmt)
            .await?
            .map(User::from))
    }
}
