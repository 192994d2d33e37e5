//! [`CallStatsRepository`] for [`SeaStore`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query};
use sea_orm::{
    ColumnTrait, DbErr, EntityTrait, FromQueryResult, JoinType, QueryFilter, QueryOrder,
    QueryResult, QuerySelect, QueryTrait, RelationTrait,
};
use telcall_domain::{
    Call, CallCode, CallId, CallStats, CallStatsInput, CallStatsRepository, CallStatsSummary,
    RepoError, UserId,
};

use super::{SeaStore, no_row, run_all, run_one};
use crate::entity::{call_stats, calls};

fn figures(m: &call_stats::Model) -> CallStatsInput {
    CallStatsInput {
        duration_seconds: m.duration_seconds,
        audio_bitrate_kbps: m.audio_bitrate_kbps,
        audio_packets_lost: m.audio_packets_lost,
        audio_packets_sent: m.audio_packets_sent,
        audio_jitter_ms: m.audio_jitter_ms,
        video_bitrate_kbps: m.video_bitrate_kbps,
        video_packets_lost: m.video_packets_lost,
        video_packets_sent: m.video_packets_sent,
        video_frame_rate: m.video_frame_rate,
        video_resolution: m.video_resolution.clone(),
        rtt_ms: m.rtt_ms,
    }
}

fn to_domain(m: call_stats::Model, code: CallCode) -> CallStats {
    CallStats {
        id: m.id,
        call_id: CallId::new(m.call_id),
        call_code: code,
        user_id: UserId::new(m.user_id),
        figures: figures(&m),
        created_at: m.created_at,
    }
}

/// A stats row with its call's public code.
#[derive(Debug)]
struct StatsRow {
    stats: call_stats::Model,
    call_code: String,
}

impl FromQueryResult for StatsRow {
    fn from_query_result(res: &QueryResult, pre: &str) -> Result<Self, DbErr> {
        Ok(Self {
            stats: call_stats::Model::from_query_result(res, pre)?,
            call_code: res.try_get(pre, "call_code")?,
        })
    }
}

/// The aggregate row of [`CallStatsRepository::summarize_stats`].
#[derive(Debug, FromQueryResult)]
struct SummaryRow {
    participant_count: i64,
    avg_duration_seconds: Option<f64>,
    avg_audio_bitrate_kbps: Option<f64>,
    total_audio_packets_lost: f64,
    avg_audio_jitter_ms: Option<f64>,
    avg_rtt_ms: Option<f64>,
}

/// `value` rounded into an `i64`, saturating at its bounds (NaN is 0).
#[allow(clippy::cast_possible_truncation)]
fn saturating_i64(value: f64) -> i64 {
    // `as` from a float saturates and maps NaN to 0.
    value.round() as i64
}

