//! `POST /api/telegram/webhook`: Telegram's bot updates. Thin: check the secret, parse
//! the JSON, hand it to the bot service, answer 200 `{"ok": true}`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use telcall_telegram::secret::SECRET_HEADER;
use utoipa::ToSchema;

use crate::error::{ErrorBody, detail_response};
use crate::state::AppState;

/// Path of the webhook (the older backend's, so a registered URL keeps working).
pub const WEBHOOK_PATH: &str = "/api/telegram/webhook";
/// Largest accepted update, in bytes (Telegram's updates are far smaller).
pub const MAX_UPDATE_BYTES: usize = 1 << 20;
/// The `detail` of a refused update.
pub const INVALID_SECRET: &str = "Invalid webhook secret";

/// The answer to every update that passed the secret check.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    /// Always `true`.
    pub ok: bool,
}

/// Receives one Telegram `Update`. Every update that carries the right secret is answered
/// 200 (unknown kinds, re-deliveries and failed Bot API answers included), so Telegram
/// does not re-send it; only a body that is not JSON at all is a 400.
#[utoipa::path(post, path = "/api/telegram/webhook", tag = "telegram",
    request_body(content = serde_json::Value, description = "A Telegram Update. Any other JSON value is acknowledged (200) and ignored", content_type = "application/json"),
    responses((status = 200, body = WebhookAck),
              (status = 400, body = ErrorBody, description = "Invalid JSON"),
              (status = 401, body = ErrorBody, description = "Invalid webhook secret"),
              (status = 413, body = ErrorBody, description = "Update larger than 1 MiB")))]
#[tracing::instrument(skip_all, fields(update_id))]
pub async fn webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let presented = req.headers().get(SECRET_HEADER).map(|v| v.as_bytes());
    if !state.webhook_secret.verify(presented) {
        // One line, never the value.
        tracing::warn!(
            header_present = presented.is_some(),
            "telegram update refused: wrong or missing secret"
        );
        return detail_response(StatusCode::UNAUTHORIZED, INVALID_SECRET);
    }
    let Ok(update) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return detail_response(StatusCode::BAD_REQUEST, "Invalid JSON");
    };
    if let Some(id) = update.get("update_id").and_then(serde_json::Value::as_i64) {
        tracing::Span::current().record("update_id", id);
    }
    match state.bot.handle_value(&update).await {
        Ok(outcome) => tracing::debug!(?outcome, "telegram update handled"),
        Err(e) => tracing::warn!(error = %e, "telegram update failed"),
    }
    HttpResponse::Ok().json(WebhookAck { ok: true })
}

/// Registers the webhook route, with its own 1 MiB body limit.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(WEBHOOK_PATH)
            .app_data(web::PayloadConfig::new(MAX_UPDATE_BYTES))
            .route(web::post().to(webhook)),
    );
}
