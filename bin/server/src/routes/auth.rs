//! `/auth/*`: Telegram sign-in, WebSocket tickets and logout.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use telcall_domain::{User, UserProfile, username::sanitize_username};
use utoipa::ToSchema;

use crate::auth::SESSION_COOKIE;
use crate::config::{CookieSameSite, Settings};
use crate::error::{ApiError, ErrorBody, detail_response};
use crate::extract::CurrentUser;
use crate::state::AppState;

/// Body of `POST /auth/telegram`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TelegramAuthRequest {
    /// The Mini App's raw `Telegram.WebApp.initData` query string.
    #[serde(rename = "initData")]
    pub init_data: String,
}

/// A user as the frontend sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserResponse {
    /// Internal id (the JWT `sub`).
    pub id: i64,
    /// Telegram user id.
    pub telegram_user_id: i64,
    /// Valid Telegram username, else null.
    pub username: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Profile photo.
    pub photo_url: Option<String>,
}

impl From<&User> for UserResponse {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            telegram_user_id: u.telegram_user_id,
            username: u.username.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            photo_url: u.photo_url.clone(),
        }
    }
}

/// Result of a sign-in.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TelegramAuthResponse {
    /// The signed-in user.
    pub user: UserResponse,
    /// Session lifetime in seconds.
    pub expires_in: u64,
    /// The session JWT (only with `AUTH_TOKEN_IN_BODY=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// `bearer` (only with `AUTH_TOKEN_IN_BODY=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

/// Result of `GET /auth/ws-token`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WsTokenResponse {
    /// Single-use credential for the WebSocket handshake.
    pub token: String,
    /// Seconds until it expires (≤ 60).
    pub expires_in: u64,
}

/// Verifies Telegram initData, keeps the user and starts a session (cookie).
#[utoipa::path(post, path = "/auth/telegram", tag = "auth", request_body = TelegramAuthRequest,
    responses((status = 200, body = TelegramAuthResponse),
              (status = 400, body = ErrorBody, description = "Missing hash / user payload, invalid user payload"),
              (status = 401, body = ErrorBody, description = "Invalid initData hash / initData is too old"),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(user))]
pub async fn telegram_auth(
    state: web::Data<AppState>,
    body: web::Json<TelegramAuthRequest>,
) -> Result<HttpResponse, ApiError> {
    let verified = match state.verifier.verify(&body.init_data) {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(reason = e.kind(), "sign-in refused");
            let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::UNAUTHORIZED);
            return Ok(detail_response(status, e.detail()));
        }
    };
    let tg = verified.user;
    let profile = UserProfile {
        telegram_user_id: tg.id,
        username: sanitize_username(tg.username.as_deref()),
        first_name: tg.first_name,
        last_name: tg.last_name,
        photo_url: tg.photo_url,
    };
    let user = state.repo.upsert_user(&profile, state.clock.now()).await?;
    tracing::Span::current().record("user", user.id);
    let issued = state
        .sessions
        .issue_session(user.id, Some(&verified.fingerprint))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot issue session: {e}")))?;
    tracing::info!(fp = %verified.fingerprint, "signed in");
    let cookie = session_cookie(
        &state.settings,
        issued.token.clone(),
        issued.expires_in_secs,
    );
    let in_body = state.settings.auth_token_in_body;
    Ok(HttpResponse::Ok()
        .cookie(cookie)
        .json(TelegramAuthResponse {
            user: UserResponse::from(&user),
            expires_in: issued.expires_in_secs,
            access_token: in_body.then_some(issued.token),
            token_type: in_body.then(|| "bearer".to_owned()),
        }))
}

/// Hands out a short-lived, single-use credential for the WebSocket handshake.
#[utoipa::path(get, path = "/auth/ws-token", tag = "auth",
    responses((status = 200, body = WsTokenResponse), (status = 401, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(user = user.0.id))]
pub async fn ws_token(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<HttpResponse, ApiError> {
    let issued = state
        .sessions
        .issue_ws_ticket(user.0.id)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot issue ticket: {e}")))?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(WsTokenResponse {
            token: issued.token,
            expires_in: issued.expires_in_secs,
        }))
}

/// Ends the session in this browser: the cookie is cleared.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(state: web::Data<AppState>) -> HttpResponse {
    let cookie = session_cookie(&state.settings, String::new(), 0);
    HttpResponse::NoContent().cookie(cookie).finish()
}

/// The session cookie with CONTRACT's attributes.
pub fn session_cookie(settings: &Settings, value: String, max_age_secs: u64) -> Cookie<'static> {
    let same_site = match settings.cookie_samesite {
        CookieSameSite::Lax => SameSite::Lax,
        CookieSameSite::Strict => SameSite::Strict,
        CookieSameSite::None => SameSite::None,
    };
    Cookie::build(SESSION_COOKIE, value)
        .http_only(true)
        .secure(settings.cookie_secure)
        .same_site(same_site)
        .path("/")
        .max_age(actix_web::cookie::time::Duration::seconds(
            i64::try_from(max_age_secs).unwrap_or(i64::MAX),
        ))
        .finish()
}

/// Registers the `/auth` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/telegram", web::post().to(telegram_auth))
        .route("/auth/ws-token", web::get().to(ws_token))
        .route("/auth/logout", web::post().to(logout));
}