#[async_trait]
impl CallStatsRepository for SeaStore {
    #[tracing::instrument(level = "debug", skip_all, fields(call = call.id.get(), user = user.get()))]
    async fn upsert_stats(
        &self,
        call: &Call,
        user: UserId,
        figures: &CallStatsInput,
        at: DateTime<Utc>,
    ) -> Result<CallStats, RepoError> {
        let _writing = self.writing().await?;
        let f = figures.clone();
        let row = call_stats::ActiveModel {
            id: NotSet,
            call_id: Set(call.id.get()),
            user_id: Set(user.get()),
            duration_seconds: Set(f.duration_seconds),
            audio_bitrate_kbps: Set(f.audio_bitrate_kbps),
            audio_packets_lost: Set(f.audio_packets_lost),
            audio_packets_sent: Set(f.audio_packets_sent),
            audio_jitter_ms: Set(f.audio_jitter_ms),
            video_bitrate_kbps: Set(f.video_bitrate_kbps),
            video_packets_lost: Set(f.video_packets_lost),
            video_packets_sent: Set(f.video_packets_sent),
            video_frame_rate: Set(f.video_frame_rate),
            video_resolution: Set(f.video_resolution),
            rtt_ms: Set(f.rtt_ms),
            created_at: Set(at),
        };
        // Update first, insert when there is nothing to update; an insert that lost a race
        // with a concurrent first report (unique violation) updates that one instead. No
        // `ON CONFLICT`: SQLite checks its target against the schema a pooled connection
        // cached, which may predate the unique index when migrations just ran.
        let mut figures_only = row.clone();
        figures_only.call_id = NotSet;
        figures_only.user_id = NotSet;
        let mut update = call_stats::Entity::update_many()
            .set(figures_only)
            .filter(call_stats::Column::CallId.eq(call.id.get()))
            .filter(call_stats::Column::UserId.eq(user.get()))
            .into_query();
        update.returning_all();
        let mut insert = call_stats::Entity::insert(row).into_query();
        insert.returning_all();
        let mut stored = None;
        for _ in 0..2 {
            if let Some(updated) = run_one::<call_stats::Model, _, _>(&self.db, &update).await? {
                stored = Some(updated);
                break;
            }
            match run_one::<call_stats::Model, _, _>(&self.db, &insert).await {
                Ok(inserted) => {
                    stored = inserted;
                    break;
                }
                Err(RepoError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let stored = stored.ok_or_else(|| no_row("call stats upsert"))?;
        Ok(to_domain(stored, call.code.clone()))
    }

    /// `COUNT(DISTINCT user_id)`, `AVG` over non-null values, and the packet total summed
    /// as double precision: an integer `SUM` overflows on SQLite ("integer overflow") and
    /// its `numeric` result does not fit back into `BIGINT` on PostgreSQL, whatever rows a
    /// database holds; a double sum cannot fail, is exact far beyond any plausible total
    /// (2^53) and is saturated into `i64` here. No rows: zero count and sum, no averages.
    #[tracing::instrument(level = "debug", skip_all, fields(call = call.get()))]
    async fn summarize_stats(&self, call: CallId) -> Result<CallStatsSummary, RepoError> {
        use call_stats::Column as C;
        let avg = |c: C| Func::avg(Expr::col(c));
        let stmt = Query::select()
            .expr_as(
                Func::count_distinct(Expr::col(C::UserId)),
                "participant_count",
            )
            .expr_as(avg(C::DurationSeconds), "avg_duration_seconds")
            .expr_as(avg(C::AudioBitrateKbps), "avg_audio_bitrate_kbps")
            .expr_as(
                Func::coalesce([
                    Func::sum(Func::cast_as(
                        Expr::col(C::AudioPacketsLost),
                        Alias::new("DOUBLE PRECISION"),
                    ))
                    .into(),
                    Expr::val(0.0_f64),
                ]),
                "total_audio_packets_lost",
            )
            .expr_as(avg(C::AudioJitterMs), "avg_audio_jitter_ms")
            .expr_as(avg(C::RttMs), "avg_rtt_ms")
            .from(call_stats::Entity)
            .and_where(Expr::col(C::CallId).eq(call.get()))
            .to_owned();
        let row = run_one::<SummaryRow, _, _>(&self.db, &stmt)
            .await?
            .ok_or_else(|| no_row("stats aggregate"))?;
        Ok(CallStatsSummary {
            participant_count: u64::try_from(row.participant_count).unwrap_or_default(),
            avg_duration_seconds: row.avg_duration_seconds,
            avg_audio_bitrate_kbps: row.avg_audio_bitrate_kbps,
            total_audio_packets_lost: saturating_i64(row.total_audio_packets_lost),
            avg_audio_jitter_ms: row.avg_audio_jitter_ms,
            avg_rtt_ms: row.avg_rtt_ms,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = user.get()))]
    async fn list_stats_by_user(
        &self,
        user: UserId,
        limit: u64,
    ) -> Result<Vec<CallStats>, RepoError> {
        let stmt = call_stats::Entity::find()
            .column_as(Expr::col((calls::Entity, calls::Column::Code)), "call_code")
            .join(JoinType::InnerJoin, call_stats::Relation::Call.def())
            .filter(call_stats::Column::UserId.eq(user.get()))
            .order_by_desc(call_stats::Column::CreatedAt)
            .order_by_desc(call_stats::Column::Id)
            .limit(limit)
            .into_query();
        Ok(run_all::<StatsRow, _, _>(&self.db, &stmt)
            .await?
            .into_iter()
            .map(|r| to_domain(r.stats, CallCode::from_raw(r.call_code)))
            .collect())
    }
}
