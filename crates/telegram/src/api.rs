//! The Bot API client: one `reqwest` client, one base URL (`TELEGRAM_API_BASE`), one
//! timeout, shared by the friend-call notifier, the bot's answers, webhook registration
//! and the polling loop.
//!
//! The token is part of every request URL (`<base>/bot<token>/<method>`), so request
//! errors are reported without their URL and the token never reaches an error or a log.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Value, json};

/// Time limit of one Bot API request (a long poll adds its own wait to it).
pub const BOT_API_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest part of a Bot API error description kept in errors and logs.
const MAX_DESCRIPTION_CHARS: usize = 200;

/// A Bot API call that did not succeed. Never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BotApiError {
    /// The request could not be sent or no answer came in time.
    #[error("Bot API {method} unreachable: {reason}")]
    Unreachable {
        /// The Bot API method.
        method: String,
        /// What went wrong (without the URL).
        reason: String,
    },
    /// Telegram answered with an error (`ok: false` or a non-2xx status).
    #[error("Bot API {method} answered {status}: {description}")]
    Rejected {
        /// The Bot API method.
        method: String,
        /// The HTTP status.
        status: u16,
        /// Telegram's `description`, shortened.
        description: String,
    },
    /// The answer was not the JSON Telegram documents.
    #[error("Bot API {method} answered something unreadable: {reason}")]
    Malformed {
        /// The Bot API method.
        method: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The client could not be built (TLS backend unavailable).
    #[error("cannot build the Bot API client: {0}")]
    Client(String),
}

/// What `setWebhook` is told.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookRegistration {
    /// Public HTTPS URL of the webhook route.
    pub url: String,
    /// The value Telegram will send in `X-Telegram-Bot-Api-Secret-Token`.
    #[serde(serialize_with = "expose")]
    pub secret_token: SecretString,
    /// The update kinds the bot handles.
    pub allowed_updates: Vec<String>,
}

fn expose<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

/// The update kinds telcall's bot handles (`allowed_updates`).
pub const ALLOWED_UPDATES: [&str; 2] = ["message", "inline_query"];

/// A Bot API client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct BotApi {
    client: reqwest::Client,
    base: String,
    token: SecretString,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl BotApi {
    /// A client for the Bot API at `base` (e.g. `https://api.telegram.org`) acting as the
    /// bot with `token`, with [`BOT_API_TIMEOUT`] per request.
    pub fn new(base: &str, token: SecretString) -> Result<Self, BotApiError> {
        let client = reqwest::Client::builder()
            .timeout(BOT_API_TIMEOUT)
            .connect_timeout(BOT_API_TIMEOUT)
            .user_agent(concat!("telcall/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BotApiError::Client(e.without_url().to_string()))?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// The base URL requests go to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Calls `method` with the JSON `body` and returns Telegram's `result`.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, BotApiError> {
        self.call_with_timeout(method, body, BOT_API_TIMEOUT).await
    }

    /// As [`BotApi::call`], waiting up to `timeout` for the answer (long polls).
    pub async fn call_with_timeout(
        &self,
        method: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, BotApiError> {
        // The token is part of the URL path: built here, never logged, and stripped from
        // every error below.
        let url = format!("{}/bot{}/{method}", self.base, self.token.expose_secret());
        let resp = self
            .client
            .post(url)
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| BotApiError::Unreachable {
                method: method.to_owned(),
                reason: e.without_url().to_string(),
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| BotApiError::Unreachable {
            method: method.to_owned(),
            reason: e.without_url().to_string(),
        })?;
        let answer: Option<Value> = serde_json::from_slice(&bytes).ok();
        let ok = answer
            .as_ref()
            .and_then(|a| a.get("ok"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !status.is_success() || !ok {
            let description = answer
                .as_ref()
                .and_then(|a| a.get("description"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            if status.is_success() && answer.is_none() {
                return Err(BotApiError::Malformed {
                    method: method.to_owned(),
                    reason: "not JSON".to_owned(),
                });
            }
            return Err(BotApiError::Rejected {
                method: method.to_owned(),
                status: status.as_u16(),
                description: description.chars().take(MAX_DESCRIPTION_CHARS).collect(),
            });
        }
        Ok(answer
            .and_then(|mut a| a.get_mut("result").map(Value::take))
            .unwrap_or(Value::Null))
    }

    /// `getMe`: who the bot is.
    pub async fn get_me(&self) -> Result<Value, BotApiError> {
        self.call("getMe", &json!({})).await
    }

    /// `setWebhook` with the URL, the secret and the allowed update kinds.
    pub async fn set_webhook(
        &self,
        registration: &WebhookRegistration,
    ) -> Result<Value, BotApiError> {
        let body = serde_json::to_value(registration).map_err(|e| BotApiError::Malformed {
            method: "setWebhook".to_owned(),
            reason: e.to_string(),
        })?;
        self.call("setWebhook", &body).await
    }

    /// `deleteWebhook` (pending updates are kept).
    pub async fn delete_webhook(&self) -> Result<Value, BotApiError> {
        self.call("deleteWebhook", &json!({ "drop_pending_updates": false }))
            .await
    }

    /// `getWebhookInfo`: the registered URL, pending updates and the last delivery error.
    pub async fn get_webhook_info(&self) -> Result<Value, BotApiError> {
        self.call("getWebhookInfo", &json!({})).await
    }

    /// `getUpdates` from `offset`, waiting up to `wait` for one to arrive.
    pub async fn get_updates(
        &self,
        offset: i64,
        wait: Duration,
    ) -> Result<Vec<Value>, BotApiError> {
        let body = json!({
            "offset": offset,
            "timeout": wait.as_secs(),
            "allowed_updates": ALLOWED_UPDATES,
        });
        let result = self
            .call_with_timeout("getUpdates", &body, wait + BOT_API_TIMEOUT)
            .await?;
        match result {
            Value::Array(updates) => Ok(updates),
            _ => Err(BotApiError::Malformed {
                method: "getUpdates".to_owned(),
                reason: "result is not a list".to_owned(),
            }),
        }
    }

    /// `sendMessage` with this body.
    pub async fn send_message(&self, body: &Value) -> Result<Value, BotApiError> {
        self.call("sendMessage", body).await
    }

    /// `answerInlineQuery` with this body.
    pub async fn answer_inline_query(&self, body: &Value) -> Result<Value, BotApiError> {
        self.call("answerInlineQuery", body).await
    }
}
