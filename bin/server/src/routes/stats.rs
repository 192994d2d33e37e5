//! `/api/call-stats*`: call quality reports and their aggregate.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use telcall_domain::{CallStats, CallStatsInput};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::extract::CurrentUser;
use crate::state::AppState;

/// The OpenAPI schema of the quality figures of one report, as sent and as stored. On the
/// wire they are the domain's [`CallStatsInput`], flattened into the request and response
/// (a test checks that this schema and that type name the same fields).
#[derive(Debug, ToSchema)]
pub struct StatsFigures {
    /// Seconds in the call.
    pub duration_seconds: Option<f64>,
    /// Audio bitrate (kbit/s).
    pub audio_bitrate_kbps: Option<f64>,
    /// Audio packets lost.
    pub audio_packets_lost: Option<i64>,
    /// Audio packets sent.
    pub audio_packets_sent: Option<i64>,
    /// Audio jitter (ms).
    pub audio_jitter_ms: Option<f64>,
    /// Video bitrate (kbit/s).
    pub video_bitrate_kbps: Option<f64>,
    /// Video packets lost.
    pub video_packets_lost: Option<i64>,
    /// Video packets sent.
    pub video_packets_sent: Option<i64>,
    /// Video frame rate.
    pub video_frame_rate: Option<f64>,
    /// Video resolution such as `1280x720`.
    pub video_resolution: Option<String>,
    /// Round-trip time (ms).
    pub rtt_ms: Option<f64>,
}

/// Body of `POST /api/call-stats/`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CallStatsRequest {
    /// Public call id.
    pub call_id: String,
    /// The figures.
    #[serde(flatten)]
    #[schema(value_type = StatsFigures)]
    pub figures: CallStatsInput,
}

/// A stored report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CallStatsResponse {
    /// Row id.
    pub id: i64,
    /// Public call id.
    pub call_id: String,
    /// Reporter's internal id.
    pub user_id: i64,
    /// The figures.
    #[serde(flatten)]
    #[schema(value_type = StatsFigures)]
    pub figures: CallStatsInput,
    /// When it was stored (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
}

impl From<CallStats> for CallStatsResponse {
    fn from(s: CallStats) -> Self {
        Self {
            id: s.id,
            call_id: s.call_code.to_string(),
            user_id: s.user_id,
            figures: s.figures,
            created_at: s.created_at,
        }
    }
}

/// Aggregate of a call's reports.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CallStatsSummaryResponse {
    /// Public call id.
    pub call_id: String,
    /// Number of reports.
    pub participant_count: u64,
    /// Mean duration.
    pub avg_duration_seconds: Option<f64>,
    /// Mean audio bitrate.
    pub avg_audio_bitrate_kbps: Option<f64>,
    /// Sum of audio packets lost.
    pub total_audio_packets_lost: i64,
    /// Mean audio jitter.
    pub avg_audio_jitter_ms: Option<f64>,
    /// Mean round-trip time.
    pub avg_rtt_ms: Option<f64>,
}

/// Query of `GET /api/call-stats/`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StatsListQuery {
    /// Page size, 1..=100 (default 50).
    pub limit: Option<i64>,
}

/// Stores a quality report of the signed-in user for a call.
#[utoipa::path(post, path = "/api/call-stats/", tag = "call-stats", request_body = CallStatsRequest,
    responses((status = 201, body = CallStatsResponse), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "Call not found"),
              (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(user = user.0.id, call = %body.call_id))]
pub async fn create_stats(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: web::Json<CallStatsRequest>,
) -> Result<HttpResponse, ApiError> {
    let stats = state
        .stats
        .record(user.0.id, &body.call_id, &body.figures)
        .await?;
    Ok(HttpResponse::Created().json(CallStatsResponse::from(stats)))
}

/// The aggregate of every report of a call.
#[utoipa::path(get, path = "/api/call-stats/{call_id}", tag = "call-stats",
    params(("call_id" = String, Path, description = "Public call id")),
    responses((status = 200, body = CallStatsSummaryResponse), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "Call not found")))]
#[tracing::instrument(skip_all, fields(user = user.0.id, call = %path.as_str()))]
pub async fn stats_summary(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (call, s) = state.stats.summary(&path).await?;
    Ok(HttpResponse::Ok().json(CallStatsSummaryResponse {
        call_id: call.code.to_string(),
        participant_count: s.participant_count,
        avg_duration_seconds: s.avg_duration_seconds,
        avg_audio_bitrate_kbps: s.avg_audio_bitrate_kbps,
        total_audio_packets_lost: s.total_audio_packets_lost,
        avg_audio_jitter_ms: s.avg_audio_jitter_ms,
        avg_rtt_ms: s.avg_rtt_ms,
    }))
}

/// The signed-in user's own reports, newest first.
#[utoipa::path(get, path = "/api/call-stats/", tag = "call-stats", params(StatsListQuery),
    responses((status = 200, body = Vec<CallStatsResponse>), (status = 401, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(user = user.0.id))]
pub async fn list_stats(
    state: web::Data<AppState>,
    user: CurrentUser,
    query: web::Query<StatsListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::Unprocessable(
            "limit must be between 1 and 100".to_owned(),
        ));
    }
    let rows = state
        .stats
        .list_own(user.0.id, limit.unsigned_abs())
        .await?;
    let body: Vec<CallStatsResponse> = rows.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(body))
}

/// Registers the `/api/call-stats` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/call-stats/", web::post().to(create_stats))
        .route("/api/call-stats", web::post().to(create_stats))
        .route("/api/call-stats/", web::get().to(list_stats))
        .route("/api/call-stats", web::get().to(list_stats))
        .route("/api/call-stats/{call_id}", web::get().to(stats_summary));
}
