//! `/api/calls*`: create, read, end, join by code and call a friend.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use telcall_domain::{Call, CallCode, CallStatus, UserId};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{CurrentUser, JsonObject};
use crate::state::AppState;

/// A call as the frontend sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CallResponse {
    /// Public call id (16–20 URL-safe characters).
    pub call_id: String,
    /// Optional title.
    pub title: Option<String>,
    /// Whether video is on by default.
    pub is_video_enabled: bool,
    /// `active`, `ended` or `expired`.
    #[schema(value_type = crate::openapi::CallStatusSchema, example = "active")]
    pub status: CallStatus,
    /// Creation time (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
    /// Expiry time (RFC 3339, UTC).
    pub expires_at: DateTime<Utc>,
    /// Telegram link that opens the Mini App on this call.
    pub join_url: String,
    /// Internal id of the organizer.
    pub creator_id: i64,
}

impl CallResponse {
    /// The wire form of `call`.
    pub fn new(state: &AppState, call: &Call) -> Self {
        Self {
            call_id: call.code.to_string(),
            title: call.title.clone(),
            is_video_enabled: call.is_video_enabled,
            status: call.status,
            created_at: call.created_at,
            expires_at: call.expires_at,
            join_url: state.settings.join_url(call.code.as_str()),
            creator_id: call.creator_id.get(),
        }
    }
}

/// Body of `POST /api/calls/`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateCallRequest {
    /// Optional title, at most 255 characters, no control characters.
    #[schema(schema_with = crate::openapi::title_schema)]
    pub title: Option<String>,
    /// Video on by default (false when omitted).
    pub is_video_enabled: Option<bool>,
}

/// Body of `POST /api/calls/join_by_code`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct JoinByCodeRequest {
    /// The call id, as shared in the link (trimmed).
    #[schema(schema_with = crate::openapi::join_code_schema)]
    pub call_code: String,
}

/// Body of `POST /api/calls/friend`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CallFriendRequest {
    /// Internal id of the friend to call.
    #[serde(deserialize_with = "telcall_domain::wire::i64")]
    #[schema(schema_with = crate::openapi::user_id_schema)]
    pub friend_id: i64,
    /// Video on by default (false when omitted).
    pub is_video_enabled: Option<bool>,
}

/// Creates a call organized by the signed-in user.
#[utoipa::path(post, path = "/api/calls/", tag = "calls", request_body = CreateCallRequest,
    responses((status = 201, body = CallResponse), (status = 401, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(user = user.0.id.get()))]
pub async fn create_call(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: JsonObject<CreateCallRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let call = state
        .calls
        .create_call(
            user.0.id,
            body.title,
            body.is_video_enabled.unwrap_or(false),
        )
        .await?;
    tracing::info!(call = %call.code, "call created");
    Ok(HttpResponse::Created().json(CallResponse::new(&state, &call)))
}

/// Reads a joinable call.
#[utoipa::path(get, path = "/api/calls/{call_id}", tag = "calls",
    params(("call_id" = String, Path, description = "Public call id")),
    responses((status = 200, body = CallResponse), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "Call not found / Call has expired / Call is not available")))]
#[tracing::instrument(skip_all, fields(user = user.0.id.get(), call = %path.as_str()))]
pub async fn get_call(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let call = state.calls.joinable_call(&path.parse()?).await?;
    Ok(HttpResponse::Ok().json(CallResponse::new(&state, &call)))
}

/// Ends a call; only its organizer may.
#[utoipa::path(post, path = "/api/calls/{call_id}/end", tag = "calls",
    params(("call_id" = String, Path, description = "Public call id")),
    responses((status = 200, body = CallResponse, description = "The call, now `ended` (or `expired` if it had expired)"),
              (status = 400, body = ErrorBody, description = "Call is no longer active. Please create a new call."),
              (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Only the organizer can end the call"),
              (status = 404, body = ErrorBody, description = "Call not found")))]
#[tracing::instrument(skip_all, fields(user = user.0.id.get(), call = %path.as_str()))]
pub async fn end_call(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let call = state.calls.end_call(user.0.id, &path.parse()?).await?;
    tracing::info!(status = %call.status, "call ended");
    Ok(HttpResponse::Ok().json(CallResponse::new(&state, &call)))
}

/// Looks up a joinable call by the code a user typed or followed.
#[utoipa::path(post, path = "/api/calls/join_by_code", tag = "calls", request_body = JoinByCodeRequest,
    responses((status = 200, body = CallResponse),
              (status = 400, body = ErrorBody, description = "Call code is required / Call has expired / Call is not available"),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "Call not found"),
              (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(user = user.0.id.get()))]
pub async fn join_by_code(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: JsonObject<JoinByCodeRequest>,
) -> Result<HttpResponse, ApiError> {
    let code = CallCode::from_typed(&body.call_code).map_err(ApiError::from_join)?;
    let call = state
        .calls
        .joinable_call(&code)
        .await
        .map_err(ApiError::from_join)?;
    Ok(HttpResponse::Ok().json(CallResponse::new(&state, &call)))
}

/// Calls a friend: creates a call, records both as participants and notifies the friend
/// through the Telegram bot (a failed notification never fails the call).
#[utoipa::path(post, path = "/api/calls/friend", tag = "calls", request_body = CallFriendRequest,
    responses((status = 201, body = CallResponse),
              (status = 400, body = ErrorBody, description = "You cannot call yourself"),
              (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "Friend not found"),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(user = user.0.id.get(), friend = body.friend_id))]
pub async fn call_friend(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: JsonObject<CallFriendRequest>,
) -> Result<HttpResponse, ApiError> {
    let (call, friend) = state
        .calls
        .call_friend(
            user.0.id,
            UserId::new(body.friend_id),
            body.is_video_enabled.unwrap_or(false),
        )
        .await?;
    let join_url = state.settings.join_url(call.code.as_str());
    let notifier = state.notifier.clone();
    let caller = user.0;
    let notified_call = call.clone();
    tokio::spawn(async move {
        if let Err(e) = notifier
            .notify_call(&friend, &caller, &notified_call, &join_url)
            .await
        {
            tracing::warn!(call = %notified_call.code, friend = friend.id.get(), error = %e, "friend call notification failed");
        }
    });
    Ok(HttpResponse::Created().json(CallResponse::new(&state, &call)))
}

/// Registers the `/api/calls` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(["/api/calls/", "/api/calls"]).route(web::post().to(create_call)))
        .service(web::resource("/api/calls/join_by_code").route(web::post().to(join_by_code)))
        .service(web::resource("/api/calls/friend").route(web::post().to(call_friend)))
        .service(web::resource("/api/calls/{call_id}").route(web::get().to(get_call)))
        .service(web::resource("/api/calls/{call_id}/end").route(web::post().to(end_call)));
}
