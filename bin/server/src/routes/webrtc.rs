//! `GET /api/config/webrtc`: the ICE servers a browser should use.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::extract::CurrentUser;
use crate::state::AppState;
use crate::turn::TurnServerEntry;

/// The ICE configuration.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebRtcConfigResponse {
    /// `stun:` URLs.
    pub stun_servers: Vec<String>,
    /// Reachable TURN servers with credentials.
    pub turn_servers: Vec<TurnServerEntry>,
    /// Seconds the TURN credentials stay valid, when they are time-limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

/// STUN and TURN servers for the signed-in user (served from the cached health check).
#[utoipa::path(get, path = "/api/config/webrtc", tag = "config",
    responses((status = 200, body = WebRtcConfigResponse), (status = 401, body = ErrorBody)))]
pub async fn webrtc_config(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<HttpResponse, ApiError> {
    let turn = &state.turn;
    let time_limited = state.settings.webrtc.turn_secret.is_some();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(WebRtcConfigResponse {
            stun_servers: turn.stun_servers().to_vec(),
            turn_servers: turn.entries_for(user.0.id, chrono::Utc::now().timestamp()),
            ttl: time_limited.then(|| turn.credential_ttl().as_secs()),
        }))
}

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/config/webrtc").route(web::get().to(webrtc_config)));
}
