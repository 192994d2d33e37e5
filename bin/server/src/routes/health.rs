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

/// Readiness: the database answers, and Redis too when several instances share one
/// (`REDIS_URL`).
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = HealthResponse), (status = 503, body = ErrorBody,
        description = "`Database unavailable` or `Redis unavailable`")))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = state.repo.ping().await {
        tracing::warn!(error = %e, "readiness check failed: database");
        return detail_response(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "Database unavailable",
        );
    }
    if let Some(redis) = &state.redis
        && let Err(e) = redis.ping().await
    {
        tracing::warn!(error = %e, "readiness check failed: Redis");
        return detail_response(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "Redis unavailable",
        );
    }
    HttpResponse::Ok().json(HealthResponse {
        status: "ok",
        message: None,
    })
}

/// Signaling counters in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String,
        description = "Prometheus text exposition of the signaling hub's counters")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let stats = state.hub.stats();
    let reads = state.calls.read_stats();
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
         telcall_messages_dropped_total {}\n\
         # HELP telcall_connections_open Open client connections (HTTP and WebSocket).\n\
         # TYPE telcall_connections_open gauge\n\
         telcall_connections_open {}\n\
         # HELP telcall_connections_refused_total Connections refused by MAX_CONNECTIONS or MAX_CONNECTIONS_PER_IP.\n\
         # TYPE telcall_connections_refused_total counter\n\
         telcall_connections_refused_total {}\n\
         # HELP telcall_call_reads_total Calls looked up to join or show them, by source (storage, or cache: CALL_CACHE_SECONDS).\n\
         # TYPE telcall_call_reads_total counter\n\
         telcall_call_reads_total{{source=\"storage\"}} {}\n\
         telcall_call_reads_total{{source=\"cache\"}} {}\n",
        stats.rooms,
        stats.connections,
        stats.messages_relayed,
        stats.messages_dropped,
        state.connections.open(),
        state.connections.refused(),
        reads.storage,
        reads.kept
    );
    let mut body = body;
    if let Some(redis) = &state.redis {
        let r = redis.stats();
        body.push_str(&format!(
            "# HELP telcall_redis_operations_total Redis operations sent (tickets, rate limits, pings).\n\
             # TYPE telcall_redis_operations_total counter\n\
             telcall_redis_operations_total {}\n\
             # HELP telcall_redis_errors_total Redis operations that failed or timed out.\n\
             # TYPE telcall_redis_errors_total counter\n\
             telcall_redis_errors_total {}\n",
            r.operations, r.errors
        ));
    }
    if let Some(broker) = &state.broker {
        let b = broker.stats();
        body.push_str(&format!(
            "# HELP telcall_redis_publish_queue_depth Room events waiting to be published to Redis.\n\
             # TYPE telcall_redis_publish_queue_depth gauge\n\
             telcall_redis_publish_queue_depth {}\n\
             # HELP telcall_redis_published_total Room events published to other instances.\n\
             # TYPE telcall_redis_published_total counter\n\
             telcall_redis_published_total {}\n\
             # HELP telcall_redis_publish_errors_total Room events whose publication to Redis failed.\n\
             # TYPE telcall_redis_publish_errors_total counter\n\
             telcall_redis_publish_errors_total {}\n\
             # HELP telcall_redis_publish_overflow_total Room events dropped because the publish queue was full.\n\
             # TYPE telcall_redis_publish_overflow_total counter\n\
             telcall_redis_publish_overflow_total {}\n\
             # HELP telcall_redis_received_total Room events received from other instances.\n\
             # TYPE telcall_redis_received_total counter\n\
             telcall_redis_received_total {}\n\
             # HELP telcall_redis_roster_operations_total Room roster changes sent to Redis (joins, leaves, reaps).\n\
             # TYPE telcall_redis_roster_operations_total counter\n\
             telcall_redis_roster_operations_total {}\n\
             # HELP telcall_redis_roster_errors_total Room roster changes that failed.\n\
             # TYPE telcall_redis_roster_errors_total counter\n\
             telcall_redis_roster_errors_total {}\n\
             # HELP telcall_redis_reaped_total Members of dead instances this instance removed from the roster.\n\
             # TYPE telcall_redis_reaped_total counter\n\
             telcall_redis_reaped_total {}\n",
            b.queue_depth,
            b.published,
            b.publish_errors,
            b.overflow,
            b.received,
            b.roster_operations,
            b.roster_errors,
            b.reaped
        ));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

/// Registers the health routes; `/metrics` too unless `METRICS_ADDR` gives it a listener
/// of its own.
pub fn configure(cfg: &mut web::ServiceConfig, with_metrics: bool) {
    cfg.service(web::resource("/").route(web::get().to(root)))
        .service(web::resource("/health").route(web::get().to(health)))
        .service(web::resource("/health/ready").route(web::get().to(ready)));
    if with_metrics {
        configure_metrics(cfg);
    }
}

/// Registers `/metrics` (on the main listener, or alone on the `METRICS_ADDR` one).
pub fn configure_metrics(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(metrics)));
}
