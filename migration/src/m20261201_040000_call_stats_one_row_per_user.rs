//! One statistics row per user and call, and no figure outside the bounds the API accepts.
//!
//! Before this migration a user could post any number of reports for a call, with any
//! non-negative figure (up to `i64::MAX` packets), so a call's aggregate could count one
//! person several times or overflow. Existing data is repaired before the unique index is
//! built, so duplicates never make the migration fail: of each user's reports for a call
//! only the newest (highest id) is kept, and figures outside the bounds (negative, beyond
//! the maximum, NaN or infinite) become NULL — they were never measurements. The bounds
//! below are those of `telcall_domain::CallStatsInput::BOUNDS` when this was written; this
//! migration keeps its own copy, as a migration must not change with later code.
//!
//! Rolling back drops the unique index; deleted duplicates and cleared figures stay gone.

use sea_orm_migration::prelude::*;

/// Repairs `call_stats` and adds the unique index on `(call_id, user_id)`.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// Name of the unique index.
const UNIQUE_INDEX: &str = "uq_call_stats_call_user";

#[derive(DeriveIden, Clone, Copy)]
enum CallStats {
    Table,
    Id,
    CallId,
    UserId,
    DurationSeconds,
    AudioBitrateKbps,
    AudioPacketsLost,
    AudioPacketsSent,
    AudioJitterMs,
    VideoBitrateKbps,
    VideoPacketsLost,
    VideoPacketsSent,
    VideoFrameRate,
    RttMs,
}

/// Each bounded column and its largest accepted value (the smallest is 0).
const BOUNDS: [(CallStats, f64); 10] = [
    (CallStats::DurationSeconds, 604_800.0),
    (CallStats::AudioBitrateKbps, 10_000.0),
    (CallStats::AudioPacketsLost, 1_000_000_000.0),
    (CallStats::AudioPacketsSent, 1_000_000_000.0),
    (CallStats::AudioJitterMs, 60_000.0),
    (CallStats::VideoBitrateKbps, 100_000.0),
    (CallStats::VideoPacketsLost, 1_000_000_000.0),
    (CallStats::VideoPacketsSent, 1_000_000_000.0),
    (CallStats::VideoFrameRate, 1_000.0),
    (CallStats::RttMs, 60_000.0),
];

/// Deletes every report but the newest of each user for each call.
fn delete_duplicates() -> DeleteStatement {
    Query::delete()
        .from_table(CallStats::Table)
        .and_where(
            Expr::col(CallStats::Id).not_in_subquery(
                Query::select()
                    .expr(Func::max(Expr::col(CallStats::Id)))
                    .from(CallStats::Table)
                    .group_by_columns([CallStats::CallId, CallStats::UserId])
                    .to_owned(),
            ),
        )
        .to_owned()
}

/// Clears `column` where it is outside `0..=max`. PostgreSQL orders NaN above every number
/// and infinity above `max`, so both are cleared too; SQLite stores NaN as NULL.
fn clear_out_of_bounds(column: CallStats, max: f64) -> UpdateStatement {
    Query::update()
        .table(CallStats::Table)
        .value(column, Option::<f64>::None)
        .cond_where(
            Cond::any()
                .add(Expr::col(column).lt(0))
                .add(Expr::col(column).gt(max)),
        )
        .to_owned()
}

fn unique_index() -> IndexCreateStatement {
    Index::create()
        .name(UNIQUE_INDEX)
        .table(CallStats::Table)
        .col(CallStats::CallId)
        .col(CallStats::UserId)
        .unique()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.exec_stmt(delete_duplicates()).await?;
        for (column, max) in BOUNDS {
            manager.exec_stmt(clear_out_of_bounds(column, max)).await?;
        }
        manager.create_index(unique_index()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(UNIQUE_INDEX)
                    .table(CallStats::Table)
                    .to_owned(),
            )
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
