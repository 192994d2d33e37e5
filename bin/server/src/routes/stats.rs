//! `/api/call-stats*`: call quality reports and their aggregate.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use telcall_domain::{CallCode, CallStats, CallStatsInput, DomainError};
use utoipa::openapi::schema::{KnownFormat, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{ObjectBuilder, RefOr};
use utoipa::{IntoParams, Number, PartialSchema, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{CurrentUser, JsonObject};
use crate::state::AppState;

/// The OpenAPI schema of the quality figures of one report, as sent and as stored. On the
/// wire they are the domain's [`CallStatsInput`], flattened into the request and response;
/// the schema is built from that type's bounds ([`CallStatsInput::BOUNDS`]), so the
/// published `minimum` / `maximum` are the ones the server enforces (422 outside them).
#[derive(Debug)]
pub struct StatsFigures;

/// What each figure is, with its unit.
fn figure_description(name: &str) -> &'static str {
    match name {
        "duration_seconds" => "Seconds in the call.",
        "audio_bitrate_kbps" => "Audio bitrate (kbit/s).",
        "audio_packets_lost" => "Audio packets lost.",
        "audio_packets_sent" => "Audio packets sent.",
        "audio_jitter_ms" => "Audio jitter (ms).",
        "video_bitrate_kbps" => "Video bitrate (kbit/s).",
        "video_packets_lost" => "Video packets lost.",
        "video_packets_sent" => "Video packets sent.",
        "video_frame_rate" => "Video frame rate (frames/s).",
        "rtt_ms" => "Round-trip time (ms).",
        _ => "A quality figure.",
    }
}

impl PartialSchema for StatsFigures {
    fn schema() -> RefOr<Schema> {
        let mut figures = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The quality figures of one report, as sent and as stored. Every figure is \
                 optional, at least 0 and at most its `maximum`; a report outside these \
                 bounds is refused with 422.",
            ));
        for bound in CallStatsInput::BOUNDS {
            let (kind, format, maximum) = if bound.integer {
                #[allow(clippy::cast_possible_truncation)]
                let max = Number::Int(bound.maximum as isize);
                (Type::Integer, KnownFormat::Int64, max)
            } else {
                (
                    Type::Number,
                    KnownFormat::Double,
                    Number::Float(bound.maximum),
                )
            };
            figures = figures.property(
                bound.name,
                ObjectBuilder::new()
                    .schema_type([kind, Type::Null].into_iter().collect::<SchemaType>())
                    .format(Some(SchemaFormat::KnownFormat(format)))
                    .minimum(Some(Number::Int(0)))
                    .maximum(Some(maximum))
                    .description(Some(figure_description(bound.name))),
            );
        }
        figures
            .property(
                "video_resolution",
                ObjectBuilder::new()
                    .schema_type(
                        [Type::String, Type::Null]
                            .into_iter()
                            .collect::<SchemaType>(),
                    )
                    .max_length(Some(CallStatsInput::MAX_RESOLUTION_LEN))
                    .pattern(Some(crate::openapi::NO_CONTROL_CHARACTERS))
                    .description(Some(
                        "Video resolution such as `1280x720` (no control characters).",
                    )),
            )
            .into()
    }
}

impl ToSchema for StatsFigures {}

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
            user_id: s.user_id.get(),
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
    /// Number of distinct people who reported.
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
    #[param(schema_with = crate::openapi::page_limit_schema)]
    pub limit: Option<i64>,
}

/// Stores the signed-in user's quality report for a call they took part in (its organizer
/// or a recorded participant). One report per user and call: sending again replaces the
/// earlier report (same `id`, new figures and `created_at`), still with 201.
#[utoipa::path(post, path = "/api/call-stats/", tag = "call-stats", request_body = CallStatsRequest,
    responses((status = 201, body = CallStatsResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Only participants of the call can access its statistics"),
              (status = 404, body = ErrorBody, description = "Call not found"),
              (status = 422, body = ErrorBody, description = "A figure outside its bounds, or a malformed body")))]
#[tracing::instrument(skip_all, fields(user = user.0.id.get(), call = %body.call_id))]
pub async fn create_stats(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: JsonObject<CallStatsRequest>,
) -> Result<HttpResponse, ApiError> {
    // Figures outside their bounds are refused (422) before the call is looked for,
    // whatever the code; a code that is not one names no call (404).
    body.figures.validate().map_err(DomainError::Invalid)?;
    let code: CallCode = body.call_id.parse()?;
    let stats = state.stats.record(user.0.id, &code, &body.figures).await?;
    Ok(HttpResponse::Created().json(CallStatsResponse::from(stats)))
}

/// The aggregate of every report of a call, for its participants (organizer or recorded
/// participant) only.
#[utoipa::path(get, path = "/api/call-stats/{call_id}", tag = "call-stats",
    params(("call_id" = String, Path, description = "Public call id")),
    responses((status = 200, body = CallStatsSummaryResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Only participants of the call can access its statistics"),
              (status = 404, body = ErrorBody, description = "Call not found")))]
#[tracing::instrument(skip_all, fields(user = user.0.id.get(), call = %path.as_str()))]
pub async fn stats_summary(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (call, s) = state.stats.summary(user.0.id, &path.parse()?).await?;
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
#[tracing::instrument(skip_all, fields(user = user.0.id.get()))]
pub async fn list_stats(
    state: web::Data<AppState>,
    user: CurrentUser,
    query: web::Query<StatsListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = crate::routes::friends::page_limit(query.limit)?;
    let rows = state.stats.list_own(user.0.id, limit).await?;
    let body: Vec<CallStatsResponse> = rows.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(body))
}

/// Registers the `/api/call-stats` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/api/call-stats/", "/api/call-stats"])
            .route(web::post().to(create_stats))
            .route(web::get().to(list_stats)),
    )
    .service(web::resource("/api/call-stats/{call_id}").route(web::get().to(stats_summary)));
}
