//! `/`, `/health` and `/health/ready`.

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

/// Registers the health routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(root))
        .route("/health", web::get().to(health))
        .route("/health/ready", web::get().to(ready));
}
