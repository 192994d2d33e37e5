//! The `friend_links` table (mirrors the migration `m20261123_000001_initial`): one row per
//! direction, unique on `(user_id, friend_id)`.
#![allow(missing_docs)]

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "friend_links")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub friend_id: i64,
    pub last_call_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id",
        on_delete = "Cascade"
    )]
    Owner,
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::FriendId",
        to = "super::users::Column::Id",
        on_delete = "Cascade"
    )]
    Friend,
}

impl ActiveModelBehavior for ActiveModel {}
