//! `/api/friends*`: the people a user shared a call with.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use telcall_domain::services::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_SEARCH_CHARS};
use telcall_domain::{Friend, FriendQuery, UserId};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{CurrentUser, JsonObject};
use crate::state::AppState;

/// A friend as listed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FriendResponse {
    /// Internal user id (what `POST /api/calls/friend` takes).
    pub id: i64,
    /// Telegram user id.
    pub telegram_user_id: i64,
    /// First and last name.
    pub display_name: String,
    /// Telegram username.
    pub username: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Profile photo.
    pub photo_url: Option<String>,
    /// Most recent shared call (RFC 3339, UTC).
    pub last_call_at: DateTime<Utc>,
}

impl From<Friend> for FriendResponse {
    fn from(f: Friend) -> Self {
        Self {
            id: f.user.id.get(),
            telegram_user_id: f.user.telegram_user_id,
            display_name: f.user.display_name(),
            username: f.user.username,
            first_name: f.user.first_name,
            last_name: f.user.last_name,
            photo_url: f.user.photo_url,
            last_call_at: f.last_call_at,
        }
    }
}

/// Query of `GET /api/friends`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct FriendsQuery {
    /// Case-insensitive search over first name, last name and username (at most 255
    /// characters, no control characters).
    #[param(schema_with = crate::openapi::friend_search_schema)]
    pub query: Option<String>,
    /// Page size, 1..=100 (default 50).
    #[param(schema_with = crate::openapi::page_limit_schema)]
    pub limit: Option<i64>,
    /// Rows to skip, ≥ 0 (default 0).
    #[param(schema_with = crate::openapi::page_offset_schema)]
    pub offset: Option<i64>,
}

/// Body of `POST /api/friends/delete`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DeleteFriendsRequest {
    /// Internal ids of the friends to remove (at most [`MAX_DELETE_IDS`]).
    #[serde(deserialize_with = "telcall_domain::wire::vec_i64")]
    #[schema(schema_with = crate::openapi::friend_ids_schema)]
    pub friend_ids: Vec<i64>,
}

/// Result of `POST /api/friends/delete`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeleteFriendsResponse {
    /// Ids that were friends and are not any more.
    pub deleted_ids: Vec<i64>,
    /// Ids that were not friends.
    pub not_found_ids: Vec<i64>,
}

/// The page size a list route was asked for: [`DEFAULT_PAGE_SIZE`] when omitted, else
/// 1..=[`MAX_PAGE_SIZE`] (422 outside).
pub fn page_limit(limit: Option<i64>) -> Result<u64, ApiError> {
    let Some(limit) = limit else {
        return Ok(DEFAULT_PAGE_SIZE);
    };
    u64::try_from(limit)
        .ok()
        .filter(|l| (1..=MAX_PAGE_SIZE).contains(l))
        .ok_or_else(|| {
            ApiError::Unprocessable(format!("limit must be between 1 and {MAX_PAGE_SIZE}"))
        })
}

/// Most friend ids one delete request may name.
pub const MAX_DELETE_IDS: usize = 500;

/// Lists the signed-in user's friends, most recent shared call first.
#[utoipa::path(get, path = "/api/friends", tag = "friends", params(FriendsQuery),
    responses((status = 200, body = Vec<FriendResponse>), (status = 401, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(user = user.0.id.get()))]
pub async fn list_friends(
    state: web::Data<AppState>,
    user: CurrentUser,
    query: web::Query<FriendsQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = page_limit(query.limit)?;
    let offset = u64::try_from(query.offset.unwrap_or(0))
        .map_err(|_| ApiError::Unprocessable("offset must not be negative".to_owned()))?;
    if query
        .query
        .as_ref()
        .is_some_and(|q| q.chars().count() > MAX_SEARCH_CHARS)
    {
        return Err(ApiError::Unprocessable(format!(
            "query must be at most {MAX_SEARCH_CHARS} characters"
        )));
    }
    let friends = state
        .friends
        .list(
            user.0.id,
            &FriendQuery {
                search: query.query,
                limit,
                offset,
            },
        )
        .await?;
    let body: Vec<FriendResponse> = friends.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(body))
}

/// Removes friends, both directions.
#[utoipa::path(post, path = "/api/friends/delete", tag = "friends", request_body = DeleteFriendsRequest,
    responses((status = 200, body = DeleteFriendsResponse), (status = 401, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(user = user.0.id.get()))]
pub async fn delete_friends(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: JsonObject<DeleteFriendsRequest>,
) -> Result<HttpResponse, ApiError> {
    if body.friend_ids.len() > MAX_DELETE_IDS {
        return Err(ApiError::Unprocessable(format!(
            "at most {MAX_DELETE_IDS} friend_ids per request"
        )));
    }
    let ids: Vec<UserId> = body.friend_ids.iter().copied().map(UserId::new).collect();
    let (deleted, not_found) = state.friends.delete(user.0.id, &ids).await?;
    let numbers = |ids: Vec<UserId>| ids.into_iter().map(UserId::get).collect();
    Ok(HttpResponse::Ok().json(DeleteFriendsResponse {
        deleted_ids: numbers(deleted),
        not_found_ids: numbers(not_found),
    }))
}

/// Registers the `/api/friends` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/api/friends", "/api/friends/"]).route(web::get().to(list_friends)),
    )
    .service(web::resource("/api/friends/delete").route(web::post().to(delete_friends)));
}
