//! The `call_stats` table (mirrors the migration `m20261123_000001_initial`).
#![allow(missing_docs)]

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "call_stats")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub call_id: i64,
    pub user_id: i64,
    pub duration_seconds: Option<f64>,
    pub audio_bitrate_kbps: Option<f64>,
    pub audio_packets_lost: Option<i64>,
    pub audio_packets_sent: Option<i64>,
    pub audio_jitter_ms: Option<f64>,
    pub video_bitrate_kbps: Option<f64>,
    pub video_packets_lost: Option<i64>,
    pub video_packets_sent: Option<i64>,
    pub video_frame_rate: Option<f64>,
    pub video_resolution: Option<String>,
    pub rtt_ms: Option<f64>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::calls::Entity",
        from = "Column::CallId",
        to = "super::calls::Column::Id",
        on_delete = "Cascade"
    )]
    Call,
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id",
        on_delete = "Cascade"
    )]
    User,
}

impl Related<super::calls::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Call.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
