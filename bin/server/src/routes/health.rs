//! `/`, `/health`, `/health/ready` and `/metrics`.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ErrorBody, detail_response};
use crate::state::AppState;

/// Body of the health routes.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// Always `ok`.
    pub status: &'static str,
    /// Service name (on `/` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
}

/// Service name reported by `GET /`.
pub const SERVICE_NAME: &str = "telcall signaling server";

/// Service banner.
#[utoipa::path(get, path = "/", tag = "health", responses((status = 200, body = HealthResponse)))]
pub async fn root() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse {
        status: "ok",
        message: Some(SERVICE_NAME),
    })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = HealthResponse)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse {
        status: "ok",
        message: None,
    })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = HealthResponse), (status = 503, body = ErrorBody)))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.repo.ping().await {
        Ok(()) => HttpResponse::Ok().json(HealthResponse {
            status: "ok",
            message: None,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            detail_response(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "Database unavailable",
            )
        }
    }
}

/// Signaling counters in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String,
        description = "Prometheus text exposition of the signaling hub's counters")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let stats = state.hub.stats();
    let body = format!(
        "# HELP telcall_rooms Signaling rooms with at least one connection.\n\
         # TYPE telcall_rooms gauge\n\
         telcall_rooms {}\n\
         # HELP telcall_ws_connections WebSocket connections in rooms.\n\
         # TYPE telcall_ws_connections gauge\n\
         telcall_ws_connections {}\n\
         # HELP telcall_messages_relayed_total Signals delivered to their addressee's queue.\n\
         # TYPE telcall_messages_relayed_total counter\n\
         telcall_messages_relayed_total {}\n\
         # HELP telcall_messages_dropped_total Frames dropped because a peer did not read (each cut it off).\n\
         # TYPE telcall_messages_dropped_total counter\n\
         telcall_messages_dropped_total {}\n",
        stats.rooms, stats.connections, stats.messages_relayed, stats.messages_dropped
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

/// Registers the health routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(root))
        .route("/health", web::get().to(health))
        .route("/health/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics));
}
