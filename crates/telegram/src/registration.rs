//! Webhook registration: `setWebhook` with the URL, the secret and the update kinds the
//! bot handles, then `getWebhookInfo` for the pending count and Telegram's last delivery
//! error. Run in the background at start-up: an unreachable Bot API is retried with
//! backoff and never holds anything up.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::api::{ALLOWED_UPDATES, BotApi, BotApiError, WebhookRegistration};
use crate::secret::WebhookSecret;

/// Attempts at registering before giving up until the next start.
pub const REGISTRATION_ATTEMPTS: u32 = 8;
/// Pause after the first failed attempt (doubling, capped at [`REGISTRATION_MAX_PAUSE`]).
pub const REGISTRATION_FIRST_PAUSE: Duration = Duration::from_secs(2);
/// Longest pause between attempts.
pub const REGISTRATION_MAX_PAUSE: Duration = Duration::from_secs(120);

/// What Telegram says about the registered webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookStatus {
    /// The URL Telegram delivers to (empty when none).
    pub url: String,
    /// Updates waiting for delivery.
    pub pending_update_count: i64,
    /// Telegram's description of the last failed delivery, if any.
    pub last_error_message: Option<String>,
}

impl WebhookStatus {
    /// Reads `getWebhookInfo`'s result.
    pub fn from_info(info: &Value) -> Self {
        Self {
            url: info
                .get("url")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            pending_update_count: info
                .get("pending_update_count")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            last_error_message: info
                .get("last_error_message")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }
}

/// The `setWebhook` request for `url` with `secret`.
pub fn registration(url: &str, secret: &WebhookSecret) -> WebhookRegistration {
    WebhookRegistration {
        url: url.to_owned(),
        secret_token: secret.expose().clone(),
        allowed_updates: ALLOWED_UPDATES.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Registers `url` once and reads the webhook's status.
pub async fn register_webhook(
    api: &BotApi,
    url: &str,
    secret: &WebhookSecret,
) -> Result<WebhookStatus, BotApiError> {
    api.set_webhook(&registration(url, secret)).await?;
    let info = api.get_webhook_info().await?;
    Ok(WebhookStatus::from_info(&info))
}

/// Registers `url` in the background: retries an unreachable Bot API with backoff (up to
/// [`REGISTRATION_ATTEMPTS`]), gives up at once when Telegram refuses (a wrong token or
/// URL needs an operator), stops at shutdown, and logs the outcome either way.
pub async fn run_registration(
    api: BotApi,
    url: String,
    secret: WebhookSecret,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pause = REGISTRATION_FIRST_PAUSE;
    for attempt in 1..=REGISTRATION_ATTEMPTS {
        let res = tokio::select! {
            res = register_webhook(&api, &url, &secret) => res,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match res {
            Ok(status) => {
                tracing::info!(
                    url = %status.url,
                    pending_update_count = status.pending_update_count,
                    last_error = status.last_error_message.as_deref().unwrap_or(""),
                    derived_secret = secret.is_derived(),
                    "bot webhook registered"
                );
                return;
            }
            Err(e @ BotApiError::Rejected { .. }) => {
                tracing::error!(error = %e, "bot webhook registration refused by Telegram");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "bot webhook registration failed; retrying");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        pause = (pause * 2).min(REGISTRATION_MAX_PAUSE);
    }
    tracing::error!(
        attempts = REGISTRATION_ATTEMPTS,
        "bot webhook registration gave up"
    );
}
