//! `/auth/*`: Telegram sign-in, WebSocket tickets and logout.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use telcall_auth::SessionClaims;
use telcall_domain::{TelegramAccount, User};
use utoipa::ToSchema;

use crate::auth::{SESSION_COOKIE, bearer_token, request_token};
use crate::config::{CookieSameSite, Settings};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{CurrentUser, JsonObject};
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
            id: u.id.get(),
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
    body: JsonObject<TelegramAuthRequest>,
) -> Result<HttpResponse, ApiError> {
    let verified = state.verifier.verify(&body.init_data).map_err(|e| {
        tracing::info!(reason = e.kind(), "sign-in refused");
        ApiError::from(e)
    })?;
    let tg = verified.user;
    let account = TelegramAccount {
        id: tg.id,
        username: tg.username,
        first_name: tg.first_name,
        last_name: tg.last_name,
        photo_url: tg.photo_url,
        photo_known: true,
    };
    let user = state.users.sign_in(&account).await?;
    tracing::Span::current().record("user", user.id.get());
    let issued = state
        .sessions
        .issue_session(user.id.get(), Some(&verified.fingerprint))
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("cannot issue a session")))?;
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
#[tracing::instrument(skip_all, fields(user = user.0.id.get()))]
pub async fn ws_token(
    state: web::Data<AppState>,
    user: CurrentUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // The ticket belongs to the session it was asked with: logging out refuses it too.
    let session = req.extensions().get::<SessionClaims>().cloned();
    let issued = match &session {
        Some(claims) => state.sessions.issue_ws_ticket_for(claims),
        None => state.sessions.issue_ws_ticket(user.0.id.get()),
    }
    .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("cannot issue a ticket")))?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(WsTokenResponse {
            token: issued.token,
            expires_in: issued.expires_in_secs,
        }))
}

/// Ends the session: the presented token (cookie and/or Bearer) is revoked until it
/// expires, the WebSockets it opened are closed with 4401, and the cookie is cleared.
/// Without a valid token it only clears the cookie (still 204).
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    responses((status = 204, description = "Session revoked (if any) and cookie cleared")))]
#[tracing::instrument(skip_all, fields(user))]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut tokens: Vec<String> = request_token(&req).into_iter().collect();
    if let Some(bearer) = bearer_token(&req)
        && !tokens.contains(&bearer)
    {
        tokens.push(bearer);
    }
    for token in tokens {
        // An expired, forged or already revoked token has nothing left to end.
        let Ok(claims) = state.sessions.verify_session(&token) else {
            continue;
        };
        state
            .sessions
            .revoke_session(&claims, state.revocations.as_ref())
            .await
            .map_err(|e| {
                ApiError::Internal(anyhow::Error::new(e).context("cannot revoke the session"))
            })?;
        let closed = state
            .session_sockets
            .close_session(&state.hub, &claims.token_id);
        tracing::Span::current().record("user", claims.user_id);
        tracing::info!(websockets_closed = closed, "logged out");
    }
    let cookie = session_cookie(&state.settings, String::new(), 0);
    Ok(HttpResponse::NoContent().cookie(cookie).finish())
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
    cfg.service(web::resource("/auth/telegram").route(web::post().to(telegram_auth)))
        .service(web::resource("/auth/ws-token").route(web::get().to(ws_token)))
        .service(web::resource("/auth/logout").route(web::post().to(logout)));
}
